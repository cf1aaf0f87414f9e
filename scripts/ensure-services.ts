/**
 * Makes sure Postgres and Redis are there for `npm start` and the tests (docs/contract.md §8):
 *   1. the configured ones, if they answer;
 *   2. otherwise `docker compose up -d --wait postgres redis`, where a Docker engine runs;
 *   3. otherwise private instances from local binaries (initdb/pg_ctl, redis-server) under
 *      `.data/` of the project, on ports 54329 and 63799;
 *   4. otherwise an error that says what to install.
 * Returns the URLs to use. Every wait is bounded. As a CLI it prints DATABASE_URL=… and
 * REDIS_URL=… lines for a shell to eval.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { Redis } from 'ioredis';
import pg from 'pg';

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const privatePostgresPort = 54329;
const privateRedisPort = 63799;

export interface EnsureServicesOptions {
  readonly databaseUrl: string;
  readonly redisUrl: string;
  readonly dataDir?: string;
  readonly log?: (line: string) => void;
}

export interface EnsuredServices {
  readonly databaseUrl: string;
  readonly redisUrl: string;
  readonly started: string[];
}

async function postgresAnswers(databaseUrl: string): Promise<boolean> {
  const url = new URL(databaseUrl);
  url.pathname = '/postgres'; // The target database may not exist yet: migrations create it.
  const client = new pg.Client({ connectionString: url.toString(), connectionTimeoutMillis: 1_500 });
  client.on('error', () => undefined);
  try {
    await client.connect();
    await client.query('SELECT 1');
    return true;
  } catch {
    return false;
  } finally {
    await client.end().catch(() => undefined);
  }
}

async function redisAnswers(redisUrl: string): Promise<boolean> {
  const redis = new Redis(redisUrl, {
    lazyConnect: true,
    maxRetriesPerRequest: 0,
    enableOfflineQueue: false,
    connectTimeout: 1_500,
    retryStrategy: () => null,
  });
  redis.on('error', () => undefined);
  try {
    await redis.connect();
    return (await redis.ping()) === 'PONG';
  } catch {
    return false;
  } finally {
    redis.disconnect();
  }
}

function run(command: string, args: string[], timeoutMs = 60_000): { ok: boolean; output: string } {
  const result = spawnSync(command, args, { encoding: 'utf8', timeout: timeoutMs, cwd: repoRoot });
  return { ok: result.status === 0, output: `${result.stdout ?? ''}${result.stderr ?? ''}` };
}

export function findPostgresBinary(name: string): string | undefined {
  const onPath = run('sh', ['-c', `command -v ${name}`]);
  if (onPath.ok && onPath.output.trim() !== '') return onPath.output.trim();
  const base = '/usr/lib/postgresql';
  if (!existsSync(base)) return undefined;
  const versions = readdirSync(base).sort((a, b) => Number(b) - Number(a));
  for (const version of versions) {
    const candidate = path.join(base, version, 'bin', name);
    if (existsSync(candidate)) return candidate;
  }
  return undefined;
}

async function portAnswers(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect(port, '127.0.0.1');
    socket.setTimeout(1_000);
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
    socket.once('timeout', () => {
      socket.destroy();
      resolve(false);
    });
  });
}

async function waitFor(check: () => Promise<boolean>, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await check()) return true;
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
  return false;
}

function withPort(url: string, port: number, host = '127.0.0.1'): string {
  const parsed = new URL(url);
  parsed.hostname = host;
  parsed.port = String(port);
  return parsed.toString();
}

/** Postgres refuses to run as root: run its binaries as the `postgres` user when we are root. */
export function asPostgresUser(binary: string, args: string[]): { command: string; args: string[] } {
  if (process.getuid?.() !== 0) return { command: binary, args };
  return { command: 'runuser', args: ['-u', 'postgres', '--', binary, ...args] };
}

async function startPrivatePostgres(dataDir: string, log: (line: string) => void): Promise<boolean> {
  const initdb = findPostgresBinary('initdb');
  const pgCtl = findPostgresBinary('pg_ctl');
  if (initdb === undefined || pgCtl === undefined) return false;
  if (await portAnswers(privatePostgresPort)) return true; // Ours, from an earlier start.
  const folder = path.join(dataDir, 'postgres');
  const socketFolder = path.join(dataDir, 'pgsock');
  mkdirSync(folder, { recursive: true });
  mkdirSync(socketFolder, { recursive: true });
  if (process.getuid?.() === 0) {
    // The postgres user must reach the data folder through ours.
    run('chmod', ['755', dataDir]);
    run('chown', ['-R', 'postgres:postgres', folder, socketFolder]);
  }
  if (!existsSync(path.join(folder, 'PG_VERSION'))) {
    log(`starting a private Postgres: initdb ${folder}`);
    const init = asPostgresUser(initdb, ['-D', folder, '-U', 'postgres', '--auth=trust', '-E', 'UTF8']);
    const result = run(init.command, init.args, 120_000);
    if (!result.ok) throw new Error(`initdb failed:\n${result.output}`);
  }
  const start = asPostgresUser(pgCtl, [
    '-D',
    folder,
    '-o',
    `-p ${privatePostgresPort} -k ${socketFolder} -c listen_addresses=127.0.0.1`,
    '-l',
    path.join(folder, 'server.log'),
    '-w',
    '-t',
    '30',
    'start',
  ]);
  const result = run(start.command, start.args, 45_000);
  if (!result.ok) throw new Error(`pg_ctl start failed:\n${result.output}`);
  return waitFor(() => portAnswers(privatePostgresPort), 15_000);
}

async function startPrivateRedis(dataDir: string, log: (line: string) => void): Promise<boolean> {
  const which = run('sh', ['-c', 'command -v redis-server']);
  if (!which.ok) return false;
  if (await portAnswers(privateRedisPort)) return true;
  const folder = path.join(dataDir, 'redis');
  mkdirSync(folder, { recursive: true });
  log(`starting a private Redis on port ${privateRedisPort}`);
  const result = run(which.output.trim(), [
    '--port',
    String(privateRedisPort),
    '--bind',
    '127.0.0.1',
    '--daemonize',
    'yes',
    '--dir',
    folder,
    '--save',
    '',
    '--appendonly',
    'no',
    '--pidfile',
    path.join(folder, 'redis.pid'),
    '--logfile',
    path.join(folder, 'redis.log'),
  ]);
  if (!result.ok) throw new Error(`redis-server failed:\n${result.output}`);
  return waitFor(() => portAnswers(privateRedisPort), 10_000);
}

function dockerEngineRuns(): boolean {
  return run('docker', ['info'], 5_000).ok;
}

export async function ensureServices(options: EnsureServicesOptions): Promise<EnsuredServices> {
  const log = options.log ?? ((line: string) => process.stderr.write(`${line}\n`));
  const dataDir = options.dataDir ?? path.join(repoRoot, '.data');
  const started: string[] = [];
  let { databaseUrl, redisUrl } = options;
  const [postgresUp, redisUp] = await Promise.all([postgresAnswers(databaseUrl), redisAnswers(redisUrl)]);
  if (postgresUp && redisUp) return { databaseUrl, redisUrl, started };

  const missing = [!postgresUp && 'postgres', !redisUp && 'redis'].filter((name): name is string => name !== false);
  if (dockerEngineRuns()) {
    log(`${missing.join(' and ')} not reachable; starting ${missing.join(' and ')} with docker compose`);
    const result = run('docker', ['compose', 'up', '-d', '--wait', ...missing], 180_000);
    if (!result.ok) throw new Error(`docker compose up failed:\n${result.output}`);
    if (!postgresUp) databaseUrl = withPort(databaseUrl, 5432);
    if (!redisUp) redisUrl = withPort(redisUrl, 6379);
    return { databaseUrl, redisUrl, started: missing.map((name) => `docker:${name}`) };
  }

  const problems: string[] = [];
  if (!postgresUp) {
    if (await startPrivatePostgres(dataDir, log)) {
      databaseUrl = withPort(databaseUrl, privatePostgresPort);
      started.push(`postgres:${privatePostgresPort}`);
    } else {
      problems.push(
        `PostgreSQL is not reachable at ${new URL(options.databaseUrl).host} and no initdb/pg_ctl was found`,
      );
    }
  }
  if (!redisUp) {
    if (await startPrivateRedis(dataDir, log)) {
      redisUrl = withPort(redisUrl, privateRedisPort);
      started.push(`redis:${privateRedisPort}`);
    } else {
      problems.push(`Redis is not reachable at ${new URL(options.redisUrl).host} and no redis-server was found`);
    }
  }
  if (problems.length > 0) {
    throw new Error(
      `${problems.join('; ')}.\n` +
        'Install them (Debian/Ubuntu: sudo apt-get install -y postgresql redis-server; macOS: brew install postgresql@16 redis),\n' +
        'or start Docker (docker compose up -d), or point DATABASE_URL and REDIS_URL at running servers.',
    );
  }
  return { databaseUrl, redisUrl, started };
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  ensureServices({
    databaseUrl: process.env.DATABASE_URL ?? 'postgresql://postgres@127.0.0.1:5432/payments',
    redisUrl: process.env.REDIS_URL ?? 'redis://127.0.0.1:6379',
  }).then(
    (services) => {
      process.stdout.write(`DATABASE_URL=${services.databaseUrl}\nREDIS_URL=${services.redisUrl}\n`);
    },
    (error: unknown) => {
      process.stderr.write(`${error instanceof Error ? error.message : String(error)}\n`);
      process.exit(1);
    },
  );
}

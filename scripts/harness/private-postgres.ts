/**
 * A private Postgres cluster for runs that stop it for real: initdb into a temporary folder,
 * pg_ctl on a free port, never the shared server. stop('fast' | 'immediate') and start() keep the
 * data (an immediate stop is a crash: the next start replays the WAL); destroy() removes it all.
 *
 * fsync is off: the faults here kill processes, not the machine, and committed data survives a
 * killed Postgres in the OS page cache. synchronous_commit stays on, so a commit that answered is
 * in the WAL before the client hears about it, as in production.
 */
import { execFile, spawnSync } from 'node:child_process';
import { chmodSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { asPostgresUser, findPostgresBinary } from '../ensure-services';
import { freePort } from './redis';

export type StopMode = 'fast' | 'immediate';

export interface PrivatePostgres {
  /** The maintenance database's URL; use withDatabase() for another database. */
  readonly url: string;
  readonly port: number;
  readonly running: () => boolean;
  stop(mode: StopMode): Promise<void>;
  start(): Promise<void>;
  destroy(): Promise<void>;
  /** The server's log, for a report when something went wrong. */
  logTail(lines?: number): string;
}

/** Asynchronous, so a caller's own clients keep running while Postgres starts or stops. */
function runAs(binary: string, args: string[], timeoutMs: number): Promise<{ ok: boolean; output: string }> {
  const { command, args: finalArgs } = asPostgresUser(binary, args);
  return new Promise((resolve) => {
    execFile(command, finalArgs, { encoding: 'utf8', timeout: timeoutMs }, (error, stdout, stderr) =>
      resolve({ ok: error === null, output: `${stdout}${stderr}` }),
    );
  });
}

function binary(name: string): string {
  const found = findPostgresBinary(name);
  if (found === undefined) throw new Error(`${name} not found: install PostgreSQL (apt-get install postgresql)`);
  return found;
}

export async function startPrivatePostgres(settings: Readonly<Record<string, string>> = {}): Promise<PrivatePostgres> {
  const initdb = binary('initdb');
  const pgCtl = binary('pg_ctl');
  const folder = mkdtempSync(path.join(tmpdir(), 'pgw-pg-'));
  const dataDir = path.join(folder, 'data');
  const logFile = path.join(folder, 'server.log');
  if (process.getuid?.() === 0) {
    // Postgres refuses to run as root: its own user must own the folder.
    chmodSync(folder, 0o755);
    spawnSync('chown', ['postgres:postgres', folder]);
  }
  const init = await runAs(
    initdb,
    ['-D', dataDir, '-U', 'postgres', '--auth=trust', '-E', 'UTF8', '--no-sync'],
    120_000,
  );
  if (!init.ok) throw new Error(`initdb failed:\n${init.output}`);
  const port = await freePort();
  const options = [
    `-p ${port}`,
    `-k ${folder}`,
    '-c listen_addresses=127.0.0.1',
    '-c fsync=off',
    '-c max_connections=200',
    ...Object.entries(settings).map(([name, value]) => `-c ${name}=${value}`),
  ].join(' ');
  let running = false;
  const start = async () => {
    const result = await runAs(pgCtl, ['-D', dataDir, '-o', options, '-l', logFile, '-w', '-t', '60', 'start'], 90_000);
    if (!result.ok) throw new Error(`pg_ctl start failed:\n${result.output}`);
    running = true;
  };
  const stop = async (mode: StopMode) => {
    const result = await runAs(pgCtl, ['-D', dataDir, '-m', mode, '-w', '-t', '60', 'stop'], 90_000);
    if (!result.ok && !/not running|No such file|does not exist/i.test(result.output)) {
      throw new Error(`pg_ctl stop -m ${mode} failed:\n${result.output}`);
    }
    running = false;
  };
  await start();
  return {
    url: `postgresql://postgres@127.0.0.1:${port}/postgres`,
    port,
    running: () => running,
    stop,
    start,
    async destroy() {
      try {
        await stop('immediate');
      } finally {
        rmSync(folder, { recursive: true, force: true });
      }
    },
    logTail(lines = 40) {
      const result = spawnSync('tail', ['-n', String(lines), logFile], { encoding: 'utf8' });
      return result.stdout ?? '';
    },
  };
}

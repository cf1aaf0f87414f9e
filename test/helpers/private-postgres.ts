/**
 * A private Postgres cluster for tests that stop Postgres for real: initdb into a temp folder,
 * pg_ctl on a free port, migrated, and removed afterwards. The shared Postgres is never touched.
 * Postgres refuses to run as root; as root, its binaries run as the `postgres` user.
 */
import { spawnSync } from 'node:child_process';
import { chmodSync, mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { migrate } from '../../scripts/migrate';
import type { TestDatabase } from './database';
import { freePort } from './redis';

export interface PrivatePostgres {
  readonly url: string;
  readonly port: number;
  /** A TestDatabase on the cluster's `payments` database (migrated). */
  readonly database: TestDatabase;
  /** Stops the server (`pg_ctl stop -m fast`: sessions are terminated, as in an admin shutdown). */
  stop(): void;
  /** Starts it again on the same port and folder (the data is kept). */
  start(): void;
  /** Stops it for good and removes its folder. */
  destroy(): void;
}

function binary(name: string): string {
  const found = spawnSync('sh', ['-c', `command -v ${name} || ls /usr/lib/postgresql/*/bin/${name} 2>/dev/null`], {
    encoding: 'utf8',
  });
  const first = found.stdout.split('\n')[0]?.trim();
  if (first === undefined || first === '') throw new Error(`${name} is not installed (apt-get install postgresql)`);
  return first;
}

function asPostgresUser(command: string, args: string[]): [string, string[]] {
  return process.getuid?.() === 0 ? ['runuser', ['-u', 'postgres', '--', command, ...args]] : [command, args];
}

function run(command: string, args: string[]): void {
  const [file, argv] = asPostgresUser(command, args);
  const result = spawnSync(file, argv, { encoding: 'utf8', timeout: 60_000 });
  if (result.status !== 0) throw new Error(`${command} ${args.join(' ')} failed:\n${result.stdout}${result.stderr}`);
}

export async function startPrivatePostgres(): Promise<PrivatePostgres> {
  const folder = mkdtempSync(path.join(os.tmpdir(), 'pgw-private-pg-'));
  chmodSync(folder, 0o777);
  const dataFolder = path.join(folder, 'data');
  const port = await freePort();
  run(binary('initdb'), ['-D', dataFolder, '-U', 'postgres', '--auth=trust', '-E', 'UTF8', '--no-sync']);
  const pgCtl = binary('pg_ctl');
  const options = `-p ${port} -k ${folder} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200`;
  const start = () =>
    run(pgCtl, ['-D', dataFolder, '-o', options, '-l', path.join(folder, 'server.log'), '-w', '-t', '30', 'start']);
  const stop = () => run(pgCtl, ['-D', dataFolder, '-m', 'fast', '-w', '-t', '30', 'stop']);
  start();
  const url = `postgresql://postgres@127.0.0.1:${port}/payments`;
  migrate(url);
  const pool = new pg.Pool({ connectionString: url, max: 3 });
  pool.on('error', () => undefined);
  const database: TestDatabase = {
    url,
    name: 'payments',
    pool,
    async count(sql, params = []) {
      const { rows } = await pool.query<{ count: string | number }>(sql, params);
      return Number(rows[0]?.count ?? 0);
    },
    async drop() {
      await pool.end().catch(() => undefined);
    },
  };
  return {
    url,
    port,
    database,
    stop,
    start,
    destroy() {
      try {
        stop();
      } catch {
        // Already stopped.
      }
      rmSync(folder, { recursive: true, force: true });
    },
  };
}

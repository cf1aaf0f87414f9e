/**
 * Applies the SQL migrations in db/migrations with dbmate (its binary ships in the npm package).
 * dbmate creates the database when it does not exist yet.
 *   npm run migrate                       (tsx, from the sources)
 *   node dist/cli/migrate.js [up|status|rollback]   (compiled: the runtime image has no tsx)
 * The repository root is two folders up both from src/cli/ and from dist/cli/.
 */
import { spawnSync } from 'node:child_process';
import { fileURLToPath, pathToFileURL } from 'node:url';
import path from 'node:path';

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');

/** dbmate speaks libpq URLs and wants TLS spelled out; local Postgres has none. */
export function dbmateUrl(databaseUrl: string): string {
  const url = new URL(databaseUrl);
  if (!url.searchParams.has('sslmode')) url.searchParams.set('sslmode', 'disable');
  return url.toString();
}

export function migrate(databaseUrl: string, command: 'up' | 'status' | 'rollback' = 'up'): void {
  const result = spawnSync(
    path.join(repoRoot, 'node_modules', '.bin', 'dbmate'),
    [
      '--no-dump-schema',
      '--migrations-dir',
      path.join(repoRoot, 'db', 'migrations'),
      '--wait',
      '--wait-timeout',
      '20s',
      command,
    ],
    { env: { ...process.env, DATABASE_URL: dbmateUrl(databaseUrl) }, encoding: 'utf8' },
  );
  if (result.status !== 0) {
    throw new Error(`dbmate ${command} failed (exit ${String(result.status)}):\n${result.stdout}${result.stderr}`);
  }
  const output = `${result.stdout}${result.stderr}`.trim();
  if (output !== '' && process.env.MIGRATE_QUIET !== '1') process.stderr.write(`${output}\n`);
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const command = (process.argv[2] ?? 'up') as 'up' | 'status' | 'rollback';
  try {
    migrate(process.env.DATABASE_URL ?? 'postgresql://postgres@127.0.0.1:5432/payments', command);
  } catch (error) {
    process.stderr.write(`${error instanceof Error ? error.message : String(error)}\n`);
    process.exit(1);
  }
}

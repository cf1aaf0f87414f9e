/**
 * Applies the SQL migrations in db/migrations with dbmate (its binary ships in the npm package).
 * dbmate creates the database when it does not exist yet.
 *   npm run migrate                       (tsx, from the sources)
 *   node dist/cli/migrate.js [up|status|rollback]   (compiled: the runtime image has no tsx)
 * It connects as the owner, MIGRATION_DATABASE_URL (default: DATABASE_URL's server and database as
 * `postgres`), never as the gateway's role; after `up` it gives the gateway role DATABASE_URL's
 * password, when DATABASE_URL has one (src/platform/database-role.ts).
 * The repository root is two folders up both from src/cli/ and from dist/cli/.
 */
import { spawnSync } from 'node:child_process';
import { fileURLToPath, pathToFileURL } from 'node:url';
import path from 'node:path';
import { z } from 'zod';
import { settings, variableOf } from '../config';
import { gatewayRoleName, localOwnerUrl, setGatewayRolePassword } from '../platform/database-role';

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

/**
 * The two URLs the migrate command reads, parsed by the configuration's own schema (src/config.ts)
 * without the rest of it: a migration job has no Redis or acquirer settings to give.
 */
export function migrationUrls(env: NodeJS.ProcessEnv = process.env): { ownerUrl: string; databaseUrl: string } {
  const result = z
    .object({ databaseUrl: settings.databaseUrl, migrationDatabaseUrl: settings.migrationDatabaseUrl })
    .safeParse({ databaseUrl: env.DATABASE_URL, migrationDatabaseUrl: env.MIGRATION_DATABASE_URL });
  if (!result.success) {
    const issue = result.error.issues[0]!;
    const key = issue.path[0] === 'migrationDatabaseUrl' ? 'migrationDatabaseUrl' : 'databaseUrl';
    throw new Error(`Configuration error: ${variableOf(key)}: ${issue.message}`);
  }
  const { databaseUrl, migrationDatabaseUrl } = result.data;
  return { databaseUrl, ownerUrl: migrationDatabaseUrl ?? localOwnerUrl(databaseUrl) };
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const command = (process.argv[2] ?? 'up') as 'up' | 'status' | 'rollback';
  try {
    const { ownerUrl, databaseUrl } = migrationUrls();
    migrate(ownerUrl, command);
    // The gateway role exists now: it gets DATABASE_URL's password, when there is one.
    if (command === 'up' && (await setGatewayRolePassword(ownerUrl, databaseUrl))) {
      process.stderr.write(`set the password of ${gatewayRoleName} from DATABASE_URL\n`);
    }
  } catch (error) {
    process.stderr.write(`${error instanceof Error ? error.message : String(error)}\n`);
    process.exit(1);
  }
}

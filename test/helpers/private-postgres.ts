/**
 * A migrated database on a private Postgres cluster (scripts/harness/private-postgres.ts), for
 * tests that stop Postgres for real. The shared server is never touched.
 */
import pg from 'pg';
import { migrate } from '../../src/cli/migrate';
import { gatewayRoleUrl } from '../../src/platform/database-role';
import { startPrivatePostgres, type PrivatePostgres } from '../../scripts/harness/private-postgres';
import { withDatabase, type TestDatabase } from './database';

export interface PrivateTestDatabase {
  readonly server: PrivatePostgres;
  /** The migrated `payments` database on it, with a pool for assertions. */
  readonly database: TestDatabase;
  destroy(): Promise<void>;
}

export async function startPrivateTestDatabase(): Promise<PrivateTestDatabase> {
  const server = await startPrivatePostgres();
  const url = withDatabase(server.url, 'payments');
  migrate(url);
  const pool = new pg.Pool({ connectionString: url, max: 3 });
  pool.on('error', () => undefined);
  const database: TestDatabase = {
    url,
    gatewayUrl: gatewayRoleUrl(url),
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
    server,
    database,
    async destroy() {
      await database.drop();
      await server.destroy();
    },
  };
}

/**
 * Each test file gets its own database, copied from a migrated template, and drops it after.
 */
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { inject } from 'vitest';
import { gatewayRoleUrl } from '../../src/platform/database-role';

export function withDatabase(databaseUrl: string, database: string): string {
  const url = new URL(databaseUrl);
  url.pathname = `/${database}`;
  return url.toString();
}

/** Runs one statement against the server's maintenance database. */
export async function adminQuery(databaseUrl: string, sql: string): Promise<void> {
  const client = new pg.Client({ connectionString: withDatabase(databaseUrl, 'postgres') });
  await client.connect();
  try {
    await client.query(sql);
  } finally {
    await client.end();
  }
}

export interface TestDatabase {
  /** The owner's URL: for the test's own reads and plants, and for migrations. */
  readonly url: string;
  /** The same database as the gateway's least-privilege role: what gateways under test connect with. */
  readonly gatewayUrl: string;
  readonly name: string;
  /** A plain pg pool for assertions that count rows. */
  readonly pool: pg.Pool;
  count(sql: string, params?: unknown[]): Promise<number>;
  drop(): Promise<void>;
}

export async function createTestDatabase(serverUrl: string): Promise<TestDatabase> {
  const templateDatabaseName = inject('templateDatabaseName');
  const name = `pgw_t_${randomBytes(6).toString('hex')}`;
  // CREATE DATABASE … TEMPLATE fails while another session copies the same template; retry briefly.
  for (let attempt = 1; ; attempt += 1) {
    try {
      await adminQuery(serverUrl, `CREATE DATABASE ${name} TEMPLATE ${templateDatabaseName}`);
      break;
    } catch (error) {
      if (attempt >= 20 || !String(error).includes('being accessed by other users')) throw error;
      await new Promise((resolve) => setTimeout(resolve, 100 + Math.random() * 200));
    }
  }
  const url = withDatabase(serverUrl, name);
  const pool = new pg.Pool({ connectionString: url, max: 3 });
  pool.on('error', () => undefined);
  return {
    url,
    gatewayUrl: gatewayRoleUrl(url),
    name,
    pool,
    async count(sql, params = []) {
      const { rows, fields } = await pool.query<{ count: string | number }>(sql, params);
      // A query whose column is not named count would read as 0 and make every assertion pass.
      if (!fields.some((field) => field.name === 'count'))
        throw new Error(`count() needs a column named count: ${sql}`);
      return Number(rows[0]?.count ?? 0);
    },
    async drop() {
      await pool.end();
      await adminQuery(serverUrl, `DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
    },
  };
}

/**
 * The gateway's least-privilege database role (db/migrations/20261205110000_gateway_role.sql,
 * docs/security.md "The database role"): connected as `payments_gateway`, TRUNCATE, UPDATE and
 * DELETE of ledger, inbox and audit rows are refused by Postgres itself (permission denied), and
 * so are changes to the columns the gateway has no business changing; every table's grants are
 * listed here, so a new table fails this test until its migration decides what the gateway may
 * do with it. Gateways under test connect as the role (test/helpers/gateway.ts), a production
 * start refuses a role that could TRUNCATE the ledger, and the migrate command gives the role
 * DATABASE_URL's password, which a password-authenticated server then accepts.
 */
import { spawnSync } from 'node:child_process';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { gatewayRoleName, gatewayRoleUrl } from '../../src/platform/database-role';
import { assertServicesReachable } from '../../src/platform/reachability';
import { startPrivatePostgres } from '../../scripts/harness/private-postgres';
import { repoRoot } from '../helpers/built';
import { withDatabase } from '../helpers/database';
import { createTestEnvironment, startTestGateway, type TestEnvironment, type TestGateway } from '../helpers/gateway';
import { createCharge } from '../helpers/http';
import { waitForLedgerToCatchUp } from '../helpers/ledger';

let environment: TestEnvironment;
let gateway: TestGateway;
let asRole: pg.Client;

beforeAll(async () => {
  environment = await createTestEnvironment();
  gateway = await startTestGateway(environment, { ROLE: 'all' });
  // A charge and its refund go the whole way, so every table has a row to be refused on.
  const charged = await createCharge(gateway.url, gateway.apiKey, 'role-charge', {
    amount: 5_000,
    currency: 'EUR',
    source: 'tok_visa',
  });
  expect(charged.status).toBe(200);
  await waitForLedgerToCatchUp(environment.database, 30_000);
  asRole = new pg.Client({ connectionString: environment.database.gatewayUrl });
  await asRole.connect();
}, 90_000);
afterAll(async () => {
  await asRole?.end();
  await gateway?.stop();
  await environment?.cleanup();
});

async function refusal(sql: string): Promise<string | undefined> {
  try {
    await asRole.query(sql);
    return undefined;
  } catch (error) {
    return (error as { code?: string }).code;
  }
}

/** Every table's privileges for the role, as `SELECT, INSERT, UPDATE(col, …)`: what the migrations decided. */
const expectedGrants: Record<string, string> = {
  acquirer_authorizations: 'INSERT, SELECT',
  admin_audit: 'INSERT, SELECT',
  charges: 'INSERT, SELECT, UPDATE(amount_refunded, amount_reserved)',
  dead_letters: 'INSERT, SELECT, UPDATE(replay_job_id, replayed_at)',
  deployment_identity: 'SELECT',
  idempotency_audit: 'INSERT, SELECT',
  idempotency_keys: 'DELETE, INSERT, SELECT, UPDATE',
  idempotency_tombstones: 'DELETE, INSERT, SELECT, UPDATE',
  inbox_events: 'INSERT, SELECT',
  ledger_accounts: 'INSERT, SELECT',
  ledger_entries: 'INSERT, SELECT',
  ledger_transactions: 'INSERT, SELECT',
  merchants: 'INSERT, SELECT, UPDATE(api_key_hash, rate_limit_per_second)',
  outbox_events: 'INSERT, SELECT, UPDATE(claimed_until, published_at, republished_count)',
  refunds: 'INSERT, SELECT',
  schema_migrations: '',
};

describe('connected as the gateway role', () => {
  it('is the role, not a superuser, and cannot create objects', async () => {
    const { rows } = await asRole.query<{ user: string; superuser: boolean }>(
      'SELECT current_user AS user, rolsuper AS superuser FROM pg_roles WHERE rolname = current_user',
    );
    expect(rows[0]).toEqual({ user: gatewayRoleName, superuser: false });
    expect(await refusal('CREATE TABLE sneaky (id int)')).toBe('42501');
  });

  it('is refused TRUNCATE, UPDATE and DELETE on ledger, inbox and audit rows (permission denied)', async () => {
    for (const table of ['ledger_transactions', 'ledger_entries', 'inbox_events', 'idempotency_audit', 'admin_audit']) {
      expect(await refusal(`TRUNCATE ${table} CASCADE`), `TRUNCATE ${table}`).toBe('42501');
      expect(await refusal(`DELETE FROM ${table}`), `DELETE ${table}`).toBe('42501');
    }
    expect(await refusal('UPDATE ledger_entries SET amount = -amount')).toBe('42501');
    expect(await refusal('UPDATE ledger_transactions SET event_id = event_id')).toBe('42501');
    expect(await refusal('UPDATE inbox_events SET processed_at = now()')).toBe('42501');
    expect(await refusal('ALTER TABLE ledger_entries DISABLE TRIGGER ALL')).toBe('42501');
    // The rows are all still there.
    expect(await environment.database.count('SELECT count(*) FROM ledger_entries')).toBe(2);
    expect(await environment.database.count('SELECT count(*) FROM inbox_events')).toBe(1);
  });

  it('may move only the columns the money path moves', async () => {
    expect(await refusal('UPDATE charges SET amount = amount + 1')).toBe('42501');
    expect(await refusal("UPDATE charges SET status = 'FAILED'")).toBe('42501');
    expect(await refusal("UPDATE outbox_events SET payload = '{}'")).toBe('42501');
    expect(await refusal('DELETE FROM outbox_events')).toBe('42501');
    expect(await refusal('DELETE FROM charges')).toBe('42501');
    expect(await refusal('UPDATE acquirer_authorizations SET approved = true')).toBe('42501');
    expect(await refusal('UPDATE dead_letters SET payload = payload')).toBe('42501');
    expect(await refusal('UPDATE merchants SET id = id')).toBe('42501');
    // What the money path does do is allowed (and changes nothing here).
    expect(await refusal('UPDATE charges SET amount_reserved = amount_reserved WHERE false')).toBeUndefined();
    expect(await refusal('UPDATE outbox_events SET claimed_until = NULL WHERE false')).toBeUndefined();
  });

  it('has exactly the grants the migrations decided, table by table (a new table must decide too)', async () => {
    const { rows } = await environment.database.pool.query<{ table: string; grants: string }>(
      `SELECT c.relname AS table,
              concat_ws(', ',
                VARIADIC ARRAY(
                  SELECT p FROM unnest(ARRAY['DELETE', 'INSERT', 'SELECT', 'TRUNCATE', 'UPDATE']) AS p
                   WHERE has_table_privilege($1, c.oid, p)
                  UNION ALL
                  SELECT 'UPDATE(' || string_agg(a.attname, ', ' ORDER BY a.attname) || ')'
                    FROM pg_attribute a
                   WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
                     AND NOT has_table_privilege($1, c.oid, 'UPDATE')
                     AND has_column_privilege($1, c.oid, a.attnum, 'UPDATE')
                  HAVING count(*) > 0
                  ORDER BY 1)) AS grants
         FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = 'public' AND c.relkind = 'r'
        ORDER BY c.relname`,
      [gatewayRoleName],
    );
    expect(Object.fromEntries(rows.map((row) => [row.table, row.grants]))).toEqual(expectedGrants);
  });
});

describe('the gateways under test', () => {
  it('connect as the role: every session of the in-process gateway on this database is payments_gateway', async () => {
    const [row] = await gateway.database.prisma.$queryRaw<{ user: string }[]>`SELECT current_user AS user`;
    expect(row?.user).toBe(gatewayRoleName);
    const { rows } = await environment.database.pool.query<{ user: string }>(
      `SELECT DISTINCT usename AS user FROM pg_stat_activity
        WHERE datname = $1 AND application_name LIKE 'payments-%'`,
      [environment.database.name],
    );
    expect(rows.map((each) => each.user)).toEqual([gatewayRoleName]);
  });
});

describe('a production start', () => {
  const reachability = (databaseUrl: string) =>
    assertServicesReachable(
      { databaseUrl, redisUrl: environment.redisUrl, redisClusterNodes: [], redisCommandTimeoutMs: 2_000 },
      5_000,
    );

  it('refuses a role that can TRUNCATE the ledger, naming DATABASE_URL, and accepts the gateway role', async () => {
    await expect(reachability(environment.database.url)).rejects.toThrow(
      /^DATABASE_URL: the role "postgres" can TRUNCATE, UPDATE or DELETE ledger rows; connect as payments_gateway/,
    );
    await expect(reachability(environment.database.gatewayUrl)).resolves.toBeUndefined();
  });
});

describe('the migrate command on a password-authenticated server', () => {
  it('gives the role DATABASE_URL’s password, which the server then accepts (and a wrong one it refuses)', async () => {
    const folder = mkdtempSync(path.join(tmpdir(), 'pgw-hba-'));
    chmodSync(folder, 0o755);
    const hbaFile = path.join(folder, 'pg_hba.conf');
    // The owner keeps trust (as a local admin would); every other role needs its password.
    writeFileSync(
      hbaFile,
      'local all all trust\nhost all postgres 127.0.0.1/32 trust\nhost all all 127.0.0.1/32 scram-sha-256\n',
    );
    chmodSync(hbaFile, 0o644);
    const server = await startPrivatePostgres({ hba_file: hbaFile });
    try {
      const ownerUrl = withDatabase(server.url, 'payments');
      const password = 'p@ss word/with:odd#chars';
      const databaseUrl = gatewayRoleUrl(ownerUrl, password);
      const migrated = spawnSync(process.execPath, ['--import', 'tsx', 'src/cli/migrate.ts', 'up'], {
        cwd: repoRoot,
        env: { ...process.env, MIGRATION_DATABASE_URL: ownerUrl, DATABASE_URL: databaseUrl, MIGRATE_QUIET: '1' },
        encoding: 'utf8',
      });
      expect(migrated.status, `${migrated.stdout}${migrated.stderr}`).toBe(0);
      expect(migrated.stderr).toContain(`set the password of ${gatewayRoleName}`);

      const client = new pg.Client({ connectionString: databaseUrl });
      await client.connect();
      const { rows } = await client.query<{ user: string }>('SELECT current_user AS user');
      await client.end();
      expect(rows[0]?.user).toBe(gatewayRoleName);
      const wrong = new pg.Client({ connectionString: gatewayRoleUrl(ownerUrl, 'not-the-password') });
      await expect(wrong.connect()).rejects.toThrow(/password authentication failed/);
      await wrong.end().catch(() => undefined);
    } finally {
      await server.destroy();
      rmSync(folder, { recursive: true, force: true });
    }
  }, 120_000);
});

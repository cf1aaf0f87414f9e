/**
 * queryRows (src/platform/database.ts): the hot statements of src/idempotency/key-row.ts run as
 * named prepared statements on the pg pool instead of through Prisma's `$queryRaw`. They must
 * read the same rows, stay inside a transaction when given one, and fail the same way: every
 * database failure that answers 503 through Prisma answers 503 from the pool too (lock and
 * statement timeouts, a refused or ended connection, a pool with no free slot), and a bug stays
 * a bug (500) on both.
 */
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  isTransientDatabaseError,
  openDatabase,
  queryRows,
  sql,
  type DatabaseHandle,
  type Queryable,
  type Sql,
} from '../../src/platform/database';
import { toGatewayError } from '../../src/graphql/errors';
import { createTestDatabase, type TestDatabase } from '../helpers/database';
import { freePort } from '../../scripts/harness/redis';
import { inject } from 'vitest';

let database: TestDatabase;
let handle: DatabaseHandle;

const settings = (databaseUrl: string) => ({
  databaseUrl,
  databasePoolSizeMax: 2,
  databaseStatementTimeoutMs: 1_000,
  databaseLockTimeoutMs: 300,
  databasePoolConnectTimeoutMs: 1_000,
});

beforeAll(async () => {
  database = await createTestDatabase(inject('databaseUrl'));
  handle = openDatabase(settings(database.gatewayUrl));
});
afterAll(async () => {
  await handle?.close();
  await database?.drop();
});

/** The error of running `statement` through Prisma and through queryRows, in that order. */
async function bothErrors(db: DatabaseHandle, statement: () => Sql): Promise<[unknown, unknown]> {
  const throughPrisma = await db.prisma.$queryRaw(statement()).then(
    () => undefined,
    (error: unknown) => error,
  );
  const prepared = await queryRows(db.prisma, statement()).then(
    () => undefined,
    (error: unknown) => error,
  );
  return [throughPrisma, prepared];
}

function expectTransient(error: unknown): void {
  expect(error).toBeInstanceOf(Error);
  expect(isTransientDatabaseError(error)).toBe(true);
  const gatewayError = toGatewayError(error);
  expect(gatewayError?.code).toBe('TRANSIENT_FAILURE');
  expect(gatewayError?.httpStatus).toBe(503);
  expect(gatewayError?.retryAfterSeconds).toBe(1);
}

/** Runs `during` while the owner holds `lockSql` in an open transaction. */
async function whileLocked<T>(lockSql: string, during: () => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: database.url });
  await client.connect();
  try {
    await client.query('BEGIN');
    await client.query(lockSql);
    return await during();
  } finally {
    await client.query('ROLLBACK').catch(() => undefined);
    await client.end();
  }
}

describe('queryRows', () => {
  it('reads the same rows as $queryRaw, as a named prepared statement on the pool', async () => {
    const statement = () =>
      sql`SELECT ${'text'}::text AS t, ${42}::int AS n, ${true}::boolean AS b, ${null}::text AS nothing,
                 ${7} * interval '1 millisecond' < interval '1 second' AS untyped`;
    const prepared = await queryRows(handle.prisma, statement());
    expect(prepared).toEqual(await handle.prisma.$queryRaw(statement()));
    expect(prepared).toEqual([{ t: 'text', n: 42, b: true, nothing: null, untyped: true }]);
    // Both connections of the pool prepare it once and then reuse it.
    for (let run = 0; run < 4; run += 1) await queryRows(handle.prisma, statement());
    const names = await Promise.all(
      [0, 1].map(() =>
        queryRows<{ names: number }>(
          handle.prisma,
          sql`SELECT count(*)::int AS names FROM pg_prepared_statements WHERE name LIKE 'pgw\\_%'`,
        ),
      ),
    );
    for (const [row] of names) expect(row?.names).toBeGreaterThanOrEqual(1);
  });

  it('runs inside the transaction it is given (and so rolls back with it)', async () => {
    const seen = await handle.prisma.$transaction(async (tx) => {
      await tx.$executeRawUnsafe("SET LOCAL application_name = 'inside-the-transaction'");
      return queryRows<{ name: string }>(tx as Queryable, sql`SELECT current_setting('application_name') AS name`);
    });
    expect(seen).toEqual([{ name: 'inside-the-transaction' }]);
  });
});

describe('a failure answers the same through Prisma and from the pool', () => {
  it('lock timeout (55P03): 503 with Retry-After on both', async () => {
    const [throughPrisma, prepared] = await whileLocked('LOCK TABLE merchants IN ACCESS EXCLUSIVE MODE', () =>
      bothErrors(handle, () => sql`SELECT count(*)::int AS n FROM merchants`),
    );
    expectTransient(throughPrisma);
    expectTransient(prepared);
    expect((prepared as { code?: string }).code).toBe('55P03');
  });

  it('statement timeout (57014): 503 on both', async () => {
    const [throughPrisma, prepared] = await bothErrors(handle, () => sql`SELECT pg_sleep(${3})::text AS slept`);
    expectTransient(throughPrisma);
    expectTransient(prepared);
  });

  it('a session ended under the statement (57P01): 503 on both', async () => {
    const owner = new pg.Client({ connectionString: database.url });
    await owner.connect();
    try {
      const terminate = async () => {
        await new Promise((resolve) => setTimeout(resolve, 200));
        await owner.query(
          "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND query LIKE '%pg_sleep(0.9%' AND pid <> pg_backend_pid()",
          [database.name],
        );
      };
      for (const run of [
        () => handle.prisma.$queryRaw(sql`SELECT pg_sleep(0.9)::text AS slept`),
        () => queryRows(handle.prisma, sql`SELECT pg_sleep(0.9)::text AS slept`),
      ]) {
        const [error] = await Promise.all([
          run().then(
            () => undefined,
            (caught: unknown) => caught,
          ),
          terminate(),
        ]);
        expectTransient(error);
      }
    } finally {
      await owner.end();
    }
  });

  it.each([['127.0.0.1'], ['localhost']])('a refused connection (%s): 503 on both', async (host) => {
    const url = new URL(database.gatewayUrl);
    url.hostname = host;
    url.port = String(await freePort());
    const refused = openDatabase(settings(url.toString()));
    try {
      const [throughPrisma, prepared] = await bothErrors(refused, () => sql`SELECT 1::int AS one`);
      expectTransient(throughPrisma);
      expectTransient(prepared);
    } finally {
      await refused.close();
    }
  });

  it('a refusal from both addresses of a host (AggregateError, empty message): 503', () => {
    // What net.connect gives pg when a name resolves to ::1 and 127.0.0.1 and both refuse.
    const refusal = (address: string) =>
      Object.assign(new Error(`connect ECONNREFUSED ${address}:5432`), { code: 'ECONNREFUSED' });
    const both = Object.assign(new AggregateError([refusal('::1'), refusal('127.0.0.1')], ''), {
      code: 'ECONNREFUSED',
    });
    expectTransient(both);
    expectTransient(new AggregateError([refusal('::1')], ''));
  });

  it('no free slot in the pool within DATABASE_POOL_CONNECT_TIMEOUT_MS: 503 on both', async () => {
    const small = openDatabase({
      ...settings(database.gatewayUrl),
      databasePoolSizeMax: 1,
      databasePoolConnectTimeoutMs: 200,
    });
    const holder = await small.pool.connect();
    try {
      const [throughPrisma, prepared] = await bothErrors(small, () => sql`SELECT 1::int AS one`);
      expectTransient(throughPrisma);
      expectTransient(prepared);
    } finally {
      holder.release();
      await small.close();
    }
  });

  it('a bug (division by zero, 22012) stays a bug on both: no 503', async () => {
    const [throughPrisma, prepared] = await bothErrors(handle, () => sql`SELECT (1 / ${0}::int)::int AS n`);
    for (const error of [throughPrisma, prepared]) {
      expect(error).toBeInstanceOf(Error);
      expect(isTransientDatabaseError(error)).toBe(false);
      expect(toGatewayError(error)).toBeUndefined();
    }
  });
});

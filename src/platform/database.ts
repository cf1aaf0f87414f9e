/**
 * Postgres access: one pg pool per process, wrapped by Prisma's pg adapter. Every connection
 * carries statement_timeout and lock_timeout (docs/contract.md §11), so a request stuck behind a lock
 * becomes a retryable 503 instead of a hung connection.
 */
import { createHash } from 'node:crypto';
import pg from 'pg';
import { PrismaPg } from '@prisma/adapter-pg';
import { Prisma, PrismaClient } from '../generated/prisma/client';
import type { Config } from '../config';

/**
 * SQL fragments: a statement built from parts keeps every value a bound parameter
 * (`db.$queryRaw\`… ${fragment} …\`` flattens nested fragments), so no part is ever spliced as text.
 */
export const sql = Prisma.sql;
export const noSql = Prisma.empty;
export type Sql = Prisma.Sql;

export type Database = PrismaClient;
/** The client inside `prisma.$transaction(async (tx) => …)`. Functions that write in a transaction take it. */
export type Transaction = Omit<PrismaClient, '$connect' | '$disconnect' | '$on' | '$transaction' | '$extends'>;
/** Either the database or an open transaction: a statement that is atomic on its own runs on both. */
export type Queryable = Database | Transaction;

export interface DatabaseHandle {
  readonly prisma: Database;
  readonly pool: pg.Pool;
  close(): Promise<void>;
}

type DatabaseConfig = Pick<
  Config,
  'databaseUrl' | 'databasePoolSizeMax' | 'databaseStatementTimeoutMs' | 'databaseLockTimeoutMs'
> &
  Partial<Pick<Config, 'databasePoolConnectTimeoutMs'>>;

/** The default of DATABASE_POOL_CONNECT_TIMEOUT_MS, for scripts that build their settings by hand. */
const poolConnectTimeoutMsDefault = 5_000;

export function openDatabase(config: DatabaseConfig, applicationName = 'payments-gateway'): DatabaseHandle {
  const pool = new pg.Pool({
    connectionString: config.databaseUrl,
    max: config.databasePoolSizeMax,
    statement_timeout: config.databaseStatementTimeoutMs,
    lock_timeout: config.databaseLockTimeoutMs,
    // A transaction left open by a crashed request must not hold row locks for long.
    idle_in_transaction_session_timeout: config.databaseStatementTimeoutMs * 2,
    // Passed explicitly: pg's default (0) waits for a pool slot forever, which would hang requests
    // behind a stuck database instead of answering 503.
    connectionTimeoutMillis: config.databasePoolConnectTimeoutMs ?? poolConnectTimeoutMsDefault,
    application_name: applicationName,
  });
  // An idle client that loses its connection emits here; without a listener it would crash the process.
  pool.on('error', () => undefined);
  const checkedOut = trackCheckedOutClients(pool);
  const prisma = new PrismaClient({ adapter: new PrismaPg(pool) });
  poolUnder.set(prisma, pool);
  return {
    prisma,
    pool,
    async close() {
      await prisma.$disconnect();
      const ended = pool.end().catch(() => undefined);
      if (await settlesWithin(ended, closeWaitMs)) return;
      // A statement still runs: a ledger job given back to the queue at the end of the shutdown
      // grace, its statement waiting on a lock. pool.end() would wait for it as long as the
      // lock_timeout allows; cancelled, its transaction rolls back now (the job runs again
      // elsewhere, and the inbox keeps its effect at one).
      await cancelStatements(config.databaseUrl, checkedOut);
      await ended;
    },
  };
}

/** The pg pool under each client that openDatabase made (queryRows runs prepared statements on it). */
const poolUnder = new WeakMap<Queryable, pg.Pool>();

/**
 * The rows of one statement. On the database itself (not inside a transaction) it runs as a named
 * prepared statement on the pg pool under Prisma: Postgres parses and plans it once per
 * connection, and Prisma's raw-query path (its query compiler, the adapter's conversions) is not
 * run at all, which was a sixth of a new charge's CPU (docs/benchmarks.md). Inside a transaction,
 * or on a client openDatabase did not make, it runs through Prisma as `$queryRaw` would.
 *
 * Same connections, so the same statement_timeout, lock_timeout and role; the same errors for
 * isTransientDatabaseError (pg's own, with their SQLSTATE, or the socket's; test/platform/
 * prepared-statements.test.ts). Only for statements whose columns read the same through pg as
 * through Prisma: text, boolean, integer (not bigint, numeric or timestamps: cast those to text).
 */
export async function queryRows<T>(db: Queryable, statement: Sql): Promise<T[]> {
  const pool = poolUnder.get(db);
  if (pool === undefined) return db.$queryRaw<T[]>(statement);
  const text = statement.text;
  const result = await pool.query<T & pg.QueryResultRow>({
    name: statementName(text),
    text,
    values: statement.values,
  });
  return result.rows;
}

const statementNames = new Map<string, string>();
const statementNamesMax = 1_000;

/** A name per statement text (pg refuses one name for two texts): a digest of the text. */
function statementName(text: string): string {
  let name = statementNames.get(text);
  if (name === undefined) {
    name = `pgw_${createHash('sha256').update(text).digest('hex').slice(0, 24)}`;
    if (statementNames.size >= statementNamesMax) statementNames.clear();
    statementNames.set(text, name);
  }
  return name;
}

/** How long closing waits for running statements to end on their own before it cancels them. */
const closeWaitMs = 1_000;

function trackCheckedOutClients(pool: pg.Pool): ReadonlySet<pg.PoolClient> {
  const checkedOut = new Set<pg.PoolClient>();
  pool.on('acquire', (client) => checkedOut.add(client));
  pool.on('release', (_error, client) => checkedOut.delete(client));
  pool.on('remove', (client) => checkedOut.delete(client));
  return checkedOut;
}

async function settlesWithin(work: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const settled = await Promise.race([
    work.then(() => true),
    new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(false), ms))),
  ]);
  clearTimeout(timer);
  return settled;
}

/** Cancels the statements of the given clients (a role may cancel its own sessions' statements). */
async function cancelStatements(databaseUrl: string, clients: ReadonlySet<pg.PoolClient>): Promise<void> {
  // pg keeps each connection's backend pid on the client (`processID`), outside its typings.
  const pids = [...clients].map((client) => Reflect.get(client, 'processID')).filter(Number.isInteger);
  if (pids.length === 0) return;
  const canceller = new pg.Client({ connectionString: databaseUrl, connectionTimeoutMillis: 2_000 });
  canceller.on('error', () => undefined);
  try {
    await canceller.connect();
    await canceller.query('SELECT pg_cancel_backend(pid) FROM unnest($1::int[]) AS pid', [pids]);
  } catch {
    // Postgres is gone too: its sessions end with our process.
  } finally {
    await canceller.end().catch(() => undefined);
  }
}

/** True when the error is Postgres telling us something that may pass: timeouts, lost connections, serialization. */
export function isTransientDatabaseError(error: unknown): boolean {
  const code = findPostgresCode(error);
  if (code === undefined) {
    if (hasSocketErrorCode(error)) return true;
    const message = error instanceof Error ? error.message : String(error);
    // The last two are Prisma's interactive transaction giving up on time (P2028): no pool slot
    // within `maxWait`, or the transaction ran past `timeout`. Nothing it wrote was committed.
    return /ECONNREFUSED|ECONNRESET|ETIMEDOUT|Connection terminated|timeout exceeded|connect|Can't reach database|Unable to start a transaction in the given time|cannot be executed on an expired transaction/i.test(
      message,
    );
  }
  // 08: connection exceptions; 40: serialization failure and deadlock; 53: insufficient resources;
  // 57014: statement or lock timeout (query_canceled); 55P03: lock_not_available; 57P0x: shutdown.
  return /^(08|40|53|57P0)/.test(code) || code === '57014' || code === '55P03';
}

// Node's socket error codes. pg passes them on as they are (Prisma's adapter turns them into
// DatabaseNotReachable): a host with an IPv4 and an IPv6 address refuses with an AggregateError
// whose message is empty and whose code says what happened.
const socketErrorCodes = new Set(['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EPIPE', 'EHOSTUNREACH', 'ENETUNREACH']);

function hasSocketErrorCode(error: unknown): boolean {
  if (error === null || typeof error !== 'object') return false;
  const { code, errors } = error as { code?: unknown; errors?: unknown };
  if (typeof code === 'string' && socketErrorCodes.has(code)) return true;
  return Array.isArray(errors) && errors.some(hasSocketErrorCode);
}

/** The SQLSTATE Postgres answered with, however Prisma and the pg adapter wrapped it. */
export function postgresErrorCode(error: unknown): string | undefined {
  return findPostgresCode(error);
}

function findPostgresCode(error: unknown): string | undefined {
  let current: unknown = error;
  for (let depth = 0; depth < 5 && current !== null && typeof current === 'object'; depth += 1) {
    const record = current as Record<string, unknown>;
    for (const candidate of [record.code, (record.meta as Record<string, unknown> | undefined)?.code]) {
      if (typeof candidate === 'string' && /^[0-9A-Z]{5}$/.test(candidate) && !candidate.startsWith('P')) {
        return candidate;
      }
    }
    const driverError = (record.meta as Record<string, unknown> | undefined)?.driverAdapterError;
    current = driverError ?? record.cause;
  }
  return undefined;
}

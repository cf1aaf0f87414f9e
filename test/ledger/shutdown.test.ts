/**
 * SIGTERM under NODE_ENV=production, against the built output (dist/), while work is in flight
 * (docs/contract.md §5 "Shutdown has a deadline"):
 * - a worker mid-batch: its jobs are really running (each ledger statement waits on a lock the
 *   test holds on inbox_events). Released within SHUTDOWN_GRACE_MS, they finish; a second SIGTERM
 *   during the drain changes nothing; the process exits 0. Held past the grace, they go back to
 *   the queue, their statements are cancelled, and the process still exits 0. Either way BullMQ's
 *   active list is empty the moment the process is gone (nothing is left for the stalled
 *   checker), and once a worker drains the queue every effect is applied once, with no dead letter
 *   and no job ever counted as stalled;
 * - a relay whose publish hangs (its Redis frozen with SIGSTOP) while it holds a claim: it
 *   releases the claim (claimed_until cleared) and exits 0, and the events are published later.
 */
import { Redis } from 'ioredis';
import type { Queue } from 'bullmq';
import type pg from 'pg';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { jobIdFor, openLedgerQueue, type LedgerJobData } from '../../src/outbox/queue';
import { startChildGateway, type ChildGateway } from '../../scripts/harness/child-gateway';
import { startPrivateRedis, type PrivateRedis } from '../../scripts/harness/redis';
import { ensureBuilt } from '../helpers/built';
import { insertChargeEvents, insertMerchant, jobDataFor, outboxEvents } from '../helpers/events';
import { createTestEnvironment, startTestGateway, type TestEnvironment, type TestGateway } from '../helpers/gateway';
import { expectLedgerConsistent, waitFor } from '../helpers/ledger';

let environment: TestEnvironment;
let connection: Redis;
let queue: Queue<LedgerJobData>;
let privateRedis: PrivateRedis | undefined;
const children: ChildGateway[] = [];
const gateways: TestGateway[] = [];
const lockHolders: pg.PoolClient[] = [];

beforeAll(async () => {
  environment = await createTestEnvironment();
  connection = new Redis(environment.redisUrl, { maxRetriesPerRequest: null });
  queue = openLedgerQueue(connection, { prefix: `{${environment.redisKeyPrefix}}`, attemptsMax: 5 });
  ensureBuilt();
}, 300_000);
// A test that failed while holding the lock must not block the next one.
afterEach(async () => {
  for (const holder of lockHolders.splice(0)) {
    await holder.query('ROLLBACK').catch(() => undefined);
    holder.release();
  }
});
afterAll(async () => {
  for (const child of children) await child.kill('SIGKILL');
  for (const gateway of gateways) await gateway.stop();
  privateRedis?.signal('SIGCONT');
  await privateRedis?.stop();
  await queue?.close();
  connection?.disconnect();
  await environment?.cleanup();
});

/** The production configuration as shipped, with the test's database (as the gateway role) and Redis. */
function productionEnv(overrides: Record<string, string>): Record<string, string> {
  return environment.env({ NODE_ENV: 'production', LOG_LEVEL: 'info', ...overrides });
}

/** New charge events on the queue as the relay would publish them (evt_<uid>); returns their UUIDs. */
async function publishNewEvents(count: number): Promise<string[]> {
  const before = new Set((await outboxEvents(environment.database)).map((event) => event.id));
  await insertChargeEvents(environment.database, await insertMerchant(environment.database), count);
  const events = (await outboxEvents(environment.database)).filter((event) => !before.has(event.id));
  await queue.addBulk(
    events.map((event) => ({
      name: event.event_type,
      data: jobDataFor(event),
      opts: { jobId: jobIdFor(event.event_uid) },
    })),
  );
  return events.map((event) => event.event_uid);
}

/** Holds a lock that makes every ledger statement wait (they insert into inbox_events); reads go on. */
async function blockLedgerStatements(): Promise<() => Promise<void>> {
  const holder = await environment.database.pool.connect();
  lockHolders.push(holder);
  await holder.query('BEGIN');
  await holder.query('LOCK TABLE inbox_events IN SHARE MODE');
  let released = false;
  return async () => {
    if (released) return;
    released = true;
    await holder.query('COMMIT');
    lockHolders.splice(lockHolders.indexOf(holder), 1);
    holder.release();
  };
}

async function statementsWaitingOnTheLock(): Promise<number> {
  return environment.database.count(
    `SELECT count(*) FROM pg_stat_activity
      WHERE datname = $1 AND usename = 'payments_gateway' AND wait_event_type = 'Lock'`,
    [environment.database.name],
  );
}

/**
 * The worker holds `concurrency` jobs, and their ledger statements (the worker sends the events of
 * jobs that run together in one or two statements) wait on the lock.
 */
async function waitForABatchInFlight(concurrency: number): Promise<void> {
  await waitFor(
    async () =>
      (await queue.getJobCounts('active')).active === concurrency && (await statementsWaitingOnTheLock()) >= 1,
    60_000,
    'a batch in flight',
  );
}

async function inboxRowsFor(uids: readonly string[]): Promise<number> {
  return environment.database.count(
    "SELECT count(*) FROM inbox_events WHERE consumer = 'ledger' AND event_uid = ANY($1::uuid[])",
    [uids],
  );
}

/** A worker that drains the queue; then every effect is applied once, and no job ever stalled. */
async function drainAndCheck(uids: readonly string[]): Promise<void> {
  gateways.push(await startTestGateway(environment, { ROLE: 'worker' }));
  await waitFor(async () => (await inboxRowsFor(uids)) === uids.length, 60_000, 'every event applied');
  // The inbox row commits a moment before BullMQ hears the job completed.
  const unsettled = async () => {
    const counts = await queue.getJobCounts('active', 'waiting', 'delayed');
    return (counts.active ?? 0) + (counts.waiting ?? 0) + (counts.delayed ?? 0);
  };
  await waitFor(async () => (await unsettled()) === 0, 30_000, 'the queue to settle');
  expect((await queue.getJobCounts('failed')).failed).toBe(0);
  expect(
    await environment.database.count(
      `SELECT count(*) FROM ledger_transactions t JOIN outbox_events o ON o.id = t.event_id
        WHERE o.event_uid = ANY($1::uuid[])`,
      [uids],
    ),
  ).toBe(uids.length);
  expect(await environment.database.count('SELECT count(*) FROM dead_letters')).toBe(0);
  const jobs = await Promise.all(uids.map((uid) => queue.getJob(jobIdFor(uid))));
  expect(jobs.map((job) => job?.stalledCounter ?? -1)).toEqual(uids.map(() => 0));
  // One attempt each, the one that applied it: a hold or a give-back spends none.
  expect(jobs.map((job) => job?.attemptsMade ?? -1)).toEqual(uids.map(() => 1));
  await expectLedgerConsistent(environment.database);
  await gateways.pop()?.stop();
}

describe('a built worker under NODE_ENV=production, SIGTERMed mid-batch', () => {
  it('lets the running jobs finish within SHUTDOWN_GRACE_MS, ignores a second SIGTERM, exits 0, and leaves no job stalled', async () => {
    const concurrency = 6;
    const shutdownGraceMs = 20_000;
    const release = await blockLedgerStatements();
    const uids = await publishNewEvents(concurrency * 3);
    const worker = await startChildGateway(
      productionEnv({
        ROLE: 'worker',
        WORKER_CONCURRENCY: String(concurrency),
        SHUTDOWN_GRACE_MS: String(shutdownGraceMs),
        // The statements wait on the test's lock instead of timing out (production's 2 s and 5 s).
        DATABASE_LOCK_TIMEOUT_MS: '120000',
        DATABASE_STATEMENT_TIMEOUT_MS: '120000',
      }),
      { built: true, readyTimeoutMs: 60_000 },
    );
    children.push(worker);
    await waitForABatchInFlight(concurrency);

    const signalled = Date.now();
    worker.process.kill('SIGTERM');
    await waitFor(async () => worker.output().includes('shutting down'), 20_000, 'the drain to begin');
    worker.process.kill('SIGTERM');
    await waitFor(async () => worker.output().includes('already shutting down'), 20_000, 'the second SIGTERM');
    expect(worker.process.exitCode).toBeNull();
    await release();
    const exit = await worker.exited;

    expect(exit, worker.output()).toEqual({ code: 0, signal: null });
    expect(Date.now() - signalled).toBeLessThan(shutdownGraceMs);
    // The batch finished; the rest were never taken; nothing is left active for the stalled checker.
    expect(await inboxRowsFor(uids)).toBe(concurrency);
    expect(await queue.getJobCounts('active', 'waiting')).toEqual({ active: 0, waiting: uids.length - concurrency });
    expect(worker.output()).not.toContain('did not stop cleanly');
    await drainAndCheck(uids);
  }, 180_000);

  it('gives jobs still running after SHUTDOWN_GRACE_MS back to the queue, cancels their statements, and exits 0', async () => {
    const concurrency = 4;
    const shutdownGraceMs = 3_000;
    const release = await blockLedgerStatements();
    const uids = await publishNewEvents(concurrency * 2);
    const worker = await startChildGateway(
      productionEnv({
        ROLE: 'worker',
        WORKER_CONCURRENCY: String(concurrency),
        SHUTDOWN_GRACE_MS: String(shutdownGraceMs),
        DATABASE_LOCK_TIMEOUT_MS: '120000',
        DATABASE_STATEMENT_TIMEOUT_MS: '120000',
      }),
      { built: true, readyTimeoutMs: 60_000 },
    );
    children.push(worker);
    await waitForABatchInFlight(concurrency);

    const signalled = Date.now();
    worker.process.kill('SIGTERM');
    const exit = await worker.exited;
    const stopMs = Date.now() - signalled;
    try {
      expect(exit, worker.output()).toEqual({ code: 0, signal: null });
      expect(stopMs).toBeGreaterThanOrEqual(shutdownGraceMs);
      expect(stopMs).toBeLessThan(shutdownGraceMs + 10_000);
      expect(worker.output()).toContain('giving running jobs back to the queue');
      // Gone, and its jobs are not active: they wait again (delayed until now), unapplied.
      expect((await queue.getJobCounts('active')).active, worker.output()).toBe(0);
      expect(await statementsWaitingOnTheLock()).toBe(0);
      expect(await inboxRowsFor(uids)).toBe(0);
    } finally {
      await release();
    }
    await drainAndCheck(uids);
  }, 180_000);
});

describe('a built relay under NODE_ENV=production, SIGTERMed while its publish hangs', () => {
  it('releases its claim (claimed_until cleared) and exits 0; the events are published afterwards, each applied once', async () => {
    privateRedis = await startPrivateRedis();
    const relay = await startChildGateway(
      productionEnv({
        ROLE: 'relay',
        REDIS_URL: privateRedis.url,
        RELAY_RATE_PER_SECOND: '0',
        // A long lease: without the release, the claim would keep other relays off for a minute.
        RELAY_CLAIM_LEASE_MS: '60000',
        SHUTDOWN_GRACE_MS: '5000',
        SWEEPER_INTERVAL_MS: '3600000',
      }),
      { built: true, readyTimeoutMs: 60_000 },
    );
    children.push(relay);
    privateRedis.signal('SIGSTOP');
    const before = new Set((await outboxEvents(environment.database)).map((event) => event.id));
    await insertChargeEvents(environment.database, await insertMerchant(environment.database), 10);
    const uids = (await outboxEvents(environment.database))
      .filter((event) => !before.has(event.id))
      .map((event) => event.event_uid);
    const claimed = () =>
      environment.database.count(
        `SELECT count(*) FROM outbox_events
          WHERE event_uid = ANY($1::uuid[]) AND claimed_until > now() AND published_at IS NULL`,
        [uids],
      );
    await waitFor(async () => (await claimed()) === uids.length, 30_000, 'the relay to claim the events');

    const signalled = Date.now();
    relay.process.kill('SIGTERM');
    const exit = await relay.exited;

    expect(exit, relay.output()).toEqual({ code: 0, signal: null });
    expect(Date.now() - signalled).toBeLessThan(15_000);
    expect(relay.output()).toContain('releasing its claim');
    expect(await claimed()).toBe(0);
    expect(
      await environment.database.count(
        'SELECT count(*) FROM outbox_events WHERE event_uid = ANY($1::uuid[]) AND claimed_until IS NULL AND published_at IS NULL',
        [uids],
      ),
    ).toBe(uids.length);

    privateRedis.signal('SIGCONT');
    gateways.push(await startTestGateway(environment, { ROLE: 'all', REDIS_URL: privateRedis.url }));
    await waitFor(async () => (await inboxRowsFor(uids)) === uids.length, 60_000, 'the released events applied').catch(
      async (error: unknown) => {
        const { rows } = await environment.database.pool.query(
          'SELECT id, claimed_until, published_at FROM outbox_events WHERE event_uid = ANY($1::uuid[])',
          [uids],
        );
        throw new Error(`${String(error)}: ${JSON.stringify(rows)} inbox=${await inboxRowsFor(uids)}`);
      },
    );
    expect(await environment.database.count('SELECT count(*) FROM dead_letters')).toBe(0);
    await expectLedgerConsistent(environment.database);
  }, 180_000);
});

/**
 * An admin change and its admin_audit row commit in one transaction (issue 14, "Audit and data").
 * The audit write is made to fail for real, over HTTP on the admin endpoint, and the committed
 * rows show that the change did not happen:
 *   - a lock held on admin_audit past the lock timeout: 503 with Retry-After, key not rotated;
 *   - a trigger added only to this test's database that refuses every successful audit row:
 *     each mutation answers 500 and changes nothing (merchant, key, limit, dead letter, purge).
 * A dead-letter replay commits its mark and audit row first and queues the job after: with Redis
 * down the operator gets 503 (the replay is recorded, audited, and the failure too), and calling
 * again queues the same job id; a replay whose job never reached Redis is published again by the
 * sweeper, which trusts only Postgres. Redis is a private server.
 */
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { Redis } from 'ioredis';
import type pg from 'pg';
import { jobIdFor, openLedgerQueue, type LedgerJobData } from '../../src/outbox/queue';
import { hashApiKey } from '../../src/merchants/merchants';
import { Sweeper } from '../../src/outbox/sweeper';
import { createLogger } from '../../src/platform/logger';
import { startPrivateRedis, type PrivateRedis } from '../../scripts/harness/redis';
import { insertChargeEvents, jobDataFor, outboxEvents } from '../helpers/events';
import { createTestEnvironment, startTestGateway, type TestEnvironment, type TestGateway } from '../helpers/gateway';
import { createCharge } from '../helpers/http';
import { waitFor } from '../helpers/ledger';
import type { Queue } from 'bullmq';

// Starts a private Redis and up to three gateways; the default 60 s per test is tight on a busy machine.
vi.setConfig({ testTimeout: 120_000 });

const adminToken = 'admin-token-for-audit-tests-0123456789';
const lockTimeoutMs = 400;
let redis: PrivateRedis;
let environment: TestEnvironment;
let gateway: TestGateway;
let queueConnection: Redis;
let ledgerQueue: Queue<LedgerJobData>;

interface AdminAnswer<Data> {
  status: number;
  retryAfter: string | null;
  body: { data?: Data | null; errors?: { message: string; extensions?: { code?: string } }[] };
}

async function admin<Data = Record<string, unknown>>(query: string): Promise<AdminAnswer<Data>> {
  const response = await fetch(`${gateway.url}/admin/graphql`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${adminToken}` },
    body: JSON.stringify({ query }),
  });
  return {
    status: response.status,
    retryAfter: response.headers.get('retry-after'),
    body: (await response.json()) as AdminAnswer<Data>['body'],
  };
}

const charge = (apiKey: string, key: string) =>
  createCharge(gateway.url, apiKey, key, { amount: 100, currency: 'USD', source: 'tok_visa' });

async function keyHash(merchantId: string): Promise<string | null> {
  const { rows } = await environment.database.pool.query<{ api_key_hash: string | null }>(
    'SELECT api_key_hash FROM merchants WHERE id = $1',
    [merchantId],
  );
  return rows[0]!.api_key_hash;
}

async function auditRows(action: string): Promise<{ result: string }[]> {
  const { rows } = await environment.database.pool.query<{ result: string }>(
    'SELECT result FROM admin_audit WHERE action = $1 ORDER BY id',
    [action],
  );
  return rows;
}

/** A dead letter of a published charge event, as the worker records one; returns its id and replay job id. */
async function plantDeadLetter(): Promise<{ id: string; replayJobId: string; eventUid: string }> {
  await insertChargeEvents(environment.database, gateway.merchantId, 1);
  const event = (await outboxEvents(environment.database)).at(-1)!;
  await environment.database.pool.query(
    "UPDATE outbox_events SET published_at = now() - interval '1 hour' WHERE id = $1",
    [event.id],
  );
  const { rows } = await environment.database.pool.query<{ id: string }>(
    `INSERT INTO dead_letters (queue, job_id, event_id, event_uid, payload, error_code, error_message, attempts)
     VALUES ('ledger', $1, $2, $3, $4, 'LEDGER_BUG', 'planted by the test', 5) RETURNING id::text`,
    [jobIdFor(event.event_uid), event.id, event.event_uid, JSON.stringify(jobDataFor(event))],
  );
  const id = rows[0]!.id;
  return { id, replayJobId: jobIdFor(event.event_uid, { replayOf: id }), eventUid: event.event_uid };
}

beforeAll(async () => {
  redis = await startPrivateRedis();
  environment = await createTestEnvironment({ redisUrl: redis.url });
  // The api role alone: no relay or worker consumes what a test queues, so the queue shows it.
  gateway = await startTestGateway(environment, {
    ROLE: 'api',
    ADMIN_TOKEN: adminToken,
    MERCHANT_CACHE_TTL_MS: '0',
    DATABASE_LOCK_TIMEOUT_MS: String(lockTimeoutMs),
    IDEMPOTENCY_RETENTION_HOURS: '1',
  });
  queueConnection = new Redis(redis.url, { maxRetriesPerRequest: null });
  queueConnection.on('error', () => undefined);
  ledgerQueue = openLedgerQueue(queueConnection, { prefix: `{${environment.redisKeyPrefix}}`, attemptsMax: 5 });
  // Redis is stopped on purpose below: its connection errors are expected.
  ledgerQueue.on('error', () => undefined);
});
afterAll(async () => {
  await ledgerQueue?.close();
  queueConnection?.disconnect();
  await gateway?.stop();
  await redis?.stop();
  await environment?.cleanup();
});

describe('a lock held on admin_audit past the lock timeout', () => {
  it('answers 503 with Retry-After, and the key is not rotated; released, the rotation commits with its row', async () => {
    const hashBefore = await keyHash(gateway.merchantId);
    const locker: pg.PoolClient = await environment.database.pool.connect();
    try {
      await locker.query('BEGIN');
      // SHARE ROW EXCLUSIVE conflicts with the ROW EXCLUSIVE lock an INSERT takes.
      await locker.query('LOCK TABLE admin_audit IN SHARE ROW EXCLUSIVE MODE');
      const refused = await admin(`mutation { rotateApiKey(merchantId: "${gateway.merchantId}") { apiKey } }`);
      expect(refused.status).toBe(503);
      expect(refused.body.errors?.[0]?.extensions?.code).toBe('TRANSIENT_FAILURE');
      expect(Number(refused.retryAfter)).toBeGreaterThanOrEqual(1);
    } finally {
      await locker.query('ROLLBACK');
      locker.release();
    }
    // The merchant update ran before the audit insert waited: it was rolled back with it.
    expect(await keyHash(gateway.merchantId)).toBe(hashBefore);
    expect((await charge(gateway.apiKey, 'lock-1')).status).toBe(200);
    expect(await auditRows('rotateApiKey')).toEqual([]);

    const rotated = await admin<{ rotateApiKey: { apiKey: string } }>(
      `mutation { rotateApiKey(merchantId: "${gateway.merchantId}") { apiKey } }`,
    );
    expect(rotated.status).toBe(200);
    const newKey = rotated.body.data!.rotateApiKey.apiKey;
    expect(await keyHash(gateway.merchantId)).toBe(hashApiKey(newKey));
    expect((await charge(gateway.apiKey, 'lock-2')).status).toBe(401);
    expect((await charge(newKey, 'lock-2')).status).toBe(200);
    const rows = await auditRows('rotateApiKey');
    expect(rows).toHaveLength(1);
    expect(rows[0]!.result).toContain(gateway.merchantId);
    expect(rows[0]!.result).not.toContain(newKey);
  });
});

describe('an audit write that fails (a trigger refuses every successful audit row)', () => {
  it('rolls back each mutation: nothing changes, and the failed attempt is on the trail', async () => {
    const target = await gateway.newMerchant('Audit target');
    const letter = await plantDeadLetter();
    await charge(target.apiKey, 'purge-me');
    await environment.database.pool.query(
      "UPDATE idempotency_keys SET updated_at = now() - interval '2 hours' WHERE key = 'purge-me'",
    );
    const count = (sql: string, params: unknown[] = []) => environment.database.count(sql, params);
    const merchantsBefore = await count('SELECT count(*) FROM merchants');
    const auditBefore = await count('SELECT coalesce(max(id), 0) AS count FROM admin_audit');
    const hashBefore = await keyHash(target.id);

    await environment.database.pool.query(`
      CREATE FUNCTION test_refuse_audit() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN
        IF NEW.result IS NULL OR NEW.result NOT LIKE '{"error"%' THEN
          RAISE EXCEPTION 'admin_audit refused by the test';
        END IF;
        RETURN NEW;
      END $$;
      CREATE TRIGGER test_refuse_audit BEFORE INSERT ON admin_audit
        FOR EACH ROW EXECUTE FUNCTION test_refuse_audit();`);
    const mutations = {
      createMerchant: 'mutation { createMerchant(name: "Never made") { apiKey } }',
      rotateApiKey: `mutation { rotateApiKey(merchantId: "${target.id}") { apiKey } }`,
      revokeApiKey: `mutation { revokeApiKey(merchantId: "${target.id}") }`,
      setMerchantRateLimit: `mutation { setMerchantRateLimit(merchantId: "${target.id}", perSecond: 7) { id } }`,
      replayDeadLetter: `mutation { replayDeadLetter(id: "${letter.id}") { replayJobId } }`,
      purgeExpiredIdempotencyKeys: 'mutation { purgeExpiredIdempotencyKeys }',
    };
    try {
      for (const [action, mutation] of Object.entries(mutations)) {
        const answer = await admin(mutation);
        expect({ action, status: answer.status, code: answer.body.errors?.[0]?.extensions?.code }).toEqual({
          action,
          status: 500,
          code: 'INTERNAL',
        });
        const rows = await auditRows(action);
        expect(rows.map((row) => JSON.parse(row.result) as unknown)).toContainEqual(
          expect.objectContaining({ error: 'INTERNAL' }),
        );
      }
    } finally {
      await environment.database.pool.query(
        'DROP TRIGGER test_refuse_audit ON admin_audit; DROP FUNCTION test_refuse_audit()',
      );
    }

    // Nothing committed: no merchant, same key (still working), no limit, letter unmarked and
    // not queued, the expired key still there.
    expect(await count('SELECT count(*) FROM merchants')).toBe(merchantsBefore);
    expect(await keyHash(target.id)).toBe(hashBefore);
    expect((await charge(target.apiKey, 'after-refusals')).status).toBe(200);
    expect(await count('SELECT count(*) FROM merchants WHERE rate_limit_per_second IS NOT NULL')).toBe(0);
    expect(await count('SELECT count(*) FROM dead_letters WHERE replayed_at IS NOT NULL')).toBe(0);
    expect(await ledgerQueue.getJob(letter.replayJobId)).toBeUndefined();
    expect(await count("SELECT count(*) FROM idempotency_keys WHERE key = 'purge-me'")).toBe(1);
    expect(await count('SELECT count(*) FROM idempotency_tombstones')).toBe(0);
    expect(
      await count(`SELECT count(*) FROM admin_audit WHERE id > $1 AND result NOT LIKE '{"error"%'`, [auditBefore]),
    ).toBe(0);

    // With the audit writable again, the purge commits each batch with its own audit row.
    const purged = await admin<{ purgeExpiredIdempotencyKeys: number }>(mutations.purgeExpiredIdempotencyKeys);
    expect(purged.body.data?.purgeExpiredIdempotencyKeys).toBe(1);
    expect(await count("SELECT count(*) FROM idempotency_keys WHERE key = 'purge-me'")).toBe(0);
    const purgeRows = await auditRows('purgeExpiredIdempotencyKeys');
    expect(purgeRows.map((row) => JSON.parse(row.result) as unknown)).toContainEqual({ purgedKeys: 1, batch: 1 });
  });
});

describe('a dead-letter replay while Redis is down', () => {
  it('records and audits the replay, answers 503, and queues the same job id when called again', async () => {
    const letter = await plantDeadLetter();
    await redis.stop();
    let refused: AdminAnswer<unknown>;
    try {
      refused = await admin(`mutation { replayDeadLetter(id: "${letter.id}") { replayJobId } }`);
    } finally {
      await redis.start();
    }
    expect(refused.status).toBe(503);
    expect(refused.body.errors?.[0]?.extensions?.code).toBe('TRANSIENT_FAILURE');
    // Committed with its audit row before the queue was asked; the failed queueing is audited too.
    const { rows } = await environment.database.pool.query<{ replay_job_id: string | null }>(
      'SELECT replay_job_id FROM dead_letters WHERE id = $1',
      [letter.id],
    );
    expect(rows[0]!.replay_job_id).toBe(letter.replayJobId);
    const results = (await auditRows('replayDeadLetter')).map(
      (row) => JSON.parse(row.result) as Record<string, unknown>,
    );
    expect(results.filter((result) => result.replayJobId === letter.replayJobId)).toHaveLength(1);
    expect(results).toContainEqual({ error: 'TRANSIENT_FAILURE', committed: true });

    // Redis came back empty: the operator calls again and the same job id is queued.
    await waitFor(
      async () => (await admin(`mutation { replayDeadLetter(id: "${letter.id}") { replayJobId } }`)).status === 200,
      30_000,
      'the replay to be queued once Redis is back',
    );
    const job = await ledgerQueue.getJob(letter.replayJobId);
    expect(job?.data.eventUid).toBe(letter.eventUid);
  });
});

describe('a replay recorded but never queued (the process died between the commit and the add)', () => {
  it('is published again by the sweeper, which leaves a replay whose job is queued alone', async () => {
    const lost = await plantDeadLetter();
    // What a crash right after the commit leaves: the mark and its audit row, no job.
    await environment.database.pool.query(
      'UPDATE dead_letters SET replayed_at = now(), replay_job_id = $1 WHERE id = $2',
      [lost.replayJobId, lost.id],
    );
    const queued = await plantDeadLetter();
    expect((await admin(`mutation { replayDeadLetter(id: "${queued.id}") { replayJobId } }`)).status).toBe(200);
    expect(await ledgerQueue.getJobState(queued.replayJobId)).toBe('waiting');

    const sweeper = new Sweeper(
      {
        db: gateway.database.prisma,
        queue: ledgerQueue,
        logger: createLogger('silent'),
        onRepublished: () => undefined,
      },
      { graceMs: 0, intervalMs: 3_600_000, batchSizeMax: 100, publishTimeoutMs: 10_000 },
    );
    expect(await sweeper.sweepOnce()).toBe(1);
    expect((await ledgerQueue.getJob(jobIdFor(lost.eventUid, { sweep: 1 })))?.data.eventUid).toBe(lost.eventUid);
    expect(
      await environment.database.count('SELECT republished_count AS count FROM outbox_events WHERE event_uid = $1', [
        queued.eventUid,
      ]),
    ).toBe(0);
  });
});

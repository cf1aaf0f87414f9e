/**
 * A late retry that races retention's purge of its key is refused (422 IDEMPOTENCY_KEY_EXPIRED),
 * never charged a second time (docs/idempotency.md, "Tombstones").
 *
 * `claimKey` refuses a purged key with `WHERE NOT EXISTS (tombstone)`, evaluated in the INSERT's
 * snapshot, then `ON CONFLICT (merchant_id, key) DO NOTHING`. When the purge had deleted the row
 * but not committed yet, the claim's snapshot saw neither the tombstone nor (after the INSERT
 * waited for the purge to commit) the row: the INSERT went ahead, a new key row was created and
 * the acquirer was called with a new derived key, a second charge. Now a trigger on the key rows
 * reads the tombstones after the insert, with a fresh snapshot, and refuses such a claim.
 *
 * The first test holds the window (the purge between its DELETE and its commit) open with an
 * uncommitted tombstone row for the same key in another session, which makes the purge's
 * tombstone INSERT wait; the real purge and the real request run unmodified. The second holds
 * nothing open: 40 retries during a purge of 5,000 keys (before the fix, 7 of the 40 in each of two
 * runs were charged anew: new charge rows, new authorizations).
 */
import pg from 'pg';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { purgeExpiredIdempotencyKeys } from '../../src/idempotency/key-row';
import { createTestEnvironment, startTestGateway, type TestEnvironment, type TestGateway } from '../helpers/gateway';
import { createCharge, type ChargeInputForTest } from '../helpers/http';
import { waitFor } from '../helpers/ledger';

let environment: TestEnvironment;
let gateway: TestGateway;
const visa: ChargeInputForTest = { amount: 4_200, currency: 'USD', source: 'tok_visa' };

beforeAll(async () => {
  environment = await createTestEnvironment();
  gateway = await startTestGateway(environment, { ROLE: 'api', DATABASE_LOCK_TIMEOUT_MS: '15000' });
});
afterAll(async () => {
  await gateway?.stop();
  await environment?.cleanup();
});

const lockWaiters = () =>
  environment.database.count(
    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'",
  );

describe('a late retry racing the purge of its key', () => {
  it('is answered IDEMPOTENCY_KEY_EXPIRED and never charged a second time', async () => {
    const key = 'review-purge-race';
    const first = await createCharge(gateway.url, gateway.apiKey, key, visa);
    expect(first.status, first.text).toBe(200);

    // Past retention (72 h by default); Redis's answer (TTL ≤ retention) is gone by then.
    await environment.database.pool.query(
      "UPDATE idempotency_keys SET updated_at = now() - interval '100 hours' WHERE key = $1",
      [key],
    );
    const redis = new Redis(environment.redisUrl, { maxRetriesPerRequest: 1 });
    await redis.del(`${environment.redisKeyPrefix}:idem:{${gateway.merchantId}}:${key}`);
    redis.disconnect();

    const holder = new pg.Client({ connectionString: environment.database.url });
    await holder.connect();
    try {
      await holder.query('BEGIN');
      await holder.query(
        `INSERT INTO idempotency_tombstones (merchant_id, key, operation, fingerprint, first_request_at)
         SELECT merchant_id, key, operation, fingerprint, created_at FROM idempotency_keys WHERE key = $1`,
        [key],
      );
      // The real purge: it deletes the row, then waits to write its tombstone.
      const purge = purgeExpiredIdempotencyKeys(gateway.database.prisma, { retentionHours: 72, batchSizeMax: 100 });
      await waitFor(async () => (await lockWaiters()) >= 1, 30_000, 'the purge to have deleted the row');
      // The client's late retry, same key, same body.
      const retry = createCharge(gateway.url, gateway.apiKey, key, visa);
      await waitFor(async () => (await lockWaiters()) >= 2, 30_000, 'the retry to wait behind the purge');
      await holder.query('ROLLBACK');
      expect(await purge).toBe(1);
      const late = await retry;

      const charges = await environment.database.count('SELECT count(*) FROM charges WHERE merchant_id = $1', [
        gateway.merchantId,
      ]);
      const authorizations = await environment.database.count(
        "SELECT count(*) FROM acquirer_authorizations WHERE kind = 'charge'",
      );
      expect({ status: late.status, code: late.body.errors?.[0]?.extensions?.code, charges, authorizations }).toEqual({
        status: 422,
        code: 'IDEMPOTENCY_KEY_EXPIRED',
        charges: 1,
        authorizations: 1,
      });
    } finally {
      await holder.query('ROLLBACK').catch(() => undefined);
      await holder.end();
    }
  });

  it('without any lock held open: retries sent while a large purge runs are never charged anew', async () => {
    // 5,000 finished keys past retention (copies of one real charge's key row, same body), purged
    // in one batch; 40 late retries of some of them arrive while the purge statement runs.
    const seed = await createCharge(gateway.url, gateway.apiKey, 'bulk-seed', visa);
    expect(seed.status, seed.text).toBe(200);
    await environment.database.pool.query(
      `INSERT INTO idempotency_keys (merchant_id, key, operation, fingerprint, request_payload, state, recovery_point,
                                     lock_token, acquirer_result, response_status, response_code, response_body,
                                     created_at, updated_at, completed_at)
       SELECT merchant_id, 'bulk-' || n, operation, fingerprint, request_payload, state, recovery_point, lock_token,
              acquirer_result, response_status, response_code, response_body, created_at,
              now() - interval '100 hours' + n * interval '1 millisecond', completed_at
         FROM idempotency_keys, generate_series(1, 5000) AS n WHERE key = 'bulk-seed'`,
    );
    const chargesBefore = await environment.database.count('SELECT count(*) FROM charges');
    const purge = purgeExpiredIdempotencyKeys(gateway.database.prisma, { retentionHours: 72, batchSizeMax: 5_000 });
    const retries = await Promise.all(
      Array.from({ length: 40 }, (_, index) =>
        createCharge(gateway.url, gateway.apiKey, `bulk-${4_960 + index}`, visa),
      ),
    );
    const purged = await purge;
    // A retry that reached its row before the purge did is replayed (200, Idempotent-Replayed: true).
    const chargedAnew = retries.filter(
      (answer) => answer.status === 200 && answer.headers.get('idempotent-replayed') !== 'true',
    ).length;
    const statuses = retries.map((answer) => answer.body.errors?.[0]?.extensions?.code ?? answer.status).join(',');
    expect(
      {
        chargedAnew,
        newCharges: (await environment.database.count('SELECT count(*) FROM charges')) - chargesBefore,
      },
      `purged ${purged}; answers: ${statuses}`,
    ).toEqual({ chargedAnew: 0, newCharges: 0 });
  });
});

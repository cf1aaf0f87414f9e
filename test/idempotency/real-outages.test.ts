/**
 * Real outages on the money path, over HTTP (issue 10, docs/contract.md §2–§3): Postgres stopped
 * (a private cluster from initdb, never the shared server) and Redis stopped (a private
 * redis-server). Postgres down: createCharge and refundCharge answer 503 TRANSIENT_FAILURE with
 * Retry-After, and once it is back the retry with the same key charges or refunds exactly once.
 * Redis down: Redis may only make things faster, so both succeed from Postgres alone, once.
 */
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  createTestEnvironment,
  startGatewayOnPrivateRedis,
  startTestGateway,
  type PrivateRedisGateway,
  type TestEnvironment,
  type TestGateway,
} from '../helpers/gateway';
import { createCharge, expectTransientFailure, postGraphql, type GraphqlAnswer } from '../helpers/http';
import { waitFor } from '../helpers/ledger';
import { startPrivateTestDatabase, type PrivateTestDatabase } from '../helpers/private-postgres';
import { authorizationsForKey, chargesForKey, refundsForKey } from '../helpers/money-rows';

const visa = { amount: 2500, currency: 'USD', source: 'tok_visa' };
const leaseMs = 7_000;
const refundMutation = `mutation Refund($input: RefundChargeInput!) { refundCharge(input: $input) { id amount status } }`;

function refund(gateway: TestGateway, key: string, input: Record<string, unknown>): Promise<GraphqlAnswer> {
  return postGraphql(
    gateway.url,
    { query: refundMutation, variables: { input } },
    { authorization: `Bearer ${gateway.apiKey}`, 'idempotency-key': key },
  );
}

/**
 * The client's retry with the same key, as the SDK makes it: after what Retry-After says, again
 * while the answer is 503 (the pool reconnects to a Postgres that has just come back) or 409 (the
 * key is still leased), within a deadline.
 */
async function retryUntilAnswered<Data>(
  first: GraphqlAnswer<Data>,
  send: () => Promise<GraphqlAnswer<Data>>,
  deadlineMs = 40_000,
): Promise<GraphqlAnswer<Data>> {
  const giveUpAt = Date.now() + deadlineMs;
  let answer = first;
  while ((answer.status === 503 || answer.status === 409) && Date.now() < giveUpAt) {
    const retryAfterSeconds = Number(answer.headers.get('retry-after'));
    expect(retryAfterSeconds, 'a 503 or 409 always says when to retry').toBeGreaterThanOrEqual(1);
    await new Promise((resolve) => setTimeout(resolve, retryAfterSeconds * 1_000));
    answer = await send();
  }
  return answer;
}

describe('with Postgres stopped (a private cluster)', () => {
  let postgres: PrivateTestDatabase;
  let environment: TestEnvironment;
  let gateway: TestGateway;
  beforeAll(async () => {
    postgres = await startPrivateTestDatabase();
    environment = await createTestEnvironment();
    gateway = await startTestGateway(environment, {
      DATABASE_URL: postgres.database.url,
      ROLE: 'api',
      // The merchant stays authenticated from the cache while Postgres is down, so the 503s below
      // come from the money path itself (authentication's own 503 has a test of its own).
      MERCHANT_CACHE_TTL_MS: '300000',
      // The acquirer waits up to 6 s, so a request is surely still in flight when Postgres stops;
      // the lease must outlive it. A key claimed when Postgres went away cannot be released and
      // frees when its lease runs out.
      ACQUIRER_TIMEOUT_MS: '6000',
      IDEMPOTENCY_LEASE_MS: String(leaseMs),
    });
  });
  afterAll(async () => {
    await gateway?.stop();
    await postgres?.destroy();
    await environment?.cleanup();
  });

  it('answers 503 with Retry-After to createCharge and refundCharge; back up, each retry moves money once', async () => {
    const database = postgres.database;
    const paid = await createCharge(gateway.url, gateway.apiKey, 'pg-outage-paid', visa);
    expect(paid.status).toBe(200);
    const chargeId = String(paid.body.data?.createCharge?.id);

    await postgres.server.stop('fast');
    const charge = await createCharge(gateway.url, gateway.apiKey, 'pg-outage-charge', visa);
    // Nothing could be claimed: the retry may run at once.
    expect(expectTransientFailure(charge)).toBeLessThanOrEqual(2);
    const refunded = await refund(gateway, 'pg-outage-refund', { chargeId, amount: 1000 });
    expect(expectTransientFailure(refunded)).toBeLessThanOrEqual(2);

    await postgres.server.start();
    const chargeRetry = await retryUntilAnswered(charge, () =>
      createCharge(gateway.url, gateway.apiKey, 'pg-outage-charge', visa),
    );
    expect(chargeRetry.status).toBe(200);
    expect(chargeRetry.headers.get('idempotent-replayed')).toBe('false');
    const refundRetry = await retryUntilAnswered(refunded, () =>
      refund(gateway, 'pg-outage-refund', { chargeId, amount: 1000 }),
    );
    expect(refundRetry.status).toBe(200);
    expect(refundRetry.body.data).toMatchObject({ refundCharge: { amount: 1000, status: 'SUCCEEDED' } });

    // The same keys again: replays, and the rows show one charge and one refund.
    const chargeReplay = await createCharge(gateway.url, gateway.apiKey, 'pg-outage-charge', visa);
    expect(chargeReplay.headers.get('idempotent-replayed')).toBe('true');
    expect(chargeReplay.body.data).toEqual(chargeRetry.body.data);
    expect(await chargesForKey(database, 'pg-outage-charge')).toBe(1);
    expect(await authorizationsForKey(database, 'pg-outage-charge')).toBe(1);
    expect(await refundsForKey(database, 'pg-outage-refund')).toBe(1);
    expect(await authorizationsForKey(database, 'pg-outage-refund')).toBe(1);
    expect(await database.count('SELECT amount_refunded AS count FROM charges WHERE id = $1', [chargeId])).toBe(1000);
    expect(await database.count('SELECT amount_reserved AS count FROM charges WHERE id = $1', [chargeId])).toBe(0);
  });

  it('answers 503 when Postgres stops while the key is held; the retry after Retry-After charges once', async () => {
    const database = postgres.database;
    const key = 'pg-outage-in-flight';
    // The acquirer's insert waits behind this lock, so the request is surely between its claim
    // and the acquirer's answer when Postgres stops (stopping it ends this session too).
    const locker = new pg.Client({ connectionString: database.url });
    locker.on('error', () => undefined);
    await locker.connect();
    await locker.query('BEGIN');
    await locker.query('LOCK TABLE acquirer_authorizations IN ACCESS EXCLUSIVE MODE');
    const inFlight = createCharge(gateway.url, gateway.apiKey, key, visa);
    await waitFor(
      async () =>
        (await database.count(
          "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'simulated-acquirer' AND wait_event_type = 'Lock'",
        )) === 1,
      10_000,
      'the acquirer to wait on its table',
    );
    await postgres.server.stop('fast');
    await locker.end().catch(() => undefined);
    const answer = await inFlight;
    // Neither the acquirer's record nor the release could be written: the key frees when its
    // lease runs out, and Retry-After says so (the lease, not the 1 s of a released key).
    expect(expectTransientFailure(answer)).toBe(Math.ceil(leaseMs / 1_000));

    await postgres.server.start();
    const retry = await retryUntilAnswered(answer, () => createCharge(gateway.url, gateway.apiKey, key, visa));
    expect(retry.status).toBe(200);
    expect(retry.body.data?.createCharge?.status).toBe('SUCCEEDED');
    expect(await chargesForKey(database, key)).toBe(1);
    expect(await authorizationsForKey(database, key)).toBe(1);
    const replay = await createCharge(gateway.url, gateway.apiKey, key, visa);
    expect(replay.headers.get('idempotent-replayed')).toBe('true');
    expect(replay.body.data).toEqual(retry.body.data);
  });
});

describe('with Redis stopped (a private redis-server)', () => {
  let running: PrivateRedisGateway;
  beforeAll(async () => {
    running = await startGatewayOnPrivateRedis({ ROLE: 'api' });
  });
  afterAll(async () => {
    await running?.stop();
  });

  it('charges and refunds from Postgres alone, once; Redis back (empty), the same keys replay', async () => {
    const { redis, gateway, environment } = running;
    const database = environment.database;
    const paid = await createCharge(gateway.url, gateway.apiKey, 'redis-outage-paid', visa);
    expect(paid.status).toBe(200);
    const chargeId = String(paid.body.data?.createCharge?.id);

    await redis.stop();
    const charge = await createCharge(gateway.url, gateway.apiKey, 'redis-outage-charge', visa);
    expect(charge.status).toBe(200);
    expect(charge.headers.get('idempotent-replayed')).toBe('false');
    const refunded = await refund(gateway, 'redis-outage-refund', { chargeId, amount: 700 });
    expect(refunded.status).toBe(200);
    expect(refunded.body.data).toMatchObject({ refundCharge: { amount: 700, status: 'SUCCEEDED' } });
    // Retries while Redis is still down are decided by Postgres: replays.
    const chargeAgain = await createCharge(gateway.url, gateway.apiKey, 'redis-outage-charge', visa);
    expect(chargeAgain.headers.get('idempotent-replayed')).toBe('true');
    const refundAgain = await refund(gateway, 'redis-outage-refund', { chargeId, amount: 700 });
    expect(refundAgain.headers.get('idempotent-replayed')).toBe('true');

    await redis.start();
    const chargeRetry = await createCharge(gateway.url, gateway.apiKey, 'redis-outage-charge', visa);
    expect(chargeRetry.status).toBe(200);
    expect(chargeRetry.headers.get('idempotent-replayed')).toBe('true');
    expect(chargeRetry.body.data).toEqual(charge.body.data);
    const refundRetry = await refund(gateway, 'redis-outage-refund', { chargeId, amount: 700 });
    expect(refundRetry.headers.get('idempotent-replayed')).toBe('true');
    expect(refundRetry.body.data).toEqual(refunded.body.data);

    expect(await chargesForKey(database, 'redis-outage-charge')).toBe(1);
    expect(await authorizationsForKey(database, 'redis-outage-charge')).toBe(1);
    expect(await refundsForKey(database, 'redis-outage-refund')).toBe(1);
    expect(await database.count('SELECT amount_refunded AS count FROM charges WHERE id = $1', [chargeId])).toBe(700);
  });
});

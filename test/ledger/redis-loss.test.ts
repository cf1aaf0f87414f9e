/**
 * Redis loses queued jobs after the relay marked their events published: a private redis-server
 * restarted empty (no persistence, as the compose Redis runs), and separately a FLUSHALL on it.
 * The relay reads only unpublished rows, so only the sweeper can see the loss: it republishes
 * each event (evt_<uid>-s<n>) and every effect is applied exactly once, read from the rows.
 */
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { insertChargeEvents, insertMerchant } from '../helpers/events';
import { createTestEnvironment, startTestGateway, type TestEnvironment, type TestGateway } from '../helpers/gateway';
import { expectLedgerConsistent, waitFor, waitForLedgerToCatchUp } from '../helpers/ledger';
import { startPrivateRedis, type PrivateRedis } from '../../scripts/harness/redis';

let redis: PrivateRedis;
let environment: TestEnvironment;
let relay: TestGateway;
const gateways: TestGateway[] = [];
// Short, so the test runs in seconds; the same mechanism as the 60 s / 10 s defaults.
const sweeperEnv = { SWEEPER_GRACE_MS: '1500', SWEEPER_INTERVAL_MS: '300' };

beforeAll(async () => {
  redis = await startPrivateRedis();
  environment = await createTestEnvironment({ redisUrl: redis.url });
  relay = await startTestGateway(environment, { ROLE: 'relay', ...sweeperEnv });
  gateways.push(relay);
});
afterAll(async () => {
  for (const gateway of gateways) await gateway.stop();
  await redis?.stop();
  await environment?.cleanup();
});

async function republished(): Promise<number> {
  const metric = await relay.metrics.registry.getSingleMetric('outbox_republished_total')?.get();
  return (metric?.values ?? []).reduce((sum, value) => sum + value.value, 0);
}

async function publishWithoutWorker(merchantId: string, count: number): Promise<void> {
  const before = await environment.database.count('SELECT count(*) FROM outbox_events');
  await insertChargeEvents(environment.database, merchantId, count);
  await waitFor(
    async () =>
      (await environment.database.count('SELECT count(*) FROM outbox_events WHERE published_at IS NOT NULL')) ===
      before + count,
    20_000,
    'the relay to publish and mark',
  );
}

async function applyAfterLoss(lost: number, republishedBefore: number): Promise<void> {
  const worker = await startTestGateway(environment, { ROLE: 'worker' });
  gateways.push(worker);
  await waitForLedgerToCatchUp(environment.database, 30_000);
  expect(await republished()).toBeGreaterThanOrEqual(republishedBefore + lost);
  expect(
    await environment.database.count('SELECT count(*) FROM outbox_events WHERE republished_count > 0'),
  ).toBeGreaterThanOrEqual(lost);
  expect(await environment.database.count('SELECT count(*) FROM dead_letters')).toBe(0);
  expect(await environment.database.count('SELECT count(*) FROM ledger_transactions')).toBe(
    await environment.database.count('SELECT count(*) FROM outbox_events'),
  );
  await expectLedgerConsistent(environment.database);
  await worker.stop();
  gateways.splice(gateways.indexOf(worker), 1);
}

describe('when Redis restarts empty after the relay published', () => {
  it('the sweeper publishes every lost event again, and each effect is applied once', async () => {
    const merchantId = await insertMerchant(environment.database);
    await publishWithoutWorker(merchantId, 40);
    await redis.stop();
    await redis.start();
    await applyAfterLoss(40, 0);
  });
});

describe('when Redis is flushed (FLUSHALL) after the relay published', () => {
  it('the sweeper publishes every lost event again, and each effect is applied once', async () => {
    const merchantId = await insertMerchant(environment.database);
    const before = await republished();
    await publishWithoutWorker(merchantId, 30);
    // The private server only: never the shared one.
    const connection = new Redis(redis.url);
    await connection.flushall();
    connection.disconnect();
    await applyAfterLoss(30, before);
  });
});

/**
 * A backlog after a Redis outage: 18,000 events written while Redis is down (a private
 * redis-server this test stops for real) drain once it returns, at the fleet-wide rate cap, and
 * each is applied once.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { insertChargeEvents, insertMerchant } from '../helpers/events';
import { createTestEnvironment, startTestGateway, type TestEnvironment, type TestGateway } from '../helpers/gateway';
import { expectLedgerConsistent, waitFor, waitForLedgerToCatchUp } from '../helpers/ledger';
import { startPrivateRedis, type PrivateRedis } from '../../scripts/harness/redis';

const events = Number(process.env.BACKLOG_EVENTS ?? 18_000);
const ratePerSecond = 3_000;
let redis: PrivateRedis;
let environment: TestEnvironment;
const gateways: TestGateway[] = [];

const publishFailures = async (gateway: TestGateway) =>
  (await gateway.metrics.relayPublishFailures.get()).values.reduce((sum, value) => sum + value.value, 0);

beforeAll(async () => {
  redis = await startPrivateRedis();
  environment = await createTestEnvironment({ redisUrl: redis.url });
});
afterAll(async () => {
  for (const gateway of gateways) await gateway.stop();
  await redis?.stop();
  await environment?.cleanup();
});

describe('when a backlog built up while Redis was down', () => {
  it(`drains ${events} events at the capped rate after Redis returns, each applied once`, async () => {
    const env = {
      RELAY_RATE_PER_SECOND: String(ratePerSecond),
      RELAY_BATCH_SIZE_MAX: '500',
      DATABASE_POOL_SIZE_MAX: '8',
    };
    // Two relays share one rate bucket; a worker applies.
    gateways.push(await startTestGateway(environment, { ...env, ROLE: 'relay' }));
    gateways.push(await startTestGateway(environment, { ...env, ROLE: 'relay' }));
    gateways.push(await startTestGateway(environment, { ...env, ROLE: 'worker' }));
    await redis.stop();

    const merchantId = await insertMerchant(environment.database);
    for (let written = 0; written < events; written += 6_000) {
      await insertChargeEvents(environment.database, merchantId, Math.min(6_000, events - written));
    }
    // Both relays tried again after the events were written, and failed: nothing was published.
    const relays = gateways.slice(0, 2);
    const failedBefore = await Promise.all(relays.map(publishFailures));
    await waitFor(
      async () =>
        (await Promise.all(relays.map(publishFailures))).every((count, index) => count > failedBefore[index]!),
      30_000,
      'both relays to try to publish while Redis is down',
    );
    expect(await environment.database.count('SELECT count(*) FROM outbox_events WHERE published_at IS NOT NULL')).toBe(
      0,
    );

    await redis.start();
    // Correctness, not speed, is under test here (the drain rate is `npm run bench`): a slow machine
    // gets time to finish.
    await waitForLedgerToCatchUp(environment.database, 300_000);

    // The publish rate, from Postgres: events marked published in every one-second window.
    const { rows } = await environment.database.pool.query<{ at: string }>(
      'SELECT (extract(epoch FROM published_at) * 1000)::bigint::text AS at FROM outbox_events ORDER BY published_at',
    );
    const times = rows.map((row) => Number(row.at));
    let busiestWindow = 0;
    let start = 0;
    for (let end = 0; end < times.length; end += 1) {
      while (times[end]! - times[start]! >= 1_000) start += 1;
      busiestWindow = Math.max(busiestWindow, end - start + 1);
    }
    const drainSeconds = (times.at(-1)! - times[0]!) / 1_000;
    process.stdout.write(
      `backlog: ${events} events published in ${drainSeconds.toFixed(1)} s; busiest one-second window ${busiestWindow} (cap ${ratePerSecond}/s)\n`,
    );
    expect(busiestWindow).toBeLessThanOrEqual(1.1 * ratePerSecond);
    expect(drainSeconds).toBeGreaterThanOrEqual((events / ratePerSecond) * 0.85);
    expect(await environment.database.count('SELECT count(*) FROM ledger_transactions')).toBe(events);
    await expectLedgerConsistent(environment.database);
  }, 420_000);
});

/**
 * Same key, at the same time: exactly one charge, whatever the timing, with Redis answering,
 * with its key deleted between requests, and with Redis stopped.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  createTestEnvironment,
  startGatewayOnPrivateRedis,
  startTestGateway,
  type PrivateRedisGateway,
  type TestEnvironment,
  type TestGateway,
} from '../helpers/gateway';
import { createCharge, type GraphqlAnswer } from '../helpers/http';
import type { PrivateRedis } from '../../scripts/harness/redis';
import { waitFor } from '../helpers/ledger';

type ChargeAnswer = GraphqlAnswer<{ createCharge: Record<string, unknown> | null }>;
const input = { amount: 2500, currency: 'USD', source: 'tok_visa' };
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Every answer for one key is the one charge (200, fresh or replayed) or a 409; returns the charge id. */
function expectOneOutcome(answers: ChargeAnswer[]): string {
  const ids = new Set<string>();
  for (const answer of answers) {
    if (answer.status === 200) ids.add(String(answer.body.data?.createCharge?.id));
    else expect(answer.body.errors?.[0]?.extensions?.code, answer.text).toBe('IDEMPOTENCY_KEY_IN_USE');
  }
  expect(ids.size).toBe(1);
  expect(answers.filter((answer) => answer.headers.get('idempotent-replayed') === 'false').length).toBe(1);
  return [...ids][0]!;
}

async function expectOneChargePerKey(environment: TestEnvironment, keys: number): Promise<void> {
  expect(await environment.database.count('SELECT count(*) FROM charges')).toBe(keys);
  expect(await environment.database.count('SELECT count(*) FROM outbox_events')).toBe(keys);
  expect(await environment.database.count('SELECT count(*) FROM idempotency_keys')).toBe(keys);
}

describe('with Redis answering', () => {
  let environment: TestEnvironment;
  let gateway: TestGateway;
  beforeAll(async () => {
    environment = await createTestEnvironment();
    gateway = await startTestGateway(environment, { ROLE: 'api' });
  });
  afterAll(async () => {
    await gateway?.stop();
    await environment?.cleanup();
  });

  it('turns two simultaneous requests with one key into one charge, 200 times with random timing', async () => {
    const rounds = 200;
    for (let batch = 0; batch < rounds; batch += 20) {
      await Promise.all(
        Array.from({ length: 20 }, async (_, offset) => {
          const key = `pair-${batch + offset}`;
          const first = createCharge(gateway.url, gateway.apiKey, key, input);
          await sleep(Math.random() * 5);
          const second = createCharge(gateway.url, gateway.apiKey, key, input);
          expectOneOutcome(await Promise.all([first, second]));
        }),
      );
    }
    await expectOneChargePerKey(environment, rounds);
  });

  it('turns 20 concurrent copies of one key into one charge', async () => {
    const before = await environment.database.count('SELECT count(*) FROM charges');
    const answers = await Promise.all(
      Array.from({ length: 20 }, () => createCharge(gateway.url, gateway.apiKey, 'twenty-copies', input)),
    );
    expectOneOutcome(answers);
    expect(await environment.database.count('SELECT count(*) FROM charges')).toBe(before + 1);
  });

  it('stays at one charge when the Redis key is deleted between requests', async () => {
    const redisKey = (key: string) => `${environment.redisKeyPrefix}:idem:{${gateway.merchantId}}:${key}`;
    const before = await environment.database.count('SELECT count(*) FROM charges');
    for (let round = 0; round < 20; round += 1) {
      const key = `forgotten-${round}`;
      const answers: ChargeAnswer[] = [await createCharge(gateway.url, gateway.apiKey, key, input)];
      await gateway.redis.del(redisKey(key));
      answers.push(
        ...(await Promise.all([
          createCharge(gateway.url, gateway.apiKey, key, input),
          createCharge(gateway.url, gateway.apiKey, key, input),
        ])),
      );
      await gateway.redis.del(redisKey(key));
      answers.push(await createCharge(gateway.url, gateway.apiKey, key, input));
      expectOneOutcome(answers);
      expect(answers.at(-1)?.headers.get('idempotent-replayed')).toBe('true');
    }
    expect(await environment.database.count('SELECT count(*) FROM charges')).toBe(before + 20);
  });
});

describe('with Redis stopped', () => {
  let running: PrivateRedisGateway;
  let redis: PrivateRedis;
  let environment: TestEnvironment;
  let gateway: TestGateway;
  beforeAll(async () => {
    running = await startGatewayOnPrivateRedis({ ROLE: 'api' });
    ({ redis, environment, gateway } = running);
  });
  afterAll(async () => {
    await running?.stop();
  });

  // A copy may wait for its in-flight twin (IDEMPOTENCY_IN_FLIGHT_WAIT_MS, 2 s by default, woken
  // through Postgres while Redis is down); a dead Redis must add nothing to that.
  async function timed(run: () => Promise<ChargeAnswer>, boundMs = 2_000): Promise<ChargeAnswer> {
    const startedAt = Date.now();
    const answer = await run();
    expect(Date.now() - startedAt, 'a dead Redis must not hold a request').toBeLessThan(boundMs);
    return answer;
  }

  it('answers every outcome correctly and promptly from Postgres alone, then recovers when Redis returns', async () => {
    const first = await timed(() => createCharge(gateway.url, gateway.apiKey, 'before-outage', input));
    expect(first.status).toBe(200);
    await redis.stop();

    const fresh = await timed(() => createCharge(gateway.url, gateway.apiKey, 'during-outage', input));
    expect(fresh.status).toBe(200);
    const replay = await timed(() => createCharge(gateway.url, gateway.apiKey, 'during-outage', input));
    expect(replay.status).toBe(200);
    expect(replay.headers.get('idempotent-replayed')).toBe('true');
    expect(replay.body.data).toEqual(fresh.body.data);
    const earlier = await timed(() => createCharge(gateway.url, gateway.apiKey, 'before-outage', input));
    expect(earlier.headers.get('idempotent-replayed')).toBe('true');
    const reused = await timed(() =>
      createCharge(gateway.url, gateway.apiKey, 'during-outage', { ...input, amount: 1 }),
    );
    expect(reused.status).toBe(422);
    const copies = await Promise.all(
      Array.from({ length: 10 }, () =>
        timed(() => createCharge(gateway.url, gateway.apiKey, 'outage-copies', input), 4_000),
      ),
    );
    expectOneOutcome(copies);
    expect(await environment.database.count('SELECT count(*) FROM charges')).toBe(3);

    await redis.start();
    // The hot-path client reconnects at most every 2 s: wait until it has.
    await waitFor(async () => gateway.redis.status === 'ready', 20_000, 'the hot-path Redis client to reconnect');
    const after = await createCharge(gateway.url, gateway.apiKey, 'after-outage', input);
    expect(after.status).toBe(200);
    const afterReplay = await createCharge(gateway.url, gateway.apiKey, 'during-outage', input);
    expect(afterReplay.headers.get('idempotent-replayed')).toBe('true');
    await expectOneChargePerKey(environment, 4);
  });
});

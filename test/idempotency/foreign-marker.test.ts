/**
 * An adversarial review of the fix "another body's in-flight Redis marker goes to Postgres"
 * (src/idempotency/idempotency-store.ts, answerFromRedis; seed 5026). Two of its attacks found
 * bugs, fixed in the same file: a wait that only Redis ever called "in flight" now asks Postgres
 * before answering 409 (a stale marker made the body's retries wait out the lease), and a body
 * that Postgres refuses wakes its waiting twins (they waited out their `Prefer: wait`).
 *
 * Body A's marker (fingerprint F1) sits in Redis while body B (F2) falls through to Postgres and
 * takes the key. What B, B's twin and A's twins are answered, and what Redis holds afterwards.
 * A's marker is planted with the real Redis store as A's own SET NX would have left it when A
 * stalled (or died) between its SET NX and its Postgres claim.
 */
import pg from 'pg';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RedisIdempotencyStore } from '../../src/idempotency/redis-store';
import { createValueSigner } from '../../src/platform/signed-value';
import { createTestEnvironment, startTestGateway, type TestEnvironment, type TestGateway } from '../helpers/gateway';
import { createCharge, type ChargeInputForTest } from '../helpers/http';
import { waitFor } from '../helpers/ledger';

let environment: TestEnvironment;
let gateway: TestGateway;
let redis: Redis;
const bodyA: ChargeInputForTest = { amount: 1_111, currency: 'USD', source: 'tok_visa' };
const bodyB: ChargeInputForTest = { amount: 2_222, currency: 'USD', source: 'tok_slow' };
const bodyBTimeout: ChargeInputForTest = { amount: 3_333, currency: 'USD', source: 'tok_timeout' };
const secret = 'test-redis-answer-secret-0123456789abcdef'; // the test environment's REDIS_ANSWER_SECRET

beforeAll(async () => {
  environment = await createTestEnvironment();
  gateway = await startTestGateway(environment, { ROLE: 'api', DATABASE_LOCK_TIMEOUT_MS: '15000' });
  redis = new Redis(environment.redisUrl, { maxRetriesPerRequest: 1 });
});
afterAll(async () => {
  redis?.disconnect();
  await gateway?.stop();
  await environment?.cleanup();
});

const redisKey = (key: string) => `${environment.redisKeyPrefix}:idem:{${gateway.merchantId}}:${key}`;
const signer = () => createValueSigner(secret);
const store = () =>
  new RedisIdempotencyStore(redis, environment.redisKeyPrefix, signer(), {
    onUnavailable: () => undefined,
    onForged: () => undefined,
  });

/** The fingerprint the gateway computes for a body: charged once under a scratch key, read from its row. */
async function fingerprintOf(body: ChargeInputForTest, scratchKey: string): Promise<string> {
  const answer = await createCharge(gateway.url, gateway.apiKey, scratchKey, body);
  expect([200, 503]).toContain(answer.status);
  const { rows } = await environment.database.pool.query<{ fingerprint: string }>(
    'SELECT fingerprint FROM idempotency_keys WHERE key = $1',
    [scratchKey],
  );
  return rows[0]!.fingerprint;
}

/** A's SET NX, as A left it: an in-flight marker with A's fingerprint and the lease as its TTL. */
async function plantMarkerOfA(key: string): Promise<void> {
  const fingerprintA = await fingerprintOf(bodyA, `${key}-scratch`);
  const marked = await store().markInFlight(gateway.merchantId, key, fingerprintA, 15_000);
  expect(marked.kind).toBe('marked');
}

function readMarker(key: string, stored: string | null): { state: string; fingerprint: string } | undefined {
  if (stored === null) return undefined;
  const value = signer().verify('idempotency-marker', redisKey(key), stored);
  return value === undefined ? undefined : (JSON.parse(value) as { state: string; fingerprint: string });
}

const codeOf = (answer: { body: { errors?: { extensions?: { code?: string } }[] } }) =>
  answer.body.errors?.[0]?.extensions?.code;

describe('body B takes the key while body A’s in-flight marker sits in Redis', () => {
  it('B is charged once, B’s twin replays B, the completed answer replaces A’s marker, A’s retry is 422', async () => {
    const key = 'review-foreign-1';
    await plantMarkerOfA(key);
    const b = createCharge(gateway.url, gateway.apiKey, key, bodyB); // tok_slow: in flight a while
    await waitFor(
      async () =>
        (await environment.database.count('SELECT count(*) FROM idempotency_keys WHERE key = $1', [key])) === 1,
      30_000,
      'B to hold the key in Postgres',
    );
    const bTwin = createCharge(gateway.url, gateway.apiKey, key, bodyB);
    const aRetry = createCharge(gateway.url, gateway.apiKey, key, bodyA, { headers: { prefer: 'wait=10' } });
    const [bAnswer, bTwinAnswer, aAnswer] = await Promise.all([b, bTwin, aRetry]);

    expect(bAnswer.status, bAnswer.text).toBe(200);
    expect(bTwinAnswer.status, bTwinAnswer.text).toBe(200);
    expect(bTwinAnswer.body.data).toEqual(bAnswer.body.data);
    expect(bTwinAnswer.headers.get('idempotent-replayed')).toBe('true');
    expect(aAnswer.status, aAnswer.text).toBe(422);
    expect(codeOf(aAnswer)).toBe('IDEMPOTENCY_KEY_REUSED');

    const marker = readMarker(key, await redis.get(redisKey(key)));
    const { rows } = await environment.database.pool.query<{ fingerprint: string }>(
      'SELECT fingerprint FROM idempotency_keys WHERE key = $1',
      [key],
    );
    expect(marker).toMatchObject({ state: 'completed', fingerprint: rows[0]!.fingerprint });
    expect(
      await environment.database.count(
        'SELECT count(*) FROM charges c JOIN idempotency_keys k ON k.id = c.idempotency_key_id WHERE k.key = $1',
        [key],
      ),
    ).toBe(1);
    // Later: A again, from Redis alone.
    const aLater = await createCharge(gateway.url, gateway.apiKey, key, bodyA);
    expect(codeOf(aLater), aLater.text).toBe('IDEMPOTENCY_KEY_REUSED');
  });

  it('a stale marker of A: A’s retry is answered what Postgres says (422: B holds the key), not 409 for the marker’s lifetime', async () => {
    // B took the key and failed transiently (released, fingerprint F2 kept): Postgres answers any
    // request with A's body 422 at once. A's stale marker (A stalled or died after its SET NX)
    // made Redis answer "the twin is in flight" instead, for up to the lease (15 s): now the wait
    // ends by asking Postgres.
    const key = 'review-foreign-2';
    await plantMarkerOfA(key);
    const b = await createCharge(gateway.url, gateway.apiKey, key, bodyBTimeout);
    expect(b.status, b.text).toBe(503);
    const started = Date.now();
    const aRetry = await createCharge(gateway.url, gateway.apiKey, key, bodyA);
    const elapsedMs = Date.now() - started;
    expect({ status: aRetry.status, code: codeOf(aRetry) }, `${aRetry.text} after ${elapsedMs} ms`).toEqual({
      status: 422,
      code: 'IDEMPOTENCY_KEY_REUSED',
    });
  });

  it('a twin of a body that Postgres refuses is answered when it is refused, not at the end of its wait', async () => {
    // B completed the key; Redis lost B's answer. A sets its marker and waits behind a lock in
    // Postgres; A's twin (Prefer: wait=10) finds A's marker and waits for A. A is refused (422)
    // as soon as the lock goes; its refusal removes the marker and now wakes the twin.
    const key = 'review-foreign-3';
    const first = await createCharge(gateway.url, gateway.apiKey, key, { ...bodyB, source: 'tok_visa' });
    expect(first.status, first.text).toBe(200);
    await redis.del(redisKey(key));
    const holder = new pg.Client({ connectionString: environment.database.url });
    await holder.connect();
    try {
      await holder.query('BEGIN');
      await holder.query('LOCK TABLE idempotency_keys IN ACCESS EXCLUSIVE MODE');
      const a = createCharge(gateway.url, gateway.apiKey, key, bodyA);
      await waitFor(async () => (await redis.exists(redisKey(key))) === 1, 30_000, 'A’s in-flight marker');
      const aTwin = createCharge(gateway.url, gateway.apiKey, key, bodyA, { headers: { prefer: 'wait=10' } });
      const channel = `${environment.redisKeyPrefix}:idem-settled:{${gateway.merchantId}}:${key}`;
      await waitFor(
        async () => Number(((await redis.pubsub('NUMSUB', channel)) as [string, number])[1]) >= 1,
        30_000,
        'A’s twin to wait for A',
      );
      await holder.query('ROLLBACK');
      const released = Date.now();
      const aAnswer = await a;
      expect(codeOf(aAnswer), aAnswer.text).toBe('IDEMPOTENCY_KEY_REUSED');
      const aTwinAnswer = await aTwin;
      const twinWaitedMs = Date.now() - released;
      expect(codeOf(aTwinAnswer), aTwinAnswer.text).toBe('IDEMPOTENCY_KEY_REUSED');
      expect(twinWaitedMs, 'ms A’s twin waited after A was refused').toBeLessThan(3_000);
    } finally {
      await holder.query('ROLLBACK').catch(() => undefined);
      await holder.end();
    }
  });

  it('two bodies racing on one key, with Redis forgetting between rounds: one charge, the owner never 422, the other never 200', async () => {
    const rounds = 25;
    for (let round = 0; round < rounds; round += 1) {
      const key = `review-race-${round}`;
      const send = (body: ChargeInputForTest) => createCharge(gateway.url, gateway.apiKey, key, body);
      const a = { ...bodyA, amount: 5_000 + round };
      const b = { ...bodyA, amount: 6_000 + round };
      const answers = await Promise.all([send(a), send(b), send(a), send(b), send(a), send(b)]);
      await redis.del(redisKey(key)); // Redis forgets; the late copies decide from Postgres
      answers.push(...(await Promise.all([send(b), send(a), send(b), send(a)])));
      const bodies = [a, b, a, b, a, b, b, a, b, a];
      const { rows } = await environment.database.pool.query<{ amount: number }>(
        'SELECT c.amount FROM charges c JOIN idempotency_keys k ON k.id = c.idempotency_key_id WHERE k.key = $1',
        [key],
      );
      expect(rows.length, key).toBe(1);
      const owner = rows[0]!.amount;
      answers.forEach((answer, index) => {
        const owns = bodies[index]!.amount === owner;
        const allowed = owns ? [200, 409] : [409, 422];
        expect(allowed, `${key} ${owns ? 'owner' : 'other'}: ${answer.text}`).toContain(answer.status);
      });
    }
  });

  it('extensions.idempotency is { key, replayed, firstRequestAt } as the contract says (docs/contract.md §2)', async () => {
    const first = await createCharge(gateway.url, gateway.apiKey, 'review-extensions', { ...bodyA, amount: 4_321 });
    const replay = await createCharge(gateway.url, gateway.apiKey, 'review-extensions', { ...bodyA, amount: 4_321 });
    expect(Object.keys(first.body.extensions?.idempotency ?? {}).sort(), first.text).toEqual([
      'firstRequestAt',
      'key',
      'replayed',
    ]);
    expect(Object.keys(replay.body.extensions?.idempotency ?? {}).sort(), replay.text).toEqual([
      'firstRequestAt',
      'key',
      'replayed',
    ]);
  });
});

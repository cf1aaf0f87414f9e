/**
 * Replays answered before GraphQL execution (src/graphql/replay-fast-path.ts), over HTTP against a
 * running gateway: the fast path's answer is byte for byte the normal path's (a replay from
 * Postgres, which executes the resolver) for several selections; no resolver runs on it; another
 * body gets 422; a value in Redis that does not verify is ignored; the rate limit still holds.
 */
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { ChargeService } from '../../src/charges/create-charge';
import { RefundService } from '../../src/charges/refund-charge';
import { createTestEnvironment, startTestGateway, type TestEnvironment, type TestGateway } from '../helpers/gateway';
import { postGraphql, type GraphqlAnswer } from '../helpers/http';

let environment: TestEnvironment;
let gateway: TestGateway;
let keyCounter = 0;
const newKey = () => `fast-path-${++keyCounter}-${Date.now()}`;
const input = {
  amount: 4321,
  currency: 'EUR',
  source: 'tok_visa',
  description: 'fast path',
  metadata: { order: 'o-1', n: 7, ok: true, none: null },
};

beforeAll(async () => {
  environment = await createTestEnvironment();
  gateway = await startTestGateway(environment);
});

afterAll(async () => {
  vi.restoreAllMocks();
  await gateway?.stop();
  await environment?.cleanup();
});

const redisKey = (merchantId: string, key: string) => `${environment.redisKeyPrefix}:idem:{${merchantId}}:${key}`;

async function fastPathCount(field = 'createCharge'): Promise<number> {
  const values = (await gateway.metrics.replaysBeforeExecution.get()).values;
  return values.find((value) => value.labels.field === field)?.value ?? 0;
}

async function replayedCount(): Promise<number> {
  const values = (await gateway.metrics.idempotencyRequests.get()).values;
  return values.find((value) => value.labels.outcome === 'replayed')?.value ?? 0;
}

function send(
  query: string,
  variables: Record<string, unknown>,
  key: string,
  apiKey = gateway.apiKey,
): Promise<GraphqlAnswer> {
  return postGraphql(gateway.url, { query, variables }, { authorization: `Bearer ${apiKey}`, 'idempotency-key': key });
}

/** What a client sees, less what differs on every response (request id, date). */
function visible(answer: GraphqlAnswer) {
  return {
    status: answer.status,
    text: answer.text,
    replayed: answer.headers.get('idempotent-replayed'),
    contentType: answer.headers.get('content-type'),
    contentLength: answer.headers.get('content-length'),
    retryAfter: answer.headers.get('retry-after'),
  };
}

/**
 * First request (creates), then the same request with Redis emptied (the normal path replays from
 * Postgres and writes the answer back to Redis), then again (the fast path). Returns the last two.
 */
async function replayBothWays(query: string, variables: Record<string, unknown>, key = newKey()) {
  const first = await send(query, variables, key);
  expect(first.status, first.text).toBe(200);
  await gateway.redis.del(redisKey(gateway.merchantId, key));
  const fastBefore = await fastPathCount();
  const normal = await send(query, variables, key);
  expect(await fastPathCount()).toBe(fastBefore);
  const charges = vi.spyOn(ChargeService.prototype, 'createCharge');
  const replayedBefore = await replayedCount();
  const fast = await send(query, variables, key);
  expect(charges).not.toHaveBeenCalled();
  charges.mockRestore();
  expect(await fastPathCount()).toBe(fastBefore + 1);
  expect(await replayedCount()).toBe(replayedBefore + 1);
  return { first, normal, fast };
}

const charge = (selection: string, extraVariables = '', fragments = '') =>
  `mutation Replay($input: CreateChargeInput!${extraVariables}) { ${selection} }${fragments}`;

describe('a replay answered before execution', () => {
  const selections: [string, string, Record<string, unknown>][] = [
    [
      'every field',
      charge('createCharge(input: $input) { id amount currency status failureCode description metadata createdAt }'),
      {},
    ],
    ['aliases, the root field too', charge('made: createCharge(input: $input) { cents: amount id ref: id }'), {}],
    [
      'named and inline fragments, a repeated field',
      charge(
        'createCharge(input: $input) { ...Money ... on Charge { status createdAt } id ... { currency } }',
        '',
        ' fragment Money on Charge { amount currency id }',
      ),
      {},
    ],
    [
      '@include and @skip, from variables and literals',
      charge(
        'createCharge(input: $input) { id metadata @include(if: $withMeta) description @skip(if: true) status @skip(if: $withMeta) ... @include(if: $withMeta) { amount } }',
        ', $withMeta: Boolean!',
      ),
      { withMeta: true },
    ],
    [
      '@include false',
      charge('createCharge(input: $input) { id metadata @include(if: $withMeta) amount }', ', $withMeta: Boolean!'),
      { withMeta: false },
    ],
    [
      '__typename at the root and inside, JSON metadata nested in a fragment',
      charge(
        '__typename createCharge(input: $input) { __typename kind: __typename ...Meta } second: __typename',
        '',
        ' fragment Meta on Charge { metadata ... on Charge { id } }',
      ),
      {},
    ],
  ];

  it.each(selections)('is byte-identical to the normal path: %s', async (_name, query, extra) => {
    const { first, normal, fast } = await replayBothWays(query, { input, ...extra });
    expect(visible(fast)).toEqual(visible(normal));
    expect(fast.headers.get('idempotent-replayed')).toBe('true');
    expect(fast.body.extensions?.idempotency).toEqual({ ...first.body.extensions?.idempotency, replayed: true });
    expect(fast.body.errors).toBeUndefined();
  });

  it('projects another selection than the first request asked for', async () => {
    const key = newKey();
    await send(charge('createCharge(input: $input) { id }'), { input }, key);
    const wide = charge(
      'createCharge(input: $input) { id amount currency status failureCode description metadata createdAt }',
    );
    const fastBefore = await fastPathCount();
    const fast = await send(wide, { input }, key);
    expect(await fastPathCount()).toBe(fastBefore + 1);
    await gateway.redis.del(redisKey(gateway.merchantId, key));
    const normal = await send(wide, { input }, key);
    expect(visible(fast)).toEqual(visible(normal));
  });

  it('serves refunds the same way', async () => {
    const created = await send(charge('createCharge(input: $input) { id }'), { input }, newKey());
    const chargeId = (created.body.data?.createCharge as { id: string }).id;
    const refund =
      'mutation($input: RefundChargeInput!) { refundCharge(input: $input) { __typename id chargeId amount currency status failureCode reason createdAt } }';
    const variables = { input: { chargeId, amount: 1000, reason: 'fast path' } };
    const key = newKey();
    expect((await send(refund, variables, key)).status).toBe(200);
    await gateway.redis.del(redisKey(gateway.merchantId, key));
    const normal = await send(refund, variables, key);
    const refunds = vi.spyOn(RefundService.prototype, 'refundCharge');
    const visibility = vi.spyOn(RefundService.prototype, 'assertChargeVisible');
    const fastBefore = await fastPathCount('refundCharge');
    const fast = await send(refund, variables, key);
    expect(refunds).not.toHaveBeenCalled();
    expect(visibility).not.toHaveBeenCalled();
    refunds.mockRestore();
    visibility.mockRestore();
    expect(await fastPathCount('refundCharge')).toBe(fastBefore + 1);
    expect(visible(fast)).toEqual(visible(normal));
  });
});

describe('what the fast path leaves to the normal path', () => {
  const full = charge('createCharge(input: $input) { id amount status }');

  it('another body with a completed key: 422 IDEMPOTENCY_KEY_REUSED, nothing served from the stored answer', async () => {
    const key = newKey();
    const first = await send(full, { input }, key);
    const fastBefore = await fastPathCount();
    const other = await send(full, { input: { ...input, amount: input.amount + 1 } }, key);
    expect(other.status).toBe(422);
    expect(other.body.errors?.[0]?.extensions?.code).toBe('IDEMPOTENCY_KEY_REUSED');
    expect(other.headers.get('idempotent-replayed')).toBeNull();
    expect(other.text).not.toContain(String((first.body.data?.createCharge as { id: string }).id));
    expect(await fastPathCount()).toBe(fastBefore);
  });

  it('invalid input and a malformed key answer as before (400), with the key completed', async () => {
    const key = newKey();
    await send(full, { input }, key);
    const invalid = await send(full, { input: { ...input, currency: 'usd' } }, key);
    expect(invalid.status).toBe(400);
    expect(invalid.body.errors?.[0]?.extensions?.code).toBe('BAD_USER_INPUT');
    const badKey = await send(full, { input }, 'x'.repeat(300));
    expect(badKey.status).toBe(400);
    expect(badKey.body.errors?.[0]?.extensions?.code).toBe('IDEMPOTENCY_KEY_INVALID');
  });

  it('ignores a value in Redis that does not verify (unsigned or forged), and Postgres answers', async () => {
    for (const forge of [(json: string) => json, (json: string) => `${'A'.repeat(43)}.${json}`]) {
      const key = newKey();
      const first = await send(full, { input }, key);
      const id = (first.body.data?.createCharge as { id: string }).id;
      const forgedBody = JSON.stringify({ id: 'ch_forged', amount: 1, currency: 'EUR', status: 'SUCCEEDED' });
      const stored = JSON.parse((await gateway.redis.get(redisKey(gateway.merchantId, key)))!.slice(44)) as {
        fingerprint: string;
        response: Record<string, unknown>;
      };
      const forged = JSON.stringify({ ...stored, response: { ...stored.response, body: forgedBody } });
      await gateway.redis.set(redisKey(gateway.merchantId, key), forge(forged), 'EX', 60);
      const fastBefore = await fastPathCount();
      const forgedBefore = (await gateway.metrics.redisForgedAnswers.get()).values[0]?.value ?? 0;
      const answer = await send(full, { input }, key);
      expect(answer.status).toBe(200);
      expect(answer.text).not.toContain('ch_forged');
      expect((answer.body.data?.createCharge as { id: string }).id).toBe(id);
      expect(answer.headers.get('idempotent-replayed')).toBe('true');
      expect(await fastPathCount()).toBe(fastBefore);
      // Counted once, by the normal path's SET NX GET: the fast path reads it silently.
      expect((await gateway.metrics.redisForgedAnswers.get()).values[0]?.value).toBe(forgedBefore + 1);
    }
  });

  it('never serves one merchant another merchant’s answer, even copied under its key', async () => {
    const key = newKey();
    const mine = await send(full, { input }, key);
    const other = await gateway.newMerchant('Other merchant');
    const value = await gateway.redis.get(redisKey(gateway.merchantId, key));
    await gateway.redis.set(redisKey(other.id, key), value!, 'EX', 60);
    const fastBefore = await fastPathCount();
    const theirs = await send(full, { input }, key, other.apiKey);
    expect(theirs.status).toBe(200);
    expect(theirs.headers.get('idempotent-replayed')).toBe('false');
    expect((theirs.body.data?.createCharge as { id: string }).id).not.toBe(
      (mine.body.data?.createCharge as { id: string }).id,
    );
    expect(await fastPathCount()).toBe(fastBefore);
  });

  it('keeps the per-merchant rate limit for replays (429 with Retry-After)', async () => {
    const limited = await gateway.newMerchant('Limited merchant');
    await environment.database.pool.query('UPDATE merchants SET rate_limit_per_second = 3 WHERE id = $1', [limited.id]);
    const key = newKey();
    // Spread over windows on a loaded machine: bursts until one is refused (bounded).
    const deadline = Date.now() + 30_000;
    let first: GraphqlAnswer | undefined;
    while (first === undefined || first.status !== 200) {
      if (Date.now() > deadline) throw new Error('the first request never succeeded');
      first = await send(full, { input }, key, limited.apiKey);
      if (first.status === 429) await new Promise((resolve) => setTimeout(resolve, 1_100));
    }
    let refused: GraphqlAnswer | undefined;
    while (refused === undefined) {
      if (Date.now() > deadline) throw new Error('no burst of replays was refused within 30 s');
      const answers = await Promise.all(Array.from({ length: 10 }, () => send(full, { input }, key, limited.apiKey)));
      expect(answers.every((answer) => answer.status === 200 || answer.status === 429)).toBe(true);
      refused = answers.find((answer) => answer.status === 429);
    }
    expect(refused.body.errors?.[0]?.extensions?.code).toBe('RATE_LIMITED');
    expect(Number(refused.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
  });
});

/**
 * Every row of docs/contract.md §2's outcome table, as HTTP requests against a running gateway:
 * status, extensions.code, headers, and what was stored.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createCharge, postGraphql, type ChargeInputForTest } from '../helpers/http';
import { waitFor } from '../helpers/ledger';
import { waitForLeaseToLapse } from '../helpers/waits';
import { createTestEnvironment, startTestGateway, type TestEnvironment, type TestGateway } from '../helpers/gateway';

let environment: TestEnvironment;
let gateway: TestGateway;
let keyCounter = 0;
const newKey = () => `outcome-key-${++keyCounter}-${Date.now()}`;
const visa: ChargeInputForTest = {
  amount: 1250,
  currency: 'USD',
  source: 'tok_visa',
  description: 'order 1',
  metadata: { z: 1, a: 'b' },
};

beforeAll(async () => {
  environment = await createTestEnvironment();
  gateway = await startTestGateway(environment);
});

afterAll(async () => {
  await gateway?.stop();
  await environment?.cleanup();
});

/** Waits until the first request holds the key, so the next one surely finds it in flight. */
const untilClaimed = (key: string) =>
  waitFor(
    async () => (await environment.database.count('SELECT count(*) FROM idempotency_keys WHERE key = $1', [key])) === 1,
    5_000,
    'the key',
  );
const chargeCount = () => environment.database.count('SELECT count(*) FROM charges');
const keyCount = () => environment.database.count('SELECT count(*) FROM idempotency_keys');

describe('when a key is new and the charge is approved', () => {
  it('answers 200 with Idempotent-Replayed: false and extensions.idempotency, and stores one charge and one event', async () => {
    const key = newKey();
    const before = await chargeCount();
    const answer = await createCharge(gateway.url, gateway.apiKey, key, visa);
    expect(answer.status).toBe(200);
    expect(answer.headers.get('idempotent-replayed')).toBe('false');
    expect(answer.body.data?.createCharge).toMatchObject({
      amount: 1250,
      currency: 'USD',
      status: 'SUCCEEDED',
      failureCode: null,
    });
    // Exactly the contract's fields (a stored answer once carried the context's `stored: true` too).
    expect(answer.body.extensions?.idempotency).toEqual({
      key,
      replayed: false,
      firstRequestAt: expect.stringMatching(/Z$/),
    });
    expect(await chargeCount()).toBe(before + 1);
    const id = String(answer.body.data?.createCharge?.id);
    expect(await environment.database.count('SELECT count(*) FROM outbox_events WHERE aggregate_id = $1', [id])).toBe(
      1,
    );
  });
});

describe('when the same key and request come again after completion', () => {
  it('replays byte-identical data with Idempotent-Replayed: true, from Redis and from Postgres alike', async () => {
    const key = newKey();
    const first = await createCharge(gateway.url, gateway.apiKey, key, visa);
    const fromRedis = await createCharge(gateway.url, gateway.apiKey, key, visa);
    expect(fromRedis.status).toBe(200);
    expect(fromRedis.headers.get('idempotent-replayed')).toBe('true');
    expect(JSON.stringify(fromRedis.body.data)).toBe(JSON.stringify(first.body.data));
    expect(fromRedis.body.extensions?.idempotency).toEqual({ ...first.body.extensions?.idempotency, replayed: true });

    await gateway.redis.del(`${environment.redisKeyPrefix}:idem:{${gateway.merchantId}}:${key}`);
    const fromPostgres = await createCharge(gateway.url, gateway.apiKey, key, visa);
    expect(fromPostgres.headers.get('idempotent-replayed')).toBe('true');
    expect(JSON.stringify(fromPostgres.body.data)).toBe(JSON.stringify(first.body.data));
    expect(
      await environment.database.count('SELECT count(*) FROM charges WHERE id = $1', [
        first.body.data?.createCharge?.id,
      ]),
    ).toBe(1);
  });

  it('projects the stored charge through another selection set (the selection is not part of the fingerprint)', async () => {
    const key = newKey();
    const first = await createCharge(gateway.url, gateway.apiKey, key, visa);
    const narrow = await createCharge(gateway.url, gateway.apiKey, key, visa, { selection: 'id status' });
    expect(narrow.status).toBe(200);
    expect(narrow.body.data?.createCharge).toEqual({ id: first.body.data?.createCharge?.id, status: 'SUCCEEDED' });
  });

  it('treats reordered metadata keys as the same request', async () => {
    const key = newKey();
    await createCharge(gateway.url, gateway.apiKey, key, { ...visa, metadata: { a: 'b', z: 1 } });
    const again = await createCharge(gateway.url, gateway.apiKey, key, { ...visa, metadata: { z: 1, a: 'b' } });
    expect(again.status).toBe(200);
    expect(again.headers.get('idempotent-replayed')).toBe('true');
  });
});

describe('when the first request with the key is still in flight', () => {
  const slow = { ...visa, source: 'tok_slow' };
  const chargesForKey = (key: string) =>
    environment.database.count(
      'SELECT count(*) FROM charges WHERE idempotency_key_id = (SELECT id FROM idempotency_keys WHERE key = $1)',
      [key],
    );

  it('waits for it and answers its outcome as a replay: a double click 100 ms apart gets the same charge, no 409', async () => {
    const key = newKey();
    const firstPromise = createCharge(gateway.url, gateway.apiKey, key, slow);
    await new Promise((resolve) => setTimeout(resolve, 100)); // The double click's gap, not a wait for a condition.
    const second = await createCharge(gateway.url, gateway.apiKey, key, slow);
    const first = await firstPromise;
    expect(first.status).toBe(200);
    expect(second.status).toBe(200);
    expect(second.body.data?.createCharge?.id).toBe(first.body.data?.createCharge?.id);
    expect(second.headers.get('idempotent-replayed')).toBe('true');
    expect(second.body.extensions?.idempotency?.firstRequestAt).toBe(
      first.body.extensions?.idempotency?.firstRequestAt,
    );
    expect(await chargesForKey(key)).toBe(1);
  });

  it('answers 409 IDEMPOTENCY_KEY_IN_USE with Retry-After 1..2 only when the twin is still in flight after the wait', async () => {
    const key = newKey();
    const firstPromise = createCharge(gateway.url, gateway.apiKey, key, slow);
    await untilClaimed(key);
    const second = await createCharge(gateway.url, gateway.apiKey, key, slow, { headers: { prefer: 'wait=0' } });
    expect(second.status).toBe(409);
    expect(second.body.errors?.[0]?.extensions?.code).toBe('IDEMPOTENCY_KEY_IN_USE');
    expect(Number(second.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
    expect(Number(second.headers.get('retry-after'))).toBeLessThanOrEqual(2);
    expect(second.body.extensions?.idempotency?.firstRequestAt).toMatch(/Z$/);
    const first = await firstPromise;
    expect(first.status).toBe(200);
    const third = await createCharge(gateway.url, gateway.apiKey, key, slow);
    expect(third.headers.get('idempotent-replayed')).toBe('true');
    expect(await chargesForKey(key)).toBe(1);
  });
});

describe('when the key was reused with another amount', () => {
  it('answers 422 IDEMPOTENCY_KEY_REUSED, from Redis and from Postgres, and writes no charge', async () => {
    const key = newKey();
    await createCharge(gateway.url, gateway.apiKey, key, visa);
    const before = await chargeCount();
    const reused = await createCharge(gateway.url, gateway.apiKey, key, { ...visa, amount: 9999 });
    expect(reused.status).toBe(422);
    expect(reused.body.errors?.[0]?.extensions?.code).toBe('IDEMPOTENCY_KEY_REUSED');
    expect(reused.headers.get('idempotent-replayed')).toBeNull();
    await gateway.redis.del(`${environment.redisKeyPrefix}:idem:{${gateway.merchantId}}:${key}`);
    const reusedAgain = await createCharge(gateway.url, gateway.apiKey, key, { ...visa, amount: 9999 });
    expect(reusedAgain.status).toBe(422);
    expect(await chargeCount()).toBe(before);
  });

  it('answers 422 even while the first request is still in flight', async () => {
    const key = newKey();
    const firstPromise = createCharge(gateway.url, gateway.apiKey, key, { ...visa, source: 'tok_slow' });
    await untilClaimed(key);
    const reused = await createCharge(gateway.url, gateway.apiKey, key, { ...visa, source: 'tok_slow', amount: 1 });
    expect(reused.status).toBe(422);
    await firstPromise;
  });

  it('audits the reuse with the other amount, so a dispute can show it', async () => {
    // The Redis-answered audit batch flushes each second: wait for the row, with a deadline.
    await waitFor(
      async () =>
        (await environment.database.count(
          "SELECT count(*) FROM idempotency_audit WHERE outcome = 'mismatch' AND request_payload LIKE '%\"amount\":9999%'",
        )) > 0,
      10_000,
      'the mismatch to be audited',
    );
  });
});

describe('when the key is missing, malformed or ambiguous', () => {
  it.each([
    ['no key', undefined, {}, 'IDEMPOTENCY_KEY_MISSING'],
    ['an empty key', '', {}, 'IDEMPOTENCY_KEY_MISSING'],
    ['a key over 255 characters', 'k'.repeat(256), {}, 'IDEMPOTENCY_KEY_INVALID'],
    ['a key with a non-ASCII character', 'clé', {}, 'IDEMPOTENCY_KEY_INVALID'],
    ['two different key headers', 'a-key', { 'x-idempotency-key': 'b-key' }, 'IDEMPOTENCY_KEY_INVALID'],
  ])('answers 400 for %s and stores nothing', async (_name, key, headers, code) => {
    const before = await keyCount();
    const answer = await createCharge(gateway.url, gateway.apiKey, key, visa, { headers });
    expect(answer.status).toBe(400);
    expect(answer.body.errors?.[0]?.extensions?.code).toBe(code);
    expect(await keyCount()).toBe(before);
  });

  it('accepts X-Idempotency-Key as an alias', async () => {
    const answer = await createCharge(gateway.url, gateway.apiKey, undefined, visa, {
      headers: { 'x-idempotency-key': newKey() },
    });
    expect(answer.status).toBe(200);
  });

  it('answers 400 IDEMPOTENCY_KEY_AMBIGUOUS for two money-moving fields under one key', async () => {
    const before = await keyCount();
    const answer = await postGraphql(
      gateway.url,
      {
        query: `mutation { a: createCharge(input: {amount: 1, currency: "USD", source: "tok_visa"}) { id }
                           b: createCharge(input: {amount: 2, currency: "USD", source: "tok_visa"}) { id } }`,
      },
      { authorization: `Bearer ${gateway.apiKey}`, 'idempotency-key': newKey() },
    );
    expect(answer.status).toBe(400);
    expect(answer.body.errors?.[0]?.extensions?.code).toBe('IDEMPOTENCY_KEY_AMBIGUOUS');
    expect(await keyCount()).toBe(before);
  });
});

describe('when the input is invalid', () => {
  it.each([
    ['amount 0', { amount: 0 }, 'input.amount'],
    ['amount over 99,999,999', { amount: 100_000_000 }, 'input.amount'],
    ['an unknown currency', { currency: 'XXX' }, 'input.currency'],
    ['a lower-case currency', { currency: 'usd' }, 'input.currency'],
    ['a source that is not a token', { source: '4242424242424242' }, 'input.source'],
    ['a description over 500 characters', { description: 'd'.repeat(501) }, 'input.description'],
    ['metadata that is an array', { metadata: [1, 2] }, 'input.metadata'],
    ['nested metadata', { metadata: { a: { b: 1 } } }, 'input.metadata.a'],
  ])('answers 400 BAD_USER_INPUT naming the field for %s, before the key is taken', async (_name, change, field) => {
    const key = newKey();
    const before = await keyCount();
    const answer = await createCharge(gateway.url, gateway.apiKey, key, { ...visa, ...change });
    expect(answer.status).toBe(400);
    expect(answer.body.errors?.[0]?.extensions?.code).toBe('BAD_USER_INPUT');
    expect(answer.body.errors?.[0]?.extensions?.field).toBe(field);
    expect(await keyCount()).toBe(before);
    // The key was never taken: a corrected request with the same key runs.
    const corrected = await createCharge(gateway.url, gateway.apiKey, key, visa);
    expect(corrected.status).toBe(200);
  });

  it('answers 400 BAD_USER_INPUT for a wrongly typed variable, naming it', async () => {
    const answer = await createCharge(gateway.url, gateway.apiKey, newKey(), {
      ...visa,
      amount: 'ten' as unknown as number,
    });
    expect(answer.status).toBe(400);
    expect(answer.body.errors?.[0]?.extensions?.code).toBe('BAD_USER_INPUT');
    expect(answer.body.errors?.[0]?.message).toContain('amount');
  });
});

describe('when the acquirer declines', () => {
  it('stores the decline as a final FAILED charge and replays it', async () => {
    const key = newKey();
    const declined = await createCharge(gateway.url, gateway.apiKey, key, { ...visa, source: 'tok_chargeDeclined' });
    expect(declined.status).toBe(200);
    expect(declined.body.data?.createCharge).toMatchObject({ status: 'FAILED', failureCode: 'card_declined' });
    const again = await createCharge(gateway.url, gateway.apiKey, key, { ...visa, source: 'tok_chargeDeclined' });
    expect(again.headers.get('idempotent-replayed')).toBe('true');
    expect(JSON.stringify(again.body.data)).toBe(JSON.stringify(declined.body.data));
    const id = String(declined.body.data?.createCharge?.id);
    expect(
      await environment.database.count(
        "SELECT count(*) FROM outbox_events WHERE aggregate_id = $1 AND event_type = 'charge.failed'",
        [id],
      ),
    ).toBe(1);
  });
});

describe('when the acquirer fails transiently', () => {
  it('answers 503 TRANSIENT_FAILURE with Retry-After 1..2, releases the key and keeps its row', async () => {
    const key = newKey();
    const answer = await createCharge(gateway.url, gateway.apiKey, key, { ...visa, source: 'tok_timeout' });
    expect(answer.status).toBe(503);
    expect(answer.body.errors?.[0]?.extensions?.code).toBe('TRANSIENT_FAILURE');
    expect([1, 2]).toContain(Number(answer.headers.get('retry-after')));
    const { rows } = await environment.database.pool.query(
      'SELECT state, recovery_point, locked_until FROM idempotency_keys WHERE key = $1',
      [key],
    );
    expect(rows).toEqual([{ state: 'IN_PROGRESS', recovery_point: 'STARTED', locked_until: null }]);
    // Released: the retry runs at once (no 409), and a retry with another body is still 422.
    const retry = await createCharge(gateway.url, gateway.apiKey, key, { ...visa, source: 'tok_timeout' });
    expect(retry.status).toBe(503);
    const other = await createCharge(gateway.url, gateway.apiKey, key, visa);
    expect(other.status).toBe(422);
    expect(
      await environment.database.count(
        'SELECT count(*) FROM charges c JOIN idempotency_keys k ON k.id = c.idempotency_key_id WHERE k.key = $1',
        [key],
      ),
    ).toBe(0);
  });
});

describe('when the caller is not authenticated', () => {
  it.each([
    ['no Authorization header', {}],
    ['an unknown API key', { authorization: 'Bearer sk_unknown_key_000000000000' }],
  ])('answers 401 UNAUTHENTICATED for %s', async (_name, headers) => {
    const answer = await postGraphql(
      gateway.url,
      {
        query: 'mutation($input: CreateChargeInput!) { createCharge(input: $input) { id } }',
        variables: { input: visa },
      },
      { 'idempotency-key': newKey(), ...headers },
    );
    expect(answer.status).toBe(401);
    expect(answer.body.errors?.[0]?.extensions?.code).toBe('UNAUTHENTICATED');
  });

  it('still answers introspection, so Apollo Sandbox can load the schema', async () => {
    const answer = await postGraphql(gateway.url, { query: '{ __schema { mutationType { name } } }' });
    expect(answer.status).toBe(200);
    expect(answer.body.data).toEqual({ __schema: { mutationType: { name: 'Mutation' } } });
  });
});

describe('when two merchants use the same key', () => {
  it('keeps them independent: two charges', async () => {
    const other = await gateway.newMerchant('Other');
    const key = newKey();
    const mine = await createCharge(gateway.url, gateway.apiKey, key, visa);
    const theirs = await createCharge(gateway.url, other.apiKey, key, { ...visa, amount: 77 });
    expect(mine.status).toBe(200);
    expect(theirs.status).toBe(200);
    expect(theirs.headers.get('idempotent-replayed')).toBe('false');
    expect(theirs.body.data?.createCharge?.id).not.toBe(mine.body.data?.createCharge?.id);
  });

  it('shows a merchant only its own charges: another merchant’s id reads as null', async () => {
    const other = await gateway.newMerchant('Nosy');
    const mine = await createCharge(gateway.url, gateway.apiKey, newKey(), visa);
    const id = String(mine.body.data?.createCharge?.id);
    const query = { query: 'query($id: ID!) { charge(id: $id) { id amount } }', variables: { id } };
    const own = await postGraphql(gateway.url, query, { authorization: `Bearer ${gateway.apiKey}` });
    expect(own.body.data).toEqual({ charge: { id, amount: 1250 } });
    const foreign = await postGraphql(gateway.url, query, { authorization: `Bearer ${other.apiKey}` });
    expect(foreign.body.data).toEqual({ charge: null });
  });
});

describe('when a query is too deep or too large', () => {
  it('answers 400 BAD_REQUEST before running it', async () => {
    const deep = `{ __schema { types { fields { type { ${'ofType { '.repeat(14)}name ${'} '.repeat(14)}} } } } }`;
    const tooDeep = await postGraphql(gateway.url, { query: deep }, { authorization: `Bearer ${gateway.apiKey}` });
    expect(tooDeep.status).toBe(400);
    expect(tooDeep.body.errors?.[0]?.extensions?.code).toBe('BAD_REQUEST');
    const wide = `{ ${Array.from({ length: 1_001 }, (_, index) => `a${index}: __typename`).join(' ')} }`;
    const tooWide = await postGraphql(gateway.url, { query: wide }, { authorization: `Bearer ${gateway.apiKey}` });
    expect(tooWide.status).toBe(400);
    expect(tooWide.body.errors?.[0]?.extensions?.code).toBe('BAD_REQUEST');
  });
});

describe('when the gateway fails unexpectedly', () => {
  it('answers 500 INTERNAL telling the client to retry with the same key, stores nothing, and keeps the key leased', async () => {
    const buggy = await startTestGateway(environment, {
      ROLE: 'api',
      FAULTS: 'bug_before_record',
      IDEMPOTENCY_LEASE_MS: '1000',
      ACQUIRER_TIMEOUT_MS: '500',
    });
    try {
      const key = newKey();
      const answer = await createCharge(buggy.url, buggy.apiKey, key, visa);
      expect(answer.status).toBe(500);
      expect(answer.body.errors?.[0]?.extensions?.code).toBe('INTERNAL');
      expect(answer.body.errors?.[0]?.message).toContain('retry with the same Idempotency-Key');
      expect(answer.text).not.toContain('injected bug');
      expect(
        await environment.database.count(
          'SELECT count(*) FROM charges c JOIN idempotency_keys k ON k.id = c.idempotency_key_id WHERE k.key = $1',
          [key],
        ),
      ).toBe(0);
      // Not released: the lease runs out; then the healthy gateway resumes and charges once.
      const soon = await createCharge(gateway.url, buggy.apiKey, key, visa, { headers: { prefer: 'wait=0' } });
      expect(soon.status).toBe(409);
      await waitForLeaseToLapse(environment.database, key);
      const resumed = await createCharge(gateway.url, buggy.apiKey, key, visa);
      expect(resumed.status).toBe(200);
    } finally {
      await buggy.stop();
    }
  });
});

describe('when the request body is too large', () => {
  it('refuses it before parsing (413) and stores nothing', async () => {
    const before = await keyCount();
    const answer = await createCharge(gateway.url, gateway.apiKey, newKey(), {
      ...visa,
      description: 'x'.repeat(70_000),
    });
    expect(answer.status).toBe(413);
    expect(await keyCount()).toBe(before);
  });
});

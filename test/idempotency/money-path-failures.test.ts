/**
 * Regression tests for issue 10, "correct answers under every failure on the money path", each
 * over HTTP against a running gateway: unstorable input, infrastructure failures at each step,
 * duplicated headers, stored refusals, forged Redis answers, Redis TTLs, tombstones and the
 * acquirer pool's timeouts. Real outages (Postgres or Redis stopped) are in real-outages.test.ts.
 */
import http from 'node:http';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { purgeExpiredIdempotencyKeys } from '../../src/idempotency/key-row';
import { refundChargeInputSchema } from '../../src/charges/validation';
import { keyedRequest } from '../../src/idempotency/types';
import { createTestEnvironment, startTestGateway, type TestEnvironment, type TestGateway } from '../helpers/gateway';
import { createCharge, expectTransientFailure, postGraphql, type ChargeInputForTest } from '../helpers/http';
import { waitFor } from '../helpers/ledger';
import { authorizationsForKey, chargesForKey } from '../helpers/money-rows';

let environment: TestEnvironment;
let gateway: TestGateway;
let keyCounter = 0;
const newKey = () => `failure-key-${++keyCounter}-${Date.now()}`;
const visa: ChargeInputForTest = { amount: 1500, currency: 'USD', source: 'tok_visa' };
const refundMutation = `mutation Refund($input: RefundChargeInput!) { refundCharge(input: $input) { id amount status } }`;

beforeAll(async () => {
  environment = await createTestEnvironment();
  gateway = await startTestGateway(environment, { DATABASE_LOCK_TIMEOUT_MS: '1500' });
});
afterAll(async () => {
  await gateway?.stop();
  await environment?.cleanup();
});

const count = (sql: string, params: unknown[] = []) => environment.database.count(sql, params);
const redisKey = (key: string, merchantId = gateway.merchantId) =>
  `${environment.redisKeyPrefix}:idem:{${merchantId}}:${key}`;

function refund(key: string, input: Record<string, unknown>) {
  return postGraphql(
    gateway.url,
    { query: refundMutation, variables: { input } },
    { authorization: `Bearer ${gateway.apiKey}`, 'idempotency-key': key },
  );
}

async function succeededChargeId(): Promise<string> {
  const answer = await createCharge(gateway.url, gateway.apiKey, newKey(), visa);
  expect(answer.status).toBe(200);
  return String(answer.body.data?.createCharge?.id);
}

/** Runs `during` while another session holds `lockSql` in an open transaction. */
async function whileLocked<T>(lockSql: string, during: () => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: environment.database.url });
  await client.connect();
  try {
    await client.query('BEGIN');
    await client.query(lockSql);
    return await during();
  } finally {
    await client.query('ROLLBACK').catch(() => undefined);
    await client.end();
  }
}

describe('when the input holds what the database cannot store', () => {
  it.each([
    ['a NUL in description', { description: 'order\u0000 1' }, 'input.description'],
    ['an unpaired surrogate in description', { description: 'order \ud800' }, 'input.description'],
    ['a NUL in a metadata value', { metadata: { order: 'a\u0000b' } }, 'input.metadata.order'],
    ['a NUL in a metadata key', { metadata: { 'a\u0000': 'b' } }, 'input.metadata.a\u0000'],
    ['a metadata number past 2^53', { metadata: { n: 2 ** 53 + 2 } }, 'input.metadata.n'],
  ])(
    'answers 400 BAD_USER_INPUT for %s, before the key is taken and before any authorization',
    async (_n, change, field) => {
      const authorizationsBefore = await count('SELECT count(*) FROM acquirer_authorizations');
      const key = newKey();
      const answer = await createCharge(gateway.url, gateway.apiKey, key, { ...visa, ...change });
      expect(answer.status).toBe(400);
      expect(answer.body.errors?.[0]?.extensions).toMatchObject({ code: 'BAD_USER_INPUT', field });
      expect(await count('SELECT count(*) FROM idempotency_keys WHERE key = $1', [key])).toBe(0);
      expect(await count('SELECT count(*) FROM acquirer_authorizations')).toBe(authorizationsBefore);
    },
  );

  it('answers 400 for a metadata number past 2^53 sent as JSON text, so two bodies never share a fingerprint', async () => {
    const key = newKey();
    const body = (digits: string) =>
      `{"query":${JSON.stringify('mutation C($input: CreateChargeInput!) { createCharge(input: $input) { id } }')},` +
      `"variables":{"input":{"amount":1500,"currency":"USD","source":"tok_visa","metadata":{"n":${digits}}}}}`;
    for (const digits of ['9007199254740993', '9007199254740992']) {
      const response = await fetch(`${gateway.url}/graphql`, {
        method: 'POST',
        headers: {
          'content-type': 'application/json',
          authorization: `Bearer ${gateway.apiKey}`,
          'idempotency-key': key,
        },
        body: body(digits),
      });
      expect(response.status).toBe(400);
    }
    expect(await count('SELECT count(*) FROM idempotency_keys WHERE key = $1', [key])).toBe(0);
  });

  it('answers 400 for a NUL in a refund reason: nothing refunded at the acquirer, nothing reserved', async () => {
    const chargeId = await succeededChargeId();
    const answer = await refund(newKey(), { chargeId, amount: 100, reason: 'dup\u0000' });
    expect(answer.status).toBe(400);
    expect(answer.body.errors?.[0]?.extensions).toMatchObject({ code: 'BAD_USER_INPUT', field: 'input.reason' });
    expect(await count("SELECT count(*) FROM acquirer_authorizations WHERE kind = 'refund'")).toBe(0);
    expect(await count('SELECT amount_reserved AS count FROM charges WHERE id = $1', [chargeId])).toBe(0);
    // The charge stays refundable in full.
    const later = await refund(newKey(), { chargeId });
    expect(later.status).toBe(200);
    expect(later.body.data?.refundCharge).toMatchObject({ amount: 1500, status: 'SUCCEEDED' });
  });

  it('answers 404 for a chargeId with a NUL, and null for charge(id:) with one', async () => {
    const answer = await refund(newKey(), { chargeId: 'ch_\u0000' });
    expect(answer.status).toBe(404);
    expect(answer.body.errors?.[0]?.extensions?.code).toBe('NOT_FOUND');
    const read = await postGraphql(
      gateway.url,
      { query: 'query Q($id: ID!) { charge(id: $id) { id } }', variables: { id: 'ch_\u0000' } },
      { authorization: `Bearer ${gateway.apiKey}` },
    );
    expect(read.status).toBe(200);
    expect(read.body.data).toEqual({ charge: null });
  });
});

describe('when the Idempotency-Key header is sent twice', () => {
  it('answers 400 IDEMPOTENCY_KEY_INVALID instead of joining the two into a new key', async () => {
    const body = JSON.stringify({
      query: 'mutation C($input: CreateChargeInput!) { createCharge(input: $input) { id } }',
      variables: { input: visa },
    });
    const { status, text } = await new Promise<{ status: number; text: string }>((resolve, reject) => {
      const request = http.request(`${gateway.url}/graphql`, {
        method: 'POST',
        // An array sends the header twice, as a client or proxy that duplicates it would.
        headers: {
          'content-type': 'application/json',
          authorization: `Bearer ${gateway.apiKey}`,
          'idempotency-key': ['dup-a', 'dup-b'],
        },
      });
      request.on('response', (response) => {
        let data = '';
        response.on('data', (chunk: Buffer) => (data += chunk.toString()));
        response.on('end', () => resolve({ status: response.statusCode ?? 0, text: data }));
      });
      request.on('error', reject);
      request.end(body);
    });
    expect(status).toBe(400);
    expect(text).toContain('IDEMPOTENCY_KEY_INVALID');
    expect(await count("SELECT count(*) FROM idempotency_keys WHERE key LIKE 'dup-%'")).toBe(0);
  });
});

describe('when a stored refusal is replayed', () => {
  it('carries Idempotent-Replayed (false first, true on the replay) and firstRequestAt', async () => {
    const chargeId = await succeededChargeId();
    const key = newKey();
    const first = await refund(key, { chargeId, amount: 99_999_999 });
    expect(first.status).toBe(400);
    expect(first.body.errors?.[0]?.extensions?.code).toBe('REFUND_EXCEEDS_CHARGE');
    expect(first.headers.get('idempotent-replayed')).toBe('false');
    const again = await refund(key, { chargeId, amount: 99_999_999 });
    expect(again.headers.get('idempotent-replayed')).toBe('true');
    expect(again.body.extensions?.idempotency?.firstRequestAt).toBe(first.body.extensions?.idempotency?.firstRequestAt);
  });
});

describe('when a 422 is answered from Redis', () => {
  it('carries firstRequestAt', async () => {
    const key = newKey();
    const first = await createCharge(gateway.url, gateway.apiKey, key, visa);
    const reused = await createCharge(gateway.url, gateway.apiKey, key, { ...visa, amount: 1 });
    expect(reused.status).toBe(422);
    expect(reused.body.extensions?.idempotency?.firstRequestAt).toBe(
      first.body.extensions?.idempotency?.firstRequestAt,
    );
  });
});

describe('when the database holds a lock past lock_timeout', () => {
  it('answers 503 TRANSIENT_FAILURE with Retry-After 1 while the key is taken, and the retry charges once', async () => {
    const key = newKey();
    const answer = await whileLocked('LOCK TABLE idempotency_keys IN ACCESS EXCLUSIVE MODE', () =>
      createCharge(gateway.url, gateway.apiKey, key, visa),
    );
    expect(expectTransientFailure(answer)).toBe(1);
    const retry = await createCharge(gateway.url, gateway.apiKey, key, visa);
    expect(retry.status).toBe(200);
    expect(await chargesForKey(environment.database, key)).toBe(1);
  });

  it('answers 503 with Retry-After when recordCharge (a prepared statement on the pool) waits past lock_timeout, releases the key, and the retry charges once', async () => {
    const key = newKey();
    // The claim and the acquirer touch no charges row: the lock stops the recording statement.
    const answer = await whileLocked('LOCK TABLE charges IN ACCESS EXCLUSIVE MODE', () =>
      createCharge(gateway.url, gateway.apiKey, key, visa),
    );
    expect(expectTransientFailure(answer)).toBe(1);
    expect(await authorizationsForKey(environment.database, key)).toBe(1);
    expect(await count('SELECT count(*) FROM idempotency_keys WHERE key = $1 AND locked_until IS NULL', [key])).toBe(1);
    const retry = await createCharge(gateway.url, gateway.apiKey, key, visa);
    expect(retry.status).toBe(200);
    expect(await chargesForKey(environment.database, key)).toBe(1);
    expect(await authorizationsForKey(environment.database, key)).toBe(1);
  });

  it('answers 503 during the refund’s check that the charge is visible', async () => {
    const chargeId = await succeededChargeId();
    const answer = await whileLocked('LOCK TABLE charges IN ACCESS EXCLUSIVE MODE', () =>
      refund(newKey(), { chargeId, amount: 1 }),
    );
    expectTransientFailure(answer);
  });

  it('answers 503 during authentication', async () => {
    const merchant = await gateway.newMerchant('Locked out');
    const answer = await whileLocked('LOCK TABLE merchants IN ACCESS EXCLUSIVE MODE', () =>
      createCharge(gateway.url, merchant.apiKey, newKey(), visa),
    );
    expect(expectTransientFailure(answer)).toBe(1);
  });
});

describe('when a completed answer is forged in Redis', () => {
  it('ignores it, counts it, and lets Postgres decide: no replay of an invented charge', async () => {
    const key = newKey();
    const invented = {
      fingerprint: 'f'.repeat(64),
      state: 'completed',
      response: { status: 200, code: null, body: '{"id":"ch_invented"}', firstRequestAt: '2026-01-01T00:00:00.000Z' },
    };
    await gateway.redis.set(redisKey(key), `${'A'.repeat(43)}.${JSON.stringify(invented)}`, 'EX', 60);
    const forgedBefore = (await gateway.metrics.redisForgedAnswers.get()).values[0]?.value ?? 0;
    const answer = await createCharge(gateway.url, gateway.apiKey, key, visa);
    expect(answer.status).toBe(200);
    expect(answer.body.data?.createCharge?.id).not.toBe('ch_invented');
    expect(answer.headers.get('idempotent-replayed')).toBe('false');
    expect((await gateway.metrics.redisForgedAnswers.get()).values[0]?.value).toBe(forgedBefore + 1);
  });
});

describe('when retention is short', () => {
  it('never gives a Redis answer a TTL past the row’s remaining retention', async () => {
    const short = await startTestGateway(environment, { ROLE: 'api', IDEMPOTENCY_RETENTION_HOURS: '1' });
    try {
      const key = newKey();
      await createCharge(short.url, short.apiKey, key, visa);
      expect(await short.redis.ttl(redisKey(key, short.merchantId))).toBeLessThanOrEqual(3_600);
      // 59 minutes later, Redis has lost the answer: the replay from Postgres puts it back for a minute at most.
      await environment.database.pool.query(
        "UPDATE idempotency_keys SET updated_at = updated_at - interval '59 minutes' WHERE key = $1",
        [key],
      );
      await short.redis.del(redisKey(key, short.merchantId));
      const replay = await createCharge(short.url, short.apiKey, key, visa);
      expect(replay.headers.get('idempotent-replayed')).toBe('true');
      expect(await short.redis.ttl(redisKey(key, short.merchantId))).toBeLessThanOrEqual(60);
    } finally {
      await short.stop();
    }
  });
});

describe('when a key is used again after retention purged it', () => {
  it('answers 422 IDEMPOTENCY_KEY_EXPIRED from its tombstone, and no second authorization exists', async () => {
    const key = newKey();
    const first = await createCharge(gateway.url, gateway.apiKey, key, visa);
    expect(first.status).toBe(200);
    await environment.database.pool.query(
      "UPDATE idempotency_keys SET updated_at = now() - interval '100 hours' WHERE key = $1",
      [key],
    );
    const purged = await purgeExpiredIdempotencyKeys(gateway.database.prisma, {
      retentionHours: 72,
      batchSizeMax: 100,
    });
    expect(purged).toBeGreaterThanOrEqual(1);
    // Its Redis answer would have expired with the retention (the TTL is bounded by it).
    await gateway.redis.del(redisKey(key));
    const authorizationsBefore = await count('SELECT count(*) FROM acquirer_authorizations');
    const late = await createCharge(gateway.url, gateway.apiKey, key, visa);
    expect(late.status).toBe(422);
    expect(late.body.errors?.[0]?.extensions?.code).toBe('IDEMPOTENCY_KEY_EXPIRED');
    expect(late.body.extensions?.idempotency?.firstRequestAt).toBe(first.body.extensions?.idempotency?.firstRequestAt);
    expect(await count('SELECT count(*) FROM acquirer_authorizations')).toBe(authorizationsBefore);
    expect(await count('SELECT count(*) FROM idempotency_keys WHERE key = $1', [key])).toBe(0);
    const anotherBody = await createCharge(gateway.url, gateway.apiKey, key, { ...visa, amount: 7 });
    expect(anotherBody.body.errors?.[0]?.extensions?.code).toBe('IDEMPOTENCY_KEY_REUSED');
  });
});

describe('when a refund was left at RESERVED and the acquirer never saw it', () => {
  it('the completer releases the reservation and the key; the client’s retry refunds once', async () => {
    const chargeId = await succeededChargeId();
    const key = newKey();
    const input = refundChargeInputSchema.parse({ chargeId, amount: 500 });
    const request = keyedRequest('refundCharge', gateway.merchantId, key, input);
    const { rows } = await environment.database.pool.query<{ authorization_id: string }>(
      'SELECT authorization_id FROM charges WHERE id = $1',
      [chargeId],
    );
    // The holder died after reserving, before calling the acquirer; its lease ran out long ago.
    const progress = { amount: 500, currency: 'USD', chargeAuthorizationId: rows[0]!.authorization_id };
    await environment.database.pool.query(
      `INSERT INTO idempotency_keys (merchant_id, key, operation, fingerprint, request_payload, recovery_point,
                                     acquirer_result, locked_until, updated_at)
       VALUES ($1, $2, 'refundCharge', $3, $4, 'RESERVED', $5, now() - interval '1 hour', now() - interval '1 hour')`,
      [gateway.merchantId, key, request.fingerprint, request.requestPayload, JSON.stringify(progress)],
    );
    await environment.database.pool.query('UPDATE charges SET amount_reserved = 500 WHERE id = $1', [chargeId]);

    // This pass, or the gateway's own periodic one, releases it.
    await gateway.completer!.runOnce();
    await waitFor(
      async () => (await count('SELECT amount_reserved AS count FROM charges WHERE id = $1', [chargeId])) === 0,
      10_000,
      'the completer to release the reservation',
    );
    const keyRow = await environment.database.pool.query(
      'SELECT recovery_point, locked_until FROM idempotency_keys WHERE key = $1',
      [key],
    );
    expect(keyRow.rows[0]).toEqual({ recovery_point: 'STARTED', locked_until: null });

    const retry = await refund(key, { chargeId, amount: 500 });
    expect(retry.status).toBe(200);
    expect(retry.body.data?.refundCharge).toMatchObject({ amount: 500, status: 'SUCCEEDED' });
    const rest = await refund(newKey(), { chargeId });
    expect(rest.body.data?.refundCharge).toMatchObject({ amount: 1000, status: 'SUCCEEDED' });
    expect(await count("SELECT count(*) FROM acquirer_authorizations WHERE kind = 'refund'")).toBeGreaterThanOrEqual(2);
  });
});

describe('when the acquirer’s table is locked past the acquirer’s timeout', () => {
  it('answers 503 with Retry-After, its pool gives the statement up (no session left waiting), and the retry charges once', async () => {
    const key = newKey();
    const waitingAcquirerSessions = () =>
      count(
        `SELECT count(*) FROM pg_stat_activity
          WHERE datname = current_database() AND application_name = 'simulated-acquirer' AND wait_event_type = 'Lock'`,
      );
    const answer = await whileLocked('LOCK TABLE acquirer_authorizations IN ACCESS EXCLUSIVE MODE', async () => {
      const during = await createCharge(gateway.url, gateway.apiKey, key, visa);
      // Still locked: without the pool's lock_timeout its session would wait here for as long as
      // the lock is held, holding a connection nobody waits for.
      await waitFor(async () => (await waitingAcquirerSessions()) === 0, 10_000, 'the acquirer to stop waiting');
      return during;
    });
    expect(expectTransientFailure(answer)).toBe(1);

    const retry = await createCharge(gateway.url, gateway.apiKey, key, visa);
    expect(retry.status).toBe(200);
    expect(await chargesForKey(environment.database, key)).toBe(1);
    expect(await authorizationsForKey(environment.database, key)).toBe(1);
  });
});

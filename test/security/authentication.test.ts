/**
 * Limits before authentication (docs/security.md), over HTTP against running gateways: failed
 * keys are limited per address before any lookup, wrong admin tokens too, random tokens cannot
 * flush the key cache, a revocation reaches another process within a second, and a lookup that
 * fails for infrastructure answers 503.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startGateway } from '../../src/gateway';
import { keyRevocationChannel } from '../../src/merchants/key-revocations';
import { createLogger } from '../../src/platform/logger';
import { createTestEnvironment, startTestGateway, type TestEnvironment, type TestGateway } from '../helpers/gateway';
import { postGraphql } from '../helpers/http';

const adminToken = 'admin-token-for-security-tests';
const query = { query: '{ charges(first: 1) { edges { cursor } } }' };
const bearer = (key: string) => ({ authorization: `Bearer ${key}` });

let environment: TestEnvironment;
let gateway: TestGateway;
let peer: TestGateway;

beforeAll(async () => {
  environment = await createTestEnvironment();
  const overrides = {
    ROLE: 'api',
    ADMIN_TOKEN: adminToken,
    AUTH_FAILURES_PER_MINUTE: '5',
    ADMIN_AUTH_FAILURES_PER_MINUTE: '3',
    MERCHANT_CACHE_TTL_MS: '60000',
  };
  gateway = await startTestGateway(environment, overrides);
  peer = await startTestGateway(environment, overrides);
});
afterAll(async () => {
  await gateway?.stop();
  await peer?.stop();
  await environment?.cleanup();
});

const randomKey = () => `sk_${crypto.randomUUID().replaceAll('-', '')}`;

describe('when an operator revokes a key', () => {
  it('stops the key in another process within a second (Redis pub/sub)', async () => {
    const merchant = await gateway.newMerchant('Revoked');
    // Both processes subscribe in the background at start: wait until Redis counts both.
    const channel = keyRevocationChannel(environment.redisKeyPrefix);
    const subscribedBy = async () => ((await gateway.redis.pubsub('NUMSUB', channel)) as [string, number])[1];
    const deadline = Date.now() + 10_000;
    while ((await subscribedBy()) < 2 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 50));
    expect((await postGraphql(peer.url, query, bearer(merchant.apiKey))).status).toBe(200);
    const revoke = await fetch(`${gateway.url}/admin/graphql`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...bearer(adminToken) },
      body: JSON.stringify({ query: `mutation { revokeApiKey(merchantId: "${merchant.id}") }` }),
    });
    expect(revoke.status).toBe(200);
    const revokedAt = performance.now();
    let status = 200;
    let refusedRequestStartedMs = Infinity;
    while (status === 200 && performance.now() - revokedAt < 5_000) {
      const startedMs = performance.now() - revokedAt;
      status = (await postGraphql(peer.url, query, bearer(merchant.apiKey))).status;
      if (status !== 200) refusedRequestStartedMs = startedMs;
    }
    // The peer caches keys for 60 s: only the revocation message can stop the key this soon. The
    // request that saw 401 started within a second of the revocation; its own duration on a loaded
    // machine is not the revocation's delay.
    expect(status).toBe(401);
    expect(refusedRequestStartedMs).toBeLessThan(1_000);
  });
});

describe('when someone guesses the admin token', () => {
  it('answers 401 for each wrong token, then 429 with Retry-After, even for the right one', async () => {
    const statuses: number[] = [];
    for (let index = 0; index < 5; index += 1) {
      const answer = await fetch(`${peer.url}/admin/graphql`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', ...bearer(`guess-${index}-0123456789abcdef`) },
        body: JSON.stringify({ query: '{ outboxStatus { backlog } }' }),
      });
      statuses.push(answer.status);
      if (answer.status === 429) expect(Number(answer.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
    }
    expect(statuses).toEqual([401, 401, 401, 429, 429]);
    const right = await fetch(`${peer.url}/admin/graphql`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...bearer(adminToken) },
      body: JSON.stringify({ query: '{ outboxStatus { backlog } }' }),
    });
    expect(right.status).toBe(429);
  });
});

describe('when the key lookup fails for infrastructure', () => {
  it('answers 503 TRANSIENT_FAILURE with Retry-After, not 401 or 500', async () => {
    const config = environment.config({ ROLE: 'api', DATABASE_URL: 'postgresql://postgres@127.0.0.1:9/nowhere' });
    const unreachable = await startGateway(config, createLogger('silent'));
    try {
      const answer = await postGraphql(unreachable.url, query, bearer(randomKey()));
      expect(answer.status).toBe(503);
      expect(answer.body.errors?.[0]?.extensions?.code).toBe('TRANSIENT_FAILURE');
      expect(Number(answer.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
    } finally {
      await unreachable.stop();
    }
  });
});

describe('when random tokens flood a small key cache', () => {
  it('keeps the keys merchants use: unknown keys are never cached', async () => {
    const own = await createTestEnvironment();
    const small = await startTestGateway(own, {
      ROLE: 'api',
      AUTH_FAILURES_PER_MINUTE: '1000',
      MERCHANT_CACHE_TTL_MS: '60000',
      MERCHANT_CACHE_ENTRIES_MAX: '3',
    });
    try {
      expect((await postGraphql(small.url, query, bearer(small.apiKey))).status).toBe(200);
      for (let index = 0; index < 50; index += 1) {
        expect((await postGraphql(small.url, query, bearer(randomKey()))).status).toBe(401);
      }
      // Remove the key behind the cache's back (no revocation message): only a cache hit answers 200.
      await own.database.pool.query('UPDATE merchants SET api_key_hash = NULL WHERE id = $1', [small.merchantId]);
      expect((await postGraphql(small.url, query, bearer(small.apiKey))).status).toBe(200);
    } finally {
      await small.stop();
      await own.cleanup();
    }
  });
});

describe('when one address sends many unknown keys', () => {
  it('answers 429 with Retry-After past the limit, before any lookup, while cached keys keep working', async () => {
    // Cached before the flood: a cached key needs no lookup and is never limited.
    expect((await postGraphql(gateway.url, query, bearer(gateway.apiKey))).status).toBe(200);
    const other = await gateway.newMerchant('Not yet cached');

    const answers = await Promise.all(
      Array.from({ length: 20 }, () => postGraphql(gateway.url, query, bearer(randomKey()))),
    );
    const statuses = answers.map((answer) => answer.status);
    expect(statuses.filter((status) => status === 401).length).toBeLessThanOrEqual(5);
    expect(statuses.filter((status) => status === 429).length).toBeGreaterThanOrEqual(15);
    const limited = answers.find((answer) => answer.status === 429);
    expect(limited?.body.errors?.[0]?.extensions?.code).toBe('RATE_LIMITED');
    expect(Number(limited?.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);

    // A valid key that would need a lookup is refused too: the limit runs before the lookup.
    expect((await postGraphql(gateway.url, query, bearer(other.apiKey))).status).toBe(429);
    // No key at all from the same address: refused before anything else as well.
    expect((await postGraphql(gateway.url, query)).status).toBe(429);
    expect((await postGraphql(gateway.url, query, bearer(gateway.apiKey))).status).toBe(200);
  });
});

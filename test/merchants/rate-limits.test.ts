/**
 * Per-merchant request limits, shared through Redis: a merchant over its limit gets 429
 * RATE_LIMITED with Retry-After; another merchant is unaffected; a merchant's own limit overrides
 * the default.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestEnvironment, startTestGateway, type TestEnvironment, type TestGateway } from '../helpers/gateway';
import { createCharge } from '../helpers/http';

let environment: TestEnvironment;
let gateway: TestGateway;

beforeAll(async () => {
  environment = await createTestEnvironment();
  gateway = await startTestGateway(environment, {
    ROLE: 'api',
    MERCHANT_RATE_PER_SECOND: '5',
    MERCHANT_CACHE_TTL_MS: '0',
  });
});
afterAll(async () => {
  await gateway?.stop();
  await environment?.cleanup();
});

const input = { amount: 100, currency: 'USD', source: 'tok_visa' };

describe('when a merchant goes over its request rate', () => {
  it('answers 429 RATE_LIMITED with Retry-After, stores nothing for it, and leaves other merchants alone', async () => {
    // Warm the pool first, and bound the 200s by the one-second windows the burst spanned: on a
    // loaded machine 12 requests can take seconds, and each new window allows 5 more.
    expect((await createCharge(gateway.url, gateway.apiKey, 'warm-up', input)).status).toBe(200);
    await new Promise((resolve) => setTimeout(resolve, 1_100));
    const startedAt = Date.now();
    const answers = await Promise.all(
      Array.from({ length: 24 }, (_, index) => createCharge(gateway.url, gateway.apiKey, `burst-${index}`, input)),
    );
    const windows = Math.ceil((Date.now() - startedAt) / 1_000) + 1;
    const limited = answers.filter((answer) => answer.status === 429);
    const succeeded = answers.filter((answer) => answer.status === 200).length;
    expect(succeeded).toBeLessThanOrEqual(5 * windows);
    expect(succeeded + limited.length).toBe(24);
    expect(limited.length).toBeGreaterThanOrEqual(1);
    expect(limited[0]?.body.errors?.[0]?.extensions?.code).toBe('RATE_LIMITED');
    expect(Number(limited[0]?.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
    expect(await environment.database.count('SELECT count(*) FROM idempotency_keys')).toBe(succeeded + 1);

    const other = await gateway.newMerchant('Calm merchant');
    const calm = await createCharge(gateway.url, other.apiKey, 'calm-1', input);
    expect(calm.status).toBe(200);

    await new Promise((resolve) => setTimeout(resolve, 1_100));
    const later = await createCharge(gateway.url, gateway.apiKey, 'after-the-wait', input);
    expect(later.status).toBe(200);
  });

  it('uses the merchant’s own limit when it has one', async () => {
    const generous = await gateway.newMerchant('Generous limit');
    await environment.database.pool.query('UPDATE merchants SET rate_limit_per_second = 50 WHERE id = $1', [
      generous.id,
    ]);
    const answers = await Promise.all(
      Array.from({ length: 20 }, (_, index) => createCharge(gateway.url, generous.apiKey, `own-${index}`, input)),
    );
    expect(answers.every((answer) => answer.status === 200)).toBe(true);
  });
});

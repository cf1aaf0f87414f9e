/**
 * The token bucket: one algorithm, two stores. The Redis store (fleet-wide) must behave like the
 * memory store (a client) for the same operations.
 */
import { randomBytes } from 'node:crypto';
import { Redis } from 'ioredis';
import { afterAll, describe, expect, inject, it } from 'vitest';
import { RedisTokenBucketStore } from '../../src/retry/redis-token-bucket';
import { MemoryTokenBucketStore, RetryBudget, deposit, refill, take } from '@payments-gateway/retry';
import { deleteKeysWithPrefix } from '../../scripts/harness/redis';

const prefix = `t_${randomBytes(5).toString('hex')}`;
const redis = new Redis(inject('redisUrl'));
afterAll(async () => {
  await deleteKeysWithPrefix(inject('redisUrl'), prefix);
  redis.disconnect();
});

describe('the token-bucket arithmetic', () => {
  const options = { capacity: 10, refillPerSecond: 2 };
  it('refills at the rate, up to the capacity', () => {
    expect(refill({ tokens: 0, updatedAtMs: 0 }, options, 1_500).tokens).toBe(3);
    expect(refill({ tokens: 9, updatedAtMs: 0 }, options, 10_000).tokens).toBe(10);
  });
  it('grants whole tokens only, never more than there are', () => {
    const result = take({ tokens: 2.5, updatedAtMs: 0 }, 5, options, 0);
    expect(result.granted).toBe(2);
    expect(result.state.tokens).toBe(0.5);
  });
  it('caps deposits', () => {
    expect(deposit({ tokens: 9.95, updatedAtMs: 0 }, 0.1, options, 0).tokens).toBe(10);
  });
});

describe('the stores', () => {
  it('give the same answers in memory and in Redis for the same operations', async () => {
    const options = { capacity: 5, refillPerSecond: 0 };
    const memory = new MemoryTokenBucketStore(options);
    const shared = new RedisTokenBucketStore(redis, prefix, options);
    const script: [string, number][] = [
      ['take', 3],
      ['take', 3],
      ['deposit', 0.5],
      ['deposit', 0.6],
      ['take', 2],
      ['take', 1],
      ['deposit', 10],
      ['take', 7],
    ];
    for (const [operation, amount] of script) {
      if (operation === 'take') {
        expect(await shared.take('site', amount)).toBe(await memory.take('site', amount));
      } else {
        await memory.deposit('site', amount);
        await shared.deposit('site', amount);
      }
      expect(await shared.peek('site')).toBeCloseTo(await memory.peek('site'), 6);
    }
  });

  it('share one Redis bucket between processes (clients of the same prefix)', async () => {
    const options = { capacity: 3, refillPerSecond: 0 };
    const a = new RetryBudget(new RedisTokenBucketStore(redis, prefix, options), { depositPerSuccess: 1 });
    const b = new RetryBudget(new RedisTokenBucketStore(new Redis(inject('redisUrl')), prefix, options), {
      depositPerSuccess: 1,
    });
    expect(await a.tryRetry('shared')).toBe(true);
    expect(await b.tryRetry('shared')).toBe(true);
    expect(await a.tryRetry('shared')).toBe(true);
    expect(await b.tryRetry('shared')).toBe(false);
    await a.recordSuccess('shared');
    expect(await b.tryRetry('shared')).toBe(true);
  });
});

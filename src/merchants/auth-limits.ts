/**
 * Limits before authentication (docs/security.md): per client address, failed or missing
 * authentication is limited before any database lookup, so random bearer tokens cannot turn into
 * database load and the admin token cannot be guessed at speed.
 *
 * A key found in the cache needs no lookup and is never limited. Any other key spends one of the
 * address's failures before it is looked up (so a burst of parallel guesses is bounded too) and
 * gets it back when it turns out to be valid, or when the lookup could not be made (a database
 * failure, answered 503: it says nothing about the key). A request with no key that ends in 401 spends one.
 * Past the limit: 429 RATE_LIMITED with Retry-After. The counters live in Redis
 * (rate-limiter-flexible) and are shared by every process; if Redis cannot answer, each process
 * counts on its own (the insurance limiter).
 * A database failure during the lookup is 503 TRANSIENT_FAILURE with Retry-After, never 401 or 500.
 * The HTTP side is graphql/authentication.ts; this is the counter.
 */
import { RateLimiterMemory, RateLimiterRedis, RateLimiterRes } from 'rate-limiter-flexible';
import type { RedisClient } from '../platform/redis';

const windowSeconds = 60;

export class AuthFailureLimiter {
  private readonly limiter: RateLimiterRedis;

  constructor(
    redis: RedisClient,
    keyPrefix: string,
    purpose: 'api' | 'admin',
    private readonly failuresPerMinute: number,
  ) {
    this.limiter = new RateLimiterRedis({
      storeClient: redis,
      keyPrefix: `${keyPrefix}:authfail:${purpose}`,
      points: failuresPerMinute,
      duration: windowSeconds,
      insuranceLimiter: new RateLimiterMemory({ points: failuresPerMinute, duration: windowSeconds }),
    });
  }

  // The address is the hash tag: on Redis Cluster each address's counter has one slot.
  private static key(address: string): string {
    return `{${address}}`;
  }

  /** Seconds until the address may try again, when it has used its failures; undefined otherwise. */
  async blockedFor(address: string): Promise<number | undefined> {
    const state = await this.limiter.get(AuthFailureLimiter.key(address)).catch(() => null);
    if (state === null || state.consumedPoints < this.failuresPerMinute) return undefined;
    return Math.max(1, Math.ceil(state.msBeforeNext / 1000));
  }

  /** Spends one failure; returns the seconds to wait when there was none left. */
  async spend(address: string): Promise<number | undefined> {
    try {
      await this.limiter.consume(AuthFailureLimiter.key(address));
      return undefined;
    } catch (rejection) {
      // The limiter itself failed (not an over-limit answer): let the request through.
      if (!(rejection instanceof RateLimiterRes)) return undefined;
      return Math.max(1, Math.ceil(rejection.msBeforeNext / 1000));
    }
  }

  /** Gives back a failure spent on a key that turned out to be valid. */
  async refund(address: string): Promise<void> {
    await this.limiter.reward(AuthFailureLimiter.key(address), 1).catch(() => undefined);
  }
}

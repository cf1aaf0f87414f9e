/**
 * Per-merchant request limits, kept in Redis so every api process shares them
 * (rate-limiter-flexible). A merchant's own `rate_limit_per_second` overrides the default
 * (MERCHANT_RATE_PER_SECOND). Over the limit: 429 RATE_LIMITED with Retry-After.
 * If Redis cannot answer, each process falls back to an in-memory limiter of the same size
 * (rate-limiter-flexible's insurance limiter): limits then hold per process, not per fleet.
 */
import type { RedisClient } from '../platform/redis';
import { RateLimiterMemory, RateLimiterRedis, RateLimiterRes } from 'rate-limiter-flexible';
import { GatewayError } from '../errors';

export class MerchantRateLimits {
  // One limiter per distinct limit: merchants with the same limit share its configuration.
  private readonly limiters = new Map<number, RateLimiterRedis>();

  constructor(
    private readonly redis: RedisClient,
    private readonly keyPrefix: string,
    private readonly defaultPerSecond: number,
  ) {}

  private limiter(perSecond: number): RateLimiterRedis {
    let limiter = this.limiters.get(perSecond);
    if (limiter === undefined) {
      limiter = new RateLimiterRedis({
        storeClient: this.redis,
        keyPrefix: `${this.keyPrefix}:ratelimit:${perSecond}`,
        points: perSecond,
        duration: 1,
        insuranceLimiter: new RateLimiterMemory({ points: perSecond, duration: 1 }),
      });
      this.limiters.set(perSecond, limiter);
    }
    return limiter;
  }

  /** Spends one request of the merchant's limit, or throws RATE_LIMITED. */
  async consume(merchantId: string, ownPerSecond: number | null): Promise<void> {
    const perSecond = ownPerSecond ?? this.defaultPerSecond;
    try {
      // The merchant id is the hash tag: on Redis Cluster each merchant's counter has one slot.
      await this.limiter(perSecond).consume(`{${merchantId}}`);
    } catch (rejection) {
      if (!(rejection instanceof RateLimiterRes)) return; // The limiter itself failed: let the request through.
      throw new GatewayError('RATE_LIMITED', `Over ${perSecond} requests a second; retry after Retry-After seconds.`, {
        retryAfterSeconds: Math.max(1, Math.ceil(rejection.msBeforeNext / 1000)),
      });
    }
  }
}

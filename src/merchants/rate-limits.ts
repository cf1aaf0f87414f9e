/**
 * Per-merchant request limits, kept in Redis so every api process shares them
 * (rate-limiter-flexible). A merchant's own `rate_limit_per_second` overrides the default
 * (MERCHANT_RATE_PER_SECOND). Over the limit: 429 RATE_LIMITED with Retry-After.
 * If Redis cannot answer, each process falls back to an in-memory limiter of the same size
 * (rate-limiter-flexible's insurance limiter): limits then hold per process, not per fleet.
 *
 * `consumeAndRead` spends the same limit and reads one more key of the merchant's slot in the
 * same round trip (one script): a replay is answered from Redis with one round trip, not two
 * (src/graphql/replay-fast-path.ts). The script is rate-limiter-flexible's own counting script
 * (`incrTtlLuaScript`, the counter under the same key) followed by a GET, so both ways of
 * spending count against one window.
 */
import type { RedisClient } from '../platform/redis';
import { RateLimiterMemory, RateLimiterRedis, RateLimiterRes } from 'rate-limiter-flexible';
import { GatewayError } from '../errors';

// rate-limiter-flexible's incrTtlLuaScript (lib/RateLimiterRedis.js), then GET of KEYS[2].
const consumeAndGetScript = `redis.call('set', KEYS[1], 0, 'EX', ARGV[2], 'NX')
local consumed = redis.call('incrby', KEYS[1], ARGV[1])
local ttl = redis.call('pttl', KEYS[1])
if ttl == -1 then
  redis.call('expire', KEYS[1], ARGV[2])
  ttl = 1000 * ARGV[2]
end
return {consumed, ttl, redis.call('get', KEYS[2])}`;

const consumeAndGetCommand = 'pgwRateLimitConsumeAndGet';

type ConsumeAndGet = (
  rateKey: string,
  readKey: string,
  points: string,
  durationSeconds: string,
) => Promise<[number, number, string | null]>;

interface Limiter {
  readonly redis: RateLimiterRedis;
  readonly insurance: RateLimiterMemory;
}

export class MerchantRateLimits {
  // One limiter per distinct limit: merchants with the same limit share its configuration.
  private readonly limiters = new Map<number, Limiter>();

  constructor(
    private readonly redis: RedisClient,
    private readonly keyPrefix: string,
    private readonly defaultPerSecond: number,
  ) {
    // EVALSHA, loaded on first use (ioredis retries with EVAL on NOSCRIPT).
    redis.defineCommand(consumeAndGetCommand, { numberOfKeys: 2, lua: consumeAndGetScript });
  }

  private limiter(perSecond: number): Limiter {
    let limiter = this.limiters.get(perSecond);
    if (limiter === undefined) {
      const insurance = new RateLimiterMemory({ points: perSecond, duration: 1 });
      limiter = {
        redis: new RateLimiterRedis({
          storeClient: this.redis,
          keyPrefix: this.rateKeyPrefix(perSecond),
          points: perSecond,
          duration: 1,
          insuranceLimiter: insurance,
        }),
        insurance,
      };
      this.limiters.set(perSecond, limiter);
    }
    return limiter;
  }

  private rateKeyPrefix(perSecond: number): string {
    return `${this.keyPrefix}:ratelimit:${perSecond}`;
  }

  /** Spends one request of the merchant's limit, or throws RATE_LIMITED. */
  async consume(merchantId: string, ownPerSecond: number | null): Promise<void> {
    const perSecond = ownPerSecond ?? this.defaultPerSecond;
    try {
      // The merchant id is the hash tag: on Redis Cluster each merchant's counter has one slot.
      await this.limiter(perSecond).redis.consume(`{${merchantId}}`);
    } catch (rejection) {
      throwIfLimited(rejection, perSecond);
    }
  }

  /**
   * Spends one request of the merchant's limit (or throws RATE_LIMITED, as `consume`) and returns
   * the value under `readKey` in the same round trip: null when absent, undefined when Redis did
   * not answer (the limit then falls back to the in-memory limiter, as `consume` does). `readKey`
   * must be in the merchant's slot (hash tag `{<merchant id>}`).
   */
  async consumeAndRead(
    merchantId: string,
    ownPerSecond: number | null,
    readKey: string,
  ): Promise<string | null | undefined> {
    const perSecond = ownPerSecond ?? this.defaultPerSecond;
    const limiter = this.limiter(perSecond);
    const rateKey = `{${merchantId}}`;
    let reply: [number, number, string | null];
    try {
      const command = (this.redis as unknown as Record<string, ConsumeAndGet>)[consumeAndGetCommand]!;
      reply = await command.call(this.redis, `${this.rateKeyPrefix(perSecond)}:${rateKey}`, readKey, '1', '1');
    } catch {
      try {
        await limiter.insurance.consume(rateKey);
      } catch (rejection) {
        throwIfLimited(rejection, perSecond);
      }
      return undefined;
    }
    const [consumed, msBeforeNext, value] = reply;
    if (consumed > perSecond) throw limited(perSecond, msBeforeNext);
    return value;
  }
}

function limited(perSecond: number, msBeforeNext: number): GatewayError {
  return new GatewayError('RATE_LIMITED', `Over ${perSecond} requests a second; retry after Retry-After seconds.`, {
    retryAfterSeconds: Math.max(1, Math.ceil(msBeforeNext / 1000)),
  });
}

/** A limiter's rejection is RATE_LIMITED; the limiter itself failing lets the request through. */
function throwIfLimited(rejection: unknown, perSecond: number): void {
  if (rejection instanceof RateLimiterRes) throw limited(perSecond, rejection.msBeforeNext);
}

/**
 * The Redis store for the one token-bucket algorithm (packages/retry/src/token-bucket.ts, the
 * `@payments-gateway/retry` workspace the client SDK ships too): the same arithmetic as a Lua
 * script, atomic and on Redis's clock, so every process of the fleet shares one bucket per name.
 * test/retry/token-bucket.test.ts holds the two stores to the same answers. Not for the client
 * SDK (it imports Redis).
 */
import type { RedisClient } from '../platform/redis';
import type { TokenBucketOptions, TokenBucketStore } from '@payments-gateway/retry';

// KEYS[1] bucket; ARGV: capacity, refillPerSecond, operation ('take' | 'deposit' | 'peek'), amount.
// State is a hash {tokens, updatedAtMs}; a missing bucket starts full. Returns a string number.
const script = `
local capacity = tonumber(ARGV[1])
local rate = tonumber(ARGV[2])
local operation = ARGV[3]
local amount = tonumber(ARGV[4])
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
local state = redis.call('HMGET', KEYS[1], 'tokens', 'updatedAtMs')
local tokens = tonumber(state[1]) or capacity
local updated = tonumber(state[2]) or now
local elapsed = math.max(0, now - updated) / 1000
tokens = math.min(capacity, tokens + elapsed * rate)
local result = 0
if operation == 'take' then
  result = math.max(0, math.min(amount, math.floor(tokens)))
  tokens = tokens - result
elseif operation == 'deposit' then
  tokens = math.min(capacity, tokens + amount)
else
  result = tokens
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'updatedAtMs', tostring(now))
local idle = math.ceil((capacity / math.max(rate, 0.001)) * 1000) + 60000
redis.call('PEXPIRE', KEYS[1], math.min(idle, 86400000))
return tostring(result)`;

export class RedisTokenBucketStore implements TokenBucketStore {
  constructor(
    private readonly redis: RedisClient,
    private readonly keyPrefix: string,
    private readonly options: TokenBucketOptions,
  ) {}

  /** `{bucket:<name>}` is the hash tag: each bucket is one key, on one Redis Cluster slot. */
  private key(name: string): string {
    return `${this.keyPrefix}:bucket:{${name}}`;
  }

  private async run(name: string, operation: 'take' | 'deposit' | 'peek', amount: number): Promise<number> {
    const result = (await this.redis.eval(
      script,
      1,
      this.key(name),
      String(this.options.capacity),
      String(this.options.refillPerSecond),
      operation,
      String(amount),
    )) as string;
    return Number(result);
  }

  take(name: string, wanted: number): Promise<number> {
    return this.run(name, 'take', wanted);
  }

  async deposit(name: string, amount: number): Promise<void> {
    await this.run(name, 'deposit', amount);
  }

  peek(name: string): Promise<number> {
    return this.run(name, 'peek', 0);
  }
}

/**
 * The pure retry parts: full-jitter backoff and one token-bucket algorithm (with its in-memory
 * store and the retry budget over any store). No I/O and no dependencies, so the client SDK can
 * ship them, and the gateway's Redis store (src/retry/redis-token-bucket.ts) implements the same
 * `TokenBucketStore` for the whole fleet.
 */
export { fullJitterDelayMs, retryDelayMs, type BackoffOptions } from './backoff.js';
export {
  MemoryTokenBucketStore,
  RetryBudget,
  deposit,
  refill,
  take,
  type RetryBudgetOptions,
  type TokenBucketOptions,
  type TokenBucketState,
  type TokenBucketStore,
} from './token-bucket.js';

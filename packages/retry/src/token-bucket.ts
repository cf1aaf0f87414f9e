/**
 * One token-bucket algorithm, with two stores: in memory (a client, one process; here) and in
 * Redis (the whole fleet: the gateway's src/retry/redis-token-bucket.ts implements
 * `TokenBucketStore` with the same arithmetic in Lua, on Redis's clock). Pure: no I/O; the client
 * SDK (@payments-gateway/client) ships it.
 *
 * A bucket holds at most `capacity` tokens and gains `refillPerSecond` tokens a second.
 * - As a retry budget: a success deposits a fraction of a token (`depositPerSuccess`), a retry
 *   withdraws one; when the bucket is empty retries stop (the first attempts go on). The slow
 *   refill lets a fleet probe a downstream that has had no success for a while.
 * - As a rate limit: every event takes one token; `refillPerSecond` is the rate and `capacity`
 *   the burst.
 */

export interface TokenBucketOptions {
  readonly capacity: number;
  readonly refillPerSecond: number;
}

export interface TokenBucketState {
  readonly tokens: number;
  readonly updatedAtMs: number;
}

export function refill(state: TokenBucketState, options: TokenBucketOptions, nowMs: number): TokenBucketState {
  const elapsedSeconds = Math.max(0, nowMs - state.updatedAtMs) / 1000;
  return {
    tokens: Math.min(options.capacity, state.tokens + elapsedSeconds * options.refillPerSecond),
    updatedAtMs: nowMs,
  };
}

/** Takes up to `wanted` whole tokens; returns how many it got. */
export function take(
  state: TokenBucketState,
  wanted: number,
  options: TokenBucketOptions,
  nowMs: number,
): { state: TokenBucketState; granted: number } {
  const current = refill(state, options, nowMs);
  const granted = Math.max(0, Math.min(wanted, Math.floor(current.tokens)));
  return { state: { ...current, tokens: current.tokens - granted }, granted };
}

export function deposit(
  state: TokenBucketState,
  amount: number,
  options: TokenBucketOptions,
  nowMs: number,
): TokenBucketState {
  const current = refill(state, options, nowMs);
  return { ...current, tokens: Math.min(options.capacity, current.tokens + amount) };
}

/** Where buckets live. Methods are async so a Redis store fits the same shape. */
export interface TokenBucketStore {
  /** Takes up to `wanted` whole tokens from the bucket `name`; resolves to how many it got. */
  take(name: string, wanted: number): Promise<number>;
  deposit(name: string, amount: number): Promise<void>;
  /** The tokens in the bucket now, for metrics. */
  peek(name: string): Promise<number>;
}

/** In-memory buckets, full at first sight. For one process (the client SDK, tests). */
export class MemoryTokenBucketStore implements TokenBucketStore {
  private readonly buckets = new Map<string, TokenBucketState>();

  constructor(
    private readonly options: TokenBucketOptions,
    private readonly now: () => number = Date.now,
  ) {}

  async take(name: string, wanted: number): Promise<number> {
    const result = take(this.state(name), wanted, this.options, this.now());
    this.buckets.set(name, result.state);
    return result.granted;
  }

  async deposit(name: string, amount: number): Promise<void> {
    this.buckets.set(name, deposit(this.state(name), amount, this.options, this.now()));
  }

  async peek(name: string): Promise<number> {
    return refill(this.state(name), this.options, this.now()).tokens;
  }

  private state(name: string): TokenBucketState {
    return this.buckets.get(name) ?? { tokens: this.options.capacity, updatedAtMs: this.now() };
  }
}

export interface RetryBudgetOptions {
  /** What one success puts back: 0.1 allows one retry per ten successes in steady state. */
  readonly depositPerSuccess: number;
}

/** A retry budget per call site, over any store. */
export class RetryBudget {
  constructor(
    private readonly store: TokenBucketStore,
    private readonly options: RetryBudgetOptions,
  ) {}

  recordSuccess(callSite: string): Promise<void> {
    return this.store.deposit(callSite, this.options.depositPerSuccess);
  }

  /** Several successes at once: one store call. */
  recordSuccesses(callSite: string, count: number): Promise<void> {
    return this.store.deposit(callSite, this.options.depositPerSuccess * count);
  }

  /** True when a retry may go ahead (and a token was spent on it). */
  async tryRetry(callSite: string): Promise<boolean> {
    return (await this.store.take(callSite, 1)) === 1;
  }

  tokens(callSite: string): Promise<number> {
    return this.store.peek(callSite);
  }
}

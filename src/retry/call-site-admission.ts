/**
 * Admission for a fleet's call site (ledger.apply): the retry budget, plus what happens when it
 * is empty.
 *
 * - Every failure pays for the retry it causes: one token from the call site's budget.
 *   Every success deposits a fraction of a token (RETRY_BUDGET_DEPOSIT_PER_SUCCESS).
 * - When a failure finds the budget empty, the call site is held: a Redis flag that every worker
 *   sees. While held, calls wait (the caller delays the job with DelayedError, spending no
 *   attempt) except one probe per `probeIntervalMs` across the fleet. A probe that succeeds
 *   releases the hold.
 * So during an outage the downstream sees about the budget's capacity in failures plus a probe
 * per interval, not attempts × jobs; and nothing is dropped.
 * If Redis cannot answer, calls go ahead: BullMQ's attempts still bound them.
 * On the hot path each process looks at the hold at most every `holdCheckIntervalMs` and sends
 * its deposits in one command at most that often: the budget is a rate guard, not a ledger.
 */
import type { RedisClient } from '../platform/redis';
import type { RetryBudget } from './token-bucket';

export interface CallSiteAdmissionOptions {
  readonly keyPrefix: string;
  readonly callSite: string;
  readonly probeIntervalMs: number;
  /** How long a hold lasts without a fresh failure: a fleet that stops probing does not stay held. */
  readonly holdMs: number;
  /** How stale this process's view of the hold may be. */
  readonly holdCheckIntervalMs?: number;
}

export class CallSiteAdmission {
  private heldAsOf: { held: boolean; atMs: number } = { held: false, atMs: 0 };
  private pendingDeposit = 0;
  private lastDepositAtMs = 0;

  constructor(
    private readonly redis: RedisClient,
    private readonly budget: RetryBudget,
    private readonly options: CallSiteAdmissionOptions,
  ) {}

  private get holdKey(): string {
    return `${this.options.keyPrefix}:hold:{${this.options.callSite}}`;
  }

  private get probeKey(): string {
    return `${this.options.keyPrefix}:hold:{${this.options.callSite}}:probe`;
  }

  private get checkIntervalMs(): number {
    return this.options.holdCheckIntervalMs ?? 100;
  }

  /** True when the call may go ahead now. */
  async admit(): Promise<boolean> {
    try {
      if (Date.now() - this.heldAsOf.atMs >= this.checkIntervalMs) {
        this.heldAsOf = { held: (await this.redis.exists(this.holdKey)) === 1, atMs: Date.now() };
      }
      if (!this.heldAsOf.held) return true;
      return (await this.redis.set(this.probeKey, '1', 'PX', this.options.probeIntervalMs, 'NX')) === 'OK';
    } catch {
      return true;
    }
  }

  async recordSuccess(): Promise<void> {
    try {
      this.pendingDeposit += 1;
      if (this.heldAsOf.held) {
        // A success while held is a probe that worked: lift the hold for the whole fleet.
        await this.redis.del(this.holdKey);
        this.heldAsOf = { held: false, atMs: Date.now() };
      }
      if (Date.now() - this.lastDepositAtMs >= this.checkIntervalMs) {
        const successes = this.pendingDeposit;
        this.pendingDeposit = 0;
        this.lastDepositAtMs = Date.now();
        await this.budget.recordSuccesses(this.options.callSite, successes);
      }
    } catch {
      // Redis is down: the budget cannot be told; nothing else depends on it.
    }
  }

  /** Pays for the retry this failure causes; returns false (and holds the call site) when it cannot. */
  async recordFailure(): Promise<boolean> {
    try {
      if (await this.budget.tryRetry(this.options.callSite)) return true;
      await this.redis.set(this.holdKey, '1', 'PX', this.options.holdMs);
      this.heldAsOf = { held: true, atMs: Date.now() };
      return false;
    } catch {
      return true;
    }
  }

  async isHeld(): Promise<boolean> {
    try {
      return (await this.redis.exists(this.holdKey)) === 1;
    } catch {
      return false;
    }
  }
}

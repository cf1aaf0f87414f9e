/**
 * Admission for a fleet's call site (ledger.apply): the retry budget, plus the hold that keeps a
 * failing downstream from being hammered (docs/event-path.md "Retries, budgets, holds").
 *
 * - A call site is **held** by a Redis flag every worker sees. While held, calls wait (the caller
 *   delays its job with DelayedError, spending no attempt) except one probe per
 *   `probeIntervalMs` across the fleet. A probe that succeeds lifts the hold; a probe that fails
 *   renews it, so a hold does not lapse while the downstream still fails. It lapses by itself
 *   (`holdMs`) only when nobody probes any more (no worker left running).
 * - An outage (Postgres or Redis unreachable) holds the call site at once: one job in flight is
 *   enough, and it spends no budget token, because it is not the event's fault.
 * - Any other failure pays for the retry it causes: one token from the call site's budget; a
 *   success deposits a fraction of a token (RETRY_BUDGET_DEPOSIT_PER_SUCCESS). A failure that
 *   finds the budget empty holds the call site, and its own job is held too.
 * A probe's job spends no attempt whatever happens to it: `admit()` says 'probe', and the caller
 * holds its job on any failure that is not final.
 * If Redis cannot answer, calls go ahead: the job cannot move without Redis anyway.
 * On the hot path each process looks at the hold at most every `holdCheckIntervalMs` and sends
 * its deposits in one command at most that often: the budget is a rate guard, not a ledger.
 */
import type { RedisClient } from '../platform/redis';
import type { RetryBudget } from '@payments-gateway/retry';

export interface CallSiteAdmissionOptions {
  readonly keyPrefix: string;
  readonly callSite: string;
  readonly probeIntervalMs: number;
  /** How long a hold lasts with no probe renewing it: a fleet that stops probing does not stay held. */
  readonly holdMs: number;
  /** How stale this process's view of the hold may be. */
  readonly holdCheckIntervalMs?: number;
}

/** `go`: call normally. `probe`: call, as the fleet's one probe of a held call site. `held`: wait. */
export type Admission = 'go' | 'probe' | 'held';

export class CallSiteAdmission {
  private heldAsOf: { held: boolean; atMs: number } = { held: false, atMs: 0 };
  private pendingDeposit = 0;
  private lastDepositAtMs = 0;

  constructor(
    private readonly redis: RedisClient,
    private readonly budget: RetryBudget,
    private readonly options: CallSiteAdmissionOptions,
  ) {}

  get callSite(): string {
    return this.options.callSite;
  }

  private get holdKey(): string {
    return `${this.options.keyPrefix}:hold:{${this.options.callSite}}`;
  }

  private get probeKey(): string {
    return `${this.options.keyPrefix}:hold:{${this.options.callSite}}:probe`;
  }

  private get checkIntervalMs(): number {
    return this.options.holdCheckIntervalMs ?? 100;
  }

  async admit(): Promise<Admission> {
    try {
      if (Date.now() - this.heldAsOf.atMs >= this.checkIntervalMs) {
        this.heldAsOf = { held: (await this.redis.exists(this.holdKey)) === 1, atMs: Date.now() };
      }
      if (!this.heldAsOf.held) return 'go';
      const probe = await this.redis.set(this.probeKey, '1', 'PX', this.options.probeIntervalMs, 'NX');
      return probe === 'OK' ? 'probe' : 'held';
    } catch {
      return 'go';
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

  /** The downstream is unreachable: hold the call site (or renew its hold). Spends no token. */
  async recordOutage(): Promise<void> {
    await this.hold();
  }

  /**
   * Pays for the retry this failure causes. False (and the call site held) when the budget is
   * empty: the caller then holds its job instead of retrying it.
   */
  async recordFailure(): Promise<boolean> {
    try {
      if (await this.budget.tryRetry(this.options.callSite)) return true;
    } catch {
      return true;
    }
    await this.hold();
    return false;
  }

  async isHeld(): Promise<boolean> {
    try {
      return (await this.redis.exists(this.holdKey)) === 1;
    } catch {
      return false;
    }
  }

  private async hold(): Promise<void> {
    try {
      await this.redis.set(this.holdKey, '1', 'PX', this.options.holdMs);
      this.heldAsOf = { held: true, atMs: Date.now() };
    } catch {
      // Redis is down too: the job cannot move anyway; the stalled checker gives it back later.
    }
  }
}

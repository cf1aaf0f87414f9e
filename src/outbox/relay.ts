/**
 * The relay: moves committed outbox events onto the ledger queue.
 *
 * Claim with a lease, commit, publish, then mark (no transaction is open across the network call):
 *   1. take up to `batchSizeMax` tokens from the fleet-wide rate bucket (Redis);
 *   2. claim that many unpublished events in id order: one UPDATE … WHERE id IN (SELECT … FOR
 *      UPDATE SKIP LOCKED) that sets `claimed_until`, so relays running at once take disjoint
 *      batches and a crashed relay's claim lapses by itself;
 *   3. `addBulk` with jobId = `evt_<uid>` (the event's UUID: a restored database reuses ids);
 *   4. mark them published.
 * A relay killed between 3 and 4 publishes the batch again once the claim lapses: expected, and
 * harmless, because the worker's inbox deduplicates. It wakes on LISTEN outbox_events (and
 * listens again when that connection drops) and polls as a fallback. On shutdown it releases
 * claims it has not published. Beside it runs the sweeper (src/outbox/sweeper.ts), which
 * publishes again what was published but never applied.
 */
import pg from 'pg';
import type { Queue } from 'bullmq';
import type { Fault } from '../config';
import type { Database } from '../platform/database';
import type { Logger } from '../platform/logger';
import { fullJitterDelayMs, type RetryBudget, type TokenBucketStore } from '@payments-gateway/retry';
import type { OutboxEventType } from './events';
import { jobIdFor, type LedgerJobData } from './queue';
import { Sweeper, withTimeout, type RepublishReason, type SweeperOptions } from './sweeper';

export interface RelayOptions {
  readonly databaseUrl: string;
  readonly batchSizeMax: number;
  readonly pollIntervalMs: number;
  readonly claimLeaseMs: number;
  /** 0: uncapped. */
  readonly ratePerSecond: number;
  readonly faults: ReadonlySet<Fault>;
  /** A publish must not hang on a dead Redis: past this, the claim is released and retried. */
  readonly publishTimeoutMs: number;
  /** The sweeper's grace and interval (SWEEPER_GRACE_MS, SWEEPER_INTERVAL_MS); absent: no sweeper. */
  readonly sweeper?: Pick<SweeperOptions, 'graceMs' | 'intervalMs'>;
}

export interface RelayDependencies {
  readonly db: Database;
  readonly queue: Queue<LedgerJobData>;
  readonly rateBucket: TokenBucketStore;
  readonly retryBudget: RetryBudget;
  readonly logger: Logger;
  readonly onPublished: (count: number) => void;
  readonly onPublishFailed: () => void;
  readonly onRepublished?: (count: number, reason: RepublishReason) => void;
  /** A publish retry refused because the relay.publish retry budget was empty. */
  readonly onBudgetExhausted?: () => void;
}

interface ClaimedEvent {
  id: string;
  event_uid: string;
  event_type: OutboxEventType;
  payload: string;
}

export const relayPublishCallSite = 'relay.publish';
export const relayRateBucketName = 'relay.rate';
/** How long to wait before listening again after the LISTEN connection dropped. */
const relistenDelayMs = 1_000;
/** A healthy claim–publish–mark round takes milliseconds; see stop(). */
const roundOnStopWaitMs = 2_000;
/** With rate tokens short, how soon to look again: about when the bucket has refilled a little. */
const rateStarvedWaitMs = 50;

export class Relay {
  private running = false;
  private loopDone: Promise<void> = Promise.resolve();
  private wake: (() => void) | undefined;
  /** A NOTIFY that arrived while we were busy: the next sleep returns at once. */
  private notified = false;
  private listener: pg.Client | undefined;
  private inFlight: string[] = [];
  private consecutiveFailures = 0;
  /** The last round found events but no rate tokens: look again soon, not at the poll interval. */
  private rateStarved = false;
  private relistenTimer: NodeJS.Timeout | undefined;
  private readonly sweeper: Sweeper | undefined;

  constructor(
    private readonly deps: RelayDependencies,
    private readonly options: RelayOptions,
  ) {
    if (options.sweeper !== undefined) {
      this.sweeper = new Sweeper(
        {
          db: deps.db,
          queue: deps.queue,
          logger: deps.logger,
          onRepublished: (count, reason) => deps.onRepublished?.(count, reason),
        },
        { ...options.sweeper, batchSizeMax: options.batchSizeMax, publishTimeoutMs: options.publishTimeoutMs },
      );
    }
  }

  async start(): Promise<void> {
    this.running = true;
    await this.listen();
    this.loopDone = this.loop();
    this.sweeper?.start();
  }

  /**
   * Finishes the round in hand, but waits for it at most `roundOnStopWaitMs`: a round that takes
   * longer hangs on a dead or frozen Redis and would publish nothing anyway. Then releases any
   * claim not yet marked published, so another relay takes the events at once instead of after
   * the lease. Should the hung publish still land later, the inbox keeps the effect at one.
   */
  async stop(): Promise<void> {
    this.running = false;
    clearTimeout(this.relistenTimer);
    this.wake?.();
    await withTimeout(this.loopDone, roundOnStopWaitMs).catch(() =>
      this.deps.logger.warn('relay round still publishing at shutdown; releasing its claim'),
    );
    if (this.inFlight.length > 0) await this.releaseClaims(this.inFlight);
    await this.sweeper?.stop();
    await this.listener?.end().catch(() => undefined);
  }

  /** The sweeper, for tests and operators' scripts that sweep on demand. */
  get outboxSweeper(): Sweeper | undefined {
    return this.sweeper;
  }

  /** One claim–publish–mark round. Returns how many events it published. */
  async publishOnce(): Promise<number> {
    const wanted = this.options.batchSizeMax;
    const granted =
      this.options.ratePerSecond === 0 ? wanted : await this.deps.rateBucket.take(relayRateBucketName, wanted);
    this.rateStarved = granted === 0;
    if (granted === 0) return 0;
    const events = await this.claim(granted);
    if (this.options.ratePerSecond > 0 && events.length < granted) {
      // Tokens we could not use go back, so the rate is spent on events, not on empty polls.
      await this.deps.rateBucket.deposit(relayRateBucketName, granted - events.length);
    }
    if (events.length === 0) return 0;
    const ids = events.map((event) => event.id);
    this.inFlight = ids;
    try {
      await withTimeout(
        this.deps.queue.addBulk(
          events.map((event) => ({
            name: event.event_type,
            data: { eventId: event.id, eventUid: event.event_uid, type: event.event_type, payload: event.payload },
            opts: { jobId: jobIdFor(event.event_uid) },
          })),
        ),
        this.options.publishTimeoutMs,
      );
    } catch (error) {
      this.inFlight = [];
      await this.releaseClaims(ids);
      throw error;
    }
    if (this.options.faults.has('crash_after_publish')) process.kill(process.pid, 'SIGKILL');
    await this.deps.db.$executeRaw`
      UPDATE outbox_events SET published_at = now(), claimed_until = NULL
       WHERE id = ANY(${ids}::bigint[]) AND published_at IS NULL`;
    this.inFlight = [];
    this.deps.onPublished(events.length);
    return events.length;
  }

  private async claim(limit: number): Promise<ClaimedEvent[]> {
    return this.deps.db.$queryRaw<ClaimedEvent[]>`
      UPDATE outbox_events
         SET claimed_until = now() + ${this.options.claimLeaseMs} * interval '1 millisecond'
       WHERE id IN (
         SELECT id FROM outbox_events
          WHERE published_at IS NULL AND (claimed_until IS NULL OR claimed_until < now())
          ORDER BY id
          LIMIT ${limit}
          FOR UPDATE SKIP LOCKED)
      RETURNING id::text, event_uid::text, event_type, payload`.then((rows) =>
      rows.sort((a, b) => Number(BigInt(a.id) - BigInt(b.id))),
    );
  }

  private async releaseClaims(ids: string[]): Promise<void> {
    await this.deps.db.$executeRaw`
      UPDATE outbox_events SET claimed_until = NULL WHERE id = ANY(${ids}::bigint[]) AND published_at IS NULL`.catch(
      (error: unknown) =>
        this.deps.logger.warn({ err: error }, 'relay could not release its claim; it lapses by itself'),
    );
  }

  private async loop(): Promise<void> {
    while (this.running) {
      let published = 0;
      try {
        published = await this.publishOnce();
        if (this.consecutiveFailures > 0)
          await this.deps.retryBudget.recordSuccess(relayPublishCallSite).catch(() => undefined);
        this.consecutiveFailures = 0;
      } catch (error) {
        this.deps.onPublishFailed();
        this.consecutiveFailures += 1;
        this.deps.logger.warn({ err: error }, 'relay publish failed; retrying');
        await this.waitBeforeRetry();
        continue;
      }
      if (published > 0) continue;
      // No rate tokens: look again when a few have refilled. Nothing to publish: wait for a
      // NOTIFY or the poll interval, so an idle relay under the cap polls modestly.
      await this.sleep(
        this.rateStarved ? Math.min(this.options.pollIntervalMs, rateStarvedWaitMs) : this.options.pollIntervalMs,
      );
    }
  }

  /**
   * Backoff with full jitter; the retry budget decides whether we retry soon or wait long. When
   * Redis cannot answer for the budget, nothing can be published anyway: the jittered backoff
   * alone paces the tries.
   */
  private async waitBeforeRetry(): Promise<void> {
    const allowed = await this.deps.retryBudget.tryRetry(relayPublishCallSite).catch(() => true);
    if (!allowed) this.deps.onBudgetExhausted?.();
    const attempt = Math.min(this.consecutiveFailures, 10);
    const delayMs = allowed
      ? fullJitterDelayMs(attempt, { baseMs: 100, capMs: 5_000 })
      : Math.max(this.options.pollIntervalMs, 5_000);
    await this.sleep(delayMs);
  }

  private sleep(ms: number): Promise<void> {
    if (this.notified || !this.running) {
      this.notified = false;
      return Promise.resolve();
    }
    return new Promise((resolve) => {
      let timer: NodeJS.Timeout | undefined = undefined;
      const done = () => {
        clearTimeout(timer);
        this.notified = false;
        this.wake = undefined;
        resolve();
      };
      timer = setTimeout(done, ms);
      this.wake = done;
    });
  }

  /** LISTEN on its own connection; when that connection drops, polls meanwhile and listens again. */
  private async listen(): Promise<void> {
    const client = new pg.Client({
      connectionString: this.options.databaseUrl,
      application_name: 'payments-relay-listen',
    });
    let lost = false;
    const relisten = (error?: unknown) => {
      if (lost) return;
      lost = true;
      if (this.listener === client) this.listener = undefined;
      client.end().catch(() => undefined);
      if (!this.running) return;
      this.deps.logger.warn({ err: error }, 'relay LISTEN connection lost; polling, and listening again');
      // A NOTIFY may have been missed while the connection was down: look now.
      this.notified = true;
      this.wake?.();
      this.relistenTimer = setTimeout(() => void this.listen(), relistenDelayMs);
    };
    client.on('error', relisten);
    client.on('end', () => relisten());
    client.on('notification', () => {
      this.notified = true;
      this.wake?.();
    });
    try {
      await client.connect();
      await client.query('LISTEN outbox_events');
      this.listener = client;
    } catch (error) {
      relisten(error);
    }
  }

  /** True while LISTEN is established (for tests and /readyz detail). */
  get listening(): boolean {
    return this.listener !== undefined;
  }
}

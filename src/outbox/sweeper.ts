/**
 * The sweeper: a published event that was never applied is published again, whatever Redis has
 * forgotten (docs/contract.md §5). It trusts only Postgres.
 *
 * Every `intervalMs` it reads up to `batchSizeMax` events that were published more than `graceMs`
 * ago and have no inbox row and no dead letter waiting for an operator. Those whose latest job is
 * still in the queue (waiting, delayed, running: a backlog, not a loss) are left alone. The rest
 * get their `republished_count` and `published_at` bumped (a compare-and-set, so of several relays
 * one wins, and each event is looked at again only after another grace), and are added to the
 * queue as `evt_<uid>-s<n>`: a new job id, because BullMQ ignores an add whose id it still holds.
 * A Redis restart without persistence, a failover, an eviction or a FLUSHALL after publishing then
 * costs a delay, never an effect; the inbox row keeps a republished event's effect at one.
 * A failed add leaves the events bumped: the next sweep after the grace tries them again.
 */
import type { Queue } from 'bullmq';
import type { Database } from '../platform/database';
import type { Logger } from '../platform/logger';
import type { OutboxEventType } from './events';
import { jobIdFor, type LedgerJobData } from './queue';

export interface SweeperOptions {
  readonly graceMs: number;
  readonly intervalMs: number;
  /** At most this many events a sweep: a big loss drains over several sweeps, not in one burst. */
  readonly batchSizeMax: number;
  readonly publishTimeoutMs: number;
}

export interface SweeperDependencies {
  readonly db: Database;
  readonly queue: Queue<LedgerJobData>;
  readonly logger: Logger;
  readonly onRepublished: (count: number, reason: RepublishReason) => void;
}

/** Why an event was published again: the sweeper found it published but never applied. */
export type RepublishReason = 'unapplied_after_grace';

interface SweptEvent {
  id: string;
  event_uid: string;
  event_type: OutboxEventType;
  payload: string;
  republished_count: number;
  /** The job id of the event's latest dead-letter replay, if an operator replayed it. */
  replay_job_id?: string | null;
}

export class Sweeper {
  private timer: NodeJS.Timeout | undefined;
  private sweeping: Promise<void> = Promise.resolve();

  constructor(
    private readonly deps: SweeperDependencies,
    private readonly options: SweeperOptions,
  ) {}

  start(): void {
    this.timer = setInterval(() => {
      this.sweeping = this.sweepOnce().then(
        () => undefined,
        (error: unknown) => this.deps.logger.warn({ err: error }, 'outbox sweep failed; the next one tries again'),
      );
    }, this.options.intervalMs);
    this.timer.unref();
  }

  async stop(): Promise<void> {
    clearInterval(this.timer);
    await this.sweeping;
  }

  /** One sweep; returns how many events it published again. */
  async sweepOnce(): Promise<number> {
    const candidates = await this.deps.db.$queryRaw<SweptEvent[]>`
      SELECT o.id::text, o.event_uid::text, o.event_type, o.payload, o.republished_count,
             (SELECT d.replay_job_id FROM dead_letters d WHERE d.event_uid = o.event_uid AND d.replay_job_id IS NOT NULL
               ORDER BY d.replayed_at DESC LIMIT 1) AS replay_job_id
        FROM outbox_events o
       WHERE o.published_at < now() - ${this.options.graceMs} * interval '1 millisecond'
         AND NOT EXISTS (SELECT 1 FROM inbox_events i WHERE i.consumer = 'ledger' AND i.event_uid = o.event_uid)
         AND NOT EXISTS (SELECT 1 FROM dead_letters d WHERE d.event_uid = o.event_uid AND d.replay_job_id IS NULL)
       ORDER BY o.id
       LIMIT ${this.options.batchSizeMax}`;
    if (candidates.length === 0) return 0;
    const lost = await this.withoutLiveJob(candidates);
    if (lost.length === 0) return 0;
    // Compare-and-set on the count: of several relays sweeping at once, one republishes each event.
    const events = await this.deps.db.$queryRaw<SweptEvent[]>`
      UPDATE outbox_events o
         SET republished_count = o.republished_count + 1, published_at = now()
        FROM unnest(${lost.map((event) => event.id)}::bigint[], ${lost.map((event) => event.republished_count)}::int[])
             AS seen (id, republished_count)
       WHERE o.id = seen.id AND o.republished_count = seen.republished_count
      RETURNING o.id::text, o.event_uid::text, o.event_type, o.payload, o.republished_count`;
    if (events.length === 0) return 0;
    // Id order, so a charge's event goes before its refund's.
    events.sort((a, b) => Number(BigInt(a.id) - BigInt(b.id)));
    await withTimeout(
      this.deps.queue.addBulk(
        events.map((event) => ({
          name: event.event_type,
          data: { eventId: event.id, eventUid: event.event_uid, type: event.event_type, payload: event.payload },
          opts: { jobId: jobIdFor(event.event_uid, { sweep: event.republished_count }) },
        })),
      ),
      this.options.publishTimeoutMs,
    );
    this.deps.onRepublished(events.length, 'unapplied_after_grace');
    this.deps.logger.warn(
      { count: events.length, firstEventId: events[0]?.id },
      'published again: events published more than the grace ago with no inbox row and no job left',
    );
    return events.length;
  }

  /**
   * The candidates whose latest job is gone (or finished without an inbox row). A job still
   * waiting, delayed or running is only slow (a backlog, a held call site): publishing it again
   * would only add load, so it is left alone. An operator's replay of a dead letter counts too: the
   * replay is recorded before its job is queued, so a replay whose job never made it into Redis
   * (a crash, Redis down) is published again here, and one whose job is queued is left to run.
   */
  private async withoutLiveJob(candidates: SweptEvent[]): Promise<SweptEvent[]> {
    const live = await Promise.all(
      candidates.map(async (event) => {
        const latest =
          event.republished_count === 0
            ? jobIdFor(event.event_uid)
            : jobIdFor(event.event_uid, { sweep: event.republished_count });
        const jobIds = event.replay_job_id ? [latest, event.replay_job_id] : [latest];
        const states = await Promise.all(jobIds.map((jobId) => this.deps.queue.getJobState(jobId)));
        return states.some((state) => liveJobStates.has(state));
      }),
    );
    return candidates.filter((_, index) => !live[index]);
  }
}

const liveJobStates = new Set(['waiting', 'delayed', 'active', 'prioritized', 'waiting-children']);

export function withTimeout<T>(promise: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    promise,
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`publish timed out after ${ms} ms`)), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

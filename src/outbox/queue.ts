/**
 * The queue between the relay and the ledger worker. A job's id is the outbox event's UUID,
 * prefixed (`evt_<uid>`: BullMQ refuses ids that are digits only or contain `:`), so an event
 * published twice while its job still exists is added once. The UUID, not the bigserial id,
 * because a restored database hands the same ids out again while Redis still remembers the old
 * jobs (docs/contract.md §5). The inbox, not the job id, is what guarantees one effect.
 */
import { Queue } from 'bullmq';
import { z } from 'zod';
import type { RedisClient } from '../platform/redis';
import type { OutboxEventType } from './events';

export const ledgerQueueName = 'ledger';
export const ledgerDeadLetterQueueName = 'ledger-dead';
/** The backoff type our workers implement (full jitter, fullJitterDelayMs in packages/retry). */
export const fullJitterBackoffType = 'full-jitter';

export interface LedgerJobData {
  /** The outbox row's bigserial id, for people and logs; `eventUid` is the identity. */
  readonly eventId: string;
  /** The outbox row's UUID. Absent only on jobs queued before it existed (resolved by id then). */
  readonly eventUid?: string | undefined;
  readonly type: OutboxEventType;
  /** The event's payload as JSON text, exactly as the outbox row holds it. */
  readonly payload: string;
}

/** What a job (or a stored dead letter) carries, checked where it is read. */
export const ledgerJobDataSchema = z.object({
  eventId: z.string().regex(/^\d{1,18}$/),
  eventUid: z.uuid().optional(),
  type: z.enum(['charge.succeeded', 'charge.failed', 'refund.succeeded']),
  payload: z.string(),
});

/**
 * `evt_<uid>` for the first publish; a republish gets a suffix, because BullMQ ignores an add
 * whose job id it still holds: `-r<dead letter id>` for a replay, `-s<n>` for the sweeper's n-th.
 */
export function jobIdFor(eventUid: string, suffix?: { replayOf: string } | { sweep: number }): string {
  if (suffix === undefined) return `evt_${eventUid}`;
  return 'replayOf' in suffix ? `evt_${eventUid}-r${suffix.replayOf}` : `evt_${eventUid}-s${suffix.sweep}`;
}

export interface LedgerQueueOptions {
  readonly prefix: string;
  readonly attemptsMax: number;
}

export function openLedgerQueue(connection: RedisClient, options: LedgerQueueOptions): Queue<LedgerJobData> {
  return new Queue<LedgerJobData>(ledgerQueueName, {
    connection,
    prefix: options.prefix,
    defaultJobOptions: {
      attempts: options.attemptsMax,
      backoff: { type: fullJitterBackoffType },
      // Completed jobs are kept an hour (so a re-publish within it dedups by id), failed ones a week.
      removeOnComplete: { age: 3_600, count: 100_000 },
      removeOnFail: { age: 7 * 86_400 },
    },
  });
}

export function openDeadLetterQueue(connection: RedisClient, prefix: string): Queue<LedgerJobData & { error: string }> {
  return new Queue(ledgerDeadLetterQueueName, { connection, prefix });
}

/**
 * The queue between the relay and the ledger worker. A job's id is the outbox event's id,
 * prefixed (`evt_123`: BullMQ refuses ids that are digits only or contain `:`), so an event
 * published twice while its job still exists is added once. The inbox, not the job id, is what
 * guarantees one effect.
 */
import { Queue } from 'bullmq';
import type { RedisClient } from '../platform/redis';
import type { OutboxEventType } from './events';

export const ledgerQueueName = 'ledger';
export const ledgerDeadLetterQueueName = 'ledger-dead';
/** The backoff type our workers implement (full jitter, src/retry/backoff.ts). */
export const fullJitterBackoffType = 'full-jitter';

export interface LedgerJobData {
  readonly eventId: string;
  readonly type: OutboxEventType;
  /** The event's payload as JSON text, exactly as the outbox row holds it. */
  readonly payload: string;
}

export function jobIdFor(eventId: string, replay = 0): string {
  return replay === 0 ? `evt_${eventId}` : `evt_${eventId}-r${replay}`;
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

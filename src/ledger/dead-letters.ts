/**
 * Dead letters: jobs the worker gave up on. Each is recorded in Postgres (`dead_letters`, the
 * operators' record, unique per job id), and that row is written before the job leaves the
 * queue: `record` throws when Postgres cannot take it, and the worker then holds the job instead
 * (docs/contract.md §5). A copy goes to the `ledger-dead` queue for queue tooling; it is
 * best-effort (the row is the record) and trimmed to `deadLetterQueueRetentionMs`, so the queue
 * does not grow forever.
 * A replay enqueues the same payload under a new job id (`evt_<uid>-r<dead letter id>`), because
 * BullMQ ignores an add whose job id it still holds; the dead letter's own id makes two dead
 * letters of one event replay under two ids. The inbox keeps the effect at one however often it
 * is replayed.
 */
import type { Queue } from 'bullmq';
import type { Database } from '../platform/database';
import { jobIdFor, ledgerJobDataSchema, type LedgerJobData } from '../outbox/queue';

export interface DeadLetterInput {
  readonly jobId: string;
  readonly data: LedgerJobData;
  readonly errorCode: string;
  readonly errorMessage: string;
  readonly attempts: number;
}

// A week, like failed jobs in the ledger queue: the rows in Postgres stay for good.
const deadLetterQueueRetentionMs = 7 * 86_400_000;
const deadLetterQueueTrimBatchMax = 1_000;
const uuidPattern = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

export class DeadLetters {
  constructor(
    private readonly db: Database,
    private readonly ledgerQueue: Queue<LedgerJobData>,
    private readonly deadLetterQueue: Queue<LedgerJobData & { error: string }>,
  ) {}

  /** Writes the row (throws if it cannot); true when this call wrote it, false when it was there. */
  async record(input: DeadLetterInput): Promise<boolean> {
    // A poison job's data may not even carry a well-formed id: the row still records it.
    const eventId = /^\d{1,18}$/.test(String(input.data.eventId)) ? input.data.eventId : '0';
    const eventUid = uuidPattern.test(String(input.data.eventUid)) ? input.data.eventUid : null;
    const inserted = await this.db.$executeRaw`
      INSERT INTO dead_letters (queue, job_id, event_id, event_uid, payload, error_code, error_message, attempts)
      VALUES (${this.ledgerQueue.name}, ${input.jobId}, ${eventId}::bigint,
              coalesce(${eventUid}::uuid, (SELECT event_uid FROM outbox_events WHERE id = ${eventId}::bigint)),
              ${JSON.stringify(input.data)}, ${input.errorCode}, ${input.errorMessage.slice(0, 2_000)},
              ${Math.max(1, input.attempts)})
      ON CONFLICT (job_id) DO NOTHING`;
    await this.deadLetterQueue
      .add(
        input.data.type,
        { ...input.data, error: `${input.errorCode}: ${input.errorMessage}` },
        { jobId: input.jobId, removeOnComplete: true, removeOnFail: false },
      )
      .then(() => this.deadLetterQueue.clean(deadLetterQueueRetentionMs, deadLetterQueueTrimBatchMax, 'wait'))
      .catch(() => undefined);
    return inserted === 1;
  }

  /** True when the row for this job id exists (the processor, or another listener, recorded it). */
  async isRecorded(jobId: string): Promise<boolean> {
    const rows = await this.db.$queryRaw<{ found: boolean }[]>`
      SELECT EXISTS (SELECT 1 FROM dead_letters WHERE job_id = ${jobId}) AS found`;
    return rows[0]?.found === true;
  }

  /**
   * Replays a dead letter under `evt_<uid>-r<dead letter id>`. The job is added before the row is
   * marked: a crash in between replays under the same id again, which BullMQ or the inbox absorbs.
   */
  async replay(deadLetterId: string): Promise<{ jobId: string } | undefined> {
    const rows = await this.db.$queryRaw<{ job_id: string; payload: string; event_uid: string | null }[]>`
      SELECT d.job_id, d.payload,
             coalesce(d.event_uid, (SELECT o.event_uid FROM outbox_events o WHERE o.id = d.event_id))::text AS event_uid
        FROM dead_letters d WHERE d.id = ${deadLetterId}::bigint`;
    const row = rows[0];
    if (row === undefined) return undefined;
    const stored = ledgerJobDataSchema.parse(JSON.parse(row.payload));
    const eventUid = stored.eventUid ?? row.event_uid ?? undefined;
    if (eventUid === undefined) throw new Error(`dead letter ${deadLetterId}: its event is not in the outbox`);
    const data: LedgerJobData = { ...stored, eventUid };
    const jobId = jobIdFor(eventUid, { replayOf: deadLetterId });
    await this.ledgerQueue.add(data.type, data, { jobId });
    await this.db.$executeRaw`
      UPDATE dead_letters SET replayed_at = now(), replay_job_id = ${jobId}
       WHERE id = ${deadLetterId}::bigint AND replay_job_id IS NULL`;
    await this.deadLetterQueue.remove(row.job_id).catch(() => undefined);
    return { jobId };
  }
}

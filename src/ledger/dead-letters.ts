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
 *
 * A replay is two steps, in this order (docs/operations.md, "Replaying a dead letter"):
 *   1. `markReplayed(tx, id)`: the row is marked (replay_job_id, replayed_at) in the caller's
 *      transaction, which also holds the admin_audit row: both commit or neither does;
 *   2. `enqueueReplay(replay)`, after the commit (no network call inside a transaction), under the
 *      job id fixed in step 1.
 * A crash or a Redis failure between the two leaves a recorded, audited replay without a job: it
 * is not lost silently, because a marked dead letter no longer holds back the sweeper, which
 * publishes the event again (it trusts only Postgres), and because calling replay again enqueues
 * under the same job id (BullMQ ignores a duplicate add, the inbox a duplicate effect).
 */
import type { Queue } from 'bullmq';
import type { Database, Queryable } from '../platform/database';
import { jobIdFor, ledgerJobDataSchema, type LedgerJobData } from '../outbox/queue';
import { withTimeout } from '../outbox/sweeper';

/** A replay recorded in Postgres, to be enqueued after its transaction commits. */
export interface DeadLetterReplay {
  readonly jobId: string;
  readonly data: LedgerJobData;
  /** The dead letter's own job id, whose copy in the dead-letter queue goes once the replay is queued. */
  readonly deadLetterJobId: string;
}

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
// Far above a healthy Redis round trip, short enough for an operator's request to answer 503.
const enqueueTimeoutMs = 5_000;
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
   * Marks a dead letter replayed and returns what to enqueue, or undefined when there is no such
   * dead letter. Marking an already replayed one again keeps its first job id and time.
   */
  async markReplayed(db: Queryable, deadLetterId: string): Promise<DeadLetterReplay | undefined> {
    const rows = await db.$queryRaw<{ job_id: string; payload: string; event_uid: string | null }[]>`
      SELECT d.job_id, d.payload,
             coalesce(d.event_uid, (SELECT o.event_uid FROM outbox_events o WHERE o.id = d.event_id))::text AS event_uid
        FROM dead_letters d WHERE d.id = ${deadLetterId}::bigint
         FOR UPDATE OF d`;
    const row = rows[0];
    if (row === undefined) return undefined;
    const stored = ledgerJobDataSchema.parse(JSON.parse(row.payload));
    const eventUid = stored.eventUid ?? row.event_uid ?? undefined;
    if (eventUid === undefined) throw new Error(`dead letter ${deadLetterId}: its event is not in the outbox`);
    const data: LedgerJobData = { ...stored, eventUid };
    const jobId = jobIdFor(eventUid, { replayOf: deadLetterId });
    await db.$executeRaw`
      UPDATE dead_letters SET replayed_at = now(), replay_job_id = ${jobId}
       WHERE id = ${deadLetterId}::bigint AND replay_job_id IS NULL`;
    return { jobId, data, deadLetterJobId: row.job_id };
  }

  /**
   * Adds the replay's job. Idempotent: the job id is fixed by `markReplayed`, so a second call adds
   * nothing BullMQ still holds, and the inbox absorbs a second run. Throws when Redis does not take
   * the job within `enqueueTimeoutMs` (a queue connection waits for Redis forever otherwise).
   */
  async enqueueReplay(replay: DeadLetterReplay): Promise<{ jobId: string }> {
    await withTimeout(this.ledgerQueue.add(replay.data.type, replay.data, { jobId: replay.jobId }), enqueueTimeoutMs);
    await this.deadLetterQueue.remove(replay.deadLetterJobId).catch(() => undefined);
    return { jobId: replay.jobId };
  }

  /** Both steps without an audit row: for tests and scripts that replay outside the admin API. */
  async replay(deadLetterId: string): Promise<{ jobId: string } | undefined> {
    const replay = await this.markReplayed(this.db, deadLetterId);
    return replay === undefined ? undefined : this.enqueueReplay(replay);
  }
}

/**
 * Dead letters: jobs the worker gave up on. Each is recorded in Postgres (`dead_letters`, the
 * operators' record, unique per job id) and added to the `ledger-dead` queue. A replay enqueues
 * the same payload under a new job id (`evt_123-r1`), because BullMQ ignores an add whose job id
 * it still holds; the inbox keeps the effect at one however often it is replayed.
 */
import type { Queue } from 'bullmq';
import type { Database } from '../platform/database';
import { jobIdFor, type LedgerJobData } from '../outbox/queue';

export interface DeadLetterInput {
  readonly jobId: string;
  readonly data: LedgerJobData;
  readonly errorCode: string;
  readonly errorMessage: string;
  readonly attempts: number;
}

export class DeadLetters {
  constructor(
    private readonly db: Database,
    private readonly ledgerQueue: Queue<LedgerJobData>,
    private readonly deadLetterQueue: Queue<LedgerJobData & { error: string }>,
  ) {}

  async record(input: DeadLetterInput): Promise<void> {
    await this.db.$executeRaw`
      INSERT INTO dead_letters (queue, job_id, event_id, payload, error_code, error_message, attempts)
      VALUES (${this.ledgerQueue.name}, ${input.jobId}, ${input.data.eventId}::bigint, ${JSON.stringify(input.data)},
              ${input.errorCode}, ${input.errorMessage.slice(0, 2_000)}, ${input.attempts})
      ON CONFLICT (job_id) DO NOTHING`;
    await this.deadLetterQueue.add(
      input.data.type,
      { ...input.data, error: `${input.errorCode}: ${input.errorMessage}` },
      { jobId: input.jobId, removeOnComplete: true, removeOnFail: false },
    );
  }

  /**
   * Replays a dead letter under a new job id: `evt_<id>-r<n>`, n counting this event's replays.
   * The job is added before the row is marked: a crash in between replays under the same id again.
   */
  async replay(deadLetterId: string): Promise<{ jobId: string } | undefined> {
    const rows = await this.db.$queryRaw<{ job_id: string; payload: string; event_id: string; replays: number }[]>`
      SELECT d.job_id, d.payload, d.event_id::text,
             (SELECT count(*) FROM dead_letters x WHERE x.event_id = d.event_id AND x.replay_job_id IS NOT NULL)::int AS replays
        FROM dead_letters d WHERE d.id = ${deadLetterId}::bigint`;
    const row = rows[0];
    if (row === undefined) return undefined;
    const data = JSON.parse(row.payload) as LedgerJobData;
    const jobId = jobIdFor(row.event_id, row.replays + 1);
    await this.ledgerQueue.add(data.type, data, { jobId });
    await this.db.$executeRaw`
      UPDATE dead_letters SET replayed_at = now(), replay_job_id = ${jobId}
       WHERE id = ${deadLetterId}::bigint AND replay_job_id IS NULL`;
    await this.deadLetterQueue.remove(row.job_id).catch(() => undefined);
    return { jobId };
  }
}

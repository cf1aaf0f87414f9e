/**
 * Waits for conditions the tests would otherwise sleep for (docs/testing.md): a lease that has
 * lapsed on the database's clock, a queued job that has run. Each polls with a deadline.
 */
import type { Queue } from 'bullmq';
import type { TestDatabase } from './database';
import { waitFor } from './ledger';

/**
 * Until the key's lease has run out by the database's clock, the clock the gateway's takeover
 * check reads (`locked_until < now()`): then the next request may take the key over.
 */
export async function waitForLeaseToLapse(database: TestDatabase, key: string, timeoutMs = 20_000): Promise<void> {
  await waitFor(
    async () =>
      (await database.count(
        'SELECT count(*) FROM idempotency_keys WHERE key = $1 AND (locked_until IS NULL OR locked_until < now())',
        [key],
      )) > 0,
    timeoutMs,
    `the lease on ${key} to lapse`,
  );
}

/** Until the job has run to its end (completed or failed), so what it did, or did not do, is final. */
export async function waitForJobToFinish(queue: Queue, jobId: string, timeoutMs = 20_000): Promise<void> {
  await waitFor(
    async () => {
      const job = await queue.getJob(jobId);
      return job !== undefined && ['completed', 'failed'].includes(await job.getState());
    },
    timeoutMs,
    `job ${jobId} to finish`,
  );
}

/**
 * Until no backend of the test's database waits for a lock. A test that holds a lock to make a
 * statement time out waits for this before it lets go: the client may have been answered (the
 * gateway gave up on its own timer) while the statement still waits, and a statement that gets
 * the lock after all commits what the test meant to fail (a late write).
 */
export async function waitForNoLockWaiters(database: TestDatabase, timeoutMs = 20_000): Promise<void> {
  await waitFor(
    async () =>
      (await database.count(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'",
      )) === 0,
    timeoutMs,
    'the statements waiting for the held lock to give up',
  );
}

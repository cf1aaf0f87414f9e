/**
 * Dead letters: a poison message goes there on its first attempt; a transient failure that never
 * heals goes there after exactly N attempts. Both are recorded in Postgres and in the dead-letter
 * queue, and each, once fixed and replayed, applies once.
 */
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { jobIdFor, openDeadLetterQueue, openLedgerQueue } from '../../src/outbox/queue';
import { insertChargeEvents, insertMerchant, jobDataFor, outboxEvents } from '../helpers/events';
import { createTestEnvironment, startTestGateway, type TestEnvironment, type TestGateway } from '../helpers/gateway';
import { expectLedgerConsistent, waitFor } from '../helpers/ledger';
import { waitForJobToFinish } from '../helpers/waits';

let environment: TestEnvironment;
let connection: Redis;
const gateways: TestGateway[] = [];

interface DeadLetterRow {
  id: string;
  job_id: string;
  error_code: string;
  attempts: number;
  payload: string;
  replay_job_id: string | null;
}

const deadLetters = async () =>
  (
    await environment.database.pool.query<DeadLetterRow>(
      'SELECT id::text, job_id, error_code, attempts, payload, replay_job_id FROM dead_letters ORDER BY id',
    )
  ).rows;

async function start(overrides: Record<string, string>): Promise<TestGateway> {
  const gateway = await startTestGateway(environment, {
    WORKER_BACKOFF_BASE_MS: '20',
    WORKER_BACKOFF_CAP_MS: '50',
    ...overrides,
  });
  gateways.push(gateway);
  return gateway;
}

beforeAll(async () => {
  environment = await createTestEnvironment();
  connection = new Redis(environment.redisUrl, { maxRetriesPerRequest: null });
});
afterAll(async () => {
  for (const gateway of gateways) await gateway.stop();
  connection?.disconnect();
  await environment?.cleanup();
});

describe('when a message is poison (a final error)', () => {
  it('dead-letters it on the first attempt; fixed and replayed, it applies once', async () => {
    const gateway = await start({ ROLE: 'worker' });
    const merchantId = await insertMerchant(environment.database);
    await insertChargeEvents(environment.database, merchantId, 1);
    const [event] = await outboxEvents(environment.database);
    const tampered = JSON.stringify({ ...JSON.parse(event!.payload), amount: 1 });
    const queue = openLedgerQueue(connection, { prefix: `{${environment.redisKeyPrefix}}`, attemptsMax: 5 });
    await queue.add(event!.event_type, jobDataFor(event!, tampered), { jobId: jobIdFor(event!.event_uid) });

    await waitFor(async () => (await deadLetters()).length === 1, 10_000, 'the dead letter');
    const [letter] = await deadLetters();
    expect(letter).toMatchObject({
      job_id: jobIdFor(event!.event_uid),
      error_code: 'LEDGER_AMOUNT_MISMATCH',
      attempts: 1,
    });
    const deadQueue = openDeadLetterQueue(connection, `{${environment.redisKeyPrefix}}`);
    expect(await deadQueue.getJob(jobIdFor(event!.event_uid))).toBeDefined();
    expect(await environment.database.count('SELECT count(*) FROM ledger_transactions')).toBe(0);
    expect(await environment.database.count('SELECT count(*) FROM inbox_events')).toBe(0);

    // The operator fixes the payload, then replays it under a new job id.
    await environment.database.pool.query('UPDATE dead_letters SET payload = $1 WHERE id = $2', [
      JSON.stringify(jobDataFor(event!)),
      letter!.id,
    ]);
    expect(await gateway.deadLetters.replay(letter!.id)).toEqual({
      jobId: `${jobIdFor(event!.event_uid)}-r${letter!.id}`,
    });
    await waitFor(
      async () => (await environment.database.count('SELECT count(*) FROM ledger_transactions')) === 1,
      10_000,
      'the replay',
    );
    // Replaying again changes nothing.
    const again = await gateway.deadLetters.replay(letter!.id);
    await waitForJobToFinish(queue, again!.jobId); // the second replay ran: its effect is final
    expect(await environment.database.count('SELECT count(*) FROM ledger_transactions')).toBe(1);
    expect((await deadLetters())[0]?.replay_job_id).toBe(`${jobIdFor(event!.event_uid)}-r${letter!.id}`);
    expect(await deadQueue.getJob(jobIdFor(event!.event_uid))).toBeUndefined();
    await expectLedgerConsistent(environment.database);
    await deadQueue.close();
    await queue.close();
    await gateway.stop();
  });
});

describe('when a failure of the event itself (a bug) never heals', () => {
  it('dead-letters it after exactly N attempts; replayed after the fix, it applies once', async () => {
    const broken = await start({
      ROLE: 'all',
      FAULTS: 'ledger_bug',
      WORKER_ATTEMPTS_MAX: '3',
      RETRY_BUDGET_CAPACITY: '1000',
    });
    const merchantId = await insertMerchant(environment.database);
    const before = (await deadLetters()).length;
    await insertChargeEvents(environment.database, merchantId, 1);
    await waitFor(async () => (await deadLetters()).length === before + 1, 15_000, 'the dead letter');
    const letter = (await deadLetters()).at(-1)!;
    expect(letter).toMatchObject({ error_code: 'LEDGER_APPLY_FAILED', attempts: 3 });
    const attempts = await broken.metrics.registry.getSingleMetric('ledger_apply_attempts_total')?.get();
    expect(attempts?.values[0]?.value).toBe(3);
    await broken.stop();

    const fixed = await start({ ROLE: 'worker' });
    const replayed = await fixed.deadLetters.replay(letter.id);
    expect(replayed?.jobId).toMatch(new RegExp(`-r${letter.id}$`));
    await waitFor(
      async () => (await environment.database.count('SELECT count(*) FROM ledger_transactions')) === 2,
      10_000,
      'the replay',
    );
    await expectLedgerConsistent(environment.database);
  });
});

/**
 * A worker SIGKILLed three times while it holds the same jobs: real child processes (ROLE=worker)
 * with FAULTS=ledger_hang, which keeps each job in the processor (its lock renewed) until the
 * kill. Each time, BullMQ finds the jobs stalled and the next worker takes them; we kill that one
 * too. Then a healthy worker runs.
 * - With WORKER_STALLED_COUNT_MAX at its default (20), every effect is applied exactly once and no
 *   attempt is spent.
 * - With the bound below the number of deaths (2), BullMQ fails the jobs without calling the
 *   processor, and each is a dead letter with its row: never failed silently. Replayed, each
 *   applies once.
 * Checked from the rows (inbox, ledger, dead_letters) and from BullMQ's own job state.
 */
import { Redis } from 'ioredis';
import type { Queue } from 'bullmq';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { jobIdFor, openLedgerQueue, type LedgerJobData } from '../../src/outbox/queue';
import { startChildGateway, type ChildGateway } from '../../scripts/harness/child-gateway';
import {
  insertChargeEvents,
  insertMerchant,
  jobDataFor,
  outboxEvents,
  type StoredOutboxEvent,
} from '../helpers/events';
import { createTestEnvironment, startTestGateway, type TestEnvironment, type TestGateway } from '../helpers/gateway';
import { expectLedgerConsistent, waitFor } from '../helpers/ledger';

let environment: TestEnvironment;
let connection: Redis;
let queue: Queue<LedgerJobData>;
const children: ChildGateway[] = [];
const gateways: TestGateway[] = [];
const kills = 3;
const jobsPerTest = 4;
// The shortest lock the config allows (the stalled interval follows it): a dead worker's jobs
// are back in the queue one to three seconds after its death.
const workerEnv = { ROLE: 'worker', WORKER_LOCK_DURATION_MS: '1000' };

beforeAll(async () => {
  environment = await createTestEnvironment();
  connection = new Redis(environment.redisUrl, { maxRetriesPerRequest: null });
  queue = openLedgerQueue(connection, { prefix: `{${environment.redisKeyPrefix}}`, attemptsMax: 5 });
});
afterAll(async () => {
  for (const child of children) await child.kill('SIGKILL');
  for (const gateway of gateways) await gateway.stop();
  await queue?.close();
  connection?.disconnect();
  await environment?.cleanup();
});

/** New charge events, published as the relay would (jobId evt_<uid>); no relay runs here. */
async function publishNewEvents(): Promise<StoredOutboxEvent[]> {
  const before = new Set((await outboxEvents(environment.database)).map((event) => event.id));
  await insertChargeEvents(environment.database, await insertMerchant(environment.database), jobsPerTest);
  const events = (await outboxEvents(environment.database)).filter((event) => !before.has(event.id));
  for (const event of events) {
    await queue.add(event.event_type, jobDataFor(event), { jobId: jobIdFor(event.event_uid) });
  }
  return events;
}

/** Until every job is active for the `run`-th time, with a lock: a worker holds it in its processor. */
async function waitUntilHeld(events: StoredOutboxEvent[], run: number, child: ChildGateway): Promise<void> {
  await waitFor(
    async () => {
      for (const event of events) {
        const job = await queue.getJob(jobIdFor(event.event_uid));
        if (job === undefined || job.attemptsStarted < run || (await job.getState()) !== 'active') return false;
        const lock = await connection.exists(`{${environment.redisKeyPrefix}}:ledger:${job.id}:lock`);
        if (lock !== 1) return false;
      }
      return true;
    },
    60_000,
    `run ${run}: the worker to hold every job\n${child.output()}`,
  );
}

/** Starts a hanging worker, waits until it holds every job, and SIGKILLs it; `kills` times. */
async function killWorkersHolding(events: StoredOutboxEvent[], env: Record<string, string>): Promise<void> {
  for (let run = 1; run <= kills; run += 1) {
    const child = await startChildGateway(environment.env({ ...workerEnv, ...env, FAULTS: 'ledger_hang' }));
    children.push(child);
    await waitUntilHeld(events, run, child);
    expect(await child.kill('SIGKILL')).toEqual({ code: null, signal: 'SIGKILL' });
  }
}

async function startHealthyWorker(env: Record<string, string>): Promise<TestGateway> {
  const gateway = await startTestGateway(environment, { ...workerEnv, ...env });
  gateways.push(gateway);
  return gateway;
}

const countFor = (sql: string, events: StoredOutboxEvent[]) =>
  environment.database.count(sql, [events.map((event) => event.event_uid)]);

/** Until `table` holds a row for each of the events (by event_uid). */
async function waitForRowPerEvent(table: 'inbox_events' | 'dead_letters', events: StoredOutboxEvent[], what: string) {
  await waitFor(
    async () =>
      (await countFor(`SELECT count(*) FROM ${table} WHERE event_uid = ANY($1::uuid[])`, events)) === events.length,
    60_000,
    what,
  );
}

describe('when three workers in turn are SIGKILLed while holding the same jobs', () => {
  it('runs each job again every time, and the healthy worker applies each effect exactly once', async () => {
    const events = await publishNewEvents();
    await killWorkersHolding(events, {});
    const healthy = await startHealthyWorker({});

    await waitForRowPerEvent('inbox_events', events, 'the healthy worker to apply every event');
    for (const event of events) {
      await waitFor(
        async () => (await queue.getJobState(jobIdFor(event.event_uid))) === 'completed',
        20_000,
        'the job to complete',
      );
      const job = await queue.getJob(jobIdFor(event.event_uid));
      // Every death was noticed as a stall, and none of them cost an attempt: the one attempt
      // made is the run that completed (BullMQ counts it when it completes the job).
      expect(job?.stalledCounter).toBeGreaterThanOrEqual(kills);
      expect(job?.attemptsStarted).toBeGreaterThanOrEqual(kills + 1);
      expect(job?.attemptsMade).toBe(1);
      expect(job?.failedReason ?? null).toBeNull();
    }
    expect(
      await countFor(
        `SELECT count(*) FROM ledger_transactions t JOIN outbox_events o ON o.id = t.event_id
          WHERE o.event_uid = ANY($1::uuid[])`,
        events,
      ),
    ).toBe(jobsPerTest);
    expect(await environment.database.count('SELECT count(*) FROM dead_letters')).toBe(0);
    await expectLedgerConsistent(environment.database);
    await healthy.stop();
    gateways.splice(gateways.indexOf(healthy), 1);
  }, 300_000);
});

describe('when the jobs stall more often than WORKER_STALLED_COUNT_MAX allows', () => {
  it('BullMQ fails them without the processor, and each is a dead letter with its row; replayed, each applies once', async () => {
    const bounded = { WORKER_STALLED_COUNT_MAX: String(kills - 1) };
    const events = await publishNewEvents();
    await killWorkersHolding(events, bounded);
    const healthy = await startHealthyWorker(bounded);

    await waitForRowPerEvent('dead_letters', events, 'a dead letter for each job BullMQ failed');
    for (const event of events) {
      const job = await queue.getJob(jobIdFor(event.event_uid));
      expect(await job?.getState()).toBe('failed');
      expect(job?.failedReason).toBe('job stalled more than allowable limit');
      expect(job?.stalledCounter).toBeGreaterThan(kills - 1);
    }
    const { rows } = await environment.database.pool.query<{ id: string; job_id: string; error_code: string }>(
      'SELECT id::text, job_id, error_code FROM dead_letters WHERE event_uid = ANY($1::uuid[]) ORDER BY id',
      [events.map((event) => event.event_uid)],
    );
    expect(rows.map((row) => row.error_code)).toEqual(Array(jobsPerTest).fill('LEDGER_JOB_FAILED'));
    expect(new Set(rows.map((row) => row.job_id))).toEqual(new Set(events.map((e) => jobIdFor(e.event_uid))));
    expect(await countFor('SELECT count(*) FROM inbox_events WHERE event_uid = ANY($1::uuid[])', events)).toBe(0);

    // The operator replays them: each applies once.
    for (const row of rows) await healthy.deadLetters.replay(row.id);
    await waitForRowPerEvent('inbox_events', events, 'the replays to apply');
    expect(await environment.database.count('SELECT count(*) FROM ledger_transactions')).toBe(2 * jobsPerTest);
    await expectLedgerConsistent(environment.database);
  }, 300_000);
});

/**
 * The smaller promises of the event path (issue 9), each shown by causing the situation for real:
 * - an idle relay under the rate cap polls at RELAY_POLL_INTERVAL_MS, not every 50 ms (counted in
 *   commands on its own Redis);
 * - a relay whose publishes keep failing while its Redis answers (a queue key of the wrong type)
 *   runs out of its `relay.publish` budget, and `retry_budget_exhausted_total` counts it;
 * - LISTEN is established again after its connection is killed, and a NOTIFY then wakes the relay
 *   long before its poll would;
 * - the worker logs "dead-lettered" only after the dead letter's row is written: while the table
 *   is locked the job is held, with no log line and no row;
 * - two dead letters of one event replay under two job ids;
 * - the `ledger-dead` queue is trimmed: a copy older than a week goes when a new one comes;
 * - a ledger transaction with no entries is refused at commit, even for a role allowed to insert.
 */
import { Redis } from 'ioredis';
import { Queue } from 'bullmq';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { jobIdFor, ledgerDeadLetterQueueName, openLedgerQueue, type LedgerJobData } from '../../src/outbox/queue';
import { startChildGateway, type ChildGateway } from '../../scripts/harness/child-gateway';
import { startPrivateRedis, type PrivateRedis } from '../../scripts/harness/redis';
import {
  insertChargeEvents,
  insertMerchant,
  jobDataFor,
  outboxEvents,
  type StoredOutboxEvent,
} from '../helpers/events';
import { createTestEnvironment, startTestGateway, type TestEnvironment, type TestGateway } from '../helpers/gateway';
import { waitFor } from '../helpers/ledger';

let environment: TestEnvironment;
let privateRedis: PrivateRedis;
let connection: Redis;
const gateways: TestGateway[] = [];
const children: ChildGateway[] = [];

beforeAll(async () => {
  environment = await createTestEnvironment();
  privateRedis = await startPrivateRedis();
  connection = new Redis(environment.redisUrl, { maxRetriesPerRequest: null });
});
afterAll(async () => {
  for (const child of children) await child.kill('SIGKILL');
  for (const gateway of gateways) await gateway.stop();
  connection?.disconnect();
  await privateRedis?.stop();
  await environment?.cleanup();
});

async function start(overrides: Record<string, string>): Promise<TestGateway> {
  const gateway = await startTestGateway(environment, overrides);
  gateways.push(gateway);
  return gateway;
}

async function stop(gateway: TestGateway): Promise<void> {
  gateways.splice(gateways.indexOf(gateway), 1);
  await gateway.stop();
}

async function counter(gateway: TestGateway, name: string, labels: Record<string, string>): Promise<number> {
  const metric = await gateway.metrics.registry.getSingleMetric(name)?.get();
  return (metric?.values ?? [])
    .filter((value) => Object.entries(labels).every(([key, wanted]) => value.labels[key] === wanted))
    .reduce((sum, value) => sum + value.value, 0);
}

/** Commands the private Redis has run so far (INFO commandstats). */
async function commandsRun(redis: Redis): Promise<number> {
  const stats = await redis.info('commandstats');
  return [...stats.matchAll(/^cmdstat_[a-z|]+:calls=(\d+)/gm)].reduce((sum, match) => sum + Number(match[1]), 0);
}

async function newEvents(count: number): Promise<StoredOutboxEvent[]> {
  const before = new Set((await outboxEvents(environment.database)).map((event) => event.id));
  await insertChargeEvents(environment.database, await insertMerchant(environment.database), count);
  return (await outboxEvents(environment.database)).filter((event) => !before.has(event.id));
}

describe('an idle relay under the rate cap', () => {
  it('looks at the poll interval, not every 50 ms', async () => {
    const relay = await start({
      ROLE: 'relay',
      REDIS_URL: privateRedis.url,
      RELAY_RATE_PER_SECOND: '100',
      RELAY_POLL_INTERVAL_MS: '1000',
      SWEEPER_INTERVAL_MS: '3600000',
    });
    const redis = new Redis(privateRedis.url);
    try {
      // Idle: nothing unpublished. Each round takes rate tokens and gives them back (two commands).
      const before = await commandsRun(redis);
      const startedAt = Date.now();
      await new Promise((resolve) => setTimeout(resolve, 5_000)); // the window measured, not a wait for a state
      const perSecond = ((await commandsRun(redis)) - before - 2) / ((Date.now() - startedAt) / 1_000);
      process.stdout.write(`idle relay under the cap: ${perSecond.toFixed(1)} Redis commands a second\n`);
      // About 8 a second measured (a round a second, plus the process's own background commands);
      // polling every 50 ms would add 40 a second (two commands a round).
      expect(perSecond).toBeLessThan(20);
    } finally {
      redis.disconnect();
      await stop(relay);
    }
  });
});

describe('a relay whose publishes keep failing while its Redis answers', () => {
  it('runs out of its relay.publish budget, counted in retry_budget_exhausted_total', async () => {
    const redis = new Redis(privateRedis.url);
    const prefix = `{${environment.redisKeyPrefix}}`;
    // A queue key of the wrong type: every add fails with WRONGTYPE; the budget's keys still work.
    await redis.set(`${prefix}:ledger:meta`, 'not a hash');
    const relay = await start({
      ROLE: 'relay',
      REDIS_URL: privateRedis.url,
      RELAY_RATE_PER_SECOND: '0',
      RETRY_BUDGET_CAPACITY: '2',
      RETRY_BUDGET_REFILL_PER_SECOND: '0',
      SWEEPER_INTERVAL_MS: '3600000',
    });
    try {
      const events = await newEvents(3);
      await waitFor(
        async () => (await counter(relay, 'retry_budget_exhausted_total', { call_site: 'relay.publish' })) >= 1,
        30_000,
        'the relay.publish budget to run out',
      );
      expect(await counter(relay, 'relay_publish_failures_total', {})).toBeGreaterThanOrEqual(3);
      expect(
        await environment.database.count(
          'SELECT count(*) FROM outbox_events WHERE id = ANY($1::bigint[]) AND published_at IS NOT NULL',
          [events.map((event) => event.id)],
        ),
      ).toBe(0);
    } finally {
      await stop(relay);
      await redis.del(`${prefix}:ledger:meta`);
      redis.disconnect();
      // The events stay unpublished for the tests below to ignore: mark them.
      await environment.database.pool.query('UPDATE outbox_events SET published_at = now() WHERE published_at IS NULL');
    }
  });
});

describe('when the relay’s LISTEN connection is killed', () => {
  it('listens again, and a NOTIFY then wakes it long before its 60 s poll', async () => {
    const relay = await start({
      ROLE: 'relay',
      RELAY_POLL_INTERVAL_MS: '60000',
      RELAY_RATE_PER_SECOND: '0',
      SWEEPER_INTERVAL_MS: '3600000',
    });
    try {
      const listenerPids = async () =>
        (
          await environment.database.pool.query<{ pid: number }>(
            "SELECT pid FROM pg_stat_activity WHERE datname = $1 AND application_name = 'payments-relay-listen'",
            [environment.database.name],
          )
        ).rows.map((row) => row.pid);
      await waitFor(async () => relay.relay!.listening && (await listenerPids()).length === 1, 20_000, 'LISTEN');
      const [killed] = await listenerPids();
      await environment.database.pool.query('SELECT pg_terminate_backend($1)', [killed]);
      await waitFor(
        async () => {
          const pids = await listenerPids();
          return relay.relay!.listening && pids.length === 1 && pids[0] !== killed;
        },
        20_000,
        'LISTEN on a new connection',
      );
      // The relisten looked once; now only a NOTIFY can wake it within the minute.
      await new Promise((resolve) => setTimeout(resolve, 500)); // lets that look finish; more only helps
      const events = await newEvents(2);
      const insertedAt = Date.now();
      await waitFor(
        async () =>
          (await environment.database.count(
            'SELECT count(*) FROM outbox_events WHERE id = ANY($1::bigint[]) AND published_at IS NOT NULL',
            [events.map((event) => event.id)],
          )) === events.length,
        30_000,
        'the NOTIFY to wake the relay',
      );
      expect(Date.now() - insertedAt).toBeLessThan(30_000);
    } finally {
      await stop(relay);
    }
  });
});

describe('when the dead letter cannot be written', () => {
  it('holds the poison job with no row and no "dead-lettered" log line, and logs it only after the write', async () => {
    const [event] = await newEvents(1);
    const queue = openLedgerQueue(connection, { prefix: `{${environment.redisKeyPrefix}}`, attemptsMax: 5 });
    const holder = await environment.database.pool.connect();
    try {
      await holder.query('BEGIN');
      await holder.query('LOCK TABLE dead_letters IN EXCLUSIVE MODE');
      const worker = await startChildGateway(
        environment.env({ ROLE: 'worker', LOG_LEVEL: 'warn', RETRY_BUDGET_EMPTY_DELAY_MS: '200' }),
      );
      children.push(worker);
      await queue.add(event!.event_type, jobDataFor(event!, '{"not": "an event"'), {
        jobId: jobIdFor(event!.event_uid),
      });
      await waitFor(
        async () => worker.output().includes('could not write the dead letter; holding the job'),
        60_000,
        'the dead letter write to fail',
      );
      expect(worker.output()).not.toContain('ledger job dead-lettered');
      expect(await environment.database.count('SELECT count(*) FROM dead_letters')).toBe(0);
      expect(await (await queue.getJob(jobIdFor(event!.event_uid)))?.getState()).not.toBe('failed');
      await holder.query('COMMIT');
      await waitFor(
        async () => worker.output().includes('ledger job dead-lettered'),
        60_000,
        'the dead letter once the table is free',
      );
      expect(
        await environment.database.count("SELECT count(*) FROM dead_letters WHERE error_code = 'LEDGER_EVENT_INVALID'"),
      ).toBe(1);
      await waitFor(
        async () => (await (await queue.getJob(jobIdFor(event!.event_uid)))?.getState()) === 'failed',
        20_000,
        'the job to leave the queue',
      );
    } finally {
      await holder.query('ROLLBACK').catch(() => undefined);
      holder.release();
      await queue.close();
    }
  }, 120_000);
});

describe('dead letters and their queue copies', () => {
  it('replays two dead letters of one event under two job ids', async () => {
    const gateway = await start({ ROLE: 'api' });
    const queue = openLedgerQueue(connection, { prefix: `{${environment.redisKeyPrefix}}`, attemptsMax: 5 });
    try {
      const [event] = await newEvents(1);
      const data: LedgerJobData = jobDataFor(event!, '{"poison": true}');
      const failure = { data, errorCode: 'LEDGER_EVENT_INVALID', errorMessage: 'poison', attempts: 1 };
      // The event's own job, and later the job of its first replay, each became a dead letter.
      expect(await gateway.deadLetters.record({ ...failure, jobId: jobIdFor(event!.event_uid) })).toBe(true);
      expect(await gateway.deadLetters.record({ ...failure, jobId: `${jobIdFor(event!.event_uid)}-r0` })).toBe(true);
      const { rows } = await environment.database.pool.query<{ id: string }>(
        'SELECT id::text FROM dead_letters WHERE event_uid = $1 ORDER BY id',
        [event!.event_uid],
      );
      expect(rows).toHaveLength(2);
      const replays = await Promise.all(rows.map((row) => gateway.deadLetters.replay(row.id)));
      const jobIds = replays.map((replay) => replay?.jobId);
      expect(new Set(jobIds).size).toBe(2);
      for (const jobId of jobIds) expect(await queue.getJob(jobId!)).toBeDefined();
    } finally {
      await queue.close();
      await stop(gateway);
    }
  });

  it('trims copies older than a week from the ledger-dead queue when a new dead letter comes', async () => {
    const gateway = await start({ ROLE: 'api' });
    const deadQueue = new Queue(ledgerDeadLetterQueueName, {
      connection,
      prefix: `{${environment.redisKeyPrefix}}`,
    });
    try {
      const [old, fresh] = await newEvents(2);
      const eightDaysAgo = Date.now() - 8 * 86_400_000;
      await deadQueue.add(
        'charge.succeeded',
        { ...jobDataFor(old!), error: 'old' },
        {
          jobId: 'old-copy',
          timestamp: eightDaysAgo,
        },
      );
      expect(await deadQueue.getJob('old-copy')).toBeDefined();
      await gateway.deadLetters.record({
        jobId: jobIdFor(fresh!.event_uid),
        data: jobDataFor(fresh!),
        errorCode: 'LEDGER_EVENT_INVALID',
        errorMessage: 'poison',
        attempts: 1,
      });
      await waitFor(async () => (await deadQueue.getJob('old-copy')) === undefined, 10_000, 'the old copy trimmed');
      expect(await deadQueue.getJob(jobIdFor(fresh!.event_uid))).toBeDefined();
    } finally {
      await deadQueue.close();
      await stop(gateway);
    }
  });
});

describe('a ledger transaction with no entries', () => {
  it('is refused at commit, even for the gateway role that may insert it', async () => {
    const [event] = await newEvents(1);
    const chargeId = JSON.parse(event!.payload).chargeId as string;
    const client = new pg.Client({ connectionString: environment.database.gatewayUrl });
    await client.connect();
    try {
      await client.query('BEGIN');
      await client.query(
        "INSERT INTO ledger_transactions (event_id, event_type, charge_id) VALUES ($1, 'charge.succeeded', $2)",
        [event!.id, chargeId],
      );
      await expect(client.query('COMMIT')).rejects.toMatchObject({ code: '23514' });
      await client.query('ROLLBACK').catch(() => undefined);
    } finally {
      await client.end();
    }
    expect(
      await environment.database.count('SELECT count(*) FROM ledger_transactions WHERE charge_id = $1', [chargeId]),
    ).toBe(0);
  });
});

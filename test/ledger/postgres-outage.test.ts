/**
 * A Postgres outage longer than all the retries take, with ledger jobs in flight: the private
 * cluster is stopped (pg_ctl stop -m fast: sessions are terminated as in an admin shutdown) for
 * 15 s, then started again. The jobs are held, not spent: every effect is applied exactly once,
 * and there is no dead letter. Everything is read back from the committed rows.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { insertChargeEvents, insertMerchant } from '../helpers/events';
import { createTestEnvironment, startTestGateway, type TestEnvironment, type TestGateway } from '../helpers/gateway';
import { expectLedgerConsistent, waitFor, waitForLedgerToCatchUp } from '../helpers/ledger';
import { startPrivateTestDatabase, type PrivateTestDatabase } from '../helpers/private-postgres';

let environment: TestEnvironment;
let postgres: PrivateTestDatabase;
let gateway: TestGateway | undefined;
const outageMs = 15_000;

beforeAll(async () => {
  environment = await createTestEnvironment();
  postgres = await startPrivateTestDatabase();
});
afterAll(async () => {
  await gateway?.stop();
  await postgres?.destroy();
  await environment?.cleanup();
});

async function counter(name: string, labels: Record<string, string> = {}): Promise<number> {
  const metric = await gateway?.metrics.registry.getSingleMetric(name)?.get();
  return (metric?.values ?? [])
    .filter((value) => Object.entries(labels).every(([key, wanted]) => value.labels[key] === wanted))
    .reduce((sum, value) => sum + value.value, 0);
}

describe('when Postgres is down for 15 s with ledger jobs in flight', () => {
  it('holds the jobs without spending attempts, then applies every effect exactly once, with no dead letter', async () => {
    const events = 200;
    const database = postgres.database;
    gateway = await startTestGateway(environment, {
      DATABASE_URL: postgres.database.gatewayUrl,
      ROLE: 'all',
      // Slow enough that jobs are still queued when Postgres stops; the defaults for attempts and
      // backoff (5 attempts, 200 ms base) would spend every attempt in about 3 s.
      WORKER_RATE_PER_SECOND: '40',
      WORKER_ATTEMPTS_MAX: '5',
      RETRY_BUDGET_EMPTY_DELAY_MS: '500',
      SWEEPER_GRACE_MS: '600000',
    });
    const merchantId = await insertMerchant(database);
    await insertChargeEvents(database, merchantId, events);
    await waitFor(
      async () => (await database.count("SELECT count(*) FROM inbox_events WHERE consumer = 'ledger'")) >= 20,
      20_000,
      'the first effects',
    );

    await postgres.server.stop('fast');
    const stoppedAt = Date.now();
    await waitFor(async () => (await counter('ledger_jobs_held_total', { reason: 'infrastructure' })) > 0, 10_000);
    await new Promise((resolve) => setTimeout(resolve, Math.max(0, outageMs - (Date.now() - stoppedAt))));
    await postgres.server.start();

    await waitForLedgerToCatchUp(database, 45_000);
    expect(await database.count('SELECT count(*) FROM ledger_transactions')).toBe(events);
    expect(await database.count("SELECT count(*) FROM inbox_events WHERE consumer = 'ledger'")).toBe(events);
    expect(await database.count('SELECT count(*) FROM dead_letters')).toBe(0);
    const held = await counter('ledger_jobs_held_total', { reason: 'infrastructure' });
    process.stdout.write(
      `postgres outage: ${events} events, ${held} holds during ${outageMs} ms down, 0 dead letters\n`,
    );
    expect(held).toBeGreaterThan(0);
    await expectLedgerConsistent(database);
  }, 90_000);
});

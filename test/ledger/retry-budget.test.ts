/**
 * A downstream outage under load: the ledger call site fails as if Postgres were unreachable for
 * 10 s (FAULT_LEDGER_OUTAGE_MS), far longer than the default 5 attempts take. The call site is
 * held at the first failure: jobs wait (delayed, no attempt spent) instead of being dropped, one
 * probe at a time calls, so the attempts stay near one per event instead of N per event, and
 * after recovery each applies once, with no dead letter.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { insertChargeEvents, insertMerchant } from '../helpers/events';
import { createTestEnvironment, startTestGateway, type TestEnvironment, type TestGateway } from '../helpers/gateway';
import { expectLedgerConsistent, waitForLedgerToCatchUp } from '../helpers/ledger';

let environment: TestEnvironment;
let gateway: TestGateway;
const capacity = 20;
const refillPerSecond = 1;
const outageMs = 10_000;

beforeAll(async () => {
  environment = await createTestEnvironment();
});
afterAll(async () => {
  await gateway?.stop();
  await environment?.cleanup();
});

async function counter(name: string): Promise<number> {
  const metric = await gateway.metrics.registry.getSingleMetric(name)?.get();
  return (metric?.values ?? []).reduce((sum, value) => sum + value.value, 0);
}

describe('when the ledger is down for a while under load', () => {
  it('keeps attempts within the budget, drops nothing, and applies each event once after recovery', async () => {
    const events = 300;
    const merchantId = await insertMerchant(environment.database);
    const startedAt = Date.now();
    gateway = await startTestGateway(environment, {
      ROLE: 'all',
      FAULT_LEDGER_OUTAGE_MS: String(outageMs),
      WORKER_ATTEMPTS_MAX: '5',
      WORKER_BACKOFF_BASE_MS: '20',
      WORKER_BACKOFF_CAP_MS: '100',
      RETRY_BUDGET_CAPACITY: String(capacity),
      RETRY_BUDGET_DEPOSIT_PER_SUCCESS: '0.1',
      RETRY_BUDGET_REFILL_PER_SECOND: String(refillPerSecond),
      RETRY_BUDGET_EMPTY_DELAY_MS: '500',
    });
    await insertChargeEvents(environment.database, merchantId, events);
    await waitForLedgerToCatchUp(environment.database, 60_000);
    const elapsedSeconds = (Date.now() - startedAt) / 1_000;

    const attempts = await counter('ledger_apply_attempts_total');
    // First attempts, plus retries paid for by the bucket: its capacity, its refill over the run,
    // and a tenth of a token per success.
    const bound = events + capacity + refillPerSecond * elapsedSeconds + 0.1 * events;
    process.stdout.write(
      `retry budget: ${events} events, ${attempts} attempts in ${elapsedSeconds.toFixed(1)} s (bound ${bound.toFixed(0)}; ` +
        `without holds up to ${events * 5})\n`,
    );
    expect(attempts).toBeLessThanOrEqual(bound);
    expect(attempts).toBeLessThanOrEqual(1.1 * events + capacity + refillPerSecond * elapsedSeconds);
    expect(await counter('ledger_jobs_held_total')).toBeGreaterThan(0);
    expect(await environment.database.count('SELECT count(*) FROM dead_letters')).toBe(0);
    expect(await environment.database.count('SELECT count(*) FROM ledger_transactions')).toBe(events);
    await expectLedgerConsistent(environment.database);
  }, 90_000);
});

/**
 * Two relays and two workers (real processes) over 2,000 events: every event applied once.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startChildGateway, type ChildGateway } from '../../scripts/harness/child-gateway';
import { insertChargeEvents, insertMerchant } from '../helpers/events';
import { createTestEnvironment, type TestEnvironment } from '../helpers/gateway';
import { expectLedgerConsistent, waitFor, waitForLedgerToCatchUp } from '../helpers/ledger';

let environment: TestEnvironment;
const children: ChildGateway[] = [];

beforeAll(async () => {
  environment = await createTestEnvironment();
});
afterAll(async () => {
  for (const child of children) await child.kill('SIGKILL');
  await environment?.cleanup();
});

describe('when two relays and two workers share the work', () => {
  it('applies each of 2,000 events exactly once', async () => {
    const env = { RELAY_RATE_PER_SECOND: '0', RELAY_BATCH_SIZE_MAX: '200', DATABASE_POOL_SIZE_MAX: '6' };
    children.push(
      ...(await Promise.all([
        startChildGateway(environment.env({ ...env, ROLE: 'relay' })),
        startChildGateway(environment.env({ ...env, ROLE: 'relay' })),
        startChildGateway(environment.env({ ...env, ROLE: 'worker' })),
        startChildGateway(environment.env({ ...env, ROLE: 'worker' })),
      ])),
    );
    const merchantId = await insertMerchant(environment.database);
    for (let batch = 0; batch < 4; batch += 1) await insertChargeEvents(environment.database, merchantId, 500);
    await waitForLedgerToCatchUp(environment.database, 60_000);
    expect(await environment.database.count('SELECT count(*) FROM ledger_transactions')).toBe(2_000);
    expect(await environment.database.count("SELECT count(*) FROM inbox_events WHERE consumer = 'ledger'")).toBe(2_000);
    expect(await environment.database.count('SELECT count(*) FROM outbox_events WHERE published_at IS NULL')).toBe(0);
    await expectLedgerConsistent(environment.database);
    // The processes' counters agree with the rows. Each moves just after its commit, so wait for
    // the sums; which relay or worker did how much is up to the scheduler, so it is not asserted.
    const scrape = async (child: ChildGateway, metric: string) =>
      (await (await fetch(`${child.url}/metrics`)).text())
        .split('\n')
        .filter((line) => line.startsWith(metric))
        .reduce((sum, line) => sum + Number(line.split(' ').at(-1)), 0);
    const total = async (some: ChildGateway[], metric: string) =>
      (await Promise.all(some.map((child) => scrape(child, metric)))).reduce((a, b) => a + b, 0);
    const relays = children.slice(0, 2);
    const workers = children.slice(2);
    await waitFor(async () => (await total(relays, 'relay_published_events_total')) >= 2_000, 20_000, 'publish counts');
    await waitFor(async () => (await total(workers, 'ledger_effects_applied_total')) >= 2_000, 20_000, 'apply counts');
    expect(await total(relays, 'relay_published_events_total')).toBe(2_000);
    expect(await total(workers, 'ledger_effects_applied_total')).toBe(2_000);
  }, 180_000); // four gateway processes start at once: slow on a loaded machine
});

/**
 * Redis cannot erase an effect (issue 14, finding 3): done markers planted in Redis before the
 * worker sees the events, unsigned, signed with another secret, and under the guessable sequence
 * number the markers used to be named by, do not skip a ledger credit. The worker ignores them,
 * counts them (`ledger_done_markers_rejected_total`), and the inbox decides: each event is
 * credited once, read from the committed ledger rows.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { jobIdFor } from '../../src/outbox/queue';
import { createValueSigner } from '../../src/platform/signed-value';
import { insertChargeEvents, insertMerchant, outboxEvents } from '../helpers/events';
import { createTestEnvironment, startTestGateway, type TestEnvironment, type TestGateway } from '../helpers/gateway';
import { expectLedgerConsistent, waitFor, waitForLedgerToCatchUp } from '../helpers/ledger';

let environment: TestEnvironment;
let gateway: TestGateway | undefined;

beforeAll(async () => {
  environment = await createTestEnvironment();
});
afterAll(async () => {
  await gateway?.stop();
  await environment?.cleanup();
});

describe('done markers planted in Redis before the worker runs', () => {
  it('skip no credit: each event is applied once, and each planted marker is rejected and counted', async () => {
    const merchantId = await insertMerchant(environment.database);
    await insertChargeEvents(environment.database, merchantId, 2);
    const [unsigned, foreign] = await outboxEvents(environment.database);
    const markerKey = (id: string) => `${environment.redisKeyPrefix}:inbox:ledger:{${jobIdFor(id)}}`;
    const planter = await startTestGateway(environment, { ROLE: 'api' });
    const otherSecret = createValueSigner('not-the-gateway-secret-0123456789abcdef');
    await planter.redis.set(markerKey(unsigned!.event_uid), 'done');
    await planter.redis.set(
      markerKey(foreign!.event_uid),
      otherSecret.sign('ledger.done', markerKey(foreign!.event_uid), 'done'),
    );
    // The old, guessable names: the events' sequence numbers.
    for (const event of [unsigned!, foreign!]) await planter.redis.set(markerKey(event.id), 'done');
    await planter.stop();

    gateway = await startTestGateway(environment, { ROLE: 'all' });
    await waitForLedgerToCatchUp(environment.database);
    expect(await environment.database.count('SELECT count(*) FROM ledger_transactions')).toBe(2);
    expect(await environment.database.count('SELECT count(*) FROM inbox_events')).toBe(2);
    await expectLedgerConsistent(environment.database);
    const rejected = async () =>
      ((await gateway!.metrics.registry.getSingleMetric('ledger_done_markers_rejected_total')?.get())?.values ?? [])
        .map((value) => value.value)
        .reduce((sum, value) => sum + value, 0);
    await waitFor(async () => (await rejected()) >= 2, 10_000, 'both planted markers to be rejected');
    expect(await rejected()).toBe(2);
    // After the commit the worker wrote its own, signed marker in their place.
    expect(await gateway.redis.get(markerKey(unsigned!.event_uid))).not.toBe('done');
  });
});

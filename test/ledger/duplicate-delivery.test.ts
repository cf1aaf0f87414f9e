/**
 * However often an event is delivered, its ledger effect happens once: the same job added under
 * other ids, added again after BullMQ removed it, and delivered after the Redis done markers were
 * deleted. The inbox row is what holds.
 */
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { jobIdFor, openLedgerQueue } from '../../src/outbox/queue';
import { insertChargeEvents, insertMerchant, jobDataFor, outboxEvents } from '../helpers/events';
import { createTestEnvironment, startTestGateway, type TestEnvironment, type TestGateway } from '../helpers/gateway';
import { expectLedgerConsistent, waitFor, waitForLedgerToCatchUp } from '../helpers/ledger';

let environment: TestEnvironment;
let gateway: TestGateway;
let connection: Redis;
let queue: ReturnType<typeof openLedgerQueue>;

const duplicates = async () => {
  const metric = await gateway.metrics.registry.getSingleMetric('inbox_duplicates_total')?.get();
  return (metric?.values ?? []).reduce((sum, value) => sum + value.value, 0);
};
const ledgerTransactions = () => environment.database.count('SELECT count(*) FROM ledger_transactions');

beforeAll(async () => {
  environment = await createTestEnvironment();
  gateway = await startTestGateway(environment, { ROLE: 'all' });
  connection = new Redis(environment.redisUrl, { maxRetriesPerRequest: null });
  queue = openLedgerQueue(connection, { prefix: `{${environment.redisKeyPrefix}}`, attemptsMax: 5 });
});
afterAll(async () => {
  await queue?.close();
  connection?.disconnect();
  await gateway?.stop();
  await environment?.cleanup();
});

describe('when one event is delivered many times', () => {
  it('applies it once, under other job ids and after its job was removed', async () => {
    const merchantId = await insertMerchant(environment.database);
    await insertChargeEvents(environment.database, merchantId, 5);
    await waitForLedgerToCatchUp(environment.database);
    expect(await ledgerTransactions()).toBe(5);
    const [event] = await outboxEvents(environment.database);
    const data = jobDataFor(event!);
    const before = await duplicates();

    // The relay's own id again (BullMQ still holds it: ignored), and three new ids.
    await queue.add(data.type, data, { jobId: jobIdFor(event!.event_uid) });
    for (const copy of [1, 2, 3])
      await queue.add(data.type, data, { jobId: `${jobIdFor(event!.event_uid)}-copy${copy}` });
    // The relay's job removed, then added again: BullMQ's dedup cannot help any more.
    await queue.remove(jobIdFor(event!.event_uid));
    await queue.add(data.type, data, { jobId: jobIdFor(event!.event_uid) });

    await waitFor(async () => (await duplicates()) >= before + 4, 10_000, 'four duplicate deliveries');
    expect(await ledgerTransactions()).toBe(5);
    expect(
      await environment.database.count('SELECT count(*) FROM ledger_transactions WHERE event_id = $1', [event!.id]),
    ).toBe(1);
    await expectLedgerConsistent(environment.database);
  });

  it('still applies each event once when the Redis done markers are deleted mid-run', async () => {
    const merchantId = await insertMerchant(environment.database);
    const already = await ledgerTransactions();
    await insertChargeEvents(environment.database, merchantId, 300);
    // Delete the markers while the worker is still applying.
    let deleted = 0;
    for (let round = 0; round < 5; round += 1) {
      const markers = await connection.keys(`${environment.redisKeyPrefix}:inbox:*`);
      if (markers.length > 0) deleted += await connection.del(...markers);
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    await waitForLedgerToCatchUp(environment.database);
    const remaining = await connection.keys(`${environment.redisKeyPrefix}:inbox:*`);
    if (remaining.length > 0) deleted += await connection.del(...remaining);
    expect(deleted).toBeGreaterThan(0);

    // Deliver every event again with no markers left: the inbox rows catch them all.
    const before = await duplicates();
    const events = await outboxEvents(environment.database);
    await queue.addBulk(
      events.map((event) => ({
        name: event.event_type,
        data: jobDataFor(event),
        opts: { jobId: `${jobIdFor(event.event_uid)}-again` },
      })),
    );
    await waitFor(async () => (await duplicates()) >= before + events.length, 30_000, 'every redelivery to be caught');
    expect(await ledgerTransactions()).toBe(already + 300);
    expect(
      await environment.database.count(
        'SELECT count(*) FROM (SELECT event_id FROM ledger_transactions GROUP BY event_id HAVING count(*) > 1) d',
      ),
    ).toBe(0);
    const byInbox = await gateway.metrics.registry.getSingleMetric('inbox_duplicates_total')?.get();
    expect(byInbox?.values.find((value) => value.labels.caught_by === 'inbox_row')?.value ?? 0).toBeGreaterThan(0);
    await expectLedgerConsistent(environment.database);
  });
});

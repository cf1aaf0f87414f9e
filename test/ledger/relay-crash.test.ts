/**
 * A relay killed (SIGKILL, a real child process) after addBulk and before marking the events
 * published: on restart it publishes them again, and the ledger still shows one application each.
 * Only the relay that dies is a child process; the worker and the restarted relay run in this
 * process, which starts them in a fraction of the time on a loaded machine.
 */
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { jobIdFor, openLedgerQueue } from '../../src/outbox/queue';
import { startChildGateway, type ChildGateway } from '../../scripts/harness/child-gateway';
import { insertChargeEvents, insertMerchant } from '../helpers/events';
import { createTestEnvironment, startTestGateway, type TestEnvironment, type TestGateway } from '../helpers/gateway';
import { expectLedgerConsistent, waitFor, waitForLedgerToCatchUp } from '../helpers/ledger';

let environment: TestEnvironment;
const children: ChildGateway[] = [];
const gateways: TestGateway[] = [];

async function scrape(gateway: { readonly url: string }, metric: string): Promise<number> {
  const text = await (await fetch(`${gateway.url}/metrics`)).text();
  return text
    .split('\n')
    .filter((line) => line.startsWith(metric))
    .reduce((sum, line) => sum + Number(line.split(' ').at(-1)), 0);
}

beforeAll(async () => {
  environment = await createTestEnvironment();
});
afterAll(async () => {
  for (const child of children) await child.kill('SIGKILL');
  for (const gateway of gateways) await gateway.stop();
  await environment?.cleanup();
});

describe('when the relay dies between publishing and marking', () => {
  it('publishes the batch again on restart, and the consumer keeps the effect at one', async () => {
    const merchantId = await insertMerchant(environment.database);
    const relayEnv = { ROLE: 'relay', RELAY_CLAIM_LEASE_MS: '500', RELAY_RATE_PER_SECOND: '0' };
    const doomed = await startChildGateway(environment.env({ ...relayEnv, FAULTS: 'crash_after_publish' }));
    children.push(doomed);
    await insertChargeEvents(environment.database, merchantId, 20);
    expect((await doomed.exited).signal).toBe('SIGKILL');
    expect(await environment.database.count('SELECT count(*) FROM outbox_events WHERE published_at IS NULL')).toBe(20);

    // The first publish reached the queue. Remove those jobs, as BullMQ would once they age out,
    // so that the second publish is really delivered again.
    const connection = new Redis(environment.redisUrl, { maxRetriesPerRequest: null });
    const queue = openLedgerQueue(connection, { prefix: `{${environment.redisKeyPrefix}}`, attemptsMax: 5 });
    const published = await queue.getJobs(['waiting', 'delayed']);
    expect(published.length).toBe(20);

    // A worker applies the first delivery.
    const worker = await startTestGateway(environment, { ROLE: 'worker' });
    gateways.push(worker);
    await waitFor(
      async () => (await environment.database.count('SELECT count(*) FROM inbox_events')) === 20,
      20_000,
      'first delivery',
    );
    // The inbox row commits before BullMQ moves its job to completed: wait for all 20 there, or a
    // job still active would survive the removal and swallow its second publish (same jobId).
    await waitFor(async () => (await queue.getJobCounts('completed')).completed === 20, 20_000, 'jobs completed');
    for (const job of await queue.getJobs(['completed'])) await job.remove();
    for (const job of published) expect(await queue.getJob(jobIdFor(job.data.eventUid!))).toBeUndefined();

    const relay = await startTestGateway(environment, relayEnv);
    gateways.push(relay);
    await waitFor(
      async () =>
        (await environment.database.count('SELECT count(*) FROM outbox_events WHERE published_at IS NULL')) === 0,
      20_000,
      'the restarted relay to publish and mark',
    );
    // The relay counts a batch only after its mark commits, so the rows can be marked a moment
    // before the counter moves: wait for it. It is the only relay alive (the doomed one exited
    // above), so the count it reaches is every republished event, and no more.
    await waitFor(
      async () => (await scrape(relay, 'relay_published_events_total')) >= 20,
      20_000,
      'the restarted relay to count what it published',
    );
    expect(await scrape(relay, 'relay_published_events_total')).toBe(20);
    await waitFor(
      async () => (await scrape(worker, 'inbox_duplicates_total')) >= 20,
      20_000,
      'the worker to skip the second delivery',
    );
    await waitForLedgerToCatchUp(environment.database);
    expect(await environment.database.count('SELECT count(*) FROM inbox_events')).toBe(20);
    expect(await environment.database.count('SELECT count(*) FROM ledger_transactions')).toBe(20);
    // Counted inside each first-delivery job, before BullMQ completed it (waited for above).
    expect(await scrape(worker, 'ledger_effects_applied_total')).toBe(20);
    await expectLedgerConsistent(environment.database);
    await queue.close();
    connection.disconnect();
  }, 180_000); // a child gateway's start is slow on a loaded machine
});

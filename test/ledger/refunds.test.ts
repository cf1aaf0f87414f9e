/**
 * refundCharge: partial refunds, refusals stored and replayed, concurrent refunds that never
 * exceed the charge (at the acquirer or in the ledger), and a refund event published a full minute
 * before its charge's waits for it (a real 60 s: the file runs beside others).
 */
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openLedgerQueue, jobIdFor } from '../../src/outbox/queue';
import { createTestEnvironment, startTestGateway, type TestEnvironment, type TestGateway } from '../helpers/gateway';
import { createCharge, postGraphql } from '../helpers/http';
import { expectLedgerConsistent, waitFor, waitForLedgerToCatchUp } from '../helpers/ledger';

let environment: TestEnvironment;
let gateway: TestGateway;
let counter = 0;
const key = (what: string) => `${what}-${++counter}`;

const refundMutation = `mutation Refund($input: RefundChargeInput!) {
  refundCharge(input: $input) { id chargeId amount currency status createdAt } }`;

function refund(
  input: { chargeId: string; amount?: number; reason?: string },
  idempotencyKey: string,
  target = gateway,
) {
  return postGraphql<{ refundCharge: { id: string; amount: number; status: string } | null }>(
    target.url,
    { query: refundMutation, variables: { input } },
    { authorization: `Bearer ${target.apiKey}`, 'idempotency-key': idempotencyKey },
  );
}

async function newCharge(amount: number, source = 'tok_visa', target = gateway): Promise<string> {
  const answer = await createCharge(target.url, target.apiKey, key('charge'), { amount, currency: 'USD', source });
  expect(answer.status).toBe(200);
  return String(answer.body.data?.createCharge?.id);
}

beforeAll(async () => {
  environment = await createTestEnvironment();
  gateway = await startTestGateway(environment, {
    ROLE: 'all',
    WORKER_BACKOFF_BASE_MS: '50',
    WORKER_BACKOFF_CAP_MS: '200',
    // A held job looks again after 0.2–0.4 s, so a test sees many holds in a few seconds.
    RETRY_BUDGET_EMPTY_DELAY_MS: '200',
  });
});
afterAll(async () => {
  await gateway?.stop();
  await environment?.cleanup();
});

describe('when a charge is refunded in parts', () => {
  it('refunds up to the charge, defaults to what is left, then refuses with REFUND_EXCEEDS_CHARGE (stored and replayed)', async () => {
    const chargeId = await newCharge(1000);
    const first = await refund({ chargeId, amount: 300 }, key('refund'));
    expect(first.status).toBe(200);
    expect(first.body.data?.refundCharge).toMatchObject({ amount: 300, status: 'SUCCEEDED' });
    const rest = await refund({ chargeId }, key('refund'));
    expect(rest.body.data?.refundCharge).toMatchObject({ amount: 700, status: 'SUCCEEDED' });

    const overKey = key('refund');
    const over = await refund({ chargeId, amount: 1 }, overKey);
    expect(over.status).toBe(400);
    expect(over.body.errors?.[0]?.extensions?.code).toBe('REFUND_EXCEEDS_CHARGE');
    const overAgain = await refund({ chargeId, amount: 1 }, overKey);
    expect(overAgain.status).toBe(400);
    expect(overAgain.body.errors?.[0]?.extensions?.code).toBe('REFUND_EXCEEDS_CHARGE');
    expect(overAgain.body.extensions?.idempotency?.replayed).toBe(true);

    await waitForLedgerToCatchUp(environment.database);
    expect(await environment.database.count('SELECT count(*) FROM refunds WHERE charge_id = $1', [chargeId])).toBe(2);
    expect(
      await environment.database.count(
        "SELECT count(*) FROM ledger_transactions WHERE charge_id = $1 AND event_type = 'refund.succeeded'",
        [chargeId],
      ),
    ).toBe(2);
    await expectLedgerConsistent(environment.database);
  });

  it('replays a refund under the same key instead of refunding twice', async () => {
    const chargeId = await newCharge(500);
    const refundKey = key('refund');
    const first = await refund({ chargeId, amount: 200 }, refundKey);
    const again = await refund({ chargeId, amount: 200 }, refundKey);
    expect(again.headers.get('idempotent-replayed')).toBe('true');
    expect(again.body.data).toEqual(first.body.data);
    expect(await environment.database.count('SELECT count(*) FROM refunds WHERE charge_id = $1', [chargeId])).toBe(1);
  });
});

describe('when the charge cannot be refunded', () => {
  it('refuses a declined charge with CHARGE_NOT_REFUNDABLE', async () => {
    const chargeId = await newCharge(500, 'tok_chargeDeclined');
    const answer = await refund({ chargeId }, key('refund'));
    expect(answer.status).toBe(400);
    expect(answer.body.errors?.[0]?.extensions?.code).toBe('CHARGE_NOT_REFUNDABLE');
  });

  it('answers 404 NOT_FOUND for an unknown or another merchant’s charge, storing nothing', async () => {
    const other = await gateway.newMerchant('Other');
    const foreignCharge = await createCharge(gateway.url, other.apiKey, key('foreign'), {
      amount: 100,
      currency: 'USD',
      source: 'tok_visa',
    });
    const keysBefore = await environment.database.count('SELECT count(*) FROM idempotency_keys');
    for (const chargeId of ['ch_doesnotexist', String(foreignCharge.body.data?.createCharge?.id)]) {
      const answer = await refund({ chargeId }, key('refund'));
      expect(answer.status).toBe(404);
      expect(answer.body.errors?.[0]?.extensions?.code).toBe('NOT_FOUND');
    }
    expect(await environment.database.count('SELECT count(*) FROM idempotency_keys')).toBe(keysBefore);
  });

  it('answers 400 BAD_USER_INPUT naming the field for a bad amount', async () => {
    const chargeId = await newCharge(500);
    const answer = await refund({ chargeId, amount: 0 }, key('refund'));
    expect(answer.status).toBe(400);
    expect(answer.body.errors?.[0]?.extensions?.field).toBe('input.amount');
  });
});

describe('when 20 refunds of one charge race', () => {
  it('never refunds more than the charge, at the acquirer or in the ledger', async () => {
    const chargeId = await newCharge(1000);
    // Each client keeps its key and retries a 409 REFUND_IN_PROGRESS (another refund's reservation
    // stood in the way and might have been given back) until it gets a final answer.
    let inProgress = 0;
    const refundUntilFinal = async (idempotencyKey: string) => {
      for (;;) {
        const answer = await refund({ chargeId, amount: 100 }, idempotencyKey);
        if (answer.body.errors?.[0]?.extensions?.code !== 'REFUND_IN_PROGRESS') return answer;
        inProgress += 1;
        expect(answer.status).toBe(409);
        expect(Number(answer.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
    };
    const answers = await Promise.all(Array.from({ length: 20 }, () => refundUntilFinal(key('race'))));
    console.log(`20 racing refunds: ${inProgress} answers 409 REFUND_IN_PROGRESS before the final ones`);
    const succeeded = answers.filter((answer) => answer.body.data?.refundCharge?.status === 'SUCCEEDED');
    const refused = answers.filter((answer) => answer.body.errors?.[0]?.extensions?.code === 'REFUND_EXCEEDS_CHARGE');
    expect(succeeded.length).toBe(10);
    expect(refused.length).toBe(10);
    const { rows } = await environment.database.pool.query<{ amount_refunded: number; amount_reserved: number }>(
      'SELECT amount_refunded, amount_reserved FROM charges WHERE id = $1',
      [chargeId],
    );
    expect(rows[0]).toEqual({ amount_refunded: 1000, amount_reserved: 0 });
    expect(
      await environment.database.count(
        `SELECT count(*) FROM acquirer_authorizations WHERE kind = 'refund' AND source = (SELECT authorization_id FROM charges WHERE id = $1)`,
        [chargeId],
      ),
    ).toBe(10);
    await waitForLedgerToCatchUp(environment.database);
    expect(
      await environment.database.count(
        `SELECT coalesce(sum(e.amount), 0) AS count FROM ledger_entries e JOIN ledger_transactions t ON t.id = e.transaction_id
          WHERE t.charge_id = $1 AND t.event_type = 'refund.succeeded' AND e.account_id LIKE 'merchant_balance:%'`,
        [chargeId],
      ),
    ).toBe(1000);
    await expectLedgerConsistent(environment.database);
  });
});

describe('when a refund event is published 60 s before its charge’s', () => {
  it('holds it for the whole minute without spending an attempt, then posts it after the charge, with no dead letter', async () => {
    const apiOnly = await startTestGateway(environment, { ROLE: 'api' });
    try {
      // The api role writes events; no relay publishes them yet.
      const relayPaused = await environment.database.pool.query(
        "UPDATE outbox_events SET claimed_until = now() + interval '1 hour' WHERE published_at IS NULL RETURNING id",
      );
      expect(relayPaused.rowCount).toBe(0);
      await gateway.relay?.stop();
      const chargeId = await newCharge(800, 'tok_visa', apiOnly);
      const refunded = await refund({ chargeId, amount: 800 }, key('early'), apiOnly);
      expect(refunded.status).toBe(200);
      const { rows } = await environment.database.pool.query<{ id: string; event_uid: string; payload: string }>(
        "SELECT id::text, event_uid::text, payload FROM outbox_events WHERE event_type = 'refund.succeeded' AND aggregate_id = $1",
        [refunded.body.data?.refundCharge?.id],
      );
      const refundEvent = rows[0];
      expect(refundEvent).toBeDefined();
      // Publish the refund's event first, by hand, as a relay that reordered events would.
      const connection = new Redis(environment.redisUrl, { maxRetriesPerRequest: null });
      const queue = openLedgerQueue(connection, { prefix: `{${environment.redisKeyPrefix}}`, attemptsMax: 5 });
      const publishedAt = Date.now();
      await queue.add(
        'refund.succeeded',
        {
          eventId: refundEvent!.id,
          eventUid: refundEvent!.event_uid,
          type: 'refund.succeeded',
          payload: refundEvent!.payload,
        },
        { jobId: jobIdFor(refundEvent!.event_uid) },
      );
      // The charge's event comes a full minute later: far longer than the 5 attempts (about 3 s
      // of backoff) and the 60 s call-site hold would last. Waiting longer can only make it
      // harder. Holds are counted with a floor, not an exact number: a loaded machine looks less
      // often, and one look is enough to show the refund waited instead of failing.
      const held = async () =>
        (await gateway.metrics.registry.getSingleMetric('ledger_jobs_held_total')?.get())?.values.find(
          (value) => value.labels.reason === 'order',
        )?.value ?? 0;
      const heldBefore = await held();
      await waitFor(
        async () => Date.now() - publishedAt >= 60_000 && (await held()) >= heldBefore + 5,
        120_000,
        'a minute of holds',
      );
      const job = await queue.getJob(jobIdFor(refundEvent!.event_uid));
      expect(job?.attemptsMade).toBe(0);
      expect(['delayed', 'waiting', 'active']).toContain(await job?.getState());
      expect(await environment.database.count('SELECT count(*) FROM dead_letters')).toBe(0);
      expect(
        await environment.database.count('SELECT count(*) FROM ledger_transactions WHERE charge_id = $1', [chargeId]),
      ).toBe(0);
      // Now the relay publishes both; the charge posts, then the refund's retry applies.
      const relay = await startTestGateway(environment, {
        ROLE: 'relay',
        LOG_LEVEL: process.env.DEBUG_RELAY ? 'debug' : 'silent',
      });
      await waitFor(
        async () =>
          (await environment.database.count('SELECT count(*) FROM ledger_transactions WHERE charge_id = $1', [
            chargeId,
          ])) === 2,
        20_000,
        'the charge and then the refund to post',
      );
      const order = await environment.database.pool.query<{ event_type: string }>(
        'SELECT event_type FROM ledger_transactions WHERE charge_id = $1 ORDER BY id',
        [chargeId],
      );
      expect(order.rows.map((row) => row.event_type)).toEqual(['charge.succeeded', 'refund.succeeded']);
      expect(await environment.database.count('SELECT count(*) FROM dead_letters')).toBe(0);
      await relay.stop();
      await queue.close();
      connection.disconnect();
      await expectLedgerConsistent(environment.database);
    } finally {
      await apiOnly.stop();
    }
  }, 180_000);
});

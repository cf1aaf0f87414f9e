/**
 * Several events in one apply statement (src/ledger/apply-batch.ts) keep what one event in its own
 * statement has: each its own inbox row and its own outcome. In one batch, an applied event, a
 * duplicate, a poison message, an event from another history, a failed charge, a refund of a
 * posted charge and a refund whose charge is posted in the same batch each get the answer
 * applyLedgerEvent gives them alone, and only the agreed events leave rows.
 */
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { applyLedgerEvents, createLedgerApplier } from '../../src/ledger/apply-batch';
import type { LedgerEvent } from '../../src/ledger/ledger-event';
import { openDatabase, type DatabaseHandle } from '../../src/platform/database';
import { insertChargeEvents, insertMerchant, outboxEvents } from '../helpers/events';
import { createTestEnvironment, type TestEnvironment } from '../helpers/gateway';
import { expectLedgerConsistent } from '../helpers/ledger';

let environment: TestEnvironment;
let handle: DatabaseHandle;
let merchantId: string;

beforeAll(async () => {
  environment = await createTestEnvironment();
  handle = openDatabase({
    databaseUrl: environment.database.url,
    databasePoolSizeMax: 4,
    databaseStatementTimeoutMs: 10_000,
    databaseLockTimeoutMs: 5_000,
  });
  merchantId = await insertMerchant(environment.database);
  await insertChargeEvents(environment.database, merchantId, 6);
});
afterAll(async () => {
  await handle?.close();
  await environment?.cleanup();
});

/** The ledger events of a merchant's stored charge.succeeded outbox rows, as the worker parses them. */
async function chargeEvents(merchant = merchantId): Promise<LedgerEvent[]> {
  const rows = await outboxEvents(environment.database);
  return rows.flatMap((row) => {
    const payload = JSON.parse(row.payload) as {
      chargeId: string;
      merchantId: string;
      amount: number;
      currency: string;
    };
    if (payload.merchantId !== merchant || row.event_type !== 'charge.succeeded') return [];
    const event: LedgerEvent = {
      eventId: row.id,
      eventUid: row.event_uid,
      type: 'charge.succeeded',
      chargeId: payload.chargeId,
      refundId: null,
      merchantId: merchant,
      amount: payload.amount,
      currency: payload.currency,
    };
    return [event];
  });
}

/** A SUCCEEDED refund of the whole charge, with its refund.succeeded event. */
async function refundOf(charge: LedgerEvent): Promise<LedgerEvent> {
  const refundId = `re_${randomUUID()}`;
  await environment.database.pool.query(
    `INSERT INTO refunds (id, charge_id, merchant_id, amount, currency, status, authorization_id, created_at)
     VALUES ($1, $2, $3, $4, $5, 'SUCCEEDED', $6, now())`,
    [refundId, charge.chargeId, merchantId, charge.amount, charge.currency, `auth_${refundId}`],
  );
  const { rows } = await environment.database.pool.query<{ id: string; event_uid: string }>(
    `INSERT INTO outbox_events (event_type, aggregate_id, payload) VALUES ('refund.succeeded', $1, $2)
     RETURNING id::text, event_uid::text`,
    [refundId, JSON.stringify({ version: 1, refundId, chargeId: charge.chargeId, merchantId, amount: charge.amount })],
  );
  return { ...charge, eventId: rows[0]!.id, eventUid: rows[0]!.event_uid, type: 'refund.succeeded', refundId };
}

/** A FAILED charge with its charge.failed event. */
async function failedCharge(): Promise<LedgerEvent> {
  const chargeId = `ch_${randomUUID()}`;
  await environment.database.pool.query(
    `INSERT INTO charges (id, merchant_id, amount, currency, source, status, failure_code, created_at)
     VALUES ($1, $2, 500, 'EUR', 'tok_chargeDeclined', 'FAILED', 'card_declined', now())`,
    [chargeId, merchantId],
  );
  const { rows } = await environment.database.pool.query<{ id: string; event_uid: string }>(
    `INSERT INTO outbox_events (event_type, aggregate_id, payload) VALUES ('charge.failed', $1, '{}')
     RETURNING id::text, event_uid::text`,
    [chargeId],
  );
  return {
    eventId: rows[0]!.id,
    eventUid: rows[0]!.event_uid,
    type: 'charge.failed',
    chargeId,
    refundId: null,
    merchantId,
    amount: 500,
    currency: 'EUR',
  };
}

const answerOf = (answer: unknown) => (answer instanceof Error ? (answer as Error & { code?: string }).code : answer);

describe('several events in one apply statement', () => {
  it('gives each event its own outcome and its own rows', async () => {
    const [first, second, third, fourth, fifth, sixth] = await chargeEvents();
    expect(await applyLedgerEvents(handle.pool, [first!, second!])).toEqual(['applied', 'applied']);

    const failed = await failedCharge();
    const refundOfPosted = await refundOf(first!);
    const refundInSameBatch = await refundOf(fourth!);
    const answers = await applyLedgerEvents(handle.pool, [
      second!, // applied already: a duplicate
      third!,
      { ...fifth!, amount: fifth!.amount + 1 }, // poison: the amount differs from the charge
      { ...sixth!, eventUid: randomUUID() }, // another history of the database
      failed,
      refundOfPosted,
      fourth!,
      refundInSameBatch, // its charge is posted by this same statement: it waits
    ]);
    expect(answers.map(answerOf)).toEqual([
      'duplicate',
      'applied',
      'LEDGER_AMOUNT_MISMATCH',
      'LEDGER_EVENT_INVALID',
      'acknowledged',
      'applied',
      'applied',
      'LEDGER_CHARGE_NOT_POSTED',
    ]);
    const inbox = await environment.database.pool.query<{ event_id: string }>(
      'SELECT event_id::text FROM inbox_events ORDER BY event_id',
    );
    expect(inbox.rows.map((row) => row.event_id).sort()).toEqual(
      [first, second, third, fourth, failed, refundOfPosted].map((event) => event!.eventId).sort(),
    );

    // The refund that waited goes through once its charge is posted; the fixed event too.
    expect(await applyLedgerEvents(handle.pool, [refundInSameBatch, fifth!, sixth!])).toEqual([
      'applied',
      'applied',
      'applied',
    ]);
    await expectLedgerConsistent(environment.database);
  });

  it('lets jobs that apply at once share statements, each answered on its own', async () => {
    const merchant = await insertMerchant(environment.database, 'Second merchant');
    await insertChargeEvents(environment.database, merchant, 40);
    const all = await chargeEvents(merchant);
    expect(all).toHaveLength(40);
    const apply = createLedgerApplier(handle.prisma, handle.pool, { batchSizeMax: 16, inFlightMax: 2 });
    // Every event twice at once (a duplicate delivery): one application each, the other a duplicate.
    const answers = await Promise.all([...all, ...all].map((event) => apply(event)));
    expect(answers.filter((answer) => answer === 'applied')).toHaveLength(40);
    expect(answers.filter((answer) => answer === 'duplicate')).toHaveLength(40);
    await expectLedgerConsistent(environment.database);
  });
});

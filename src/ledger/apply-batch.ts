/**
 * Applies several events to the ledger in one SQL statement (so one transaction), each with its
 * own inbox row and its own outcome: the same checks, in the same order, as applyLedgerEvent
 * (src/ledger/apply-event.ts) does for one event, with the events as arrays (unnest). One
 * statement for a batch instead of one per event is what lets one worker process keep up with
 * the relay (docs/benchmarks.md "Where the time goes").
 *
 * - The statement is a named prepared statement on the worker's pg pool: Postgres parses and
 *   plans it once per connection.
 * - A batch holds each event once (the coalescer keeps a second delivery of the same event for
 *   the next batch), so the inbox's ON CONFLICT only ever meets rows committed before.
 * - Within a batch, a refund whose charge is in the same batch sees the charge as not posted yet
 *   (the statement reads one snapshot), and waits like any refund before its charge.
 * - When the statement fails for a reason that is not Postgres being unreachable (a deadlock, a
 *   bug, a row one event's insert cannot take), each event of the batch is applied on its own, so
 *   only the event at fault fails, and gets its own attempts and dead letter. When Postgres is
 *   unreachable, every event of the batch gets that error and is held.
 */
import type pg from 'pg';
import { invariant } from '../errors';
import type { Database } from '../platform/database';
import {
  applyLedgerEvent,
  ledgerConsumer,
  outcomeFromRow,
  postingsFor,
  type ApplyOutcome,
  type ApplyRow,
} from './apply-event';
import { Coalescer } from './coalescer';
import { isInfrastructureError } from './failures';
import type { LedgerEvent } from './ledger-event';

/** Accounts are inserted in id order and events in id order, so two batches lock in one order. */
const applyBatchStatement = `
WITH event AS (
  SELECT * FROM unnest($1::int[], $2::bigint[], $3::uuid[], $4::text[], $5::text[], $6::text[], $7::text[],
                       $8::bigint[], $9::text[], $10::text[], $11::bigint[], $12::text[], $13::bigint[])
    AS e (n, event_id, event_uid, event_type, charge_id, refund_id, merchant_id, amount, currency,
          debit_account, debit_amount, credit_account, credit_amount)
), fact AS (
  SELECT event.n,
         EXISTS (SELECT 1 FROM outbox_events o WHERE o.event_uid = event.event_uid AND o.id = event.event_id) AS in_outbox,
         charge.status AS charge_status, charge.amount AS charge_amount, charge.currency AS charge_currency,
         charge.merchant_id AS charge_merchant_id, refund.amount AS refund_amount, refund.charge_id AS refund_charge_id,
         (SELECT count(*) FROM ledger_transactions t
           WHERE t.charge_id = event.charge_id AND t.event_type = 'charge.succeeded')::int AS charge_posted
    FROM event
    LEFT JOIN charges charge ON charge.id = event.charge_id
    LEFT JOIN refunds refund ON refund.id = event.refund_id AND refund.status = 'SUCCEEDED'
), agreed AS (
  SELECT event.* FROM event JOIN fact USING (n)
   WHERE fact.in_outbox AND fact.charge_merchant_id = event.merchant_id AND fact.charge_currency = event.currency
     AND CASE WHEN event.event_type = 'charge.failed' THEN fact.charge_status = 'FAILED'
              WHEN event.event_type = 'charge.succeeded' THEN fact.charge_status = 'SUCCEEDED' AND fact.charge_amount = event.amount
              ELSE fact.charge_status = 'SUCCEEDED' AND fact.refund_charge_id = event.charge_id
                   AND fact.refund_amount = event.amount AND fact.charge_posted = 1 END
), inbox AS (
  INSERT INTO inbox_events (consumer, event_id, event_uid)
  SELECT '${ledgerConsumer}', event_id, event_uid FROM agreed ORDER BY event_id
  ON CONFLICT DO NOTHING
  RETURNING event_id
), posting AS (
  SELECT agreed.* FROM agreed JOIN inbox USING (event_id) WHERE agreed.event_type <> 'charge.failed'
), account AS (
  INSERT INTO ledger_accounts (id, kind, merchant_id)
  SELECT DISTINCT 'merchant_balance:' || merchant_id, 'merchant_balance', merchant_id FROM posting ORDER BY 1
  ON CONFLICT (id) DO NOTHING
), posted AS (
  INSERT INTO ledger_transactions (event_id, event_type, charge_id, refund_id)
  SELECT event_id, event_type, charge_id, refund_id FROM posting ORDER BY event_id
  RETURNING id, event_id
), entries AS (
  INSERT INTO ledger_entries (transaction_id, account_id, currency, amount)
  SELECT posted.id, line.account_id, posting.currency, line.amount
    FROM posted JOIN posting USING (event_id),
         LATERAL (VALUES (posting.debit_account, posting.debit_amount), (posting.credit_account, posting.credit_amount))
           AS line (account_id, amount)
  RETURNING transaction_id
)
SELECT event.n,
       (agreed.n IS NOT NULL)::int AS agreed,
       (inbox.event_id IS NOT NULL)::int AS inserted,
       (posted.id IS NOT NULL)::int AS posted,
       EXISTS (SELECT 1 FROM inbox_events i WHERE i.consumer = '${ledgerConsumer}' AND i.event_uid = event.event_uid) AS seen,
       fact.in_outbox, fact.charge_status, fact.charge_amount, fact.charge_currency, fact.charge_merchant_id,
       fact.refund_amount, fact.refund_charge_id, fact.charge_posted,
       (SELECT count(*) FROM entries)::int AS entries
  FROM event JOIN fact USING (n)
  LEFT JOIN agreed USING (n)
  LEFT JOIN inbox ON inbox.event_id = event.event_id
  LEFT JOIN posted ON posted.event_id = event.event_id
 ORDER BY event.n`;

/** One statement for all the events; the answer for each, in order (an outcome or its refusal). */
export async function applyLedgerEvents(
  pool: pg.Pool,
  events: readonly LedgerEvent[],
): Promise<(ApplyOutcome | Error)[]> {
  const columns: unknown[][] = Array.from({ length: 13 }, () => []);
  events.forEach((event, index) => {
    const [debit, credit] = postingsFor(event);
    invariant(debit !== undefined && credit !== undefined, 'two postings');
    const values = [
      index,
      event.eventId,
      event.eventUid,
      event.type,
      event.chargeId,
      event.refundId,
      event.merchantId,
      event.amount,
      event.currency,
      debit.accountId,
      debit.amount,
      credit.accountId,
      credit.amount,
    ];
    values.forEach((value, column) => columns[column]!.push(value));
  });
  const result = await pool.query<ApplyRow & { n: number }>({
    name: 'ledger_apply_batch',
    text: applyBatchStatement,
    values: columns,
  });
  invariant(result.rows.length === events.length, 'the apply statement returns one row per event');
  return events.map((event, index) => {
    const row = result.rows[index];
    invariant(row?.n === index, 'the apply statement answers in the events’ order');
    try {
      return outcomeFromRow(event, row);
    } catch (refusal) {
      return refusal instanceof Error ? refusal : new Error(String(refusal));
    }
  });
}

export interface LedgerApplierOptions {
  /** Events in one statement at most. */
  readonly batchSizeMax: number;
  /** Statements on their way at once (each takes one pooled connection). */
  readonly inFlightMax: number;
}

/** Gathers the events that concurrent jobs apply into shared statements. */
export function createLedgerApplier(
  db: Database,
  pool: pg.Pool,
  options: LedgerApplierOptions,
): (event: LedgerEvent) => Promise<ApplyOutcome> {
  const coalescer = new Coalescer<LedgerEvent, ApplyOutcome>(
    async (events) => {
      try {
        return await applyLedgerEvents(pool, events);
      } catch (error) {
        if (isInfrastructureError(error) || events.length === 1) throw error;
        // Not Postgres being away: find the event at fault by applying each on its own.
        return Promise.all(
          events.map((event) => applyLedgerEvent(db, event).catch((failure: unknown) => asError(failure))),
        );
      }
    },
    {
      batchSizeMax: options.batchSizeMax,
      inFlightMax: options.inFlightMax,
      holdBack: (event, batch) =>
        batch.some((other) => other.eventUid === event.eventUid || other.eventId === event.eventId),
    },
  );
  return (event) => coalescer.submit(event);
}

function asError(error: unknown): Error {
  return error instanceof Error ? error : new Error(String(error));
}

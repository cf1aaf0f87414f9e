/**
 * Applies one event to the ledger, exactly once, in one SQL statement (so one transaction):
 *   1. find the event in the outbox by its UUID (a job from another history of the database, say
 *      one restored from a backup, finds none and is refused), and check it against the charge
 *      (and refund) rows as recorded;
 *   2. if it agrees, insert the inbox row UNIQUE (consumer, event_id); if that row exists, the
 *      event was applied and nothing else happens (outcome 'duplicate');
 *   3. if the inbox row is new, for charge.succeeded and refund.succeeded, the ledger transaction
 *      and its two balanced entries.
 * An event that does not agree writes nothing and is answered with a final error (poison); a
 * refund whose charge is not posted yet writes nothing and gets LEDGER_CHARGE_NOT_POSTED: the
 * worker holds it (no attempt spent) until the charge is posted or shown missing.
 * charge.failed writes only the inbox row (outcome 'acknowledged').
 *
 * Entries: a charge debits `acquirer_receivable` and credits the merchant's balance; a refund does
 * the reverse. Amounts are signed minor units; each transaction sums to zero per currency, checked
 * here and again by a deferred trigger at commit.
 */
import { GatewayError, invariant } from '../errors';
import type { Database } from '../platform/database';
import type { LedgerEvent } from './ledger-event';

export type ApplyOutcome = 'applied' | 'duplicate' | 'acknowledged';

export const ledgerConsumer = 'ledger';
export const acquirerReceivableAccount = 'acquirer_receivable';
export const merchantBalanceAccount = (merchantId: string) => `merchant_balance:${merchantId}`;

interface Posting {
  readonly accountId: string;
  readonly amount: number;
}

/** The two entries of an event, balanced by construction and checked anyway. */
export function postingsFor(event: LedgerEvent): Posting[] {
  const merchant = merchantBalanceAccount(event.merchantId);
  const postings =
    event.type === 'refund.succeeded'
      ? [
          { accountId: merchant, amount: event.amount },
          { accountId: acquirerReceivableAccount, amount: -event.amount },
        ]
      : [
          { accountId: acquirerReceivableAccount, amount: event.amount },
          { accountId: merchant, amount: -event.amount },
        ];
  invariant(postings.reduce((sum, posting) => sum + posting.amount, 0) === 0, 'a ledger transaction balances');
  return postings;
}

/** What the apply statement says of one event (src/ledger/apply-batch.ts returns the same, per event). */
export interface ApplyRow {
  agreed: number;
  inserted: number;
  seen: boolean;
  in_outbox: boolean;
  posted: number;
  charge_status: string | null;
  charge_amount: number | null;
  charge_currency: string | null;
  charge_merchant_id: string | null;
  refund_amount: number | null;
  refund_charge_id: string | null;
  charge_posted: number;
}

export async function applyLedgerEvent(db: Database, event: LedgerEvent): Promise<ApplyOutcome> {
  const [debit, credit] = postingsFor(event);
  invariant(debit !== undefined && credit !== undefined, 'two postings');
  const postsToLedger = event.type !== 'charge.failed';
  // One statement, so one transaction: the inbox row is written only when the event agrees with
  // the charge (and refund) rows, and the ledger rows only when the inbox row was new.
  const rows = await db.$queryRaw<ApplyRow[]>`
    WITH event AS (
      SELECT id FROM outbox_events WHERE event_uid = ${event.eventUid}::uuid AND id = ${event.eventId}::bigint
    ), charge AS (
      SELECT id, merchant_id, amount, currency, status FROM charges WHERE id = ${event.chargeId}
    ), refund AS (
      SELECT id, charge_id, amount FROM refunds WHERE id = ${event.refundId} AND status = 'SUCCEEDED'
    ), charge_posting AS (
      SELECT count(*)::int AS n FROM ledger_transactions
       WHERE charge_id = ${event.chargeId} AND event_type = 'charge.succeeded'
    ), agreed AS (
      SELECT 1 AS ok FROM charge, event
       WHERE charge.merchant_id = ${event.merchantId} AND charge.currency = ${event.currency}
         AND CASE WHEN ${event.type} = 'charge.failed' THEN charge.status = 'FAILED'
                  WHEN ${event.type} = 'charge.succeeded' THEN charge.status = 'SUCCEEDED' AND charge.amount = ${event.amount}
                  ELSE charge.status = 'SUCCEEDED'
                       AND EXISTS (SELECT 1 FROM refund WHERE refund.charge_id = charge.id AND refund.amount = ${event.amount})
                       AND (SELECT n FROM charge_posting) = 1 END
    ), inbox AS (
      INSERT INTO inbox_events (consumer, event_id, event_uid)
      SELECT ${ledgerConsumer}, ${event.eventId}::bigint, ${event.eventUid}::uuid FROM agreed
      ON CONFLICT DO NOTHING
      RETURNING event_id
    ), account AS (
      INSERT INTO ledger_accounts (id, kind, merchant_id)
      SELECT ${merchantBalanceAccount(event.merchantId)}, 'merchant_balance', ${event.merchantId} FROM inbox WHERE ${postsToLedger}
      ON CONFLICT (id) DO NOTHING
    ), posted AS (
      INSERT INTO ledger_transactions (event_id, event_type, charge_id, refund_id)
      SELECT ${event.eventId}::bigint, ${event.type}, ${event.chargeId}, ${event.refundId} FROM inbox WHERE ${postsToLedger}
      RETURNING id
    ), entries AS (
      INSERT INTO ledger_entries (transaction_id, account_id, currency, amount)
      SELECT posted.id, posting.account_id, ${event.currency}, posting.amount
        FROM posted, (VALUES (${debit.accountId}, ${debit.amount}::bigint), (${credit.accountId}, ${credit.amount}::bigint))
             AS posting (account_id, amount)
      RETURNING id
    )
    SELECT (SELECT count(*) FROM agreed)::int AS agreed,
           (SELECT count(*) FROM inbox)::int AS inserted,
           (SELECT count(*) FROM posted)::int AS posted,
           EXISTS (SELECT 1 FROM inbox_events WHERE consumer = ${ledgerConsumer} AND event_uid = ${event.eventUid}::uuid) AS seen,
           EXISTS (SELECT 1 FROM event) AS in_outbox,
           (SELECT status FROM charge) AS charge_status,
           (SELECT amount FROM charge) AS charge_amount,
           (SELECT currency FROM charge) AS charge_currency,
           (SELECT merchant_id FROM charge) AS charge_merchant_id,
           (SELECT amount FROM refund) AS refund_amount,
           (SELECT charge_id FROM refund) AS refund_charge_id,
           (SELECT n FROM charge_posting) AS charge_posted,
           (SELECT count(*) FROM entries)::int AS entries`;
  const row = rows[0];
  invariant(row !== undefined, 'the apply statement returns one row');
  return outcomeFromRow(event, row);
}

/** The outcome the apply statement's row gives for the event, or the refusal it stands for (thrown). */
export function outcomeFromRow(event: LedgerEvent, row: ApplyRow): ApplyOutcome {
  const postsToLedger = event.type !== 'charge.failed';
  if (row.inserted === 1) {
    invariant(row.posted === (postsToLedger ? 1 : 0), 'a new inbox row posts exactly when the event has an effect');
    return postsToLedger ? 'applied' : 'acknowledged';
  }
  // Agreed but not inserted: the inbox row was there (the conflict). Not agreed but seen: an
  // applied event whose rows have moved on since (a later refund, say). Either way, a duplicate.
  if (row.agreed === 1 || row.seen) return 'duplicate';
  throw (
    explainRefusal(event, row) ?? new Error(`invariant violated: event ${event.eventId} neither applied nor refused`)
  );
}

function explainRefusal(event: LedgerEvent, row: ApplyRow): GatewayError | undefined {
  const final = (message: string) => new GatewayError('LEDGER_AMOUNT_MISMATCH', `event ${event.eventId}: ${message}`);
  if (!row.in_outbox) {
    return new GatewayError(
      'LEDGER_EVENT_INVALID',
      `event ${event.eventId} (${event.eventUid}) is not in the outbox: a job from another history of the database`,
    );
  }
  if (row.charge_status === null) return final(`charge ${event.chargeId} does not exist`);
  if (row.charge_merchant_id !== event.merchantId) return final('merchant differs from the charge');
  if (row.charge_currency?.trim() !== event.currency) return final('currency differs from the charge');
  if (event.type === 'charge.failed') {
    if (row.charge_status === 'FAILED') return undefined;
    return final('charge.failed for a charge that succeeded');
  }
  if (row.charge_status !== 'SUCCEEDED') return final(`${event.type} for a charge that is ${row.charge_status}`);
  if (event.type === 'charge.succeeded')
    return final(`amount ${event.amount} differs from the charge's ${String(row.charge_amount)}`);
  if (row.refund_amount === null) return final(`refund ${String(event.refundId)} does not exist or did not succeed`);
  if (row.refund_charge_id !== event.chargeId || row.refund_amount !== event.amount) {
    return final(`refund ${String(event.refundId)} differs from the event`);
  }
  return new GatewayError(
    'LEDGER_CHARGE_NOT_POSTED',
    `event ${event.eventId}: charge ${event.chargeId} is not posted yet; the refund waits`,
  );
}

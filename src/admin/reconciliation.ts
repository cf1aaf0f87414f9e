/**
 * The reconciliation report: succeeded charges vs outbox events vs inbox rows vs ledger
 * transactions, what is missing or duplicated, and whether every ledger transaction balances per
 * currency. Read from Postgres only: counters die with their processes, the database does not.
 */
import type { Database } from '../platform/database';

export interface ReconciliationReport {
  readonly chargesSucceeded: number;
  readonly chargesFailed: number;
  readonly refunds: number;
  readonly outboxEvents: number;
  readonly outboxUnpublished: number;
  readonly inboxEvents: number;
  readonly ledgerTransactions: number;
  /** Charges or refunds whose effect event was applied (inbox row) but have no ledger transaction. */
  readonly missingLedgerTransactions: string[];
  /** Charges or refunds with more than one ledger transaction. */
  readonly duplicateLedgerTransactions: string[];
  readonly unbalancedLedgerTransactions: string[];
  readonly balanced: boolean;
}

// Lists are bounded: a report is for people, and the counts say how bad it is.
const listedIdsMax = 100;

export async function reconcile(db: Database): Promise<ReconciliationReport> {
  const [counts] = await db.$queryRaw<
    Omit<
      ReconciliationReport,
      'missingLedgerTransactions' | 'duplicateLedgerTransactions' | 'unbalancedLedgerTransactions' | 'balanced'
    >[]
  >`
    SELECT (SELECT count(*) FROM charges WHERE status = 'SUCCEEDED')::int AS "chargesSucceeded",
           (SELECT count(*) FROM charges WHERE status = 'FAILED')::int AS "chargesFailed",
           (SELECT count(*) FROM refunds WHERE status = 'SUCCEEDED')::int AS refunds,
           (SELECT count(*) FROM outbox_events)::int AS "outboxEvents",
           (SELECT count(*) FROM outbox_events WHERE published_at IS NULL)::int AS "outboxUnpublished",
           (SELECT count(*) FROM inbox_events WHERE consumer = 'ledger')::int AS "inboxEvents",
           (SELECT count(*) FROM ledger_transactions)::int AS "ledgerTransactions"`;
  const missing = await db.$queryRaw<{ id: string }[]>`
    SELECT o.aggregate_id AS id FROM outbox_events o
      JOIN inbox_events i ON i.consumer = 'ledger' AND i.event_id = o.id
     WHERE o.event_type IN ('charge.succeeded', 'refund.succeeded')
       AND NOT EXISTS (SELECT 1 FROM ledger_transactions t WHERE t.event_id = o.id)
     ORDER BY o.id LIMIT ${listedIdsMax}`;
  const duplicated = await db.$queryRaw<{ id: string }[]>`
    SELECT coalesce(refund_id, charge_id) AS id FROM ledger_transactions
     GROUP BY coalesce(refund_id, charge_id), event_type HAVING count(*) > 1
     LIMIT ${listedIdsMax}`;
  const unbalanced = await db.$queryRaw<{ id: string }[]>`
    SELECT DISTINCT transaction_id::text AS id FROM (
      SELECT transaction_id FROM ledger_entries GROUP BY transaction_id, currency HAVING sum(amount) <> 0) u
     LIMIT ${listedIdsMax}`;
  if (counts === undefined) throw new Error('invariant violated: the counts query returns a row');
  return {
    ...counts,
    missingLedgerTransactions: missing.map((row) => row.id),
    duplicateLedgerTransactions: duplicated.map((row) => row.id),
    unbalancedLedgerTransactions: unbalanced.map((row) => row.id),
    balanced: unbalanced.length === 0,
  };
}

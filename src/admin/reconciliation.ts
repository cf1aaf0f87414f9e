/**
 * The reconciliation report: succeeded charges vs outbox events vs inbox rows vs ledger
 * transactions, what is missing or duplicated, and whether every ledger transaction balances per
 * currency. Read from Postgres only: counters die with their processes, the database does not.
 *
 * The facts (docs/contract.md §7) are each one query on rows the money path committed, older than
 * the grace (RECONCILIATION_GRACE_MS), so work still in flight is not reported. None counts from
 * an inbox row or a queue alone: a self-check that reads what a fault erased cannot see the fault.
 *   unappliedEvents              outbox events (published or not) with no inbox row
 *   authorizationsWithoutCharge  approved acquirer charge authorizations no charge row records
 *   acquirerRefundsWithoutRefund approved acquirer refunds no refund row records
 *   stuckReservations            charges holding a refund reservation that no live refund key holds
 *   healthy                      all of these empty, nothing missing or duplicated, balanced
 */
import type { Database } from '../platform/database';
import type { MetricsRegistry } from '../platform/metrics';

export interface ReconciliationReport {
  readonly chargesSucceeded: number;
  readonly chargesFailed: number;
  readonly refunds: number;
  readonly outboxEvents: number;
  readonly outboxUnpublished: number;
  readonly inboxEvents: number;
  readonly ledgerTransactions: number;
  /** Charges or refunds with a succeeded event (older than the grace) but no ledger transaction. */
  readonly missingLedgerTransactions: string[];
  /** Charges or refunds with more than one ledger transaction. */
  readonly duplicateLedgerTransactions: string[];
  readonly unbalancedLedgerTransactions: string[];
  readonly balanced: boolean;
}

export interface ReconciliationFacts {
  /** Outbox event UUIDs with no inbox row, older than the grace. */
  readonly unappliedEvents: string[];
  /** Acquirer authorization ids (approved charges) that no charge row records. */
  readonly authorizationsWithoutCharge: string[];
  /** Acquirer authorization ids (approved refunds) that no refund row records. */
  readonly acquirerRefundsWithoutRefund: string[];
  /** Charge ids holding a refund reservation with no live refund key behind it. */
  readonly stuckReservations: string[];
}

export type ReconciliationFactKind = keyof ReconciliationFacts;
export const reconciliationFactKinds: readonly ReconciliationFactKind[] = [
  'unappliedEvents',
  'authorizationsWithoutCharge',
  'acquirerRefundsWithoutRefund',
  'stuckReservations',
];

export type FullReconciliation = ReconciliationReport &
  ReconciliationFacts & {
    /** All facts empty, nothing missing or duplicated, and balanced. */
    readonly healthy: boolean;
  };

// Lists are bounded: a report is for people, and the counts say how bad it is.
const listedIdsMax = 100;

export async function reconcile(db: Database, graceMs = 0): Promise<ReconciliationReport> {
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
  // From the events the money path committed, not from inbox rows alone: an event that never
  // arrived has no inbox row either, and must show here too once the grace has passed. One that
  // was applied (an inbox row) and has no ledger transaction shows at once.
  const missing = await db.$queryRaw<{ id: string }[]>`
    SELECT o.aggregate_id AS id FROM outbox_events o
     WHERE o.event_type IN ('charge.succeeded', 'refund.succeeded')
       AND (o.created_at < now() - ${graceMs} * interval '1 millisecond'
            OR EXISTS (SELECT 1 FROM inbox_events i WHERE i.consumer = 'ledger' AND i.event_uid = o.event_uid))
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

/** The report and the facts, and whether all is well. */
export async function reconcileFully(db: Database, graceMs: number): Promise<FullReconciliation> {
  const report = await reconcile(db, graceMs);
  const facts = await reconciliationFacts(db, graceMs);
  const healthy =
    report.balanced &&
    report.missingLedgerTransactions.length === 0 &&
    report.duplicateLedgerTransactions.length === 0 &&
    reconciliationFactKinds.every((kind) => facts[kind].length === 0);
  return { ...report, ...facts, healthy };
}

/** The four facts, each one query on committed rows older than `graceMs`. */
export async function reconciliationFacts(db: Database, graceMs: number): Promise<ReconciliationFacts> {
  const ids = (rows: { id: string }[]) => rows.map((row) => row.id);
  const unapplied = await db.$queryRaw<{ id: string }[]>`
    SELECT o.event_uid::text AS id FROM outbox_events o
     WHERE o.created_at < now() - ${graceMs} * interval '1 millisecond'
       AND NOT EXISTS (SELECT 1 FROM inbox_events i WHERE i.consumer = 'ledger' AND i.event_uid = o.event_uid)
     ORDER BY o.id LIMIT ${listedIdsMax}`;
  const authorizations = await db.$queryRaw<{ id: string }[]>`
    SELECT a.authorization_id AS id FROM acquirer_authorizations a
     WHERE a.kind = 'charge' AND a.approved AND a.created_at < now() - ${graceMs} * interval '1 millisecond'
       AND NOT EXISTS (SELECT 1 FROM charges c WHERE c.authorization_id = a.authorization_id)
     ORDER BY a.created_at LIMIT ${listedIdsMax}`;
  const acquirerRefunds = await db.$queryRaw<{ id: string }[]>`
    SELECT a.authorization_id AS id FROM acquirer_authorizations a
     WHERE a.kind = 'refund' AND a.approved AND a.created_at < now() - ${graceMs} * interval '1 millisecond'
       AND NOT EXISTS (SELECT 1 FROM refunds r WHERE r.authorization_id = a.authorization_id)
     ORDER BY a.created_at LIMIT ${listedIdsMax}`;
  // A reservation is live while a refund key that holds it (RESERVED or AUTHORIZED) has moved
  // within the grace; one whose key went quiet longer ago holds the charge's money for nobody.
  const reservations = await db.$queryRaw<{ id: string }[]>`
    SELECT c.id FROM charges c
     WHERE c.amount_reserved > 0
       AND NOT EXISTS (
         SELECT 1 FROM idempotency_keys k
          WHERE k.merchant_id = c.merchant_id AND k.operation = 'refundCharge' AND k.state = 'IN_PROGRESS'
            AND k.recovery_point IN ('RESERVED', 'AUTHORIZED')
            AND k.request_payload::json ->> 'chargeId' = c.id
            AND k.updated_at >= now() - ${graceMs} * interval '1 millisecond')
     ORDER BY c.id LIMIT ${listedIdsMax}`;
  return {
    unappliedEvents: ids(unapplied),
    authorizationsWithoutCharge: ids(authorizations),
    acquirerRefundsWithoutRefund: ids(acquirerRefunds),
    stuckReservations: ids(reservations),
  };
}

/** Every kind the `reconciliation_issues{kind}` gauge reports: the facts and the report's lists. */
export const reconciliationIssueKinds = [
  ...reconciliationFactKinds,
  'missingLedgerTransactions',
  'duplicateLedgerTransactions',
  'unbalancedLedgerTransactions',
] as const;

// The queries walk whole tables: at most one run per this long, however often Prometheus scrapes.
const gaugeRefreshIntervalMs = 30_000;

/**
 * `reconciliation_issues{kind}`: how many of each kind the last reconciliation listed (capped at
 * the report's list size). Read at scrape time, at most every 30 s; when Postgres cannot answer
 * the gauge keeps its last values (and `absent()`/`up` alerts cover a dead process).
 */
export function addReconciliationGauge(metrics: MetricsRegistry, db: Database, graceMs: number): void {
  let last: { atMs: number; result: FullReconciliation } | undefined;
  metrics.addGauge(
    'reconciliation_issues',
    'Reconciliation facts and mismatches found in Postgres, by kind (0 when healthy).',
    ['kind'],
    async (gauge) => {
      if (last === undefined || Date.now() - last.atMs >= gaugeRefreshIntervalMs) {
        last = { atMs: Date.now(), result: await reconcileFully(db, graceMs) };
      }
      for (const kind of reconciliationIssueKinds) gauge.set({ kind }, last.result[kind].length);
    },
  );
}

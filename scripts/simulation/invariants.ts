/**
 * The checks after a schedule, from the client transcripts and from committed rows only
 * (Postgres: the gateway's tables and the acquirer's), never from metrics or queue state, which a
 * fault may have erased. Each violation names the invariant, the operations involved and the
 * offending rows.
 */
import { isDeepStrictEqual } from 'node:util';
import type pg from 'pg';
import { finalAttempt, type AttemptLog, type OperationRecord } from './workload';

export interface Violation {
  readonly invariant: string;
  readonly detail: string;
  /** Indexes of the operations involved, for their transcripts. */
  readonly operations: readonly number[];
  readonly rows: readonly unknown[];
}

interface KeyRow {
  id: string;
  key: string;
  state: string;
  recovery_point: string;
}
interface ChargeRow {
  id: string;
  idempotency_key_id: string | null;
  amount: number;
  currency: string;
  status: string;
  failure_code: string | null;
  description: string | null;
  metadata: string | null;
  amount_refunded: number;
  amount_reserved: number;
}
interface RefundRow {
  id: string;
  charge_id: string;
  idempotency_key_id: string | null;
  amount: number;
  status: string;
  reason: string | null;
}

class Violations {
  readonly list: Violation[] = [];
  add(invariant: string, detail: string, operations: readonly number[] = [], rows: readonly unknown[] = []): void {
    this.list.push({ invariant, detail, operations, rows });
  }
}

export interface TranscriptLimits {
  /** The gateway's lease in whole seconds: the longest Retry-After a 503 may carry (key not released). */
  readonly leaseSeconds: number;
}

/** A 409 waits for a twin that is about to finish: 1–2 s, never the lease (docs/contract.md §2). */
const inUseRetryAfterSecondsMax = 2;

function checkRetryAfter(
  record: OperationRecord,
  attempt: AttemptLog,
  limits: TranscriptLimits,
  violations: Violations,
): void {
  const { index } = record.operation;
  if (attempt.status === 500) {
    violations.add('no request is answered 500', `${attempt.via} answered 500 ${attempt.code}`, [index]);
  }
  if (attempt.status === 429) {
    // The merchant's rate is unlimited here and its key is valid: any 429 locks out a merchant
    // that did nothing wrong (say, its retries through an outage counted as failed logins).
    violations.add(
      'a merchant within its limits, with a valid key, is never refused 429',
      `${attempt.via} answered 429 ${attempt.code} with Retry-After: ${attempt.retryAfter}`,
      [index],
    );
  }
  if (attempt.status !== 409 && attempt.status !== 503 && attempt.status !== 429) return;
  const seconds = attempt.retryAfter === null ? Number.NaN : Number(attempt.retryAfter);
  const most = attempt.status === 409 ? inUseRetryAfterSecondsMax : limits.leaseSeconds;
  if (attempt.retryAfter === null) {
    violations.add(
      'every 409 and 503 carries Retry-After',
      `${attempt.via} answered ${attempt.status} ${attempt.code}`,
      [index],
    );
  } else if (!Number.isInteger(seconds) || seconds < 1 || (attempt.status !== 429 && seconds > most)) {
    violations.add(
      'Retry-After is a small number of seconds (409: 1–2; 503: at most the lease)',
      `${attempt.via} answered ${attempt.status} ${attempt.code} with Retry-After: ${attempt.retryAfter}`,
      [index],
    );
  }
}

/**
 * The body that took the key: the input of the sends answered 200. Every 200 of one key must
 * come from one body and carry byte-identical data (a replay is the first answer, same selection).
 */
function acceptedBody(record: OperationRecord, violations: Violations): string | null {
  const accepted = record.sends.filter((send) => finalAttempt(send)?.status === 200);
  const bodies = new Set(accepted.map((send) => send.inputJson));
  const data = new Set(accepted.map((send) => JSON.stringify(finalAttempt(send)!.data)));
  const { index } = record.operation;
  if (bodies.size > 1) {
    violations.add('one key accepts one body', `${bodies.size} different bodies answered 200`, [index]);
  }
  if (data.size > 1) {
    const ids = new Set(accepted.map((send) => finalAttempt(send)!.id));
    violations.add(
      'every send of one key gets the same answer, byte for byte',
      ids.size > 1 ? `ids ${[...ids].join(' ≠ ')}` : `${data.size} different data for ${[...ids].join('')}`,
      [index],
      [...data],
    );
  }
  return accepted[0]?.inputJson ?? null;
}

/** A send with another body than the one that took the key is refused 422, never answered or stored. */
function checkReuse(record: OperationRecord, accepted: string | null, violations: Violations): void {
  const bodies = new Set(record.sends.map((send) => send.inputJson));
  if (bodies.size < 2) return;
  const refused = record.sends.filter((send) => {
    const answer = finalAttempt(send);
    return answer?.status === 422 && answer.code === 'IDEMPOTENCY_KEY_REUSED';
  });
  const { index } = record.operation;
  for (const send of record.sends) {
    const answer = finalAttempt(send);
    if (accepted === null || send.inputJson === accepted || answer === null) continue;
    if (!(answer.status === 422 && answer.code === 'IDEMPOTENCY_KEY_REUSED')) {
      violations.add('a key reused with another body is refused with 422', `answered ${answer.status} ${answer.code}`, [
        index,
      ]);
    }
  }
  if (new Set(refused.map((send) => send.inputJson)).size > 1) {
    violations.add('a key refuses only the bodies it was not taken with', 'both bodies answered 422', [index]);
  }
}

function checkAnswers(record: OperationRecord, violations: Violations): void {
  const { operation } = record;
  for (const answer of record.sends.map(finalAttempt)) {
    if (answer === null) continue;
    if (operation.kind === 'invalid' && !(answer.status === 400 && answer.code === 'BAD_USER_INPUT')) {
      violations.add(
        'invalid input is refused with 400 BAD_USER_INPUT',
        `${operation.what} answered ${answer.status} ${answer.code}`,
        [operation.index],
      );
    }
    if (operation.kind === 'charge' && answer.status === 200) {
      const expected = operation.source === 'tok_chargeDeclined' ? 'FAILED' : 'SUCCEEDED';
      if (operation.source === 'tok_timeout' || answer.data?.status !== expected) {
        violations.add(
          'a charge answers what its card does',
          `${operation.source} answered ${String(answer.data?.status)}`,
          [operation.index],
        );
      }
    }
  }
}

/** What every answer in the transcripts must satisfy, whatever the database says. */
export function checkTranscripts(records: readonly OperationRecord[], limits: TranscriptLimits): Violation[] {
  const violations = new Violations();
  for (const record of records) {
    for (const attempt of record.sends.flatMap((send) => send.attempts))
      checkRetryAfter(record, attempt, limits, violations);
    checkReuse(record, acceptedBody(record, violations), violations);
    checkAnswers(record, violations);
  }
  return violations.list;
}

const sameText = (stored: string | null, sent: unknown) => (stored ?? null) === ((sent as string | undefined) ?? null);

/** The input the stored row must hold: the accepted body, or (no answer) one of the bodies sent. */
function bodiesToMatch(record: OperationRecord): string[] {
  const accepted = record.sends.find((send) => finalAttempt(send)?.status === 200)?.inputJson;
  if (accepted !== undefined) return [accepted];
  return [...new Set([record.operation.inputJson, ...record.sends.map((send) => send.inputJson)])];
}

function chargeMatches(charge: ChargeRow, inputJson: string): boolean {
  const input = JSON.parse(inputJson) as Record<string, unknown>;
  // Key order may differ (the gateway stores canonical JSON); the values may not.
  const metadataMatches =
    charge.metadata === null
      ? input.metadata === undefined
      : isDeepStrictEqual(JSON.parse(charge.metadata), input.metadata);
  return (
    charge.amount === input.amount &&
    charge.currency.trim() === input.currency &&
    sameText(charge.description, input.description) &&
    metadataMatches
  );
}

function checkChargeOperation(
  record: OperationRecord,
  key: KeyRow | undefined,
  charges: ChargeRow[],
  violations: Violations,
) {
  const { operation } = record;
  if (operation.kind !== 'charge') return;
  const linked = key === undefined ? [] : charges.filter((charge) => charge.idempotency_key_id === key.id);
  if (operation.source === 'tok_timeout' && linked.length > 0) {
    violations.add(
      'a charge the acquirer never authorized is never recorded',
      'tok_timeout has a charge',
      [operation.index],
      linked,
    );
  }
  const charge = linked[0];
  if (charge !== undefined && !bodiesToMatch(record).some((inputJson) => chargeMatches(charge, inputJson))) {
    violations.add(
      'a charge row holds exactly what was sent',
      'stored charge differs from the request',
      [operation.index],
      [charge],
    );
  }
  const answered = record.sends.map(finalAttempt).find((answer) => answer?.status === 200);
  if (answered === undefined || answered === null) return;
  if (
    linked.length !== 1 ||
    charge === undefined ||
    charge.id !== answered.id ||
    charge.status !== answered.data?.status
  ) {
    violations.add(
      'every answered charge has exactly one matching charge row',
      `answered ${answered.id} ${String(answered.data?.status)}; rows for its key: ${linked.length}`,
      [operation.index],
      linked,
    );
  }
}

function checkRefundOperation(
  record: OperationRecord,
  key: KeyRow | undefined,
  refunds: RefundRow[],
  violations: Violations,
) {
  const { operation } = record;
  if (operation.kind !== 'refund') return;
  const linked = key === undefined ? [] : refunds.filter((refund) => refund.idempotency_key_id === key.id);
  const answers = record.sends.map(finalAttempt).filter((answer) => answer !== null);
  const answered = answers.find((answer) => answer.status === 200);
  const refused = answers.find((answer) => answer.status === 400);
  const refund = linked[0];
  const input = JSON.parse(operation.inputJson) as { amount?: number; reason?: string };
  if (
    refund !== undefined &&
    ((input.amount !== undefined && refund.amount !== input.amount) ||
      refund.charge_id !== record.chargeId ||
      !sameText(refund.reason, input.reason))
  ) {
    violations.add(
      'a refund row holds exactly what was sent',
      'stored refund differs from the request',
      [operation.index],
      [refund],
    );
  }
  if (
    answered !== undefined &&
    (linked.length !== 1 ||
      refund === undefined ||
      refund.id !== answered.id ||
      refund.status !== answered.data?.status)
  ) {
    violations.add(
      'every answered refund has exactly one matching refund row',
      `answered ${answered.id} ${String(answered.data?.status)}; rows for its key: ${linked.length}`,
      [operation.index],
      linked,
    );
  }
  if (refused !== undefined && linked.length > 0) {
    violations.add('a refused refund stores no refund', `answered 400 ${refused.code}`, [operation.index], linked);
  }
}

async function rows<T>(database: pg.Pool, sql: string, values: unknown[] = []): Promise<T[]> {
  return (await database.query(sql, values)).rows as T[];
}

/** Every operation with a final answer has exactly the rows that answer says; refused input stored nothing. */
export async function checkOperations(
  database: pg.Pool,
  merchantId: string,
  records: readonly OperationRecord[],
): Promise<Violation[]> {
  const violations = new Violations();
  const keys = new Map(
    (
      await rows<KeyRow>(
        database,
        'SELECT id::text, key, state, recovery_point FROM idempotency_keys WHERE merchant_id = $1',
        [merchantId],
      )
    ).map((row) => [row.key, row]),
  );
  const charges = await rows<ChargeRow>(
    database,
    'SELECT id, idempotency_key_id::text, amount, currency, status, failure_code, description, metadata, amount_refunded, amount_reserved FROM charges WHERE merchant_id = $1',
    [merchantId],
  );
  const refunds = await rows<RefundRow>(
    database,
    'SELECT id, charge_id, idempotency_key_id::text, amount, status, reason FROM refunds WHERE merchant_id = $1',
    [merchantId],
  );
  for (const record of records) {
    const key = keys.get(record.operation.key);
    if (record.operation.kind === 'invalid' && key !== undefined) {
      violations.add(
        'refused input stores nothing',
        `${record.operation.what}: an idempotency key row exists`,
        [record.operation.index],
        [key],
      );
    }
    checkChargeOperation(record, key, charges, violations);
    checkRefundOperation(record, key, refunds, violations);
  }
  return violations.list;
}

/** Facts that hold over all the rows, whatever the client saw. */
const globalChecks: readonly { invariant: string; sql: string }[] = [
  {
    invariant: 'every approved authorization has exactly one charge',
    sql: `SELECT a.idempotency_key, a.authorization_id, a.amount, count(c.id)::int AS charges
            FROM acquirer_authorizations a LEFT JOIN charges c ON c.authorization_id = a.authorization_id
           WHERE a.kind = 'charge' AND a.approved GROUP BY 1, 2, 3 HAVING count(c.id) <> 1`,
  },
  {
    invariant: 'every decline at the acquirer has exactly one failed charge, with its decline code',
    sql: `SELECT a.idempotency_key, a.decline_code, count(c.id)::int AS charges,
                 string_agg(c.status || ' ' || coalesce(c.failure_code, '-'), ', ') AS recorded
            FROM acquirer_authorizations a
            LEFT JOIN idempotency_keys k ON a.idempotency_key = 'idem_' || k.id
            LEFT JOIN charges c ON c.idempotency_key_id = k.id
           WHERE a.kind = 'charge' AND NOT a.approved GROUP BY 1, 2
          HAVING count(c.id) <> 1 OR bool_or(c.status <> 'FAILED' OR c.failure_code IS DISTINCT FROM a.decline_code)`,
  },
  {
    invariant: 'nothing is stored but what a keyed request asked for (every charge and refund has its key)',
    sql: `SELECT 'charge' AS kind, id, idempotency_key_id FROM charges c WHERE NOT EXISTS
            (SELECT 1 FROM idempotency_keys k WHERE k.id = c.idempotency_key_id AND k.operation = 'createCharge')
          UNION ALL
          SELECT 'refund', id, idempotency_key_id FROM refunds r WHERE NOT EXISTS
            (SELECT 1 FROM idempotency_keys k WHERE k.id = r.idempotency_key_id AND k.operation = 'refundCharge')`,
  },
  {
    invariant: 'every refund at the acquirer has exactly one refund row',
    sql: `SELECT a.idempotency_key, a.authorization_id, a.amount, count(r.id)::int AS refunds
            FROM acquirer_authorizations a LEFT JOIN refunds r ON r.authorization_id = a.authorization_id
           WHERE a.kind = 'refund' GROUP BY 1, 2, 3 HAVING count(r.id) <> 1`,
  },
  {
    invariant: 'every succeeded charge has exactly one ledger transaction, a failed one none',
    sql: `SELECT c.id, c.status, c.amount, count(t.id)::int AS ledger_transactions
            FROM charges c LEFT JOIN ledger_transactions t ON t.charge_id = c.id AND t.event_type = 'charge.succeeded'
           GROUP BY c.id HAVING count(t.id) <> (CASE WHEN c.status = 'SUCCEEDED' THEN 1 ELSE 0 END)`,
  },
  {
    invariant: 'every succeeded refund has exactly one ledger transaction',
    sql: `SELECT r.id, r.charge_id, r.amount, count(t.id)::int AS ledger_transactions
            FROM refunds r LEFT JOIN ledger_transactions t ON t.refund_id = r.id
           WHERE r.status = 'SUCCEEDED' GROUP BY r.id HAVING count(t.id) <> 1`,
  },
  {
    invariant: 'every ledger transaction balances, per currency, for the amount of its charge or refund',
    sql: `SELECT t.id, t.event_type, t.charge_id, t.refund_id, count(e.id)::int AS entries,
                 sum(e.amount)::text AS total, max(e.amount)::text AS largest, coalesce(r.amount, c.amount) AS expected
            FROM ledger_transactions t JOIN charges c ON c.id = t.charge_id LEFT JOIN refunds r ON r.id = t.refund_id
            LEFT JOIN ledger_entries e ON e.transaction_id = t.id
           GROUP BY t.id, r.amount, c.amount, c.currency
          HAVING count(e.id) < 2 OR sum(e.amount) <> 0 OR max(e.amount) <> coalesce(r.amount, c.amount)
              OR bool_or(e.currency <> c.currency)`,
  },
  {
    invariant: 'no reservation is left held, and refunded amounts add up',
    sql: `SELECT c.id, c.amount, c.amount_reserved, c.amount_refunded, coalesce(sum(r.amount), 0)::int AS refunds
            FROM charges c LEFT JOIN refunds r ON r.charge_id = c.id AND r.status = 'SUCCEEDED'
           GROUP BY c.id HAVING c.amount_reserved <> 0 OR c.amount_refunded <> coalesce(sum(r.amount), 0)`,
  },
  {
    invariant: 'no key is left holding money (IN_PROGRESS at RESERVED or AUTHORIZED)',
    sql: `SELECT id, key, operation, recovery_point, locked_until FROM idempotency_keys
           WHERE state = 'IN_PROGRESS' AND recovery_point <> 'STARTED'`,
  },
  {
    invariant: 'every charge and succeeded refund has exactly one outbox event, published',
    sql: `SELECT c.id, 'charge' AS kind, count(o.id)::int AS events, count(o.published_at)::int AS published
            FROM charges c LEFT JOIN outbox_events o
              ON o.aggregate_id = c.id AND o.event_type IN ('charge.succeeded', 'charge.failed')
           GROUP BY c.id HAVING count(o.id) <> 1 OR count(o.published_at) <> 1
          UNION ALL
          SELECT r.id, 'refund', count(o.id)::int, count(o.published_at)::int
            FROM refunds r LEFT JOIN outbox_events o ON o.aggregate_id = r.id AND o.event_type = 'refund.succeeded'
           WHERE r.status = 'SUCCEEDED' GROUP BY r.id HAVING count(o.id) <> 1 OR count(o.published_at) <> 1`,
  },
  {
    invariant: 'no event is dead-lettered',
    sql: 'SELECT id, job_id, event_id::text, error_code, error_message, attempts FROM dead_letters',
  },
];

export async function checkRows(database: pg.Pool): Promise<Violation[]> {
  const violations = new Violations();
  for (const check of globalChecks) {
    const found = await rows<Record<string, unknown>>(database, `${check.sql} LIMIT 20`);
    if (found.length > 0)
      violations.add(check.invariant, `${found.length}${found.length === 20 ? '+' : ''} rows`, [], found);
  }
  return violations.list;
}

/** The operators' reconciliation report must say healthy (or, before it had that field, balanced and complete). */
export async function checkReconciliation(adminUrl: string, adminToken: string): Promise<Violation[]> {
  const ask = async (fields: string) => {
    const response = await fetch(`${adminUrl}/admin/graphql`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${adminToken}` },
      body: JSON.stringify({ query: `{ reconciliation { ${fields} } }` }),
    });
    return (await response.json()) as { data?: { reconciliation?: Record<string, unknown> }; errors?: unknown[] };
  };
  const base = 'balanced missingLedgerTransactions duplicateLedgerTransactions';
  const facts = 'unappliedEvents authorizationsWithoutCharge acquirerRefundsWithoutRefund stuckReservations healthy';
  let answer = await ask(`${base} ${facts}`);
  if (answer.data?.reconciliation === undefined) answer = await ask(base);
  const report = answer.data?.reconciliation;
  if (report === undefined) {
    return [
      { invariant: 'the reconciliation answers', detail: JSON.stringify(answer.errors), operations: [], rows: [] },
    ];
  }
  const healthy =
    'healthy' in report
      ? report.healthy === true
      : report.balanced === true &&
        (report.missingLedgerTransactions as unknown[]).length === 0 &&
        (report.duplicateLedgerTransactions as unknown[]).length === 0;
  return healthy
    ? []
    : [{ invariant: 'the reconciliation is healthy', detail: 'admin reconciliation', operations: [], rows: [report] }];
}

/**
 * Ledger assertions shared by the event-path tests, all read from Postgres (counters restart
 * with their process; the database does not).
 */
import { expect } from 'vitest';
import type { TestDatabase } from './database';

export async function waitFor(
  condition: () => Promise<boolean>,
  timeoutMs = 20_000,
  what = 'condition',
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/** Waits until every outbox event has been applied (an inbox row each). */
export async function waitForLedgerToCatchUp(database: TestDatabase, timeoutMs = 30_000): Promise<void> {
  await waitFor(
    async () =>
      (await database.count('SELECT count(*) FROM outbox_events')) ===
      (await database.count("SELECT count(*) FROM inbox_events WHERE consumer = 'ledger'")),
    timeoutMs,
    'the ledger to apply every outbox event',
  );
}

/**
 * The invariants that hold after any run: every ledger transaction sums to zero per currency;
 * each applied event has at most one ledger transaction; succeeded charges minus refunds equal
 * each merchant's balance (per currency); failed charges have no ledger effect.
 */
export async function expectLedgerConsistent(database: TestDatabase): Promise<void> {
  expect(
    await database.count(
      `SELECT count(*) FROM (SELECT transaction_id, currency FROM ledger_entries
         GROUP BY transaction_id, currency HAVING sum(amount) <> 0) unbalanced`,
    ),
  ).toBe(0);
  expect(
    await database.count(
      'SELECT count(*) FROM (SELECT event_id FROM ledger_transactions GROUP BY event_id HAVING count(*) > 1) d',
    ),
  ).toBe(0);
  expect(
    await database.count(
      `SELECT count(*) FROM ledger_transactions t JOIN charges c ON c.id = t.charge_id
        WHERE c.status <> 'SUCCEEDED'`,
    ),
  ).toBe(0);
  const { rows } = await database.pool.query<{
    merchant_id: string;
    currency: string;
    expected: string;
    balance: string;
  }>(
    `WITH expected AS (
       SELECT c.merchant_id, c.currency, sum(c.amount) - coalesce((SELECT sum(r.amount) FROM refunds r
              WHERE r.merchant_id = c.merchant_id AND r.currency = c.currency AND r.status = 'SUCCEEDED'), 0) AS expected
         FROM charges c WHERE c.status = 'SUCCEEDED' GROUP BY c.merchant_id, c.currency
     ), balance AS (
       SELECT a.merchant_id, e.currency, -sum(e.amount) AS balance
         FROM ledger_entries e JOIN ledger_accounts a ON a.id = e.account_id
        WHERE a.kind = 'merchant_balance' GROUP BY a.merchant_id, e.currency
     )
     SELECT x.merchant_id, x.currency, x.expected::text, coalesce(b.balance, 0)::text AS balance
       FROM expected x LEFT JOIN balance b ON b.merchant_id = x.merchant_id AND b.currency = x.currency`,
  );
  for (const row of rows) expect(row.balance, `${row.merchant_id} ${row.currency}`).toBe(row.expected);
}

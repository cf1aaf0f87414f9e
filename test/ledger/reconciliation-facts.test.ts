/**
 * Reconciliation from facts: each fact is planted for real in the committed rows (an event that
 * was never applied, an approved acquirer authorization with no charge, an acquirer refund with no
 * refund row, a reservation nobody holds), and each shows on the admin schema, in the
 * `reconciliation_issues{kind}` gauge and in `npm run -s reconcile -- --json`, which then exits
 * non-zero; `healthy` is false. A clean database is healthy.
 */
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { insertChargeEvents, insertMerchant } from '../helpers/events';
import { createTestEnvironment, startTestGateway, type TestEnvironment, type TestGateway } from '../helpers/gateway';

const adminToken = 'admin-token-for-reconciliation-0123456789';
const graceMs = 60_000;
let environment: TestEnvironment;
let gateway: TestGateway;

const facts = ['unappliedEvents', 'authorizationsWithoutCharge', 'acquirerRefundsWithoutRefund', 'stuckReservations'];

async function admin(): Promise<Record<string, unknown>> {
  const response = await fetch(`${gateway.url}/admin/graphql`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${adminToken}` },
    body: JSON.stringify({ query: `{ reconciliation { ${facts.join(' ')} missingLedgerTransactions healthy } }` }),
  });
  const body = (await response.json()) as { data?: { reconciliation: Record<string, unknown> } };
  return body.data!.reconciliation;
}

function reconcileScript(): { status: number | null; report: Record<string, unknown> } {
  const result = spawnSync('npm', ['run', '-s', 'reconcile', '--', '--json'], {
    env: { ...process.env, ...environment.env({ RECONCILIATION_GRACE_MS: String(graceMs) }) },
    encoding: 'utf8',
    // npm and tsx start slowly on a loaded machine.
    timeout: 150_000,
  });
  if (result.stdout.trim() === '') throw new Error(`npm run reconcile printed nothing: ${result.stderr}`);
  return { status: result.status, report: JSON.parse(result.stdout) as Record<string, unknown> };
}

beforeAll(async () => {
  environment = await createTestEnvironment();
  // The api and relay roles (the gauge lives in the relay role); no worker, so nothing applies.
  gateway = await startTestGateway(environment, {
    ROLE: 'all',
    ADMIN_TOKEN: adminToken,
    RECONCILIATION_GRACE_MS: String(graceMs),
  });
  await gateway.worker?.stop();
});
afterAll(async () => {
  await gateway?.stop();
  await environment?.cleanup();
});

async function plant(): Promise<{ authorization: string; refundAuthorization: string; chargeId: string }> {
  const { pool } = environment.database;
  const merchantId = await insertMerchant(environment.database);
  await insertChargeEvents(environment.database, merchantId, 1);
  const old = "now() - interval '1 hour'";
  // An event committed an hour ago that no worker ever applied.
  await pool.query(`UPDATE outbox_events SET created_at = ${old}, published_at = ${old}`);
  const authorization = `auth_${randomBytes(6).toString('hex')}`;
  const refundAuthorization = `ref_${randomBytes(6).toString('hex')}`;
  // The acquirer approved a charge and a refund that the gateway never recorded.
  await pool.query(
    `INSERT INTO acquirer_authorizations (idempotency_key, authorization_id, kind, amount, currency, source, approved, created_at)
     VALUES ($1, $2, 'charge', 500, 'EUR', 'tok_visa', true, ${old}), ($3, $4, 'refund', 200, 'EUR', 'tok_visa', true, ${old})`,
    [
      `idem_${randomBytes(4).toString('hex')}`,
      authorization,
      `idem_${randomBytes(4).toString('hex')}`,
      refundAuthorization,
    ],
  );
  // A charge holding a refund reservation that no refund key holds.
  const { rows } = await pool.query<{ id: string }>(
    'UPDATE charges SET amount_reserved = 50 WHERE id = (SELECT min(id) FROM charges) RETURNING id',
  );
  return { authorization, refundAuthorization, chargeId: rows[0]!.id };
}

async function gauge(): Promise<Record<string, number>> {
  const text = await (await fetch(`${gateway.url}/metrics`)).text();
  const values: Record<string, number> = {};
  for (const line of text.split('\n')) {
    const match = line.match(/^reconciliation_issues\{.*kind="(\w+)".*\} (\d+)/);
    if (match) values[match[1]!] = Number(match[2]);
  }
  return values;
}

describe('reconciliation from facts', () => {
  it('is healthy on a clean database', async () => {
    expect(await admin()).toMatchObject({ healthy: true, unappliedEvents: [], stuckReservations: [] });
  });

  it('shows each planted fact on the admin schema, the gauge and the script, which exits non-zero', async () => {
    const planted = await plant();
    const [event] = (
      await environment.database.pool.query<{ uid: string }>('SELECT event_uid::text AS uid FROM outbox_events')
    ).rows;
    const expected = {
      unappliedEvents: [event!.uid],
      authorizationsWithoutCharge: [planted.authorization],
      acquirerRefundsWithoutRefund: [planted.refundAuthorization],
      stuckReservations: [planted.chargeId],
      healthy: false,
    };
    expect(await admin()).toMatchObject(expected);
    const script = reconcileScript();
    expect(script.status).toBe(1);
    expect(script.report).toMatchObject(expected);
    const issues = await gauge();
    for (const kind of facts) expect(issues[kind], kind).toBe(1);
  }, 180_000);
});

/**
 * Found by an adversarial review: a full refund (no `amount`) whose reservation the completer gave
 * back, retried after another refund went through.
 *
 * At RESERVED with nothing found under `idem_<row id>`, the completer gives the reservation back
 * and the key returns to STARTED; if the acquirer recorded the refund after that look-up, the
 * retry must ask for the same refund under the same derived key. It used to reserve "what is
 * left" again, which another refund had changed: the retry asked the acquirer for another amount
 * under the same key (the simulated acquirer refused that as an invariant violation: 500, the key
 * and a new reservation held; a real acquirer would answer the first refund, recorded with the
 * gateway's other amount). Now the key keeps the amount it reserved, and the retry asks for it.
 *
 * The acquirer's late write is planted (the simulated acquirer cannot answer after the gateway
 * gave up), and it ignores the refund that went through meanwhile, which a real acquirer would
 * have refused as exceeding the charge: so here the retry is refused, and the acquirer's refund
 * with no refund row is what the reconciliation shows the operators.
 */
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { reconcileFully } from '../../src/admin/reconciliation';
import { createTestEnvironment, startTestGateway, type TestEnvironment, type TestGateway } from '../helpers/gateway';
import { createCharge, postGraphql } from '../helpers/http';
import { waitForLeaseToLapse, waitForNoLockWaiters } from '../helpers/waits';

const refundMutation = 'mutation R($input: RefundChargeInput!) { refundCharge(input: $input) { id status amount } }';

function refund(gateway: TestGateway, key: string, input: Record<string, unknown>) {
  return postGraphql(
    gateway.url,
    { query: refundMutation, variables: { input } },
    { authorization: `Bearer ${gateway.apiKey}`, 'idempotency-key': key },
  );
}

describe('a full refund retried after the completer gave its reservation back', () => {
  let environment: TestEnvironment;
  let gateway: TestGateway;
  beforeAll(async () => {
    environment = await createTestEnvironment();
    gateway = await startTestGateway(environment, {
      ROLE: 'all',
      COMPLETER_INTERVAL_MS: '3600000',
      COMPLETER_GRACE_MS: '0',
    });
  });
  afterAll(async () => {
    await gateway?.stop();
    await environment?.cleanup();
  });

  it('asks the acquirer for the amount it reserved, never another, and holds no reservation', async () => {
    const charged = await createCharge(gateway.url, gateway.apiKey, 'drift-charge', {
      amount: 1_000,
      currency: 'USD',
      source: 'tok_visa',
    });
    expect(charged.status, charged.text).toBe(200);
    const chargeId = String(charged.body.data?.createCharge?.id);

    // The full refund's acquirer call fails at the gateway: 503, reservation (1000) kept.
    const holder = new pg.Client({ connectionString: environment.database.url });
    await holder.connect();
    let first;
    try {
      await holder.query('BEGIN');
      await holder.query('LOCK TABLE acquirer_authorizations IN ACCESS EXCLUSIVE MODE');
      first = await refund(gateway, 'drift-full', { chargeId });
      // The acquirer's INSERT gives up on its lock_timeout; let go only then (no late write).
      await waitForNoLockWaiters(environment.database);
    } finally {
      await holder.query('ROLLBACK').catch(() => undefined);
      await holder.end();
    }
    expect(first.status, first.text).toBe(503);
    // The completer finds nothing under the derived key: reservation and key given back.
    expect(await gateway.completer!.runOnce()).toEqual(['released']);
    // The acquirer records the refund late, for what it was asked: 1000.
    await environment.database.pool.query(
      `INSERT INTO acquirer_authorizations (idempotency_key, authorization_id, kind, amount, currency, source, approved)
       SELECT 'idem_' || id, 'rfnd_review_late', 'refund', 1000, 'USD', 'late', true
         FROM idempotency_keys WHERE key = 'drift-full'`,
    );
    // Meanwhile another refund goes through.
    const partial = await refund(gateway, 'drift-partial', { chargeId, amount: 300 });
    expect(partial.status, partial.text).toBe(200);

    // The full refund's client retries with its key.
    const retry = await refund(gateway, 'drift-full', { chargeId });
    const charge = async () =>
      (
        await environment.database.pool.query<{ amount_refunded: number; amount_reserved: number }>(
          'SELECT amount_refunded, amount_reserved FROM charges WHERE id = $1',
          [chargeId],
        )
      ).rows[0];
    const afterRetry = await charge();
    // Whatever the retry answered, let the completer finish the key once its lease has lapsed.
    await waitForLeaseToLapse(environment.database, 'drift-full', 30_000);
    const completerActions = await gateway.completer!.runOnce();
    const { rows } = await environment.database.pool.query<{ recorded: number; refunded: number }>(
      `SELECT r.amount AS recorded, a.amount AS refunded
         FROM refunds r JOIN idempotency_keys k ON k.id = r.idempotency_key_id
         JOIN acquirer_authorizations a ON a.idempotency_key = 'idem_' || k.id
        WHERE k.key = 'drift-full'`,
    );
    const observed = {
      retry: { status: retry.status, code: retry.body.errors?.[0]?.extensions?.code ?? null },
      afterRetry,
      completerActions,
      refund: rows[0],
    };
    expect(observed, JSON.stringify(observed)).toEqual({
      // The same 1000 asked again, which no longer fits (700 left): refused, never a 500.
      retry: { status: 400, code: 'REFUND_EXCEEDS_CHARGE' },
      afterRetry: { amount_refunded: 300, amount_reserved: 0 },
      completerActions: [],
      refund: undefined,
    });
    // One ask under the derived key, for one amount; the acquirer's late refund is visible.
    expect(
      await environment.database.count(
        `SELECT count(*) FROM acquirer_authorizations
          WHERE idempotency_key = (SELECT 'idem_' || id FROM idempotency_keys WHERE key = 'drift-full')`,
      ),
    ).toBe(1);
    const reconciliation = await reconcileFully(gateway.database.prisma, 0);
    expect(reconciliation.acquirerRefundsWithoutRefund).toEqual(['rfnd_review_late']);
    expect(reconciliation.healthy).toBe(false);
  });
});

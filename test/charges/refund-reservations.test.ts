/**
 * Refunds that meet another refund's reservation, or their own given back by the completer. Both
 * were found by an adversarial review. In each, a full refund's acquirer call fails for real (the
 * acquirer's table is locked past its lock_timeout): 503, its amount reserved on the charge.
 *
 * 1. A refund was refused *finally* because of another refund's
 * reservation that was later given back. Now answered 409 REFUND_IN_PROGRESS, nothing stored.
 *
 * `reservePhase` (src/charges/refund-charge.ts) computed what is left as
 * `amount − amount_refunded − amount_reserved` and stored REFUND_EXCEEDS_CHARGE (400, replayed
 * for ever) when the refund asks for more. A reservation is not money refunded: a refund whose
 * acquirer call failed keeps its reservation until its retry or the completer gives it back. A
 * refund that arrives in that window is told, finally, that it exceeds the charge; once the
 * reservation is back, nothing was refunded at all and its key still answers 400.
 *
 * 2. A full refund (no `amount`) whose reservation the completer gave
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
import { createCharge, refundCharge, type GraphqlAnswer } from '../helpers/http';
import { waitForLeaseToLapse, waitForNoLockWaiters } from '../helpers/waits';

let environment: TestEnvironment;
let gateway: TestGateway;
beforeAll(async () => {
  environment = await createTestEnvironment();
  // The completer runs only when a test calls it; no grace, so it may take a released key at once.
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

/** A succeeded charge of 1000; its id. */
async function newCharge(key: string): Promise<string> {
  const charged = await createCharge(gateway.url, gateway.apiKey, key, {
    amount: 1_000,
    currency: 'USD',
    source: 'tok_visa',
  });
  expect(charged.status, charged.text).toBe(200);
  return String(charged.body.data?.createCharge?.id);
}

/** A refund sent while another session locks the acquirer's table: its acquirer call times out. */
async function refundWhileAcquirerLocked(key: string, input: Record<string, unknown>): Promise<GraphqlAnswer> {
  const holder = new pg.Client({ connectionString: environment.database.url });
  await holder.connect();
  try {
    await holder.query('BEGIN');
    await holder.query('LOCK TABLE acquirer_authorizations IN ACCESS EXCLUSIVE MODE');
    const answer = await refundCharge(gateway, key, input);
    // The acquirer's INSERT gives up on its lock_timeout; let go only then (no late write).
    await waitForNoLockWaiters(environment.database);
    return answer;
  } finally {
    await holder.query('ROLLBACK').catch(() => undefined);
    await holder.end();
  }
}

describe('a refund that finds another refund’s reservation, which is then given back', () => {
  it('is not answered a final REFUND_EXCEEDS_CHARGE while the amount it asks for was never refunded', async () => {
    const chargeId = await newCharge('reserved-charge');

    // Refund 1 (the whole charge) reserves, then its acquirer call fails: 503, reservation kept.
    const first = await refundWhileAcquirerLocked('refund-whole', { chargeId });
    expect(first.status, first.text).toBe(503);
    const reserved = () =>
      environment.database.count('SELECT amount_reserved AS count FROM charges WHERE id = $1', [chargeId]);
    expect(await reserved()).toBe(1_000);

    // Refund 2 (half) arrives in that window.
    const second = await refundCharge(gateway, 'refund-half', { chargeId, amount: 500 });

    // Refund 1's client never comes back: the completer finds nothing refunded and gives it back.
    expect(await gateway.completer!.runOnce()).toContain('released');
    expect(await reserved()).toBe(0);
    expect(
      await environment.database.count('SELECT amount_refunded AS count FROM charges WHERE id = $1', [chargeId]),
    ).toBe(0);

    // Refund 2's client retries with its key, as a client does after any answer it doubts.
    const secondRetry = await refundCharge(gateway, 'refund-half', { chargeId, amount: 500 });
    const answers = [second, secondRetry].map((answer) => ({
      status: answer.status,
      code: answer.body.errors?.[0]?.extensions?.code ?? null,
    }));
    // The first answer may be retryable (409/503) while the reservation is held, never a final
    // refusal; the retry, once the reservation is back, is the refund.
    expect(answers[0]!.code, `${second.text}\nretry after the reservation came back: ${secondRetry.text}`).not.toBe(
      'REFUND_EXCEEDS_CHARGE',
    );
    expect(answers, secondRetry.text).toEqual([
      { status: 409, code: 'REFUND_IN_PROGRESS' },
      { status: 200, code: null },
    ]);
    expect(Number(second.headers.get('retry-after'))).toBe(2);
  });
});

describe('a full refund retried after the completer gave its reservation back', () => {
  it('asks the acquirer for the amount it reserved, never another, and holds no reservation', async () => {
    const chargeId = await newCharge('drift-charge');

    // The full refund's acquirer call fails at the gateway: 503, reservation (1000) kept.
    const first = await refundWhileAcquirerLocked('drift-full', { chargeId });
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
    const partial = await refundCharge(gateway, 'drift-partial', { chargeId, amount: 300 });
    expect(partial.status, partial.text).toBe(200);

    // The full refund's client retries with its key.
    const retry = await refundCharge(gateway, 'drift-full', { chargeId });
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

/**
 * Found by an adversarial review: a refund was refused *finally* because of another refund's
 * reservation that was later given back. Now answered 409 REFUND_IN_PROGRESS, nothing stored.
 *
 * `reservePhase` (src/charges/refund-charge.ts) computed what is left as
 * `amount − amount_refunded − amount_reserved` and stored REFUND_EXCEEDS_CHARGE (400, replayed
 * for ever) when the refund asks for more. A reservation is not money refunded: a refund whose
 * acquirer call failed keeps its reservation until its retry or the completer gives it back. A
 * refund that arrives in that window is told, finally, that it exceeds the charge; once the
 * reservation is back, nothing was refunded at all and its key still answers 400.
 */
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestEnvironment, startTestGateway, type TestEnvironment, type TestGateway } from '../helpers/gateway';
import { createCharge, postGraphql } from '../helpers/http';
import { waitForNoLockWaiters } from '../helpers/waits';

const refundMutation = 'mutation R($input: RefundChargeInput!) { refundCharge(input: $input) { id status amount } }';

function refund(gateway: TestGateway, key: string, input: Record<string, unknown>) {
  return postGraphql(
    gateway.url,
    { query: refundMutation, variables: { input } },
    { authorization: `Bearer ${gateway.apiKey}`, 'idempotency-key': key },
  );
}

describe('a refund that finds another refund’s reservation, which is then given back', () => {
  let environment: TestEnvironment;
  let gateway: TestGateway;
  beforeAll(async () => {
    environment = await createTestEnvironment();
    // The completer runs only when the test calls it; no grace, so it may take the released key at once.
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

  it('is not answered a final REFUND_EXCEEDS_CHARGE while the amount it asks for was never refunded', async () => {
    const charged = await createCharge(gateway.url, gateway.apiKey, 'reserved-charge', {
      amount: 1_000,
      currency: 'USD',
      source: 'tok_visa',
    });
    expect(charged.status, charged.text).toBe(200);
    const chargeId = String(charged.body.data?.createCharge?.id);

    // Refund 1 (the whole charge) reserves, then its acquirer call fails: 503, reservation kept.
    const holder = new pg.Client({ connectionString: environment.database.url });
    await holder.connect();
    let first;
    try {
      await holder.query('BEGIN');
      await holder.query('LOCK TABLE acquirer_authorizations IN ACCESS EXCLUSIVE MODE');
      first = await refund(gateway, 'refund-whole', { chargeId });
      // The acquirer's INSERT gives up on its lock_timeout; let go only then (no late write).
      await waitForNoLockWaiters(environment.database);
    } finally {
      await holder.query('ROLLBACK').catch(() => undefined);
      await holder.end();
    }
    expect(first.status, first.text).toBe(503);
    const reserved = () =>
      environment.database.count('SELECT amount_reserved AS count FROM charges WHERE id = $1', [chargeId]);
    expect(await reserved()).toBe(1_000);

    // Refund 2 (half) arrives in that window.
    const second = await refund(gateway, 'refund-half', { chargeId, amount: 500 });

    // Refund 1's client never comes back: the completer finds nothing refunded and gives it back.
    expect(await gateway.completer!.runOnce()).toContain('released');
    expect(await reserved()).toBe(0);
    expect(
      await environment.database.count('SELECT amount_refunded AS count FROM charges WHERE id = $1', [chargeId]),
    ).toBe(0);

    // Refund 2's client retries with its key, as a client does after any answer it doubts.
    const secondRetry = await refund(gateway, 'refund-half', { chargeId, amount: 500 });
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

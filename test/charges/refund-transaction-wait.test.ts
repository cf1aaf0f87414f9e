/**
 * A refund's reservation runs in a Prisma interactive transaction
 * (`db.$transaction(async (tx) => …)` in src/charges/refund-charge.ts). Prisma gives up on starting
 * one after `maxWait` (2 s by default) and on running one after `timeout` (5 s), with
 * PrismaClientKnownRequestError P2028 ("Transaction API error: …"). `isTransientDatabaseError`
 * skipped Prisma's own P-codes and its message patterns did not match, so P2028 was a "bug": 500
 * INTERNAL, and the key was not released (a retry got 409 until the lease ran out). The contract
 * says a pool slot or a lock not obtained in time is 503 TRANSIENT_FAILURE (docs/contract.md §2;
 * docs/idempotency.md, "Failures").
 *
 * A saturated pool is played by a pool of one connection (the gateway's default wait for a slot,
 * 5 s, is longer than Prisma's 2 s), and a refund waiting on a hot charge row's lock holds it.
 */
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestEnvironment, startTestGateway, type TestEnvironment, type TestGateway } from '../helpers/gateway';
import { createCharge, refundCharge } from '../helpers/http';
import { waitFor } from '../helpers/ledger';

/** A gateway for the describe block it is called in, with the given settings. */
function gatewayWith(overrides: Record<string, string>): {
  environment: () => TestEnvironment;
  gateway: () => TestGateway;
} {
  let environment: TestEnvironment;
  let gateway: TestGateway;
  beforeAll(async () => {
    environment = await createTestEnvironment();
    gateway = await startTestGateway(environment, { ROLE: 'api', ...overrides });
  });
  afterAll(async () => {
    await gateway?.stop();
    await environment?.cleanup();
  });
  return { environment: () => environment, gateway: () => gateway };
}

async function chargeToRefund(gateway: TestGateway, key: string): Promise<string> {
  const charged = await createCharge(gateway.url, gateway.apiKey, key, {
    amount: 10_000,
    currency: 'USD',
    source: 'tok_visa',
  });
  expect(charged.status, charged.text).toBe(200);
  return String(charged.body.data?.createCharge?.id);
}

/** What the charge's amounts say once the refunds are done: refunded in full, nothing left reserved. */
async function expectRefunded(environment: TestEnvironment, chargeId: string, refunded: number): Promise<void> {
  const count = (sql: string) => environment.database.count(sql, [chargeId]);
  expect(await count('SELECT amount_refunded AS count FROM charges WHERE id = $1')).toBe(refunded);
  expect(await count('SELECT amount_reserved AS count FROM charges WHERE id = $1')).toBe(0);
}

async function withChargeRowLocked<T>(environment: TestEnvironment, chargeId: string, during: () => Promise<T>) {
  const holder = new pg.Client({ connectionString: environment.database.url });
  await holder.connect();
  try {
    await holder.query('BEGIN');
    await holder.query('SELECT 1 FROM charges WHERE id = $1 FOR UPDATE', [chargeId]);
    return await during();
  } finally {
    await holder.query('ROLLBACK').catch(() => undefined);
    await holder.end();
  }
}

describe('refunds behind a hot charge row with the pool saturated', () => {
  const setup = gatewayWith({ DATABASE_POOL_SIZE_MAX: '1', DATABASE_LOCK_TIMEOUT_MS: '3000' });

  it('answers 503 (or 200/409), never 500, when a refund waits for a pool slot past Prisma’s maxWait', async () => {
    const [environment, gateway] = [setup.environment(), setup.gateway()];
    const chargeId = await chargeToRefund(gateway, 'hot-charge');
    const answers = await withChargeRowLocked(environment, chargeId, () =>
      Promise.all([
        refundCharge(gateway, 'hot-refund-1', { chargeId, amount: 100 }),
        refundCharge(gateway, 'hot-refund-2', { chargeId, amount: 200 }),
      ]),
    );
    const summary = answers.map((answer) => ({
      status: answer.status,
      code: answer.body.errors?.[0]?.extensions?.code,
    }));
    for (const answer of answers) {
      expect([200, 409, 503], `${JSON.stringify(summary)}\n${answer.text}`).toContain(answer.status);
    }
    // Retried after each Retry-After, each refund is made once.
    for (const [key, amount] of [
      ['hot-refund-1', 100],
      ['hot-refund-2', 200],
    ] as const) {
      for (let attempt = 0; ; attempt += 1) {
        const answer = await refundCharge(gateway, key, { chargeId, amount });
        if (answer.status === 200) break;
        expect([409, 503], answer.text).toContain(answer.status);
        expect(attempt, answer.text).toBeLessThan(30);
        await new Promise((resolve) => setTimeout(resolve, Number(answer.headers.get('retry-after')) * 1_000));
      }
    }
    expect(await environment.database.count('SELECT count(*) FROM refunds WHERE charge_id = $1', [chargeId])).toBe(2);
    await expectRefunded(environment, chargeId, 300);
  });
});

describe('a refund whose transaction outlives Prisma’s timeout (a lock timeout above 5 s)', () => {
  const setup = gatewayWith({ DATABASE_LOCK_TIMEOUT_MS: '15000', DATABASE_STATEMENT_TIMEOUT_MS: '20000' });

  it('answers 503 with the key released, never 500, and the retry refunds once', async () => {
    const [environment, gateway] = [setup.environment(), setup.gateway()];
    const chargeId = await chargeToRefund(gateway, 'slow-lock-charge');
    const answer = await withChargeRowLocked(environment, chargeId, async () => {
      const pending = refundCharge(gateway, 'slow-lock-refund', { chargeId, amount: 300 });
      await waitFor(
        async () =>
          (await environment.database.count(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'",
          )) >= 1,
        30_000,
        'the refund to wait for the charge row',
      );
      // Past Prisma's interactive transaction timeout (5 s), within the lock timeout; then unlocked.
      await new Promise((resolve) => setTimeout(resolve, 6_000));
      return { pending };
    });
    const first = await answer.pending;
    expect(first.status, first.text).toBe(503);
    expect(first.body.errors?.[0]?.extensions?.code).toBe('TRANSIENT_FAILURE');
    const retry = await refundCharge(gateway, 'slow-lock-refund', { chargeId, amount: 300 });
    expect(retry.status, retry.text).toBe(200);
    await expectRefunded(environment, chargeId, 300);
  });
});

/**
 * Nothing is half-written: a failure injected after the charge insert, inside the recording
 * transaction, leaves no charge, no outbox row, and a released key; the retry then charges once
 * without a second authorization.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestEnvironment, startTestGateway, type TestEnvironment } from '../helpers/gateway';
import { createCharge } from '../helpers/http';

let environment: TestEnvironment;
beforeAll(async () => {
  environment = await createTestEnvironment();
});
afterAll(async () => {
  await environment?.cleanup();
});

describe('when recording the charge fails after the charge row was inserted', () => {
  it('rolls back the charge and its event, releases the key, and the retry charges once', async () => {
    const input = { amount: 3100, currency: 'EUR', source: 'tok_visa' };
    const faulty = await startTestGateway(environment, { ROLE: 'api', FAULTS: 'fail_after_charge_insert' });
    const failed = await createCharge(faulty.url, faulty.apiKey, 'rollback-1', input);
    expect(failed.status).toBe(503);
    expect(failed.body.errors?.[0]?.extensions?.code).toBe('TRANSIENT_FAILURE');
    expect(await environment.database.count('SELECT count(*) FROM charges')).toBe(0);
    expect(await environment.database.count('SELECT count(*) FROM outbox_events')).toBe(0);
    const { rows } = await environment.database.pool.query(
      "SELECT id::text, state, recovery_point, locked_until FROM idempotency_keys WHERE key = 'rollback-1'",
    );
    // Released at STARTED: the acquirer's answer is recorded only with the charge, which rolled back.
    expect(rows).toEqual([
      { id: expect.any(String), state: 'IN_PROGRESS', recovery_point: 'STARTED', locked_until: null },
    ]);
    expect(
      await environment.database.count(
        "SELECT count(*) FROM idempotency_audit WHERE key = 'rollback-1' AND outcome = 'released'",
      ),
    ).toBe(1);
    const apiKey = faulty.apiKey;
    await faulty.stop();

    const healthy = await startTestGateway(environment, { ROLE: 'api' });
    try {
      const retried = await createCharge(healthy.url, apiKey, 'rollback-1', input);
      expect(retried.status).toBe(200);
      expect(retried.body.data?.createCharge).toMatchObject({ amount: 3100, status: 'SUCCEEDED' });
      expect(await environment.database.count('SELECT count(*) FROM charges')).toBe(1);
      expect(await environment.database.count('SELECT count(*) FROM outbox_events')).toBe(1);
      expect(
        await environment.database.count('SELECT count(*) FROM acquirer_authorizations WHERE idempotency_key = $1', [
          `idem_${rows[0].id}`,
        ]),
      ).toBe(1);
    } finally {
      await healthy.stop();
    }
  });
});

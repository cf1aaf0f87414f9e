/**
 * The completer takes turns (src/idempotency/key-row.ts, `takeOverStaleKeys`). Its batch used to be
 * the lowest key ids that were eligible (`ORDER BY id LIMIT batchSizeMax`). A charge key released at STARTED whose
 * client gave up (an acquirer outage answered 503 and nobody retried) holds nothing, so every pass
 * looks it up, finds nothing and releases it again (`updated_at = now()`): it is eligible again
 * after COMPLETER_GRACE_MS, for IDEMPOTENCY_ABANDON_AFTER_HOURS (24 h). Once there are at least
 * `batchSizeMax × grace / interval` such keys (100 × 30 s / 5 s = 600 by default), the low ids
 * filled every batch and a key with a higher id was never looked at: a key whose acquirer *did*
 * authorize (the call timed out at the gateway after the acquirer recorded it) was left holding the
 * customer's money with no charge, no event and no ledger entry, until the low keys were abandoned.
 * Now the longest untouched key goes first, so a key just released goes to the back.
 *
 * Scaled down here: batch 2, grace 1 s, a pass every 200 ms, 12 keys with nothing authorized.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestEnvironment, startTestGateway, type TestEnvironment, type TestGateway } from '../helpers/gateway';
import { createCharge } from '../helpers/http';

describe('the completer with many keys that hold nothing', () => {
  let environment: TestEnvironment;
  let gateway: TestGateway;
  beforeAll(async () => {
    environment = await createTestEnvironment();
    gateway = await startTestGateway(environment, {
      ROLE: 'all',
      COMPLETER_INTERVAL_MS: '3600000', // passes are run by the test
      COMPLETER_GRACE_MS: '1000',
      COMPLETER_BATCH_SIZE_MAX: '2',
    });
  });
  afterAll(async () => {
    await gateway?.stop();
    await environment?.cleanup();
  });

  it('still records the charge the acquirer authorized behind a key released at STARTED', async () => {
    for (let index = 0; index < 12; index += 1) {
      const answer = await createCharge(gateway.url, gateway.apiKey, `gave-up-${index}`, {
        amount: 100 + index,
        currency: 'USD',
        source: 'tok_timeout',
      });
      expect(answer.status, answer.text).toBe(503);
    }
    // The acquirer answered too late for the gateway (503, key released at STARTED), but it had
    // recorded the authorization under the derived key.
    const late = await createCharge(gateway.url, gateway.apiKey, 'authorized-late', {
      amount: 7_777,
      currency: 'USD',
      source: 'tok_timeout',
    });
    expect(late.status, late.text).toBe(503);
    await environment.database.pool.query(
      `INSERT INTO acquirer_authorizations (idempotency_key, authorization_id, kind, amount, currency, source, approved)
       SELECT 'idem_' || id, 'auth_review_late', 'charge', 7777, 'USD', 'tok_visa', true
         FROM idempotency_keys WHERE key = 'authorized-late'`,
    );

    const actions: string[] = [];
    for (let pass = 0; pass < 30; pass += 1) {
      actions.push(...(await gateway.completer!.runOnce()));
      await new Promise((resolve) => setTimeout(resolve, 200)); // the pass interval, scaled down
    }
    const recorded = await environment.database.count(
      "SELECT count(*) FROM charges WHERE authorization_id = 'auth_review_late'",
    );
    expect(
      { recorded, finished: actions.filter((action) => action === 'finished').length },
      `completer actions over 30 passes: ${actions.join(',')}`,
    ).toEqual({ recorded: 1, finished: 1 });
  });
});

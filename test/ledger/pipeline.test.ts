/**
 * The event path end to end, in one process: createCharge → outbox → relay → queue → worker →
 * inbox + double-entry ledger.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestEnvironment, startTestGateway, type TestEnvironment, type TestGateway } from '../helpers/gateway';
import { createCharge } from '../helpers/http';
import { expectLedgerConsistent, waitForLedgerToCatchUp } from '../helpers/ledger';

let environment: TestEnvironment;
let gateway: TestGateway;

beforeAll(async () => {
  environment = await createTestEnvironment();
  gateway = await startTestGateway(environment, { ROLE: 'all' });
});
afterAll(async () => {
  await gateway?.stop();
  await environment?.cleanup();
});

describe('when charges are recorded', () => {
  it('posts each succeeded charge once, acknowledges declines without an effect, and balances', async () => {
    const sources = ['tok_visa', 'tok_mastercard', 'tok_chargeDeclined', 'tok_visa', 'tok_amex'];
    for (const [index, source] of sources.entries()) {
      const answer = await createCharge(gateway.url, gateway.apiKey, `pipeline-${index}`, {
        amount: 1000 + index,
        currency: index === 3 ? 'JPY' : 'EUR',
        source,
      });
      expect(answer.status).toBe(200);
    }
    await waitForLedgerToCatchUp(environment.database);
    expect(await environment.database.count('SELECT count(*) FROM ledger_transactions')).toBe(4);
    expect(await environment.database.count('SELECT count(*) FROM ledger_entries')).toBe(8);
    expect(await environment.database.count('SELECT count(*) FROM outbox_events WHERE published_at IS NULL')).toBe(0);
    await expectLedgerConsistent(environment.database);
  });
});

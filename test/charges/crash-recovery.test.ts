/**
 * A process killed (SIGKILL, a real child process) between the acquirer's answer and the commit.
 * One test per recovery point, with the client's retry and without it (the completer). A charge
 * no longer commits AUTHORIZED (its acquirer answer is recorded with the charge), so the AUTHORIZED
 * case is a key an earlier version left there: the same crash, then the row moved to AUTHORIZED
 * with the acquirer's answer, as that version saved it.
 * Also: SIGTERM lets an in-flight request finish.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { createMerchant } from '../../src/merchants/merchants';
import { openDatabase, type DatabaseHandle } from '../../src/platform/database';
import { startChildGateway, type ChildGateway } from '../../scripts/harness/child-gateway';
import { createTestEnvironment, type TestEnvironment } from '../helpers/gateway';
import { createCharge } from '../helpers/http';
import { waitFor } from '../helpers/ledger';
import { waitForLeaseToLapse } from '../helpers/waits';

// Each test starts one or two gateway processes: on a loaded two-core machine a start has taken
// over 30 s, so the default 60 s per test is a deadline these tests can miss without a fault.
vi.setConfig({ testTimeout: 180_000 });

let environment: TestEnvironment;
let database: DatabaseHandle;
let apiKey: string;
const children: ChildGateway[] = [];
const leaseMs = 3_000;
const leaseEnv = {
  IDEMPOTENCY_LEASE_MS: String(leaseMs),
  ACQUIRER_TIMEOUT_MS: '1000',
  COMPLETER_INTERVAL_MS: '3600000',
};
const input = { amount: 5400, currency: 'USD', source: 'tok_visa' };

async function child(env: Record<string, string>): Promise<ChildGateway> {
  const started = await startChildGateway(environment.env({ ...leaseEnv, ...env }));
  children.push(started);
  return started;
}

beforeAll(async () => {
  environment = await createTestEnvironment();
  database = openDatabase({
    databaseUrl: environment.database.url,
    databasePoolSizeMax: 2,
    databaseStatementTimeoutMs: 5_000,
    databaseLockTimeoutMs: 2_000,
  });
  apiKey = (await createMerchant(database.prisma, 'Crash merchant')).apiKey;
});
afterEach(async () => {
  for (const running of children.splice(0)) await running.kill('SIGKILL');
});
afterAll(async () => {
  await database?.close();
  await environment?.cleanup();
});

async function keyRow(key: string) {
  const { rows } = await environment.database.pool.query<{ id: string; state: string; recovery_point: string }>(
    'SELECT id::text, state, recovery_point FROM idempotency_keys WHERE key = $1',
    [key],
  );
  return rows[0]!;
}

async function crashMidCharge(key: string, recoveryPoint: 'STARTED' | 'AUTHORIZED') {
  const doomed = await child({ ROLE: 'api', FAULTS: 'crash_after_acquirer' });
  await expect(createCharge(doomed.url, apiKey, key, input)).rejects.toThrow();
  expect((await doomed.exited).signal).toBe('SIGKILL');
  const row = await keyRow(key);
  expect(row.state).toBe('IN_PROGRESS');
  expect(
    await environment.database.count('SELECT count(*) FROM acquirer_authorizations WHERE idempotency_key = $1', [
      `idem_${row.id}`,
    ]),
  ).toBe(1);
  expect(await environment.database.count('SELECT count(*) FROM charges WHERE idempotency_key_id = $1', [row.id])).toBe(
    0,
  );
  expect(row.recovery_point).toBe('STARTED');
  if (recoveryPoint === 'AUTHORIZED') {
    await environment.database.pool.query(
      `UPDATE idempotency_keys k
          SET recovery_point = 'AUTHORIZED',
              acquirer_result = json_build_object('authorizationId', a.authorization_id, 'approved', a.approved,
                                                  'declineCode', a.decline_code)::text
         FROM acquirer_authorizations a
        WHERE k.id = $1::bigint AND a.idempotency_key = 'idem_' || k.id`,
      [row.id],
    );
  }
  return { ...row, recovery_point: recoveryPoint };
}

async function expectChargedOnce(key: string, rowId: string) {
  expect(await environment.database.count('SELECT count(*) FROM charges WHERE idempotency_key_id = $1', [rowId])).toBe(
    1,
  );
  expect(
    await environment.database.count(
      'SELECT count(*) FROM outbox_events o JOIN charges c ON c.id = o.aggregate_id WHERE c.idempotency_key_id = $1',
      [rowId],
    ),
  ).toBe(1);
  expect(
    await environment.database.count('SELECT count(*) FROM acquirer_authorizations WHERE idempotency_key = $1', [
      `idem_${rowId}`,
    ]),
  ).toBe(1);
  expect(
    await environment.database.count(
      'SELECT count(*) FROM charges c JOIN acquirer_authorizations a ON a.authorization_id = c.authorization_id WHERE c.idempotency_key_id = $1 AND a.idempotency_key = $2',
      [rowId, `idem_${rowId}`],
    ),
  ).toBe(1);
  expect((await keyRow(key)).state).toBe('COMPLETED');
}

describe.each([['STARTED'], ['AUTHORIZED']] as const)(
  'when the process died at %s (after the acquirer answered)',
  (recoveryPoint) => {
    const fault = recoveryPoint.toLowerCase();
    it(`resumes from ${recoveryPoint} on the client's retry after the lease, with no second authorization`, async () => {
      const key = `retry-${fault}`;
      // Started first, so the retry below comes well inside the dead holder's lease.
      const api = await child({ ROLE: 'api' });
      const row = await crashMidCharge(key, recoveryPoint);
      // Without waiting for the twin (it is dead): answered 409 at once, with a short Retry-After.
      const early = await createCharge(api.url, apiKey, key, input, { headers: { prefer: 'wait=0' } });
      expect(early.status).toBe(409);
      expect(Number(early.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
      await waitForLeaseToLapse(environment.database, key);
      const resumed = await createCharge(api.url, apiKey, key, input);
      expect(resumed.status).toBe(200);
      expect(resumed.headers.get('idempotent-replayed')).toBe('false');
      await expectChargedOnce(key, row.id);
      const replay = await createCharge(api.url, apiKey, key, input);
      expect(replay.headers.get('idempotent-replayed')).toBe('true');
      expect(replay.body.data).toEqual(resumed.body.data);
    });

    it(`is finished by the completer from ${recoveryPoint} when the client never comes back, and a later retry replays it`, async () => {
      const key = `completer-${fault}`;
      const row = await crashMidCharge(key, recoveryPoint);
      await child({ ROLE: 'worker', COMPLETER_INTERVAL_MS: '200', COMPLETER_GRACE_MS: '0' });
      await waitFor(async () => (await keyRow(key)).state === 'COMPLETED', 15_000, 'the completer to finish the key');
      await expectChargedOnce(key, row.id);
      const api = await child({ ROLE: 'api' });
      const later = await createCharge(api.url, apiKey, key, input);
      expect(later.status).toBe(200);
      expect(later.headers.get('idempotent-replayed')).toBe('true');
      expect(later.body.data?.createCharge).toMatchObject({ amount: 5400, status: 'SUCCEEDED' });
    });
  },
);

describe('when the gateway gets SIGTERM with a request in flight', () => {
  it('finishes the request, exits 0, and takes no new connections', async () => {
    const api = await child({ ROLE: 'api' });
    const inFlight = createCharge(api.url, apiKey, 'sigterm-1', { ...input, source: 'tok_slow' });
    // In flight for sure: the gateway holds the key (tok_slow then keeps it busy for 800 ms).
    await waitFor(
      async () =>
        (await environment.database.count("SELECT count(*) FROM idempotency_keys WHERE key = 'sigterm-1'")) === 1,
      20_000,
      'the request to claim its key',
    );
    api.process.kill('SIGTERM');
    const answer = await inFlight;
    expect(answer.status).toBe(200);
    expect((await api.exited).code).toBe(0);
    await expect(fetch(`${api.url}/healthz`)).rejects.toThrow();
    expect(
      await environment.database.count(
        "SELECT count(*) FROM idempotency_keys WHERE key = 'sigterm-1' AND state = 'COMPLETED'",
      ),
    ).toBe(1);
  });
});

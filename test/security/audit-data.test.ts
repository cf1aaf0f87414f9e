/**
 * Audit and data (issue 14): what the audit table keeps of each attempt, read from committed rows.
 *   - Attempts answered from Redis are compact: a replay's row has the key, the fingerprint, the
 *     outcome and the time, and no payload (the first request's row has it); a 422 mismatch keeps
 *     its own payload, because that is what a dispute needs to see.
 */
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestEnvironment, startTestGateway, type TestEnvironment, type TestGateway } from '../helpers/gateway';
import { createCharge, type ChargeInputForTest } from '../helpers/http';
import { waitFor } from '../helpers/ledger';

let environment: TestEnvironment;
let gateway: TestGateway;

beforeAll(async () => {
  environment = await createTestEnvironment();
  // Short flushes, so the batched rows of Redis-answered attempts are written soon after.
  gateway = await startTestGateway(environment, { ROLE: 'api', AUDIT_FLUSH_INTERVAL_MS: '50' });
});
afterAll(async () => {
  await gateway?.stop();
  await environment?.cleanup();
});

/** A charge near the input limits (description 500 characters, about 8 KB of metadata), as the finding measured. */
function largeInput(): ChargeInputForTest {
  const metadata = Object.fromEntries(
    Array.from({ length: 24 }, (_, index) => [`ref_${index}`, randomBytes(160).toString('hex')]),
  );
  return { amount: 2_500, currency: 'EUR', source: 'tok_visa', description: 'd'.repeat(500), metadata };
}

interface AuditRow {
  outcome: string;
  answered_from: string;
  request_payload: string | null;
  row_bytes: number;
}

async function auditRows(key: string): Promise<AuditRow[]> {
  const { rows } = await environment.database.pool.query<AuditRow>(
    `SELECT outcome, answered_from, request_payload,
            (pg_column_size(merchant_id) + pg_column_size(key) + pg_column_size(operation)
             + pg_column_size(fingerprint) + coalesce(pg_column_size(request_payload), 0) + pg_column_size(outcome)
             + pg_column_size(answered_from) + pg_column_size(created_at) + pg_column_size(id))::int AS row_bytes
       FROM idempotency_audit WHERE merchant_id = $1 AND key = $2 ORDER BY id`,
    [gateway.merchantId, key],
  );
  return rows;
}

async function auditTableBytes(): Promise<number> {
  return environment.database.count("SELECT pg_total_relation_size('idempotency_audit') AS count");
}

describe('audit rows of attempts answered from Redis', () => {
  it('keep no payload for replays, and the payload of a 422 mismatch', async () => {
    const input = largeInput();
    const key = 'compact-1';
    const first = await createCharge(gateway.url, gateway.apiKey, key, input);
    expect(first.status).toBe(200);

    const replays = 200;
    const tableBefore = await auditTableBytes();
    for (let index = 0; index < replays; index += 1) {
      const replay = await createCharge(gateway.url, gateway.apiKey, key, input);
      expect(replay.headers.get('idempotent-replayed')).toBe('true');
    }
    const mismatch = await createCharge(gateway.url, gateway.apiKey, key, { ...input, amount: 2_501 });
    expect(mismatch.status).toBe(422);
    await waitFor(
      async () => (await auditRows(key)).length === 1 + replays + 1,
      30_000,
      'the batched audit rows of the replays and the mismatch',
    );
    const tableGrowthPerReplay = Math.round(((await auditTableBytes()) - tableBefore) / replays);

    const rows = await auditRows(key);
    const replayRows = rows.filter((row) => row.outcome === 'replayed');
    const replayRowBytes = Math.max(...replayRows.map((row) => row.row_bytes));
    // For the record (docs/security.md quotes it): the size of a replay's audit row.
    console.info(
      `audit row sizes: first request ${rows[0]!.row_bytes} B, replay ${replayRowBytes} B (columns), ` +
        `table growth ${tableGrowthPerReplay} B per replay over ${replays} replays`,
    );
    expect(rows[0]).toMatchObject({ outcome: 'created', answered_from: 'postgres' });
    expect(rows[0]!.request_payload).toContain('"amount":2500');
    expect(replayRows).toHaveLength(replays);
    expect(replayRows.every((row) => row.answered_from === 'redis' && row.request_payload === null)).toBe(true);
    const mismatchRow = rows.at(-1)!;
    expect(mismatchRow).toMatchObject({ outcome: 'mismatch', answered_from: 'redis' });
    expect(mismatchRow.request_payload).toContain('"amount":2501');

    expect(replayRowBytes).toBeLessThan(200);
  });
});

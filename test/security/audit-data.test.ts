/**
 * Audit and data (issue 14): what the tables keep of each attempt, read from committed rows.
 *   - The card source is stored once, on the charge (and in the acquirer's own table): after
 *     charges created, replayed (from Redis and from Postgres), mismatched, declined and finished
 *     by the completer after a real SIGKILL, no other column and no Redis value holds it. The key
 *     row holds it only while the key is in flight; the request fingerprint and the replayed
 *     bytes do not change.
 *   - Attempts answered from Redis are compact: a replay's row has the key, the fingerprint, the
 *     outcome and the time, and no payload (the first request's row has it); a 422 mismatch keeps
 *     its own payload, because that is what a dispute needs to see.
 */
import { createHash, randomBytes } from 'node:crypto';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { validateCreateChargeInput } from '../../src/charges/validation';
import { canonicalJson, fingerprint } from '../../src/idempotency/fingerprint';
import { startChildGateway, type ChildGateway } from '../../scripts/harness/child-gateway';
import { createTestEnvironment, startTestGateway, type TestEnvironment, type TestGateway } from '../helpers/gateway';
import { createCharge, type ChargeInputForTest } from '../helpers/http';
import { waitFor, waitForLedgerToCatchUp } from '../helpers/ledger';
import { waitForLeaseToLapse } from '../helpers/waits';

// One test starts a gateway in a child process, which has taken over 30 s on a loaded machine.
vi.setConfig({ testTimeout: 180_000 });

const adminToken = 'admin-token-for-audit-data-0123456789';
let environment: TestEnvironment;
let gateway: TestGateway;
const children: ChildGateway[] = [];

beforeAll(async () => {
  environment = await createTestEnvironment();
  gateway = await startTestGateway(environment, {
    ROLE: 'all',
    ADMIN_TOKEN: adminToken,
    // Short flushes, so the batched rows of Redis-answered attempts are written soon after.
    AUDIT_FLUSH_INTERVAL_MS: '50',
    // The completer runs when a test calls it, on any key whose lease has run out.
    COMPLETER_INTERVAL_MS: '3600000',
    COMPLETER_GRACE_MS: '0',
  });
});
afterAll(async () => {
  for (const child of children.splice(0)) await child.kill('SIGKILL');
  await gateway?.stop();
  await environment?.cleanup();
});

/** Every text column of every table that holds `needle`, as table.column. */
async function columnsHolding(needle: string): Promise<string[]> {
  const { rows: columns } = await environment.database.pool.query<{ table_name: string; column_name: string }>(
    `SELECT table_name, column_name FROM information_schema.columns c
      WHERE table_schema = 'public' AND data_type IN ('text', 'character varying', 'character', 'json', 'jsonb')
        AND EXISTS (SELECT 1 FROM information_schema.tables t
                     WHERE t.table_schema = 'public' AND t.table_name = c.table_name AND t.table_type = 'BASE TABLE')`,
  );
  const found: string[] = [];
  for (const { table_name: table, column_name: column } of columns) {
    const holding = await environment.database.count(
      `SELECT count(*) FROM "${table}" WHERE "${column}"::text LIKE $1`,
      [`%${needle}%`],
    );
    if (holding > 0) found.push(`${table}.${column}`);
  }
  return found.sort();
}

/** Every value under this file's Redis prefixes (the gateway's and BullMQ's) that holds `needle`. */
async function redisKeysHolding(needle: string): Promise<string[]> {
  const redis = new Redis(environment.redisUrl, { maxRetriesPerRequest: 1 });
  const found: string[] = [];
  try {
    for (const pattern of [`${environment.redisKeyPrefix}:*`, `{${environment.redisKeyPrefix}}:*`]) {
      let cursor = '0';
      do {
        const [next, keys] = await redis.scan(cursor, 'MATCH', pattern, 'COUNT', 1000);
        cursor = next;
        for (const key of keys) {
          if (JSON.stringify(await redisValue(redis, key)).includes(needle)) found.push(key);
        }
      } while (cursor !== '0');
    }
  } finally {
    redis.disconnect();
  }
  return found;
}

async function redisValue(redis: Redis, key: string): Promise<unknown> {
  switch (await redis.type(key)) {
    case 'string':
      return redis.get(key);
    case 'hash':
      return redis.hgetall(key);
    case 'list':
      return redis.lrange(key, 0, -1);
    case 'set':
      return redis.smembers(key);
    case 'zset':
      return redis.zrange(key, 0, -1);
    case 'stream':
      return redis.xrange(key, '-', '+');
    default:
      return null;
  }
}

async function keyRow(key: string): Promise<{ state: string; fingerprint: string; request_payload: string }> {
  const { rows } = await environment.database.pool.query<{
    state: string;
    fingerprint: string;
    request_payload: string;
  }>('SELECT state, fingerprint, request_payload FROM idempotency_keys WHERE merchant_id = $1 AND key = $2', [
    gateway.merchantId,
    key,
  ]);
  return rows[0]!;
}

/** What the key row keeps of a charge request once completed: the canonical input, source → its SHA-256. */
function withoutSource(input: ChargeInputForTest): string {
  const { source, ...rest } = validateCreateChargeInput(input);
  return canonicalJson({ ...rest, sourceFingerprint: createHash('sha256').update(source).digest('hex') });
}

describe('the card source', () => {
  it('is stored once, on the charge: after every kind of attempt, only charges and the acquirer hold it', async () => {
    const redisKeyOf = (key: string) => `${environment.redisKeyPrefix}:idem:{${gateway.merchantId}}:${key}`;
    const approved: ChargeInputForTest = {
      amount: 1_200,
      currency: 'USD',
      source: 'tok_visa',
      metadata: { order: 'o-1' },
    };
    const declined: ChargeInputForTest = { amount: 1_300, currency: 'USD', source: 'tok_chargeDeclined' };

    const first = await createCharge(gateway.url, gateway.apiKey, 'source-1', approved);
    expect(first.status).toBe(200);
    const fromRedis = await createCharge(gateway.url, gateway.apiKey, 'source-1', approved);
    expect(fromRedis.headers.get('idempotent-replayed')).toBe('true');
    await gateway.redis.del(redisKeyOf('source-1'));
    const fromPostgres = await createCharge(gateway.url, gateway.apiKey, 'source-1', approved);
    expect(fromPostgres.headers.get('idempotent-replayed')).toBe('true');
    // Replays are the stored bytes, and the key keeps the fingerprint of the raw input.
    expect(fromRedis.body.data).toEqual(first.body.data);
    expect(fromPostgres.body.data).toEqual(first.body.data);
    expect((await keyRow('source-1')).fingerprint).toBe(
      fingerprint('createCharge', validateCreateChargeInput(approved)),
    );
    expect((await keyRow('source-1')).request_payload).toBe(withoutSource(approved));

    expect((await createCharge(gateway.url, gateway.apiKey, 'source-1', { ...approved, amount: 1 })).status).toBe(422);
    await gateway.redis.del(redisKeyOf('source-1'));
    expect((await createCharge(gateway.url, gateway.apiKey, 'source-1', { ...approved, amount: 2 })).status).toBe(422);
    expect(
      (await createCharge(gateway.url, gateway.apiKey, 'source-2', declined)).body.data?.createCharge,
    ).toMatchObject({
      status: 'FAILED',
    });

    // A client that never came back: its process dies (SIGKILL) after the acquirer answered, before the
    // charge was recorded.
    const doomed = await startChildGateway(
      environment.env({
        ROLE: 'api',
        FAULTS: 'crash_after_acquirer',
        IDEMPOTENCY_LEASE_MS: '3000',
        ACQUIRER_TIMEOUT_MS: '1000',
      }),
    );
    children.push(doomed);
    await expect(createCharge(doomed.url, gateway.apiKey, 'source-3', approved)).rejects.toThrow();
    expect((await doomed.exited).signal).toBe('SIGKILL');
    // In flight, the key row holds the raw request: the completer finishes the charge from it.
    expect(await keyRow('source-3')).toMatchObject({
      state: 'IN_PROGRESS',
      request_payload: canonicalJson(validateCreateChargeInput(approved)),
    });
    // Operators looking the key up see the source's fingerprint, not the source.
    const lookedUp = await fetch(`${gateway.url}/admin/graphql`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${adminToken}` },
      body: JSON.stringify({
        query: `{ idempotencyKey(merchantId: "${gateway.merchantId}", key: "source-3") { state requestPayload } }`,
      }),
    }).then(async (response) => (await response.json()) as { data: { idempotencyKey: Record<string, string> } });
    expect(lookedUp.data.idempotencyKey).toEqual({ state: 'IN_PROGRESS', requestPayload: withoutSource(approved) });
    await waitForLeaseToLapse(environment.database, 'source-3');
    expect(await gateway.completer!.runOnce()).toContain('finished');
    expect(await keyRow('source-3')).toMatchObject({ state: 'COMPLETED', request_payload: withoutSource(approved) });

    await waitFor(
      async () =>
        (await environment.database.count('SELECT count(*) FROM idempotency_audit WHERE key LIKE $1', ['source-%'])) >=
        7,
      10_000,
      'the audit rows of every attempt',
    );
    await waitForLedgerToCatchUp(environment.database);
    expect(await environment.database.count('SELECT count(*) FROM charges')).toBe(3);
    expect(await columnsHolding('tok_')).toEqual(['acquirer_authorizations.source', 'charges.source']);
    expect(await redisKeysHolding('tok_')).toEqual([]);
    // The audit rows keep the fingerprint in its place, and the 422s their own (different) requests.
    // (Redis-answered rows are written in batches, so their ids do not follow the attempts' order.)
    const { rows } = await environment.database.pool.query<{ outcome: string; request_payload: string | null }>(
      "SELECT outcome, request_payload FROM idempotency_audit WHERE key = 'source-1' ORDER BY outcome, id",
    );
    expect(rows.map((row) => row.outcome)).toEqual(['created', 'mismatch', 'mismatch', 'replayed', 'replayed']);
    expect(rows.map((row) => row.request_payload).sort()).toEqual(
      [
        withoutSource(approved),
        withoutSource({ ...approved, amount: 1 }),
        withoutSource({ ...approved, amount: 2 }),
        null,
        null,
      ].sort(),
    );
  });
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

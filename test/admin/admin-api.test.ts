/**
 * The operators' API: its own token, the reconciliation report, dead-letter replay, key lookup,
 * merchant keys, retention. Every mutation leaves an admin_audit row (test/security/admin-audit.test.ts
 * shows that a change whose audit row fails does not commit).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { jobIdFor, openLedgerQueue } from '../../src/outbox/queue';
import { Redis } from 'ioredis';
import { createTestEnvironment, startTestGateway, type TestEnvironment, type TestGateway } from '../helpers/gateway';
import { createCharge } from '../helpers/http';
import { expectLedgerConsistent, waitFor, waitForLedgerToCatchUp } from '../helpers/ledger';
import { waitForJobToFinish } from '../helpers/waits';

const adminToken = 'admin-token-for-tests-0123456789';
let environment: TestEnvironment;
let gateway: TestGateway;

const admin = <Data = Record<string, unknown>>(
  query: string,
  variables: Record<string, unknown> = {},
  token = adminToken,
) =>
  fetch(`${gateway.url}/admin/graphql`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` },
    body: JSON.stringify({ query, variables }),
  }).then(async (response) => ({
    status: response.status,
    body: (await response.json()) as { data?: Data; errors?: { message: string; extensions?: { code?: string } }[] },
  }));

beforeAll(async () => {
  environment = await createTestEnvironment();
  gateway = await startTestGateway(environment, {
    ROLE: 'all',
    ADMIN_TOKEN: adminToken,
    MERCHANT_CACHE_TTL_MS: '0',
    IDEMPOTENCY_RETENTION_HOURS: '1',
    IDEMPOTENCY_PURGE_BATCH_SIZE_MAX: '3',
  });
});
afterAll(async () => {
  await gateway?.stop();
  await environment?.cleanup();
});

describe('admin authentication', () => {
  it('is off (404) when no admin token is configured', async () => {
    const plain = await startTestGateway(environment, { ROLE: 'api' });
    try {
      const response = await fetch(`${plain.url}/admin/graphql`, {
        method: 'POST',
        headers: { authorization: `Bearer ${adminToken}` },
      });
      expect(response.status).toBe(404);
    } finally {
      await plain.stop();
    }
  });

  it('answers 401 to a wrong token, 403 to a merchant key, and data to the admin token', async () => {
    expect((await admin('{ outboxStatus { backlog } }', {}, 'wrong-token')).status).toBe(401);
    const merchant = await admin('{ outboxStatus { backlog } }', {}, gateway.apiKey);
    expect(merchant.status).toBe(403);
    expect(merchant.body.errors?.[0]?.extensions?.code).toBe('FORBIDDEN');
    const ok = await admin('{ outboxStatus { backlog oldestUnpublishedAgeSeconds publishedLastMinute } }');
    expect(ok.status).toBe(200);
    expect(ok.body.data).toMatchObject({ outboxStatus: { backlog: expect.any(Number) } });
  });
});

describe('merchant keys', () => {
  it('creates a merchant whose key works once shown, rotates and revokes it, and audits each', async () => {
    const created = await admin<{ createMerchant: { merchant: { id: string }; apiKey: string } }>(
      'mutation { createMerchant(name: "Admin-made") { merchant { id name hasApiKey } apiKey } }',
    );
    const { merchant, apiKey } = created.body.data!.createMerchant;
    expect(
      (await createCharge(gateway.url, apiKey, 'admin-k1', { amount: 100, currency: 'USD', source: 'tok_visa' }))
        .status,
    ).toBe(200);

    const rotated = await admin<{ rotateApiKey: { apiKey: string } }>(
      `mutation { rotateApiKey(merchantId: "${merchant.id}") { apiKey } }`,
    );
    const newKey = rotated.body.data!.rotateApiKey.apiKey;
    expect(
      (await createCharge(gateway.url, apiKey, 'admin-k2', { amount: 100, currency: 'USD', source: 'tok_visa' }))
        .status,
    ).toBe(401);
    expect(
      (await createCharge(gateway.url, newKey, 'admin-k2', { amount: 100, currency: 'USD', source: 'tok_visa' }))
        .status,
    ).toBe(200);

    expect((await admin(`mutation { revokeApiKey(merchantId: "${merchant.id}") }`)).body.data).toEqual({
      revokeApiKey: true,
    });
    expect(
      (await createCharge(gateway.url, newKey, 'admin-k3', { amount: 100, currency: 'USD', source: 'tok_visa' }))
        .status,
    ).toBe(401);
    const missing = await admin('mutation { revokeApiKey(merchantId: "mer_nobody") }');
    expect(missing.body.errors?.[0]?.extensions?.code).toBe('NOT_FOUND');

    const { rows } = await environment.database.pool.query<{ action: string; actor: string; result: string }>(
      'SELECT action, actor, result FROM admin_audit ORDER BY id',
    );
    expect(rows.map((row) => row.action)).toEqual(
      expect.arrayContaining(['createMerchant', 'rotateApiKey', 'revokeApiKey']),
    );
    expect(rows.every((row) => row.actor.startsWith('admin:') && !row.actor.includes(adminToken))).toBe(true);
    expect(rows.some((row) => row.action === 'revokeApiKey' && row.result.includes('NOT_FOUND'))).toBe(true);
    expect(rows.some((row) => row.result.includes(apiKey) || row.result.includes(newKey))).toBe(false);
  });
});

describe('reconciliation', () => {
  it('reports clean after a clean run, and names a planted inconsistency', async () => {
    for (const index of [1, 2, 3]) {
      await createCharge(gateway.url, gateway.apiKey, `recon-${index}`, {
        amount: 500 + index,
        currency: 'EUR',
        source: 'tok_visa',
      });
    }
    await waitForLedgerToCatchUp(environment.database);
    const query =
      '{ reconciliation { chargesSucceeded outboxEvents inboxEvents ledgerTransactions missingLedgerTransactions duplicateLedgerTransactions balanced } }';
    const clean = await admin<{ reconciliation: Record<string, unknown> }>(query);
    expect(clean.body.data?.reconciliation).toMatchObject({
      missingLedgerTransactions: [],
      duplicateLedgerTransactions: [],
      balanced: true,
    });
    await expectLedgerConsistent(environment.database);

    // Plant one: delete a ledger transaction (the ledger refuses deletes, so bypass its triggers
    // in this test's own database, as only a superuser could).
    const victim = await environment.database.pool.connect();
    const { rows } = await victim.query<{ id: string; charge_id: string }>(
      'SELECT id::text, charge_id FROM ledger_transactions ORDER BY id DESC LIMIT 1',
    );
    await victim.query("SET session_replication_role = 'replica'");
    await victim.query('DELETE FROM ledger_entries WHERE transaction_id = $1', [rows[0]!.id]);
    await victim.query('DELETE FROM ledger_transactions WHERE id = $1', [rows[0]!.id]);
    await victim.query("SET session_replication_role = 'origin'");
    victim.release();

    const planted = await admin<{ reconciliation: { missingLedgerTransactions: string[] } }>(query);
    expect(planted.body.data?.reconciliation.missingLedgerTransactions).toEqual([rows[0]!.charge_id]);
  });
});

describe('dead letters', () => {
  it('lists a dead letter and replays it through the admin mutation: applied once', async () => {
    const charge = await createCharge(gateway.url, gateway.apiKey, 'dead-1', {
      amount: 777,
      currency: 'USD',
      source: 'tok_visa',
    });
    const chargeId = String(charge.body.data?.createCharge?.id);
    await waitForLedgerToCatchUp(environment.database);
    const { rows } = await environment.database.pool.query<{ id: string; event_uid: string; payload: string }>(
      'SELECT id::text, event_uid::text, payload FROM outbox_events WHERE aggregate_id = $1',
      [chargeId],
    );
    // Simulate a letter dead after the ledger lost the effect: remove the posting, then dead-letter a copy.
    const client = await environment.database.pool.connect();
    await client.query("SET session_replication_role = 'replica'");
    await client.query(
      'DELETE FROM ledger_entries WHERE transaction_id IN (SELECT id FROM ledger_transactions WHERE charge_id = $1)',
      [chargeId],
    );
    await client.query('DELETE FROM ledger_transactions WHERE charge_id = $1', [chargeId]);
    await client.query('DELETE FROM inbox_events WHERE event_id = $1', [rows[0]!.id]);
    await client.query("SET session_replication_role = 'origin'");
    client.release();
    await gateway.redis.del(`${environment.redisKeyPrefix}:inbox:ledger:{${jobIdFor(rows[0]!.event_uid)}}`);
    const connection = new Redis(environment.redisUrl, { maxRetriesPerRequest: null });
    const queue = openLedgerQueue(connection, { prefix: `{${environment.redisKeyPrefix}}`, attemptsMax: 5 });
    const tampered = JSON.stringify({ ...JSON.parse(rows[0]!.payload), amount: 1 });
    await queue.add(
      'charge.succeeded',
      { eventId: rows[0]!.id, eventUid: rows[0]!.event_uid, type: 'charge.succeeded', payload: tampered },
      { jobId: `${jobIdFor(rows[0]!.event_uid)}-tampered` },
    );
    await waitFor(
      async () => (await environment.database.count('SELECT count(*) FROM dead_letters')) === 1,
      10_000,
      'the dead letter',
    );

    const listed = await admin<{
      deadLetters: { edges: { node: { id: string; errorCode: string; attempts: number } }[] };
    }>(
      '{ deadLetters(first: 10) { edges { cursor node { id jobId errorCode errorMessage attempts payload } } hasNextPage } }',
    );
    const letter = listed.body.data!.deadLetters.edges[0]!.node;
    expect(letter).toMatchObject({ errorCode: 'LEDGER_AMOUNT_MISMATCH', attempts: 1 });
    await environment.database.pool.query('UPDATE dead_letters SET payload = $1 WHERE id = $2', [
      JSON.stringify({
        eventId: rows[0]!.id,
        eventUid: rows[0]!.event_uid,
        type: 'charge.succeeded',
        payload: rows[0]!.payload,
      }),
      letter.id,
    ]);
    const replayed = await admin<{ replayDeadLetter: { replayJobId: string } }>(
      `mutation { replayDeadLetter(id: "${letter.id}") { replayJobId replayedAt } }`,
    );
    expect(replayed.body.data?.replayDeadLetter.replayJobId).toBe(
      jobIdFor(rows[0]!.event_uid, { replayOf: letter.id }),
    );
    await waitFor(
      async () =>
        (await environment.database.count('SELECT count(*) FROM ledger_transactions WHERE charge_id = $1', [
          chargeId,
        ])) === 1,
      10_000,
      'the replay',
    );
    await admin(`mutation { replayDeadLetter(id: "${letter.id}") { id } }`);
    // A second replay of one dead letter reuses its job id (evt_<uid>-r<dead letter id>): BullMQ
    // ignores it while the first replay's job exists, and the inbox would anyway.
    await waitForJobToFinish(queue, jobIdFor(rows[0]!.event_uid, { replayOf: letter.id }));
    expect(
      await environment.database.count('SELECT count(*) FROM ledger_transactions WHERE charge_id = $1', [chargeId]),
    ).toBe(1);
    await queue.close();
    connection.disconnect();
  });
});

describe('idempotency keys and retention', () => {
  it('shows a key with its state and every audited attempt', async () => {
    await createCharge(gateway.url, gateway.apiKey, 'lookup-1', { amount: 42, currency: 'USD', source: 'tok_visa' });
    await createCharge(gateway.url, gateway.apiKey, 'lookup-1', { amount: 43, currency: 'USD', source: 'tok_visa' });
    // Redis-answered attempts are audited in batches: wait for both attempts' rows.
    await waitFor(
      async () =>
        (await environment.database.count(
          "SELECT count(*) FROM idempotency_audit WHERE merchant_id = $1 AND key = 'lookup-1'",
          [gateway.merchantId],
        )) >= 2,
      10_000,
      'both attempts to be audited',
    );
    const record = await admin<{
      idempotencyKey: { state: string; attempts: { outcome: string; requestPayload: string }[] };
    }>(
      `{ idempotencyKey(merchantId: "${gateway.merchantId}", key: "lookup-1") { state recoveryPoint fingerprint lockToken attempts { outcome requestPayload answeredFrom } } }`,
    );
    expect(record.body.data?.idempotencyKey.state).toBe('COMPLETED');
    expect(record.body.data?.idempotencyKey.attempts.map((attempt) => attempt.outcome)).toEqual([
      'created',
      'mismatch',
    ]);
    expect(record.body.data?.idempotencyKey.attempts[1]?.requestPayload).toContain('"amount":43');
  });

  it('purges only finished keys past retention, in batches, never one in flight; a purged key leaves a tombstone', async () => {
    for (const index of [1, 2, 3, 4, 5]) {
      await createCharge(gateway.url, gateway.apiKey, `old-${index}`, {
        amount: 10,
        currency: 'USD',
        source: 'tok_visa',
      });
    }
    await environment.database.pool.query(
      `INSERT INTO idempotency_keys (merchant_id, key, operation, fingerprint, request_payload, recovery_point, acquirer_result, locked_until, updated_at)
       VALUES ($1, 'old-in-flight', 'createCharge', repeat('b', 64), '{}', 'AUTHORIZED', '{}', now() - interval '3 hours', now() - interval '3 hours')`,
      [gateway.merchantId],
    );
    await environment.database.pool.query(
      "UPDATE idempotency_keys SET updated_at = now() - interval '2 hours' WHERE key LIKE 'old-%'",
    );
    const before = await environment.database.count('SELECT count(*) FROM idempotency_keys');
    // Requests keep coming while the purge runs.
    const [purged, ...during] = await Promise.all([
      admin<{ purgeExpiredIdempotencyKeys: number }>('mutation { purgeExpiredIdempotencyKeys }'),
      ...Array.from({ length: 10 }, (_, index) =>
        createCharge(gateway.url, gateway.apiKey, `during-purge-${index}`, {
          amount: 10,
          currency: 'USD',
          source: 'tok_visa',
        }),
      ),
    ]);
    expect(purged.body.data?.purgeExpiredIdempotencyKeys).toBe(5);
    expect(during.every((answer) => answer.status === 200)).toBe(true);
    expect(await environment.database.count('SELECT count(*) FROM idempotency_keys')).toBe(before - 5 + 10);
    expect(await environment.database.count("SELECT count(*) FROM idempotency_keys WHERE key = 'old-in-flight'")).toBe(
      1,
    );
    expect(
      await environment.database.count('SELECT count(*) FROM charges WHERE idempotency_key_id IS NULL'),
    ).toBeGreaterThanOrEqual(5);
    // Its Redis answer would have expired with the retention; with it gone, the tombstone answers.
    await gateway.redis.del(`${environment.redisKeyPrefix}:idem:{${gateway.merchantId}}:old-1`);
    const again = await createCharge(gateway.url, gateway.apiKey, 'old-1', {
      amount: 10,
      currency: 'USD',
      source: 'tok_visa',
    });
    expect(again.status).toBe(422);
    expect(again.body.errors?.[0]?.extensions?.code).toBe('IDEMPOTENCY_KEY_EXPIRED');
    expect(await environment.database.count('SELECT count(*) FROM idempotency_tombstones')).toBe(5);
    // Each batch (of 3) committed with its own audit row: 3 + 2 keys.
    const { rows: audited } = await environment.database.pool.query<{ result: string }>(
      "SELECT result FROM admin_audit WHERE action = 'purgeExpiredIdempotencyKeys' ORDER BY id",
    );
    expect(audited.map((row) => JSON.parse(row.result) as unknown)).toEqual([
      { purgedKeys: 3, batch: 1 },
      { purgedKeys: 2, batch: 2 },
    ]);
  });
});

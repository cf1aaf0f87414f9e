/**
 * The simulator's checks must be able to fail: each planted violation (in a transcript, or in
 * rows of a real database) is reported under its invariant, and a clean one reports nothing.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { inject } from 'vitest';
import { checkRows, checkTranscripts } from '../../scripts/simulation/invariants';
import type { ChargeOperation } from '../../scripts/simulation/plan';
import type { AttemptLog, OperationRecord, SendRecord } from '../../scripts/simulation/workload';
import { createTestDatabase, type TestDatabase } from '../helpers/database';

const limits = { leaseSeconds: 3 };
const body = JSON.stringify({ amount: 500, currency: 'EUR', source: 'tok_visa' });
const otherBody = JSON.stringify({ amount: 499, currency: 'EUR', source: 'tok_visa' });
const charge = { id: 'ch_1', amount: 500, currency: 'EUR', status: 'SUCCEEDED' };

function attempt(status: AttemptLog['status'], extra: Partial<AttemptLog> = {}): AttemptLog {
  return {
    atMs: 0,
    via: 'api-1',
    attempt: 1,
    status,
    code: 'ok',
    retryAfter: null,
    replayed: null,
    id: null,
    data: null,
    ...extra,
  };
}
const answered = (data = charge) => attempt(200, { id: data.id, data });
const send = (label: string, attempts: AttemptLog[], inputJson = body): SendRecord => ({ label, inputJson, attempts });

function record(sends: SendRecord[]): OperationRecord {
  const operation: ChargeOperation = {
    index: 0,
    key: 'sim-0-0',
    startMs: 0,
    api: 0,
    delivery: 'concurrent',
    comesBack: true,
    inputJson: body,
    kind: 'charge',
    source: 'tok_visa',
    reuse: { when: 'during', delayMs: 0 },
    reuseInputJson: otherBody,
  };
  return { operation, sends, chargeId: null, skipped: null, done: true };
}

const invariantsOf = (records: OperationRecord[]) => checkTranscripts(records, limits).map((each) => each.invariant);

describe('the transcript checks', () => {
  it('report nothing for a clean operation: a 503 with Retry-After, a replay, a reuse refused', () => {
    const clean = record([
      send('concurrent-a', [attempt(503, { code: 'TRANSIENT_FAILURE', retryAfter: '1' }), answered()]),
      send('concurrent-b', [attempt(409, { code: 'IDEMPOTENCY_KEY_IN_USE', retryAfter: '2' }), answered()]),
      send('reuse', [attempt(422, { code: 'IDEMPOTENCY_KEY_REUSED' })], otherBody),
    ]);
    expect(invariantsOf([clean])).toEqual([]);
  });

  it('report a 500, a 503 without Retry-After, a 409 that asks for more than 2 s, and a 429', () => {
    const bad = record([
      send('concurrent-a', [attempt(500, { code: 'INTERNAL' }), attempt(503, { code: 'TRANSIENT_FAILURE' })]),
      send('concurrent-b', [
        attempt(409, { code: 'IDEMPOTENCY_KEY_IN_USE', retryAfter: '15' }),
        attempt(429, { code: 'RATE_LIMITED', retryAfter: '58' }),
      ]),
    ]);
    expect(invariantsOf([bad])).toEqual([
      'no request is answered 500',
      'every 409 and 503 carries Retry-After',
      'Retry-After is a small number of seconds (409: 1–2; 503: at most the lease)',
      'a merchant within its limits, with a valid key, is never refused 429',
    ]);
  });

  it('report two charges for one key, and a replay that differs from the first answer', () => {
    const twoCharges = record([
      send('concurrent-a', [answered()]),
      send('concurrent-b', [answered({ ...charge, id: 'ch_2' })]),
    ]);
    const changedReplay = record([
      send('concurrent-a', [answered()]),
      send('concurrent-b', [answered({ ...charge, status: 'FAILED' })]),
    ]);
    expect(invariantsOf([twoCharges])).toContain('every send of one key gets the same answer, byte for byte');
    expect(invariantsOf([changedReplay])).toContain('every send of one key gets the same answer, byte for byte');
  });

  it('report a reused key that was answered, both bodies accepted, and both bodies refused', () => {
    const reuseAnswered = record([
      send('first', [answered()]),
      send('reuse', [attempt(400, { code: 'BAD_USER_INPUT' })], otherBody),
    ]);
    const bothAccepted = record([send('first', [answered()]), send('reuse', [answered()], otherBody)]);
    const refused = attempt(422, { code: 'IDEMPOTENCY_KEY_REUSED' });
    const bothRefused = record([send('first', [refused]), send('reuse', [refused], otherBody)]);
    expect(invariantsOf([reuseAnswered])).toEqual(['a key reused with another body is refused with 422']);
    expect(invariantsOf([bothAccepted])).toContain('one key accepts one body');
    expect(invariantsOf([bothRefused])).toEqual(['a key refuses only the bodies it was not taken with']);
  });
});

describe('the row checks, on a real database', () => {
  let database: TestDatabase;
  beforeAll(async () => {
    database = await createTestDatabase(inject('databaseUrl'));
    await database.pool.query(`INSERT INTO merchants (id, name) VALUES ('mer_sim', 'Simulation')`);
  });
  afterAll(async () => {
    await database?.drop();
  });

  it('report nothing on an empty database', async () => {
    expect(await checkRows(database.pool)).toEqual([]);
  });

  it('report a decline the acquirer made that no failed charge records', async () => {
    await database.pool.query(
      `INSERT INTO acquirer_authorizations (idempotency_key, authorization_id, kind, amount, currency, source, approved, decline_code)
       VALUES ('idem_999', 'auth_declined', 'charge', 100, 'EUR', 'tok_chargeDeclined', false, 'card_declined')`,
    );
    const found = await checkRows(database.pool);
    expect(found.map((each) => each.invariant)).toEqual([
      'every decline at the acquirer has exactly one failed charge, with its decline code',
    ]);
    expect(found[0]!.rows).toMatchObject([{ idempotency_key: 'idem_999', charges: 0 }]);
    await database.pool.query(`DELETE FROM acquirer_authorizations`);
  });

  it('report a charge that no keyed request asked for', async () => {
    await database.pool.query(
      `INSERT INTO charges (id, merchant_id, amount, currency, source, status, failure_code, created_at)
       VALUES ('ch_unkeyed', 'mer_sim', 100, 'EUR', 'tok_chargeDeclined', 'FAILED', 'card_declined', now())`,
    );
    const invariants = (await checkRows(database.pool)).map((each) => each.invariant);
    expect(invariants).toContain(
      'nothing is stored but what a keyed request asked for (every charge and refund has its key)',
    );
  });
});

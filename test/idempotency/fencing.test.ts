/**
 * Fencing: a holder whose lease ran out and was taken over cannot write under it any more
 * (docs/contract.md §11). Real statements against the real database, on the database's clock.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { newChargeId } from '../../src/charges/charge';
import { recordCharge } from '../../src/charges/record-charge';
import { canonicalJson, fingerprint } from '../../src/idempotency/fingerprint';
import { claimKey, releaseKey, resolveExisting, saveRecoveryPoint } from '../../src/idempotency/key-row';
import type { HeldKey, KeyedRequest, StoredResponse } from '../../src/idempotency/types';
import { createTestEnvironment, startTestGateway, type TestEnvironment, type TestGateway } from '../helpers/gateway';

let environment: TestEnvironment;
let gateway: TestGateway;

beforeAll(async () => {
  environment = await createTestEnvironment();
  gateway = await startTestGateway(environment, { ROLE: 'api' });
});
afterAll(async () => {
  await gateway?.stop();
  await environment?.cleanup();
});

const input = { amount: 700, currency: 'USD', source: 'tok_visa', description: null, metadata: null };
const request = (key: string, body = input): KeyedRequest => ({
  merchantId: gateway.merchantId,
  key,
  operation: 'createCharge',
  fingerprint: fingerprint('createCharge', body),
  requestPayload: canonicalJson(body),
});

function record(held: HeldKey) {
  const snapshot = {
    id: newChargeId(),
    amount: 700,
    currency: 'USD',
    status: 'SUCCEEDED' as const,
    failureCode: null,
    description: null,
    metadata: null,
    createdAt: new Date().toISOString(),
  };
  const response: StoredResponse = {
    status: 200,
    code: null,
    body: JSON.stringify(snapshot),
    firstRequestAt: held.firstRequestAt,
  };
  return recordCharge(
    gateway.database.prisma,
    held,
    { merchantId: gateway.merchantId, snapshot, source: 'tok_visa', authorizationId: 'auth_fencing' },
    response,
  );
}

/** Saves the AUTHORIZED recovery point; true when the lease still held. */
async function saveAuthorized(held: HeldKey, authorization: object): Promise<boolean> {
  const next = await saveRecoveryPoint(gateway.database.prisma, held, 'AUTHORIZED', JSON.stringify(authorization));
  return next !== undefined;
}

describe('when a lease ran out and another request took the key over', () => {
  it('refuses every write by the old holder, and lets the new holder record one charge', async () => {
    const db = gateway.database.prisma;
    // A lease far longer than any pause a loaded machine makes, so "still valid" cannot race.
    const holderA = await claimKey(db, request('fenced'), 60_000);
    expect(holderA).toBeDefined();

    // While A's lease is valid, nobody takes over.
    expect((await resolveExisting(db, request('fenced'), 60_000, 72)).outcome).toBe('in_progress');
    // Then it runs out: moved into the past on the database's clock, the clock the takeover reads.
    await environment.database.pool.query(
      "UPDATE idempotency_keys SET locked_until = now() - interval '1 millisecond' WHERE key = 'fenced'",
    );

    const takeover = await resolveExisting(db, request('fenced'), 60_000, 72);
    expect(takeover.outcome).toBe('resumed');
    if (takeover.outcome !== 'resumed') return;
    const holderB = takeover.held;
    expect(BigInt(holderB.lockToken)).toBe(BigInt(holderA!.lockToken) + 1n);

    // B holds a valid lease: a third request is in progress; another body is a mismatch.
    expect((await resolveExisting(db, request('fenced'), 60_000, 72)).outcome).toBe('in_progress');
    expect((await resolveExisting(db, request('fenced', { ...input, amount: 1 }), 60_000, 72)).outcome).toBe(
      'mismatch',
    );

    // A, slow and unaware, tries every write it could make: each is refused.
    expect(await saveAuthorized(holderA!, { authorizationId: 'a', approved: true, declineCode: null })).toBe(false);
    expect(await record(holderA!)).toBe(false);
    expect(await releaseKey(db, request('fenced'), holderA!)).toBe(false);
    expect(await environment.database.count('SELECT count(*) FROM charges')).toBe(0);
    expect(await environment.database.count('SELECT count(*) FROM outbox_events')).toBe(0);

    // B commits.
    expect(await saveAuthorized(holderB, { authorizationId: 'b', approved: true, declineCode: null })).toBe(true);
    expect(await record({ ...holderB, recoveryPoint: 'AUTHORIZED' })).toBe(true);
    expect(await environment.database.count('SELECT count(*) FROM charges')).toBe(1);
    expect(await environment.database.count('SELECT count(*) FROM outbox_events')).toBe(1);
    expect((await resolveExisting(db, request('fenced'), 60_000, 72)).outcome).toBe('replayed');
  });
});

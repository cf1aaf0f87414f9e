/**
 * refundCharge: the same idempotency semantics as createCharge, with one more recovery point.
 *
 * Takes: a merchant, the client's key and validated input (the charge exists and is the merchant's:
 * the transport answered 404 otherwise, storing nothing).
 * Phases while this request holds the lease:
 *   STARTED     one transaction: lock the charge row (FOR UPDATE), decide, and either
 *               - store a final refusal (CHARGE_NOT_REFUNDABLE, REFUND_EXCEEDS_CHARGE): key COMPLETED
 *                 with the refusal, replayed like any outcome; or
 *               - reserve the amount on the charge and move the key to RESERVED.
 *               Concurrent refunds serialise on the row lock, so together they never exceed it.
 *   RESERVED    call the acquirer with `idem_<row id>` (no transaction open), save its answer
 *               → AUTHORIZED. A transient failure releases the key; the reservation stays with it.
 *   AUTHORIZED  one statement: refund row + `refund.succeeded` outbox event + charge (reserved →
 *               refunded) + key COMPLETED. A declined refund releases its reservation instead.
 */
import { randomBytes } from 'node:crypto';
import { GatewayError } from '../errors';
import type { Acquirer, Authorization } from '../acquirer/acquirer';
import type { IdempotencyStore } from '../idempotency/idempotency-store';
import { saveAuthorized } from '../idempotency/postgres-store';
import {
  acquirerKeyFor,
  keyedRequest,
  type HeldKey,
  type KeyedRequest,
  type StoredResponse,
} from '../idempotency/types';
import type { Database, Transaction } from '../platform/database';
import type { Logger } from '../platform/logger';
import {
  LostLeaseError,
  WaitForClient,
  executeKeyed,
  runPhases,
  type KeyedResult,
  type PhaseResult,
} from './keyed-operation';
import type { RefundChargeInput } from './validation';
import { parseStoredJson } from '../platform/stored-json';
import { refundChargeInputSchema } from './validation';
import { refundProgressSchema, type RefundProgress, type RefundSnapshot } from './stored-payloads';

export type { RefundSnapshot } from './stored-payloads';

export interface RefundServiceDependencies {
  readonly db: Database;
  readonly idempotency: IdempotencyStore;
  readonly acquirer: Acquirer;
  readonly logger: Logger;
  readonly leaseMs: number;
}

type AuthorizationSource = (held: HeldKey, progress: RefundProgress) => Promise<Authorization | null>;

export class RefundService {
  constructor(private readonly deps: RefundServiceDependencies) {}

  keyedRequest(merchantId: string, key: string, input: RefundChargeInput): KeyedRequest {
    return keyedRequest('refundCharge', merchantId, key, input);
  }

  /** 404 NOT_FOUND for an unknown or foreign charge, before the key is taken (nothing stored). */
  async assertChargeVisible(merchantId: string, chargeId: string): Promise<void> {
    const charge = await this.deps.db.charge.findFirst({ where: { id: chargeId, merchantId }, select: { id: true } });
    if (charge === null) throw new GatewayError('NOT_FOUND', `No charge ${chargeId}.`, { field: 'input.chargeId' });
  }

  /** `waitMs`: how long to wait for an in-flight twin with the same key (docs/contract.md §2). */
  refundCharge(request: KeyedRequest, input: RefundChargeInput, waitMs: number): Promise<KeyedResult> {
    return executeKeyed(this.deps, request, waitMs, (held) =>
      runPhases(held, (current) => this.phaseFor(request.merchantId, current, input, this.authorizeWithAcquirer)),
    );
  }

  /** For the completer: finishes a refund whose client never came back, never authorizing anew. */
  async finishAbandoned(merchantId: string, held: HeldKey): Promise<StoredResponse | undefined> {
    const input = parseStoredJson(refundChargeInputSchema, held.requestPayload, 'refund request');
    if (held.recoveryPoint === 'STARTED') return undefined; // Nothing reserved, nothing authorized.
    try {
      return await runPhases(held, (current) => this.phaseFor(merchantId, current, input, this.lookUpAuthorization));
    } catch (error) {
      if (error instanceof WaitForClient) return undefined;
      throw error;
    }
  }

  /**
   * For the completer, at RESERVED when the acquirer recorded nothing under the derived key: gives
   * the reserved amount back to the charge and the key back to STARTED (lease cleared), in one
   * statement fenced by the lock token. False when the lease was lost meanwhile.
   */
  async releaseReservation(held: HeldKey): Promise<boolean> {
    const progress = readProgress(held);
    const input = parseStoredJson(refundChargeInputSchema, held.requestPayload, 'refund request');
    const rows = await this.deps.db.$queryRaw<{ released: number }[]>`
      WITH released AS (
        UPDATE idempotency_keys
           SET recovery_point = 'STARTED', acquirer_result = NULL, locked_until = NULL, updated_at = now()
         WHERE id = ${held.id}::bigint AND lock_token = ${held.lockToken}::bigint
           AND state = 'IN_PROGRESS' AND recovery_point = 'RESERVED'
        RETURNING id
      ), charge AS (
        UPDATE charges SET amount_reserved = amount_reserved - ${progress.amount}
         WHERE id = ${input.chargeId} AND EXISTS (SELECT 1 FROM released)
        RETURNING id
      )
      SELECT count(*)::int AS released FROM charge`;
    return rows[0]?.released === 1;
  }

  private phaseFor(
    merchantId: string,
    held: HeldKey,
    input: RefundChargeInput,
    authorizationSource: AuthorizationSource,
  ): (held: HeldKey) => Promise<PhaseResult> {
    switch (held.recoveryPoint) {
      case 'STARTED':
        return (current) => this.reservePhase(merchantId, current, input);
      case 'RESERVED':
        return (current) => this.authorizePhase(current, authorizationSource);
      case 'AUTHORIZED':
        return (current) => this.recordPhase(merchantId, current, input);
    }
  }

  /** STARTED → RESERVED, or a stored final refusal. One transaction, holding the charge row's lock. */
  private async reservePhase(merchantId: string, held: HeldKey, input: RefundChargeInput): Promise<PhaseResult> {
    return this.deps.db.$transaction(async (tx) => {
      const charges = await tx.$queryRaw<
        {
          status: string;
          amount: number;
          amount_refunded: number;
          amount_reserved: number;
          currency: string;
          authorization_id: string | null;
        }[]
      >`
        SELECT status, amount, amount_refunded, amount_reserved, currency, authorization_id
          FROM charges WHERE id = ${input.chargeId} AND merchant_id = ${merchantId}
           FOR UPDATE`;
      const charge = charges[0];
      if (charge === undefined) throw new GatewayError('NOT_FOUND', `No charge ${input.chargeId}.`);
      if (charge.status !== 'SUCCEEDED' || charge.authorization_id === null) {
        return this.refuse(
          tx,
          held,
          'CHARGE_NOT_REFUNDABLE',
          `Charge ${input.chargeId} did not succeed; there is nothing to refund.`,
        );
      }
      const left = charge.amount - charge.amount_refunded - charge.amount_reserved;
      const amount = input.amount ?? left;
      if (amount < 1 || amount > left) {
        return this.refuse(
          tx,
          held,
          'REFUND_EXCEEDS_CHARGE',
          `A refund of ${amount} exceeds what is left of charge ${input.chargeId} (${left} of ${charge.amount}).`,
        );
      }
      const progress: RefundProgress = {
        amount,
        currency: charge.currency.trim(),
        chargeAuthorizationId: charge.authorization_id,
      };
      const acquirerResult = JSON.stringify(progress);
      const reserved = await tx.$executeRaw`
        UPDATE idempotency_keys SET recovery_point = 'RESERVED', acquirer_result = ${acquirerResult}, updated_at = now()
         WHERE id = ${held.id}::bigint AND lock_token = ${held.lockToken}::bigint AND state = 'IN_PROGRESS'`;
      if (reserved !== 1) throw new LostLeaseError(); // Rolls the reservation back with it.
      await tx.$executeRaw`UPDATE charges SET amount_reserved = amount_reserved + ${amount} WHERE id = ${input.chargeId}`;
      return { next: { ...held, recoveryPoint: 'RESERVED', acquirerResult } };
    });
  }

  /** Completes the key with a final refusal, stored and replayed like any outcome. */
  private async refuse(
    tx: Transaction,
    held: HeldKey,
    code: 'CHARGE_NOT_REFUNDABLE' | 'REFUND_EXCEEDS_CHARGE',
    message: string,
  ): Promise<PhaseResult> {
    const response: StoredResponse = {
      status: 400,
      code,
      body: JSON.stringify({ message }),
      firstRequestAt: held.firstRequestAt,
    };
    const completed = await tx.$executeRaw`
      UPDATE idempotency_keys
         SET state = 'COMPLETED', recovery_point = 'COMPLETED', locked_until = NULL, response_status = ${response.status},
             response_code = ${code}, response_body = ${response.body}, completed_at = now(), updated_at = now()
       WHERE id = ${held.id}::bigint AND lock_token = ${held.lockToken}::bigint AND state = 'IN_PROGRESS'`;
    if (completed !== 1) throw new LostLeaseError();
    return { respond: response };
  }

  /** RESERVED → AUTHORIZED: the acquirer call, with no transaction open. */
  private async authorizePhase(held: HeldKey, authorizationSource: AuthorizationSource): Promise<PhaseResult> {
    const progress = readProgress(held);
    const authorization = await authorizationSource(held, progress);
    if (authorization === null) return { wait: true };
    const acquirerResult = JSON.stringify({ ...progress, authorization });
    if (!(await saveAuthorized(this.deps.db, held, acquirerResult))) throw new LostLeaseError();
    return { next: { ...held, recoveryPoint: 'AUTHORIZED', acquirerResult } };
  }

  /** AUTHORIZED → COMPLETED: refund, its event, the charge's amounts and the key, in one statement. */
  private async recordPhase(merchantId: string, held: HeldKey, input: RefundChargeInput): Promise<PhaseResult> {
    const progress = readProgress(held);
    const authorization = progress.authorization;
    if (authorization === undefined) throw new Error('invariant violated: AUTHORIZED refund without authorization');
    const snapshot: RefundSnapshot = {
      id: `re_${randomBytes(12).toString('hex')}`,
      chargeId: input.chargeId,
      amount: progress.amount,
      currency: progress.currency,
      status: authorization.approved ? 'SUCCEEDED' : 'FAILED',
      failureCode: authorization.approved ? null : (authorization.declineCode ?? 'refund_declined'),
      reason: input.reason,
      createdAt: new Date().toISOString(),
    };
    const response: StoredResponse = {
      status: 200,
      code: null,
      body: JSON.stringify(snapshot),
      firstRequestAt: held.firstRequestAt,
    };
    const succeeded = snapshot.status === 'SUCCEEDED';
    const eventPayload = JSON.stringify({
      version: 1,
      refundId: snapshot.id,
      chargeId: snapshot.chargeId,
      merchantId,
      amount: snapshot.amount,
      currency: snapshot.currency,
      authorizationId: authorization.approved ? authorization.authorizationId : null,
      createdAt: snapshot.createdAt,
    });
    const rows = await this.deps.db.$queryRaw<{ completed: number }[]>`
      WITH completed AS (
        UPDATE idempotency_keys
           SET state = 'COMPLETED', recovery_point = 'COMPLETED', locked_until = NULL, response_status = 200,
               response_code = NULL, response_body = ${response.body}, completed_at = now(), updated_at = now()
         WHERE id = ${held.id}::bigint AND lock_token = ${held.lockToken}::bigint AND state = 'IN_PROGRESS'
        RETURNING id
      ), refund AS (
        INSERT INTO refunds (id, charge_id, merchant_id, idempotency_key_id, amount, currency, status, failure_code,
                             authorization_id, reason, created_at)
        SELECT ${snapshot.id}, ${snapshot.chargeId}, ${merchantId}, completed.id, ${snapshot.amount}, ${snapshot.currency},
               ${snapshot.status}, ${snapshot.failureCode}, ${authorization.approved ? authorization.authorizationId : null},
               ${snapshot.reason}, ${snapshot.createdAt}::timestamptz
          FROM completed
        RETURNING id
      ), charge AS (
        UPDATE charges
           SET amount_reserved = amount_reserved - ${snapshot.amount},
               amount_refunded = amount_refunded + ${succeeded ? snapshot.amount : 0}
         WHERE id = ${snapshot.chargeId} AND EXISTS (SELECT 1 FROM refund)
        RETURNING id
      ), event AS (
        INSERT INTO outbox_events (event_type, aggregate_id, payload)
        SELECT 'refund.succeeded', refund.id, ${eventPayload} FROM refund WHERE ${succeeded}
        RETURNING id
      )
      SELECT (SELECT count(*) FROM charge)::int AS completed`;
    if (rows[0]?.completed !== 1) throw new LostLeaseError();
    return { respond: response };
  }

  private readonly authorizeWithAcquirer: AuthorizationSource = (held, progress) =>
    this.deps.acquirer.authorize({
      idempotencyKey: acquirerKeyFor(held.id),
      kind: 'refund',
      amount: progress.amount,
      currency: progress.currency,
      source: progress.chargeAuthorizationId,
    });

  private readonly lookUpAuthorization: AuthorizationSource = (held) =>
    this.deps.acquirer.findAuthorization(acquirerKeyFor(held.id));
}

function readProgress(held: HeldKey): RefundProgress {
  if (held.acquirerResult === null) throw new Error('invariant violated: a reserved refund records its progress');
  return parseStoredJson(refundProgressSchema, held.acquirerResult, 'refund progress');
}

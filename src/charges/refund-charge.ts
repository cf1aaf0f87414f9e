/**
 * refundCharge: the same idempotency semantics as createCharge, declared as a phase table with one
 * more recovery point, run by the same loop (`runPhases`).
 *
 * Takes: a merchant, the client's key and validated input (the charge exists and is the merchant's:
 * the transport answered 404 otherwise, storing nothing).
 * Phases while this request holds the lease:
 *   STARTED     one transaction: lock the charge row (FOR UPDATE), decide, and either
 *               - `completeKey` with a final refusal (CHARGE_NOT_REFUNDABLE, REFUND_EXCEEDS_CHARGE),
 *                 replayed like any outcome; or
 *               - `saveRecoveryPoint` → RESERVED, reserving the amount on the charge in the same
 *                 statement. Concurrent refunds serialise on the row lock, so together they never
 *                 exceed it.
 *   RESERVED    call the acquirer with `idem_<row id>` (no transaction open), `saveRecoveryPoint`
 *               → AUTHORIZED. A transient failure releases the key; the reservation stays with it.
 *   AUTHORIZED  `completeKey` with the refund's rows in one statement: refund row +
 *               `refund.succeeded` outbox event + charge (reserved → refunded; a declined refund
 *               releases its reservation instead).
 * Rows written: idempotency_keys (through src/idempotency/key-row.ts only), refunds, charges'
 * amount_reserved / amount_refunded, outbox_events.
 * Outcomes: a stored response (created, resumed, replayed; a success or a stored refusal), or a
 * GatewayError as for createCharge, and NOT_FOUND (404) for a charge gone from under the key.
 * The completer runs the same table (looking the acquirer's answer up, never asking anew); at
 * RESERVED with nothing refunded it gives the reservation back (`releaseReservation`).
 */
import { randomBytes } from 'node:crypto';
import { GatewayError } from '../errors';
import type { Acquirer, Authorization } from '../acquirer/acquirer';
import type { IdempotencyStore } from '../idempotency/idempotency-store';
import { completeKey, releaseReservedKey, saveRecoveryPoint, type FollowUp } from '../idempotency/key-row';
import {
  acquirerKeyFor,
  keyedRequest,
  type HeldKey,
  type KeyedRequest,
  type StoredResponse,
} from '../idempotency/types';
import { sql, type Database, type Transaction } from '../platform/database';
import type { Logger } from '../platform/logger';
import {
  LostLeaseError,
  executeKeyed,
  runPhases,
  type KeyedResult,
  type PhaseResult,
  type PhaseTable,
  type PhasesOutcome,
} from './keyed-operation';
import type { RefundChargeInput } from './validation';
import { parseStoredJson } from '../platform/stored-json';
import { refundChargeInputSchema } from './validation';
import { refundProgressSchema, type RefundProgress, type RefundSnapshot } from './stored-payloads';

export type { RefundSnapshot } from './stored-payloads';

/** A refund in flight normally settles within a second; a stuck one within the lease and the completer's grace. */
const refundInProgressRetryAfterSeconds = 2;

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
    return executeKeyed(this.deps, request, waitMs, this.phases(request.merchantId, input, this.authorizeWithAcquirer));
  }

  /** For the completer: finishes a refund whose client never came back, never refunding anew. */
  finishAbandoned(merchantId: string, held: HeldKey): Promise<PhasesOutcome> {
    const input = parseStoredJson(refundChargeInputSchema, held.requestPayload, 'refund request');
    return runPhases(held, {
      ...this.phases(merchantId, input, this.lookUpAuthorization),
      // Nothing reserved, nothing refunded: the client's retry decides.
      STARTED: async () => ({ wait: true }),
    });
  }

  /**
   * For the completer, at RESERVED when the acquirer recorded nothing under the derived key: gives
   * the reserved amount back to the charge and the key back to STARTED (lease cleared), in one
   * statement fenced by the lock token. False when the lease was lost meanwhile.
   */
  releaseReservation(held: HeldKey): Promise<boolean> {
    const progress = readProgress(held);
    const input = parseStoredJson(refundChargeInputSchema, held.requestPayload, 'refund request');
    return releaseReservedKey(this.deps.db, held, changeReservation(input.chargeId, -progress.amount));
  }

  /** The refund's recovery points and what runs at each. */
  private phases(merchantId: string, input: RefundChargeInput, authorizationSource: AuthorizationSource): PhaseTable {
    return {
      STARTED: (held) => this.reservePhase(merchantId, held, input),
      RESERVED: (held) => this.authorizePhase(held, authorizationSource),
      AUTHORIZED: (held) => this.recordPhase(merchantId, held, input),
    };
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
      // A refund reserved once and given back by the completer asks for the same amount again: the
      // acquirer may have recorded the first ask under the same derived key (docs/idempotency.md).
      const amount = input.amount ?? previousAmount(held) ?? left;
      const notRefunded = charge.amount - charge.amount_refunded;
      const blockedByReservation = charge.amount_reserved > 0 && (input.amount ?? 0) <= notRefunded;
      if ((amount < 1 || amount > left) && blockedByReservation) {
        // Only another refund's reservation stands in the way, and it may yet be given back (its
        // acquirer call failed, or its client vanished): not a final answer. Nothing is stored.
        throw new GatewayError(
          'REFUND_IN_PROGRESS',
          `Another refund of charge ${input.chargeId} is in flight (${charge.amount_reserved} reserved); retry with the same Idempotency-Key.`,
          { retryAfterSeconds: refundInProgressRetryAfterSeconds, releasesKey: true },
        );
      }
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
      const next = await saveRecoveryPoint(
        tx,
        held,
        'RESERVED',
        JSON.stringify(progress),
        changeReservation(input.chargeId, amount),
      );
      if (next === undefined) throw new LostLeaseError(); // Rolls the transaction back with it.
      return { next };
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
    if (!(await completeKey(tx, held, response))) throw new LostLeaseError();
    return { respond: response };
  }

  /** RESERVED → AUTHORIZED: the acquirer call, with no transaction open. */
  private async authorizePhase(held: HeldKey, authorizationSource: AuthorizationSource): Promise<PhaseResult> {
    const progress = readProgress(held);
    const authorization = await authorizationSource(held, progress);
    if (authorization === null) return { wait: true };
    const next = await saveRecoveryPoint(
      this.deps.db,
      held,
      'AUTHORIZED',
      JSON.stringify({ ...progress, authorization }),
    );
    if (next === undefined) throw new LostLeaseError();
    return { next };
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
    const refundRows: FollowUp = {
      steps: sql`
        refund AS (
          INSERT INTO refunds (id, charge_id, merchant_id, idempotency_key_id, amount, currency, status, failure_code,
                               authorization_id, reason, created_at)
          SELECT ${snapshot.id}, ${snapshot.chargeId}, ${merchantId}, key_row.id, ${snapshot.amount}, ${snapshot.currency},
                 ${snapshot.status}, ${snapshot.failureCode}, ${authorization.approved ? authorization.authorizationId : null},
                 ${snapshot.reason}, ${snapshot.createdAt}::timestamptz
            FROM key_row
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
        )`,
      done: sql`(SELECT count(*) FROM charge) = 1`,
    };
    if (!(await completeKey(this.deps.db, held, response, refundRows))) throw new LostLeaseError();
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

/** The amount a refund reserved before the completer gave its reservation back, if it did. */
function previousAmount(held: HeldKey): number | undefined {
  return held.acquirerResult === null ? undefined : readProgress(held).amount;
}

function readProgress(held: HeldKey): RefundProgress {
  if (held.acquirerResult === null) throw new Error('invariant violated: a reserved refund records its progress');
  return parseStoredJson(refundProgressSchema, held.acquirerResult, 'refund progress');
}

/** Moves `amount` into (or, negative, out of) the charge's reservation, for the key row just written. */
function changeReservation(chargeId: string, amount: number): FollowUp {
  return {
    steps: sql`
      reservation AS (
        UPDATE charges SET amount_reserved = amount_reserved + ${amount}
         WHERE id = ${chargeId} AND EXISTS (SELECT 1 FROM key_row)
        RETURNING id
      )`,
    done: sql`(SELECT count(*) FROM reservation) = 1`,
  };
}

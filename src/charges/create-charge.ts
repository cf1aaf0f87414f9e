/**
 * createCharge: the use case, declared as a phase table (recovery point → phase) and run by the
 * one loop, `runPhases` (rocket-rides-atomic).
 *
 * Takes: a merchant, the client's key and validated input (the resolver refused anything else
 * with 400 before the key is taken).
 * Resolves the key (IdempotencyStore: Redis, then the key's row), then, while this request holds
 * the lease, runs:
 *   STARTED     call the acquirer with `idem_<row id>` (no transaction open), then
 *               `recordCharge`: one statement, key COMPLETED with the stored response and the
 *               acquirer's answer + charge row + outbox event
 *   AUTHORIZED  (a key saved there by an earlier version) `recordCharge` from the saved answer
 * The acquirer's answer needs no commit of its own before the record: the acquirer is idempotent
 * on `idem_<row id>`, so a process that dies after it answered leaves the key at STARTED, and
 * whoever resumes it (the client's retry after the lease, or the completer, which looks the
 * authorization up) gets the same authorization back. That saves one commit per charge
 * (docs/benchmarks.md).
 * Rows written: idempotency_keys (through src/idempotency/key-row.ts only), charges, outbox_events;
 * the acquirer writes its own.
 * Outcomes: a stored response (created, resumed or replayed), or a GatewayError:
 *   TRANSIENT_FAILURE (503, key released), IDEMPOTENCY_KEY_IN_USE (409, lease lost to another
 *   request, or a twin still in flight after the wait), IDEMPOTENCY_KEY_REUSED /
 *   IDEMPOTENCY_KEY_EXPIRED (422).
 * The completer runs the same table for a key whose client never came back, looking the
 * authorization up instead of asking for one; at STARTED with nothing authorized it waits.
 */
import type { Fault } from '../config';
import type { Acquirer, Authorization } from '../acquirer/acquirer';
import type { IdempotencyStore } from '../idempotency/idempotency-store';
import {
  acquirerKeyFor,
  keyedRequest,
  type HeldKey,
  type KeyedRequest,
  type StoredResponse,
} from '../idempotency/types';
import type { Database } from '../platform/database';
import type { Logger } from '../platform/logger';
import { newChargeId, type ChargeSnapshot } from './charge';
import {
  InjectedFault,
  LostLeaseError,
  executeKeyed,
  runPhases,
  type KeyedResult,
  type PhaseResult,
  type PhaseTable,
  type PhasesOutcome,
} from './keyed-operation';
import { recordCharge } from './record-charge';
import { createChargeInputSchema, type CreateChargeInput } from './validation';
import { parseStoredJson } from '../platform/stored-json';
import { authorizationSchema } from './stored-payloads';

export type { KeyedResult } from './keyed-operation';

export interface ChargeServiceDependencies {
  readonly db: Database;
  readonly idempotency: IdempotencyStore;
  readonly acquirer: Acquirer;
  readonly logger: Logger;
  readonly faults: ReadonlySet<Fault>;
  readonly leaseMs: number;
}

/** How a phase at STARTED learns the acquirer's answer. */
type AuthorizationSource = (held: HeldKey, input: CreateChargeInput) => Promise<Authorization | null>;

export class ChargeService {
  constructor(private readonly deps: ChargeServiceDependencies) {}

  keyedRequest(merchantId: string, key: string, input: CreateChargeInput): KeyedRequest {
    return keyedRequest('createCharge', merchantId, key, input);
  }

  /** `waitMs`: how long to wait for an in-flight twin with the same key (docs/contract.md §2). */
  createCharge(request: KeyedRequest, input: CreateChargeInput, waitMs: number): Promise<KeyedResult> {
    return executeKeyed(this.deps, request, waitMs, this.phases(request.merchantId, input, this.authorizeWithAcquirer));
  }

  /**
   * Finishes a key whose holder died, from what the row holds. At STARTED it only asks the
   * acquirer what it recorded (it never authorizes anew): money already authorized becomes a
   * charge, and a key with no authorization waits for the client's retry.
   */
  finishAbandoned(merchantId: string, held: HeldKey): Promise<PhasesOutcome> {
    const input = parseStoredJson(createChargeInputSchema, held.requestPayload, 'charge request');
    return runPhases(held, this.phases(merchantId, input, this.lookUpAuthorization));
  }

  /** The charge's recovery points and what runs at each. */
  private phases(merchantId: string, input: CreateChargeInput, authorizationSource: AuthorizationSource): PhaseTable {
    return {
      STARTED: (held) => this.authorizePhase(merchantId, held, input, authorizationSource),
      AUTHORIZED: (held) => this.recordPhase(merchantId, held, input),
    };
  }

  /**
   * STARTED → COMPLETED. The acquirer call happens here, with no transaction open; its answer is
   * recorded with the charge (see the header: no AUTHORIZED commit in between).
   */
  private async authorizePhase(
    merchantId: string,
    held: HeldKey,
    input: CreateChargeInput,
    authorizationSource: AuthorizationSource,
  ): Promise<PhaseResult> {
    const authorization = await authorizationSource(held, input);
    if (authorization === null) return { wait: true };
    this.crashIf('crash_after_acquirer');
    return this.record(merchantId, held, input, authorization);
  }

  /** AUTHORIZED → COMPLETED, for a key an earlier version saved at AUTHORIZED. */
  private async recordPhase(merchantId: string, held: HeldKey, input: CreateChargeInput): Promise<PhaseResult> {
    if (held.acquirerResult === null) throw new Error('invariant violated: AUTHORIZED key without acquirer result');
    return this.record(
      merchantId,
      held,
      input,
      parseStoredJson(authorizationSchema, held.acquirerResult, 'authorization'),
    );
  }

  /** Charge, outbox event and key completion (with the acquirer's answer) in one statement. */
  private async record(
    merchantId: string,
    held: HeldKey,
    input: CreateChargeInput,
    authorization: Authorization,
  ): Promise<PhaseResult> {
    if (this.deps.faults.has('bug_before_record')) throw new TypeError('injected bug (bug_before_record)');
    const snapshot: ChargeSnapshot = {
      id: newChargeId(),
      amount: input.amount,
      currency: input.currency,
      status: authorization.approved ? 'SUCCEEDED' : 'FAILED',
      failureCode: authorization.approved ? null : (authorization.declineCode ?? 'card_declined'),
      description: input.description,
      metadata: input.metadata,
      createdAt: new Date().toISOString(),
    };
    const response: StoredResponse = {
      status: 200,
      code: null,
      body: JSON.stringify(snapshot),
      firstRequestAt: held.firstRequestAt,
    };
    const record = {
      merchantId,
      snapshot,
      source: input.source,
      authorizationId: authorization.approved ? authorization.authorizationId : null,
      acquirerResult: JSON.stringify(authorization),
    };
    const recorded = this.deps.faults.has('fail_after_charge_insert')
      ? await this.recordThenFail(held, record, response)
      : await recordCharge(this.deps.db, held, record, response);
    if (!recorded) throw new LostLeaseError();
    return { respond: response };
  }

  /** Fault hook: the same statement inside a transaction that then fails, so it must roll back. */
  private async recordThenFail(
    held: HeldKey,
    record: Parameters<typeof recordCharge>[2],
    response: StoredResponse,
  ): Promise<boolean> {
    return this.deps.db.$transaction(async (tx) => {
      await recordCharge(tx, held, record, response);
      throw new InjectedFault('fail_after_charge_insert');
    });
  }

  private readonly authorizeWithAcquirer: AuthorizationSource = (held, input) =>
    this.deps.acquirer.authorize({
      idempotencyKey: acquirerKeyFor(held.id),
      kind: 'charge',
      amount: input.amount,
      currency: input.currency,
      source: input.source,
    });

  private readonly lookUpAuthorization: AuthorizationSource = (held) =>
    this.deps.acquirer.findAuthorization(acquirerKeyFor(held.id));

  private crashIf(fault: Fault): void {
    if (this.deps.faults.has(fault)) process.kill(process.pid, 'SIGKILL');
  }
}

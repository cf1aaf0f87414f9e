/**
 * createCharge: the use case, written as recovery points driven by one loop (rocket-rides-atomic).
 *
 * Takes: a merchant, the client's key and validated input.
 * Resolves the key (IdempotencyStore), then, while this request holds the lease, runs phases:
 *   STARTED     call the acquirer with `idem_<row id>` (no transaction open), then save its answer
 *               on the key row → AUTHORIZED
 *   AUTHORIZED  one statement: charge row + outbox event + key COMPLETED with the stored response
 * Each phase is one atomic write and says what happens next: continue at a later point, or respond.
 * Outcomes: a stored response (created, resumed or replayed), or a GatewayError:
 *   TRANSIENT_FAILURE (503, key released), IDEMPOTENCY_KEY_IN_USE (409, lease lost to another
 *   request), IDEMPOTENCY_KEY_REUSED (422).
 * The completer runs the same phases for a key whose client never came back.
 */
import type { Fault } from '../config';
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
import type { Database } from '../platform/database';
import type { Logger } from '../platform/logger';
import { newChargeId, type ChargeSnapshot } from './charge';
import {
  InjectedFault,
  LostLeaseError,
  WaitForClient,
  executeKeyed,
  runPhases,
  type KeyedResult,
  type PhaseResult,
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
    return executeKeyed(this.deps, request, waitMs, (held) =>
      runPhases(held, (current) => this.phaseFor(request.merchantId, current, input, this.authorizeWithAcquirer)),
    );
  }

  /**
   * Finishes a key whose holder died, from what the row holds. At STARTED it only asks the
   * acquirer what it recorded (it never authorizes anew): money already authorized becomes a
   * charge, and a key with no authorization is left for the client's retry.
   */
  async finishAbandoned(merchantId: string, held: HeldKey): Promise<StoredResponse | undefined> {
    const input = parseStoredJson(createChargeInputSchema, held.requestPayload, 'charge request');
    try {
      return await runPhases(held, (current) => this.phaseFor(merchantId, current, input, this.lookUpAuthorization));
    } catch (error) {
      if (error instanceof WaitForClient) return undefined;
      throw error;
    }
  }

  private phaseFor(
    merchantId: string,
    held: HeldKey,
    input: CreateChargeInput,
    authorizationSource: AuthorizationSource,
  ): (held: HeldKey) => Promise<PhaseResult> {
    return held.recoveryPoint === 'STARTED'
      ? (current) => this.authorizePhase(current, input, authorizationSource)
      : (current) => this.recordPhase(merchantId, current, input);
  }

  /** STARTED → AUTHORIZED. The acquirer call happens here, with no transaction open. */
  private async authorizePhase(
    held: HeldKey,
    input: CreateChargeInput,
    authorizationSource: AuthorizationSource,
  ): Promise<PhaseResult> {
    const authorization = await authorizationSource(held, input);
    if (authorization === null) return { wait: true };
    this.crashIf('crash_after_acquirer');
    const acquirerResult = JSON.stringify(authorization);
    if (!(await saveAuthorized(this.deps.db, held, acquirerResult))) throw new LostLeaseError();
    this.crashIf('crash_after_authorized');
    return { next: { ...held, recoveryPoint: 'AUTHORIZED', acquirerResult } };
  }

  /** AUTHORIZED → COMPLETED: charge, outbox event and key completion in one statement. */
  private async recordPhase(merchantId: string, held: HeldKey, input: CreateChargeInput): Promise<PhaseResult> {
    if (this.deps.faults.has('bug_before_record')) throw new TypeError('injected bug (bug_before_record)');
    if (held.acquirerResult === null) throw new Error('invariant violated: AUTHORIZED key without acquirer result');
    const authorization = parseStoredJson(authorizationSchema, held.acquirerResult, 'authorization');
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

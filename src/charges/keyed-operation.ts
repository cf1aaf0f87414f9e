/**
 * What every money-moving use case shares: resolve the key, run the recovery-point phases while
 * holding the lease, write the stored response through, and turn a failure into the client's
 * answer (releasing the key when the failure is transient).
 *
 * A phase is one atomic write that says what happens next: continue from a later recovery point,
 * respond with a stored response, or (for the completer only) wait.
 */
import { GatewayError } from '../errors';
import { AcquirerUnavailableError } from '../acquirer/acquirer';
import type { IdempotencyStore } from '../idempotency/idempotency-store';
import type { HeldKey, KeyedRequest, StoredResponse } from '../idempotency/types';
import { isTransientDatabaseError } from '../platform/database';
import type { Logger } from '../platform/logger';
import type { Fault } from '../config';

export interface KeyedResult {
  readonly outcome: 'created' | 'resumed' | 'replayed';
  readonly response: StoredResponse;
}

export type PhaseResult =
  | { readonly next: HeldKey }
  | { readonly respond: StoredResponse }
  /** Only for the completer: nothing can be done now (the acquirer recorded nothing); leave the key. */
  | { readonly wait: true };

export type Phase = (held: HeldKey) => Promise<PhaseResult>;

export class LostLeaseError extends GatewayError {
  constructor() {
    super('IDEMPOTENCY_KEY_IN_USE', 'Another request took this Idempotency-Key over; retry to read its outcome.', {
      retryAfterSeconds: 1,
    });
  }
}

/** A fault injected by a test hook; handled as a transient failure. */
export class InjectedFault extends Error {
  constructor(fault: Fault) {
    super(`injected fault: ${fault}`);
    this.name = 'InjectedFault';
  }
}

/** Thrown by runPhases when a phase says wait. */
export class WaitForClient extends Error {}

const phasesMax = 8;

/** Drives phases from the held key's recovery point until one responds. */
export async function runPhases(start: HeldKey, phaseFor: (held: HeldKey) => Phase): Promise<StoredResponse> {
  let held = start;
  // A few recovery points, so a few phases; the bound guards against a bug looping forever.
  for (let phase = 0; phase < phasesMax; phase += 1) {
    const result = await phaseFor(held)(held);
    if ('respond' in result) return result.respond;
    if ('wait' in result) throw new WaitForClient();
    held = result.next;
  }
  throw new Error('invariant violated: phases did not converge');
}

export interface KeyedExecutorDependencies {
  readonly idempotency: IdempotencyStore;
  readonly logger: Logger;
  readonly leaseMs: number;
}

export async function executeKeyed(
  deps: KeyedExecutorDependencies,
  request: KeyedRequest,
  run: (held: HeldKey) => Promise<StoredResponse>,
): Promise<KeyedResult> {
  const resolution = await deps.idempotency.resolve(request);
  if (resolution.outcome === 'replayed') return resolution;
  const { held, redisOwner } = resolution;
  try {
    const response = await run(held);
    await deps.idempotency.complete(request, response);
    return { outcome: resolution.outcome, response };
  } catch (error) {
    throw await answerFailure(deps, error, request, held, redisOwner);
  }
}

/** Turns a failure under a held lease into the client's answer, releasing the key when it is transient. */
async function answerFailure(
  deps: KeyedExecutorDependencies,
  error: unknown,
  request: KeyedRequest,
  held: HeldKey,
  redisOwner: string | undefined,
): Promise<unknown> {
  if (error instanceof GatewayError) return error;
  const transient =
    error instanceof AcquirerUnavailableError || error instanceof InjectedFault || isTransientDatabaseError(error);
  const log = { err: error, keyId: held.id, operation: request.operation };
  if (!transient) {
    // An unexpected error: the key is not released; its lease runs out and a retry resumes it.
    deps.logger.error(log, 'keyed operation failed unexpectedly');
    return error;
  }
  deps.logger.warn(log, 'keyed operation failed transiently; releasing the key');
  const released = await deps.idempotency.release(request, held, redisOwner);
  // If the database itself failed, the key could not be released: it frees when the lease runs out.
  const retryAfterSeconds = released ? 1 : Math.max(1, Math.ceil(deps.leaseMs / 1000));
  return new GatewayError(
    'TRANSIENT_FAILURE',
    released
      ? 'A temporary failure stopped this request; retry with the same Idempotency-Key.'
      : 'A temporary failure stopped this request; the key frees when its lease runs out, then retry with the same key.',
    { retryAfterSeconds, cause: error },
  );
}

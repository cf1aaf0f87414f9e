/**
 * What every money-moving use case shares: resolve the key, run the use case's phase table while
 * holding the lease, write the stored response through, and turn a failure into the client's
 * answer (releasing the key when the failure is transient).
 *
 * Takes: a keyed request and a phase table (recovery point → phase). Writes no row itself: each
 * phase writes through src/idempotency/key-row.ts, the one owner of the key's row.
 * Outcomes: created, resumed or replayed with the stored response; or a GatewayError
 * (TRANSIENT_FAILURE 503 with the key released, IDEMPOTENCY_KEY_IN_USE / REUSED / EXPIRED); an
 * unexpected error is rethrown (500) and the key is left for its lease to run out.
 *
 * A phase is one atomic write that says what happens next: continue from a later recovery point,
 * respond with a stored response, or (for the completer only) wait for the client.
 */
import { GatewayError } from '../errors';
import { AcquirerUnavailableError } from '../acquirer/acquirer';
import type { IdempotencyStore, KeyResolution } from '../idempotency/idempotency-store';
import type { HeldKey, KeyedRequest, RecoveryPoint, StoredResponse } from '../idempotency/types';
import { isTransientDatabaseError } from '../platform/database';
import type { Logger } from '../platform/logger';
import type { Fault } from '../config';

export interface KeyedResult {
  readonly outcome: 'created' | 'resumed' | 'replayed';
  readonly response: StoredResponse;
}

/** How the phases ended: with the response to store and answer, or (the completer only) waiting. */
export type PhasesOutcome =
  | { readonly respond: StoredResponse }
  /** Only for the completer: nothing can be done now (the acquirer recorded nothing); leave the key. */
  | { readonly wait: true };

export type PhaseResult = { readonly next: HeldKey } | PhasesOutcome;

export type Phase = (held: HeldKey) => Promise<PhaseResult>;

/** A use case declared as data: the phase that runs at each recovery point it can be at. */
export type PhaseTable = Readonly<Partial<Record<RecoveryPoint, Phase>>>;

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

// A few recovery points, so a few phases; the bound guards against a bug looping forever.
const phasesMax = 8;

/** The one loop: runs the phase of the held key's recovery point until a phase responds or waits. */
export async function runPhases(start: HeldKey, phases: PhaseTable): Promise<PhasesOutcome> {
  let held = start;
  for (let step = 0; step < phasesMax; step += 1) {
    const phase = phases[held.recoveryPoint];
    if (phase === undefined) throw new Error(`invariant violated: no phase at ${held.recoveryPoint}`);
    const result = await phase(held);
    if (!('next' in result)) return result;
    held = result.next;
  }
  throw new Error('invariant violated: phases did not converge');
}

export interface KeyedExecutorDependencies {
  readonly idempotency: IdempotencyStore;
  readonly logger: Logger;
  readonly leaseMs: number;
}

/**
 * Resolves the key (waiting up to `waitMs` for an in-flight twin), runs the phase table under the
 * lease, and writes the stored response through. An infrastructure failure while the key is
 * resolved is 503: nothing was claimed (the store removed its Redis marker), so the retry runs at once.
 */
export async function executeKeyed(
  deps: KeyedExecutorDependencies,
  request: KeyedRequest,
  waitMs: number,
  phases: PhaseTable,
): Promise<KeyedResult> {
  let resolution: KeyResolution;
  try {
    resolution = await deps.idempotency.resolve(request, waitMs);
  } catch (error) {
    if (error instanceof GatewayError || !isInfrastructureFailure(error)) throw error;
    deps.logger.warn({ err: error, operation: request.operation }, 'resolving the key failed transiently');
    throw new GatewayError(
      'TRANSIENT_FAILURE',
      'A temporary failure stopped this request before anything was recorded; retry with the same Idempotency-Key.',
      { retryAfterSeconds: 1, cause: error },
    );
  }
  if (resolution.outcome === 'replayed') return resolution;
  const { held, redisOwner } = resolution;
  try {
    const outcome = await runPhases(held, phases);
    // A request's phases call the acquirer itself, so they always have an answer to act on.
    if ('wait' in outcome) throw new Error('invariant violated: a request waited for its own client');
    await deps.idempotency.complete(request, outcome.respond);
    return { outcome: resolution.outcome, response: outcome.respond };
  } catch (error) {
    throw await answerFailure(deps, error, request, held, redisOwner);
  }
}

/** A failure of the infrastructure (acquirer, database), not of the request: worth a retry. */
export function isInfrastructureFailure(error: unknown): boolean {
  return error instanceof AcquirerUnavailableError || error instanceof InjectedFault || isTransientDatabaseError(error);
}

/** Turns a failure under a held lease into the client's answer, releasing the key when it is transient. */
async function answerFailure(
  deps: KeyedExecutorDependencies,
  error: unknown,
  request: KeyedRequest,
  held: HeldKey,
  redisOwner: string | undefined,
): Promise<unknown> {
  if (error instanceof GatewayError) {
    if (error.releasesKey) await deps.idempotency.release(request, held, redisOwner);
    return error;
  }
  const transient = isInfrastructureFailure(error);
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

/**
 * Resolves an Idempotency-Key to one of its outcomes, Redis first and Postgres as the truth.
 *
 * resolve(request):
 *   1. Redis SET NX GET. An existing completed marker with our fingerprint → replayed; with another
 *      fingerprint → mismatch (422); an in-flight marker → in_progress (409) or mismatch (422).
 *      These are audited in batches (AuditBuffer).
 *   2. Otherwise (we set the marker, or Redis is unavailable) Postgres decides: claim the row
 *      (created), or take an expired lease over (resumed), or read it (replayed / in_progress /
 *      mismatch), audited in the same statement.
 * complete(): writes the stored response through to Redis after the commit.
 * release():  clears the lease after a transient failure, then our Redis marker.
 */
import { GatewayError } from '../errors';
import type { Database } from '../platform/database';
import type { AuditBuffer } from './audit-buffer';
import type { IdempotencyOutcome } from './outcomes';
import { claimKey, releaseKey, resolveExisting } from './postgres-store';
import type { RedisIdempotencyStore, RedisMarker } from './redis-store';
import type { HeldKey, KeyedRequest, StoredResponse } from './types';

export type KeyResolution =
  | { readonly outcome: 'created' | 'resumed'; readonly held: HeldKey; readonly redisOwner: string | undefined }
  | { readonly outcome: 'replayed'; readonly response: StoredResponse };

export interface IdempotencyStoreOptions {
  readonly leaseMs: number;
  readonly responseTtlSeconds: number;
  readonly countOutcome: (outcome: IdempotencyOutcome) => void;
}

// A purge can remove a row between our INSERT and our read; that can only happen a few times.
const claimAttemptsMax = 3;

export class IdempotencyStore {
  constructor(
    private readonly db: Database,
    private readonly redisStore: RedisIdempotencyStore,
    private readonly auditBuffer: AuditBuffer,
    private readonly options: IdempotencyStoreOptions,
  ) {}

  async resolve(request: KeyedRequest): Promise<KeyResolution> {
    const mark = await this.redisStore.markInFlight(
      request.merchantId,
      request.key,
      request.fingerprint,
      this.options.leaseMs,
    );
    if (mark.kind === 'existing') return this.answerFromRedis(request, mark.marker);

    const redisOwner = mark.kind === 'marked' ? mark.owner : undefined;
    try {
      return await this.resolveFromPostgres(request, redisOwner);
    } catch (error) {
      // Whatever the outcome, a marker that does not stand for a held lease must go.
      if (redisOwner !== undefined) await this.redisStore.clearInFlight(request.merchantId, request.key, redisOwner);
      throw error;
    }
  }

  async complete(request: KeyedRequest, response: StoredResponse): Promise<void> {
    await this.redisStore.storeCompleted(
      request.merchantId,
      request.key,
      request.fingerprint,
      response,
      this.options.responseTtlSeconds,
    );
  }

  /** Returns false when the database could not be reached: the key then frees when its lease runs out. */
  async release(request: KeyedRequest, held: HeldKey, redisOwner: string | undefined): Promise<boolean> {
    let released = false;
    try {
      released = await releaseKey(this.db, request, held);
    } catch {
      released = false;
    }
    if (redisOwner !== undefined) await this.redisStore.clearInFlight(request.merchantId, request.key, redisOwner);
    this.options.countOutcome('released');
    return released;
  }

  private answerFromRedis(request: KeyedRequest, marker: RedisMarker): KeyResolution {
    if (marker.fingerprint !== request.fingerprint) {
      this.recordRedisAnswer(request, 'mismatch');
      throw reusedError(null);
    }
    if (marker.state === 'completed') {
      this.recordRedisAnswer(request, 'replayed');
      return { outcome: 'replayed', response: marker.response };
    }
    this.recordRedisAnswer(request, 'in_progress');
    throw inUseError(Math.ceil((marker.leaseEndsAtMs - Date.now()) / 1000), null);
  }

  private async resolveFromPostgres(request: KeyedRequest, redisOwner: string | undefined): Promise<KeyResolution> {
    for (let attempt = 1; attempt <= claimAttemptsMax; attempt += 1) {
      const claimed = await claimKey(this.db, request, this.options.leaseMs);
      if (claimed !== undefined) {
        this.options.countOutcome('created');
        return { outcome: 'created', held: claimed, redisOwner };
      }
      const existing = await resolveExisting(this.db, request, this.options.leaseMs);
      switch (existing.outcome) {
        case 'vanished':
          continue;
        case 'resumed':
          this.options.countOutcome('resumed');
          return { outcome: 'resumed', held: existing.held, redisOwner };
        case 'replayed':
          this.options.countOutcome('replayed');
          // Redis had lost the completed answer (or was down): put it back.
          await this.complete(request, existing.response);
          return { outcome: 'replayed', response: existing.response };
        case 'in_progress':
          this.options.countOutcome('in_progress');
          throw inUseError(existing.leaseSecondsLeft, existing.firstRequestAt);
        case 'mismatch':
          this.options.countOutcome('mismatch');
          throw reusedError(existing.firstRequestAt);
      }
    }
    throw new GatewayError(
      'TRANSIENT_FAILURE',
      'The idempotency key changed while it was read; retry with the same key.',
      {
        retryAfterSeconds: 1,
      },
    );
  }

  private recordRedisAnswer(request: KeyedRequest, outcome: IdempotencyOutcome): void {
    this.options.countOutcome(outcome);
    this.auditBuffer.add(request, outcome);
  }
}

/** The key's first request time rides on the error, for `extensions.idempotency`. */
export class KeyConflictError extends GatewayError {
  constructor(
    code: 'IDEMPOTENCY_KEY_IN_USE' | 'IDEMPOTENCY_KEY_REUSED',
    message: string,
    readonly firstRequestAt: string | null,
    retryAfterSeconds?: number,
  ) {
    super(code, message, retryAfterSeconds === undefined ? {} : { retryAfterSeconds });
  }
}

function inUseError(leaseSecondsLeft: number, firstRequestAt: string | null): KeyConflictError {
  return new KeyConflictError(
    'IDEMPOTENCY_KEY_IN_USE',
    'A request with this Idempotency-Key is still in progress; retry after Retry-After seconds.',
    firstRequestAt,
    Math.max(1, leaseSecondsLeft),
  );
}

function reusedError(firstRequestAt: string | null): KeyConflictError {
  return new KeyConflictError(
    'IDEMPOTENCY_KEY_REUSED',
    'This Idempotency-Key was already used with a different request; use a new key for a new request.',
    firstRequestAt,
  );
}

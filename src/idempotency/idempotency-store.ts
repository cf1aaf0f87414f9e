/**
 * Resolves an Idempotency-Key to one of its outcomes, Redis first and Postgres as the truth.
 *
 * resolve(request, waitMs):
 *   1. Redis SET NX GET. A completed marker with our fingerprint → replayed; another fingerprint
 *      → mismatch (422); an in-flight marker with our fingerprint → the twin is in flight.
 *      Redis answers are audited in batches (AuditBuffer).
 *   2. Otherwise (we set the marker, or Redis is unavailable or its value did not verify)
 *      Postgres decides: claim the row (created), take an expired lease over (resumed), or read
 *      it (replayed / in flight / mismatch), audited in the same statement. A purged key's
 *      tombstone answers expired (422), never a new claim.
 *   3. A twin in flight is waited for, up to `waitMs`, woken by its completion or release
 *      (Redis pub/sub); then the key is resolved again, so the waiter answers the twin's stored
 *      outcome as a replay. With Redis down the waiter sleeps to its deadline and asks Postgres.
 *      Only a twin still in flight then is a 409, with Retry-After 1–2 s.
 * complete(): writes the stored response through to Redis (TTL ≤ the row's retention) and wakes waiters.
 * release():  clears the lease after a transient failure, then our Redis marker, and wakes waiters.
 */
import { GatewayError } from '../errors';
import type { Database } from '../platform/database';
import type { AuditBuffer } from './audit-buffer';
import type { IdempotencyOutcome } from './outcomes';
import { claimKey, readKeySummary, readTombstone, releaseKey, resolveExisting } from './key-row';
import type { RedisIdempotencyStore, RedisMarker } from './redis-store';
import type { SettledSignals, Subscription } from './settled-signals';
import type { HeldKey, KeyedRequest, StoredResponse } from './types';

export type KeyResolution =
  | { readonly outcome: 'created' | 'resumed'; readonly held: HeldKey; readonly redisOwner: string | undefined }
  | { readonly outcome: 'replayed'; readonly response: StoredResponse };

/** A twin holds the key; `fromRedis` says who answered (for the audit of the final 409). */
interface InFlight {
  readonly outcome: 'in_progress';
  readonly leaseSecondsLeft: number;
  readonly firstRequestAt: string | null;
  readonly fromRedis: boolean;
}

export interface IdempotencyStoreOptions {
  readonly leaseMs: number;
  readonly responseTtlSeconds: number;
  /** Retention of a finished row: a Redis answer never outlives it. */
  readonly retentionHours: number;
  readonly countOutcome: (outcome: IdempotencyOutcome) => void;
}

// A purge can remove a row between our INSERT and our read; that can only happen a few times.
const claimAttemptsMax = 3;
// Check, subscribe, check, wait, check, and a few more wake-ups (a release re-claimed by a third
// request); the deadline bounds the time, this bounds the work.
const waitRoundsMax = 6;
/** The 409's Retry-After: short, because a waiter is woken at completion; never the whole lease. */
const inUseRetryAfterSecondsMax = 2;

export class IdempotencyStore {
  constructor(
    private readonly db: Database,
    private readonly redisStore: RedisIdempotencyStore,
    private readonly signals: SettledSignals,
    private readonly auditBuffer: AuditBuffer,
    private readonly options: IdempotencyStoreOptions,
  ) {}

  async close(): Promise<void> {
    await this.signals.close();
  }

  async resolve(request: KeyedRequest, waitMs: number): Promise<KeyResolution> {
    const deadlineMs = Date.now() + waitMs;
    let subscription: Subscription | undefined;
    let inFlight: InFlight | undefined;
    try {
      for (let round = 0; round < waitRoundsMax; round += 1) {
        const step = await this.resolveOnce(request);
        if (step.outcome !== 'in_progress') return step;
        inFlight = step;
        const leftMs = deadlineMs - Date.now();
        if (leftMs <= 0) break;
        if (round === 0) {
          // Subscribe, then check again: a completion in between cannot be missed.
          subscription = await this.signals.subscribe(request.merchantId, request.key);
          continue;
        }
        if (subscription === undefined) await sleep(leftMs);
        else await subscription.wait(leftMs);
      }
    } finally {
      subscription?.close();
    }
    if (inFlight?.fromRedis === true) {
      // Only Redis said "in flight", all along: its marker may belong to a request that stalled or
      // died before Postgres decided anything. Postgres decides before anyone is told 409.
      const decided = await this.resolveFromPostgres(request, undefined);
      if (decided.outcome !== 'in_progress') return decided;
      inFlight = decided;
    }
    throw await this.inUse(request, inFlight);
  }

  /** Writes the response through to Redis, for at most the row's remaining retention. */
  async complete(request: KeyedRequest, response: StoredResponse, retentionSecondsLeft?: number): Promise<void> {
    const retentionSeconds = retentionSecondsLeft ?? this.options.retentionHours * 3_600;
    await this.redisStore.storeCompleted(
      request.merchantId,
      request.key,
      request.fingerprint,
      response,
      Math.min(this.options.responseTtlSeconds, retentionSeconds),
    );
    await this.signals.publish(request.merchantId, request.key);
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
    if (released) await this.signals.publish(request.merchantId, request.key);
    this.options.countOutcome('released');
    return released;
  }

  /** The Redis key of a request's key, for reading it in another round trip (the rate limit's). */
  redisKeyOf(request: Pick<KeyedRequest, 'merchantId' | 'key'>): string {
    return this.redisStore.redisKey(request.merchantId, request.key);
  }

  /** Reads the request's key in Redis on its own (when no rate limit reads it): undefined when Redis did not answer. */
  readRedisValue(request: KeyedRequest): Promise<string | null | undefined> {
    return this.redisStore.read(request.merchantId, request.key);
  }

  /**
   * The replay fast path (src/graphql/replay-fast-path.ts): given the key's Redis value (read
   * in the rate limit's round trip), answers only what `answerFromRedis` answers as `replayed`:
   * a completed, verified answer with this request's fingerprint. `render` shapes the stored
   * response for the client and may decline (undefined); only a rendered replay is recorded
   * (metrics, audit row), by `answerFromRedis` itself. Everything else, another body's completed
   * answer (422) included, returns undefined with nothing recorded: the request then resolves the
   * normal way (`resolve`), which decides it as before.
   */
  replayFromRedis<Rendered>(
    request: KeyedRequest,
    value: string,
    render: (response: StoredResponse) => Rendered | undefined,
  ): Rendered | undefined {
    const marker = this.redisStore.parseValue(request.merchantId, request.key, value);
    if (marker?.state !== 'completed' || marker.fingerprint !== request.fingerprint) return undefined;
    const rendered = render(marker.response);
    if (rendered === undefined) return undefined;
    const answer = this.answerFromRedis(request, marker);
    if (answer?.outcome !== 'replayed')
      throw new Error('invariant violated: a completed answer with our fingerprint is a replay');
    return rendered;
  }

  private async resolveOnce(request: KeyedRequest): Promise<KeyResolution | InFlight> {
    const mark = await this.redisStore.markInFlight(
      request.merchantId,
      request.key,
      request.fingerprint,
      this.options.leaseMs,
    );
    if (mark.kind === 'existing') {
      const answer = this.answerFromRedis(request, mark.marker);
      if (answer !== undefined) return answer;
    }

    const redisOwner = mark.kind === 'marked' ? mark.owner : undefined;
    let resolution: KeyResolution | InFlight;
    try {
      resolution = await this.resolveFromPostgres(request, redisOwner);
    } catch (error) {
      // Whatever the outcome, a marker that does not stand for a held lease must go.
      if (redisOwner !== undefined) {
        await this.redisStore.clearInFlight(request.merchantId, request.key, redisOwner);
        // Twins of a refused body wait on this marker: wake them, so they hear the refusal now
        // rather than at the end of their wait.
        if (error instanceof GatewayError && !error.transient)
          await this.signals.publish(request.merchantId, request.key);
      }
      throw error;
    }
    if (resolution.outcome === 'in_progress' && redisOwner !== undefined) {
      await this.redisStore.clearInFlight(request.merchantId, request.key, redisOwner);
    }
    return resolution;
  }

  /**
   * What Redis alone may answer: a completed marker (a replay, or 422 for another body), and the
   * same body's in-flight marker (wait for the twin). Another body's in-flight marker proves
   * nothing: it is set before Postgres decides who holds the key, so its body may be refused, or
   * fail, while this one holds the key. Undefined sends the request to Postgres.
   */
  private answerFromRedis(request: KeyedRequest, marker: RedisMarker): KeyResolution | InFlight | undefined {
    if (marker.state === 'completed') {
      if (marker.fingerprint !== request.fingerprint) {
        this.recordRedisAnswer(request, 'mismatch');
        throw reusedError(marker.response.firstRequestAt);
      }
      this.recordRedisAnswer(request, 'replayed');
      return { outcome: 'replayed', response: marker.response };
    }
    if (marker.fingerprint !== request.fingerprint) return undefined;
    const leaseSecondsLeft = Math.ceil((marker.leaseEndsAtMs - Date.now()) / 1000);
    return { outcome: 'in_progress', leaseSecondsLeft, firstRequestAt: null, fromRedis: true };
  }

  private async resolveFromPostgres(
    request: KeyedRequest,
    redisOwner: string | undefined,
  ): Promise<KeyResolution | InFlight> {
    for (let attempt = 1; attempt <= claimAttemptsMax; attempt += 1) {
      const claimed = await claimKey(this.db, request, this.options.leaseMs);
      if (claimed !== undefined) {
        this.options.countOutcome('created');
        return { outcome: 'created', held: claimed, redisOwner };
      }
      const existing = await resolveExisting(this.db, request, this.options.leaseMs, this.options.retentionHours);
      switch (existing.outcome) {
        case 'vanished':
          await this.refuseIfTombstoned(request);
          continue;
        case 'resumed':
          this.options.countOutcome('resumed');
          return { outcome: 'resumed', held: existing.held, redisOwner };
        case 'replayed':
          this.options.countOutcome('replayed');
          // Redis had lost the completed answer (or was down): put it back, for what retention leaves.
          await this.complete(request, existing.response, existing.retentionSecondsLeft);
          return { outcome: 'replayed', response: existing.response };
        case 'in_progress':
          return { ...existing, fromRedis: false };
        case 'mismatch':
          this.options.countOutcome('mismatch');
          throw reusedError(existing.firstRequestAt);
      }
    }
    throw new GatewayError(
      'TRANSIENT_FAILURE',
      'The idempotency key changed while it was read; retry with the same key.',
      { retryAfterSeconds: 1 },
    );
  }

  /** A purged key with a tombstone: 422 IDEMPOTENCY_KEY_EXPIRED (or REUSED for another request). */
  private async refuseIfTombstoned(request: KeyedRequest): Promise<void> {
    const tombstone = await readTombstone(this.db, request);
    if (tombstone === undefined) return;
    if (!tombstone.sameRequest) {
      this.options.countOutcome('mismatch');
      throw reusedError(tombstone.firstRequestAt);
    }
    this.options.countOutcome('expired');
    throw new KeyConflictError(
      'IDEMPOTENCY_KEY_EXPIRED',
      'This Idempotency-Key was used long ago and its result has expired; nothing was charged again. Use a new key for a new request.',
      tombstone.firstRequestAt,
    );
  }

  /** The 409 for a twin still in flight after the wait. */
  private async inUse(request: KeyedRequest, inFlight: InFlight | undefined): Promise<KeyConflictError> {
    if (inFlight?.fromRedis === false) this.options.countOutcome('in_progress');
    else this.recordRedisAnswer(request, 'in_progress');
    const firstRequestAt = inFlight?.firstRequestAt ?? (await this.firstRequestAt(request));
    const retryAfterSeconds = Math.min(inUseRetryAfterSecondsMax, Math.max(1, inFlight?.leaseSecondsLeft ?? 1));
    return new KeyConflictError(
      'IDEMPOTENCY_KEY_IN_USE',
      'A request with this Idempotency-Key is still in progress; retry after Retry-After seconds.',
      firstRequestAt,
      retryAfterSeconds,
    );
  }

  /** For answers decided from Redis: the row's first request time, when the row exists and Postgres answers. */
  private async firstRequestAt(request: KeyedRequest): Promise<string | null> {
    try {
      return (await readKeySummary(this.db, request.merchantId, request.key))?.firstRequestAt ?? null;
    } catch {
      return null;
    }
  }

  private recordRedisAnswer(request: KeyedRequest, outcome: IdempotencyOutcome): void {
    this.options.countOutcome(outcome);
    this.auditBuffer.add(request, outcome);
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** The key's first request time rides on the error, for `extensions.idempotency`. */
export class KeyConflictError extends GatewayError {
  constructor(
    code: 'IDEMPOTENCY_KEY_IN_USE' | 'IDEMPOTENCY_KEY_REUSED' | 'IDEMPOTENCY_KEY_EXPIRED',
    message: string,
    readonly firstRequestAt: string | null,
    retryAfterSeconds?: number,
  ) {
    super(code, message, retryAfterSeconds === undefined ? {} : { retryAfterSeconds });
  }
}

function reusedError(firstRequestAt: string | null): KeyConflictError {
  return new KeyConflictError(
    'IDEMPOTENCY_KEY_REUSED',
    'This Idempotency-Key was already used with a different request; use a new key for a new request.',
    firstRequestAt,
  );
}

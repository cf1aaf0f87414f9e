/**
 * The client's one retry loop, shared by the service SDK and the Apollo link.
 *
 * One logical operation has one Idempotency-Key, kept across all its attempts. The loop:
 * - retries network errors, timeouts, 409, 429 and 5xx; never 400, 401, 403, 404 or 422 (those
 *   end in a ClientRequestError naming the code);
 * - waits random(0, min(cap, base × 2^retry)) (full jitter), or longer when the server sends
 *   Retry-After;
 * - spends a token from the per-call-site retry budget before each retry, and fails fast with
 *   RetryBudgetExhaustedError when there is none; a success deposits a fraction back;
 * - sends Idempotency-Attempt, and reports every attempt to an optional transcript;
 * - stops at once, without another attempt, when the caller's AbortSignal fires (the Apollo link
 *   aborts when its subscriber unsubscribes), and aborts the fetch in flight.
 * Its only dependency is the pure retry package (backoff and the in-memory token bucket).
 */
import { MemoryTokenBucketStore, RetryBudget, retryDelayMs } from '@payments-gateway/retry';

export interface AttemptRecord {
  readonly key: string;
  readonly callSite: string;
  readonly attempt: number;
  /** The wait chosen before this attempt (0 for the first). */
  readonly delayMs: number;
  /** The Retry-After the previous answer carried, if any, in seconds. */
  readonly retryAfterSeconds: number | null;
  readonly status: number | 'network-error';
  /** The error code or network failure, or 'ok'. */
  readonly reason: string;
  readonly replayed: boolean | null;
  readonly at: string;
}

export interface RetryOptions {
  /** Attempts in all, the first included. */
  readonly attemptsMax: number;
  readonly baseMs: number;
  readonly capMs: number;
  /** Per attempt: past it the attempt counts as a network error and is retried. */
  readonly timeoutMs: number;
}

export const defaultRetryOptions: RetryOptions = { attemptsMax: 6, baseMs: 100, capMs: 5_000, timeoutMs: 10_000 };

export interface TransportOptions {
  readonly retry?: Partial<RetryOptions>;
  /** Per call site; defaults to an in-memory budget of 20 tokens, refilled at 1 a second, 0.1 back per success. */
  readonly budget?: RetryBudget;
  readonly transcript?: (record: AttemptRecord) => void;
  readonly fetch?: typeof fetch;
  readonly random?: () => number;
  readonly sleep?: (ms: number) => Promise<void>;
}

/** A final answer the client must not retry: 400, 401, 403, 404, 422 (or a retryable one past the attempts). */
export class ClientRequestError extends Error {
  constructor(
    readonly code: string,
    readonly status: number,
    message: string,
    readonly idempotencyKey: string,
    readonly attempts: number,
  ) {
    super(message);
    this.name = 'ClientRequestError';
  }
}

export class RetryBudgetExhaustedError extends Error {
  constructor(
    readonly callSite: string,
    readonly idempotencyKey: string,
    readonly attempts: number,
    readonly lastReason: string,
  ) {
    super(
      `Retry budget for ${callSite} is empty: not retrying (last failure: ${lastReason}). Try again later with the same key.`,
    );
    this.name = 'RetryBudgetExhaustedError';
  }
}

const isRecord = (value: unknown): value is Record<string, unknown> =>
  typeof value === 'object' && value !== null && !Array.isArray(value);

export interface GraphqlHttpBody {
  data?: Record<string, unknown> | null;
  errors?: { message: string; extensions?: Record<string, unknown> }[];
  /** Every extension the server sent; `idempotency` only when it has the gateway's shape. */
  extensions?: Record<string, unknown> & { idempotency?: IdempotencyExtension };
}

export interface IdempotencyExtension {
  readonly key: string;
  readonly replayed: boolean;
  readonly firstRequestAt: string | null;
}

function parseIdempotencyExtension(value: unknown): IdempotencyExtension | undefined {
  if (!isRecord(value) || typeof value.key !== 'string' || typeof value.replayed !== 'boolean') return undefined;
  return {
    key: value.key,
    replayed: value.replayed,
    firstRequestAt: typeof value.firstRequestAt === 'string' ? value.firstRequestAt : null,
  };
}

/**
 * A GraphQL-over-HTTP answer, checked rather than cast: whatever a proxy or a broken server sends,
 * the loop sees only the fields it understands, each of the right type (a body that is not JSON
 * at all fails in response.json(), a network error).
 */
export function parseGraphqlBody(value: unknown): GraphqlHttpBody {
  if (!isRecord(value)) return {};
  const errors = Array.isArray(value.errors)
    ? value.errors.filter(isRecord).map((error) => ({
        message: typeof error.message === 'string' ? error.message : 'unknown error',
        ...(isRecord(error.extensions) ? { extensions: error.extensions } : {}),
      }))
    : undefined;
  const { idempotency, ...extensions } = isRecord(value.extensions) ? value.extensions : {};
  const parsedIdempotency = parseIdempotencyExtension(idempotency);
  return {
    ...(isRecord(value.data) || value.data === null ? { data: value.data } : {}),
    ...(errors === undefined ? {} : { errors }),
    ...(isRecord(value.extensions)
      ? {
          extensions: { ...extensions, ...(parsedIdempotency === undefined ? {} : { idempotency: parsedIdempotency }) },
        }
      : {}),
  };
}

export interface TransportAnswer {
  readonly status: number;
  readonly body: GraphqlHttpBody;
  readonly replayed: boolean;
  readonly attempts: number;
}

/** One attempt's signal: its own timeout, and the caller's abort when there is one. */
function attemptSignal(timeoutMs: number, callerSignal: AbortSignal | undefined): AbortSignal {
  const timeout = AbortSignal.timeout(timeoutMs);
  return callerSignal === undefined ? timeout : AbortSignal.any([timeout, callerSignal]);
}

const retryableStatuses = (status: number) => status === 409 || status === 429 || status >= 500;

export function defaultRetryBudget(): RetryBudget {
  return new RetryBudget(new MemoryTokenBucketStore({ capacity: 20, refillPerSecond: 1 }), { depositPerSuccess: 0.1 });
}

export interface KeyedRequest {
  readonly url: string;
  readonly headers: Readonly<Record<string, string>>;
  readonly body: string;
  readonly idempotencyKey: string;
  readonly callSite: string;
  /** Aborts the attempt in flight and any wait before the next one; nothing is retried after it. */
  readonly signal?: AbortSignal;
}

/** The abort's reason, as fetch rejects with it (an AbortError DOMException unless the caller gave one). */
function abortReason(signal: AbortSignal): unknown {
  return signal.reason ?? new DOMException('The operation was aborted.', 'AbortError');
}

/** setTimeout as a promise that an abort ends early (the loop then throws the abort's reason). */
function sleepUnlessAborted(ms: number, signal: AbortSignal | undefined): Promise<void> {
  return new Promise<void>((resolve) => {
    const done = () => {
      clearTimeout(timer);
      signal?.removeEventListener('abort', done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal?.addEventListener('abort', done, { once: true });
  });
}

/** What one attempt got: an answer to classify, or a network failure (a timeout included). */
type AttemptResult =
  | { readonly kind: 'answer'; readonly response: Response; readonly body: GraphqlHttpBody }
  | { readonly kind: 'network-error'; readonly reason: string };

async function sendOnce(
  request: KeyedRequest,
  attempt: number,
  timeoutMs: number,
  fetchImpl: typeof fetch,
): Promise<AttemptResult> {
  try {
    const response = await fetchImpl(request.url, {
      method: 'POST',
      headers: {
        'content-type': 'application/json',
        ...request.headers,
        'idempotency-key': request.idempotencyKey,
        'idempotency-attempt': String(attempt),
      },
      body: request.body,
      signal: attemptSignal(timeoutMs, request.signal),
    });
    return { kind: 'answer', response, body: parseGraphqlBody(await response.json()) };
  } catch (error) {
    // The caller gave up (the link's subscriber unsubscribed): not a network error to retry.
    if (request.signal?.aborted) throw abortReason(request.signal);
    return {
      kind: 'network-error',
      reason: error instanceof Error ? `${error.name}: ${error.message}` : String(error),
    };
  }
}

export async function sendWithRetries(
  request: KeyedRequest,
  options: TransportOptions & { budget: RetryBudget },
): Promise<TransportAnswer> {
  const retry = { ...defaultRetryOptions, ...options.retry };
  const fetchImpl = options.fetch ?? fetch;
  const sleep = options.sleep ?? ((ms: number) => sleepUnlessAborted(ms, request.signal));
  let delayMs = 0;
  let retryAfterSeconds: number | null = null;
  let lastReason = 'none';
  for (let attempt = 1; attempt <= retry.attemptsMax; attempt += 1) {
    if (attempt > 1) {
      if (!(await options.budget.tryRetry(request.callSite))) {
        throw new RetryBudgetExhaustedError(request.callSite, request.idempotencyKey, attempt - 1, lastReason);
      }
      delayMs = retryDelayMs(attempt - 2, retry, retryAfterSeconds ?? undefined, options.random);
      await sleep(delayMs);
    }
    if (request.signal?.aborted) throw abortReason(request.signal);
    const record = (status: number | 'network-error', reason: string, replayed: boolean | null) =>
      options.transcript?.({
        key: request.idempotencyKey,
        callSite: request.callSite,
        attempt,
        delayMs,
        retryAfterSeconds,
        status,
        reason,
        replayed,
        at: new Date().toISOString(),
      });

    const result = await sendOnce(request, attempt, retry.timeoutMs, fetchImpl);
    if (result.kind === 'network-error') {
      lastReason = result.reason;
      record('network-error', lastReason, null);
      retryAfterSeconds = null;
      continue;
    }
    const { response, body } = result;
    const code = String(body.errors?.[0]?.extensions?.code ?? (response.ok ? 'ok' : `HTTP_${response.status}`));
    const replayed = body.extensions?.idempotency?.replayed ?? response.headers.get('idempotent-replayed') === 'true';
    record(response.status, code, response.ok ? replayed : null);
    if (response.ok && (body.errors === undefined || body.errors.length === 0)) {
      await options.budget.recordSuccess(request.callSite);
      return { status: response.status, body, replayed, attempts: attempt };
    }
    const message = body.errors?.[0]?.message ?? `HTTP ${response.status}`;
    const finalAttempt = attempt === retry.attemptsMax;
    if (!retryableStatuses(response.status) || finalAttempt) {
      const suffix = finalAttempt && retryableStatuses(response.status) ? ` (gave up after ${attempt} attempts)` : '';
      throw new ClientRequestError(code, response.status, message + suffix, request.idempotencyKey, attempt);
    }
    lastReason = code;
    const header = Number(response.headers.get('retry-after'));
    retryAfterSeconds = Number.isFinite(header) && header > 0 ? header : null;
  }
  throw new ClientRequestError(
    'NETWORK_ERROR',
    0,
    `no answer after ${retry.attemptsMax} attempts: ${lastReason}`,
    request.idempotencyKey,
    retry.attemptsMax,
  );
}

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
 * - sends Idempotency-Attempt, and reports every attempt to an optional transcript.
 * It imports only the pure parts of src/retry.
 */
import { retryDelayMs } from '../retry/backoff';
import { MemoryTokenBucketStore, RetryBudget } from '../retry/token-bucket';

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

export interface GraphqlHttpBody {
  data?: Record<string, unknown> | null;
  errors?: { message: string; extensions?: Record<string, unknown> }[];
  extensions?: { idempotency?: { key: string; replayed: boolean; firstRequestAt: string | null } };
}

export interface TransportAnswer {
  readonly status: number;
  readonly body: GraphqlHttpBody;
  readonly replayed: boolean;
  readonly attempts: number;
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
}

export async function sendWithRetries(
  request: KeyedRequest,
  options: TransportOptions & { budget: RetryBudget },
): Promise<TransportAnswer> {
  const retry = { ...defaultRetryOptions, ...options.retry };
  const fetchImpl = options.fetch ?? fetch;
  const sleep = options.sleep ?? ((ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms)));
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

    let response: Response;
    let body: GraphqlHttpBody;
    try {
      response = await fetchImpl(request.url, {
        method: 'POST',
        headers: {
          'content-type': 'application/json',
          ...request.headers,
          'idempotency-key': request.idempotencyKey,
          'idempotency-attempt': String(attempt),
        },
        body: request.body,
        signal: AbortSignal.timeout(retry.timeoutMs),
      });
      body = (await response.json()) as GraphqlHttpBody;
    } catch (error) {
      lastReason = error instanceof Error ? `${error.name}: ${error.message}` : String(error);
      record('network-error', lastReason, null);
      retryAfterSeconds = null;
      continue;
    }
    const code = String(body.errors?.[0]?.extensions?.code ?? (response.ok ? 'ok' : `HTTP_${response.status}`));
    const replayed = body.extensions?.idempotency?.replayed ?? response.headers.get('idempotent-replayed') === 'true';
    record(response.status, code, response.ok ? replayed : null);
    if (response.ok && (body.errors === undefined || body.errors.length === 0)) {
      await options.budget.recordSuccess(request.callSite);
      return { status: response.status, body, replayed, attempts: attempt };
    }
    const message = body.errors?.[0]?.message ?? `HTTP ${response.status}`;
    if (!retryableStatuses(response.status)) {
      throw new ClientRequestError(code, response.status, message, request.idempotencyKey, attempt);
    }
    lastReason = code;
    const header = Number(response.headers.get('retry-after'));
    retryAfterSeconds = Number.isFinite(header) && header > 0 ? header : null;
    if (attempt === retry.attemptsMax) {
      throw new ClientRequestError(
        code,
        response.status,
        `${message} (gave up after ${attempt} attempts)`,
        request.idempotencyKey,
        attempt,
      );
    }
  }
  throw new ClientRequestError(
    'NETWORK_ERROR',
    0,
    `no answer after ${retry.attemptsMax} attempts: ${lastReason}`,
    request.idempotencyKey,
    retry.attemptsMax,
  );
}

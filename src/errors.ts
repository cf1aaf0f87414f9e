/**
 * Every error code the gateway answers with, in one list. Each code is either transient (the
 * same request may succeed later: clients and workers retry it) or final. That one bit drives the
 * retry decision everywhere; `httpStatus` drives the HTTP mapping in graphql/errors.ts.
 */

export const errorCodes = {
  UNAUTHENTICATED: { httpStatus: 401, transient: false },
  FORBIDDEN: { httpStatus: 403, transient: false },
  NOT_FOUND: { httpStatus: 404, transient: false },
  BAD_USER_INPUT: { httpStatus: 400, transient: false },
  BAD_REQUEST: { httpStatus: 400, transient: false },
  IDEMPOTENCY_KEY_MISSING: { httpStatus: 400, transient: false },
  IDEMPOTENCY_KEY_INVALID: { httpStatus: 400, transient: false },
  IDEMPOTENCY_KEY_AMBIGUOUS: { httpStatus: 400, transient: false },
  IDEMPOTENCY_KEY_IN_USE: { httpStatus: 409, transient: true },
  IDEMPOTENCY_KEY_REUSED: { httpStatus: 422, transient: false },
  IDEMPOTENCY_KEY_EXPIRED: { httpStatus: 422, transient: false },
  CHARGE_NOT_REFUNDABLE: { httpStatus: 400, transient: false },
  REFUND_EXCEEDS_CHARGE: { httpStatus: 400, transient: false },
  // The refund would fit if another refund's reservation, still in flight, were given back.
  REFUND_IN_PROGRESS: { httpStatus: 409, transient: true },
  RATE_LIMITED: { httpStatus: 429, transient: true },
  TRANSIENT_FAILURE: { httpStatus: 503, transient: true },
  INTERNAL: { httpStatus: 500, transient: true },
  // The ledger worker's outcomes (src/ledger/failures.ts). LEDGER_UNAVAILABLE (infrastructure)
  // and LEDGER_CHARGE_NOT_POSTED (order) hold the job without spending an attempt; other
  // transient ones are retried under the retry budget, then dead-lettered after N attempts;
  // final ones (poison messages) are dead-lettered at once.
  LEDGER_EVENT_INVALID: { httpStatus: 500, transient: false },
  LEDGER_AMOUNT_MISMATCH: { httpStatus: 500, transient: false },
  LEDGER_CHARGE_MISSING: { httpStatus: 500, transient: false },
  LEDGER_CHARGE_NOT_POSTED: { httpStatus: 503, transient: true },
  LEDGER_UNAVAILABLE: { httpStatus: 503, transient: true },
  LEDGER_APPLY_FAILED: { httpStatus: 500, transient: true },
  LEDGER_JOB_FAILED: { httpStatus: 500, transient: false },
} as const satisfies Record<string, { httpStatus: number; transient: boolean }>;

export type ErrorCode = keyof typeof errorCodes;

export function isTransient(code: ErrorCode): boolean {
  return errorCodes[code].transient;
}

export interface GatewayErrorOptions {
  /** The input field at fault, for BAD_USER_INPUT: `input.amount`. */
  field?: string;
  /** Seconds the client should wait before trying again (409, 429, 503). */
  retryAfterSeconds?: number;
  /** Thrown while the key is held: release it (nothing was stored), so the retry runs at once. */
  releasesKey?: boolean;
  cause?: unknown;
}

/** An outcome we expect and answer with a code. Anything else is a bug and becomes INTERNAL. */
export class GatewayError extends Error {
  readonly field: string | undefined;
  readonly retryAfterSeconds: number | undefined;
  readonly releasesKey: boolean;

  constructor(
    readonly code: ErrorCode,
    message: string,
    options: GatewayErrorOptions = {},
  ) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'GatewayError';
    this.field = options.field;
    this.retryAfterSeconds = options.retryAfterSeconds;
    this.releasesKey = options.releasesKey ?? false;
  }

  get httpStatus(): number {
    return errorCodes[this.code].httpStatus;
  }

  get transient(): boolean {
    return isTransient(this.code);
  }
}

/** For what cannot happen. It crashes loudly instead of answering with a code. */
export function invariant(condition: unknown, message: string): asserts condition {
  if (!condition) throw new Error(`invariant violated: ${message}`);
}

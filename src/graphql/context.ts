/**
 * The per-request GraphQL context: who is calling, the raw idempotency headers, and what the
 * idempotency layer decided (read by the response plugin for headers and extensions).
 */
import type { ChargeService } from '../charges/create-charge';
import type { RefundService } from '../charges/refund-charge';
import type { Merchant } from '../merchants/merchants';
import type { Database } from '../platform/database';
import type { Logger } from '../platform/logger';
import type { Metrics } from '../metrics';

export interface GatewayServices {
  readonly db: Database;
  readonly charges: ChargeService;
  readonly refunds: RefundService;
  readonly metrics: Metrics;
  /** IDEMPOTENCY_IN_FLIGHT_WAIT_MS: how long a request waits for its in-flight twin by default. */
  readonly inFlightWaitMs: number;
}

export interface IdempotencyInfo {
  readonly key: string;
  replayed: boolean;
  firstRequestAt: string | null;
  /** True when the answer is a stored outcome (a success or a final refusal), first or replayed. */
  stored?: boolean;
}

export interface GatewayContext {
  readonly requestId: string;
  readonly merchant: Merchant | null;
  /** Why `merchant` is null: no Authorization header, or a key we do not know. */
  readonly authProblem: 'missing' | 'unknown' | null;
  readonly headers: {
    /** One entry per occurrence of the header, so a duplicated key is seen (and refused). */
    readonly idempotencyKey: readonly string[] | undefined;
    readonly xIdempotencyKey: readonly string[] | undefined;
    readonly attempt: string | undefined;
    /** `Prefer: wait=<seconds>`: how long to wait for an in-flight twin. */
    readonly prefer?: string | undefined;
  };
  /** Set by a keyed resolver once the key's outcome is known. */
  idempotency: IdempotencyInfo | null;
  readonly services: GatewayServices;
  readonly logger: Logger;
}

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
}

export interface IdempotencyInfo {
  readonly key: string;
  replayed: boolean;
  firstRequestAt: string | null;
}

export interface GatewayContext {
  readonly requestId: string;
  readonly merchant: Merchant | null;
  /** Why `merchant` is null: no Authorization header, or a key we do not know. */
  readonly authProblem: 'missing' | 'unknown' | null;
  readonly headers: {
    readonly idempotencyKey: string | undefined;
    readonly xIdempotencyKey: string | undefined;
    readonly attempt: string | undefined;
  };
  /** Set by a keyed resolver once the key's outcome is known. */
  idempotency: IdempotencyInfo | null;
  readonly services: GatewayServices;
  readonly logger: Logger;
}

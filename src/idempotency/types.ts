/**
 * The contract of the idempotency layer: what a keyed request is, what a held key carries, and
 * what a completed key stores.
 *
 * States of a key row (Postgres, the truth):
 *
 *   (none) ──claim──▶ IN_PROGRESS/STARTED ──acquirer answered──▶ IN_PROGRESS/AUTHORIZED ──commit──▶ COMPLETED
 *                        │   ▲                                      │   ▲
 *                        │   └── takeover once the lease ran out ───┘   │ (token + 1, resumes here)
 *                        └── release on a transient failure (lease cleared, row kept) ──┘
 *   IN_PROGRESS/STARTED, lease long gone and nothing authorized ──completer──▶ ABANDONED
 */

import { canonicalJson, fingerprint } from './fingerprint';

export type KeyedOperation = 'createCharge' | 'refundCharge';
/** RESERVED is a refund's: the charge's amount is held before the acquirer is called. */
export type RecoveryPoint = 'STARTED' | 'RESERVED' | 'AUTHORIZED';

export interface KeyedRequest {
  readonly merchantId: string;
  readonly key: string;
  readonly operation: KeyedOperation;
  readonly fingerprint: string;
  /** The coerced input in canonical JSON, kept for disputes and for the completer to finish from. */
  readonly requestPayload: string;
}

/** A key row this process holds the lease on. Every write under the lease checks `lockToken`. */
export interface HeldKey {
  readonly id: string;
  readonly lockToken: string;
  readonly recoveryPoint: RecoveryPoint;
  /** The acquirer's answer as JSON, once the key is AUTHORIZED. */
  readonly acquirerResult: string | null;
  readonly requestPayload: string;
  readonly firstRequestAt: string;
}

/**
 * A final answer, stored once and replayed byte for byte. `body` is JSON text: the resource
 * snapshot for a success (200), or `{ "message": … }` for a final refusal (`code` set).
 */
export interface StoredResponse {
  readonly status: number;
  readonly code: string | null;
  readonly body: string;
  readonly firstRequestAt: string;
}

/** A keyed request: the fingerprint and payload are the input in canonical JSON. */
export function keyedRequest(operation: KeyedOperation, merchantId: string, key: string, input: unknown): KeyedRequest {
  return {
    merchantId,
    key,
    operation,
    fingerprint: fingerprint(operation, input),
    requestPayload: canonicalJson(input),
  };
}

/** The derived key the acquirer sees: from our row id, never the client's raw key. */
export function acquirerKeyFor(keyId: string): string {
  return `idem_${keyId}`;
}

/**
 * The names of what can happen to an idempotency key. One name per outcome, used in code, metric
 * labels, the audit table and the docs alike (docs/contract.md §7).
 * - created:     the key was new; this request runs the operation.
 * - resumed:     the key's lease had run out (its holder died or released it); this request took it over.
 * - replayed:    the key completed earlier with the same request; the stored answer is returned.
 * - in_progress: another request holds the key's lease; answered 409.
 * - mismatch:    the key was used before with a different request; answered 422.
 * - missing:     a money-moving mutation came without a key, or with a malformed one; answered 400.
 * - released:    a transient failure gave the key back, so a retry can run; answered 503.
 * - expired:     the key was purged by retention and only its tombstone is left; answered 422.
 */
export type IdempotencyOutcome =
  'created' | 'resumed' | 'replayed' | 'in_progress' | 'mismatch' | 'missing' | 'released' | 'expired';

/**
 * The one write that records a charge: the key's completion (src/idempotency/key-row.ts,
 * `completeKey`, fenced by the lease's lock token) with the charge's own rows as its follow-up,
 * in a single SQL statement (so, one transaction, one round trip):
 *   1. the key COMPLETED with the stored response and the acquirer's answer, only under our lease;
 *   2. the charge row, only if (1) matched (its `idempotency_key_id` is the completed key);
 *   3. its outbox event, only if (2) inserted.
 * Either all three rows change or none does. Returns false when the lease was lost: another
 * request has taken the key over, and it records the charge instead.
 */
import { sql, type Queryable } from '../platform/database';
import type { HeldKey, StoredResponse } from '../idempotency/types';
import { completeKey, type FollowUp } from '../idempotency/key-row';
import { chargeEvent } from '../outbox/events';
import type { ChargeSnapshot } from './charge';

export interface ChargeRecord {
  readonly merchantId: string;
  readonly snapshot: ChargeSnapshot;
  readonly source: string;
  readonly authorizationId: string | null;
  /** The acquirer's answer as JSON, kept on the key row (as AUTHORIZED kept it before). */
  readonly acquirerResult?: string;
}

export function recordCharge(
  db: Queryable,
  held: HeldKey,
  charge: ChargeRecord,
  response: StoredResponse,
): Promise<boolean> {
  return completeKey(db, held, response, chargeRows(charge), charge.acquirerResult);
}

/** The charge row and its outbox event, written for the key row the completion just wrote. */
function chargeRows(charge: ChargeRecord): FollowUp {
  const { snapshot } = charge;
  const event = chargeEvent({
    version: 1,
    chargeId: snapshot.id,
    merchantId: charge.merchantId,
    amount: snapshot.amount,
    currency: snapshot.currency,
    authorizationId: charge.authorizationId,
    failureCode: snapshot.failureCode,
    createdAt: snapshot.createdAt,
  });
  return {
    steps: sql`
      charge AS (
        INSERT INTO charges (id, merchant_id, idempotency_key_id, amount, currency, source, status, failure_code,
                             authorization_id, description, metadata, created_at)
        SELECT ${snapshot.id}, ${charge.merchantId}, key_row.id, ${snapshot.amount}, ${snapshot.currency}, ${charge.source},
               ${snapshot.status}, ${snapshot.failureCode}, ${charge.authorizationId}, ${snapshot.description},
               ${snapshot.metadata === null ? null : JSON.stringify(snapshot.metadata)}, ${snapshot.createdAt}::timestamptz
          FROM key_row
        RETURNING id
      ), event AS (
        INSERT INTO outbox_events (event_type, aggregate_id, payload)
        SELECT ${event.type}, charge.id, ${JSON.stringify(event.payload)} FROM charge
        RETURNING id
      )`,
    done: sql`(SELECT count(*) FROM event) = 1`,
  };
}

/**
 * The one write that records a charge. A single SQL statement (so, one transaction) that:
 *   1. completes the idempotency key, checking the lease's lock token (fencing);
 *   2. inserts the charge row, only if (1) matched;
 *   3. inserts its outbox event, only if (2) inserted.
 * Either all three rows change or none does. Returns false when the lease was lost: another
 * request has taken the key over, and it records the charge instead.
 */
import type { Queryable } from '../platform/database';
import type { HeldKey, StoredResponse } from '../idempotency/types';
import { chargeEvent } from '../outbox/events';
import type { ChargeSnapshot } from './charge';

export interface ChargeRecord {
  readonly merchantId: string;
  readonly snapshot: ChargeSnapshot;
  readonly source: string;
  readonly authorizationId: string | null;
}

export async function recordCharge(
  db: Queryable,
  held: HeldKey,
  charge: ChargeRecord,
  response: StoredResponse,
): Promise<boolean> {
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
  const rows = await db.$queryRaw<{ events: number }[]>`
    WITH completed AS (
      UPDATE idempotency_keys
         SET state = 'COMPLETED', recovery_point = 'COMPLETED', locked_until = NULL,
             response_status = ${response.status}, response_code = ${response.code}, response_body = ${response.body},
             completed_at = now(), updated_at = now()
       WHERE id = ${held.id}::bigint AND lock_token = ${held.lockToken}::bigint AND state = 'IN_PROGRESS'
      RETURNING id
    ), charge AS (
      INSERT INTO charges (id, merchant_id, idempotency_key_id, amount, currency, source, status, failure_code,
                           authorization_id, description, metadata, created_at)
      SELECT ${snapshot.id}, ${charge.merchantId}, completed.id, ${snapshot.amount}, ${snapshot.currency}, ${charge.source},
             ${snapshot.status}, ${snapshot.failureCode}, ${charge.authorizationId}, ${snapshot.description},
             ${snapshot.metadata === null ? null : JSON.stringify(snapshot.metadata)}, ${snapshot.createdAt}::timestamptz
        FROM completed
      RETURNING id
    ), event AS (
      INSERT INTO outbox_events (event_type, aggregate_id, payload)
      SELECT ${event.type}, charge.id, ${JSON.stringify(event.payload)} FROM charge
      RETURNING id
    )
    SELECT count(*)::int AS events FROM event`;
  return rows[0]?.events === 1;
}

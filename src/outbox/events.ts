/**
 * The event contract between the money path and its consumers. Every charge writes exactly one
 * event (`charge.succeeded` or `charge.failed`) in the same statement or transaction as the
 * charge row; a refund writes `refund.succeeded`. Payloads are versioned JSON; amounts are integer
 * minor units.
 */

export type OutboxEventType = 'charge.succeeded' | 'charge.failed' | 'refund.succeeded';

export interface ChargeEventPayload {
  readonly version: 1;
  readonly chargeId: string;
  readonly merchantId: string;
  readonly amount: number;
  readonly currency: string;
  readonly authorizationId: string | null;
  readonly failureCode: string | null;
  readonly createdAt: string;
}

export interface OutboxEvent<Payload> {
  readonly type: OutboxEventType;
  readonly aggregateId: string;
  readonly payload: Payload;
}

export function chargeEvent(payload: ChargeEventPayload): OutboxEvent<ChargeEventPayload> {
  return {
    type: payload.authorizationId === null ? 'charge.failed' : 'charge.succeeded',
    aggregateId: payload.chargeId,
    payload,
  };
}

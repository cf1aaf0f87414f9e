/**
 * Reading an event where the ledger consumes it. The amount is checked here again (it was
 * checked where it was written): a payload that does not parse, or whose amount is out of
 * bounds, is a poison message, answered with a final error.
 */
import { GatewayError } from '../errors';
import { amountMax, amountMin } from '../charges/validation';
import type { OutboxEventType } from '../outbox/events';

export interface LedgerEvent {
  readonly eventId: string;
  /** The outbox row's UUID: the event's identity (docs/contract.md §5). */
  readonly eventUid: string;
  readonly type: OutboxEventType;
  readonly chargeId: string;
  readonly refundId: string | null;
  readonly merchantId: string;
  readonly amount: number;
  readonly currency: string;
}

const eventTypes: readonly OutboxEventType[] = ['charge.succeeded', 'charge.failed', 'refund.succeeded'];

function invalid(message: string): GatewayError {
  return new GatewayError('LEDGER_EVENT_INVALID', message);
}

export function parseLedgerEvent(eventId: string, eventUid: string, type: string, payloadText: string): LedgerEvent {
  if (!/^\d{1,18}$/.test(eventId)) throw invalid(`event id "${eventId}" is not a positive integer`);
  if (!/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i.test(eventUid)) {
    throw invalid(`event uid "${eventUid}" is not a UUID`);
  }
  if (!(eventTypes as readonly string[]).includes(type)) throw invalid(`unknown event type "${type}"`);
  let payload: Record<string, unknown>;
  try {
    payload = JSON.parse(payloadText) as Record<string, unknown>;
  } catch {
    throw invalid(`event ${eventId}: payload is not JSON`);
  }
  const { chargeId, merchantId, amount, currency } = payload;
  const refundId = type === 'refund.succeeded' ? payload.refundId : null;
  if (typeof chargeId !== 'string' || typeof merchantId !== 'string')
    throw invalid(`event ${eventId}: chargeId and merchantId are required`);
  if (refundId !== null && typeof refundId !== 'string') throw invalid(`event ${eventId}: refundId is required`);
  if (typeof amount !== 'number' || !Number.isSafeInteger(amount) || amount < amountMin || amount > amountMax) {
    throw invalid(`event ${eventId}: amount ${String(amount)} is not whole minor units in ${amountMin}..${amountMax}`);
  }
  if (typeof currency !== 'string' || !/^[A-Z]{3}$/.test(currency)) throw invalid(`event ${eventId}: bad currency`);
  return { eventId, eventUid, type: type as OutboxEventType, chargeId, refundId, merchantId, amount, currency };
}

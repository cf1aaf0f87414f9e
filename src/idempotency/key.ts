/**
 * Reading the client's Idempotency-Key. `X-Idempotency-Key` is an accepted alias; both present
 * and different is a 400, and so is either header sent twice (Node would join the two values
 * into one new key, "a, b"). A key is 1..255 printable ASCII characters (docs/contract.md §2).
 */
import { GatewayError } from '../errors';

export const idempotencyKeyLengthMax = 255;
const printableAscii = /^[\x20-\x7e]+$/;

/** Each header's values as sent, one entry per occurrence (Node's `headersDistinct`). */
export interface KeyHeaders {
  readonly idempotencyKey: readonly string[] | undefined;
  readonly xIdempotencyKey: readonly string[] | undefined;
}

function single(values: readonly string[] | undefined, name: string): string | undefined {
  if (values === undefined || values.length === 0) return undefined;
  if (values.length > 1) {
    throw new GatewayError('IDEMPOTENCY_KEY_INVALID', `${name} was sent ${values.length} times; send it once.`);
  }
  return values[0];
}

/** Returns the key, or throws IDEMPOTENCY_KEY_MISSING / IDEMPOTENCY_KEY_INVALID. */
export function readIdempotencyKey(headers: KeyHeaders): string {
  const idempotencyKey = single(headers.idempotencyKey, 'Idempotency-Key');
  const xIdempotencyKey = single(headers.xIdempotencyKey, 'X-Idempotency-Key');
  if (idempotencyKey !== undefined && xIdempotencyKey !== undefined && idempotencyKey !== xIdempotencyKey) {
    throw new GatewayError(
      'IDEMPOTENCY_KEY_INVALID',
      'Idempotency-Key and X-Idempotency-Key are both present and differ; send one of them.',
    );
  }
  const key = idempotencyKey ?? xIdempotencyKey;
  if (key === undefined || key === '') {
    throw new GatewayError('IDEMPOTENCY_KEY_MISSING', 'This mutation moves money: send an Idempotency-Key header.');
  }
  if (key.length > idempotencyKeyLengthMax || !printableAscii.test(key)) {
    throw new GatewayError(
      'IDEMPOTENCY_KEY_INVALID',
      `Idempotency-Key must be 1 to ${idempotencyKeyLengthMax} printable ASCII characters.`,
    );
  }
  return key;
}

/** The longest wait a client may ask for with `Prefer: wait=<seconds>` (docs/contract.md §2). */
export const preferWaitSecondsMax = 10;

/**
 * How long to wait for an in-flight twin: `Prefer: wait=<seconds>` (RFC 7240), capped at 10 s,
 * else the configured default. A malformed preference is ignored, as RFC 7240 asks.
 */
export function inFlightWaitMs(prefer: string | undefined, defaultMs: number): number {
  const match = prefer?.match(/(?:^|[,;\s])wait\s*=\s*"?(\d{1,6})"?/i);
  if (match?.[1] === undefined) return defaultMs;
  return Math.min(Number(match[1]), preferWaitSecondsMax) * 1000;
}

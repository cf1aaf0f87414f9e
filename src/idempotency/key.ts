/**
 * Reading the client's Idempotency-Key. `X-Idempotency-Key` is an accepted alias; both present
 * and different is a 400. A key is 1..255 printable ASCII characters (docs/contract.md §2).
 */
import { GatewayError } from '../errors';

export const idempotencyKeyLengthMax = 255;
const printableAscii = /^[\x20-\x7e]+$/;

export interface KeyHeaders {
  readonly idempotencyKey: string | undefined;
  readonly xIdempotencyKey: string | undefined;
}

/** Returns the key, or throws IDEMPOTENCY_KEY_MISSING / IDEMPOTENCY_KEY_INVALID. */
export function readIdempotencyKey(headers: KeyHeaders): string {
  const { idempotencyKey, xIdempotencyKey } = headers;
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

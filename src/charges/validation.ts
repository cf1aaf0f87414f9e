/**
 * Input checks for money-moving mutations. They run before the idempotency key is taken, so bad
 * input is answered 400 BAD_USER_INPUT, naming the field, and nothing is stored.
 */
import { GatewayError } from '../errors';
import type { JsonValue } from '../idempotency/fingerprint';
import { isSupportedCurrency } from './currencies';

export const amountMin = 1;
export const amountMax = 99_999_999;
export const descriptionLengthMax = 500;
// Metadata is for the merchant's own references (order ids and the like), not for documents.
export const metadataKeysMax = 50;
export const metadataKeyLengthMax = 40;
export const metadataValueLengthMax = 500;
export const metadataBytesMax = 8_192;
const sourcePattern = /^tok_[A-Za-z0-9_]{1,64}$/;

export type Metadata = Readonly<Record<string, string | number | boolean | null>>;

export interface CreateChargeInput {
  readonly amount: number;
  readonly currency: string;
  readonly source: string;
  readonly description: string | null;
  readonly metadata: Metadata | null;
}

function badInput(field: string, message: string): GatewayError {
  return new GatewayError('BAD_USER_INPUT', `${field}: ${message}`, { field });
}

export function checkAmount(field: string, amount: number): void {
  if (!Number.isSafeInteger(amount) || amount < amountMin || amount > amountMax) {
    throw badInput(field, `must be a whole number of minor units from ${amountMin} to ${amountMax}`);
  }
}

export function checkMetadata(field: string, metadata: unknown): Metadata | null {
  if (metadata === null || metadata === undefined) return null;
  if (typeof metadata !== 'object' || Array.isArray(metadata)) throw badInput(field, 'must be a JSON object');
  const entries = Object.entries(metadata as Record<string, JsonValue>);
  if (entries.length > metadataKeysMax) throw badInput(field, `may hold at most ${metadataKeysMax} keys`);
  for (const [key, value] of entries) {
    if (key.length === 0 || key.length > metadataKeyLengthMax) {
      throw badInput(`${field}.${key}`, `keys must be 1 to ${metadataKeyLengthMax} characters`);
    }
    const scalar = value === null || ['string', 'number', 'boolean'].includes(typeof value);
    if (!scalar) throw badInput(`${field}.${key}`, 'values must be strings, numbers, booleans or null');
    if (typeof value === 'string' && value.length > metadataValueLengthMax) {
      throw badInput(`${field}.${key}`, `must be at most ${metadataValueLengthMax} characters`);
    }
  }
  if (Buffer.byteLength(JSON.stringify(metadata)) > metadataBytesMax) {
    throw badInput(field, `must be at most ${metadataBytesMax} bytes as JSON`);
  }
  return metadata as Metadata;
}

export function validateCreateChargeInput(input: {
  amount: number;
  currency: string;
  source: string;
  description?: string | null | undefined;
  metadata?: unknown;
}): CreateChargeInput {
  checkAmount('input.amount', input.amount);
  if (!isSupportedCurrency(input.currency)) {
    throw badInput(
      'input.currency',
      `"${input.currency}" is not a supported ISO 4217 currency code (upper case, e.g. USD)`,
    );
  }
  if (!sourcePattern.test(input.source)) {
    throw badInput('input.source', 'must be a card token such as tok_visa');
  }
  const description = input.description ?? null;
  if (description !== null && description.length > descriptionLengthMax) {
    throw badInput('input.description', `must be at most ${descriptionLengthMax} characters`);
  }
  return {
    amount: input.amount,
    currency: input.currency,
    source: input.source,
    description,
    metadata: checkMetadata('input.metadata', input.metadata),
  };
}

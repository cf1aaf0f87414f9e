/**
 * One schema per input shape of the money path (zod). The same schema checks the GraphQL input
 * before the idempotency key is taken, and parses every stored or queued copy of it (the key
 * row's request payload, a charge's metadata), so nothing is cast from JSON.
 *
 * Whatever passes is storable (docs/contract.md §2): no text Postgres cannot hold (NUL, unpaired
 * UTF-16 surrogates), no number JSON cannot carry exactly (past 2^53, not finite), nothing a
 * table CHECK would refuse (lengths, amounts, currency). test/charges/storable-input.test.ts
 * drives arbitrary inputs through these schemas into the real tables to keep that true.
 * A refusal is 400 BAD_USER_INPUT naming the field (`input.metadata.orderId`).
 */
import { z } from 'zod';
import { GatewayError } from '../errors';
import { isSupportedCurrency } from './currencies';

export const amountMin = 1;
export const amountMax = 99_999_999;
export const descriptionLengthMax = 500;
export const refundReasonLengthMax = 500;
// Metadata is for the merchant's own references (order ids and the like), not for documents.
export const metadataKeysMax = 50;
export const metadataKeyLengthMax = 40;
export const metadataValueLengthMax = 500;
export const metadataBytesMax = 8_192;
/** Ids the gateway hands out are short; anything longer cannot name one of them. */
export const chargeIdLengthMax = 64;
const sourcePattern = /^tok_[A-Za-z0-9_]{1,64}$/;

// Postgres text refuses NUL (22021); an unpaired surrogate is not UTF-8 at all.
// eslint-disable-next-line no-control-regex -- matching NUL is the point
const unstorableCharacter = /\u0000|[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;
const unstorableMessage = 'must not contain NUL or unpaired surrogate characters: the database cannot store them';

/** True when Postgres can store the text as it is. */
export function isStorableText(text: string): boolean {
  return !unstorableCharacter.test(text);
}

const storableText = (lengthMax: number) =>
  z.string().max(lengthMax, `must be at most ${lengthMax} characters`).refine(isStorableText, unstorableMessage);

const amountSchema = z
  .number()
  .refine(
    (amount) => Number.isSafeInteger(amount) && amount >= amountMin && amount <= amountMax,
    `must be a whole number of minor units from ${amountMin} to ${amountMax}`,
  );

export type MetadataValue = string | number | boolean | null;
export type Metadata = Readonly<Record<string, MetadataValue>>;

/** A number JSON carries exactly: finite, and an integer only within ±(2^53 − 1). */
function isExactJsonNumber(value: number): boolean {
  return Number.isFinite(value) && (!Number.isInteger(value) || Number.isSafeInteger(value));
}

function metadataValueProblem(value: unknown): string | undefined {
  if (value === null || typeof value === 'boolean') return undefined;
  if (typeof value === 'number') {
    return isExactJsonNumber(value)
      ? undefined
      : 'numbers must be finite, and integers within ±9007199254740991 (JSON cannot carry others exactly)';
  }
  if (typeof value !== 'string') return 'values must be strings, numbers, booleans or null';
  if (value.length > metadataValueLengthMax) return `must be at most ${metadataValueLengthMax} characters`;
  return isStorableText(value) ? undefined : unstorableMessage;
}

/**
 * A flat JSON object of scalars. Checked entry by entry (rather than with z.record) so that the
 * merchant's own object is returned as it came, own keys such as "__proto__" included.
 */
export const metadataSchema = z
  .unknown()
  .optional()
  .transform((metadata, context): Metadata | null => {
    if (metadata === null || metadata === undefined) return null;
    if (typeof metadata !== 'object' || Array.isArray(metadata)) {
      context.addIssue({ code: 'custom', message: 'must be a JSON object' });
      return z.NEVER;
    }
    const entries = Object.entries(metadata);
    if (entries.length > metadataKeysMax) {
      context.addIssue({ code: 'custom', message: `may hold at most ${metadataKeysMax} keys` });
      return z.NEVER;
    }
    for (const [key, value] of entries) {
      const problem =
        key.length === 0 || key.length > metadataKeyLengthMax
          ? `keys must be 1 to ${metadataKeyLengthMax} characters`
          : isStorableText(key)
            ? metadataValueProblem(value)
            : unstorableMessage;
      if (problem !== undefined) {
        context.addIssue({ code: 'custom', message: problem, path: [key] });
        return z.NEVER;
      }
    }
    if (Buffer.byteLength(JSON.stringify(metadata)) > metadataBytesMax) {
      context.addIssue({ code: 'custom', message: `must be at most ${metadataBytesMax} bytes as JSON` });
      return z.NEVER;
    }
    return metadata as Metadata;
  });

export const createChargeInputSchema = z.object({
  amount: amountSchema,
  currency: z.string().superRefine((currency, context) => {
    if (!isSupportedCurrency(currency)) {
      context.addIssue({
        code: 'custom',
        message: `${JSON.stringify(currency)} is not a supported ISO 4217 currency code (upper case, e.g. USD)`,
      });
    }
  }),
  source: z.string().regex(sourcePattern, 'must be a card token such as tok_visa'),
  description: storableText(descriptionLengthMax)
    .nullish()
    .transform((description) => description ?? null),
  metadata: metadataSchema,
});

export type CreateChargeInput = Readonly<z.output<typeof createChargeInputSchema>>;

export const refundChargeInputSchema = z.object({
  // An id that cannot be stored cannot name a charge: the resolver answers 404 before this runs.
  chargeId: z.string().max(chargeIdLengthMax).refine(isStorableText),
  /** Null: what is left of the charge. */
  amount: amountSchema.nullish().transform((amount) => amount ?? null),
  reason: storableText(refundReasonLengthMax)
    .nullish()
    .transform((reason) => reason ?? null),
});

export type RefundChargeInput = Readonly<z.output<typeof refundChargeInputSchema>>;

/** Parses client input: the first problem becomes 400 BAD_USER_INPUT naming its field. */
export function parseInput<Schema extends z.ZodType>(schema: Schema, input: unknown): z.output<Schema> {
  const parsed = schema.safeParse(input);
  if (parsed.success) return parsed.data;
  const issue = parsed.error.issues[0];
  const field = ['input', ...(issue?.path ?? []).map(String)].join('.');
  throw new GatewayError('BAD_USER_INPUT', `${field}: ${issue?.message ?? 'is not valid'}`, { field });
}

export function validateCreateChargeInput(input: unknown): CreateChargeInput {
  return parseInput(createChargeInputSchema, input);
}

/** An unknown, foreign or unstorable chargeId is 404 (nothing stored); other problems are 400. */
export function validateRefundInput(input: {
  chargeId: string;
  amount?: number | null;
  reason?: string | null;
}): RefundChargeInput {
  if (input.chargeId.length > chargeIdLengthMax || !isStorableText(input.chargeId)) {
    throw new GatewayError('NOT_FOUND', 'No such charge.', { field: 'input.chargeId' });
  }
  return parseInput(refundChargeInputSchema, input);
}

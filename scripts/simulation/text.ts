/**
 * Text a merchant may send: hostile but valid (it must be stored and replayed exactly), and
 * invalid (it must be refused with 400 BAD_USER_INPUT before anything is stored).
 * Lengths are in UTF-16 code units, as the gateway counts them; Postgres counts characters, which
 * are never more.
 */
import type { Random } from './random';

// The gateway's limits (src/charges/validation.ts), repeated here on purpose: the simulator is a
// client, and a client that imported the server's numbers could not notice them changing.
export const descriptionLengthMax = 500;
export const refundReasonLengthMax = 500;
export const metadataKeyLengthMax = 40;
export const metadataValueLengthMax = 500;

const hostileSamples: readonly string[] = [
  'Zoë – café ☕ 北京 Ελλάδα',
  '🇫🇷🇯🇵 👩‍👩‍👧‍👦 family',
  'שלום עולם — مرحبا بالعالم',
  '\u202Egnp.exe\u202C invoice',
  "'; DROP TABLE charges; --",
  '" OR 1=1 --',
  "Robert'); DELETE FROM ledger_entries WHERE ('1'='1",
  '\\x00 is not a NUL, \\u0000 neither',
  '$1 %s %n {{template}} ${injection}',
  '</script><script>alert(1)</script>',
  'tab\there, newline\nthere, carriage\rreturn',
  'zero\u200Bwidth\u200Djoiner\uFEFFbom',
  'line\u2028separator\u2029paragraph',
  'e\u0301 combining a\u0308 marks',
  'control \u0001\u0002\u001f characters',
  '𝔘𝔫𝔦𝔠𝔬𝔡𝔢 outside the BMP 𝟘𝟙𝟚',
];

/** The first `length` UTF-16 code units, one fewer rather than half a surrogate pair. */
function prefix(text: string, length: number): string {
  const cut = text.slice(0, length);
  return /[\uD800-\uDBFF]$/.test(cut) ? cut.slice(0, -1) : cut;
}

/** A description that is valid: hostile samples, sometimes padded to exactly the maximum length. */
export function hostileText(random: Random, lengthMax = descriptionLengthMax): string {
  const sample = random.pick(hostileSamples);
  if (!random.chance(0.3)) return prefix(sample, lengthMax);
  // Fill to exactly the maximum with a character of 1 or 2 code units, never splitting a pair.
  const filler = random.pick(['a', 'é', '€', '😀', '中']);
  let text = prefix(sample, lengthMax);
  while (text.length + filler.length <= lengthMax) text += filler;
  while (text.length < lengthMax) text += 'x';
  return text;
}

export type InvalidTextKind =
  | 'nul-in-description'
  | 'lone-surrogate-in-description'
  | 'description-too-long'
  | 'metadata-value-too-long'
  | 'metadata-key-too-long'
  | 'nul-in-metadata-key'
  | 'unsafe-integer-in-metadata';

/** A refund reason the gateway must refuse. */
export function invalidRefundReason(kind: 'nul-in-refund-reason' | 'refund-reason-too-long'): string {
  return kind === 'nul-in-refund-reason' ? 'duplicate\u0000order' : 'r'.repeat(refundReasonLengthMax + 1);
}

/**
 * A charge input (as JSON text, so numbers JSON cannot carry exactly reach the server as sent)
 * that the gateway must refuse.
 */
export function invalidChargeInputJson(random: Random, kind: InvalidTextKind, amount: number): string {
  const base = { amount, currency: 'EUR', source: 'tok_visa' };
  switch (kind) {
    case 'nul-in-description':
      return JSON.stringify({ ...base, description: `${random.pick(hostileSamples).slice(0, 20)}\u0000after` });
    case 'lone-surrogate-in-description':
      // JSON.stringify writes a lone surrogate as the escape \udc00: valid JSON, not valid UTF-8.
      return JSON.stringify({ ...base, description: `half a pair \udc00 here` });
    case 'description-too-long':
      return JSON.stringify({ ...base, description: 'y'.repeat(descriptionLengthMax + 1) });
    case 'metadata-value-too-long':
      return JSON.stringify({ ...base, metadata: { note: 'z'.repeat(metadataValueLengthMax + 1) } });
    case 'metadata-key-too-long':
      return JSON.stringify({ ...base, metadata: { ['k'.repeat(metadataKeyLengthMax + 1)]: 'v' } });
    case 'nul-in-metadata-key':
      return JSON.stringify({ ...base, metadata: { 'order\u0000id': 'ord_1' } });
    case 'unsafe-integer-in-metadata':
      // 2^53 + 1: JSON.parse rounds it to 2^53, so accepting it would store another number.
      return JSON.stringify({ ...base, metadata: { reference: 0 } }).replace(
        '"reference":0',
        '"reference":9007199254740993',
      );
  }
}

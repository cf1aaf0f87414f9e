import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { canonicalJson, fingerprint } from '../../src/idempotency/fingerprint';

type Scalar = string | number | boolean | null;
const scalar = fc.oneof(fc.string(), fc.integer(), fc.boolean(), fc.constant(null));
const flatObject = fc.dictionary(fc.string({ minLength: 1, maxLength: 8 }), scalar, { minKeys: 1, maxKeys: 8 });
const input = fc.record({
  amount: fc.integer({ min: 1, max: 99_999_999 }),
  currency: fc.constantFrom('USD', 'EUR', 'JPY'),
  source: fc.constantFrom('tok_visa', 'tok_amex'),
  metadata: flatObject,
});

function reversedKeys(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(reversedKeys);
  if (value !== null && typeof value === 'object') {
    return Object.fromEntries(
      Object.entries(value)
        .reverse()
        .map(([key, child]) => [key, reversedKeys(child)]),
    );
  }
  return value;
}

describe('the request fingerprint', () => {
  it('is the same for any reordering of object keys, at every depth', () => {
    fc.assert(
      fc.property(input, (value) => {
        expect(fingerprint('createCharge', reversedKeys(value))).toBe(fingerprint('createCharge', value));
      }),
    );
  });

  it('differs when any one value changes', () => {
    fc.assert(
      fc.property(input, fc.nat(), scalar, (value, pick, replacement) => {
        const keys = Object.keys(value.metadata);
        const key = keys[pick % keys.length]!;
        fc.pre(
          !Object.is(value.metadata[key], replacement) &&
            JSON.stringify(value.metadata[key]) !== JSON.stringify(replacement),
        );
        const changed = { ...value, metadata: { ...value.metadata, [key]: replacement as Scalar } };
        expect(fingerprint('createCharge', changed)).not.toBe(fingerprint('createCharge', value));
      }),
    );
    fc.assert(
      fc.property(input, (value) => {
        expect(fingerprint('createCharge', { ...value, amount: value.amount + 1 })).not.toBe(
          fingerprint('createCharge', value),
        );
      }),
    );
  });

  it('differs between operations with the same input', () => {
    fc.assert(
      fc.property(input, (value) => {
        expect(fingerprint('refundCharge', value)).not.toBe(fingerprint('createCharge', value));
      }),
    );
  });

  it('keeps every key, "__proto__" included', () => {
    const withProto = JSON.parse('{"__proto__": 1, "a": 2}') as unknown;
    const withOtherProto = JSON.parse('{"__proto__": 9, "a": 2}') as unknown;
    expect(canonicalJson(withProto)).toBe('{"__proto__":1,"a":2}');
    expect(fingerprint('createCharge', withProto)).not.toBe(fingerprint('createCharge', withOtherProto));
  });

  it('is canonical JSON that parses back to the same value', () => {
    fc.assert(
      fc.property(fc.jsonValue(), (value) => {
        expect(JSON.parse(canonicalJson(value))).toEqual(JSON.parse(JSON.stringify(value)));
      }),
    );
    expect(canonicalJson({ b: 1, a: { d: [3, { z: 1, y: 2 }], c: null } })).toBe(
      '{"a":{"c":null,"d":[3,{"y":2,"z":1}]},"b":1}',
    );
  });
});

/**
 * The request fingerprint: SHA-256 over the mutation's field name and its coerced input in
 * canonical JSON (object keys sorted at every depth, no insignificant white space). The selection
 * set is not part of it, so a retry that asks for other fields is the same request.
 */
import { createHash } from 'node:crypto';

export type JsonValue = null | boolean | number | string | JsonValue[] | { [key: string]: JsonValue };

/** JSON with object keys sorted at every depth; arrays keep their order. `undefined` fields are dropped. */
export function canonicalJson(value: unknown): string {
  return JSON.stringify(sortKeys(value));
}

function sortKeys(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(sortKeys);
  if (value !== null && typeof value === 'object' && !(value instanceof Date)) {
    const sorted: Record<string, unknown> = {};
    for (const key of Object.keys(value).sort()) {
      const child = (value as Record<string, unknown>)[key];
      if (child !== undefined) sorted[key] = sortKeys(child);
    }
    return sorted;
  }
  return value;
}

export function fingerprint(operation: string, input: unknown): string {
  return createHash('sha256').update(canonicalJson({ operation, input })).digest('hex');
}

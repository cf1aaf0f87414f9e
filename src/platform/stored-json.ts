/**
 * Reading JSON the gateway stored or queued itself (a key row's payload, an acquirer answer, a
 * Redis value). The schema that wrote it parses it back: a value that does not match is
 * corruption or a bug, never client input, so it fails loudly instead of being cast.
 */
import type { z } from 'zod';

export class StoredValueError extends Error {
  constructor(what: string, detail: string) {
    super(`invariant violated: stored ${what} ${detail}`);
    this.name = 'StoredValueError';
  }
}

/** The value, or StoredValueError. */
export function parseStoredJson<Schema extends z.ZodType>(
  schema: Schema,
  text: string,
  what: string,
): z.output<Schema> {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    throw new StoredValueError(what, 'is not JSON');
  }
  const parsed = schema.safeParse(value);
  if (!parsed.success) throw new StoredValueError(what, `does not match its schema: ${parsed.error.message}`);
  return parsed.data;
}

/** The value, or undefined when it does not parse (for caches, where a bad value counts as absent). */
export function tryParseStoredJson<Schema extends z.ZodType>(
  schema: Schema,
  text: string,
): z.output<Schema> | undefined {
  try {
    const parsed = schema.safeParse(JSON.parse(text));
    return parsed.success ? parsed.data : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Building blocks of the configuration schema (src/config.ts). Each environment variable is a zod
 * schema from its raw string to its typed value, registered in `settingDocs` with what
 * docs/configuration.md says about it, so the type, the check and the documentation are one thing.
 * An empty variable counts as unset: that is how shells, compose files and CI write "not set".
 */
import { z } from 'zod';

/** What docs/configuration.md says about one variable. */
export interface SettingDoc {
  readonly variable: string;
  /** The allowed values, as a reader needs them ("whole number 0–65535", "`api` or `worker`"). */
  readonly type: string;
  /** The default as documented: a literal, "—" for none, or how it is derived. */
  readonly default: string;
  /** What production (NODE_ENV=production) requires or changes; rules add to it (src/config.ts). */
  readonly production: string | undefined;
  readonly description: string;
}

export const settingDocs = z.registry<SettingDoc>();

/** A variable's parser from its raw, non-empty text, and how its allowed values read in the docs. */
export interface Kind<T> {
  readonly schema: z.ZodType<T, string>;
  readonly type: string;
}

const wholeNumberPattern = /^-?\d+$/;

function between(min: number, max: number) {
  const error = (issue: { input?: unknown }) => `must be between ${min} and ${max}, got ${String(issue.input)}`;
  return z.number().min(min, { error }).max(max, { error });
}

export function integer(min: number, max: number): Kind<number> {
  return {
    schema: z
      .string()
      .trim()
      .regex(wholeNumberPattern, { error: (issue) => `must be a whole number, got "${String(issue.input)}"` })
      .transform(Number)
      .pipe(between(min, max)),
    type: `whole number ${min}–${max}`,
  };
}

export function decimal(min: number, max: number): Kind<number> {
  return {
    schema: z
      .string()
      .trim()
      .refine((raw) => Number.isFinite(Number(raw)), {
        error: (issue) => `must be a number, got "${String(issue.input)}"`,
      })
      .transform(Number)
      .pipe(between(min, max)),
    type: `number ${min}–${max}`,
  };
}

function spell(values: readonly string[]): string {
  const quoted = values.map((value) => `\`${value}\``);
  return quoted.length === 1 ? quoted[0]! : `${quoted.slice(0, -1).join(', ')} or ${quoted.at(-1)!}`;
}

export function oneOf<const T extends readonly [string, ...string[]]>(values: T): Kind<T[number]> {
  return {
    schema: z.enum(values, {
      error: (issue) => `must be one of ${values.join(', ')}, got "${String(issue.input)}"`,
    }),
    type: spell(values),
  };
}

export const flag: Kind<boolean> = {
  schema: z
    .enum(['true', 'false'], { error: (issue) => `must be true or false, got "${String(issue.input)}"` })
    .transform((raw) => raw === 'true'),
  type: spell(['true', 'false']),
};

/** Free text, or text matching `pattern`; `rule` says in words what the pattern allows. */
export function text(options: { pattern?: RegExp; rule?: string } = {}): Kind<string> {
  const { pattern, rule } = options;
  const schema =
    pattern === undefined ? z.string() : z.string().regex(pattern, { error: `must be ${rule ?? 'valid'}` });
  return { schema, type: rule ?? 'text' };
}

/** A secret or token: only its length is checked, and the value never appears in an error. */
export function secret(lengthMin: number): Kind<string> {
  return {
    schema: z.string().min(lengthMin, { error: `must be at least ${lengthMin} characters` }),
    type: `text, at least ${lengthMin} characters`,
  };
}

export function url(protocols: readonly string[]): Kind<string> {
  return {
    schema: z
      .string()
      .refine((raw) => URL.canParse(raw), {
        error: (issue) => `must be a URL, got "${String(issue.input)}"`,
        abort: true,
      })
      .refine((raw) => protocols.includes(new URL(raw).protocol), {
        error: (issue) => `must use ${protocols.join(' or ')}, got "${new URL(String(issue.input)).protocol}"`,
      }),
    type: `URL (${spell(protocols)})`,
  };
}

/** A comma-separated list; each item is trimmed and parsed by `item`. */
export function list<T>(item: Kind<T>, itemName: string): Kind<readonly T[]> {
  return {
    schema: z
      .string()
      .transform((raw) => raw.split(',').map((part) => part.trim()))
      .pipe(z.array(item.schema)),
    type: `comma-separated ${itemName} (${item.type})`,
  };
}

export interface HostPort {
  readonly host: string;
  readonly port: number;
}

const hostPortPattern = /^([A-Za-z0-9.-]+|\[[0-9a-fA-F:]+\]):(\d{1,5})$/;

export const hostPort: Kind<HostPort> = {
  schema: z
    .string()
    .regex(hostPortPattern, { error: (issue) => `"${String(issue.input)}" is not host:port` })
    .transform((raw) => {
      const [, host, port] = hostPortPattern.exec(raw)!;
      return { host: host!, port: Number(port) };
    }),
  type: '`host:port`',
};

const unsetWhenEmpty = (raw: unknown) => (raw === '' ? undefined : raw);

type SettingOptions = Omit<SettingDoc, 'type' | 'default' | 'production'> & {
  /** The documented default when it is derived rather than a literal. */
  readonly defaultText?: string;
  readonly production?: string;
};

function formatDefault(value: unknown): string {
  if (value instanceof Set) return value.size === 0 ? '—' : [...value].join(',');
  if (Array.isArray(value)) return value.length === 0 ? '—' : value.join(',');
  return String(value);
}

/** A variable with a default: unset (or empty) gives `options.default`. */
export function setting<T>(kind: Kind<T>, options: SettingOptions & { readonly default: T }): z.ZodType<T, unknown>;
/** A variable without a default: unset (or empty) gives undefined. */
export function setting<T>(kind: Kind<T>, options: SettingOptions): z.ZodType<T | undefined, unknown>;
export function setting<T>(
  kind: Kind<T>,
  options: SettingOptions & { readonly default?: T },
): z.ZodType<T | undefined, unknown> {
  const schema = z.preprocess(unsetWhenEmpty, kind.schema.optional()).transform((value) => value ?? options.default);
  return schema.register(settingDocs, {
    variable: options.variable,
    type: kind.type,
    default: options.defaultText ?? (options.default === undefined ? '—' : formatDefault(options.default)),
    production: options.production,
    description: options.description,
  });
}

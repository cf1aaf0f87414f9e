/**
 * Signed values for Redis. Redis is shared infrastructure: anything that can write to it must not
 * be able to invent a money answer (a completed charge) or erase an effect (a done marker). Every
 * value the gateway trusts from Redis is stored as `<hmac>.<value>`, where the HMAC-SHA256 is made
 * with the deployment's REDIS_ANSWER_SECRET over a purpose and the Redis key it lives under, so a
 * signed value cannot be copied to another key or used for another purpose either.
 *
 * A value that fails the check is treated as absent: the caller falls through to Postgres.
 */
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';

export interface ValueSigner {
  /** `<hmac>.<value>` for storing under `key`. */
  sign(purpose: string, key: string, value: string): string;
  /** The value, or undefined when the signature does not match (forged, copied, or corrupted). */
  verify(purpose: string, key: string, signed: string): string | undefined;
}

/** Base64url of a 32-byte HMAC: always 43 characters. */
const macLength = 43;

export function createValueSigner(secret: string): ValueSigner {
  const mac = (purpose: string, key: string, value: string) =>
    createHmac('sha256', secret).update(`${purpose}\n${key}\n`).update(value).digest('base64url');
  return {
    sign: (purpose, key, value) => `${mac(purpose, key, value)}.${value}`,
    verify(purpose, key, signed) {
      if (signed.length <= macLength || signed[macLength] !== '.') return undefined;
      const given = Buffer.from(signed.slice(0, macLength));
      const value = signed.slice(macLength + 1);
      const expected = Buffer.from(mac(purpose, key, value));
      return given.length === expected.length && timingSafeEqual(given, expected) ? value : undefined;
    },
  };
}

/**
 * The secret in force: REDIS_ANSWER_SECRET when set (always, in production: config refuses to
 * start without it), otherwise one generated once and kept in the project's data folder, so every
 * local process (api, relay, worker) shares it across restarts.
 */
export function resolveRedisAnswerSecret(configured: string | undefined, dataDirectory = '.data'): string {
  if (configured !== undefined) return configured;
  const file = path.join(dataDirectory, 'redis-answer-secret');
  try {
    const kept = readFileSync(file, 'utf8').trim();
    if (kept.length >= 32) return kept;
  } catch {
    // Not generated yet: fall through.
  }
  mkdirSync(dataDirectory, { recursive: true });
  const generated = randomBytes(32).toString('base64url');
  // 'wx' fails if another process wrote it first; then that one's secret is read back.
  try {
    writeFileSync(file, `${generated}\n`, { flag: 'wx', mode: 0o600 });
    return generated;
  } catch {
    return readFileSync(file, 'utf8').trim();
  }
}

/**
 * The Redis tier of the idempotency store: a cache in front of Postgres that may only make
 * things faster, never wrong (docs/contract.md §3, §11).
 *
 * One Redis key per (merchant, client key) under the deployment's namespace (REDIS_KEY_PREFIX),
 * holding JSON that always carries the fingerprint, signed with REDIS_ANSWER_SECRET
 * (src/platform/signed-value.ts) so that whoever can write to Redis cannot invent an answer:
 * - an in-flight marker, `SET NX` with the lease as its TTL. It can only cause a wait or a 409,
 *   never a skip; if it outlives a released lease it costs a short delay, never a charge.
 * - a completed response, written through after the Postgres commit. Its TTL is at most the
 *   row's remaining retention, so an answer never outlives the row behind it.
 * A value whose signature or shape does not verify is ignored (counted, logged): Postgres decides.
 *
 * Every method fails soft: on a Redis error or timeout it returns `unavailable` (or nothing),
 * and the caller decides from Postgres alone.
 */
import { randomBytes } from 'node:crypto';
import { z } from 'zod';
import type { RedisClient } from '../platform/redis';
import type { ValueSigner } from '../platform/signed-value';
import { tryParseStoredJson } from '../platform/stored-json';
import type { StoredResponse } from './types';

const storedResponseSchema = z.object({
  status: z.number().int(),
  code: z.string().nullable(),
  body: z.string(),
  firstRequestAt: z.string(),
}) satisfies z.ZodType<StoredResponse>;

const markerSchema = z.discriminatedUnion('state', [
  z.object({
    fingerprint: z.string(),
    state: z.literal('in_progress'),
    /** Epoch milliseconds (this process's clock) when the marker expires; only used for Retry-After. */
    leaseEndsAtMs: z.number(),
    /** Random per request, so a request deletes only the marker it set itself. */
    owner: z.string(),
  }),
  z.object({ fingerprint: z.string(), state: z.literal('completed'), response: storedResponseSchema }),
]);

export type RedisMarker = z.output<typeof markerSchema>;
type InFlightMarker = Extract<RedisMarker, { state: 'in_progress' }>;

export type MarkResult =
  | { readonly kind: 'marked'; readonly owner: string }
  | { readonly kind: 'existing'; readonly marker: RedisMarker }
  | { readonly kind: 'unavailable' };

const signaturePurpose = 'idempotency-marker';
/** `<43-character HMAC>.` in front of every value (src/platform/signed-value.ts). */
const signatureLength = 44;

// Deletes the key only while it still holds the caller's in-flight marker (the value after the
// signature is the marker's JSON; the signature was checked when the marker was written by us).
const deleteIfOwnerScript = `
local value = redis.call('GET', KEYS[1])
if value and string.find(value, ARGV[1], 1, true) then
  local ok, decoded = pcall(cjson.decode, string.sub(value, ${signatureLength + 1}))
  if ok and decoded.owner == ARGV[1] then return redis.call('DEL', KEYS[1]) end
end
return 0`;

export interface RedisStoreEvents {
  /** A command failed or timed out: the decision falls through to Postgres. */
  readonly onUnavailable: () => void;
  /** A value did not verify (forged, copied from another key, or corrupted). */
  readonly onForged: (redisKey: string) => void;
}

export class RedisIdempotencyStore {
  constructor(
    private readonly redis: RedisClient,
    private readonly keyPrefix: string,
    private readonly signer: ValueSigner,
    private readonly events: RedisStoreEvents,
  ) {}

  /**
   * The Redis key. The merchant id is the hash tag, so on Redis Cluster a merchant's keys share a
   * slot while merchants spread across slots.
   */
  redisKey(merchantId: string, key: string): string {
    return `${this.keyPrefix}:idem:{${merchantId}}:${key}`;
  }

  /** SET NX GET: sets our in-flight marker, or returns what is already there, in one round trip. */
  async markInFlight(merchantId: string, key: string, fingerprint: string, leaseMs: number): Promise<MarkResult> {
    const owner = randomBytes(9).toString('base64url');
    const marker: InFlightMarker = { fingerprint, state: 'in_progress', leaseEndsAtMs: Date.now() + leaseMs, owner };
    const redisKey = this.redisKey(merchantId, key);
    try {
      const previous = (await this.redis.call(
        'SET',
        redisKey,
        this.signer.sign(signaturePurpose, redisKey, JSON.stringify(marker)),
        'PX',
        String(leaseMs),
        'NX',
        'GET',
      )) as string | null;
      if (previous === null) return { kind: 'marked', owner };
      const parsed = this.verify(redisKey, previous);
      // Unverifiable values are treated as absent: Postgres decides.
      return parsed === undefined ? { kind: 'unavailable' } : { kind: 'existing', marker: parsed };
    } catch {
      this.events.onUnavailable();
      return { kind: 'unavailable' };
    }
  }

  /**
   * Write-through of a completed response. Overwrites any
   * marker: Postgres already says COMPLETED. A TTL under one second writes nothing.
   */
  async storeCompleted(
    merchantId: string,
    key: string,
    fingerprint: string,
    response: StoredResponse,
    ttlSeconds: number,
  ): Promise<void> {
    const redisKey = this.redisKey(merchantId, key);
    try {
      if (ttlSeconds >= 1) {
        const value = JSON.stringify({ fingerprint, state: 'completed', response } satisfies RedisMarker);
        await this.redis.set(redisKey, this.signer.sign(signaturePurpose, redisKey, value), 'EX', ttlSeconds);
      }
    } catch {
      // Not fatal: the next request finds the response in Postgres and writes it through again.
      this.events.onUnavailable();
    }
  }

  /** Removes the in-flight marker this request set, so a retry after a release is not held back. */
  async clearInFlight(merchantId: string, key: string, owner: string): Promise<void> {
    try {
      await this.redis.eval(deleteIfOwnerScript, 1, this.redisKey(merchantId, key), owner);
    } catch {
      // The marker expires with the lease anyway.
      this.events.onUnavailable();
    }
  }

  /**
   * A value read elsewhere (the replay fast path reads it in the rate limit's round trip),
   * verified like `markInFlight`'s, but silently: a value that does not verify sends the request
   * the normal way, whose `SET NX GET` meets it again and counts it once.
   */
  parseValue(merchantId: string, key: string, stored: string): RedisMarker | undefined {
    const redisKey = this.redisKey(merchantId, key);
    const value = this.signer.verify(signaturePurpose, redisKey, stored);
    return value === undefined ? undefined : tryParseStoredJson(markerSchema, value);
  }

  /** The value under the key, for the replay fast path when no rate limit reads it: undefined when Redis did not answer. */
  async read(merchantId: string, key: string): Promise<string | null | undefined> {
    try {
      return await this.redis.get(this.redisKey(merchantId, key));
    } catch {
      return undefined;
    }
  }

  private verify(redisKey: string, stored: string): RedisMarker | undefined {
    const value = this.signer.verify(signaturePurpose, redisKey, stored);
    const marker = value === undefined ? undefined : tryParseStoredJson(markerSchema, value);
    if (marker === undefined) this.events.onForged(redisKey);
    return marker;
  }
}

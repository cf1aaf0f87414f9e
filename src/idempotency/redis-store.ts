/**
 * The Redis tier of the idempotency store: a cache in front of Postgres that may only make
 * things faster, never wrong (docs/contract.md §3, §11).
 *
 * One Redis key per (merchant, client key), holding JSON that always carries the fingerprint:
 * - an in-flight marker, `SET NX` with the lease as its TTL. It can only cause a 409, never a skip;
 *   if it outlives a released lease it costs a short delay, never a charge.
 * - a completed response, written through after the Postgres commit, kept 24 hours.
 *
 * Every method fails soft: on a Redis error or timeout it returns `unavailable`, and the caller
 * decides from Postgres alone.
 */
import { randomBytes } from 'node:crypto';
import type { RedisClient } from '../platform/redis';
import type { StoredResponse } from './types';

interface InFlightMarker {
  readonly fingerprint: string;
  readonly state: 'in_progress';
  /** Epoch milliseconds (this process's clock) when the marker expires; only used for Retry-After. */
  readonly leaseEndsAtMs: number;
  /** Random per request, so a request deletes only the marker it set itself. */
  readonly owner: string;
}

interface CompletedMarker {
  readonly fingerprint: string;
  readonly state: 'completed';
  readonly response: StoredResponse;
}

export type RedisMarker = InFlightMarker | CompletedMarker;

export type MarkResult =
  | { readonly kind: 'marked'; readonly owner: string }
  | { readonly kind: 'existing'; readonly marker: RedisMarker }
  | { readonly kind: 'unavailable' };

// Deletes the key only while it still holds the caller's in-flight marker.
const deleteIfOwnerScript = `
local value = redis.call('GET', KEYS[1])
if value and string.find(value, ARGV[1], 1, true) then
  local ok, decoded = pcall(cjson.decode, value)
  if ok and decoded.owner == ARGV[1] then return redis.call('DEL', KEYS[1]) end
end
return 0`;

export class RedisIdempotencyStore {
  constructor(
    private readonly redis: RedisClient,
    private readonly keyPrefix: string,
    private readonly onUnavailable: () => void = () => undefined,
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
    try {
      const previous = (await this.redis.call(
        'SET',
        this.redisKey(merchantId, key),
        JSON.stringify(marker),
        'PX',
        String(leaseMs),
        'NX',
        'GET',
      )) as string | null;
      if (previous === null) return { kind: 'marked', owner };
      const parsed = parseMarker(previous);
      // Unreadable values are treated as absent: Postgres decides.
      return parsed === undefined ? { kind: 'unavailable' } : { kind: 'existing', marker: parsed };
    } catch {
      this.onUnavailable();
      return { kind: 'unavailable' };
    }
  }

  /** Write-through of a completed response. Overwrites any marker: Postgres already says COMPLETED. */
  async storeCompleted(
    merchantId: string,
    key: string,
    fingerprint: string,
    response: StoredResponse,
    ttlSeconds: number,
  ): Promise<void> {
    const marker: CompletedMarker = { fingerprint, state: 'completed', response };
    try {
      await this.redis.set(this.redisKey(merchantId, key), JSON.stringify(marker), 'EX', ttlSeconds);
    } catch {
      // Not fatal: the next request finds the response in Postgres and writes it through again.
      this.onUnavailable();
    }
  }

  /** Removes the in-flight marker this request set, so a retry after a release is not held back. */
  async clearInFlight(merchantId: string, key: string, owner: string): Promise<void> {
    try {
      await this.redis.eval(deleteIfOwnerScript, 1, this.redisKey(merchantId, key), owner);
    } catch {
      // The marker expires with the lease anyway.
      this.onUnavailable();
    }
  }
}

function parseMarker(raw: string): RedisMarker | undefined {
  try {
    const value = JSON.parse(raw) as Partial<RedisMarker>;
    if (typeof value.fingerprint !== 'string') return undefined;
    if (value.state === 'in_progress' && typeof (value as InFlightMarker).leaseEndsAtMs === 'number') {
      return value as InFlightMarker;
    }
    if (value.state === 'completed' && typeof (value as CompletedMarker).response?.body === 'string') {
      return value as CompletedMarker;
    }
    return undefined;
  } catch {
    return undefined;
  }
}

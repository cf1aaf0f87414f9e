/**
 * Merchants and their API keys. A key is random, shown once at creation, and stored only as its
 * SHA-256; a lookup hashes what the client sent and finds the row by that hash.
 */
import { createHash, randomBytes } from 'node:crypto';
import { LRUCache } from 'lru-cache';
import type { Database, Queryable } from '../platform/database';

export interface Merchant {
  readonly id: string;
  readonly name: string;
  /** The merchant's own request limit; null: the default. */
  readonly rateLimitPerSecond: number | null;
}

export interface CreatedMerchant {
  readonly merchant: Merchant;
  /** Shown once. Only its hash is stored. */
  readonly apiKey: string;
}

export const demoMerchantId = 'mer_demo';
export const merchantNameLengthMax = 200;

export function hashApiKey(apiKey: string): string {
  return createHash('sha256').update(apiKey).digest('hex');
}

export function newApiKey(): string {
  return `sk_${randomBytes(24).toString('base64url')}`;
}

function newMerchantId(): string {
  return `mer_${randomBytes(10).toString('hex')}`;
}

export async function createMerchant(
  db: Queryable,
  name: string,
  apiKey: string = newApiKey(),
): Promise<CreatedMerchant> {
  const trimmed = name.trim();
  if (trimmed.length === 0 || trimmed.length > merchantNameLengthMax) {
    throw new Error(`name: must be 1 to ${merchantNameLengthMax} characters`);
  }
  const merchant = await db.merchant.create({
    data: { id: newMerchantId(), name: trimmed, apiKeyHash: hashApiKey(apiKey) },
    select: { id: true, name: true, rateLimitPerSecond: true },
  });
  return { merchant, apiKey };
}

/**
 * The demo merchant for local use. With `apiKey` given (DEMO_MERCHANT_API_KEY) it gets exactly
 * that key; without, it gets a new random key each start, which is returned to be printed.
 */
export async function ensureDemoMerchant(db: Database, apiKey: string = newApiKey()): Promise<CreatedMerchant> {
  const merchant = await db.merchant.upsert({
    where: { id: demoMerchantId },
    create: { id: demoMerchantId, name: 'Demo merchant', apiKeyHash: hashApiKey(apiKey) },
    update: { apiKeyHash: hashApiKey(apiKey) },
    select: { id: true, name: true, rateLimitPerSecond: true },
  });
  return { merchant, apiKey };
}

export interface MerchantAuthenticatorOptions {
  /** How long a found key is trusted without a lookup; 0: no cache. Revocation also evicts at once. */
  readonly cacheTtlMs: number;
  readonly cacheEntriesMax: number;
  /** In production the demo merchant never authenticates, even when its row exists. */
  readonly refuseDemoMerchant: boolean;
}

/**
 * Finds the merchant for a bearer key. Found keys are kept in a per-process LRU cache
 * (MERCHANT_CACHE_TTL_MS, MERCHANT_CACHE_ENTRIES_MAX). Unknown keys are not cached at all, so a
 * flood of random tokens cannot evict the keys merchants use; the per-address failure limit
 * (auth-limits.ts) is what bounds their lookups.
 */
export class MerchantAuthenticator {
  private readonly cache: LRUCache<string, Merchant> | undefined;

  constructor(
    private readonly db: Database,
    private readonly options: MerchantAuthenticatorOptions,
  ) {
    // lru-cache reads ttl 0 as "never expires": no cache at all is what 0 means here.
    this.cache =
      options.cacheTtlMs > 0 ? new LRUCache({ max: options.cacheEntriesMax, ttl: options.cacheTtlMs }) : undefined;
  }

  /** The merchant of a key found recently, with no database lookup; undefined when not cached. */
  cached(apiKey: string): Merchant | undefined {
    return this.cache?.get(hashApiKey(apiKey));
  }

  /** Throws what the database throws: the caller answers 503, not 401. */
  async authenticate(apiKey: string): Promise<Merchant | null> {
    const hash = hashApiKey(apiKey);
    const cached = this.cache?.get(hash);
    if (cached !== undefined) return cached;
    const merchant = await this.db.merchant.findUnique({
      where: { apiKeyHash: hash },
      select: { id: true, name: true, rateLimitPerSecond: true },
    });
    if (merchant === null || (this.options.refuseDemoMerchant && merchant.id === demoMerchantId)) return null;
    this.cache?.set(hash, merchant);
    return merchant;
  }

  /** Drops every cached key of a merchant: its key was revoked or rotated (in any process). */
  forget(merchantId: string): void {
    if (this.cache === undefined) return;
    for (const [hash, merchant] of this.cache.entries()) {
      if (merchant.id === merchantId) this.cache.delete(hash);
    }
  }
}

/**
 * Merchants and their API keys. A key is random, shown once at creation, and stored only as its
 * SHA-256; a lookup hashes what the client sent and finds the row by that hash.
 */
import { createHash, randomBytes } from 'node:crypto';
import type { Database } from '../platform/database';

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
  db: Database,
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

/** Finds the merchant for a bearer key, with a short per-process cache (MERCHANT_CACHE_TTL_MS). */
export class MerchantAuthenticator {
  private readonly cache = new Map<string, { merchant: Merchant | null; expiresAtMs: number }>();
  // Bounded so a flood of random keys cannot grow memory without limit.
  private static readonly cacheEntriesMax = 10_000;

  constructor(
    private readonly db: Database,
    private readonly cacheTtlMs: number,
  ) {}

  async authenticate(apiKey: string): Promise<Merchant | null> {
    const hash = hashApiKey(apiKey);
    const cached = this.cache.get(hash);
    if (cached !== undefined && cached.expiresAtMs > Date.now()) return cached.merchant;
    const merchant = await this.db.merchant.findUnique({
      where: { apiKeyHash: hash },
      select: { id: true, name: true, rateLimitPerSecond: true },
    });
    if (this.cache.size >= MerchantAuthenticator.cacheEntriesMax) this.cache.clear();
    this.cache.set(hash, { merchant, expiresAtMs: Date.now() + this.cacheTtlMs });
    return merchant;
  }
}

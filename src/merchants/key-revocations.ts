/**
 * Key revocation reaches every process within a second: an admin change to a merchant's key
 * publishes the merchant id on a Redis channel, and every api process drops that merchant's cached
 * keys when it hears it. Pub/sub delivers at most once, so a process that missed a message (Redis
 * down, subscriber reconnecting) still stops trusting the key when its cache entry expires
 * (MERCHANT_CACHE_TTL_MS): the TTL is the fallback bound.
 */
import { Cluster } from 'ioredis';
import type { Logger } from '../platform/logger';
import type { RedisClient } from '../platform/redis';

export function keyRevocationChannel(keyPrefix: string): string {
  return `${keyPrefix}:merchant-keys-changed`;
}

/** Tells every process that a merchant's key changed. Failure is logged: the TTL still bounds it. */
export async function publishKeyRevocation(
  redis: RedisClient,
  keyPrefix: string,
  merchantId: string,
  logger: Logger,
): Promise<void> {
  await redis.publish(keyRevocationChannel(keyPrefix), merchantId).catch((error: unknown) => {
    logger.warn({ err: error, merchantId }, 'could not publish a key revocation; caches expire within the TTL');
  });
}

/** Subscribes on a connection of its own (a subscribed connection can run nothing else). */
export function subscribeToKeyRevocations(
  redis: RedisClient,
  keyPrefix: string,
  onRevoked: (merchantId: string) => void,
  logger: Logger,
): () => Promise<void> {
  // The hot-path client refuses commands while disconnected; this one queues SUBSCRIBE until it is
  // connected, and ioredis subscribes again after every reconnect (autoResubscribe).
  const overrides = { enableOfflineQueue: true, autoResubscribe: true };
  const subscriber = redis instanceof Cluster ? redis.duplicate(undefined, overrides) : redis.duplicate(overrides);
  const channel = keyRevocationChannel(keyPrefix);
  subscriber.on('error', (error: unknown) => logger.warn({ err: error }, 'key revocation subscriber error'));
  subscriber.on('message', (from: string, merchantId: string) => {
    if (from === channel) onRevoked(merchantId);
  });
  // Not awaited: with Redis down the start must not wait; the TTL bounds a revocation meanwhile.
  subscriber.subscribe(channel).catch((error: unknown) => {
    logger.warn({ err: error }, 'could not subscribe to key revocations; caches expire within the TTL');
  });
  return async () => {
    subscriber.disconnect();
  };
}

/**
 * Redis connections. There are two kinds on purpose (DESIGN.md §11):
 * - the hot-path client fails fast: a command timeout, no offline queue, no retries per request,
 *   so a dead Redis turns into a fall-through to Postgres and not a hung request;
 * - the queue client (BullMQ) blocks and queues while offline: `maxRetriesPerRequest: null`.
 */
import { Redis } from 'ioredis';
import type { Config } from '../config';

export function openHotPathRedis(config: Pick<Config, 'redisUrl' | 'redisCommandTimeoutMs'>): Redis {
  const redis = new Redis(config.redisUrl, {
    commandTimeout: config.redisCommandTimeoutMs,
    connectTimeout: Math.max(config.redisCommandTimeoutMs * 4, 1_000),
    enableOfflineQueue: false,
    maxRetriesPerRequest: 0,
    // Keep trying to reconnect in the background, at most every 2 s; requests meanwhile use Postgres.
    retryStrategy: (attempt) => Math.min(attempt * 200, 2_000),
    lazyConnect: false,
  });
  // Errors surface on the commands themselves; an unhandled 'error' event would crash the process.
  redis.on('error', () => undefined);
  return redis;
}

export function openQueueRedis(config: Pick<Config, 'redisUrl'>): Redis {
  const redis = new Redis(config.redisUrl, { maxRetriesPerRequest: null, enableReadyCheck: true });
  redis.on('error', () => undefined);
  return redis;
}

/** Closes a client without waiting on a server that may be gone. */
export async function closeRedis(redis: Redis): Promise<void> {
  try {
    await Promise.race([redis.quit(), new Promise((resolve) => setTimeout(resolve, 500))]);
  } catch {
    // Already closed or unreachable.
  }
  redis.disconnect();
}

/** Waits (bounded) for a client to connect, so a process does not start by failing fast. */
export async function waitUntilReady(redis: Redis, timeoutMs: number): Promise<boolean> {
  if (redis.status === 'ready') return true;
  return new Promise((resolve) => {
    const done = (ready: boolean) => {
      clearTimeout(timer);
      redis.off('ready', onReady);
      resolve(ready);
    };
    const onReady = () => done(true);
    const timer = setTimeout(() => done(false), timeoutMs);
    redis.once('ready', onReady);
  });
}

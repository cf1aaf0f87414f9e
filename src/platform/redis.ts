/**
 * Redis connections. There are two kinds on purpose (docs/contract.md §11):
 * - the hot-path client fails fast: a command timeout, no offline queue, no retries per request,
 *   so a dead Redis turns into a fall-through to Postgres and not a hung request;
 * - the queue client (BullMQ) blocks and queues while offline: `maxRetriesPerRequest: null`.
 * With REDIS_CLUSTER_NODES set, both are Redis Cluster clients; every key the gateway writes has
 * a hash tag (docs/scale.md), so each multi-key script stays on one slot.
 */
import { Cluster, Redis, type RedisOptions } from 'ioredis';
import type { Config } from '../config';

export type RedisClient = Redis | Cluster;

type RedisConfig = Pick<Config, 'redisUrl' | 'redisClusterNodes'>;

function open(config: RedisConfig, options: RedisOptions, offlineQueue: boolean): RedisClient {
  const client =
    config.redisClusterNodes.length > 0
      ? new Cluster([...config.redisClusterNodes], {
          redisOptions: options,
          enableOfflineQueue: offlineQueue,
          enableReadyCheck: true,
          clusterRetryStrategy: (attempt) => Math.min(attempt * 200, 2_000),
        })
      : new Redis(config.redisUrl, options);
  // Errors surface on the commands themselves; an unhandled 'error' event would crash the process.
  client.on('error', () => undefined);
  return client;
}

export function openHotPathRedis(config: RedisConfig & Pick<Config, 'redisCommandTimeoutMs'>): RedisClient {
  return open(
    config,
    {
      commandTimeout: config.redisCommandTimeoutMs,
      connectTimeout: Math.max(config.redisCommandTimeoutMs * 4, 1_000),
      enableOfflineQueue: false,
      maxRetriesPerRequest: 0,
      // Keep trying to reconnect in the background, at most every 2 s; requests meanwhile use Postgres.
      retryStrategy: (attempt) => Math.min(attempt * 200, 2_000),
    },
    false,
  );
}

export function openQueueRedis(config: RedisConfig): RedisClient {
  return open(config, { maxRetriesPerRequest: null, enableReadyCheck: true }, true);
}

/** Closes a client without waiting on a server that may be gone. */
export async function closeRedis(redis: RedisClient): Promise<void> {
  try {
    await Promise.race([redis.quit(), new Promise((resolve) => setTimeout(resolve, 500))]);
  } catch {
    // Already closed or unreachable.
  }
  redis.disconnect();
}

/** Waits (bounded) for a client to connect, so a process does not start by failing fast. */
export async function waitUntilReady(redis: RedisClient, timeoutMs: number): Promise<boolean> {
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

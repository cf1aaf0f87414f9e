/**
 * A gateway for one test file: its own database (copied from the migrated template), its own
 * Redis key prefix, a merchant with a known key, and cleanup that removes only what it made.
 */
import { inject } from 'vitest';
import { loadConfig, type Config } from '../../src/config';
import { startGateway, type Gateway } from '../../src/gateway';
import { createLogger } from '../../src/platform/logger';
import { createMerchant } from '../../src/merchants/merchants';
import { createTestDatabase, type TestDatabase } from './database';
import { deleteKeysWithPrefix, newKeyPrefix, startPrivateRedis, type PrivateRedis } from '../../scripts/harness/redis';

export interface TestEnvironment {
  readonly database: TestDatabase;
  readonly redisUrl: string;
  readonly redisKeyPrefix: string;
  /** Environment variables for a gateway (in-process or child) on this file's database and prefix. */
  env(overrides?: Record<string, string>): Record<string, string>;
  config(overrides?: Record<string, string>): Config;
  cleanup(): Promise<void>;
}

export async function createTestEnvironment(options: { redisUrl?: string } = {}): Promise<TestEnvironment> {
  const database = await createTestDatabase(inject('databaseUrl'));
  const redisUrl = options.redisUrl ?? inject('redisUrl');
  const redisKeyPrefix = newKeyPrefix();
  const env = (overrides: Record<string, string> = {}) => ({
    // The gateway's least-privilege role, as in production; the test's own pool stays the owner.
    DATABASE_URL: database.gatewayUrl,
    REDIS_URL: redisUrl,
    REDIS_KEY_PREFIX: redisKeyPrefix,
    PORT: '0',
    LOG_LEVEL: 'silent',
    NODE_ENV: 'test',
    DATABASE_POOL_SIZE_MAX: '8',
    // Tests that measure limits set their own; the rest must not be throttled by bursts.
    MERCHANT_RATE_PER_SECOND: '1000000',
    // Production needs these set (docs/configuration.md); tests that check the refusals override them.
    ACQUIRER: 'simulated',
    ACQUIRER_SIMULATED_IN_PRODUCTION: 'true',
    REDIS_ANSWER_SECRET: 'test-redis-answer-secret-0123456789abcdef',
    // Production serves /metrics on a port of its own: a free one, so test gateways never collide.
    METRICS_PORT: '0',
    ...overrides,
  });
  return {
    database,
    redisUrl,
    redisKeyPrefix,
    env,
    config: (overrides) => loadConfig(env(overrides)),
    async cleanup() {
      await deleteKeysWithPrefix(redisUrl, redisKeyPrefix).catch(() => undefined);
      await database.drop();
    },
  };
}

export interface TestGateway extends Gateway {
  readonly apiKey: string;
  readonly merchantId: string;
  /** Creates another merchant on the same gateway. */
  newMerchant(name?: string): Promise<{ id: string; apiKey: string }>;
}

export async function startTestGateway(
  environment: TestEnvironment,
  overrides: Record<string, string> = {},
): Promise<TestGateway> {
  const config = environment.config(overrides);
  const gateway = await startGateway(config, createLogger(config.logLevel));
  const newMerchant = async (name = 'Test merchant') => {
    const created = await createMerchant(gateway.database.prisma, name);
    return { id: created.merchant.id, apiKey: created.apiKey };
  };
  const merchant = await newMerchant();
  return Object.assign(Object.create(null) as object, gateway, {
    apiKey: merchant.apiKey,
    merchantId: merchant.id,
    newMerchant,
  }) as TestGateway;
}

/** A gateway whose Redis is a private redis-server that the test may stop (never the shared one). */
export interface PrivateRedisGateway {
  readonly redis: PrivateRedis;
  readonly environment: TestEnvironment;
  readonly gateway: TestGateway;
  stop(): Promise<void>;
}

export async function startGatewayOnPrivateRedis(overrides: Record<string, string> = {}): Promise<PrivateRedisGateway> {
  const redis = await startPrivateRedis();
  const environment = await createTestEnvironment({ redisUrl: redis.url });
  const gateway = await startTestGateway(environment, overrides);
  return {
    redis,
    environment,
    gateway,
    async stop() {
      await gateway.stop();
      await redis.stop();
      await environment.cleanup();
    },
  };
}

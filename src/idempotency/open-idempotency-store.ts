/**
 * Builds the idempotency store from the config: the Redis tier (signed values under the
 * deployment's namespace), the wake-ups for waiting twins (Redis pub/sub, Postgres fallback),
 * and the Postgres truth. One call for the composition root.
 */
import type { NamespacedConfig } from '../platform/deployment-namespace';
import type { Database } from '../platform/database';
import type { Logger } from '../platform/logger';
import type { IdempotencyMetrics } from './metrics';
import type { RedisClient } from '../platform/redis';
import { createValueSigner, resolveRedisAnswerSecret } from '../platform/signed-value';
import type { AuditBuffer } from './audit-buffer';
import { IdempotencyStore } from './idempotency-store';
import { RedisIdempotencyStore } from './redis-store';
import { RedisWithPostgresSignals } from './settled-signals';

export interface IdempotencyStoreDependencies {
  readonly config: Pick<
    NamespacedConfig,
    | 'databaseUrl'
    | 'redisKeyPrefix'
    | 'redisAnswerSecret'
    | 'idempotencyLeaseMs'
    | 'idempotencyResponseTtlSeconds'
    | 'idempotencyRetentionHours'
  >;
  readonly db: Database;
  readonly redis: RedisClient;
  readonly auditBuffer: AuditBuffer;
  readonly metrics: IdempotencyMetrics;
  readonly logger: Logger;
}

export function openIdempotencyStore(deps: IdempotencyStoreDependencies): IdempotencyStore {
  const { config, metrics, logger } = deps;
  const redisStore = new RedisIdempotencyStore(
    deps.redis,
    config.redisKeyPrefix,
    createValueSigner(resolveRedisAnswerSecret(config.redisAnswerSecret)),
    {
      onUnavailable: () => metrics.redisFallthroughs.inc(),
      onForged: (redisKey) => {
        metrics.redisForgedAnswers.inc();
        logger.warn({ redisKey }, 'ignored an idempotency value in Redis whose signature did not verify');
      },
    },
  );
  const signals = new RedisWithPostgresSignals({
    redis: deps.redis,
    redisKeyPrefix: config.redisKeyPrefix,
    db: deps.db,
    databaseUrl: config.databaseUrl,
  });
  return new IdempotencyStore(deps.db, redisStore, signals, deps.auditBuffer, {
    leaseMs: config.idempotencyLeaseMs,
    responseTtlSeconds: config.idempotencyResponseTtlSeconds,
    retentionHours: config.idempotencyRetentionHours,
    countOutcome: (outcome) => metrics.countOutcome(outcome),
  });
}

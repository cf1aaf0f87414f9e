/**
 * Builds a gateway process from its config: connections, services and the roles asked for.
 * main.ts runs it; tests start it in-process on port 0. Every role serves /healthz, /readyz and
 * /metrics. The api role adds POST /graphql, POST /admin/graphql (with ADMIN_TOKEN) and /demo
 * (outside production); the relay role publishes the outbox; the worker role applies events to
 * the ledger and purges expired keys; relay and worker roles run the completer.
 */
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import express from 'express';
import type { RedisClient } from './platform/redis';
import type { Config } from './config';
import { createAcquirer } from './acquirer/providers';
import { ChargeService } from './charges/create-charge';
import { RefundService } from './charges/refund-charge';
import { Completer } from './charges/completer';
import { AuditBuffer } from './idempotency/audit-buffer';
import { IdempotencyStore } from './idempotency/idempotency-store';
import { RedisIdempotencyStore } from './idempotency/redis-store';
import { MerchantAuthenticator } from './merchants/merchants';
import { MerchantRateLimits } from './merchants/rate-limits';
import { AuthFailureLimiter } from './merchants/auth-limits';
import { publishKeyRevocation, subscribeToKeyRevocations } from './merchants/key-revocations';
import { openDatabase, type DatabaseHandle } from './platform/database';
import type { Logger } from './platform/logger';
import { Metrics } from './platform/metrics';
import { httpLimitsFromConfig, listenWithLimits, metricsHandler } from './platform/http-server';
import { closeRedis, openHotPathRedis, openQueueRedis, waitUntilReady } from './platform/redis';
import { createGraphqlServer, type GraphqlServer } from './graphql/server';
import { queryLimitsFromConfig } from './graphql/query-limits';
import { createAdminRouter } from './admin/admin-server';
import { demoRouter, dropResponseFault } from './demo/demo-router';
import { purgeExpiredIdempotencyKeys } from './idempotency/retention';
import { openDeadLetterQueue, openLedgerQueue } from './outbox/queue';
import { Relay, relayPublishCallSite } from './outbox/relay';
import { DeadLetters } from './ledger/dead-letters';
import { LedgerWorker, ledgerApplyCallSite } from './ledger/worker';
import { RedisTokenBucketStore } from './retry/redis-token-bucket';
import { RetryBudget } from './retry/token-bucket';
import { CallSiteAdmission } from './retry/call-site-admission';

export interface Gateway {
  readonly url: string;
  readonly port: number;
  /** Where /metrics is served: PORT outside production unless METRICS_PORT says otherwise. */
  readonly metricsUrl: string;
  readonly metrics: Metrics;
  readonly database: DatabaseHandle;
  readonly redis: RedisClient;
  readonly completer: Completer | undefined;
  readonly relay: Relay | undefined;
  readonly worker: LedgerWorker | undefined;
  readonly deadLetters: DeadLetters;
  /** Graceful stop: no new requests, in-flight ones finish (bounded by shutdownGraceMs), pools close. */
  stop(): Promise<void>;
}

export async function startGateway(config: Config, logger: Logger): Promise<Gateway> {
  const metrics = new Metrics(config.role);
  const database = openDatabase(config, `payments-gateway-${config.role}`);
  const redis = openHotPathRedis(config);
  // Start with a connected Redis when there is one; without it every decision goes to Postgres.
  if (!(await waitUntilReady(redis, 2_000))) logger.warn('Redis is not reachable; starting anyway (Postgres decides)');
  const acquirer = createAcquirer(config, logger);
  const auditBuffer = new AuditBuffer(database.prisma, {
    flushIntervalMs: config.auditFlushIntervalMs,
    batchSizeMax: config.auditBatchSizeMax,
    onLost: (count) => metrics.auditRowsLost.inc(count),
  });
  const idempotency = new IdempotencyStore(
    database.prisma,
    new RedisIdempotencyStore(redis, config.redisKeyPrefix, () => metrics.redisFallthroughs.inc()),
    auditBuffer,
    {
      leaseMs: config.idempotencyLeaseMs,
      responseTtlSeconds: config.idempotencyResponseTtlSeconds,
      countOutcome: (outcome) => metrics.countOutcome(outcome),
    },
  );
  const charges = new ChargeService({
    db: database.prisma,
    idempotency,
    acquirer,
    logger,
    faults: config.faults,
    leaseMs: config.idempotencyLeaseMs,
  });

  const queueRedis = openQueueRedis(config);
  const ledgerQueue = openLedgerQueue(queueRedis, {
    prefix: config.queuePrefix,
    attemptsMax: config.workerAttemptsMax,
  });
  const deadLetterQueue = openDeadLetterQueue(queueRedis, config.queuePrefix);
  for (const queue of [ledgerQueue, deadLetterQueue]) {
    queue.on('error', (error) => logger.warn({ err: error, queue: queue.name }, 'queue connection error'));
  }
  const deadLetters = new DeadLetters(database.prisma, ledgerQueue, deadLetterQueue);
  const retryBudgetStore = new RedisTokenBucketStore(redis, config.redisKeyPrefix, {
    capacity: config.retryBudgetCapacity,
    refillPerSecond: config.retryBudgetRefillPerSecond,
  });
  const retryBudget = new RetryBudget(retryBudgetStore, { depositPerSuccess: config.retryBudgetDepositPerSuccess });
  metrics.addGauge(
    'retry_budget_tokens',
    'Tokens left in the fleet-wide retry budget, per call site.',
    ['call_site'],
    async (gauge) => {
      for (const callSite of [ledgerApplyCallSite, relayPublishCallSite]) {
        gauge.set({ call_site: callSite }, await retryBudget.tokens(callSite));
      }
    },
  );

  const refunds = new RefundService({
    db: database.prisma,
    idempotency,
    acquirer,
    logger,
    leaseMs: config.idempotencyLeaseMs,
  });

  const app = express();
  app.disable('x-powered-by');
  // The client address the pre-authentication limits count by (docs/security.md).
  app.set('trust proxy', config.trustProxyHops);
  app.set('etag', false);
  app.get('/healthz', (_req, res) => {
    res.json({ status: 'ok', role: config.role });
  });
  app.get('/readyz', async (_req, res) => {
    const [postgres, redisReady] = await Promise.all([
      database.prisma.$queryRaw`SELECT 1`.then(
        () => true,
        () => false,
      ),
      redis.ping().then(
        () => true,
        () => false,
      ),
    ]);
    res.status(postgres && redisReady ? 200 : 503).json({ postgres, redis: redisReady });
  });
  // In production /metrics has a listener of its own (docs/security.md): charge volume is not public.
  const metricsOnOwnPort = config.isProduction || config.metricsPort !== 0;
  if (!metricsOnOwnPort) app.get('/metrics', metricsHandler(metrics.registry));

  let graphql: GraphqlServer | undefined;
  const stoppables: (() => Promise<void>)[] = [];
  if (config.role === 'api' || config.role === 'all') {
    const authenticator = new MerchantAuthenticator(database.prisma, {
      cacheTtlMs: config.merchantCacheTtlMs,
      cacheEntriesMax: config.merchantCacheEntriesMax,
      refuseDemoMerchant: config.isProduction,
    });
    stoppables.push(subscribeToKeyRevocations(redis, config.redisKeyPrefix, (id) => authenticator.forget(id), logger));
    const merchantChanged = async (merchantId: string) => {
      authenticator.forget(merchantId);
      await publishKeyRevocation(redis, config.redisKeyPrefix, merchantId, logger);
    };
    if (config.adminToken !== undefined) {
      const admin = await createAdminRouter({
        adminToken: config.adminToken,
        authenticator,
        failures: new AuthFailureLimiter(redis, config.redisKeyPrefix, 'admin', config.adminAuthFailuresPerMinute),
        logger,
        isProduction: config.isProduction,
        requestBodyBytesMax: config.requestBodyBytesMax,
        context: {
          db: database.prisma,
          deadLetters,
          ledgerQueue,
          deadLetterQueue,
          retentionHours: config.idempotencyRetentionHours,
          purgeBatchSizeMax: config.idempotencyPurgeBatchSizeMax,
          merchantChanged,
        },
      });
      app.use(admin.router);
      stoppables.push(admin.stop);
    }
    if (!config.isProduction) {
      app.use(
        demoRouter({ apiKey: config.demoMerchantApiKey, dropResponseToggle: config.faults.has('drop_response') }),
      );
    }
    if (config.faults.has('drop_response')) app.use('/graphql', dropResponseFault);
    graphql = await createGraphqlServer({
      services: { db: database.prisma, charges, refunds, metrics },
      authenticator,
      authFailures: new AuthFailureLimiter(redis, config.redisKeyPrefix, 'api', config.authFailuresPerMinute),
      logger,
      isProduction: config.isProduction,
      requestBodyBytesMax: config.requestBodyBytesMax,
      queryLimits: queryLimitsFromConfig(config),
      rateLimits: new MerchantRateLimits(redis, config.redisKeyPrefix, config.merchantRatePerSecond),
    });
    app.use(graphql.router);
  }

  // Body-parser failures (too large, not JSON) answer like GraphQL errors, not HTML pages.
  app.use(
    (
      error: { status?: number; type?: string; message?: string },
      _req: express.Request,
      res: express.Response,
      next: express.NextFunction,
    ) => {
      if (res.headersSent || error.status === undefined || error.status >= 500) return next(error);
      const tooLarge = error.type === 'entity.too.large';
      res.status(error.status).json({
        errors: [
          {
            message: tooLarge
              ? `The request body is over ${config.requestBodyBytesMax} bytes.`
              : 'The request body is not valid JSON.',
            extensions: { code: 'BAD_REQUEST' },
          },
        ],
      });
    },
  );

  let completer: Completer | undefined;
  if (config.role !== 'api') {
    completer = new Completer(
      database.prisma,
      { charges, refunds },
      idempotency,
      logger,
      {
        intervalMs: config.completerIntervalMs,
        graceMs: config.completerGraceMs,
        leaseMs: config.idempotencyLeaseMs,
        batchSizeMax: config.completerBatchSizeMax,
        abandonAfterHours: config.idempotencyAbandonAfterHours,
      },
      (action) => metrics.completerFinished.inc({ action }),
    );
    completer.start();
  }

  let relay: Relay | undefined;
  if (config.role === 'relay' || config.role === 'all') {
    relay = new Relay(
      {
        db: database.prisma,
        queue: ledgerQueue,
        // The rate bucket holds at most a fiftieth of a second's events (or RELAY_RATE_BURST_MAX).
        // A window can exceed the cap by the bucket plus the batches still being marked when it
        // closes (each at most a bucketful), so this keeps the excess near 6%.
        rateBucket: new RedisTokenBucketStore(redis, config.redisKeyPrefix, {
          capacity: config.relayRateBurstMax || Math.max(1, Math.ceil(config.relayRatePerSecond / 50)),
          refillPerSecond: config.relayRatePerSecond,
        }),
        retryBudget,
        logger,
        onPublished: (count) => metrics.relayPublished.inc(count),
        onPublishFailed: () => metrics.relayPublishFailures.inc(),
      },
      {
        databaseUrl: config.databaseUrl,
        batchSizeMax: config.relayBatchSizeMax,
        pollIntervalMs: config.relayPollIntervalMs,
        claimLeaseMs: config.relayClaimLeaseMs,
        ratePerSecond: config.relayRatePerSecond,
        faults: config.faults,
        publishTimeoutMs: Math.max(1_000, Math.floor(config.relayClaimLeaseMs / 3)),
      },
    );
    await relay.start();
    addOutboxGauges(metrics, database);
  }

  let worker: LedgerWorker | undefined;
  if (config.role === 'worker' || config.role === 'all') {
    worker = new LedgerWorker(
      {
        db: database.prisma,
        queueConnection: queueRedis,
        redis,
        admission: new CallSiteAdmission(redis, retryBudget, {
          keyPrefix: config.redisKeyPrefix,
          callSite: ledgerApplyCallSite,
          probeIntervalMs: config.retryBudgetEmptyDelayMs,
          holdMs: 60_000,
        }),
        deadLetters,
        logger,
        onOutcome: (outcome) => {
          if (outcome === 'applied') metrics.ledgerEffectsApplied.inc();
          else if (outcome === 'acknowledged') metrics.ledgerEventsAcknowledged.inc();
          else metrics.inboxDuplicates.inc({ caught_by: outcome === 'skipped' ? 'redis_marker' : 'inbox_row' });
        },
        onAttempt: () => metrics.ledgerApplyAttempts.inc(),
        onDeadLetter: (reason) => metrics.deadLetters.inc({ reason }),
        onBudgetDelay: () => metrics.retryBudgetDelays.inc({ call_site: ledgerApplyCallSite }),
      },
      {
        prefix: config.queuePrefix,
        redisKeyPrefix: config.redisKeyPrefix,
        concurrency: config.workerConcurrency,
        attemptsMax: config.workerAttemptsMax,
        backoffBaseMs: config.workerBackoffBaseMs,
        backoffCapMs: config.workerBackoffCapMs,
        ratePerSecond: config.workerRatePerSecond,
        lockDurationMs: config.workerLockDurationMs,
        retryBudgetEmptyDelayMs: config.retryBudgetEmptyDelayMs,
        outageUntilMs: config.faultLedgerOutageMs > 0 ? Date.now() + config.faultLedgerOutageMs : 0,
      },
    );
    worker.start();
    // Retention runs beside the worker: bounded batches, COMPLETED and ABANDONED keys only.
    const purge = setInterval(() => {
      purgeExpiredIdempotencyKeys(database.prisma, {
        retentionHours: config.idempotencyRetentionHours,
        batchSizeMax: config.idempotencyPurgeBatchSizeMax,
      }).then(
        (purged) => purged > 0 && logger.info({ purged }, 'purged idempotency keys past retention'),
        (error: unknown) => logger.warn({ err: error }, 'idempotency key purge failed'),
      );
    }, config.idempotencyPurgeIntervalMs);
    purge.unref();
    stoppables.push(async () => clearInterval(purge));
  }
  metrics.addGauge('ledger_queue_jobs', 'Jobs in the ledger queue by state.', ['state'], async (gauge) => {
    const counts = await ledgerQueue.getJobCounts('waiting', 'active', 'delayed', 'failed', 'completed');
    for (const [state, count] of Object.entries(counts)) gauge.set({ state }, count);
  });

  const httpLimits = httpLimitsFromConfig(config);
  const server = await listenWithLimits(app, '0.0.0.0', config.port, httpLimits);
  const port = (server.address() as AddressInfo).port;
  const metricsServer = metricsOnOwnPort
    ? await listenWithLimits(metricsHandler(metrics.registry), config.metricsHost, config.metricsPort, httpLimits)
    : undefined;
  const metricsPort = metricsServer === undefined ? port : (metricsServer.address() as AddressInfo).port;
  logger.info({ port, metricsPort, role: config.role }, 'gateway listening');

  let stopping: Promise<void> | undefined;
  const stop = () => {
    stopping ??= (async () => {
      await closeServer(server, config.shutdownGraceMs);
      if (metricsServer !== undefined) await closeServer(metricsServer, 0);
      await relay?.stop();
      await worker?.stop();
      await completer?.stop();
      for (const stopOne of stoppables) await stopOne();
      await graphql?.stop();
      await auditBuffer.close();
      await acquirer.close();
      await ledgerQueue.close().catch(() => undefined);
      await deadLetterQueue.close().catch(() => undefined);
      await closeRedis(queueRedis);
      await closeRedis(redis);
      await database.close();
    })();
    return stopping;
  };
  return {
    url: `http://127.0.0.1:${port}`,
    port,
    metricsUrl: `http://127.0.0.1:${metricsPort}/metrics`,
    metrics,
    database,
    redis,
    completer,
    relay,
    worker,
    deadLetters,
    stop,
  };
}

/** outbox_backlog_events and outbox_lag_seconds, read from Postgres at scrape time. */
function addOutboxGauges(metrics: Metrics, database: DatabaseHandle): void {
  const read = async () => {
    const rows = await database.prisma.$queryRaw<{ backlog: number; lag: number }[]>`
      SELECT count(*)::int AS backlog,
             coalesce(extract(epoch FROM now() - min(created_at)), 0)::float8 AS lag
        FROM outbox_events WHERE published_at IS NULL`;
    return rows[0] ?? { backlog: 0, lag: 0 };
  };
  metrics.addGauge('outbox_backlog_events', 'Outbox events not yet published.', [], async (gauge) => {
    gauge.set((await read()).backlog);
  });
  metrics.addGauge(
    'outbox_lag_seconds',
    'Age of the oldest unpublished outbox event (0 when none).',
    [],
    async (gauge) => {
      gauge.set((await read()).lag);
    },
  );
}

/** Stops accepting connections, lets in-flight requests finish, then cuts what is left. */
async function closeServer(server: Server, graceMs: number): Promise<void> {
  const closed = new Promise<void>((resolve) => server.close(() => resolve()));
  server.closeIdleConnections();
  const timer = setTimeout(() => server.closeAllConnections(), graceMs);
  await closed;
  clearTimeout(timer);
}

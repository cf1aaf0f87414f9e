/**
 * The composition root of a gateway process: platform (pools, queues, metrics, HTTP server),
 * services (acquirer, idempotency, charges, refunds), the background roles (completer, relay,
 * worker) and the HTTP mounts of the api role. main.ts runs it; tests start it in-process on
 * port 0. Every role serves /healthz, /readyz and /metrics. The api role adds POST /graphql,
 * POST /admin/graphql (with ADMIN_TOKEN) and /demo (outside production); the relay role publishes
 * the outbox; the worker role applies events to the ledger and purges expired keys; relay and
 * worker roles run the completer.
 *
 * Each starter returns what it must stop; they go on one lifecycle list in start order, which
 * stops them in reverse: the HTTP server drains first, the pools close last (docs/contract.md §8).
 */
import type { AddressInfo } from 'node:net';
import type { Config } from './config';
import { withDeploymentNamespace, type NamespacedConfig } from './platform/deployment-namespace';
import { createAcquirer } from './acquirer/providers';
import { ChargeService } from './charges/create-charge';
import { RefundService } from './charges/refund-charge';
import { Completer } from './charges/completer';
import { AuditBuffer } from './idempotency/audit-buffer';
import { openIdempotencyStore } from './idempotency/open-idempotency-store';
import { MerchantAuthenticator } from './merchants/merchants';
import { MerchantRateLimits } from './merchants/rate-limits';
import { AuthFailureLimiter } from './merchants/auth-limits';
import { publishKeyRevocation, subscribeToKeyRevocations } from './merchants/key-revocations';
import { createMetrics, retryCallSites, type Metrics } from './metrics';
import { openDatabase, type DatabaseHandle } from './platform/database';
import { closeServer, createHttpPlatform, listen, type HttpPlatform } from './platform/http';
import { httpLimitsFromConfig, listenWithLimits, metricsHandler } from './platform/http-server';
import { Lifecycle, type StopReport, type Stoppable } from './platform/lifecycle';
import type { Logger } from './platform/logger';
import { closeRedis, openHotPathRedis, openQueueRedis, waitUntilReady, type RedisClient } from './platform/redis';
import { createGraphqlServer } from './graphql/server';
import { ReplayFastPath } from './graphql/replay-fast-path';
import { queryLimitsFromConfig } from './graphql/query-limits';
import { bodyParserErrorHandler } from './graphql/errors';
import { createAdminRouter } from './admin/admin-server';
import { addReconciliationGauge } from './admin/reconciliation';
import { demoRouter, dropResponseFault } from './demo/demo-router';
import { purgeExpiredIdempotencyKeys } from './idempotency/key-row';
import { addLedgerQueueGauge, addOutboxGauges } from './outbox/metrics';
import { openDeadLetterQueue, openLedgerQueue } from './outbox/queue';
import { Relay, relayPublishCallSite } from './outbox/relay';
import { DeadLetters } from './ledger/dead-letters';
import { LedgerWorker, ledgerApplyCallSite } from './ledger/worker';
import { addRetryBudgetGauge } from './retry/metrics';
import { RedisTokenBucketStore } from './retry/redis-token-bucket';
import { RetryBudget } from '@payments-gateway/retry';
import { CallSiteAdmission } from './retry/call-site-admission';
import { createValueSigner, resolveRedisAnswerSecret } from './platform/signed-value';

/**
 * How long one lifecycle step (a worker, a pool) may take to stop before it is logged and
 * skipped. The HTTP drain has its own deadline: SHUTDOWN_GRACE_MS and a second to cut connections.
 */
const stopStepDeadlineMs = 5_000;

export interface Gateway {
  readonly url: string;
  readonly port: number;
  /** Where /metrics is served: PORT outside production unless METRICS_PORT says otherwise. */
  readonly metricsUrl: string;
  readonly metrics: Metrics;
  /** The deployment's Redis namespace: REDIS_KEY_PREFIX, or the one derived from the database. */
  readonly redisKeyPrefix: string;
  readonly database: DatabaseHandle;
  readonly redis: RedisClient;
  readonly completer: Completer | undefined;
  readonly relay: Relay | undefined;
  readonly worker: LedgerWorker | undefined;
  readonly deadLetters: DeadLetters;
  /** Graceful stop: no new requests, in-flight ones finish (bounded by shutdownGraceMs), pools close. */
  stop(): Promise<StopReport>;
}

type Platform = ReturnType<typeof startPlatform>;
type Services = ReturnType<typeof startServices>;

export async function startGateway(unresolvedConfig: Config, logger: Logger): Promise<Gateway> {
  const lifecycle = new Lifecycle(logger, stopStepDeadlineMs);
  try {
    // The Redis namespace first: every Redis key, channel and queue below is under it.
    const config = await withDeploymentNamespace(unresolvedConfig);
    const platform = startPlatform(config, logger);
    lifecycle.add(...platform.stoppables);
    // Start with a connected Redis when there is one; without it every decision goes to Postgres.
    if (!(await waitUntilReady(platform.redis, 2_000))) {
      logger.warn('Redis is not reachable; starting anyway (Postgres decides)');
    }
    const services = startServices(platform);
    lifecycle.add(...services.stoppables);
    const completer = config.role === 'api' ? undefined : startCompleter(platform, services);
    lifecycle.add(...(completer?.stoppables ?? []));
    const worker = hasRole(config, 'worker') ? startWorker(platform, services) : undefined;
    lifecycle.add(...(worker?.stoppables ?? []));
    const relay = hasRole(config, 'relay') ? await startRelay(platform, services) : undefined;
    lifecycle.add(...(relay?.stoppables ?? []));
    lifecycle.add(...(hasRole(config, 'api') ? await mountApi(platform, services) : [drainWithoutApollo(platform)]));
    platform.http.app.use(bodyParserErrorHandler(config.requestBodyBytesMax));

    const port = await listen(platform.http.server, config.host, config.port);
    const metricsPort = metricsOnOwnPort(config) ? await listenForMetrics(platform, lifecycle) : port;
    logger.info({ port, metricsPort, role: config.role }, 'gateway listening');
    return {
      url: `http://127.0.0.1:${port}`,
      port,
      metricsUrl: `http://127.0.0.1:${metricsPort}/metrics`,
      metrics: platform.metrics,
      redisKeyPrefix: config.redisKeyPrefix,
      database: platform.database,
      redis: platform.redis,
      completer: completer?.completer,
      relay: relay?.relay,
      worker: worker?.worker,
      deadLetters: services.deadLetters,
      stop: () => lifecycle.stop(),
    };
  } catch (error) {
    await lifecycle.stop();
    throw error;
  }
}

/** In production /metrics has a listener of its own (docs/security.md): charge volume is not public. */
function metricsOnOwnPort(config: Config): boolean {
  return config.isProduction || config.metricsPort !== 0;
}

async function listenForMetrics({ config, metrics }: Platform, lifecycle: Lifecycle): Promise<number> {
  const handler = metricsHandler(metrics.registry);
  const server = await listenWithLimits(handler, config.metricsHost, config.metricsPort, httpLimitsFromConfig(config));
  lifecycle.add({ name: 'metrics listener', stop: () => closeServer(server, 0) });
  return (server.address() as AddressInfo).port;
}

function hasRole(config: Config, role: 'api' | 'relay' | 'worker'): boolean {
  return config.role === role || config.role === 'all';
}

/** Connections, queues, metrics and the HTTP server: everything the domain runs on. */
function startPlatform(config: NamespacedConfig, logger: Logger) {
  const metrics = createMetrics(config.role);
  const database = openDatabase(config, `payments-gateway-${config.role}`);
  const redis = openHotPathRedis(config);
  const queueRedis = openQueueRedis(config);
  const ledgerQueue = openLedgerQueue(queueRedis, {
    prefix: config.queuePrefix,
    attemptsMax: config.workerAttemptsMax,
  });
  const deadLetterQueue = openDeadLetterQueue(queueRedis, config.queuePrefix);
  for (const queue of [ledgerQueue, deadLetterQueue]) {
    queue.on('error', (error) => logger.warn({ err: error, queue: queue.name }, 'queue connection error'));
  }
  addLedgerQueueGauge(metrics, ledgerQueue);
  const http: HttpPlatform = createHttpPlatform({
    role: config.role,
    database,
    redis,
    metrics,
    limits: httpLimitsFromConfig(config),
    metricsOnOwnPort: metricsOnOwnPort(config),
    trustProxyHops: config.trustProxyHops,
  });
  const stoppables: Stoppable[] = [
    { name: 'postgres pool', stop: () => database.close() },
    { name: 'redis (hot path)', stop: () => closeRedis(redis) },
    { name: 'redis (queues)', stop: () => closeRedis(queueRedis) },
    { name: 'ledger queue', stop: () => ledgerQueue.close() },
    { name: 'dead-letter queue', stop: () => deadLetterQueue.close() },
  ];
  return { config, logger, metrics, database, redis, queueRedis, ledgerQueue, deadLetterQueue, http, stoppables };
}

/** The domain services every role shares. */
function startServices({ config, logger, metrics, database, redis, ledgerQueue, deadLetterQueue }: Platform) {
  const acquirer = createAcquirer(config, logger);
  const auditBuffer = new AuditBuffer(database.prisma, {
    flushIntervalMs: config.auditFlushIntervalMs,
    batchSizeMax: config.auditBatchSizeMax,
    onLost: (count) => metrics.auditRowsLost.inc(count),
  });
  const idempotency = openIdempotencyStore({ config, db: database.prisma, redis, auditBuffer, metrics, logger });
  const keyed = { db: database.prisma, idempotency, acquirer, logger, leaseMs: config.idempotencyLeaseMs };
  const charges = new ChargeService({ ...keyed, faults: config.faults });
  const refunds = new RefundService(keyed);
  const retryBudget = new RetryBudget(
    new RedisTokenBucketStore(redis, config.redisKeyPrefix, {
      capacity: config.retryBudgetCapacity,
      refillPerSecond: config.retryBudgetRefillPerSecond,
    }),
    { depositPerSuccess: config.retryBudgetDepositPerSuccess },
  );
  addRetryBudgetGauge(metrics, retryBudget, retryCallSites);
  const stoppables: Stoppable[] = [
    { name: 'acquirer', stop: () => acquirer.close() },
    // Stops after every role (reverse order), so the rows they buffered are flushed.
    { name: 'audit buffer', stop: () => auditBuffer.close() },
    { name: 'idempotency wake-ups', stop: () => idempotency.close() },
  ];
  const deadLetters = new DeadLetters(database.prisma, ledgerQueue, deadLetterQueue);
  return { idempotency, charges, refunds, retryBudget, deadLetters, stoppables };
}

/** Finishes or abandons keys whose holder died (relay and worker roles). */
function startCompleter({ config, logger, metrics, database }: Platform, services: Services) {
  const completer = new Completer(
    database.prisma,
    { charges: services.charges, refunds: services.refunds },
    services.idempotency,
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
  return { completer, stoppables: [{ name: 'completer', stop: () => completer.stop() }] };
}

/** The relay role: publishes committed outbox events to the ledger queue. */
async function startRelay({ config, logger, metrics, database, redis, ledgerQueue }: Platform, services: Services) {
  const relay = new Relay(
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
      retryBudget: services.retryBudget,
      logger,
      onPublished: (count) => metrics.relayPublished.inc(count),
      onPublishFailed: () => metrics.relayPublishFailures.inc(),
      onRepublished: (count, reason) => metrics.outboxRepublished.inc({ reason }, count),
      onBudgetExhausted: () => metrics.retryBudgetDelays.inc({ call_site: relayPublishCallSite }),
    },
    {
      databaseUrl: config.databaseUrl,
      batchSizeMax: config.relayBatchSizeMax,
      pollIntervalMs: config.relayPollIntervalMs,
      claimLeaseMs: config.relayClaimLeaseMs,
      ratePerSecond: config.relayRatePerSecond,
      faults: config.faults,
      publishTimeoutMs: Math.max(1_000, Math.floor(config.relayClaimLeaseMs / 3)),
      sweeper: { graceMs: config.sweeperGraceMs, intervalMs: config.sweeperIntervalMs },
    },
  );
  await relay.start();
  addOutboxGauges(metrics, database.prisma);
  addReconciliationGauge(metrics, database.prisma, config.reconciliationGraceMs);
  // Stopping releases the relay's claims, so another relay takes them without waiting for the lease.
  return { relay, stoppables: [{ name: 'relay', stop: () => relay.stop() }] };
}

/** The worker role: applies ledger events, and purges idempotency keys past retention beside it. */
function startWorker(platform: Platform, services: Services) {
  const { config, logger, metrics, database, redis, queueRedis } = platform;
  const worker = new LedgerWorker(
    {
      db: database.prisma,
      pool: database.pool,
      queueConnection: queueRedis,
      redis,
      signer: createValueSigner(resolveRedisAnswerSecret(config.redisAnswerSecret)),
      admission: new CallSiteAdmission(redis, services.retryBudget, {
        keyPrefix: config.redisKeyPrefix,
        callSite: ledgerApplyCallSite,
        probeIntervalMs: config.retryBudgetEmptyDelayMs,
        holdMs: 60_000,
      }),
      deadLetters: services.deadLetters,
      logger,
      onOutcome: (outcome) => {
        if (outcome === 'applied') metrics.ledgerEffectsApplied.inc();
        else if (outcome === 'acknowledged') metrics.ledgerEventsAcknowledged.inc();
        else metrics.inboxDuplicates.inc({ caught_by: outcome === 'skipped' ? 'redis_marker' : 'inbox_row' });
      },
      onAttempt: () => metrics.ledgerApplyAttempts.inc(),
      onDeadLetter: (reason) => metrics.deadLetters.inc({ reason }),
      onBudgetDelay: () => metrics.retryBudgetDelays.inc({ call_site: ledgerApplyCallSite }),
      onHeld: (reason) => metrics.ledgerJobsHeld.inc({ reason }),
      onDoneMarkerRejected: () => metrics.doneMarkersRejected.inc(),
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
      shutdownGraceMs: config.shutdownGraceMs,
      bugFault: config.faults.has('ledger_bug'),
      hangFault: config.faults.has('ledger_hang'),
      stalledCountMax: config.workerStalledCountMax,
    },
  );
  worker.start();
  // The worker's stop lets running jobs finish within SHUTDOWN_GRACE_MS and then gives the rest
  // back to the queue: its deadline must outlast that grace, or the lifecycle would skip the
  // give-back and leave the jobs to the stalled checker.
  const stoppable: Stoppable = {
    name: 'ledger worker',
    stop: () => worker.stop(),
    deadlineMs: config.shutdownGraceMs + stopStepDeadlineMs,
  };
  return { worker, stoppables: [stoppable, startRetentionPurge(platform)] };
}

/** Bounded batches, COMPLETED and ABANDONED keys only. */
function startRetentionPurge({ config, logger, database }: Platform): Stoppable {
  const purge = setInterval(() => {
    purgeExpiredIdempotencyKeys(database.prisma, {
      retentionHours: config.idempotencyRetentionHours,
      batchSizeMax: config.idempotencyPurgeBatchSizeMax,
      tombstoneDays: config.idempotencyTombstoneDays,
    }).then(
      (purged) => purged > 0 && logger.info({ purged }, 'purged idempotency keys past retention'),
      (error: unknown) => logger.warn({ err: error }, 'idempotency key purge failed'),
    );
  }, config.idempotencyPurgeIntervalMs);
  purge.unref();
  return { name: 'idempotency key purge', stop: async () => clearInterval(purge) };
}

/** The operators' API (`POST /admin/graphql`), only when ADMIN_TOKEN is set. */
async function mountAdmin(
  platform: Platform,
  services: Services,
  authenticator: MerchantAuthenticator,
  merchantChanged: (merchantId: string) => Promise<void>,
): Promise<Stoppable | undefined> {
  const { config, logger, database, redis, ledgerQueue, deadLetterQueue, http } = platform;
  if (config.adminToken === undefined) return undefined;
  const admin = await createAdminRouter({
    adminToken: config.adminToken,
    authenticator,
    failures: new AuthFailureLimiter(redis, config.redisKeyPrefix, 'admin', config.adminAuthFailuresPerMinute),
    logger,
    isProduction: config.isProduction,
    requestBodyBytesMax: config.requestBodyBytesMax,
    context: {
      db: database.prisma,
      deadLetters: services.deadLetters,
      ledgerQueue,
      deadLetterQueue,
      retentionHours: config.idempotencyRetentionHours,
      purgeBatchSizeMax: config.idempotencyPurgeBatchSizeMax,
      tombstoneDays: config.idempotencyTombstoneDays,
      transaction: {
        maxWaitMs: config.databasePoolConnectTimeoutMs,
        // A change is a few statements, each bounded by the statement timeout (and a lock wait).
        timeoutMs: 3 * (config.databaseStatementTimeoutMs + config.databaseLockTimeoutMs),
      },
      logger,
      merchantChanged,
      reconciliationGraceMs: config.reconciliationGraceMs,
    },
  });
  http.app.use(admin.router);
  return { name: 'admin graphql', stop: admin.stop };
}

/**
 * The api role's routes: the admin API, the demo page, the public GraphQL API. The public Apollo
 * server drains the HTTP server when it stops, so it is the last thing added (the first stopped).
 */
async function mountApi(platform: Platform, services: Services): Promise<Stoppable[]> {
  const { config, logger, metrics, database, redis, http } = platform;
  const stoppables: Stoppable[] = [];
  const authenticator = new MerchantAuthenticator(database.prisma, {
    cacheTtlMs: config.merchantCacheTtlMs,
    cacheEntriesMax: config.merchantCacheEntriesMax,
    refuseDemoMerchant: config.isProduction,
  });
  const unsubscribe = subscribeToKeyRevocations(redis, config.redisKeyPrefix, (id) => authenticator.forget(id), logger);
  stoppables.push({ name: 'key revocation subscriber', stop: unsubscribe });
  const merchantChanged = async (merchantId: string) => {
    authenticator.forget(merchantId);
    await publishKeyRevocation(redis, config.redisKeyPrefix, merchantId, logger);
  };
  const admin = await mountAdmin(platform, services, authenticator, merchantChanged);
  if (admin !== undefined) stoppables.push(admin);
  if (!config.isProduction) {
    http.app.use(
      demoRouter({ apiKey: config.demoMerchantApiKey, dropResponseToggle: config.faults.has('drop_response') }),
    );
  }
  if (config.faults.has('drop_response')) http.app.use('/graphql', dropResponseFault);
  const graphql = await createGraphqlServer({
    services: {
      db: database.prisma,
      charges: services.charges,
      refunds: services.refunds,
      metrics,
      inFlightWaitMs: config.idempotencyInFlightWaitMs,
    },
    authenticator,
    authFailures: new AuthFailureLimiter(redis, config.redisKeyPrefix, 'api', config.authFailuresPerMinute),
    logger,
    isProduction: config.isProduction,
    requestBodyBytesMax: config.requestBodyBytesMax,
    queryLimits: queryLimitsFromConfig(config),
    rateLimits: new MerchantRateLimits(redis, config.redisKeyPrefix, config.merchantRatePerSecond),
    replays: new ReplayFastPath(services.idempotency),
    httpServer: http.server,
    drainGraceMs: config.shutdownGraceMs,
  });
  http.app.use(graphql.router);
  stoppables.push({ name: 'http server and public graphql', stop: graphql.stop, deadlineMs: drainDeadlineMs(config) });
  return stoppables;
}

/** Roles without Apollo drain the HTTP server themselves. */
function drainWithoutApollo({ config, http }: Platform): Stoppable {
  return {
    name: 'http server',
    stop: () => closeServer(http.server, config.shutdownGraceMs),
    deadlineMs: drainDeadlineMs(config),
  };
}

function drainDeadlineMs(config: Config): number {
  return config.shutdownGraceMs + 1_000;
}

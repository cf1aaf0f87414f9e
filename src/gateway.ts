/**
 * Builds a gateway process from its config: connections, services and the roles asked for.
 * main.ts runs it; tests start it in-process on port 0. Every role serves /healthz, /readyz and
 * /metrics; the api role adds POST /graphql; relay and worker roles run the completer.
 */
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import express from 'express';
import type { Redis } from 'ioredis';
import type { Config } from './config';
import { SimulatedAcquirer } from './acquirer/simulated-acquirer';
import { ChargeService } from './charges/create-charge';
import { Completer } from './charges/completer';
import { AuditBuffer } from './idempotency/audit-buffer';
import { IdempotencyStore } from './idempotency/idempotency-store';
import { RedisIdempotencyStore } from './idempotency/redis-store';
import { MerchantAuthenticator } from './merchants/merchants';
import { openDatabase, type DatabaseHandle } from './platform/database';
import type { Logger } from './platform/logger';
import { Metrics } from './platform/metrics';
import { closeRedis, openHotPathRedis } from './platform/redis';
import { createGraphqlServer, type GraphqlServer } from './graphql/server';

/** tok_slow's delay: long enough for a test to send a concurrent request, short of the timeout. */
const simulatedSlowMs = 800;

export interface Gateway {
  readonly url: string;
  readonly port: number;
  readonly metrics: Metrics;
  readonly database: DatabaseHandle;
  readonly redis: Redis;
  readonly completer: Completer | undefined;
  /** Graceful stop: no new requests, in-flight ones finish (bounded by shutdownGraceMs), pools close. */
  stop(): Promise<void>;
}

export async function startGateway(config: Config, logger: Logger): Promise<Gateway> {
  const metrics = new Metrics(config.role);
  const database = openDatabase(config, `payments-gateway-${config.role}`);
  const redis = openHotPathRedis(config);
  const acquirer = new SimulatedAcquirer({
    databaseUrl: config.databaseUrl,
    timeoutMs: config.acquirerTimeoutMs,
    slowMs: Math.min(simulatedSlowMs, Math.floor(config.acquirerTimeoutMs / 2)),
  });
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

  const app = express();
  app.disable('x-powered-by');
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
  app.get('/metrics', async (_req, res) => {
    res.type(metrics.registry.contentType).send(await metrics.registry.metrics());
  });

  let graphql: GraphqlServer | undefined;
  if (config.role === 'api' || config.role === 'all') {
    graphql = await createGraphqlServer({
      services: { db: database.prisma, charges, metrics },
      authenticator: new MerchantAuthenticator(database.prisma, config.merchantCacheTtlMs),
      logger,
      isProduction: config.isProduction,
      requestBodyBytesMax: config.requestBodyBytesMax,
      queryDepthMax: config.queryDepthMax,
      queryComplexityMax: config.queryComplexityMax,
    });
    app.use(graphql.router);
  }

  let completer: Completer | undefined;
  if (config.role !== 'api') {
    completer = new Completer(
      database.prisma,
      charges,
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

  const server = await listen(app, config.port);
  const port = (server.address() as AddressInfo).port;
  logger.info({ port, role: config.role }, 'gateway listening');

  let stopping: Promise<void> | undefined;
  const stop = () => {
    stopping ??= (async () => {
      await closeServer(server, config.shutdownGraceMs);
      await completer?.stop();
      await graphql?.stop();
      await auditBuffer.close();
      await acquirer.close();
      await closeRedis(redis);
      await database.close();
    })();
    return stopping;
  };
  return { url: `http://127.0.0.1:${port}`, port, metrics, database, redis, completer, stop };
}

function listen(app: express.Express, port: number): Promise<Server> {
  return new Promise((resolve, reject) => {
    const server = app.listen(port, '0.0.0.0', (error?: Error) => (error ? reject(error) : resolve(server)));
    server.keepAliveTimeout = 5_000;
  });
}

/** Stops accepting connections, lets in-flight requests finish, then cuts what is left. */
async function closeServer(server: Server, graceMs: number): Promise<void> {
  const closed = new Promise<void>((resolve) => server.close(() => resolve()));
  server.closeIdleConnections();
  const timer = setTimeout(() => server.closeAllConnections(), graceMs);
  await closed;
  clearTimeout(timer);
}

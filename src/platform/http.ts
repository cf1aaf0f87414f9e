/**
 * The HTTP server every role has: /healthz (the process runs), /readyz (Postgres and Redis
 * answer) and /metrics. The server is created before anything is mounted, so Apollo's drain
 * plugin can hold it, and it listens only once every route is mounted.
 */
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import express from 'express';
import type { DatabaseHandle } from './database';
import { createLimitedServer, metricsHandler, type HttpLimits } from './http-server';
import type { MetricsRegistry } from './metrics';
import type { RedisClient } from './redis';

export interface HttpPlatform {
  readonly app: express.Express;
  readonly server: Server;
}

export function createHttpPlatform(options: {
  readonly role: string;
  readonly database: DatabaseHandle;
  readonly redis: RedisClient;
  readonly metrics: MetricsRegistry;
  /** Timeouts and the connection cap (http-server.ts). */
  readonly limits: HttpLimits;
  /** In production /metrics is served by a listener of its own, never here. */
  readonly metricsOnOwnPort: boolean;
  /** Reverse proxies whose X-Forwarded-For names the client (the address limits count by). */
  readonly trustProxyHops: number;
}): HttpPlatform {
  const app = express();
  app.disable('x-powered-by');
  app.set('trust proxy', options.trustProxyHops);
  app.set('etag', false);
  app.get('/healthz', (_req, res) => {
    res.json({ status: 'ok', role: options.role });
  });
  app.get('/readyz', async (_req, res) => {
    const answers = (check: Promise<unknown>) =>
      check.then(
        () => true,
        () => false,
      );
    const [postgres, redis] = await Promise.all([
      answers(options.database.prisma.$queryRaw`SELECT 1`),
      answers(options.redis.ping()),
    ]);
    res.status(postgres && redis ? 200 : 503).json({ postgres, redis });
  });
  if (!options.metricsOnOwnPort) app.get('/metrics', metricsHandler(options.metrics.registry));
  const server = createLimitedServer(app, options.limits);
  return { app, server };
}

export function listen(server: Server, host: string, port: number): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve((server.address() as AddressInfo).port);
    });
  });
}

/**
 * Stops accepting connections, lets in-flight requests finish, then cuts what is left after
 * graceMs. For roles without Apollo; the api role drains through Apollo's drain plugin instead.
 */
export async function closeServer(server: Server, graceMs: number): Promise<void> {
  if (!server.listening) return;
  const closed = new Promise<void>((resolve) => server.close(() => resolve()));
  server.closeIdleConnections();
  const timer = setTimeout(() => server.closeAllConnections(), graceMs);
  await closed;
  clearTimeout(timer);
}

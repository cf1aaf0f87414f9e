/**
 * The HTTP listeners, with every limit Node would otherwise leave at its default (docs/security.md):
 *   - headersTimeout: the request headers must arrive within it (a client trickling them is cut
 *     off with 408);
 *   - requestTimeout: the whole request, body included;
 *   - keepAliveTimeout: an idle keep-alive connection is closed after it;
 *   - maxConnections: past it, new connections are closed as they arrive.
 * Node enforces the first two only when it sweeps its connections (connectionsCheckingInterval,
 * 30 s by default), so the sweep runs often enough for the configured timeouts to mean what they say.
 */
import { createServer, type RequestListener, type Server } from 'node:http';

export interface HttpLimits {
  readonly headersTimeoutMs: number;
  readonly requestTimeoutMs: number;
  readonly keepAliveTimeoutMs: number;
  readonly connectionsMax: number;
}

export function httpLimitsFromConfig(config: {
  readonly httpHeadersTimeoutMs: number;
  readonly httpRequestTimeoutMs: number;
  readonly httpKeepAliveTimeoutMs: number;
  readonly httpConnectionsMax: number;
}): HttpLimits {
  return {
    headersTimeoutMs: config.httpHeadersTimeoutMs,
    requestTimeoutMs: config.httpRequestTimeoutMs,
    keepAliveTimeoutMs: config.httpKeepAliveTimeoutMs,
    connectionsMax: config.httpConnectionsMax,
  };
}

/** An HTTP server with the limits applied, not yet listening. */
export function createLimitedServer(handler: RequestListener, limits: HttpLimits): Server {
  const server = createServer(
    {
      headersTimeout: limits.headersTimeoutMs,
      requestTimeout: limits.requestTimeoutMs,
      keepAliveTimeout: limits.keepAliveTimeoutMs,
      // A quarter of the headers timeout, at most a second: a slow client is cut off at most that late.
      connectionsCheckingInterval: Math.min(1_000, Math.max(10, Math.floor(limits.headersTimeoutMs / 4))),
    },
    handler,
  );
  server.maxConnections = limits.connectionsMax;
  return server;
}

/** Listens on host:port with the limits applied; resolves once listening. */
export function listenWithLimits(
  handler: RequestListener,
  host: string,
  port: number,
  limits: HttpLimits,
): Promise<Server> {
  const server = createLimitedServer(handler, limits);
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve(server);
    });
  });
}

/** GET /metrics from a Prometheus registry, and 404 for anything else: the metrics listener's handler. */
export function metricsHandler(registry: { contentType: string; metrics(): Promise<string> }): RequestListener {
  return (request, response) => {
    if (request.method !== 'GET' || request.url?.split('?')[0] !== '/metrics') {
      response.writeHead(404).end();
      return;
    }
    registry.metrics().then(
      (text) => response.writeHead(200, { 'content-type': registry.contentType }).end(text),
      () => response.writeHead(500).end(),
    );
  };
}

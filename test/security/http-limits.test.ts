/**
 * Slow clients cannot hold connections (docs/security.md): trickled headers and trickled bodies
 * are cut off at the configured timeouts, and connections past the cap are closed as they arrive.
 * Raw sockets against a running gateway, with short timeouts configured.
 */
import { connect, type Socket } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config';
import { createTestEnvironment, startTestGateway, type TestEnvironment, type TestGateway } from '../helpers/gateway';

let environment: TestEnvironment;
let gateway: TestGateway;

beforeAll(async () => {
  environment = await createTestEnvironment();
  gateway = await startTestGateway(environment, {
    ROLE: 'api',
    HTTP_HEADERS_TIMEOUT_MS: '1000',
    HTTP_REQUEST_TIMEOUT_MS: '2000',
    HTTP_KEEP_ALIVE_TIMEOUT_MS: '1000',
    HTTP_CONNECTIONS_MAX: '4',
  });
});
afterAll(async () => {
  await gateway?.stop();
  await environment?.cleanup();
});

interface HeldSocket {
  readonly socket: Socket;
  /** Resolves with what the server sent and when it closed (ms after the socket was opened). */
  readonly closed: Promise<{ received: string; afterMs: number }>;
}

async function open(): Promise<HeldSocket> {
  const openedAt = performance.now();
  const socket = connect(gateway.port, '127.0.0.1');
  let received = '';
  socket.on('data', (chunk: Buffer) => (received += chunk.toString('latin1')));
  socket.on('error', () => undefined);
  const closed = new Promise<{ received: string; afterMs: number }>((resolve) =>
    socket.on('close', () => resolve({ received, afterMs: performance.now() - openedAt })),
  );
  await new Promise<void>((resolve, reject) => {
    socket.once('connect', resolve);
    socket.once('close', () => reject(new Error('closed before connecting')));
  }).catch(() => undefined);
  return { socket, closed };
}

/** Writes `next()` every 100 ms until the socket closes or 15 s pass. */
function trickle(held: HeldSocket, next: () => string): void {
  const timer = setInterval(() => {
    if (held.socket.destroyed) return clearInterval(timer);
    held.socket.write(next());
  }, 100);
  void held.closed.then(() => clearInterval(timer));
  setTimeout(() => clearInterval(timer), 15_000).unref();
}

describe('when a client trickles its request headers', () => {
  it('is answered 408 and cut off soon after HTTP_HEADERS_TIMEOUT_MS', async () => {
    const held = await open();
    held.socket.write('POST /graphql HTTP/1.1\r\nHost: gateway\r\n');
    let header = 0;
    trickle(held, () => `X-Slow-${(header += 1)}: a\r\n`);
    const { received, afterMs } = await held.closed;
    expect(received).toMatch(/^HTTP\/1\.1 408/);
    expect(afterMs).toBeGreaterThanOrEqual(900);
    expect(afterMs).toBeLessThan(8_000);
  });
});

describe('when a client trickles its request body', () => {
  it('is cut off soon after HTTP_REQUEST_TIMEOUT_MS', async () => {
    const held = await open();
    held.socket.write(
      'POST /graphql HTTP/1.1\r\nHost: gateway\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n{',
    );
    trickle(held, () => ' ');
    const { received, afterMs } = await held.closed;
    expect(received).toMatch(/^HTTP\/1\.1 408/);
    expect(afterMs).toBeGreaterThanOrEqual(1_900);
    expect(afterMs).toBeLessThan(10_000);
  });
});

describe('when more clients connect than HTTP_CONNECTIONS_MAX', () => {
  it('closes the connections past the cap at once, and serves again once they are gone', async () => {
    const holders = await Promise.all(Array.from({ length: 4 }, () => open()));
    for (const holder of holders) holder.socket.write('GET /healthz HTTP/1.1\r\nHost: gateway\r\n');
    const extra = await open();
    const { received, afterMs } = await extra.closed;
    // Dropped on arrival: no 408 (which an uncapped server sends once the headers timeout passes).
    expect(received).toBe('');
    expect(afterMs).toBeLessThan(1_000);
    for (const holder of holders) holder.socket.destroy();
    await Promise.all(holders.map((holder) => holder.closed));
    // The server counts a connection as gone once it sees the close: poll for it with a deadline.
    const deadline = Date.now() + 5_000;
    let status = 0;
    while (status !== 200 && Date.now() < deadline) {
      status = await fetch(`${gateway.url}/healthz`).then(
        (response) => response.status,
        () => 0,
      );
    }
    expect(status).toBe(200);
  });
});

describe('the defaults', () => {
  it('cut a trickling client off within 30 s and cap connections', () => {
    const config = loadConfig({});
    expect(config.httpHeadersTimeoutMs).toBeLessThanOrEqual(30_000);
    expect(config.httpRequestTimeoutMs).toBeLessThanOrEqual(30_000);
    expect(config.httpKeepAliveTimeoutMs).toBeGreaterThan(0);
    expect(config.httpConnectionsMax).toBeGreaterThan(0);
  });
});

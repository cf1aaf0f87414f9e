/**
 * A TCP proxy between a client and the gateway that loses things for real:
 * - dropResponses(n): the next n connections that get an answer from the server are cut the
 *   moment the answer's first byte arrives: the request reached the server (which committed
 *   before answering), the client never hears back;
 * - resetConnections(n): the next n connections are reset before anything is forwarded;
 * - delayMs: every chunk from the server waits this long.
 * Counters say what happened. Only loopback addresses.
 */
import net from 'node:net';

export interface LossyProxy {
  readonly url: string;
  readonly port: number;
  dropResponses(count: number): void;
  resetConnections(count: number): void;
  setDelayMs(ms: number): void;
  /** Drops each answered connection with this probability (0..1), for soak runs. */
  setDropProbability(probability: number): void;
  /** Forwards new connections to these ports from now on (a restarted server on another port); none: refuses them. */
  setTargets(ports: readonly number[]): void;
  readonly stats: { connections: number; droppedResponses: number; resets: number };
  close(): Promise<void>;
}

/** Forwards to `targetPorts` round-robin, one connection at a time. */
export async function startLossyProxy(
  targetPorts: number | readonly number[],
  targetHost = '127.0.0.1',
): Promise<LossyProxy> {
  let targets = typeof targetPorts === 'number' ? [targetPorts] : [...targetPorts];
  let next = 0;
  let dropsLeft = 0;
  let resetsLeft = 0;
  let delayMs = 0;
  let dropProbability = 0;
  const stats = { connections: 0, droppedResponses: 0, resets: 0 };
  const sockets = new Set<net.Socket>();

  const server = net.createServer((client) => {
    stats.connections += 1;
    sockets.add(client);
    client.on('close', () => sockets.delete(client));
    if (resetsLeft > 0) {
      resetsLeft -= 1;
      stats.resets += 1;
      client.resetAndDestroy();
      return;
    }
    if (targets.length === 0) {
      // No server to forward to (it is down): refused, as a connection to a closed port would be.
      client.resetAndDestroy();
      return;
    }
    const upstream = net.connect(targets[next++ % targets.length]!, targetHost);
    sockets.add(upstream);
    upstream.on('close', () => sockets.delete(upstream));
    client.on('data', (chunk) => upstream.write(chunk));
    client.on('error', () => upstream.destroy());
    upstream.on('error', () => client.destroy());
    client.on('end', () => upstream.end());
    upstream.on('end', () => client.end());
    upstream.on('data', (chunk) => {
      const drop = dropsLeft > 0 || (dropProbability > 0 && Math.random() < dropProbability);
      if (drop) {
        if (dropsLeft > 0) dropsLeft -= 1;
        stats.droppedResponses += 1;
        // The server has answered; the client never hears it.
        client.resetAndDestroy();
        upstream.destroy();
        return;
      }
      if (delayMs > 0) {
        upstream.pause();
        setTimeout(() => {
          client.write(chunk);
          upstream.resume();
        }, delayMs);
      } else {
        client.write(chunk);
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as net.AddressInfo).port;
  return {
    url: `http://127.0.0.1:${port}`,
    port,
    dropResponses: (count) => (dropsLeft += count),
    resetConnections: (count) => (resetsLeft += count),
    setDelayMs: (ms) => (delayMs = ms),
    setDropProbability: (probability) => (dropProbability = probability),
    setTargets: (ports) => (targets = [...ports]),
    stats,
    async close() {
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

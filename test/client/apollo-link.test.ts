/**
 * The client gives up for real when its caller does: unsubscribing from the Apollo link aborts the
 * fetch in flight, and an aborted operation makes no further attempt, whether the abort comes
 * during a request or during the wait before a retry. Against a real HTTP server on a local port
 * that holds each request open until the test answers it, so the abort is seen on the wire (the
 * server sees its connection close before it answered).
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { ApolloClient, ApolloLink, InMemoryCache } from '@apollo/client';
import {
  ChargeDocument,
  CreateChargeDocument,
  MemoryTokenBucketStore,
  RetryBudget,
  sendWithRetries,
  type AttemptRecord,
} from '@payments-gateway/client';
import { createGatewayLink } from '@payments-gateway/client/apollo';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

interface HeldRequest {
  readonly headers: http.IncomingHttpHeaders;
  readonly body: string;
  /** Resolves when the client closed the connection before the server answered. */
  readonly abandoned: Promise<void>;
  answer(status: number, body: unknown, headers?: Record<string, string>): void;
}

/** Every request is held open until the test answers it; `next()` waits for the next to arrive. */
async function startHoldingServer() {
  const requests: HeldRequest[] = [];
  const waiting: ((request: HeldRequest) => void)[] = [];
  const server = http.createServer((request, response) => {
    let body = '';
    request.on('data', (chunk: Buffer) => (body += chunk.toString()));
    request.on('end', () => {
      const abandoned = new Promise<void>((resolve) =>
        response.on('close', () => {
          if (!response.writableFinished) resolve();
        }),
      );
      const held: HeldRequest = {
        headers: request.headers,
        body,
        abandoned,
        answer: (status, answerBody, headers = {}) => {
          response.writeHead(status, { 'content-type': 'application/json', ...headers });
          response.end(JSON.stringify(answerBody));
        },
      };
      requests.push(held);
      waiting.shift()?.(held);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/graphql`;
  return {
    url,
    requests,
    /** The request number `index` (0-based), once it has arrived. */
    request(index: number): Promise<HeldRequest> {
      const arrived = requests[index];
      if (arrived !== undefined) return Promise.resolve(arrived);
      return new Promise((resolve) => waiting.push(resolve));
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

/** A generous deadline for something that must happen (docs/testing.md). */
function within<T>(promise: Promise<T>, what: string, timeoutMs = 30_000): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out waiting for ${what}`)), timeoutMs);
  });
  return Promise.race([promise, deadline]).finally(() => clearTimeout(timer));
}

let server: Awaited<ReturnType<typeof startHoldingServer>>;
beforeAll(async () => {
  server = await startHoldingServer();
});
afterAll(async () => {
  await server?.close();
});

const chargeInput = { amount: 700, currency: 'USD', source: 'tok_visa' };

describe('when the Apollo link’s subscriber unsubscribes', () => {
  it('aborts the mutation’s fetch in flight: the server sees the connection close unanswered', async () => {
    // An attempt's own timeout (far past the deadline below) must not be what closes it.
    const link = createGatewayLink({ uri: server.url, retry: { baseMs: 1, capMs: 1, timeoutMs: 600_000 } });
    const client = new ApolloClient({ link, cache: new InMemoryCache() });
    const seen: string[] = [];
    const first = server.requests.length;
    const subscription = ApolloLink.execute(
      link,
      { query: CreateChargeDocument, variables: { input: chargeInput }, context: { idempotencyKey: 'abort-1' } },
      { client },
    ).subscribe({ next: () => seen.push('next'), error: () => seen.push('error') });
    const held = await within(server.request(first), 'the mutation to reach the server');
    expect(held.headers['idempotency-key']).toBe('abort-1');
    subscription.unsubscribe();
    await within(held.abandoned, 'the link to close the connection');
    // Nobody listens after an unsubscribe: the abort is not reported as an error.
    expect(seen).toEqual([]);
  });

  it('aborts a query’s fetch too', async () => {
    const link = createGatewayLink({ uri: server.url });
    const client = new ApolloClient({ link, cache: new InMemoryCache() });
    const first = server.requests.length;
    const subscription = ApolloLink.execute(
      link,
      { query: ChargeDocument, variables: { id: 'ch_1' } },
      { client },
    ).subscribe({});
    const held = await within(server.request(first), 'the query to reach the server');
    expect(held.headers['idempotency-key']).toBeUndefined();
    subscription.unsubscribe();
    await within(held.abandoned, 'the link to close the connection');
  });

  it('sends the operation context’s headers over its own defaults, and keeps the idempotency headers its own', async () => {
    const link = createGatewayLink({
      uri: server.url,
      headers: () => ({ authorization: 'Bearer default', 'x-default': 'kept' }),
    });
    const client = new ApolloClient({ link, cache: new InMemoryCache() });
    const first = server.requests.length;
    const result = new Promise((resolve, reject) =>
      ApolloLink.execute(
        link,
        {
          query: CreateChargeDocument,
          variables: { input: chargeInput },
          context: {
            idempotencyKey: 'headers-1',
            headers: { authorization: 'Bearer from-context', 'idempotency-key': 'forged' },
          },
        },
        { client },
      ).subscribe({ next: resolve, error: reject }),
    );
    const held = await within(server.request(first), 'the mutation to reach the server');
    expect(held.headers).toMatchObject({
      authorization: 'Bearer from-context',
      'x-default': 'kept',
      'idempotency-key': 'headers-1',
      'idempotency-attempt': '1',
    });
    held.answer(200, { data: { createCharge: { id: 'ch_headers' } } });
    await expect(within(result, 'the answer')).resolves.toMatchObject({ data: { createCharge: { id: 'ch_headers' } } });
  });
});

describe('when the caller aborts an operation (sendWithRetries with a signal)', () => {
  const budget = () =>
    new RetryBudget(new MemoryTokenBucketStore({ capacity: 20, refillPerSecond: 1 }), {
      depositPerSuccess: 0.1,
    });

  /** One keyed request to the holding server (its body does not matter to it). */
  const abortableRequest = (idempotencyKey: string, signal: AbortSignal) => ({
    url: server.url,
    headers: {},
    body: JSON.stringify({ query: 'mutation { ping }' }),
    idempotencyKey,
    callSite: 'abort-test',
    signal,
  });

  it('during a request: rejects with the abort, records no failed attempt and never retries', async () => {
    const controller = new AbortController();
    const transcript: AttemptRecord[] = [];
    const retryBudget = budget();
    const first = server.requests.length;
    const sending = sendWithRetries(abortableRequest('abort-2', controller.signal), {
      budget: retryBudget,
      retry: { baseMs: 1, capMs: 1 },
      transcript: (record) => transcript.push(record),
    });
    const held = await within(server.request(first), 'the request to reach the server');
    controller.abort();
    await expect(within(sending, 'the operation to end')).rejects.toMatchObject({ name: 'AbortError' });
    await within(held.abandoned, 'the connection to close');
    // The loop has ended (its promise settled): nothing more can be sent.
    expect(server.requests.length).toBe(first + 1);
    expect(transcript).toEqual([]);
    expect(await retryBudget.tokens('abort-test')).toBeGreaterThanOrEqual(20);
  });

  it('during the wait before a retry: ends the wait at once and sends nothing more', async () => {
    const controller = new AbortController();
    const transcript: AttemptRecord[] = [];
    const first = server.requests.length;
    const startedAtMs = Date.now();
    const sending = sendWithRetries(abortableRequest('abort-3', controller.signal), {
      budget: budget(),
      transcript: (record) => {
        transcript.push(record);
        // The first answer is in: the loop now waits Retry-After (600 s) before attempt 2.
        if (record.status === 503) setImmediate(() => controller.abort());
      },
    });
    (await within(server.request(first), 'the request to reach the server')).answer(
      503,
      { errors: [{ message: 'try later', extensions: { code: 'SERVICE_UNAVAILABLE' } }] },
      { 'retry-after': '600' },
    );
    await expect(within(sending, 'the operation to end')).rejects.toMatchObject({ name: 'AbortError' });
    // Far less than the 600 s wait: the abort ended it.
    expect(Date.now() - startedAtMs).toBeLessThan(60_000);
    expect(server.requests.length).toBe(first + 1);
    expect(transcript.map((record) => record.status)).toEqual([503]);
  });
});

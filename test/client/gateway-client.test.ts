/**
 * The client SDK and the Apollo link against a real gateway, through a proxy that loses
 * responses for real.
 */
import { ApolloClient, ApolloLink, InMemoryCache, gql } from '@apollo/client';
import { SetContextLink } from '@apollo/client/link/context';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ClientRequestError, CreateChargeDocument, GatewayClient, type AttemptRecord } from '@payments-gateway/client';
import { createGatewayLink } from '@payments-gateway/client/apollo';
import { createTestEnvironment, startTestGateway, type TestEnvironment, type TestGateway } from '../helpers/gateway';
import { startLossyProxy, type LossyProxy } from '../../scripts/harness/lossy-proxy';

let environment: TestEnvironment;
let gateway: TestGateway;
let proxy: LossyProxy;

beforeAll(async () => {
  environment = await createTestEnvironment();
  gateway = await startTestGateway(environment, {
    ROLE: 'api',
    IDEMPOTENCY_LEASE_MS: '2000',
    ACQUIRER_TIMEOUT_MS: '1500',
  });
  proxy = await startLossyProxy(gateway.port);
});
afterAll(async () => {
  await proxy?.close();
  await gateway?.stop();
  await environment?.cleanup();
});

const chargesFor = (key: string) =>
  environment.database.count(
    'SELECT count(*) FROM charges c JOIN idempotency_keys k ON k.id = c.idempotency_key_id WHERE k.key = $1',
    [key],
  );

function client(transcript: AttemptRecord[]) {
  return new GatewayClient({
    url: `${proxy.url}/graphql`,
    apiKey: gateway.apiKey,
    transcript: (record) => transcript.push(record),
    retry: { baseMs: 20, capMs: 200 },
  });
}

describe('when two requests with one key run at once', () => {
  it('processes one; the other waits for it on the server and receives the replay, with no 409 (a double click)', async () => {
    const transcript: AttemptRecord[] = [];
    const key = `concurrent-${Date.now()}`;
    const input = { amount: 4200, currency: 'EUR', source: 'tok_slow' };
    const [a, b] = await Promise.all([
      client(transcript).createCharge(input, { idempotencyKey: key }),
      new Promise((resolve) => setTimeout(resolve, 100)).then(() =>
        client(transcript).createCharge(input, { idempotencyKey: key }),
      ),
    ]);
    expect(a.charge.id).toBe(b.charge.id);
    expect(await chargesFor(key)).toBe(1);
    expect(transcript.filter((record) => record.status === 409)).toHaveLength(0);
    expect([a.replayed, b.replayed].filter(Boolean)).toHaveLength(1);
  });
});

describe('when a key is reused with a changed body', () => {
  it('fails with 422 IDEMPOTENCY_KEY_REUSED and does not retry', async () => {
    const transcript: AttemptRecord[] = [];
    const key = `reused-${Date.now()}`;
    await client(transcript).createCharge(
      { amount: 100, currency: 'USD', source: 'tok_visa' },
      { idempotencyKey: key },
    );
    transcript.length = 0;
    const failure = client(transcript).createCharge(
      { amount: 101, currency: 'USD', source: 'tok_visa' },
      { idempotencyKey: key },
    );
    await expect(failure).rejects.toBeInstanceOf(ClientRequestError);
    await expect(failure).rejects.toMatchObject({ code: 'IDEMPOTENCY_KEY_REUSED', status: 422 });
    expect(transcript).toHaveLength(1);
    expect(transcript[0]).toMatchObject({ status: 422, reason: 'IDEMPOTENCY_KEY_REUSED', attempt: 1 });
  });
});

describe('when the response is lost after the charge committed', () => {
  it('retries with the same key and receives the replay: one charge', async () => {
    const transcript: AttemptRecord[] = [];
    const key = `lost-${Date.now()}`;
    const dropsBefore = proxy.stats.droppedResponses;
    proxy.dropResponses(1);
    const outcome = await client(transcript).createCharge(
      { amount: 999, currency: 'USD', source: 'tok_visa' },
      { idempotencyKey: key },
    );
    expect(proxy.stats.droppedResponses).toBe(dropsBefore + 1);
    expect(transcript[0]).toMatchObject({ status: 'network-error', attempt: 1 });
    expect(outcome.replayed).toBe(true);
    expect(outcome.attempts).toBe(2);
    expect(await chargesFor(key)).toBe(1);
  });
});

describe('the Apollo link', () => {
  const mutation = gql`
    mutation Pay($input: CreateChargeInput!) {
      createCharge(input: $input) {
        id
        status
      }
    }
  `;

  it('keeps the key from the operation context across double submits and a lost response', async () => {
    const transcript: AttemptRecord[] = [];
    const apollo = new ApolloClient({
      link: createGatewayLink({
        uri: `${proxy.url}/graphql`,
        headers: () => ({ authorization: `Bearer ${gateway.apiKey}` }),
        transcript: (record) => transcript.push(record),
        retry: { baseMs: 20, capMs: 200 },
      }),
      cache: new InMemoryCache(),
    });
    const key = `link-${Date.now()}`;
    const variables = { input: { amount: 1500, currency: 'GBP', source: 'tok_visa' } };
    proxy.dropResponses(1);
    const first = await apollo.mutate({ mutation, variables, context: { idempotencyKey: key } });
    const second = await apollo.mutate({ mutation, variables, context: { idempotencyKey: key } });
    expect((first.data as { createCharge: { id: string } }).createCharge.id).toBe(
      (second.data as { createCharge: { id: string } }).createCharge.id,
    );
    expect(new Set(transcript.map((record) => record.key))).toEqual(new Set([key]));
    expect(await chargesFor(key)).toBe(1);
  });

  it('makes a new key per mutation when the context has none', async () => {
    const transcript: AttemptRecord[] = [];
    const apollo = new ApolloClient({
      link: createGatewayLink({
        uri: `${gateway.url}/graphql`,
        headers: () => ({ authorization: `Bearer ${gateway.apiKey}` }),
        transcript: (record) => transcript.push(record),
      }),
      cache: new InMemoryCache(),
    });
    const variables = { input: { amount: 10, currency: 'GBP', source: 'tok_visa' } };
    await apollo.mutate({ mutation, variables });
    await apollo.mutate({ mutation, variables });
    expect(new Set(transcript.map((record) => record.key)).size).toBe(2);
    expect(transcript.every((record) => /^[0-9a-f-]{36}$/.test(record.key))).toBe(true);
  });

  it('sends the headers an auth link (setContext) puts in the operation context, with the generated document', async () => {
    const auth = new SetContextLink((context) => ({
      headers: { ...context.headers, authorization: `Bearer ${gateway.apiKey}` },
    }));
    // No `headers` option: without the context's headers the gateway would answer 401.
    const apollo = new ApolloClient({
      link: ApolloLink.from([auth, createGatewayLink({ uri: `${gateway.url}/graphql` })]),
      cache: new InMemoryCache(),
    });
    const key = `auth-link-${Date.now()}`;
    const result = await apollo.mutate({
      mutation: CreateChargeDocument,
      variables: { input: { amount: 2500, currency: 'EUR', source: 'tok_visa', metadata: { order: 'A-1' } } },
      context: { idempotencyKey: key },
    });
    expect(result.data?.createCharge).toMatchObject({ amount: 2500, currency: 'EUR', status: 'SUCCEEDED' });
    expect(result.data?.createCharge.metadata).toEqual({ order: 'A-1' });
    expect(await chargesFor(key)).toBe(1);
  });

  it('without the auth link the same mutation is refused with 401 and nothing is stored', async () => {
    const apollo = new ApolloClient({
      link: createGatewayLink({ uri: `${gateway.url}/graphql` }),
      cache: new InMemoryCache(),
    });
    const key = `no-auth-link-${Date.now()}`;
    await expect(
      apollo.mutate({
        mutation: CreateChargeDocument,
        variables: { input: { amount: 2500, currency: 'EUR', source: 'tok_visa' } },
        context: { idempotencyKey: key },
      }),
    ).rejects.toMatchObject({ status: 401 });
    expect(await chargesFor(key)).toBe(0);
  });
});

describe('the service client’s refund', () => {
  it('answers with every field the schema gives a refund, typed by the generated document', async () => {
    const sdk = client([]);
    const { charge } = await sdk.createCharge({ amount: 3000, currency: 'USD', source: 'tok_visa' });
    const { refund, replayed } = await sdk.refundCharge(
      { chargeId: charge.id, amount: 1000, reason: 'damaged' },
      { idempotencyKey: `refund-${Date.now()}` },
    );
    expect(replayed).toBe(false);
    expect(refund).toMatchObject({ chargeId: charge.id, amount: 1000, currency: 'USD', reason: 'damaged' });
    expect(refund).toHaveProperty('failureCode');
    expect(['SUCCEEDED', 'FAILED']).toContain(refund.status);
  });
});

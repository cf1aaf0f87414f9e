/** Plain HTTP calls to the gateway, returning status, headers and the parsed body. */
import { expect } from 'vitest';

export interface GraphqlAnswer<Data = Record<string, unknown>> {
  readonly status: number;
  readonly headers: Headers;
  readonly body: {
    data?: Data | null;
    errors?: { message: string; extensions?: { code?: string; field?: string } }[];
    extensions?: { idempotency?: { key: string; replayed: boolean; firstRequestAt: string | null } };
  };
  readonly text: string;
}

export async function postGraphql<Data = Record<string, unknown>>(
  url: string,
  body: { query: string; variables?: Record<string, unknown> },
  headers: Record<string, string> = {},
): Promise<GraphqlAnswer<Data>> {
  const response = await fetch(`${url}/graphql`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: JSON.stringify(body),
  });
  const text = await response.text();
  return {
    status: response.status,
    headers: response.headers,
    body: JSON.parse(text) as GraphqlAnswer<Data>['body'],
    text,
  };
}

export const chargeSelection = 'id amount currency status failureCode description metadata createdAt';

export const createChargeMutation = (selection = chargeSelection) =>
  `mutation CreateCharge($input: CreateChargeInput!) { createCharge(input: $input) { ${selection} } }`;

export interface ChargeInputForTest {
  amount: number;
  currency: string;
  source: string;
  description?: string | null;
  metadata?: unknown;
}

export function createCharge(
  url: string,
  apiKey: string,
  key: string | undefined,
  input: ChargeInputForTest,
  options: { selection?: string; headers?: Record<string, string> } = {},
): Promise<GraphqlAnswer<{ createCharge: Record<string, unknown> | null }>> {
  return postGraphql(
    url,
    { query: createChargeMutation(options.selection), variables: { input } },
    {
      authorization: `Bearer ${apiKey}`,
      ...(key === undefined ? {} : { 'idempotency-key': key }),
      ...options.headers,
    },
  );
}

const refundChargeMutation =
  'mutation R($input: RefundChargeInput!) { refundCharge(input: $input) { id status amount } }';

/** refundCharge over HTTP with the target's API key and the given Idempotency-Key. */
export function refundCharge(
  target: { url: string; apiKey: string },
  key: string,
  input: Record<string, unknown>,
): Promise<GraphqlAnswer<{ refundCharge: Record<string, unknown> | null }>> {
  return postGraphql(
    target.url,
    { query: refundChargeMutation, variables: { input } },
    { authorization: `Bearer ${target.apiKey}`, 'idempotency-key': key },
  );
}

/** Checks a 503 TRANSIENT_FAILURE that says when to retry; returns its Retry-After in seconds. */
export function expectTransientFailure<Data>(answer: GraphqlAnswer<Data>): number {
  expect(answer.status).toBe(503);
  expect(answer.body.errors?.[0]?.extensions?.code).toBe('TRANSIENT_FAILURE');
  const retryAfterSeconds = Number(answer.headers.get('retry-after'));
  expect(retryAfterSeconds).toBeGreaterThanOrEqual(1);
  return retryAfterSeconds;
}

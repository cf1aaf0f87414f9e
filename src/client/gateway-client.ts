/**
 * The service SDK: createCharge and refundCharge over fetch, each one logical operation with one
 * Idempotency-Key (a new UUID v4 unless the caller passes its own), retried by sendWithRetries.
 *
 *   const client = new GatewayClient({ url: 'http://localhost:4000/graphql', apiKey });
 *   const { charge, replayed } = await client.createCharge({ amount: 1999, currency: 'USD', source: 'tok_visa' });
 */
import { defaultRetryBudget, sendWithRetries, ClientRequestError, type TransportOptions } from './retrying-transport';
import type { RetryBudget } from '../retry/token-bucket';

export interface ChargeInput {
  readonly amount: number;
  readonly currency: string;
  readonly source: string;
  readonly description?: string | null;
  readonly metadata?: Record<string, string | number | boolean | null> | null;
}

export interface RefundInput {
  readonly chargeId: string;
  readonly amount?: number | null;
  readonly reason?: string | null;
}

export interface Charge {
  readonly id: string;
  readonly amount: number;
  readonly currency: string;
  readonly status: 'SUCCEEDED' | 'FAILED';
  readonly failureCode: string | null;
  readonly description: string | null;
  readonly metadata: Record<string, unknown> | null;
  readonly createdAt: string;
}

export interface Refund {
  readonly id: string;
  readonly chargeId: string;
  readonly amount: number;
  readonly currency: string;
  readonly status: 'SUCCEEDED' | 'FAILED';
  readonly createdAt: string;
}

export interface OperationOptions {
  /** Your own key for this logical operation; keep it across your own retries. */
  readonly idempotencyKey?: string;
  /** The retry budget's bucket; defaults to the operation's name. */
  readonly callSite?: string;
}

export interface KeyedOutcome<T> {
  readonly result: T;
  readonly idempotencyKey: string;
  readonly replayed: boolean;
  readonly attempts: number;
}

export interface GatewayClientOptions extends TransportOptions {
  /** The GraphQL endpoint, e.g. http://localhost:4000/graphql. */
  readonly url: string;
  readonly apiKey: string;
}

const chargeFields = 'id amount currency status failureCode description metadata createdAt';
const refundFields = 'id chargeId amount currency status createdAt';

export class GatewayClient {
  private readonly budget: RetryBudget;

  constructor(private readonly options: GatewayClientOptions) {
    this.budget = options.budget ?? defaultRetryBudget();
  }

  async createCharge(
    input: ChargeInput,
    options: OperationOptions = {},
  ): Promise<KeyedOutcome<Charge> & { charge: Charge }> {
    const outcome = await this.mutate<Charge>(
      'createCharge',
      `mutation CreateCharge($input: CreateChargeInput!) { createCharge(input: $input) { ${chargeFields} } }`,
      input,
      options,
    );
    return { ...outcome, charge: outcome.result };
  }

  async refundCharge(
    input: RefundInput,
    options: OperationOptions = {},
  ): Promise<KeyedOutcome<Refund> & { refund: Refund }> {
    const outcome = await this.mutate<Refund>(
      'refundCharge',
      `mutation RefundCharge($input: RefundChargeInput!) { refundCharge(input: $input) { ${refundFields} } }`,
      input,
      options,
    );
    return { ...outcome, refund: outcome.result };
  }

  private async mutate<T>(
    field: string,
    query: string,
    input: object,
    options: OperationOptions,
  ): Promise<KeyedOutcome<T>> {
    const idempotencyKey = options.idempotencyKey ?? crypto.randomUUID();
    const answer = await sendWithRetries(
      {
        url: this.options.url,
        headers: { authorization: `Bearer ${this.options.apiKey}` },
        body: JSON.stringify({ query, variables: { input } }),
        idempotencyKey,
        callSite: options.callSite ?? field,
      },
      { ...this.options, budget: this.budget },
    );
    const result = answer.body.data?.[field] as T | undefined;
    if (result === undefined || result === null) {
      throw new ClientRequestError(
        'EMPTY_RESPONSE',
        answer.status,
        `${field} returned no data`,
        idempotencyKey,
        answer.attempts,
      );
    }
    return { result, idempotencyKey, replayed: answer.replayed, attempts: answer.attempts };
  }
}

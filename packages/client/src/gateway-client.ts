/**
 * The service SDK: createCharge and refundCharge over fetch, each one logical operation with one
 * Idempotency-Key (a new UUID v4 unless the caller passes its own), retried by sendWithRetries.
 * The documents and every type here are generated from the gateway's schema.graphql
 * (src/generated/graphql.ts), so they cannot drift from it.
 *
 *   const client = new GatewayClient({ url: 'http://localhost:4000/graphql', apiKey });
 *   const { charge, replayed } = await client.createCharge({ amount: 1999, currency: 'USD', source: 'tok_visa' });
 */
import type { TypedDocumentNode } from '@graphql-typed-document-node/core';
import { print } from 'graphql';
import type { RetryBudget } from '@payments-gateway/retry';
import {
  CreateChargeDocument,
  RefundChargeDocument,
  type ChargeFieldsFragment,
  type CreateChargeInput,
  type RefundChargeInput,
  type RefundFieldsFragment,
} from './generated/graphql.js';
import {
  defaultRetryBudget,
  sendWithRetries,
  ClientRequestError,
  type TransportOptions,
} from './retrying-transport.js';

/** A charge as the SDK selects it (the ChargeFields fragment). */
export type Charge = ChargeFieldsFragment;
/** A refund as the SDK selects it (the RefundFields fragment). */
export type Refund = RefundFieldsFragment;
export type ChargeInput = CreateChargeInput;
export type RefundInput = RefundChargeInput;

export interface OperationOptions {
  /** Your own key for this logical operation; keep it across your own retries. */
  readonly idempotencyKey?: string;
  /** The retry budget's bucket; defaults to the operation's name. */
  readonly callSite?: string;
  /** Stops the operation: the attempt in flight is aborted and no other is made. */
  readonly signal?: AbortSignal;
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

/** A keyed mutation the SDK sends: its generated document, printed once, and its result field. */
interface KeyedMutation<Data, Input, Field extends keyof Data & string> {
  readonly document: TypedDocumentNode<Data, { input: Input }>;
  readonly query: string;
  readonly field: Field;
}

function keyedMutation<Data, Input, Field extends keyof Data & string>(
  document: TypedDocumentNode<Data, { input: Input }>,
  field: Field,
): KeyedMutation<Data, Input, Field> {
  return { document, query: print(document), field };
}

const createChargeMutation = keyedMutation(CreateChargeDocument, 'createCharge');
const refundChargeMutation = keyedMutation(RefundChargeDocument, 'refundCharge');

export class GatewayClient {
  private readonly budget: RetryBudget;

  constructor(private readonly options: GatewayClientOptions) {
    this.budget = options.budget ?? defaultRetryBudget();
  }

  async createCharge(
    input: ChargeInput,
    options: OperationOptions = {},
  ): Promise<KeyedOutcome<Charge> & { charge: Charge }> {
    const outcome = await this.mutate(createChargeMutation, input, options);
    return { ...outcome, charge: outcome.result };
  }

  async refundCharge(
    input: RefundInput,
    options: OperationOptions = {},
  ): Promise<KeyedOutcome<Refund> & { refund: Refund }> {
    const outcome = await this.mutate(refundChargeMutation, input, options);
    return { ...outcome, refund: outcome.result };
  }

  private async mutate<Data, Input, Field extends keyof Data & string>(
    { query, field }: KeyedMutation<Data, Input, Field>,
    input: Input,
    options: OperationOptions,
  ): Promise<KeyedOutcome<Data[Field]>> {
    const idempotencyKey = options.idempotencyKey ?? crypto.randomUUID();
    const answer = await sendWithRetries(
      {
        url: this.options.url,
        headers: { authorization: `Bearer ${this.options.apiKey}` },
        body: JSON.stringify({ query, variables: { input } }),
        idempotencyKey,
        callSite: options.callSite ?? field,
        ...(options.signal === undefined ? {} : { signal: options.signal }),
      },
      { ...this.options, budget: this.budget },
    );
    // The generated type, not a guess: the gateway validated this selection against the schema
    // the document was generated from (a test fails when the two differ).
    const result = answer.body.data?.[field] as Data[Field] | undefined;
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

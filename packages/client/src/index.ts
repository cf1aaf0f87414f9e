/**
 * The gateway's client SDK for services (`@payments-gateway/client`): GatewayClient over fetch,
 * the retry loop it shares with the Apollo link, and the typed documents and types generated
 * from schema.graphql. It depends only on graphql and the pure retry package; the Apollo link is
 * the `@payments-gateway/client/apollo` entry, so a service never loads @apollo/client.
 */
export { GatewayClient } from './gateway-client.js';
export type {
  Charge,
  ChargeInput,
  GatewayClientOptions,
  KeyedOutcome,
  OperationOptions,
  Refund,
  RefundInput,
} from './gateway-client.js';
export {
  ClientRequestError,
  RetryBudgetExhaustedError,
  defaultRetryBudget,
  defaultRetryOptions,
  parseGraphqlBody,
  sendWithRetries,
} from './retrying-transport.js';
export type {
  AttemptRecord,
  GraphqlHttpBody,
  IdempotencyExtension,
  KeyedRequest,
  RetryOptions,
  TransportAnswer,
  TransportOptions,
} from './retrying-transport.js';
export {
  ChargeDocument,
  ChargeFieldsFragmentDoc,
  CreateChargeDocument,
  RefundChargeDocument,
  RefundFieldsFragmentDoc,
} from './generated/graphql.js';
export type {
  ChargeFieldsFragment,
  ChargeQuery,
  ChargeQueryVariables,
  ChargeStatus,
  CreateChargeInput,
  CreateChargeMutation,
  CreateChargeMutationVariables,
  RefundChargeInput,
  RefundChargeMutation,
  RefundChargeMutationVariables,
  RefundFieldsFragment,
  RefundStatus,
} from './generated/graphql.js';
export {
  MemoryTokenBucketStore,
  RetryBudget,
  fullJitterDelayMs,
  retryDelayMs,
  type TokenBucketStore,
} from '@payments-gateway/retry';

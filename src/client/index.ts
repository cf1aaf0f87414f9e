/**
 * The gateway's client SDK: importable on its own (it imports only the pure parts of src/retry,
 * graphql and, for the link, @apollo/client and rxjs).
 */
export { GatewayClient } from './gateway-client';
export type {
  Charge,
  ChargeInput,
  GatewayClientOptions,
  KeyedOutcome,
  OperationOptions,
  Refund,
  RefundInput,
} from './gateway-client';
export { createGatewayLink } from './apollo-link';
export type { GatewayLinkOptions } from './apollo-link';
export { ClientRequestError, RetryBudgetExhaustedError, defaultRetryOptions } from './retrying-transport';
export type { AttemptRecord, RetryOptions, TransportOptions } from './retrying-transport';
export { fullJitterDelayMs, retryDelayMs } from '../retry/backoff';
export { MemoryTokenBucketStore, RetryBudget } from '../retry/token-bucket';

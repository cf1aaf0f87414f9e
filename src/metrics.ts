/**
 * Every metric of a gateway process: the platform's registry plus each module's own metrics,
 * under the names the modules gave them. The services and the GraphQL context hold this object.
 */
import { acquirerMetrics, type AcquirerMetrics } from './acquirer/metrics';
import { apiMetrics, type ApiMetrics } from './graphql/metrics';
import { idempotencyMetrics, type IdempotencyMetrics } from './idempotency/metrics';
import { ledgerMetrics, type LedgerMetrics } from './ledger/metrics';
import { ledgerApplyCallSite } from './ledger/worker';
import { outboxMetrics, type OutboxMetrics } from './outbox/metrics';
import { relayPublishCallSite } from './outbox/relay';
import { MetricsRegistry } from './platform/metrics';
import { retryMetrics, type RetryMetrics } from './retry/metrics';

export type Metrics = MetricsRegistry &
  IdempotencyMetrics &
  ApiMetrics &
  AcquirerMetrics &
  LedgerMetrics &
  OutboxMetrics &
  RetryMetrics;

/** The call sites that spend the fleet-wide retry budget. */
export const retryCallSites = [ledgerApplyCallSite, relayPublishCallSite] as const;

export function createMetrics(role: string): Metrics {
  const registry = new MetricsRegistry(role);
  return Object.assign(
    registry,
    idempotencyMetrics(registry),
    apiMetrics(registry),
    acquirerMetrics(registry),
    ledgerMetrics(registry),
    outboxMetrics(registry),
    retryMetrics(registry, retryCallSites),
  );
}

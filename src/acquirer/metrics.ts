/** The acquirer's metrics. */
import type { MetricsRegistry } from '../platform/metrics';

export function acquirerMetrics(metrics: MetricsRegistry) {
  return {
    acquirerCalls: metrics.counter({
      name: 'acquirer_calls_total',
      help: 'Calls to the acquirer by result.',
      labelNames: ['result'],
    }),
  };
}

export type AcquirerMetrics = ReturnType<typeof acquirerMetrics>;

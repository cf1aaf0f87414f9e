/**
 * The API's metrics: request latency per operation field, the attempt number clients send, and
 * the replays answered before execution (src/graphql/replay-fast-path.ts).
 */
import type { MetricsRegistry } from '../platform/metrics';

export type AttemptBucket = '1' | '2' | '3' | '4+';

const attemptBuckets: readonly AttemptBucket[] = ['1', '2', '3', '4+'];

export function attemptBucket(header: string | undefined): AttemptBucket {
  const attempt = Number(header);
  if (!Number.isInteger(attempt) || attempt <= 1) return '1';
  if (attempt === 2) return '2';
  if (attempt === 3) return '3';
  return '4+';
}

export function apiMetrics(metrics: MetricsRegistry) {
  return {
    chargeRequestAttempts: metrics.counter({
      name: 'charge_request_attempts_total',
      help: 'Money-moving requests by the attempt number the client sent in Idempotency-Attempt.',
      labelNames: ['attempt'],
      zeros: attemptBuckets.map((attempt) => ({ attempt })),
    }),
    replaysBeforeExecution: metrics.counter({
      name: 'graphql_replays_before_execution_total',
      help: 'Keyed mutations replayed from Redis before GraphQL execution (no resolver ran), by field.',
      labelNames: ['field'],
      zeros: [{ field: 'createCharge' }, { field: 'refundCharge' }],
    }),
    httpRequestDuration: metrics.histogram({
      name: 'http_request_duration_seconds',
      help: 'GraphQL request latency by operation field and HTTP status.',
      labelNames: ['field', 'status'],
      buckets: [0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
    }),
  };
}

export type ApiMetrics = ReturnType<typeof apiMetrics>;

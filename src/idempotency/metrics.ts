/** The idempotency layer's metrics: how keys resolved, Redis fall-throughs, audit loss, the completer. */
import type { MetricsRegistry } from '../platform/metrics';
import type { IdempotencyOutcome } from './outcomes';

const idempotencyOutcomes: readonly IdempotencyOutcome[] = [
  'created',
  'resumed',
  'replayed',
  'in_progress',
  'mismatch',
  'missing',
  'released',
  'expired',
];

export function idempotencyMetrics(metrics: MetricsRegistry) {
  const idempotencyRequests = metrics.counter({
    name: 'idempotency_requests_total',
    help: 'Keyed mutations by how their idempotency key resolved.',
    labelNames: ['outcome'],
    zeros: idempotencyOutcomes.map((outcome) => ({ outcome })),
  });
  return {
    idempotencyRequests,
    countOutcome(outcome: IdempotencyOutcome): void {
      idempotencyRequests.inc({ outcome });
    },
    completerFinished: metrics.counter({
      name: 'idempotency_completer_finished_total',
      help: 'Keys whose holder died, finished or abandoned by the completer, by what was done.',
      labelNames: ['action'],
    }),
    redisFallthroughs: metrics.counter({
      name: 'idempotency_redis_fallthrough_total',
      help: 'Hot-path Redis commands that failed or timed out, so the decision fell through to Postgres.',
    }),
    redisForgedAnswers: metrics.counter({
      name: 'idempotency_redis_forged_total',
      help: 'Idempotency values in Redis whose signature did not verify: ignored, Postgres decided.',
    }),
    auditRowsLost: metrics.counter({
      name: 'idempotency_audit_rows_lost_total',
      help: 'Batched audit rows that could not be written (Postgres unavailable past the retry).',
    }),
  };
}

export type IdempotencyMetrics = ReturnType<typeof idempotencyMetrics>;

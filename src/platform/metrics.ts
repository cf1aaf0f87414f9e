/**
 * Prometheus metrics, one registry per process role set. Label values come from closed lists
 * only (outcomes, attempt buckets, operation names): never keys, ids or merchants.
 * Counters restart with their process; anything that must add up across crashes counts from
 * Postgres (DESIGN.md §11).
 */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { IdempotencyOutcome } from '../idempotency/outcomes';

export type AttemptBucket = '1' | '2' | '3' | '4+';

export function attemptBucket(header: string | undefined): AttemptBucket {
  const attempt = Number(header);
  if (!Number.isInteger(attempt) || attempt <= 1) return '1';
  if (attempt === 2) return '2';
  if (attempt === 3) return '3';
  return '4+';
}

export class Metrics {
  readonly registry = new Registry();

  readonly idempotencyRequests = new Counter({
    name: 'idempotency_requests_total',
    help: 'Keyed mutations by how their idempotency key resolved.',
    labelNames: ['outcome'] as const,
    registers: [this.registry],
  });

  readonly chargeRequestAttempts = new Counter({
    name: 'charge_request_attempts_total',
    help: 'Money-moving requests by the attempt number the client sent in Idempotency-Attempt.',
    labelNames: ['attempt'] as const,
    registers: [this.registry],
  });

  readonly httpRequestDuration = new Histogram({
    name: 'http_request_duration_seconds',
    help: 'GraphQL request latency by operation field and HTTP status.',
    labelNames: ['field', 'status'] as const,
    buckets: [0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
    registers: [this.registry],
  });

  readonly acquirerCalls = new Counter({
    name: 'acquirer_calls_total',
    help: 'Calls to the acquirer by result.',
    labelNames: ['result'] as const,
    registers: [this.registry],
  });

  readonly completerFinished = new Counter({
    name: 'idempotency_completer_finished_total',
    help: 'Keys whose holder died, finished or abandoned by the completer, by what was done.',
    labelNames: ['action'] as const,
    registers: [this.registry],
  });

  readonly redisFallthroughs = new Counter({
    name: 'idempotency_redis_fallthrough_total',
    help: 'Hot-path Redis commands that failed or timed out, so the decision fell through to Postgres.',
    registers: [this.registry],
  });

  readonly auditRowsLost = new Counter({
    name: 'idempotency_audit_rows_lost_total',
    help: 'Batched audit rows that could not be written (Postgres unavailable past the retry).',
    registers: [this.registry],
  });

  readonly ledgerEffectsApplied = new Counter({
    name: 'ledger_effects_applied_total',
    help: 'Events whose ledger transaction this process committed (charge.succeeded, refund.succeeded).',
    registers: [this.registry],
  });

  readonly ledgerEventsAcknowledged = new Counter({
    name: 'ledger_events_acknowledged_total',
    help: 'Events applied with no ledger effect (charge.failed): inbox row only.',
    registers: [this.registry],
  });

  readonly inboxDuplicates = new Counter({
    name: 'inbox_duplicates_total',
    help: 'Deliveries of an event already applied, by where they were caught.',
    labelNames: ['caught_by'] as const,
    registers: [this.registry],
  });

  readonly ledgerApplyAttempts = new Counter({
    name: 'ledger_apply_attempts_total',
    help: 'Calls to the ledger call site (ledger.apply), first attempts and retries.',
    registers: [this.registry],
  });

  readonly deadLetters = new Counter({
    name: 'dead_letters_total',
    help: 'Jobs moved to the dead-letter queue: final (poison) at once, or exhausted after N attempts.',
    labelNames: ['reason'] as const,
    registers: [this.registry],
  });

  readonly retryBudgetDelays = new Counter({
    name: 'retry_budget_exhausted_total',
    help: 'Retries held back because the call site’s retry budget was empty.',
    labelNames: ['call_site'] as const,
    registers: [this.registry],
  });

  readonly ledgerJobsHeld = new Counter({
    name: 'ledger_jobs_held_total',
    help: 'Ledger jobs delayed without spending an attempt, by why: infrastructure down, a refund waiting for its charge, or a held call site.',
    labelNames: ['reason'] as const,
    registers: [this.registry],
  });

  readonly doneMarkersRejected = new Counter({
    name: 'ledger_done_markers_rejected_total',
    help: 'Redis done markers that failed signature verification and were ignored (the inbox decided).',
    registers: [this.registry],
  });

  readonly outboxRepublished = new Counter({
    name: 'outbox_republished_total',
    help: 'Outbox events published again because they were published but never applied, by reason.',
    labelNames: ['reason'] as const,
    registers: [this.registry],
  });

  readonly relayPublished = new Counter({
    name: 'relay_published_events_total',
    help: 'Outbox events this relay published to the queue (rate() is the publish rate).',
    registers: [this.registry],
  });

  readonly relayPublishFailures = new Counter({
    name: 'relay_publish_failures_total',
    help: 'Relay publish rounds that failed and were retried.',
    registers: [this.registry],
  });

  /** Gauges whose value is read at scrape time (from Postgres, BullMQ or a token bucket). */
  addGauge(name: string, help: string, labelNames: readonly string[], read: (gauge: Gauge) => Promise<void>): void {
    new Gauge({
      name,
      help,
      labelNames: [...labelNames],
      registers: [this.registry],
      async collect() {
        try {
          await read(this);
        } catch {
          // A scrape must not fail because one source is down; the gauge keeps its last value.
        }
      },
    });
  }

  constructor(role: string) {
    this.registry.setDefaultLabels({ role });
    collectDefaultMetrics({ register: this.registry });
    // These three are gauges named like counters; promtool (and Prometheus naming) rejects that.
    for (const misnamed of [
      'nodejs_active_handles_total',
      'nodejs_active_requests_total',
      'nodejs_active_resources_total',
    ]) {
      this.registry.removeSingleMetric(misnamed);
    }
    // Every outcome appears from the start, so dashboards and rate() see zeros, not gaps.
    for (const outcome of idempotencyOutcomes) this.idempotencyRequests.inc({ outcome }, 0);
    for (const attempt of ['1', '2', '3', '4+']) this.chargeRequestAttempts.inc({ attempt }, 0);
    for (const reason of ['final', 'exhausted']) this.deadLetters.inc({ reason }, 0);
    for (const caughtBy of ['redis_marker', 'inbox_row']) this.inboxDuplicates.inc({ caught_by: caughtBy }, 0);
    for (const callSite of ['ledger.apply', 'relay.publish']) this.retryBudgetDelays.inc({ call_site: callSite }, 0);
    for (const reason of ['infrastructure', 'order', 'budget']) this.ledgerJobsHeld.inc({ reason }, 0);
    this.outboxRepublished.inc({ reason: 'unapplied_after_grace' }, 0);
  }

  countOutcome(outcome: IdempotencyOutcome): void {
    this.idempotencyRequests.inc({ outcome });
  }
}

const idempotencyOutcomes: readonly IdempotencyOutcome[] = [
  'created',
  'resumed',
  'replayed',
  'in_progress',
  'mismatch',
  'missing',
  'released',
];

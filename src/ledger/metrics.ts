/** The ledger consumer's metrics: effects, acknowledgements, duplicates caught, attempts, dead letters. */
import type { MetricsRegistry } from '../platform/metrics';

export function ledgerMetrics(metrics: MetricsRegistry) {
  return {
    ledgerEffectsApplied: metrics.counter({
      name: 'ledger_effects_applied_total',
      help: 'Events whose ledger transaction this process committed (charge.succeeded, refund.succeeded).',
    }),
    ledgerEventsAcknowledged: metrics.counter({
      name: 'ledger_events_acknowledged_total',
      help: 'Events applied with no ledger effect (charge.failed): inbox row only.',
    }),
    inboxDuplicates: metrics.counter({
      name: 'inbox_duplicates_total',
      help: 'Deliveries of an event already applied, by where they were caught.',
      labelNames: ['caught_by'],
      zeros: [{ caught_by: 'redis_marker' }, { caught_by: 'inbox_row' }],
    }),
    ledgerApplyAttempts: metrics.counter({
      name: 'ledger_apply_attempts_total',
      help: 'Calls to the ledger call site (ledger.apply), first attempts and retries.',
    }),
    deadLetters: metrics.counter({
      name: 'dead_letters_total',
      help: 'Jobs moved to the dead-letter queue: final (poison) at once, or exhausted after N attempts.',
      labelNames: ['reason'],
      zeros: [{ reason: 'final' }, { reason: 'exhausted' }],
    }),
    ledgerJobsHeld: metrics.counter({
      name: 'ledger_jobs_held_total',
      help: 'Ledger jobs delayed without spending an attempt: infrastructure down, a refund waiting for its charge, or a held call site.',
      labelNames: ['reason'],
      zeros: [{ reason: 'infrastructure' }, { reason: 'order' }, { reason: 'budget' }],
    }),
    doneMarkersRejected: metrics.counter({
      name: 'ledger_done_markers_rejected_total',
      help: 'Redis done markers that failed signature verification and were ignored (the inbox decided).',
    }),
  };
}

export type LedgerMetrics = ReturnType<typeof ledgerMetrics>;

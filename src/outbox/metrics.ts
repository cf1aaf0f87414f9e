/** The outbox's metrics: what the relay published, and the backlog and queue read at scrape time. */
import type { Queue } from 'bullmq';
import type { Database } from '../platform/database';
import type { MetricsRegistry } from '../platform/metrics';
import type { LedgerJobData } from './queue';

export function outboxMetrics(metrics: MetricsRegistry) {
  return {
    relayPublished: metrics.counter({
      name: 'relay_published_events_total',
      help: 'Outbox events this relay published to the queue (rate() is the publish rate).',
    }),
    relayPublishFailures: metrics.counter({
      name: 'relay_publish_failures_total',
      help: 'Relay publish rounds that failed and were retried.',
    }),
    outboxRepublished: metrics.counter({
      name: 'outbox_republished_total',
      help: 'Outbox events published again because they were published but never applied, by reason.',
      labelNames: ['reason'],
      zeros: [{ reason: 'unapplied_after_grace' }],
    }),
  };
}

export type OutboxMetrics = ReturnType<typeof outboxMetrics>;

/** outbox_backlog_events and outbox_lag_seconds, read from Postgres at scrape time. */
export function addOutboxGauges(metrics: MetricsRegistry, db: Database): void {
  const read = async () => {
    const rows = await db.$queryRaw<{ backlog: number; lag: number }[]>`
      SELECT count(*)::int AS backlog,
             coalesce(extract(epoch FROM now() - min(created_at)), 0)::float8 AS lag
        FROM outbox_events WHERE published_at IS NULL`;
    return rows[0] ?? { backlog: 0, lag: 0 };
  };
  metrics.addGauge('outbox_backlog_events', 'Outbox events not yet published.', [], async (gauge) => {
    gauge.set((await read()).backlog);
  });
  metrics.addGauge(
    'outbox_lag_seconds',
    'Age of the oldest unpublished outbox event (0 when none).',
    [],
    async (gauge) => {
      gauge.set((await read()).lag);
    },
  );
}

/** ledger_queue_jobs: the ledger queue's jobs by state, read from BullMQ at scrape time. */
export function addLedgerQueueGauge(
  metrics: MetricsRegistry,
  ledgerQueue: Pick<Queue<LedgerJobData>, 'getJobCounts'>,
): void {
  metrics.addGauge('ledger_queue_jobs', 'Jobs in the ledger queue by state.', ['state'], async (gauge) => {
    const counts = await ledgerQueue.getJobCounts('waiting', 'active', 'delayed', 'failed', 'completed');
    for (const [state, count] of Object.entries(counts)) gauge.set({ state }, count);
  });
}

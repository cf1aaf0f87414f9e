/**
 * The Prometheus registry of one process, with its role as a default label. The metrics
 * themselves belong to the modules that count them (idempotency/metrics.ts, ledger/metrics.ts,
 * …); this file knows nothing of the domain. Label values come from closed lists only (outcomes,
 * attempt buckets, operation names): never keys, ids or merchants. Counters restart with their
 * process; anything that must add up across crashes counts from Postgres (docs/contract.md §11).
 */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

export interface CounterOptions<Label extends string> {
  readonly name: string;
  readonly help: string;
  readonly labelNames?: readonly Label[];
  /**
   * Label sets to show at zero from the start, so dashboards and rate() see zeros, not gaps.
   * Only for closed lists of values.
   */
  readonly zeros?: readonly Partial<Record<Label, string>>[];
}

export class MetricsRegistry {
  readonly registry = new Registry();

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
  }

  counter<Label extends string = never>(options: CounterOptions<Label>): Counter<Label> {
    const counter = new Counter<Label>({
      name: options.name,
      help: options.help,
      labelNames: [...(options.labelNames ?? [])],
      registers: [this.registry],
    });
    for (const labels of options.zeros ?? []) counter.inc(labels, 0);
    return counter;
  }

  histogram<Label extends string>(options: {
    readonly name: string;
    readonly help: string;
    readonly labelNames: readonly Label[];
    readonly buckets: readonly number[];
  }): Histogram<Label> {
    return new Histogram<Label>({
      name: options.name,
      help: options.help,
      labelNames: [...options.labelNames],
      buckets: [...options.buckets],
      registers: [this.registry],
    });
  }

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
}

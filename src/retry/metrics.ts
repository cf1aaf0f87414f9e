/** The retry budget's metrics: retries held back, and the tokens left per call site. */
import type { MetricsRegistry } from '../platform/metrics';
import type { RetryBudget } from '@payments-gateway/retry';

export function retryMetrics(metrics: MetricsRegistry, callSites: readonly string[]) {
  return {
    retryBudgetDelays: metrics.counter({
      name: 'retry_budget_exhausted_total',
      help: 'Retries held back because the call site’s retry budget was empty.',
      labelNames: ['call_site'],
      zeros: callSites.map((callSite) => ({ call_site: callSite })),
    }),
  };
}

export type RetryMetrics = ReturnType<typeof retryMetrics>;

/** retry_budget_tokens: the tokens left in the fleet-wide budget, read at scrape time. */
export function addRetryBudgetGauge(metrics: MetricsRegistry, retryBudget: RetryBudget, callSites: readonly string[]) {
  metrics.addGauge(
    'retry_budget_tokens',
    'Tokens left in the fleet-wide retry budget, per call site.',
    ['call_site'],
    async (gauge) => {
      for (const callSite of callSites) gauge.set({ call_site: callSite }, await retryBudget.tokens(callSite));
    },
  );
}

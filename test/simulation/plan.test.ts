/**
 * A seed names its schedule: the plan (workload and fault timeline) is drawn from the seed alone,
 * so a failing seed printed by `npm run simulate` is a reproduction.
 */
import { describe, expect, it } from 'vitest';
import { faultKinds, planSchedule, type PlanOptions } from '../../scripts/simulation/plan';

const options = (seed: number): PlanOptions => ({
  seed,
  operations: 200,
  windowMs: 600_000,
  faultsPerMinute: 30,
  lockTimeoutMs: 500,
});

describe('a simulation plan', () => {
  it('is the same for the same seed, and another for another seed', () => {
    expect(JSON.stringify(planSchedule(options(42)))).toBe(JSON.stringify(planSchedule(options(42))));
    expect(JSON.stringify(planSchedule(options(43)).operations)).not.toBe(
      JSON.stringify(planSchedule(options(42)).operations),
    );
  });

  it('draws every kind of operation, delivery and fault over a long schedule', () => {
    const plan = planSchedule(options(7));
    const operations = plan.operations;
    expect(operations).toHaveLength(200);
    expect(new Set(operations.map((operation) => operation.kind))).toEqual(new Set(['charge', 'refund', 'invalid']));
    expect(new Set(operations.map((operation) => operation.delivery))).toEqual(
      new Set(['single', 'duplicate', 'concurrent', 'abandon']),
    );
    expect(operations.some((operation) => operation.kind === 'refund' && operation.group !== null)).toBe(true);
    expect(operations.some((operation) => operation.kind === 'charge' && operation.reuseInputJson !== null)).toBe(true);
    expect(new Set(plan.faults.map((fault) => fault.kind))).toEqual(new Set(faultKinds));
  });

  it('gives every operation its own key, and refunds start no earlier than their charge', () => {
    const plan = planSchedule(options(11));
    expect(new Set(plan.operations.map((operation) => operation.key)).size).toBe(plan.operations.length);
    for (const operation of plan.operations) {
      if (operation.kind !== 'refund') continue;
      expect(operation.startMs).toBeGreaterThanOrEqual(plan.operations[operation.chargeOperation]!.startMs);
    }
  });

  it('never overlaps two faults on one resource', () => {
    const plan = planSchedule(options(5));
    const postgresStops = plan.faults.filter((fault) => fault.kind === 'postgres-stop');
    for (const [index, stop] of postgresStops.entries()) {
      const next = postgresStops[index + 1];
      if (next !== undefined && stop.kind === 'postgres-stop')
        expect(next.atMs).toBeGreaterThan(stop.atMs + stop.downMs);
    }
  });
});

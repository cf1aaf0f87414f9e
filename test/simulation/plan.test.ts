/**
 * A seed names its schedule: the plan (workload and fault timeline) is drawn from the seed alone,
 * so a failing seed printed by `npm run simulate` is a reproduction.
 */
import { describe, expect, it } from 'vitest';
import { isStorableText } from '../../src/charges/validation';
import { faultKinds, lockedTables, planSchedule, type PlanOptions } from '../../scripts/simulation/plan';

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
    const reuses = operations.flatMap((operation) => (operation.kind === 'charge' ? [operation.reuse?.when] : []));
    expect(reuses).toContain('after');
    expect(reuses).toContain('during');
    expect(operations.some((operation) => operation.delivery === 'abandon' && !operation.comesBack)).toBe(true);
    expect(operations.some((operation) => operation.delivery === 'abandon' && operation.comesBack)).toBe(true);
  });

  it('draws every invalid input and locks every table the gateway waits on, over a longer schedule', () => {
    const plan = planSchedule({ ...options(8), operations: 600, windowMs: 1_800_000 });
    const invalid = new Set(
      plan.operations.flatMap((operation) => (operation.kind === 'invalid' ? [operation.what] : [])),
    );
    expect([...invalid].sort()).toEqual(
      [
        'description-too-long',
        'lone-surrogate-in-description',
        'metadata-key-too-long',
        'metadata-value-too-long',
        'nul-in-description',
        'nul-in-metadata-key',
        'nul-in-refund-reason',
        'refund-reason-too-long',
        'unsafe-integer-in-metadata',
      ].sort(),
    );
    const locked = new Set(plan.faults.flatMap((fault) => (fault.kind === 'lock' ? [fault.table] : [])));
    expect([...locked].sort()).toEqual([...lockedTables].sort());
  });

  it('starts the refunds of one concurrent group at the same moment', () => {
    const groups = new Map<number, Set<number>>();
    for (const operation of planSchedule(options(7)).operations) {
      if (operation.kind !== 'refund' || operation.group === null) continue;
      groups.set(operation.group, (groups.get(operation.group) ?? new Set()).add(operation.startMs));
    }
    expect(groups.size).toBeGreaterThan(0);
    for (const starts of groups.values()) expect(starts.size).toBe(1);
  });

  it('draws hostile text that is valid: no NUL, no lone surrogate, within the limits', () => {
    for (const operation of planSchedule(options(9)).operations) {
      if (operation.kind === 'invalid') continue;
      const input = JSON.parse(operation.inputJson) as Record<string, unknown>;
      const texts = [input.description, input.reason, ...Object.entries(input.metadata ?? {}).flat()].filter(
        (value): value is string => typeof value === 'string',
      );
      for (const text of texts) {
        expect(text.length).toBeLessThanOrEqual(500);
        expect(isStorableText(text), JSON.stringify(text)).toBe(true);
      }
      for (const key of Object.keys((input.metadata ?? {}) as object)) expect(key.length).toBeLessThanOrEqual(40);
    }
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

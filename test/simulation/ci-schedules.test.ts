/**
 * The simulator in every test run: a few short schedules with fixed seeds, plus one seed derived
 * from the date (printed), against the shipped build (dist/, which `npm run verify` builds before
 * the tests), each on a private Postgres cluster and a private redis-server with two api, two
 * relay and two worker processes. Any violated invariant fails the run and prints the simulator's
 * report: the seed, the command that runs it again, the timeline, the offending rows and the
 * transcripts involved (also written to test-artifacts/).
 *
 * Sized to finish in well under six minutes on a two-core machine while the rest of the suite
 * runs beside it; the long run is `npm run simulate -- --schedules 50` (docs/proof.md).
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { formatPhases, runSimulation, type SimulationOptions } from '../../scripts/simulate';
import { planSchedule } from '../../scripts/simulation/plan';

/**
 * Between them the fixed seeds plan every kind of fault: seed 1 kills, repeated kills, a held lock,
 * FLUSHALL, terminated backends and lost responses; seed 9 a Postgres stop, a Redis restart and a
 * freeze, kills, repeated kills and lost responses.
 */
const fixedSeeds = [1, 9];

/** A new schedule every day, the same all day (so a failure seen in CI can be run again): YYYYMMDD. */
export function seedOfTheDay(now = new Date()): number {
  return Number(now.toISOString().slice(0, 10).replaceAll('-', ''));
}

/**
 * Short schedules: 12 operations over 12 s with a fault every 1.3 s on average (about eight, of
 * four to six kinds), then at most 60 s for the system to settle. Typical: 50–80 s a schedule.
 */
const ciOptions: Omit<SimulationOptions, 'seeds' | 'log'> = {
  operations: 12,
  windowMs: 12_000,
  faultsPerMinute: 45,
  quietMs: 60_000,
};

const budgetMs = 360_000;

describe('the simulator in CI', () => {
  const seeds = [...fixedSeeds, seedOfTheDay()];

  it('plans several kinds of fault for each schedule it runs', () => {
    for (const seed of seeds) {
      const plan = planSchedule({ ...ciOptions, seed, lockTimeoutMs: 500 });
      const kinds = new Set(plan.faults.map((fault) => fault.kind));
      expect(kinds.size, `seed ${seed} plans ${[...kinds].join(', ')}`).toBeGreaterThanOrEqual(
        fixedSeeds.includes(seed) ? 5 : 2,
      );
    }
  });

  it(
    'finds no violation in short schedules with fixed seeds and the seed of the day',
    async () => {
      process.stdout.write(
        `simulation: seeds ${seeds.join(', ')} (${seeds.at(-1)} is the seed of the day); reproduce one with ` +
          `npm run simulate -- --seed <seed> --ops ${ciOptions.operations} --window-ms ${ciOptions.windowMs} ` +
          `--faults-per-minute ${ciOptions.faultsPerMinute} --quiet-ms ${ciOptions.quietMs}\n`,
      );
      const lines: string[] = [];
      const summary = await runSimulation({ ...ciOptions, seeds, log: (line) => lines.push(line) });
      process.stdout.write(
        `${summary.results
          .map(
            (result) =>
              `simulation: seed ${result.seed} ${result.violations.length === 0 ? 'ok' : 'FAILED'} in ${(result.durationMs / 1_000).toFixed(0)} s (${formatPhases(result.phasesMs)})`,
          )
          .join('\n')}\n${summary.text}\n`,
      );
      const reports = summary.results.map((result) => result.report).filter((report) => report !== '');
      if (reports.length > 0) {
        const artifact = path.join('test-artifacts', `simulation-ci-${seeds.join('-')}.txt`);
        mkdirSync(path.dirname(artifact), { recursive: true });
        writeFileSync(artifact, `${lines.join('\n')}\n\n${reports.join('\n\n')}\n`);
        process.stdout.write(`${reports.join('\n\n')}\n(also in ${artifact})\n`);
      }
      expect(reports.join('\n\n'), 'the simulator found violations (report above)').toBe('');
      expect(summary.ok).toBe(true);
      // Faults were injected, not only planned: the run was not a quiet one by accident.
      for (const result of summary.results) {
        expect([...result.faultsInjected.values()].reduce((sum, count) => sum + count, 0)).toBeGreaterThan(0);
      }
    },
    budgetMs,
  );
});

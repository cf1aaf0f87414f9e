/**
 * The simulator: `npm run simulate -- --seed <n> [--schedules K] [--ops N] [--window-ms W]`.
 *
 * Seeded, reproducible fault schedules against the real processes (in the spirit of TigerBeetle's
 * VOPR and of Jepsen): schedule i of a run has seed `seed + i`, and its workload and fault
 * timeline are drawn from that seed alone (scripts/simulation/plan.ts). Each schedule runs two
 * api (behind lossy proxies), two relay and two worker processes on a private Postgres cluster
 * and a private redis-server, then checks the invariants from the committed rows
 * (scripts/simulation/invariants.ts). It exits non-zero on any violation, after printing the seed,
 * the command that runs it again, the timeline, the offending rows and the transcripts involved.
 */
import { pathToFileURL } from 'node:url';
import { ensureBuilt } from './harness/built';
import { startPrivatePostgres } from './harness/private-postgres';
import { faultKinds, type FaultKind } from './simulation/plan';
import { runSchedule, type ScheduleResult } from './simulation/schedule';

export interface SimulationOptions {
  /** One schedule per seed; the CLI runs seed, seed + 1, … seed + schedules - 1. */
  readonly seeds: readonly number[];
  readonly operations: number;
  readonly windowMs: number;
  readonly faultsPerMinute: number;
  readonly quietMs: number;
  readonly log?: (line: string) => void;
}

export interface SimulationSummary {
  readonly results: readonly ScheduleResult[];
  readonly text: string;
  readonly ok: boolean;
}

export const defaultSimulationOptions: Omit<SimulationOptions, 'seeds'> = {
  operations: 40,
  windowMs: 20_000,
  faultsPerMinute: 36,
  quietMs: 90_000,
};

/** "start-up 12 s, faults 20 s, …": where a schedule's time went. */
export function formatPhases(phasesMs: Readonly<Record<string, number>>): string {
  return Object.entries(phasesMs)
    .map(([phase, ms]) => `${phase} ${(ms / 1_000).toFixed(0)} s`)
    .join(', ');
}

export function summarize(results: readonly ScheduleResult[]): string {
  const faults = new Map<FaultKind, number>();
  const answers = new Map<string, number>();
  for (const result of results) {
    for (const [kind, count] of result.faultsInjected) faults.set(kind, (faults.get(kind) ?? 0) + count);
    for (const [answer, count] of Object.entries(result.answers))
      answers.set(answer, (answers.get(answer) ?? 0) + count);
  }
  const operations = results.reduce((sum, result) => sum + result.plan.operations.length, 0);
  const violations = results.reduce((sum, result) => sum + result.violations.length, 0);
  const failing = results.filter((result) => result.violations.length > 0).map((result) => result.seed);
  return [
    `schedules            ${results.length} (seeds ${results.map((result) => result.seed).join(', ')})`,
    `operations           ${operations}`,
    `HTTP answers         ${[...answers]
      .sort((a, b) => b[1] - a[1])
      .map(([answer, count]) => `${answer}: ${count}`)
      .join(', ')}`,
    `faults injected      ${faultKinds.map((kind) => `${kind}: ${faults.get(kind) ?? 0}`).join(', ')}`,
    `violations           ${violations}${failing.length > 0 ? ` (seeds ${failing.join(', ')})` : ''}`,
    `time                 ${(results.reduce((sum, result) => sum + result.durationMs, 0) / 1_000).toFixed(0)} s`,
  ].join('\n');
}

export async function runSimulation(options: SimulationOptions): Promise<SimulationSummary> {
  const log = options.log ?? ((line: string) => process.stderr.write(`${line}\n`));
  log(`simulate: seeds ${options.seeds.join(', ')}; ${options.operations} operations each`);
  // The processes run the shipped build (node dist/main.js), as in production; rebuilt when a
  // source file is newer than it.
  ensureBuilt();
  const postgres = await startPrivatePostgres();
  const results: ScheduleResult[] = [];
  try {
    for (const seed of options.seeds) {
      const result = await runSchedule(postgres, { ...options, seed, log });
      results.push(result);
      log(
        `schedule ${result.seed}: ${result.violations.length === 0 ? 'ok' : `${result.violations.length} VIOLATIONS`} in ${(result.durationMs / 1_000).toFixed(0)} s (${formatPhases(result.phasesMs)})`,
      );
      if (result.report !== '') log(result.report);
    }
  } finally {
    await postgres.destroy();
  }
  return { results, text: summarize(results), ok: results.every((result) => result.violations.length === 0) };
}

function parseArguments(argv: readonly string[]): SimulationOptions {
  const value = (name: string): number | undefined => {
    const index = argv.indexOf(`--${name}`);
    if (index === -1) return undefined;
    const parsed = Number(argv[index + 1]);
    if (!Number.isSafeInteger(parsed) || parsed < 0) throw new Error(`--${name} needs a whole number`);
    return parsed;
  };
  const seed = value('seed') ?? Math.floor(Math.random() * 1_000_000);
  return {
    seeds: Array.from({ length: value('schedules') ?? 1 }, (_, index) => seed + index),
    operations: value('ops') ?? defaultSimulationOptions.operations,
    windowMs: value('window-ms') ?? defaultSimulationOptions.windowMs,
    faultsPerMinute: value('faults-per-minute') ?? defaultSimulationOptions.faultsPerMinute,
    quietMs: value('quiet-ms') ?? defaultSimulationOptions.quietMs,
  };
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  runSimulation(parseArguments(process.argv.slice(2))).then(
    (summary) => {
      process.stdout.write(`${summary.text}\n`);
      process.exit(summary.ok ? 0 : 1);
    },
    (error: unknown) => {
      process.stderr.write(`simulation could not run: ${error instanceof Error ? error.stack : String(error)}\n`);
      process.exit(2);
    },
  );
}

/**
 * One schedule, end to end: a fresh database on the run's private Postgres cluster and a fresh
 * private redis-server; six real gateway processes; the plan's workload and faults at once; then
 * the faults stop, everything is brought up, the clients that never got a final answer come back
 * once, and the system gets a bounded quiet period to settle before the invariants are checked.
 */
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { createMerchant } from '../../src/merchants/merchants';
import { openDatabase } from '../../src/platform/database';
import { gatewayRoleUrl } from '../../src/platform/database-role';
import type { PrivatePostgres } from '../harness/private-postgres';
import { startPrivateRedis } from '../harness/redis';
import { migrate } from '../../src/cli/migrate';
import { FaultInjector } from './faults';
import { Fleet } from './fleet';
import { checkOperations, checkReconciliation, checkRows, checkTranscripts, type Violation } from './invariants';
import { describeFault, planSchedule, type FaultKind, type Plan, type PlanOptions } from './plan';
import { formatOffset, Timeline } from './timeline';
import { finalAttempt, formatRecord, Workload, type OperationRecord } from './workload';

export interface ScheduleOptions extends Omit<PlanOptions, 'lockTimeoutMs'> {
  /** How long the system may take to settle after the faults stop. */
  readonly quietMs: number;
  readonly log: (line: string) => void;
}

export interface ScheduleResult {
  readonly seed: number;
  readonly plan: Plan;
  readonly faultsInjected: ReadonlyMap<FaultKind, number>;
  readonly answers: Readonly<Record<string, number>>;
  readonly violations: readonly Violation[];
  /** Every operation's transcript, for a report or a closer look (`--transcripts`). */
  readonly records: readonly OperationRecord[];
  /** Empty when no invariant was violated. */
  readonly report: string;
  readonly durationMs: number;
  /** Where the time went, in ms: start-up, faults, clients, settling, checks (a budget's breakdown). */
  readonly phasesMs: Readonly<Record<string, number>>;
}

/** The gateway's lock timeout in the simulation: short, so a held lock is felt quickly. */
const lockTimeoutMs = 500;
/** The idempotency lease: short, so a takeover and the completer happen within a schedule. */
const leaseMs = 3_000;

function fleetEnvironment(databaseUrl: string, redisUrl: string, adminToken: string): Record<string, string> {
  return {
    DATABASE_URL: databaseUrl,
    REDIS_URL: redisUrl,
    REDIS_KEY_PREFIX: 'sim',
    // The production configuration, as shipped; FAULTS hooks are not needed (faults come from outside).
    NODE_ENV: 'production',
    METRICS_PORT: '0',
    ACQUIRER: 'simulated',
    ACQUIRER_SIMULATED_IN_PRODUCTION: 'true',
    REDIS_ANSWER_SECRET: randomBytes(24).toString('hex'),
    ADMIN_TOKEN: adminToken,
    LOG_LEVEL: 'warn',
    DATABASE_POOL_SIZE_MAX: '5',
    DATABASE_LOCK_TIMEOUT_MS: String(lockTimeoutMs),
    DATABASE_STATEMENT_TIMEOUT_MS: '3000',
    IDEMPOTENCY_LEASE_MS: String(leaseMs),
    ACQUIRER_TIMEOUT_MS: '1000',
    RELAY_CLAIM_LEASE_MS: '2000',
    RELAY_RATE_PER_SECOND: '0',
    RELAY_POLL_INTERVAL_MS: '250',
    WORKER_LOCK_DURATION_MS: '3000',
    WORKER_BACKOFF_BASE_MS: '50',
    WORKER_BACKOFF_CAP_MS: '1000',
    // Short, so the quiet period is enough for the completer and the sweeper to act.
    COMPLETER_INTERVAL_MS: '500',
    COMPLETER_GRACE_MS: '1000',
    SWEEPER_INTERVAL_MS: '1000',
    SWEEPER_GRACE_MS: '3000',
    RECONCILIATION_GRACE_MS: '0',
    SHUTDOWN_GRACE_MS: '3000',
    MERCHANT_RATE_PER_SECOND: '1000000',
  };
}

async function waitToSettle(database: pg.Pool, quietMs: number): Promise<Record<string, number>> {
  const deadline = Date.now() + quietMs;
  for (;;) {
    const state = await database
      .query<Record<string, number>>(
        `SELECT (SELECT count(*) FROM outbox_events WHERE published_at IS NULL)::int AS unpublished,
                (SELECT count(*) FROM charges c WHERE status = 'SUCCEEDED' AND NOT EXISTS
                   (SELECT 1 FROM ledger_transactions t WHERE t.charge_id = c.id AND t.event_type = 'charge.succeeded'))::int AS unposted_charges,
                (SELECT count(*) FROM refunds r WHERE status = 'SUCCEEDED' AND NOT EXISTS
                   (SELECT 1 FROM ledger_transactions t WHERE t.refund_id = r.id))::int AS unposted_refunds,
                (SELECT count(*) FROM idempotency_keys WHERE state = 'IN_PROGRESS' AND recovery_point <> 'STARTED')::int AS holding_keys,
                (SELECT count(*) FROM charges WHERE amount_reserved <> 0)::int AS reservations,
                (SELECT count(*) FROM acquirer_authorizations a WHERE approved AND kind = 'charge' AND NOT EXISTS
                   (SELECT 1 FROM charges c WHERE c.authorization_id = a.authorization_id))::int AS unrecorded_authorizations`,
      )
      .then((result) => result.rows[0]!)
      .catch((error: unknown) => ({ error: String(error) }) as unknown as Record<string, number>);
    const settled = Object.values(state).every((value) => value === 0);
    if (settled || Date.now() > deadline) return state;
    await new Promise((resolve) => setTimeout(resolve, 500));
  }
}

function countAnswers(records: readonly OperationRecord[]): Record<string, number> {
  const answers: Record<string, number> = {};
  for (const attempt of records.flatMap((record) => record.sends.flatMap((send) => send.attempts))) {
    const label =
      typeof attempt.status === 'number'
        ? `${attempt.status}${attempt.status === 200 ? '' : ` ${attempt.code}`}`
        : attempt.status;
    answers[label] = (answers[label] ?? 0) + 1;
  }
  return answers;
}

export async function runSchedule(postgres: PrivatePostgres, options: ScheduleOptions): Promise<ScheduleResult> {
  const startedAt = Date.now();
  const plan = planSchedule({ ...options, lockTimeoutMs });
  const databaseName = `sim_${options.seed}_${randomBytes(3).toString('hex')}`;
  const databaseUrl = Object.assign(new URL(postgres.url), { pathname: `/${databaseName}` }).toString();
  const admin = new pg.Client({ connectionString: postgres.url });
  await admin.connect();
  await admin.query(`CREATE DATABASE ${databaseName}`);
  await admin.end();
  process.env.MIGRATE_QUIET = '1';
  migrate(databaseUrl);
  const handle = openDatabase({
    databaseUrl,
    databasePoolSizeMax: 1,
    databaseStatementTimeoutMs: 10_000,
    databaseLockTimeoutMs: 5_000,
  });
  const { merchant, apiKey } = await createMerchant(handle.prisma, `Simulation ${options.seed}`);
  await handle.close();

  const redis = await startPrivateRedis();
  const adminToken = randomBytes(16).toString('hex');
  const timeline = new Timeline(options.log);
  // The fleet connects as the gateway's least-privilege role, as shipped; the simulator's own
  // reads and plants use the owner.
  const fleet = new Fleet(fleetEnvironment(gatewayRoleUrl(databaseUrl), redis.url, adminToken), timeline);
  const database = new pg.Pool({ connectionString: databaseUrl, max: 2 });
  database.on('error', () => undefined);
  try {
    await fleet.start();
    await fleet.warmUp(apiKey);
    const phasesMs: Record<string, number> = { 'start-up': Date.now() - startedAt };
    let phaseStartedAt = Date.now();
    const endPhase = (phase: string) => {
      phasesMs[phase] = Date.now() - phaseStartedAt;
      phaseStartedAt = Date.now();
    };
    timeline.startClock(); // The plan's times count from here.
    const workload = new Workload({ apiKey, apiUrls: [fleet.apiUrl(0), fleet.apiUrl(1)], timeline });
    const injector = new FaultInjector({ postgres, databaseUrl, databaseName, redis, fleet, timeline });
    options.log(
      `schedule ${options.seed}: ${plan.operations.length} operations, ${plan.faults.length} faults over ${options.windowMs / 1_000} s`,
    );
    const operations = workload.run(plan.operations);
    await injector.run(plan.faults);
    timeline.add('faults stop; bringing everything up');
    if (!postgres.running()) await postgres.start();
    await fleet.ensureAllUp();
    endPhase('faults');
    await operations;
    timeline.add('every operation settled; clients without a final answer come back');
    await workload.comeBack();
    endPhase('clients');
    timeline.add('waiting for the outbox, the completer and the sweeper');
    const state = await waitToSettle(database, options.quietMs);
    endPhase('settling');
    timeline.add(`settled: ${JSON.stringify(state)}`);
    const violations = [
      ...checkTranscripts(workload.records, { leaseSeconds: Math.ceil(leaseMs / 1_000) }),
      ...(await checkOperations(database, merchant.id, workload.records)),
      ...(await checkRows(database)),
      ...(await checkReconciliation(fleet.directApiUrl(), adminToken)),
      ...fleet.unexpectedExits.map((exit) => ({
        invariant: 'a process exits only when it is killed',
        detail: `${exit.name} exited (${exit.exit}) at +${(exit.atMs / 1_000).toFixed(2)} s`,
        operations: [],
        rows: [exit.outputTail],
      })),
    ];
    endPhase('checks');
    const report =
      violations.length === 0
        ? ''
        : await formatReport(options, plan, timeline, workload.records, violations, database, fleet.errorLines());
    return {
      seed: options.seed,
      plan,
      faultsInjected: injector.injected,
      answers: countAnswers(workload.records),
      violations,
      records: workload.records,
      report,
      durationMs: Date.now() - startedAt,
      phasesMs,
    };
  } finally {
    await fleet.stopAll();
    await redis.stop();
    await database.end().catch(() => undefined);
  }
}

/** The seed, how to run it again, the timeline, each violation with its rows, and the transcripts involved. */
async function formatReport(
  options: ScheduleOptions,
  plan: Plan,
  timeline: Timeline,
  records: readonly OperationRecord[],
  violations: readonly Violation[],
  database: pg.Pool,
  processErrors: string,
): Promise<string> {
  const keyIds = new Map(
    (
      await database
        .query<{ id: string; key: string }>('SELECT id::text, key FROM idempotency_keys')
        .catch(() => ({ rows: [] }))
    ).rows.map((row) => [`idem_${row.id}`, row.key]),
  );
  const involved = new Set<number>();
  for (const violation of violations) {
    for (const index of violation.operations) involved.add(index);
    const text = JSON.stringify(violation.rows);
    for (const record of records) {
      const ids = [record.operation.key, record.chargeId, ...record.sends.map((send) => finalAttempt(send)?.id)];
      const acquirerKeys = [...keyIds]
        .filter(([, key]) => key === record.operation.key)
        .map(([acquirerKey]) => acquirerKey);
      if ([...ids, ...acquirerKeys].some((id) => typeof id === 'string' && text.includes(`"${id}"`)))
        involved.add(record.operation.index);
    }
  }
  const lines = [
    `SIMULATION FAILED: seed ${options.seed}`,
    `reproduce: npm run simulate -- --seed ${options.seed} --schedules 1 --ops ${options.operations} --window-ms ${options.windowMs} --faults-per-minute ${options.faultsPerMinute} --quiet-ms ${options.quietMs}`,
    '',
    'planned faults:',
    ...plan.faults.map((fault) => `  ${formatOffset(fault.atMs)}  ${describeFault(fault)}`),
    '',
    'timeline:',
    timeline.format(),
    '',
    `violations (${violations.length}):`,
    ...violations.flatMap((violation) => [
      `- ${violation.invariant}: ${violation.detail}${violation.operations.length > 0 ? ` (operations ${violation.operations.join(', ')})` : ''}`,
      ...violation.rows
        .slice(0, 10)
        .map((row) => `    ${typeof row === 'string' ? row.split('\n').join('\n    ') : JSON.stringify(row)}`),
    ]),
    '',
    `transcripts of the operations involved (${involved.size}):`,
    ...records
      .filter((record) => involved.has(record.operation.index))
      .slice(0, 30)
      .map(formatRecord),
    '',
    "the processes' last error lines:",
    processErrors === '' ? '  (none)' : processErrors,
  ];
  return lines.join('\n');
}

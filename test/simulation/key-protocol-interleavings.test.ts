/**
 * The key protocol under controlled interleavings: fast-check's scheduler decides, statement by
 * statement, in which order two or three requests for one key run the store's real statements
 * against the real Postgres (claimKey, resolveExisting, saveRecoveryPoint, releaseKey, recordCharge),
 * while a third party expires the lease between any two of them. Sometimes two statements are
 * released at once, so two takeovers really race in Postgres. These are the orderings process
 * faults rarely hit: a lease running out between a holder's two statements, a takeover between
 * its authorization and its commit, two takeovers at once.
 *
 * Each step is gated: an actor waits for the scheduler before each statement, and the driver
 * releases one gate (or two), then waits until every actor is at its next gate or done, so the
 * order of statements is the scheduler's alone. Checked after each run, from the step log and
 * the rows: no two holders ever share a lock token; a write succeeds only under the newest token
 * (fencing), and fails only when a newer takeover or the commit got there first; at most one
 * charge per key; takeovers never outnumber the leases that ran out or were released.
 */
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { newChargeId, type ChargeSnapshot } from '../../src/charges/charge';
import { recordCharge } from '../../src/charges/record-charge';
import {
  claimKey,
  releaseKey,
  resolveExisting,
  saveRecoveryPoint,
  type ExistingResolution,
} from '../../src/idempotency/key-row';
import { keyedRequest, type HeldKey, type KeyedRequest } from '../../src/idempotency/types';
import { createMerchant } from '../../src/merchants/merchants';
import { openDatabase, type DatabaseHandle } from '../../src/platform/database';
import { createTestDatabase, type TestDatabase } from '../helpers/database';

/** Long: in these runs a lease ends only when the expirer says so, never by the wall clock. */
const leaseMs = 600_000;
const retentionHours = 24;

type StepKind = 'claim' | 'resolve' | 'authorize' | 'release' | 'record' | 'expire';
interface Step {
  readonly actor: string;
  readonly kind: StepKind;
  /** The lock token written under, or taken. */
  token: string | null;
  ok: boolean | null;
  releasedAt: number;
  finishedAt: number;
  outcome?: string;
}

/** Counts actors between gates; resolves waiters when all are at a gate or done. */
class Gates {
  private running: number;
  private waiters: (() => void)[] = [];
  private clock = 0;
  readonly steps: Step[] = [];

  constructor(
    private readonly scheduler: fc.Scheduler,
    actors: number,
  ) {
    this.running = actors;
  }

  /** Waits for the scheduler, runs one statement, and logs when it was released and finished. */
  async step<T>(actor: string, kind: StepKind, run: () => Promise<T>, describe: (result: T) => Partial<Step>) {
    this.pause();
    await this.scheduler.schedule(Promise.resolve(), `${actor} ${kind}`);
    this.running += 1;
    const step: Step = { actor, kind, token: null, ok: null, releasedAt: this.tick(), finishedAt: -1 };
    this.steps.push(step);
    const result = await run();
    step.finishedAt = this.tick();
    Object.assign(step, describe(result));
    return result;
  }

  /** The actor has finished (or failed): it will reach no other gate. */
  done(): void {
    this.pause();
  }

  idle(): Promise<void> {
    return this.running === 0 ? Promise.resolve() : new Promise((resolve) => this.waiters.push(resolve));
  }

  private tick(): number {
    this.clock += 1;
    return this.clock;
  }

  private pause(): void {
    this.running -= 1;
    if (this.running === 0) for (const wake of this.waiters.splice(0)) wake();
  }
}

interface Plan {
  readonly requests: number;
  /** Per request: give the key back (a transient failure) instead of authorizing. */
  readonly releases: readonly boolean[];
  readonly expiries: number;
  /** Per release of the driver: let two statements run at once. */
  readonly pairs: readonly boolean[];
}

let database: TestDatabase;
let handle: DatabaseHandle;
let merchantId: string;
let runCounter = 0;

beforeAll(async () => {
  database = await createTestDatabase(inject('databaseUrl'));
  handle = openDatabase({
    databaseUrl: database.url,
    databasePoolSizeMax: 6,
    databaseStatementTimeoutMs: 10_000,
    databaseLockTimeoutMs: 5_000,
  });
  merchantId = (await createMerchant(handle.prisma, 'Interleavings')).merchant.id;
});
afterAll(async () => {
  await handle?.close();
  await database?.drop();
});

const input = { amount: 1_000, currency: 'EUR', source: 'tok_visa' };

function snapshotFor(actor: string): ChargeSnapshot {
  return {
    id: newChargeId(),
    amount: input.amount,
    currency: input.currency,
    status: 'SUCCEEDED',
    failureCode: null,
    description: actor,
    metadata: null,
    createdAt: new Date().toISOString(),
  };
}

/** One request, as the money path runs it: claim or take over, authorize (or release), record. */
async function request(gates: Gates, actor: string, keyed: KeyedRequest, releases: boolean): Promise<void> {
  const db = handle.prisma;
  let held = await gates.step(
    actor,
    'claim',
    () => claimKey(db, keyed, leaseMs),
    (claimed) => ({ token: claimed?.lockToken ?? null, ok: claimed !== undefined }),
  );
  if (held === undefined) {
    const resolution: ExistingResolution = await gates.step(
      actor,
      'resolve',
      () => resolveExisting(db, keyed, leaseMs, retentionHours),
      (resolved) => ({
        outcome: resolved.outcome,
        ok: resolved.outcome === 'resumed',
        token: resolved.outcome === 'resumed' ? resolved.held.lockToken : null,
      }),
    );
    if (resolution.outcome !== 'resumed') return;
    held = resolution.held;
  }
  const holder: HeldKey = held;
  if (holder.recoveryPoint === 'STARTED') {
    if (releases) {
      await gates.step(
        actor,
        'release',
        () => releaseKey(db, keyed, holder),
        (ok) => ({ ok, token: holder.lockToken }),
      );
      return;
    }
    const authorized = await gates.step(
      actor,
      'authorize',
      () =>
        saveRecoveryPoint(
          db,
          holder,
          'AUTHORIZED',
          JSON.stringify({ approved: true, authorizationId: `auth_${holder.id}` }),
        ),
      (next) => ({ ok: next !== undefined, token: holder.lockToken }),
    );
    if (authorized === undefined) return;
  }
  const snapshot = snapshotFor(actor);
  await gates.step(
    actor,
    'record',
    () =>
      recordCharge(
        db,
        holder,
        { merchantId, snapshot, source: input.source, authorizationId: `auth_${holder.id}` },
        { status: 200, code: null, body: JSON.stringify(snapshot), firstRequestAt: holder.firstRequestAt },
      ),
    (ok) => ({ ok, token: holder.lockToken }),
  );
}

/** The lease runs out now: what a stalled holder (GC pause, lost network) looks like to everyone else. */
async function expirer(gates: Gates, keyed: KeyedRequest, times: number): Promise<void> {
  for (let time = 0; time < times; time += 1) {
    await gates.step(
      'expirer',
      'expire',
      () =>
        database.pool.query(
          `UPDATE idempotency_keys SET locked_until = now() - interval '1 millisecond'
            WHERE merchant_id = $1 AND key = $2 AND state = 'IN_PROGRESS' AND locked_until IS NOT NULL`,
          [keyed.merchantId, keyed.key],
        ),
      (result) => ({ ok: result.rowCount === 1 }),
    );
  }
}

/** Runs an actor to its end; a statement that throws is a finding (say, a unique violation), not a hang. */
async function act(gates: Gates, name: string, body: () => Promise<void>, errors: string[]): Promise<void> {
  try {
    await body();
  } catch (error) {
    errors.push(`${name}: a statement failed: ${String(error).split('\n').slice(0, 3).join(' ')}`);
  } finally {
    gates.done();
  }
}

function violations(steps: readonly Step[]): string[] {
  const found: string[] = [];
  const takeovers = steps.filter((step) => (step.kind === 'claim' || step.kind === 'resolve') && step.ok);
  const tokens = takeovers.map((step) => step.token);
  if (new Set(tokens).size !== tokens.length) found.push(`two holders share a lock token: ${tokens.join(', ')}`);
  const newer = (token: string) => (other: Step) => BigInt(other.token!) > BigInt(token);
  const records = steps.filter((step) => step.kind === 'record' && step.ok);
  if (records.length > 1) found.push(`${records.length} holders recorded a charge`);
  for (const write of steps.filter((step) => step.kind === 'authorize' || step.kind === 'record')) {
    const overtaken = takeovers.filter(newer(write.token!));
    const committed = records.filter((record) => record !== write);
    if (write.ok) {
      // Fencing: a takeover that committed before this write began leaves it nothing to write.
      if (overtaken.some((takeover) => takeover.finishedAt < write.releasedAt))
        found.push(`${write.actor} ${write.kind} succeeded under token ${write.token} after a newer takeover`);
      if (committed.some((record) => record.finishedAt < write.releasedAt))
        found.push(`${write.actor} ${write.kind} succeeded after the key was completed`);
    } else if (
      !overtaken.some((takeover) => takeover.releasedAt < write.finishedAt) &&
      !committed.some((record) => record.releasedAt < write.finishedAt)
    ) {
      found.push(`${write.actor} ${write.kind} failed under token ${write.token} with no newer holder or commit`);
    }
  }
  const freed = steps.filter((step) => (step.kind === 'expire' || step.kind === 'release') && step.ok).length;
  const resumed = steps.filter((step) => step.kind === 'resolve' && step.ok).length;
  if (resumed > freed) found.push(`${resumed} takeovers, but only ${freed} leases ran out or were released`);
  return found;
}

function formatSteps(steps: readonly Step[]): string {
  return [...steps]
    .sort((a, b) => a.releasedAt - b.releasedAt)
    .map(
      (step) =>
        `  [${step.releasedAt}→${step.finishedAt}] ${step.actor} ${step.kind}${step.outcome === undefined ? '' : ` ${step.outcome}`}` +
        `${step.token === null ? '' : ` token ${step.token}`} → ${String(step.ok)}`,
    )
    .join('\n');
}

const plans: fc.Arbitrary<Plan> = fc.record({
  requests: fc.integer({ min: 2, max: 3 }),
  releases: fc.array(fc.boolean(), { minLength: 3, maxLength: 3 }),
  expiries: fc.integer({ min: 0, max: 3 }),
  pairs: fc.array(fc.boolean(), { minLength: 1, maxLength: 12 }),
});

/** What the runs reached, so a pass means the hard orderings were tried. */
const reached = { takeovers: 0, fencedWrites: 0, racingTakeovers: 0, expiredBetweenStatements: 0 };

function count(steps: readonly Step[]): void {
  reached.takeovers += steps.filter((step) => step.kind === 'resolve' && step.ok).length;
  reached.fencedWrites += steps.filter(
    (step) => (step.kind === 'authorize' || step.kind === 'record') && !step.ok,
  ).length;
  const resolves = steps.filter((step) => step.kind === 'resolve');
  reached.racingTakeovers += resolves.filter((a) =>
    resolves.some((b) => a !== b && a.releasedAt < b.finishedAt && b.releasedAt < a.finishedAt),
  ).length;
  // A holder's lease ran out between its take and its last write.
  reached.expiredBetweenStatements += steps.filter(
    (expiry) =>
      expiry.kind === 'expire' &&
      expiry.ok &&
      steps.some(
        (write) =>
          (write.kind === 'authorize' || write.kind === 'record') &&
          steps.some(
            (take) =>
              take.token === write.token &&
              (take.kind === 'claim' || take.kind === 'resolve') &&
              take.finishedAt < expiry.releasedAt,
          ) &&
          expiry.finishedAt < write.releasedAt,
      ),
  ).length;
}

describe('the key protocol under interleavings chosen by fast-check', () => {
  it('fences every write by the newest lock token, records one charge, and takes over only freed leases', async () => {
    await fc.assert(
      fc.asyncProperty(fc.scheduler(), plans, async (scheduler, plan) => {
        runCounter += 1;
        const keyed = keyedRequest('createCharge', merchantId, `interleaving-${runCounter}`, input);
        const actors = plan.requests + 1;
        const gates = new Gates(scheduler, actors);
        const errors: string[] = [];
        const running = [
          ...Array.from({ length: plan.requests }, (_, index) =>
            act(
              gates,
              `request-${index + 1}`,
              () => request(gates, `request-${index + 1}`, keyed, plan.releases[index] ?? false),
              errors,
            ),
          ),
          act(gates, 'expirer', () => expirer(gates, keyed, plan.expiries), errors),
        ];
        for (let release = 0; ; release += 1) {
          await gates.idle();
          if (scheduler.count() === 0) break;
          const together = plan.pairs[release % plan.pairs.length]! && scheduler.count() >= 2 ? 2 : 1;
          await scheduler.waitNext(together);
        }
        await Promise.all(running);
        const found = [...errors, ...violations(gates.steps)];
        const rows = await database.pool.query<{ charges: number; state: string; lock_token: string }>(
          `SELECT (SELECT count(*)::int FROM charges c WHERE c.idempotency_key_id = k.id) AS charges,
                  k.state, k.lock_token::text FROM idempotency_keys k WHERE k.merchant_id = $1 AND k.key = $2`,
          [merchantId, keyed.key],
        );
        const row = rows.rows[0]!;
        const recorded = gates.steps.filter((step) => step.kind === 'record' && step.ok).length;
        if (row.charges !== recorded) found.push(`${row.charges} charge rows for ${recorded} recorded`);
        if ((row.state === 'COMPLETED') !== (recorded === 1)) found.push(`key ${row.state} with ${recorded} recorded`);
        const newest = gates.steps.filter((step) => step.token !== null).map((step) => BigInt(step.token!));
        if (BigInt(row.lock_token) !== newest.reduce((a, b) => (b > a ? b : a), 0n))
          found.push(`the row's lock token ${row.lock_token} is not the newest taken`);
        if (found.length > 0) throw new Error(`${found.join('\n')}\nsteps:\n${formatSteps(gates.steps)}`);
        count(gates.steps);
      }),
      { numRuns: 150 },
    );
    process.stdout.write(`key protocol interleavings reached: ${JSON.stringify(reached)}\n`);
    for (const [what, times] of Object.entries(reached)) expect(times, what).toBeGreaterThan(0);
  }, 180_000);
});

/**
 * The ledger worker: applies each event from the `ledger` queue once, and never loses one
 * (docs/contract.md §5; docs/event-path.md says how).
 *
 * For each job:
 *   1. a signed Redis "done" marker for the event's UUID means it was applied: acknowledge, count
 *      a duplicate. A marker that fails verification is ignored (counted and logged);
 *   2. admission for the call site `ledger.apply` (src/retry/call-site-admission.ts): while the
 *      call site is held, the job is delayed (DelayedError, no attempt spent), one probe at a time;
 *   3. applyLedgerEvent: one Postgres statement (inbox row + balanced entries);
 *   4. after the commit, the done marker (it only ever says "done"; the inbox row is the truth).
 * Jobs that run at once share round trips (src/ledger/coalescer.ts): their markers are read with
 * one MGET and written in one pipeline, and their events applied in one statement
 * (src/ledger/apply-batch.ts), each event with its own inbox row, outcome and failure.
 * Failures (src/ledger/failures.ts):
 *   - infrastructure (Postgres or Redis unreachable): the call site is held and the job delayed,
 *     spending no attempt and no budget token, however long the outage lasts;
 *   - order (a refund before its charge's posting): delayed the same way, until the charge is
 *     posted, or dead-lettered once the charge is shown missing (its event dead-lettered);
 *   - final (poison): dead-lettered at once;
 *   - anything else: an attempt and a budget token; the job that finds the budget empty is held;
 *     after the last attempt, dead-lettered.
 * A dead letter is written to Postgres before the job leaves the queue; when it cannot be written
 * the job is held instead. A failure BullMQ decides on its own (a job that stalled more than
 * `stalledCountMax` times) is recorded by the `failed` listener; if even that cannot be written,
 * the relay's sweeper publishes the event again, because it has no inbox row.
 */
import { DelayedError, UnrecoverableError, Worker, type Job } from 'bullmq';
import { Cluster } from 'ioredis';
import type pg from 'pg';
import type { RedisClient } from '../platform/redis';
import { GatewayError } from '../errors';
import type { Database } from '../platform/database';
import type { Logger } from '../platform/logger';
import type { ValueSigner } from '../platform/signed-value';
import { fullJitterDelayMs } from '@payments-gateway/retry';
import type { CallSiteAdmission } from '../retry/call-site-admission';
import {
  fullJitterBackoffType,
  jobIdFor,
  ledgerJobDataSchema,
  ledgerQueueName,
  type LedgerJobData,
} from '../outbox/queue';
import { ledgerConsumer, type ApplyOutcome } from './apply-event';
import { createLedgerApplier } from './apply-batch';
import { Coalescer } from './coalescer';
import type { DeadLetters } from './dead-letters';
import { classifyFailure, type ClassifiedFailure } from './failures';
import { parseLedgerEvent, type LedgerEvent } from './ledger-event';

export const ledgerApplyCallSite = 'ledger.apply';
// A week: far longer than any redelivery; past it the inbox row still answers.
const doneMarkerTtlSeconds = 7 * 86_400;
const doneMarkerPurpose = 'ledger.done';
const doneMarkerValue = 'done';
/**
 * BullMQ fails a job that stalled more than this many times without calling the processor (its
 * default is 1: a worker dying twice while holding a job would drop it). How the three settings
 * interact (bullmq 6.7, moveStalledJobsToWait-9.lua, prepareJobForProcessing.lua, worker.js):
 *   - a running job holds `<job>:lock` for `lockDuration`, renewed every `lockDuration / 2`;
 *   - the stalled checker runs every `stalledInterval` (at most once per interval for the whole
 *     fleet: a `stalled-check` key with that expiry). Each run moves back to wait every job that
 *     was active at the previous run and has no lock now, adding one to its `stc` count, then
 *     notes the jobs active now for the next run. A dead worker's job is back in wait between
 *     `lockDuration` and `lockDuration + 2 × stalledInterval` after the death;
 *   - `stc` counts over the job's whole life: no retry or delay resets it. Once it exceeds
 *     `maxStalledCount`, the job goes back to wait with a deferred failure, and the worker that
 *     takes it next fails it ("job stalled more than allowable limit") without the processor.
 * So a job survives `maxStalledCount` deaths of workers holding it. Re-running is safe (the inbox
 * row settles it), so the bound is high: it only stops a job that kills every worker that takes
 * it (say, one that exhausts memory) from doing so forever; the `failed` listener then records it
 * as a dead letter. test/ledger/worker-killed.test.ts kills three workers holding one job.
 */
export const stalledCountMaxDefault = 20;
/**
 * Apply statements on their way at once: two, so one batch forms while the other runs, and the
 * worker holds at most two pooled connections for the ledger.
 */
const applyStatementsInFlightMax = 2;

export interface LedgerWorkerOptions {
  readonly prefix: string;
  readonly redisKeyPrefix: string;
  readonly concurrency: number;
  readonly attemptsMax: number;
  readonly backoffBaseMs: number;
  readonly backoffCapMs: number;
  readonly ratePerSecond: number;
  readonly lockDurationMs: number;
  /** How long a held job waits before it looks again (jittered up to twice this). */
  readonly retryBudgetEmptyDelayMs: number;
  /** Test hook: the ledger call fails as if Postgres were unreachable until this time (epoch ms). */
  readonly outageUntilMs: number;
  /** Test hook (FAULTS=ledger_bug): the ledger call throws an unexpected error, as a bug would. */
  readonly bugFault?: boolean;
  /** Test hook (FAULTS=ledger_hang): each job is held in the processor until the process dies. */
  readonly hangFault?: boolean;
  /** WORKER_STALLED_COUNT_MAX; see stalledCountMaxDefault. */
  readonly stalledCountMax?: number;
  /** On stop, running jobs get this long to finish; the rest go back to the queue. */
  readonly shutdownGraceMs?: number;
}

export type HoldReason = 'infrastructure' | 'order' | 'budget';

export interface LedgerWorkerDependencies {
  readonly db: Database;
  /** The pool under `db`: batches of events go as one named prepared statement. */
  readonly pool: pg.Pool;
  /** The blocking connection BullMQ needs (maxRetriesPerRequest: null). */
  readonly queueConnection: RedisClient;
  /** Fail-fast client for the done markers. */
  readonly redis: RedisClient;
  /** Signs and checks the done markers (REDIS_ANSWER_SECRET). */
  readonly signer: ValueSigner;
  /** Admission for `ledger.apply`: the retry budget and the hold it puts on the call site. */
  readonly admission: CallSiteAdmission;
  readonly deadLetters: DeadLetters;
  readonly logger: Logger;
  readonly onOutcome: (outcome: ApplyOutcome | 'skipped') => void;
  readonly onAttempt: () => void;
  readonly onDeadLetter: (reason: 'final' | 'exhausted') => void;
  readonly onBudgetDelay: () => void;
  readonly onHeld?: (reason: HoldReason) => void;
  readonly onDoneMarkerRejected?: () => void;
}

export type JobOutcome = ApplyOutcome | 'skipped';
type LedgerJob = Job<LedgerJobData, JobOutcome>;

export class LedgerWorker {
  private worker: Worker<LedgerJobData, JobOutcome> | undefined;
  /** Jobs this process is running, with their lock tokens: shutdown gives back what is left. */
  private readonly running = new Map<string, { job: LedgerJob; token: string | undefined }>();
  private readonly apply: (event: LedgerEvent) => Promise<ApplyOutcome>;
  private readonly doneMarkers: Coalescer<string, string | null>;
  private readonly newDoneMarkers: Coalescer<string, 'OK'>;

  constructor(
    private readonly deps: LedgerWorkerDependencies,
    private readonly options: LedgerWorkerOptions,
  ) {
    const batch = { batchSizeMax: Math.max(1, options.concurrency), inFlightMax: applyStatementsInFlightMax };
    this.apply = createLedgerApplier(deps.db, deps.pool, batch);
    this.doneMarkers = new Coalescer((keys) => readMarkers(deps.redis, keys), batch);
    this.newDoneMarkers = new Coalescer(
      (keys) =>
        writeMarkers(
          deps.redis,
          keys.map((key) => [key, deps.signer.sign(doneMarkerPurpose, key, doneMarkerValue)]),
        ),
      batch,
    );
  }

  doneMarkerKey(eventUid: string): string {
    return `${this.options.redisKeyPrefix}:inbox:${ledgerConsumer}:{${jobIdFor(eventUid)}}`;
  }

  start(): Worker<LedgerJobData, JobOutcome> {
    const { options } = this;
    this.worker = new Worker<LedgerJobData, JobOutcome>(ledgerQueueName, (job, token) => this.run(job, token), {
      connection: this.deps.queueConnection,
      prefix: options.prefix,
      concurrency: options.concurrency,
      // A dead worker's job is found stalled within a lock duration and run again; the inbox
      // settles which run commits.
      lockDuration: options.lockDurationMs,
      stalledInterval: options.lockDurationMs,
      maxStalledCount: options.stalledCountMax ?? stalledCountMaxDefault,
      ...(options.ratePerSecond > 0 ? { limiter: { max: options.ratePerSecond, duration: 1_000 } } : {}),
      settings: {
        backoffStrategy: (attemptsMade, type) =>
          type === fullJitterBackoffType
            ? fullJitterDelayMs(attemptsMade - 1, { baseMs: options.backoffBaseMs, capMs: options.backoffCapMs })
            : options.backoffBaseMs,
      },
    });
    this.worker.on('error', (error) => this.deps.logger.warn({ err: error }, 'ledger worker connection error'));
    this.worker.on('failed', (job, error) => {
      if (job !== undefined) void this.recordUnrecordedFailure(job, error);
    });
    return this.worker;
  }

  /**
   * Stops taking jobs and lets running ones finish within the shutdown grace; what is still
   * running then goes back to the queue (no attempt spent), so nothing is left stalled.
   */
  async stop(): Promise<void> {
    const worker = this.worker;
    if (worker === undefined) return;
    const graceMs = this.options.shutdownGraceMs ?? 10_000;
    let timer: NodeJS.Timeout | undefined;
    const closed = worker.close().then(() => true);
    const finished = await Promise.race([
      closed,
      new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(false), graceMs))),
    ]);
    clearTimeout(timer);
    if (finished) return;
    const leftovers = [...this.running.values()];
    this.deps.logger.warn({ jobs: leftovers.length }, 'shutdown grace over: giving running jobs back to the queue');
    await Promise.all(leftovers.map(({ job, token }) => job.moveToDelayed(Date.now(), token).catch(() => undefined)));
  }

  private async run(job: LedgerJob, token: string | undefined): Promise<JobOutcome> {
    const id = job.id ?? '';
    this.running.set(id, { job, token });
    try {
      return await this.process(job, token);
    } finally {
      this.running.delete(id);
    }
  }

  async process(job: LedgerJob, token: string | undefined): Promise<JobOutcome> {
    let event: LedgerEvent;
    try {
      event = await this.readEvent(job.data);
    } catch (error) {
      throw await this.handleFailure(job, token, error, 'go');
    }
    if (await this.isDone(event.eventUid)) {
      this.deps.onOutcome('skipped');
      return 'skipped';
    }
    const admission = await this.deps.admission.admit();
    if (admission === 'held') {
      this.deps.onBudgetDelay();
      throw await this.hold(job, token, 'budget');
    }
    try {
      this.deps.onAttempt();
      if (Date.now() < this.options.outageUntilMs) {
        throw new GatewayError('LEDGER_UNAVAILABLE', 'injected ledger outage (FAULT_LEDGER_OUTAGE_MS)');
      }
      if (this.options.bugFault === true) throw new Error('injected bug (FAULTS=ledger_bug)');
      if (this.options.hangFault === true) await holdUntilTheProcessDies();
      const outcome = await this.apply(event);
      this.deps.onOutcome(outcome);
      await this.markDone(event.eventUid);
      await this.deps.admission.recordSuccess();
      return outcome;
    } catch (error) {
      throw await this.handleFailure(job, token, error, admission, event);
    }
  }

  /** The job's data, checked; a job queued before event UUIDs existed finds its UUID by id. */
  private async readEvent(data: LedgerJobData): Promise<LedgerEvent> {
    const parsed = ledgerJobDataSchema.safeParse(data);
    if (!parsed.success) throw new GatewayError('LEDGER_EVENT_INVALID', `job data: ${parsed.error.message}`);
    let eventUid = parsed.data.eventUid;
    if (eventUid === undefined) {
      const rows = await this.deps.db.$queryRaw<{ event_uid: string }[]>`
        SELECT event_uid::text FROM outbox_events WHERE id = ${parsed.data.eventId}::bigint`;
      eventUid = rows[0]?.event_uid;
      if (eventUid === undefined) throw new GatewayError('LEDGER_EVENT_INVALID', 'event is not in the outbox');
    }
    return parseLedgerEvent(parsed.data.eventId, eventUid, parsed.data.type, parsed.data.payload);
  }

  /** Decides what a failure does with the job; returns the error for the processor to throw. */
  private async handleFailure(
    job: LedgerJob,
    token: string | undefined,
    error: unknown,
    admission: 'go' | 'probe',
    event?: LedgerEvent,
  ): Promise<Error> {
    const failure = classifyFailure(error);
    if (failure.kind === 'infrastructure') {
      await this.deps.admission.recordOutage();
      return this.hold(job, token, 'infrastructure');
    }
    if (failure.kind === 'order' && event !== undefined) {
      return this.holdForCharge(job, token, event, failure);
    }
    if (failure.kind === 'final') return this.deadLetter(job, token, failure, 'final');
    const attempt = job.attemptsMade + 1;
    if (admission === 'probe') {
      // A probe spends no attempt: the hold stays, and the job waits with the rest.
      await this.deps.admission.recordOutage();
      return this.hold(job, token, 'budget');
    }
    if (attempt >= (job.opts.attempts ?? this.options.attemptsMax)) {
      return this.deadLetter(job, token, failure, 'exhausted');
    }
    if (!(await this.deps.admission.recordFailure())) {
      this.deps.onBudgetDelay();
      return this.hold(job, token, 'budget');
    }
    return new GatewayError('LEDGER_APPLY_FAILED', failure.message, { cause: error });
  }

  /** A refund before its charge's posting waits, unless the charge is shown missing. */
  private async holdForCharge(
    job: LedgerJob,
    token: string | undefined,
    event: LedgerEvent,
    failure: ClassifiedFailure,
  ): Promise<Error> {
    let missing: boolean;
    try {
      missing = await chargeShownMissing(this.deps.db, event.chargeId);
    } catch (error) {
      this.deps.logger.warn({ err: error, jobId: job.id }, 'could not look for the charge; holding the refund');
      return this.hold(job, token, 'infrastructure');
    }
    if (!missing) return this.hold(job, token, 'order');
    return this.deadLetter(
      job,
      token,
      { kind: 'final', code: 'LEDGER_CHARGE_MISSING', message: `${failure.message}, and its charge was dead-lettered` },
      'final',
    );
  }

  /** Records the dead letter; only once it is written does the job leave the queue (failed). */
  private async deadLetter(
    job: LedgerJob,
    token: string | undefined,
    failure: ClassifiedFailure,
    reason: 'final' | 'exhausted',
  ): Promise<Error> {
    const attempt = job.attemptsMade + 1;
    try {
      const recorded = await this.deps.deadLetters.record({
        jobId: job.id ?? jobIdFor(job.data.eventUid ?? job.data.eventId),
        data: job.data,
        errorCode: failure.code,
        errorMessage: failure.message,
        attempts: attempt,
      });
      if (recorded) this.deps.onDeadLetter(reason);
    } catch (error) {
      this.deps.logger.warn({ err: error, jobId: job.id }, 'could not write the dead letter; holding the job');
      return this.hold(job, token, 'infrastructure');
    }
    this.deps.logger.warn({ jobId: job.id, code: failure.code, attempt }, 'ledger job dead-lettered');
    return new UnrecoverableError(`${failure.code}: ${failure.message}`);
  }

  /**
   * Delays the job without spending an attempt (BullMQ's DelayedError). If Redis cannot take
   * even that, the job stays active without a lock renewal and the stalled checker gives it back:
   * still no attempt, never a failure.
   */
  private async hold(job: LedgerJob, token: string | undefined, reason: HoldReason): Promise<Error> {
    this.deps.onHeld?.(reason);
    // Jitter spreads the held jobs' next looks over the delay instead of waking them together.
    const delayMs = this.options.retryBudgetEmptyDelayMs * (1 + Math.random());
    await job.moveToDelayed(Date.now() + delayMs, token).catch((error: unknown) => {
      this.deps.logger.warn({ err: error, jobId: job.id }, 'could not delay a held job; it comes back as stalled');
    });
    return new DelayedError(`ledger.apply held (${reason}); delayed without spending an attempt`);
  }

  /** The `failed` listener: any failure the processor did not record becomes a dead letter. */
  private async recordUnrecordedFailure(job: LedgerJob, error: Error): Promise<void> {
    try {
      // BullMQ emits `failed` for every failed attempt, also those it will retry.
      if ((await job.getState()) !== 'failed') return;
      if (job.id !== undefined && (await this.deps.deadLetters.isRecorded(job.id))) return;
      const recorded = await this.deps.deadLetters.record({
        jobId: job.id ?? jobIdFor(job.data.eventUid ?? job.data.eventId),
        data: job.data,
        errorCode: 'LEDGER_JOB_FAILED',
        errorMessage: error.message,
        attempts: Math.max(1, job.attemptsMade),
      });
      if (recorded) {
        this.deps.onDeadLetter('final');
        this.deps.logger.warn({ jobId: job.id, reason: error.message }, 'queue failed a ledger job; dead-lettered');
      }
    } catch (failure) {
      this.deps.logger.error(
        { err: failure, jobId: job.id },
        'could not record a failed ledger job; the sweeper publishes its event again',
      );
    }
  }

  private async isDone(eventUid: string): Promise<boolean> {
    const key = this.doneMarkerKey(eventUid);
    let stored: string | null;
    try {
      stored = await this.doneMarkers.submit(key);
    } catch {
      return false; // Redis cannot say: the inbox will.
    }
    if (stored === null) return false;
    if (this.deps.signer.verify(doneMarkerPurpose, key, stored) === doneMarkerValue) return true;
    this.deps.onDoneMarkerRejected?.();
    this.deps.logger.warn({ key }, 'a done marker failed verification; ignored (the inbox decides)');
    return false;
  }

  private async markDone(eventUid: string): Promise<void> {
    await this.newDoneMarkers.submit(this.doneMarkerKey(eventUid)).catch(() => undefined);
  }
}

/**
 * Done markers of several events in one round trip. Each event's marker has a hash slot of its own
 * (`{evt_<uid>}`), so on a Redis Cluster one MGET cannot span them: one GET each there.
 */
async function readMarkers(redis: RedisClient, keys: readonly string[]): Promise<(string | null)[]> {
  if (redis instanceof Cluster) return Promise.all(keys.map((key) => redis.get(key)));
  return redis.mget(...keys);
}

/** Writes the markers in one pipeline (one SET each on a Cluster, for the same reason). */
async function writeMarkers(redis: RedisClient, markers: readonly [string, string][]): Promise<(Error | 'OK')[]> {
  if (redis instanceof Cluster) {
    return Promise.all(
      markers.map(([key, value]) =>
        redis.set(key, value, 'EX', doneMarkerTtlSeconds).then(
          () => 'OK' as const,
          (error: unknown) => (error instanceof Error ? error : new Error(String(error))),
        ),
      ),
    );
  }
  const pipeline = redis.pipeline();
  for (const [key, value] of markers) pipeline.set(key, value, 'EX', doneMarkerTtlSeconds);
  const answers = (await pipeline.exec()) ?? [];
  return markers.map((_, index) => answers[index]?.[0] ?? 'OK');
}

/** FAULTS=ledger_hang: never settles, so the job stays active (its lock renewed) until a kill. */
function holdUntilTheProcessDies(): Promise<never> {
  return new Promise<never>(() => undefined);
}

/** True when the charge's posting cannot come: its event is dead-lettered (and not replayed), or absent. */
async function chargeShownMissing(db: Database, chargeId: string): Promise<boolean> {
  const rows = await db.$queryRaw<{ missing: boolean }[]>`
    SELECT NOT EXISTS (SELECT 1 FROM outbox_events o
                        WHERE o.aggregate_id = ${chargeId} AND o.event_type = 'charge.succeeded'
                          AND NOT EXISTS (SELECT 1 FROM dead_letters d
                                           WHERE d.event_uid = o.event_uid AND d.replay_job_id IS NULL)) AS missing`;
  return rows[0]?.missing === true;
}

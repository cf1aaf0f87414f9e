/**
 * The ledger worker: applies each event from the `ledger` queue once.
 *
 * For each job:
 *   1. a Redis "done" marker for the event means it was applied: acknowledge, count a duplicate;
 *   2. admission for the call site `ledger.apply` (src/retry/call-site-admission.ts): every
 *      failure pays one token of the fleet's retry budget for the retry it causes, every success
 *      deposits a fraction; when a failure finds the budget empty the call site is held, and jobs
 *      are delayed without spending an attempt (DelayedError), one probe at a time, until a probe
 *      succeeds. An outage does not multiply traffic, and nothing is dropped;
 *   3. applyLedgerEvent: one Postgres transaction (inbox row + balanced entries);
 *   4. after the commit, the done marker (it only ever says "done"; the inbox row is the truth).
 * Failures: a final error (poison) is dead-lettered at once; a transient one is retried with
 * full-jitter backoff and dead-lettered after `attemptsMax` attempts.
 */
import { DelayedError, UnrecoverableError, Worker, type Job } from 'bullmq';
import type { RedisClient } from '../platform/redis';
import { GatewayError } from '../errors';
import { isTransientDatabaseError, type Database } from '../platform/database';
import type { Logger } from '../platform/logger';
import { fullJitterDelayMs } from '../retry/backoff';
import type { CallSiteAdmission } from '../retry/call-site-admission';
import { fullJitterBackoffType, ledgerQueueName, type LedgerJobData } from '../outbox/queue';
import { applyLedgerEvent, ledgerConsumer, type ApplyOutcome } from './apply-event';
import type { DeadLetters } from './dead-letters';
import { parseLedgerEvent } from './ledger-event';

export const ledgerApplyCallSite = 'ledger.apply';
// A week: far longer than any redelivery; past it the inbox row still answers.
const doneMarkerTtlSeconds = 7 * 86_400;

export interface LedgerWorkerOptions {
  readonly prefix: string;
  readonly redisKeyPrefix: string;
  readonly concurrency: number;
  readonly attemptsMax: number;
  readonly backoffBaseMs: number;
  readonly backoffCapMs: number;
  readonly ratePerSecond: number;
  readonly lockDurationMs: number;
  readonly retryBudgetEmptyDelayMs: number;
  /** Test hook: the ledger call fails transiently until this time (epoch ms). */
  readonly outageUntilMs: number;
}

export interface LedgerWorkerDependencies {
  readonly db: Database;
  /** The blocking connection BullMQ needs (maxRetriesPerRequest: null). */
  readonly queueConnection: RedisClient;
  /** Fail-fast client for the done markers. */
  readonly redis: RedisClient;
  /** Admission for `ledger.apply`: the retry budget and the hold it puts on the call site. */
  readonly admission: CallSiteAdmission;
  readonly deadLetters: DeadLetters;
  readonly logger: Logger;
  readonly onOutcome: (outcome: ApplyOutcome | 'skipped') => void;
  readonly onAttempt: () => void;
  readonly onDeadLetter: (reason: 'final' | 'exhausted') => void;
  readonly onBudgetDelay: () => void;
}

export type JobOutcome = ApplyOutcome | 'skipped';

export class LedgerWorker {
  private worker: Worker<LedgerJobData, JobOutcome> | undefined;

  constructor(
    private readonly deps: LedgerWorkerDependencies,
    private readonly options: LedgerWorkerOptions,
  ) {}

  doneMarkerKey(eventId: string): string {
    return `${this.options.redisKeyPrefix}:inbox:${ledgerConsumer}:{evt_${eventId}}`;
  }

  start(): Worker<LedgerJobData, JobOutcome> {
    const { options } = this;
    this.worker = new Worker<LedgerJobData, JobOutcome>(ledgerQueueName, (job, token) => this.process(job, token), {
      connection: this.deps.queueConnection,
      prefix: options.prefix,
      concurrency: options.concurrency,
      // A dead worker's job is found stalled within a lock duration and run again; the inbox
      // settles which run commits.
      lockDuration: options.lockDurationMs,
      stalledInterval: options.lockDurationMs,
      ...(options.ratePerSecond > 0 ? { limiter: { max: options.ratePerSecond, duration: 1_000 } } : {}),
      settings: {
        backoffStrategy: (attemptsMade, type) =>
          type === fullJitterBackoffType
            ? fullJitterDelayMs(attemptsMade - 1, { baseMs: options.backoffBaseMs, capMs: options.backoffCapMs })
            : options.backoffBaseMs,
      },
    });
    this.worker.on('error', (error) => this.deps.logger.warn({ err: error }, 'ledger worker connection error'));
    return this.worker;
  }

  async stop(): Promise<void> {
    // close() lets active jobs finish; a job that cannot finish goes back as stalled.
    await this.worker?.close();
  }

  async process(job: Job<LedgerJobData, JobOutcome>, token: string | undefined): Promise<JobOutcome> {
    const { eventId } = job.data;
    if (await this.isDone(eventId)) {
      this.deps.onOutcome('skipped');
      return 'skipped';
    }
    if (!(await this.deps.admission.admit())) {
      this.deps.onBudgetDelay();
      // Jitter spreads the held jobs' next looks over the delay instead of waking them together.
      const delayMs = this.options.retryBudgetEmptyDelayMs * (1 + Math.random());
      await job.moveToDelayed(Date.now() + delayMs, token);
      throw new DelayedError('ledger.apply is held (retry budget empty); delayed without spending an attempt');
    }
    try {
      this.deps.onAttempt();
      const event = parseLedgerEvent(eventId, job.data.type, job.data.payload);
      if (Date.now() < this.options.outageUntilMs) {
        throw new GatewayError('LEDGER_UNAVAILABLE', 'injected ledger outage (FAULT_LEDGER_OUTAGE_MS)');
      }
      const outcome = await applyLedgerEvent(this.deps.db, event);
      this.deps.onOutcome(outcome);
      await this.markDone(eventId);
      await this.deps.admission.recordSuccess();
      return outcome;
    } catch (error) {
      throw await this.handleFailure(job, error);
    }
  }

  /** Classifies a failure: dead-letters it when it is final or the last attempt, else lets BullMQ retry. */
  private async handleFailure(job: Job<LedgerJobData, JobOutcome>, error: unknown): Promise<Error> {
    const failure = classify(error);
    const attempt = job.attemptsMade + 1;
    const exhausted = failure.transient && attempt >= (job.opts.attempts ?? this.options.attemptsMax);
    if (failure.transient && !exhausted) await this.deps.admission.recordFailure();
    if (!failure.transient || exhausted) {
      this.deps.logger.warn({ jobId: job.id, code: failure.code, attempt }, 'ledger job dead-lettered');
      await this.deps.deadLetters.record({
        jobId: job.id ?? `evt_${job.data.eventId}`,
        data: job.data,
        errorCode: failure.code,
        errorMessage: failure.message,
        attempts: attempt,
      });
      this.deps.onDeadLetter(failure.transient ? 'exhausted' : 'final');
      return new UnrecoverableError(`${failure.code}: ${failure.message}`);
    }
    return failure;
  }

  private async isDone(eventId: string): Promise<boolean> {
    try {
      return (await this.deps.redis.exists(this.doneMarkerKey(eventId))) === 1;
    } catch {
      return false; // Redis cannot say: the inbox will.
    }
  }

  private async markDone(eventId: string): Promise<void> {
    await this.deps.redis.set(this.doneMarkerKey(eventId), '1', 'EX', doneMarkerTtlSeconds).catch(() => undefined);
  }
}

function classify(error: unknown): GatewayError {
  if (error instanceof GatewayError) return error;
  if (isTransientDatabaseError(error))
    return new GatewayError('LEDGER_UNAVAILABLE', errorMessage(error), { cause: error });
  // Unknown errors are retried: a bug fixed by a deploy then heals; N attempts bound it.
  return new GatewayError('LEDGER_UNAVAILABLE', `unexpected: ${errorMessage(error)}`, { cause: error });
}

function errorMessage(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

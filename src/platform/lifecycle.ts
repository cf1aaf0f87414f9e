/**
 * What a process must stop, in one list. Components are added in the order they start and stop
 * in the reverse order, so nothing is closed while something started after it still uses it
 * (the HTTP server drains before the services it calls, the pools close last). Each step has a
 * deadline: a step that hangs is logged and skipped, so one stuck close cannot keep a deploy
 * waiting past SHUTDOWN_GRACE_MS. Every failure is logged; stopping goes on past it.
 */
import type { Logger } from './logger';

export interface Stoppable {
  /** Shown in the log when the step fails or runs past its deadline. */
  readonly name: string;
  stop(): Promise<void>;
  /** This step's own deadline; the lifecycle's default otherwise. */
  readonly deadlineMs?: number;
}

export interface StopReport {
  readonly failed: readonly string[];
}

export class Lifecycle {
  private readonly steps: Stoppable[] = [];
  private stopping: Promise<StopReport> | undefined;

  constructor(
    private readonly logger: Logger,
    private readonly stepDeadlineMs: number,
  ) {}

  add(...stoppables: readonly Stoppable[]): void {
    this.steps.push(...stoppables);
  }

  /** Stops every step once, last added first. Later calls return the same promise. */
  stop(): Promise<StopReport> {
    this.stopping ??= this.stopInReverse();
    return this.stopping;
  }

  private async stopInReverse(): Promise<StopReport> {
    const failed: string[] = [];
    for (const step of [...this.steps].reverse()) {
      const deadlineMs = step.deadlineMs ?? this.stepDeadlineMs;
      const started = Date.now();
      try {
        await withDeadline(step.stop(), deadlineMs, step.name);
        this.logger.debug({ step: step.name, ms: Date.now() - started }, 'stopped');
      } catch (error) {
        failed.push(step.name);
        this.logger.error({ err: error, step: step.name, deadlineMs }, 'a component did not stop cleanly');
      }
    }
    return { failed };
  }
}

async function withDeadline(work: Promise<void>, deadlineMs: number, name: string): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => reject(new Error(`${name} did not stop within ${deadlineMs} ms`)), deadlineMs);
  });
  try {
    await Promise.race([work, deadline]);
  } finally {
    clearTimeout(timer);
  }
}

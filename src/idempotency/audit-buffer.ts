/**
 * Audit rows for attempts answered from Redis alone (replays, 409s, 422s), written in batches
 * off the hot path. The window a crash can lose is what is buffered: at most `batchSizeMax` rows
 * or `flushIntervalMs` of them (docs/idempotency.md). Attempts that touch Postgres are audited in
 * the same statement as their key read or write, and are never lost.
 *
 * The rows are compact: key, fingerprint, outcome, time, and the request payload only when it
 * differs from the first request's (a 422 mismatch). A replay or a 409 carries the first request
 * again (same fingerprint), whose payload its 'created' row already holds; storing it on every
 * replay made each one cost about 9 KB (docs/security.md, "Audit and data"). The INSERT is
 * `writeAuditBatch` in src/idempotency/key-row.ts.
 */
import type { Database } from '../platform/database';
import type { KeyedRequest } from './types';
import type { IdempotencyOutcome } from './outcomes';
import { writeAuditBatch, type AuditedAttempt } from './key-row';

export interface AuditBufferOptions {
  readonly flushIntervalMs: number;
  readonly batchSizeMax: number;
  /** Called with the count of rows that could not be written. */
  readonly onLost: (count: number) => void;
}

export class AuditBuffer {
  private rows: AuditedAttempt[] = [];
  private flushing: Promise<void> = Promise.resolve();
  private readonly timer: NodeJS.Timeout;

  constructor(
    private readonly db: Database,
    private readonly options: AuditBufferOptions,
  ) {
    this.timer = setInterval(() => void this.flush(), options.flushIntervalMs);
    this.timer.unref();
  }

  add(request: KeyedRequest, outcome: IdempotencyOutcome): void {
    this.rows.push({ request, outcome });
    if (this.rows.length >= this.options.batchSizeMax) void this.flush();
  }

  /** Writes what is buffered in one INSERT. Safe to call at any time; calls queue behind each other. */
  flush(): Promise<void> {
    this.flushing = this.flushing.then(() => this.writeBatch());
    return this.flushing;
  }

  async close(): Promise<void> {
    clearInterval(this.timer);
    await this.flush();
  }

  private async writeBatch(): Promise<void> {
    if (this.rows.length === 0) return;
    const batch = this.rows.splice(0, this.rows.length);
    try {
      await writeAuditBatch(this.db, batch);
    } catch {
      this.options.onLost(batch.length);
    }
  }
}

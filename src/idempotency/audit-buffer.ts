/**
 * Audit rows for attempts answered from Redis alone (replays, 409s, 422s), written in batches
 * off the hot path. The window a crash can lose is what is buffered: at most `batchSizeMax` rows
 * or `flushIntervalMs` of them (docs/idempotency.md). Attempts that touch Postgres are audited in
 * the same statement as their key read or write, and are never lost.
 *
 * The rows are compact: key, fingerprint, outcome, time, and the request payload only when it
 * differs from the first request's (a 422 mismatch). A replay or a 409 carries the first request
 * again (same fingerprint), whose payload its 'created' row already holds; storing it on every
 * replay made each one cost about 9 KB (docs/security.md, "Audit and data").
 */
import type { Database } from '../platform/database';
import type { KeyedRequest } from './types';
import type { IdempotencyOutcome } from './outcomes';

interface AuditRow {
  readonly request: KeyedRequest;
  readonly outcome: IdempotencyOutcome;
}

/** The payload a Redis-answered attempt keeps: only a request other than the first one's. */
function payloadOf(row: AuditRow): string | null {
  return row.outcome === 'mismatch' ? row.request.requestPayload : null;
}

export interface AuditBufferOptions {
  readonly flushIntervalMs: number;
  readonly batchSizeMax: number;
  /** Called with the count of rows that could not be written. */
  readonly onLost: (count: number) => void;
}

export class AuditBuffer {
  private rows: AuditRow[] = [];
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
    const column = <T>(pick: (row: AuditRow) => T): T[] => batch.map(pick);
    try {
      await this.db.$executeRaw`
        INSERT INTO idempotency_audit (merchant_id, key, operation, fingerprint, request_payload, outcome, answered_from)
        SELECT merchant_id, key, operation, fingerprint, request_payload, outcome, 'redis'
        FROM unnest(${column((row) => row.request.merchantId)}::text[], ${column((row) => row.request.key)}::text[],
                    ${column((row) => row.request.operation)}::text[], ${column((row) => row.request.fingerprint)}::text[],
                    ${column(payloadOf)}::text[], ${column((row) => row.outcome)}::text[])
             AS batch (merchant_id, key, operation, fingerprint, request_payload, outcome)`;
    } catch {
      this.options.onLost(batch.length);
    }
  }
}

/**
 * Retention: idempotency keys past IDEMPOTENCY_RETENTION_HOURS are purged from Postgres in
 * bounded batches, only COMPLETED and ABANDONED ones; a key in flight (at any recovery point) is
 * never purged. After the purge a reused key is treated as new. Charges, refunds, ledger and
 * audit rows are never deleted; a charge keeps its row when its key goes (the reference is
 * cleared).
 */
import type { Database } from '../platform/database';

export interface PurgeOptions {
  readonly retentionHours: number;
  readonly batchSizeMax: number;
  /** Bound on the batches of one purge, so a single run cannot go on forever. */
  readonly batchesMax?: number;
}

/** Returns how many keys were purged. */
export async function purgeExpiredIdempotencyKeys(db: Database, options: PurgeOptions): Promise<number> {
  let purged = 0;
  for (let batch = 0; batch < (options.batchesMax ?? 1_000); batch += 1) {
    const deleted = await db.$executeRaw`
      DELETE FROM idempotency_keys
       WHERE id IN (
         SELECT id FROM idempotency_keys
          WHERE state IN ('COMPLETED', 'ABANDONED')
            AND updated_at < now() - ${options.retentionHours} * interval '1 hour'
          ORDER BY updated_at
          LIMIT ${options.batchSizeMax}
          FOR UPDATE SKIP LOCKED)`;
    purged += deleted;
    if (deleted < options.batchSizeMax) break;
  }
  return purged;
}

/**
 * Retention: idempotency keys past IDEMPOTENCY_RETENTION_HOURS are purged from Postgres in
 * bounded batches, only COMPLETED and ABANDONED ones; a key in flight (at any recovery point) is
 * never purged. Each purged key leaves a tombstone (merchant, key, operation, fingerprint, first
 * request time) in the same statement, kept IDEMPOTENCY_TOMBSTONE_DAYS: a late retry is answered
 * 422 IDEMPOTENCY_KEY_EXPIRED instead of being charged again. Charges, refunds, ledger and audit
 * rows are never deleted; a charge keeps its row when its key goes (the reference is cleared).
 * When an operator purges (`audit` given), each batch's admin_audit row is written by the batch's
 * own statement: a purged batch and its audit row commit together, without a long transaction.
 */
import type { Database } from '../platform/database';

export const tombstoneDaysDefault = 30;

export interface PurgeOptions {
  readonly retentionHours: number;
  readonly batchSizeMax: number;
  /** Bound on the batches of one purge, so a single run cannot go on forever. */
  readonly batchesMax?: number;
  /** How long a purged key's tombstone is kept (IDEMPOTENCY_TOMBSTONE_DAYS). */
  readonly tombstoneDays?: number;
  /** Set when an operator asked: each batch that purged something appends an admin_audit row. */
  readonly audit?: { readonly actor: string; readonly action: string };
}

/** Returns how many keys were purged. */
export async function purgeExpiredIdempotencyKeys(db: Database, options: PurgeOptions): Promise<number> {
  const audit = auditStamp(options);
  let purged = 0;
  for (let batch = 0; batch < (options.batchesMax ?? 1_000); batch += 1) {
    const rows = await db.$queryRaw<{ deleted: number }[]>`
      WITH deleted AS (
        DELETE FROM idempotency_keys
         WHERE id IN (
           SELECT id FROM idempotency_keys
            WHERE state IN ('COMPLETED', 'ABANDONED')
              AND updated_at < now() - ${options.retentionHours} * interval '1 hour'
            ORDER BY updated_at
            LIMIT ${options.batchSizeMax}
            FOR UPDATE SKIP LOCKED)
        RETURNING merchant_id, key, operation, fingerprint, created_at
      ), tombstones AS (
        INSERT INTO idempotency_tombstones (merchant_id, key, operation, fingerprint, first_request_at)
        SELECT merchant_id, key, operation, fingerprint, created_at FROM deleted
        ON CONFLICT (merchant_id, key) DO UPDATE
          SET operation = excluded.operation, fingerprint = excluded.fingerprint,
              first_request_at = excluded.first_request_at, purged_at = now()
      ), audited AS (
        INSERT INTO admin_audit (actor, action, arguments, result)
        SELECT ${audit.actor}, ${audit.action}, '{}', json_build_object('purgedKeys', count(*), 'batch', ${batch + 1}::int)::text
          FROM deleted HAVING ${audit.enabled}::boolean AND count(*) > 0
      )
      SELECT count(*)::int AS deleted FROM deleted`;
    const deleted = rows[0]?.deleted ?? 0;
    purged += deleted;
    if (deleted < options.batchSizeMax) break;
  }
  await purgeOldTombstones(db, options);
  return purged;
}

async function purgeOldTombstones(db: Database, options: PurgeOptions): Promise<void> {
  const tombstoneDays = options.tombstoneDays ?? tombstoneDaysDefault;
  const audit = auditStamp(options);
  for (let batch = 0; batch < (options.batchesMax ?? 1_000); batch += 1) {
    const rows = await db.$queryRaw<{ deleted: number }[]>`
      WITH deleted AS (
        DELETE FROM idempotency_tombstones
         WHERE (merchant_id, key) IN (
           SELECT merchant_id, key FROM idempotency_tombstones
            WHERE purged_at < now() - ${tombstoneDays} * interval '1 day'
            LIMIT ${options.batchSizeMax})
        RETURNING 1
      ), audited AS (
        INSERT INTO admin_audit (actor, action, arguments, result)
        SELECT ${audit.actor}, ${audit.action}, '{}',
               json_build_object('purgedTombstones', count(*), 'batch', ${batch + 1}::int)::text
          FROM deleted HAVING ${audit.enabled}::boolean AND count(*) > 0
      )
      SELECT count(*)::int AS deleted FROM deleted`;
    if ((rows[0]?.deleted ?? 0) < options.batchSizeMax) break;
  }
}

/** The audit columns as statement parameters; with no operator, `enabled` is false and no row is written. */
function auditStamp(options: PurgeOptions): { enabled: boolean; actor: string; action: string } {
  return options.audit === undefined
    ? { enabled: false, actor: '', action: '' }
    : { enabled: true, actor: options.audit.actor, action: options.audit.action };
}

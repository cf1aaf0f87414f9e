/**
 * The Postgres tier of the idempotency store: the truth.
 *
 * Each function is one SQL statement, so each is atomic on its own and costs one round trip.
 * - claimKey:       INSERT … ON CONFLICT DO NOTHING, and the audit row 'created', together.
 * - resolveExisting: takes over an expired or released lease (lock_token + 1, database clock) or
 *                   reads the row, decides the outcome in SQL, and appends the audit row, together.
 * - saveAuthorized: records the acquirer's answer (recovery point AUTHORIZED) under the lease.
 * - releaseKey:     clears the lease after a transient failure (row, id and fingerprint stay) and
 *                   appends the audit row 'released'.
 * Writes under a lease check `lock_token` in the same statement: a process that lost its lease
 * writes nothing (docs/contract.md §11, fencing).
 */
import type { Queryable } from '../platform/database';
import type { HeldKey, KeyedRequest, RecoveryPoint, StoredResponse } from './types';
import type { IdempotencyOutcome } from './outcomes';

export interface KeyRow {
  id: string;
  lock_token: string;
  recovery_point: RecoveryPoint | 'COMPLETED';
  acquirer_result: string | null;
  request_payload: string;
  first_request_at: string;
}

export async function claimKey(db: Queryable, request: KeyedRequest, leaseMs: number): Promise<HeldKey | undefined> {
  const rows = await db.$queryRaw<KeyRow[]>`
    WITH inserted AS (
      INSERT INTO idempotency_keys (merchant_id, key, operation, fingerprint, request_payload, locked_until)
      SELECT ${request.merchantId}, ${request.key}, ${request.operation}, ${request.fingerprint},
             ${request.requestPayload}, now() + ${leaseMs} * interval '1 millisecond'
       -- A purged key's tombstone keeps it from being claimed anew: a late retry is not a new charge.
       WHERE NOT EXISTS (SELECT 1 FROM idempotency_tombstones t
                          WHERE t.merchant_id = ${request.merchantId} AND t.key = ${request.key})
      ON CONFLICT (merchant_id, key) DO NOTHING
      RETURNING id, lock_token, recovery_point, acquirer_result, request_payload, created_at
    ), audited AS (
      INSERT INTO idempotency_audit (merchant_id, key, operation, fingerprint, request_payload, outcome, answered_from)
      SELECT ${request.merchantId}, ${request.key}, ${request.operation}, ${request.fingerprint},
             ${request.requestPayload}, 'created', 'postgres'
      FROM inserted
    )
    SELECT id::text, lock_token::text, recovery_point, acquirer_result, request_payload,
           iso8601(created_at) AS first_request_at
    FROM inserted`;
  const row = rows[0];
  return row === undefined ? undefined : toHeldKey(row);
}

export type ExistingResolution =
  | { readonly outcome: 'resumed'; readonly held: HeldKey }
  | { readonly outcome: 'replayed'; readonly response: StoredResponse; readonly retentionSecondsLeft: number }
  | { readonly outcome: 'in_progress'; readonly leaseSecondsLeft: number; readonly firstRequestAt: string }
  | { readonly outcome: 'mismatch'; readonly firstRequestAt: string }
  /** No row: it vanished between the insert and this read (purged), or a tombstone kept it from being claimed. */
  | { readonly outcome: 'vanished' };

interface ResolvedRow extends KeyRow {
  outcome: Extract<IdempotencyOutcome, 'resumed' | 'replayed' | 'in_progress' | 'mismatch'>;
  lease_seconds_left: number | null;
  retention_seconds_left: number;
  response_status: number | null;
  response_code: string | null;
  response_body: string | null;
}

export async function resolveExisting(
  db: Queryable,
  request: KeyedRequest,
  leaseMs: number,
  retentionHours: number,
): Promise<ExistingResolution> {
  // Both CTEs read one snapshot. If another request takes the lease over first, our UPDATE
  // re-checks the newer row, matches nothing, and the SELECT still shows the old row: the outcome
  // is then in_progress, which is true.
  const rows = await db.$queryRaw<ResolvedRow[]>`
    WITH taken AS (
      UPDATE idempotency_keys
         SET lock_token = lock_token + 1,
             locked_until = now() + ${leaseMs} * interval '1 millisecond',
             state = 'IN_PROGRESS',
             updated_at = now()
       WHERE merchant_id = ${request.merchantId} AND key = ${request.key}
         AND fingerprint = ${request.fingerprint}
         AND state IN ('IN_PROGRESS', 'ABANDONED')
         AND (locked_until IS NULL OR locked_until < now())
      RETURNING *
    ), current_row AS (
      SELECT taken.*, true AS was_taken FROM taken
      UNION ALL
      SELECT k.*, false AS was_taken FROM idempotency_keys k
       WHERE k.merchant_id = ${request.merchantId} AND k.key = ${request.key}
         AND NOT EXISTS (SELECT 1 FROM taken)
    ), resolved AS (
      SELECT current_row.*,
             CASE WHEN was_taken THEN 'resumed'
                  WHEN fingerprint <> ${request.fingerprint} THEN 'mismatch'
                  WHEN state = 'COMPLETED' THEN 'replayed'
                  ELSE 'in_progress' END AS outcome,
             ceil(extract(epoch FROM (locked_until - now())))::int AS lease_seconds_left,
             -- Retention counts from updated_at: a replay must not outlive the row in Redis.
             floor(extract(epoch FROM (updated_at + ${retentionHours} * interval '1 hour' - now())))::int
               AS retention_seconds_left
      FROM current_row
    ), audited AS (
      INSERT INTO idempotency_audit (merchant_id, key, operation, fingerprint, request_payload, outcome, answered_from)
      SELECT ${request.merchantId}, ${request.key}, ${request.operation}, ${request.fingerprint},
             ${request.requestPayload}, outcome, 'postgres'
      FROM resolved
    )
    SELECT id::text, lock_token::text, recovery_point, acquirer_result, request_payload,
           iso8601(created_at) AS first_request_at, outcome, lease_seconds_left, retention_seconds_left,
           response_status, response_code, response_body
    FROM resolved`;
  const row = rows[0];
  if (row === undefined) return { outcome: 'vanished' };
  switch (row.outcome) {
    case 'resumed':
      return { outcome: 'resumed', held: toHeldKey(row) };
    case 'replayed':
      return {
        outcome: 'replayed',
        response: toStoredResponse(row),
        retentionSecondsLeft: row.retention_seconds_left,
      };
    case 'in_progress':
      return {
        outcome: 'in_progress',
        leaseSecondsLeft: row.lease_seconds_left ?? 0,
        firstRequestAt: row.first_request_at,
      };
    case 'mismatch':
      return { outcome: 'mismatch', firstRequestAt: row.first_request_at };
  }
}

/** What a 409 or 422 answered from Redis tells about the row: when it was first requested, its lease. */
export async function readKeySummary(
  db: Queryable,
  merchantId: string,
  key: string,
): Promise<{ firstRequestAt: string; leaseSecondsLeft: number } | undefined> {
  const rows = await db.$queryRaw<{ first_request_at: string; lease_seconds_left: number | null }[]>`
    SELECT iso8601(created_at) AS first_request_at,
           ceil(extract(epoch FROM (locked_until - now())))::int AS lease_seconds_left
      FROM idempotency_keys WHERE merchant_id = ${merchantId} AND key = ${key}`;
  const row = rows[0];
  return row === undefined
    ? undefined
    : { firstRequestAt: row.first_request_at, leaseSecondsLeft: row.lease_seconds_left ?? 0 };
}

/**
 * The tombstone of a purged key, if it has one, with the attempt audited ('expired') in the same
 * statement. A different fingerprint is still a reuse (422 IDEMPOTENCY_KEY_REUSED).
 */
export async function readTombstone(
  db: Queryable,
  request: KeyedRequest,
): Promise<{ sameRequest: boolean; firstRequestAt: string } | undefined> {
  const rows = await db.$queryRaw<{ same_request: boolean; first_request_at: string }[]>`
    WITH tombstone AS (
      SELECT fingerprint = ${request.fingerprint} AS same_request, iso8601(first_request_at) AS first_request_at
        FROM idempotency_tombstones WHERE merchant_id = ${request.merchantId} AND key = ${request.key}
    ), audited AS (
      INSERT INTO idempotency_audit (merchant_id, key, operation, fingerprint, request_payload, outcome, answered_from)
      SELECT ${request.merchantId}, ${request.key}, ${request.operation}, ${request.fingerprint},
             ${request.requestPayload}, CASE WHEN same_request THEN 'expired' ELSE 'mismatch' END, 'postgres'
        FROM tombstone
    )
    SELECT same_request, first_request_at FROM tombstone`;
  const row = rows[0];
  return row === undefined ? undefined : { sameRequest: row.same_request, firstRequestAt: row.first_request_at };
}

/** Saves the acquirer's answer. False when the lease was lost: someone else now holds the key. */
export async function saveAuthorized(db: Queryable, held: HeldKey, acquirerResult: string): Promise<boolean> {
  const updated = await db.$executeRaw`
    UPDATE idempotency_keys
       SET recovery_point = 'AUTHORIZED', acquirer_result = ${acquirerResult}, updated_at = now()
     WHERE id = ${held.id}::bigint AND lock_token = ${held.lockToken}::bigint AND state = 'IN_PROGRESS'`;
  return updated === 1;
}

/** Gives the key back after a transient failure. The recovery point stays where it was. */
export async function releaseKey(db: Queryable, request: KeyedRequest, held: HeldKey): Promise<boolean> {
  const rows = await db.$queryRaw<{ released: number }[]>`
    WITH released AS (
      UPDATE idempotency_keys SET locked_until = NULL, updated_at = now()
       WHERE id = ${held.id}::bigint AND lock_token = ${held.lockToken}::bigint AND state = 'IN_PROGRESS'
      RETURNING id
    ), audited AS (
      INSERT INTO idempotency_audit (merchant_id, key, operation, fingerprint, request_payload, outcome, answered_from)
      SELECT ${request.merchantId}, ${request.key}, ${request.operation}, ${request.fingerprint},
             ${request.requestPayload}, 'released', 'postgres'
      FROM released
    )
    SELECT count(*)::int AS released FROM released`;
  return rows[0]?.released === 1;
}

/** Reads a completed key's stored response, for the completer and for operators. */
export async function findStoredResponse(db: Queryable, keyId: string): Promise<StoredResponse | undefined> {
  const rows = await db.$queryRaw<
    Pick<ResolvedRow, 'response_status' | 'response_code' | 'response_body' | 'first_request_at'>[]
  >`
    SELECT response_status, response_code, response_body, iso8601(created_at) AS first_request_at
      FROM idempotency_keys WHERE id = ${keyId}::bigint AND state = 'COMPLETED'`;
  const row = rows[0];
  return row === undefined ? undefined : toStoredResponse(row);
}

export function toHeldKey(row: KeyRow): HeldKey {
  if (row.recovery_point === 'COMPLETED') throw new Error('invariant violated: a held key is never COMPLETED');
  return {
    id: row.id,
    lockToken: row.lock_token,
    recoveryPoint: row.recovery_point,
    acquirerResult: row.acquirer_result,
    requestPayload: row.request_payload,
    firstRequestAt: row.first_request_at,
  };
}

function toStoredResponse(
  row: Pick<ResolvedRow, 'response_status' | 'response_code' | 'response_body' | 'first_request_at'>,
): StoredResponse {
  if (row.response_status === null || row.response_body === null) {
    throw new Error('invariant violated: a COMPLETED key has a stored response');
  }
  return {
    status: row.response_status,
    code: row.response_code,
    body: row.response_body,
    firstRequestAt: row.first_request_at,
  };
}

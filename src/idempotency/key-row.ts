/**
 * The one owner of a key's row (docs/contract.md §3): every statement that changes
 * `idempotency_keys` is in this file, and so is every INSERT into `idempotency_audit`.
 *
 * Takes: a keyed request (to claim a key or take it over) or a HeldKey (to write under its lease).
 * Rows it writes, each function one SQL statement (atomic on its own, one round trip):
 *   claimKey            INSERT … ON CONFLICT DO NOTHING (refused by a tombstone) + audit 'created'
 *   resolveExisting     takes an expired or released lease over (resumed) or reads the row
 *                       (replayed / in_progress / mismatch), decided in SQL, + the audit row
 *   takeOverStaleKeys   the completer's takeover of keys whose lease ran out long ago
 *   saveRecoveryPoint   STARTED → RESERVED (a refund's reservation) or → AUTHORIZED, under the lease
 *   completeKey         → COMPLETED with the stored response: charges, refunds and stored refusals;
 *                       the request payload loses its card source (only charges.source keeps it)
 *   releaseKey          clears the lease after a transient failure (row, id, fingerprint stay) + audit
 *   releaseReservedKey  a refund at RESERVED back to STARTED, lease cleared, amount kept (the completer)
 *   releaseOrAbandon    the completer gives a key back, or marks an old one ABANDONED
 *   purgeExpiredIdempotencyKeys  retention: COMPLETED and ABANDONED rows → tombstones
 *   writeAuditBatch     the audit rows of attempts answered from Redis alone (src/idempotency/audit-buffer.ts)
 * Outcomes: a held key (created, resumed), a stored response (replayed), in_progress, mismatch or
 * vanished; a write under a lease answers whether the lease still held.
 * The statements of every request (claimKey, resolveExisting, and every write under a lease, so
 * recordCharge) run as named prepared statements on the pg pool (`queryRows`,
 * src/platform/database.ts); inside a transaction, through it.
 *
 * Fencing is written once, in `writeUnderLease`: its UPDATE matches only
 * `id AND lock_token AND state = 'IN_PROGRESS'`, so a process that lost its lease writes nothing
 * (docs/contract.md §11). A use case that must change other tables atomically with the key (the
 * charge and its outbox event; the refund, the charge's amounts and the event; a reservation)
 * passes its own CTEs as a `FollowUp`: they read `key_row`, the key row just written, so they run
 * only when the fence held, in the same statement.
 */
import {
  noSql,
  postgresErrorCode,
  queryRows,
  sql,
  type Database,
  type Queryable,
  type Sql,
} from '../platform/database';
import type { HeldKey, KeyedOperation, KeyedRequest, RecoveryPoint, StoredResponse } from './types';
import type { IdempotencyOutcome } from './outcomes';

export type KeyState = 'IN_PROGRESS' | 'COMPLETED' | 'ABANDONED';

interface KeyRow {
  id: string;
  lock_token: string;
  recovery_point: RecoveryPoint | 'COMPLETED';
  acquirer_result: string | null;
  request_payload: string;
  first_request_at: string;
}

/**
 * The audit row of an attempt, for each row `source` yields, in the statement that decided it.
 * Like every audit row it is compact and holds no card source (docs/security.md, "Audit and
 * data"): the payload only for the key's first request ('created') and for a different one
 * ('mismatch'), since every other attempt carries the first request again (same fingerprint);
 * and that payload with the source replaced by its SHA-256 (`request_without_source`, defined in
 * db/migrations/*_source_stored_once.sql; a CHECK refuses a source in the table).
 */
function auditStep(request: KeyedRequest, outcome: Sql, source: Sql): Sql {
  return sql`
    INSERT INTO idempotency_audit (merchant_id, key, operation, fingerprint, request_payload, outcome, answered_from)
    SELECT ${request.merchantId}, ${request.key}, ${request.operation}, ${request.fingerprint},
           CASE WHEN attempt.outcome IN ('created', 'mismatch')
                THEN request_without_source(${request.requestPayload}) END,
           attempt.outcome, 'postgres'
      FROM (SELECT ${outcome} AS outcome FROM ${source}) AS attempt`;
}

/** A new lease: the token moves on (so the old holder is fenced out), on the database's clock. */
function newLease(leaseMs: number): Sql {
  return sql`lock_token = lock_token + 1, locked_until = now() + ${leaseMs} * interval '1 millisecond'`;
}

/** Raised by the trigger on idempotency_keys when a tombstone committed while the claim waited. */
const claimRefusedByTombstone = 'IK001';

export async function claimKey(db: Queryable, request: KeyedRequest, leaseMs: number): Promise<HeldKey | undefined> {
  let rows: KeyRow[];
  try {
    rows = await claimStatement(db, request, leaseMs);
  } catch (error) {
    // Not claimed: the caller reads the key again, finds no row, and answers from the tombstone.
    if (postgresErrorCode(error) === claimRefusedByTombstone) return undefined;
    throw error;
  }
  const row = rows[0];
  return row === undefined ? undefined : toHeldKey(row);
}

function claimStatement(db: Queryable, request: KeyedRequest, leaseMs: number): Promise<KeyRow[]> {
  return queryRows<KeyRow>(
    db,
    sql`
    WITH inserted AS (
      INSERT INTO idempotency_keys (merchant_id, key, operation, fingerprint, request_payload, locked_until)
      SELECT ${request.merchantId}, ${request.key}, ${request.operation}, ${request.fingerprint},
             ${request.requestPayload}, now() + ${leaseMs} * interval '1 millisecond'
       -- A purged key's tombstone keeps it from being claimed anew: a late retry is not a new charge.
       WHERE NOT EXISTS (SELECT 1 FROM idempotency_tombstones t
                          WHERE t.merchant_id = ${request.merchantId} AND t.key = ${request.key})
      ON CONFLICT (merchant_id, key) DO NOTHING
      RETURNING id, lock_token, recovery_point, acquirer_result, request_payload, created_at
    ), audited AS (${auditStep(request, sql`'created'`, sql`inserted`)})
    SELECT id::text, lock_token::text, recovery_point, acquirer_result, request_payload,
           iso8601(created_at) AS first_request_at
    FROM inserted`,
  );
}

export type ExistingResolution =
  | { readonly outcome: 'resumed'; readonly held: HeldKey }
  | { readonly outcome: 'replayed'; readonly response: StoredResponse; readonly retentionSecondsLeft: number }
  | { readonly outcome: 'in_progress'; readonly leaseSecondsLeft: number; readonly firstRequestAt: string }
  | { readonly outcome: 'mismatch'; readonly firstRequestAt: string }
  /** No row: it vanished between the insert and this read (purged), or a tombstone kept it from being claimed. */
  | { readonly outcome: 'vanished' };

interface StoredResponseColumns {
  response_status: number | null;
  response_code: string | null;
  response_body: string | null;
  first_request_at: string;
}

interface ResolvedRow extends KeyRow, StoredResponseColumns {
  outcome: Extract<IdempotencyOutcome, 'resumed' | 'replayed' | 'in_progress' | 'mismatch'>;
  lease_seconds_left: number | null;
  retention_seconds_left: number;
}

/** The takeover (resumed) or the read of a key that exists, with its audit row, in one statement. */
export async function resolveExisting(
  db: Queryable,
  request: KeyedRequest,
  leaseMs: number,
  retentionHours: number,
): Promise<ExistingResolution> {
  // Both CTEs read one snapshot. If another request takes the lease over first, our UPDATE
  // re-checks the newer row, matches nothing, and the SELECT still shows the old row: the outcome
  // is then in_progress, which is true.
  const rows = await queryRows<ResolvedRow>(
    db,
    sql`
    WITH taken AS (
      UPDATE idempotency_keys
         SET ${newLease(leaseMs)}, state = 'IN_PROGRESS', updated_at = now()
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
    ), audited AS (${auditStep(request, sql`outcome`, sql`resolved`)})
    SELECT id::text, lock_token::text, recovery_point, acquirer_result, request_payload,
           iso8601(created_at) AS first_request_at, outcome, lease_seconds_left, retention_seconds_left,
           response_status, response_code, response_body
    FROM resolved`,
  );
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
      ${auditStep(request, sql`CASE WHEN same_request THEN 'expired' ELSE 'mismatch' END`, sql`tombstone`)}
    )
    SELECT same_request, first_request_at FROM tombstone`;
  const row = rows[0];
  return row === undefined ? undefined : { sameRequest: row.same_request, firstRequestAt: row.first_request_at };
}

/** A key the completer took over, with the request it was claimed for. */
export interface StaleKey {
  readonly request: KeyedRequest;
  readonly held: HeldKey;
}

export interface StaleKeyOptions {
  readonly graceMs: number;
  readonly leaseMs: number;
  readonly batchSizeMax: number;
}

/**
 * The completer's takeover: keys whose lease ran out more than `graceMs` ago, under a new lease,
 * longest untouched first (so keys it keeps releasing take turns with the rest).
 * FOR UPDATE SKIP LOCKED, so several completers may run at once without taking the same key.
 */
export async function takeOverStaleKeys(db: Queryable, options: StaleKeyOptions): Promise<StaleKey[]> {
  const rows = await db.$queryRaw<
    (KeyRow & { merchant_id: string; key: string; operation: KeyedOperation; fingerprint: string })[]
  >`
    WITH candidates AS (
      SELECT id FROM idempotency_keys
       WHERE state = 'IN_PROGRESS'
         -- A refund at STARTED has reserved and authorized nothing: its client's retry decides.
         AND (operation = 'createCharge' OR recovery_point <> 'STARTED')
         AND coalesce(locked_until, updated_at) < now() - ${options.graceMs} * interval '1 millisecond'
       -- Longest untouched first, never lowest id: a key the completer releases (nothing
       -- authorized, its client gone) goes to the back, so such keys cannot fill every batch and
       -- starve a key with a higher id that hides an authorization.
       ORDER BY coalesce(locked_until, updated_at), id
       LIMIT ${options.batchSizeMax}
       FOR UPDATE SKIP LOCKED
    )
    UPDATE idempotency_keys k
       SET ${newLease(options.leaseMs)}, updated_at = now()
      FROM candidates
     WHERE k.id = candidates.id
    RETURNING k.id::text, k.lock_token::text, k.recovery_point, k.acquirer_result, k.request_payload,
              k.merchant_id, k.key, k.operation, k.fingerprint, iso8601(k.created_at) AS first_request_at`;
  return rows.map((row) => ({
    request: {
      merchantId: row.merchant_id,
      key: row.key,
      operation: row.operation,
      fingerprint: row.fingerprint,
      requestPayload: row.request_payload,
    },
    held: toHeldKey(row),
  }));
}

/**
 * Data-modifying CTEs that a use case runs in the same statement as a write under a lease. Each
 * may read `key_row (id, state)`, the key row just written: empty when the fence did not hold, so
 * they then change nothing.
 */
export interface FollowUp {
  /** `name AS (…), name AS (…)`. */
  readonly steps: Sql;
  /** A boolean over the steps: true when they did their part (the write then counts as done). */
  readonly done: Sql;
}

/**
 * The one write under a lease: `SET …` on the key row, fenced by id, lock token and state (the
 * fencing predicate, written only here), then the follow-up, in one statement. Returns the row's
 * new state, or undefined when the lease was lost or the follow-up did not do its part; the
 * caller treats both as a lost lease (inside a transaction, throwing rolls the key write back).
 */
async function writeUnderLease(
  db: Queryable,
  held: HeldKey,
  assignments: Sql,
  followUp?: FollowUp,
  atRecoveryPoint?: RecoveryPoint,
): Promise<KeyState | undefined> {
  const rows = await queryRows<{ state: KeyState | null; done: boolean }>(
    db,
    sql`
    WITH key_row AS (
      UPDATE idempotency_keys SET ${assignments}, updated_at = now()
       WHERE id = ${held.id}::bigint AND lock_token = ${held.lockToken}::bigint AND state = 'IN_PROGRESS'
             ${atRecoveryPoint === undefined ? noSql : sql`AND recovery_point = ${atRecoveryPoint}`}
      RETURNING id, state
    )${followUp === undefined ? noSql : sql`, ${followUp.steps}`}
    SELECT (SELECT state FROM key_row) AS state, ${followUp === undefined ? sql`true` : followUp.done} AS done`,
  );
  const row = rows[0];
  return row?.state !== null && row?.state !== undefined && row.done ? row.state : undefined;
}

/**
 * Moves a held key to its next recovery point, saving the progress that point resumes from (the
 * acquirer's answer; a refund's reserved amount). Returns the key as now held, or undefined when
 * the lease was lost: someone else holds the key now.
 */
export async function saveRecoveryPoint(
  db: Queryable,
  held: HeldKey,
  recoveryPoint: 'RESERVED' | 'AUTHORIZED',
  progress: string,
  followUp?: FollowUp,
): Promise<HeldKey | undefined> {
  const state = await writeUnderLease(
    db,
    held,
    sql`recovery_point = ${recoveryPoint}, acquirer_result = ${progress}`,
    followUp,
  );
  return state === undefined ? undefined : { ...held, recoveryPoint, acquirerResult: progress };
}

/**
 * Completes the key with the response it will replay. The completion statement of every outcome:
 * a charge, a refund, a stored refusal. `followUp` writes the use case's own rows in the same
 * statement (reading `key_row.id` for their `idempotency_key_id`). False when the lease was lost.
 */
export async function completeKey(
  db: Queryable,
  held: HeldKey,
  response: StoredResponse,
  followUp?: FollowUp,
  acquirerResult?: string,
): Promise<boolean> {
  // A charge saves the acquirer's answer here, with its completion, instead of in an AUTHORIZED commit.
  const answer = acquirerResult === undefined ? noSql : sql`acquirer_result = ${acquirerResult},`;
  const state = await writeUnderLease(
    db,
    held,
    // The raw request stays on the row only while recovery may need it (the completer finishes a
    // charge from it); the completed row keeps it with the card source replaced by its SHA-256, so
    // the source is stored once, on the charge (a CHECK refuses a completed row with a source).
    sql`state = 'COMPLETED', recovery_point = 'COMPLETED', locked_until = NULL, ${answer}
        response_status = ${response.status}, response_code = ${response.code}, response_body = ${response.body},
        request_payload = request_without_source(request_payload), completed_at = now()`,
    followUp,
  );
  return state !== undefined;
}

/** Gives the key back after a transient failure, audited 'released'. The recovery point stays where it was. */
export async function releaseKey(db: Queryable, request: KeyedRequest, held: HeldKey): Promise<boolean> {
  const state = await writeUnderLease(db, held, sql`locked_until = NULL`, {
    steps: sql`audited AS (${auditStep(request, sql`'released'`, sql`key_row`)})`,
    done: sql`true`,
  });
  return state !== undefined;
}

/**
 * A refund key at RESERVED back to STARTED, lease cleared (its progress kept), for the client's retry;
 * `giveBack` returns the reserved amount to the charge in the same statement.
 */
export async function releaseReservedKey(db: Queryable, held: HeldKey, giveBack: FollowUp): Promise<boolean> {
  const state = await writeUnderLease(
    db,
    held,
    // acquirer_result (the refund's progress) stays: the retry asks the acquirer for the same amount
    // under the same derived key, which may yet have recorded it late.
    sql`recovery_point = 'STARTED', locked_until = NULL`,
    giveBack,
    'RESERVED',
  );
  return state !== undefined;
}

/**
 * The completer gives a key it could not finish back for the client's retry; an `abandonable` key
 * older than `abandonAfterHours` is marked ABANDONED instead. Returns the row's new state, or
 * undefined when the lease was lost meanwhile.
 */
export function releaseOrAbandon(
  db: Queryable,
  held: HeldKey,
  abandonable: boolean,
  abandonAfterHours: number,
): Promise<KeyState | undefined> {
  return writeUnderLease(
    db,
    held,
    sql`locked_until = NULL,
        state = CASE WHEN ${abandonable} AND created_at < now() - ${abandonAfterHours} * interval '1 hour'
                     THEN 'ABANDONED' ELSE 'IN_PROGRESS' END`,
  );
}

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

/**
 * Retention: keys past IDEMPOTENCY_RETENTION_HOURS are purged in bounded batches, only COMPLETED
 * and ABANDONED ones; a key in flight (at any recovery point) is never purged. Each purged key
 * leaves a tombstone (merchant, key, operation, fingerprint, first request time) in the same
 * statement, kept IDEMPOTENCY_TOMBSTONE_DAYS: a late retry is answered 422
 * IDEMPOTENCY_KEY_EXPIRED instead of being charged again. Charges, refunds, ledger and audit rows
 * are never deleted; a charge keeps its row when its key goes (the reference is cleared).
 * When an operator purges (`audit` given), each batch's admin_audit row is written by the batch's
 * own statement: a purged batch and its audit row commit together, without a long transaction.
 * Returns how many keys were purged.
 */
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

/** One attempt answered from Redis alone, to audit. */
export interface AuditedAttempt {
  readonly request: KeyedRequest;
  readonly outcome: IdempotencyOutcome;
}

/** The payload a Redis-answered attempt keeps: only a request other than the first one's. */
function payloadOf(attempt: AuditedAttempt): string | null {
  return attempt.outcome === 'mismatch' ? attempt.request.requestPayload : null;
}

/**
 * The audit rows of attempts answered from Redis alone, in one INSERT (answered_from 'redis').
 * Compact: the payload only when it differs from the first request's (src/idempotency/audit-buffer.ts),
 * and never with the card source (auditStep).
 */
export async function writeAuditBatch(db: Queryable, attempts: readonly AuditedAttempt[]): Promise<void> {
  const column = <T>(pick: (attempt: AuditedAttempt) => T): T[] => attempts.map(pick);
  await db.$executeRaw`
    INSERT INTO idempotency_audit (merchant_id, key, operation, fingerprint, request_payload, outcome, answered_from)
    SELECT merchant_id, key, operation, fingerprint, request_without_source(request_payload), outcome, 'redis'
    FROM unnest(${column((row) => row.request.merchantId)}::text[], ${column((row) => row.request.key)}::text[],
                ${column((row) => row.request.operation)}::text[], ${column((row) => row.request.fingerprint)}::text[],
                ${column(payloadOf)}::text[], ${column((row) => row.outcome)}::text[])
         AS batch (merchant_id, key, operation, fingerprint, request_payload, outcome)`;
}

function toHeldKey(row: KeyRow): HeldKey {
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

function toStoredResponse(row: StoredResponseColumns): StoredResponse {
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

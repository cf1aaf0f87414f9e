/**
 * The operators' schema (POST /admin/graphql): outbox and queue state, dead letters with replay,
 * idempotency-key lookup, merchants and their keys, retention, and the reconciliation report.
 * Every mutation and its admin_audit row (who, what, when, the answer) commit in one transaction:
 * a change whose audit row cannot be written is rolled back, so there is no unaudited change.
 * What must follow a change over the network (cache eviction, enqueueing a replay) runs only
 * after the commit; a refused or failed attempt changed nothing and gets an audit row of its own.
 */
import 'reflect-metadata';
import type { Queue } from 'bullmq';
import { printSchema, type GraphQLSchema } from 'graphql';
import { Arg, Ctx, Field, ID, Int, Mutation, ObjectType, Query, Resolver, buildSchema } from 'type-graphql';
import { GatewayError } from '../errors';
import { toGatewayError } from '../graphql/errors';
import type { DeadLetterReplay, DeadLetters } from '../ledger/dead-letters';
import { createMerchant, hashApiKey, newApiKey } from '../merchants/merchants';
import type { LedgerJobData } from '../outbox/queue';
import type { Database, Queryable, Transaction } from '../platform/database';
import type { Logger } from '../platform/logger';
import { purgeExpiredIdempotencyKeys } from '../idempotency/key-row';
import { DateTimeScalar } from '../graphql/scalars';
import { reconcileFully } from './reconciliation';

export interface AdminContext {
  /** Who is acting: a fingerprint of the admin token, never the token. */
  readonly actor: string;
  readonly db: Database;
  readonly deadLetters: DeadLetters;
  readonly ledgerQueue: Queue<LedgerJobData>;
  readonly deadLetterQueue: Queue;
  readonly retentionHours: number;
  readonly purgeBatchSizeMax: number;
  /** IDEMPOTENCY_TOMBSTONE_DAYS: how long a purged key's tombstone is kept. */
  readonly tombstoneDays: number;
  /** Bounds of a change's transaction (below). */
  readonly transaction: AdminTransactionOptions;
  readonly logger: Logger;
  /** Tells every api process to drop the merchant's cached key (revocation, rotation, new limit). */
  readonly merchantChanged: (merchantId: string) => Promise<void>;
  /** Reconciliation facts count only rows older than this (RECONCILIATION_GRACE_MS). */
  readonly reconciliationGraceMs?: number;
}

const pageSizeMax = 100;

function pageSize(first: number | null | undefined): number {
  const size = first ?? 20;
  if (size < 1 || size > pageSizeMax) {
    throw new GatewayError('BAD_USER_INPUT', `first: must be from 1 to ${pageSizeMax}`, { field: 'first' });
  }
  return size;
}

function cursorId(after: string | null | undefined): bigint | null {
  if (after === null || after === undefined) return null;
  if (!/^\d{1,18}$/.test(after))
    throw new GatewayError('BAD_USER_INPUT', 'after: not a cursor from this API', { field: 'after' });
  return BigInt(after);
}

export interface AdminTransactionOptions {
  /** How long to wait for a pool connection: DATABASE_POOL_CONNECT_TIMEOUT_MS. */
  readonly maxWaitMs: number;
  /** How long the whole transaction may stay open before Prisma rolls it back. */
  readonly timeoutMs: number;
}

type AuditArguments = Record<string, unknown>;

function auditText(value: unknown): string {
  // An API key is shown once, to the operator; the trail records that it was shown, never the key.
  return JSON.stringify(value, (key, inner: unknown) => (key === 'apiKey' ? '[shown once]' : inner)) ?? 'null';
}

function appendAudit(db: Queryable, context: AdminContext, action: string, args: AuditArguments, result: string) {
  return db.adminAudit.create({
    data: { actor: context.actor, action, arguments: JSON.stringify(args), result },
    select: { id: true },
  });
}

/**
 * Runs `change` and appends its audit row in one transaction. `afterCommit` runs once both have
 * committed, never inside the transaction (it makes network calls); when it fails, the change
 * stands, and the failure is audited next to it and answered to the operator.
 */
async function audited<T>(
  context: AdminContext,
  action: string,
  args: AuditArguments,
  change: (tx: Transaction) => Promise<T>,
  afterCommit?: (result: T) => Promise<void>,
): Promise<T> {
  let result: T;
  try {
    result = await context.db.$transaction(
      async (tx) => {
        const changed = await change(tx);
        await appendAudit(tx, context, action, args, auditText(changed));
        return changed;
      },
      // Passed explicitly: Prisma's defaults (2 s wait, 5 s open) are not the pool's settings.
      { maxWait: context.transaction.maxWaitMs, timeout: context.transaction.timeoutMs },
    );
  } catch (error) {
    // Rolled back, or refused before any change: nothing changed, and the trail shows the attempt.
    await auditFailure(context, action, args, error, { committed: false });
    throw error;
  }
  if (afterCommit !== undefined) {
    try {
      await afterCommit(result);
    } catch (error) {
      await auditFailure(context, action, args, error, { committed: true });
      throw error;
    }
  }
  return result;
}

/** The audit row of an attempt that failed; if even that cannot be written, the log keeps it. */
async function auditFailure(
  context: AdminContext,
  action: string,
  args: AuditArguments,
  error: unknown,
  facts: Record<string, unknown>,
): Promise<void> {
  const code = toGatewayError(error)?.code ?? 'INTERNAL';
  try {
    await appendAudit(context.db, context, action, args, JSON.stringify({ error: code, ...facts }));
  } catch (auditError) {
    context.logger.error(
      { err: auditError, actor: context.actor, action, arguments: args, error: code, ...facts },
      'admin audit row could not be written for a failed attempt',
    );
  }
}

@ObjectType()
class OutboxStatus {
  @Field(() => Int) backlog!: number;
  @Field(() => Int) oldestUnpublishedAgeSeconds!: number;
  @Field(() => Int) publishedLastMinute!: number;
}

@ObjectType()
class QueueStatus {
  @Field(() => Int) waiting!: number;
  @Field(() => Int) active!: number;
  @Field(() => Int) delayed!: number;
  @Field(() => Int) failed!: number;
  @Field(() => Int) completed!: number;
  @Field(() => Int, { description: 'Jobs waiting in the dead-letter queue.' }) deadLettered!: number;
}

@ObjectType()
class Reconciliation {
  @Field(() => Int) chargesSucceeded!: number;
  @Field(() => Int) chargesFailed!: number;
  @Field(() => Int) refunds!: number;
  @Field(() => Int) outboxEvents!: number;
  @Field(() => Int) outboxUnpublished!: number;
  @Field(() => Int) inboxEvents!: number;
  @Field(() => Int) ledgerTransactions!: number;
  @Field(() => [ID], { description: 'Charges or refunds whose event was applied but have no ledger transaction.' })
  missingLedgerTransactions!: string[];
  @Field(() => [ID], { description: 'Charges or refunds with more than one ledger transaction.' })
  duplicateLedgerTransactions!: string[];
  @Field(() => [ID]) unbalancedLedgerTransactions!: string[];
  @Field(() => Boolean, { description: 'Every ledger transaction sums to zero per currency.' }) balanced!: boolean;
  @Field(() => [ID], { description: 'Outbox event UUIDs (older than the grace) with no inbox row.' })
  unappliedEvents!: string[];
  @Field(() => [ID], { description: 'Approved acquirer charge authorizations that no charge row records.' })
  authorizationsWithoutCharge!: string[];
  @Field(() => [ID], { description: 'Refunds done at the acquirer that no refund row records.' })
  acquirerRefundsWithoutRefund!: string[];
  @Field(() => [ID], { description: 'Charges holding a refund reservation that no live refund holds.' })
  stuckReservations!: string[];
  @Field(() => Boolean, {
    description: 'All of the facts above empty, nothing missing or duplicated, and the ledger balanced.',
  })
  healthy!: boolean;
}

@ObjectType()
class DeadLetter {
  @Field(() => ID) id!: string;
  @Field(() => String) queue!: string;
  @Field(() => String) jobId!: string;
  @Field(() => ID) eventId!: string;
  @Field(() => String) payload!: string;
  @Field(() => String) errorCode!: string;
  @Field(() => String) errorMessage!: string;
  @Field(() => Int) attempts!: number;
  @Field(() => DateTimeScalar) createdAt!: Date;
  @Field(() => DateTimeScalar, { nullable: true }) replayedAt!: Date | null;
  @Field(() => String, { nullable: true }) replayJobId!: string | null;
}

@ObjectType()
class DeadLetterEdge {
  @Field(() => String) cursor!: string;
  @Field(() => DeadLetter) node!: DeadLetter;
}

@ObjectType()
class DeadLetterConnection {
  @Field(() => [DeadLetterEdge]) edges!: DeadLetterEdge[];
  @Field(() => Boolean) hasNextPage!: boolean;
}

@ObjectType()
class IdempotencyAttempt {
  @Field(() => String) outcome!: string;
  @Field(() => String) fingerprint!: string;
  @Field(() => String, {
    nullable: true,
    description: 'Null when this attempt carried the same request as the key’s first (its row has the payload).',
  })
  requestPayload!: string | null;
  @Field(() => String) answeredFrom!: string;
  @Field(() => DateTimeScalar) createdAt!: Date;
}

@ObjectType()
class IdempotencyKeyRecord {
  @Field(() => ID) id!: string;
  @Field(() => ID) merchantId!: string;
  @Field(() => String) key!: string;
  @Field(() => String) operation!: string;
  @Field(() => String) state!: string;
  @Field(() => String) recoveryPoint!: string;
  @Field(() => DateTimeScalar, { nullable: true }) lockedUntil!: Date | null;
  @Field(() => String) lockToken!: string;
  @Field(() => String) fingerprint!: string;
  @Field(() => String) requestPayload!: string;
  @Field(() => Int, { nullable: true }) responseStatus!: number | null;
  @Field(() => String, { nullable: true }) responseCode!: string | null;
  @Field(() => DateTimeScalar) createdAt!: Date;
  @Field(() => DateTimeScalar, { nullable: true }) completedAt!: Date | null;
  @Field(() => [IdempotencyAttempt], { description: 'Every attempt with this key, from the audit table.' })
  attempts!: IdempotencyAttempt[];
}

@ObjectType()
class AdminMerchant {
  @Field(() => ID) id!: string;
  @Field(() => String) name!: string;
  @Field(() => Boolean) hasApiKey!: boolean;
  @Field(() => Int, { nullable: true }) rateLimitPerSecond!: number | null;
  @Field(() => DateTimeScalar) createdAt!: Date;
}

@ObjectType()
class MerchantEdge {
  @Field(() => String) cursor!: string;
  @Field(() => AdminMerchant) node!: AdminMerchant;
}

@ObjectType()
class MerchantConnection {
  @Field(() => [MerchantEdge]) edges!: MerchantEdge[];
  @Field(() => Boolean) hasNextPage!: boolean;
}

@ObjectType()
class CreatedMerchant {
  @Field(() => AdminMerchant) merchant!: AdminMerchant;
  @Field(() => String, { description: 'Shown once; only its hash is stored.' }) apiKey!: string;
}

const merchantColumns = { id: true, name: true, apiKeyHash: true, rateLimitPerSecond: true, createdAt: true } as const;

function toAdminMerchant(row: {
  id: string;
  name: string;
  apiKeyHash: string | null;
  rateLimitPerSecond: number | null;
  createdAt: Date;
}): AdminMerchant {
  return {
    id: row.id,
    name: row.name,
    hasApiKey: row.apiKeyHash !== null,
    rateLimitPerSecond: row.rateLimitPerSecond,
    createdAt: row.createdAt,
  };
}

async function findMerchant(db: Queryable, merchantId: string) {
  const merchant = await db.merchant.findUnique({ where: { id: merchantId }, select: merchantColumns });
  if (merchant === null) throw new GatewayError('NOT_FOUND', `No merchant ${merchantId}.`, { field: 'merchantId' });
  return merchant;
}

/** The same function the key row's completion and the audit use (db/migrations/*_source_stored_once.sql). */
async function requestWithoutSource(db: Queryable, payload: string): Promise<string> {
  const rows = await db.$queryRaw<{ kept: string }[]>`SELECT request_without_source(${payload}) AS kept`;
  return rows[0]?.kept ?? payload;
}

function toDeadLetter(row: {
  id: bigint;
  queue: string;
  jobId: string;
  eventId: bigint;
  payload: string;
  errorCode: string;
  errorMessage: string;
  attempts: number;
  createdAt: Date;
  replayedAt: Date | null;
  replayJobId: string | null;
}): DeadLetter {
  return { ...row, id: row.id.toString(), eventId: row.eventId.toString() };
}

@Resolver()
class AdminResolver {
  @Query(() => OutboxStatus)
  async outboxStatus(@Ctx() context: AdminContext): Promise<OutboxStatus> {
    const [row] = await context.db.$queryRaw<OutboxStatus[]>`
      SELECT (SELECT count(*) FROM outbox_events WHERE published_at IS NULL)::int AS backlog,
             coalesce((SELECT extract(epoch FROM now() - min(created_at)) FROM outbox_events WHERE published_at IS NULL), 0)::int
               AS "oldestUnpublishedAgeSeconds",
             (SELECT count(*) FROM outbox_events WHERE published_at > now() - interval '1 minute')::int AS "publishedLastMinute"`;
    return row ?? { backlog: 0, oldestUnpublishedAgeSeconds: 0, publishedLastMinute: 0 };
  }

  @Query(() => QueueStatus)
  async queueStatus(@Ctx() context: AdminContext): Promise<QueueStatus> {
    const counts = await context.ledgerQueue.getJobCounts('waiting', 'active', 'delayed', 'failed', 'completed');
    const dead = await context.deadLetterQueue.getJobCounts('waiting');
    return {
      waiting: counts.waiting ?? 0,
      active: counts.active ?? 0,
      delayed: counts.delayed ?? 0,
      failed: counts.failed ?? 0,
      completed: counts.completed ?? 0,
      deadLettered: dead.waiting ?? 0,
    };
  }

  @Query(() => Reconciliation)
  reconciliation(@Ctx() context: AdminContext): Promise<Reconciliation> {
    return reconcileFully(context.db, context.reconciliationGraceMs ?? 0);
  }

  @Query(() => DeadLetterConnection)
  async deadLetters(
    @Arg('first', () => Int, { nullable: true }) first: number | null,
    @Arg('after', () => String, { nullable: true }) after: string | null,
    @Ctx() context: AdminContext,
  ): Promise<DeadLetterConnection> {
    const size = pageSize(first);
    const afterId = cursorId(after);
    const rows = await context.db.deadLetter.findMany({
      where: afterId === null ? {} : { id: { gt: afterId } },
      orderBy: { id: 'asc' },
      take: size + 1,
    });
    return {
      edges: rows.slice(0, size).map((row) => ({ cursor: row.id.toString(), node: toDeadLetter(row) })),
      hasNextPage: rows.length > size,
    };
  }

  @Query(() => IdempotencyKeyRecord, { nullable: true })
  async idempotencyKey(
    @Arg('merchantId', () => ID) merchantId: string,
    @Arg('key', () => String) key: string,
    @Ctx() context: AdminContext,
  ): Promise<IdempotencyKeyRecord | null> {
    const row = await context.db.idempotencyKey.findUnique({ where: { merchantId_key: { merchantId, key } } });
    const attempts = await context.db.idempotencyAudit.findMany({
      where: { merchantId, key },
      orderBy: { id: 'asc' },
      take: 1_000,
    });
    if (row === null && attempts.length === 0) return null;
    if (row === null) {
      throw new GatewayError(
        'NOT_FOUND',
        `Key ${key} was purged after retention; its ${attempts.length} audited attempts remain.`,
      );
    }
    return {
      ...row,
      id: row.id.toString(),
      // A key in flight still holds the raw request (recovery needs it); operators see it as the
      // audit keeps it, with the card source replaced by its fingerprint.
      requestPayload: await requestWithoutSource(context.db, row.requestPayload),
      lockToken: row.lockToken.toString(),
      attempts: attempts.map((attempt) => ({ ...attempt })),
    };
  }

  @Query(() => MerchantConnection)
  async merchants(
    @Arg('first', () => Int, { nullable: true }) first: number | null,
    @Arg('after', () => String, { nullable: true }) after: string | null,
    @Ctx() context: AdminContext,
  ): Promise<MerchantConnection> {
    const size = pageSize(first);
    const rows = await context.db.merchant.findMany({
      where: after === null || after === undefined ? {} : { id: { gt: after } },
      orderBy: { id: 'asc' },
      take: size + 1,
      select: merchantColumns,
    });
    return {
      edges: rows.slice(0, size).map((row) => ({ cursor: row.id, node: toAdminMerchant(row) })),
      hasNextPage: rows.length > size,
    };
  }

  @Mutation(() => CreatedMerchant, { description: 'Creates a merchant; its API key is shown once.' })
  createMerchant(@Arg('name', () => String) name: string, @Ctx() context: AdminContext): Promise<CreatedMerchant> {
    return audited(context, 'createMerchant', { name }, async (tx) => {
      if (name.trim().length === 0 || name.length > 200) {
        throw new GatewayError('BAD_USER_INPUT', 'name: must be 1 to 200 characters', { field: 'name' });
      }
      const created = await createMerchant(tx, name);
      return { merchant: toAdminMerchant(await findMerchant(tx, created.merchant.id)), apiKey: created.apiKey };
    });
  }

  @Mutation(() => CreatedMerchant, {
    description: 'Gives the merchant a new API key (shown once); the old one stops working.',
  })
  rotateApiKey(
    @Arg('merchantId', () => ID) merchantId: string,
    @Ctx() context: AdminContext,
  ): Promise<CreatedMerchant> {
    return audited(
      context,
      'rotateApiKey',
      { merchantId },
      async (tx) => {
        await findMerchant(tx, merchantId);
        const apiKey = newApiKey();
        const merchant = await tx.merchant.update({
          where: { id: merchantId },
          data: { apiKeyHash: hashApiKey(apiKey) },
          select: merchantColumns,
        });
        return { merchant: toAdminMerchant(merchant), apiKey };
      },
      () => context.merchantChanged(merchantId),
    );
  }

  @Mutation(() => Boolean, {
    description: 'Removes the merchant’s API key; its requests answer 401 until a new one is issued.',
  })
  revokeApiKey(@Arg('merchantId', () => ID) merchantId: string, @Ctx() context: AdminContext): Promise<boolean> {
    return audited(
      context,
      'revokeApiKey',
      { merchantId },
      async (tx) => {
        await findMerchant(tx, merchantId);
        await tx.merchant.update({ where: { id: merchantId }, data: { apiKeyHash: null } });
        return true;
      },
      () => context.merchantChanged(merchantId),
    );
  }

  @Mutation(() => AdminMerchant, { description: 'Sets the merchant’s own request rate (null: the default).' })
  setMerchantRateLimit(
    @Arg('merchantId', () => ID) merchantId: string,
    @Arg('perSecond', () => Int, { nullable: true }) perSecond: number | null,
    @Ctx() context: AdminContext,
  ): Promise<AdminMerchant> {
    return audited(
      context,
      'setMerchantRateLimit',
      { merchantId, perSecond },
      async (tx) => {
        if (perSecond !== null && (perSecond < 1 || perSecond > 1_000_000)) {
          throw new GatewayError('BAD_USER_INPUT', 'perSecond: must be from 1 to 1,000,000, or null', {
            field: 'perSecond',
          });
        }
        await findMerchant(tx, merchantId);
        const merchant = await tx.merchant.update({
          where: { id: merchantId },
          data: { rateLimitPerSecond: perSecond },
          select: merchantColumns,
        });
        return toAdminMerchant(merchant);
      },
      () => context.merchantChanged(merchantId),
    );
  }

  @Mutation(() => DeadLetter, {
    description:
      'Replays a dead letter under a new job id (evt_<uid>-r<id>). The replay and its audit row commit first, ' +
      'then the job is queued; if queueing fails the answer is 503, and calling again queues the same job id.',
  })
  async replayDeadLetter(@Arg('id', () => ID) id: string, @Ctx() context: AdminContext): Promise<DeadLetter> {
    let replay: DeadLetterReplay | undefined;
    return audited(
      context,
      'replayDeadLetter',
      { id },
      async (tx) => {
        if (!/^\d{1,18}$/.test(id)) throw new GatewayError('NOT_FOUND', `No dead letter ${id}.`, { field: 'id' });
        replay = await context.deadLetters.markReplayed(tx, id);
        if (replay === undefined) throw new GatewayError('NOT_FOUND', `No dead letter ${id}.`, { field: 'id' });
        return toDeadLetter(await tx.deadLetter.findUniqueOrThrow({ where: { id: BigInt(id) } }));
      },
      async () => {
        if (replay === undefined) return;
        await context.deadLetters.enqueueReplay(replay).catch((error: unknown) => {
          throw new GatewayError(
            'TRANSIENT_FAILURE',
            `The replay of dead letter ${id} is recorded, but its job could not be queued; call replayDeadLetter ` +
              'again (it queues the same job id). Until then the sweeper publishes the event again.',
            { retryAfterSeconds: 1, cause: error },
          );
        });
      },
    );
  }

  @Mutation(() => Int, { description: 'Purges COMPLETED and ABANDONED idempotency keys past retention, now.' })
  async purgeExpiredIdempotencyKeys(@Ctx() context: AdminContext): Promise<number> {
    const action = 'purgeExpiredIdempotencyKeys';
    try {
      // Each batch is its own statement, and each writes its own admin_audit row in that statement:
      // a long purge holds no long transaction, and no purged batch is unaudited.
      const purged = await purgeExpiredIdempotencyKeys(context.db, {
        retentionHours: context.retentionHours,
        batchSizeMax: context.purgeBatchSizeMax,
        tombstoneDays: context.tombstoneDays,
        audit: { actor: context.actor, action },
      });
      // A purge that found nothing changed nothing; the attempt is still on the trail.
      if (purged === 0) await appendAudit(context.db, context, action, {}, auditText(0));
      return purged;
    } catch (error) {
      await auditFailure(context, action, {}, error, { committed: 'each purged batch, with its own audit row' });
      throw error;
    }
  }
}

let cached: Promise<GraphQLSchema> | undefined;

export function buildAdminSchema(): Promise<GraphQLSchema> {
  cached ??= buildSchema({ resolvers: [AdminResolver], validate: false, emitSchemaFile: false });
  return cached;
}

export async function printAdminSchema(): Promise<string> {
  return `${printSchema(await buildAdminSchema())}\n`;
}

/** A stable, non-secret name for an admin token in audit rows. */
export function adminActor(token: string): string {
  return `admin:${hashApiKey(token).slice(0, 12)}`;
}

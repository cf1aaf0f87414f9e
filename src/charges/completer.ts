/**
 * The completer: nobody may be left holding money (docs/contract.md §3). Periodically, it takes over
 * keys whose lease ran out more than `graceMs` ago (their holder died, or the
 * client never retried after a release) and:
 *   AUTHORIZED  finishes the charge from what the row holds (request + acquirer answer);
 *   STARTED     asks the acquirer what it recorded under the derived key; if it authorized,
 *               finishes the charge; if not, gives the key back for the client's retry, or marks
 *               it ABANDONED once it is older than `abandonAfterHours`.
 * Refunds: at AUTHORIZED it records the refund; at RESERVED it asks the acquirer and records the
 * refund if it was authorized, else releases the reservation and the key (back to STARTED) in one
 * statement, so no reservation is held forever; the client's retry reserves again.
 * Takeover uses the same lock-token fencing as requests, so a completer racing a late client
 * retry records one charge at most. Rows are claimed FOR UPDATE SKIP LOCKED: several completers
 * may run at once.
 */
import type { Database } from '../platform/database';
import type { Logger } from '../platform/logger';
import type { IdempotencyStore } from '../idempotency/idempotency-store';
import { toHeldKey, type KeyRow } from '../idempotency/postgres-store';
import type { HeldKey, KeyedOperation, KeyedRequest } from '../idempotency/types';
import type { ChargeService } from './create-charge';
import type { RefundService } from './refund-charge';

export interface CompleterOptions {
  readonly intervalMs: number;
  readonly graceMs: number;
  readonly leaseMs: number;
  readonly batchSizeMax: number;
  readonly abandonAfterHours: number;
}

interface ClaimedRow extends KeyRow {
  merchant_id: string;
  key: string;
  operation: KeyedOperation;
  fingerprint: string;
}

export type CompleterAction = 'finished' | 'released' | 'abandoned' | 'failed';

export class Completer {
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<unknown> = Promise.resolve();

  constructor(
    private readonly db: Database,
    private readonly services: { readonly charges: ChargeService; readonly refunds: RefundService },
    private readonly idempotency: IdempotencyStore,
    private readonly logger: Logger,
    private readonly options: CompleterOptions,
    private readonly onAction: (action: CompleterAction) => void = () => undefined,
  ) {}

  start(): void {
    this.timer = setInterval(() => {
      this.running = this.runOnce().catch((error: unknown) =>
        this.logger.warn({ err: error }, 'completer pass failed'),
      );
    }, this.options.intervalMs);
    this.timer.unref();
  }

  async stop(): Promise<void> {
    clearInterval(this.timer);
    await this.running;
  }

  /** One pass over at most `batchSizeMax` keys. Returns what was done to each. */
  async runOnce(): Promise<CompleterAction[]> {
    const rows = await this.db.$queryRaw<ClaimedRow[]>`
      WITH candidates AS (
        SELECT id FROM idempotency_keys
         WHERE state = 'IN_PROGRESS'
           -- A refund at STARTED has reserved and authorized nothing: its client's retry decides.
           AND (operation = 'createCharge' OR recovery_point <> 'STARTED')
           AND coalesce(locked_until, updated_at) < now() - ${this.options.graceMs} * interval '1 millisecond'
         ORDER BY id
         LIMIT ${this.options.batchSizeMax}
         FOR UPDATE SKIP LOCKED
      )
      UPDATE idempotency_keys k
         SET lock_token = k.lock_token + 1,
             locked_until = now() + ${this.options.leaseMs} * interval '1 millisecond',
             updated_at = now()
        FROM candidates
       WHERE k.id = candidates.id
      RETURNING k.id::text, k.lock_token::text, k.recovery_point, k.acquirer_result, k.request_payload,
                k.merchant_id, k.key, k.operation, k.fingerprint, iso8601(k.created_at) AS first_request_at`;
    const actions: CompleterAction[] = [];
    for (const row of rows) {
      const action = await this.finish(row);
      this.onAction(action);
      actions.push(action);
    }
    return actions;
  }

  private async finish(row: ClaimedRow): Promise<CompleterAction> {
    const held = toHeldKey(row);
    try {
      const service = row.operation === 'createCharge' ? this.services.charges : this.services.refunds;
      const response = await service.finishAbandoned(row.merchant_id, held);
      if (response === undefined) {
        if (row.operation === 'refundCharge' && held.recoveryPoint === 'RESERVED') {
          // The acquirer refunded nothing under this key: give the reservation back with the key.
          await this.services.refunds.releaseReservation(held);
          return 'released';
        }
        return await this.releaseOrAbandon(held, row.operation);
      }
      const request: KeyedRequest = {
        merchantId: row.merchant_id,
        key: row.key,
        operation: row.operation,
        fingerprint: row.fingerprint,
        requestPayload: row.request_payload,
      };
      await this.idempotency.complete(request, response);
      this.logger.info({ keyId: row.id }, 'completer recorded a charge whose client never came back');
      return 'finished';
    } catch (error) {
      // The lease runs out and a later pass, or the client's retry, tries again.
      this.logger.warn({ err: error, keyId: row.id }, 'completer could not finish a key');
      return 'failed';
    }
  }

  /** Gives the key back for the client's retry; an old charge key with nothing authorized is abandoned. */
  private async releaseOrAbandon(held: HeldKey, operation: KeyedOperation): Promise<CompleterAction> {
    // Refund keys are never abandoned: a retry can still run them (nothing is reserved at STARTED).
    const abandonable = operation === 'createCharge';
    const rows = await this.db.$queryRaw<{ state: string }[]>`
      UPDATE idempotency_keys
         SET locked_until = NULL, updated_at = now(),
             state = CASE WHEN ${abandonable} AND created_at < now() - ${this.options.abandonAfterHours} * interval '1 hour'
                          THEN 'ABANDONED' ELSE 'IN_PROGRESS' END
       WHERE id = ${held.id}::bigint AND lock_token = ${held.lockToken}::bigint AND state = 'IN_PROGRESS'
      RETURNING state`;
    return rows[0]?.state === 'ABANDONED' ? 'abandoned' : 'released';
  }
}

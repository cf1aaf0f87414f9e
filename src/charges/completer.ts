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
 * Rows: none of its own; every key write is a statement of src/idempotency/key-row.ts.
 * Takeover uses the same lock-token fencing as requests, so a completer racing a late client
 * retry records one charge at most. Rows are claimed FOR UPDATE SKIP LOCKED: several completers
 * may run at once.
 */
import type { Database } from '../platform/database';
import type { Logger } from '../platform/logger';
import type { IdempotencyStore } from '../idempotency/idempotency-store';
import { releaseOrAbandon, takeOverStaleKeys, type StaleKey } from '../idempotency/key-row';
import type { HeldKey, KeyedOperation } from '../idempotency/types';
import type { ChargeService } from './create-charge';
import type { RefundService } from './refund-charge';

export interface CompleterOptions {
  readonly intervalMs: number;
  readonly graceMs: number;
  readonly leaseMs: number;
  readonly batchSizeMax: number;
  readonly abandonAfterHours: number;
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
    const staleKeys = await takeOverStaleKeys(this.db, this.options);
    const actions: CompleterAction[] = [];
    for (const stale of staleKeys) {
      const action = await this.finish(stale);
      this.onAction(action);
      actions.push(action);
    }
    return actions;
  }

  private async finish({ request, held }: StaleKey): Promise<CompleterAction> {
    try {
      const service = request.operation === 'createCharge' ? this.services.charges : this.services.refunds;
      const outcome = await service.finishAbandoned(request.merchantId, held);
      if ('wait' in outcome) {
        if (request.operation === 'refundCharge' && held.recoveryPoint === 'RESERVED') {
          // The acquirer refunded nothing under this key: give the reservation back with the key.
          await this.services.refunds.releaseReservation(held);
          return 'released';
        }
        return await this.releaseOrAbandon(held, request.operation);
      }
      await this.idempotency.complete(request, outcome.respond);
      this.logger.info({ keyId: held.id }, 'completer recorded a charge whose client never came back');
      return 'finished';
    } catch (error) {
      // The lease runs out and a later pass, or the client's retry, tries again.
      this.logger.warn({ err: error, keyId: held.id }, 'completer could not finish a key');
      return 'failed';
    }
  }

  /** Gives the key back for the client's retry; an old charge key with nothing authorized is abandoned. */
  private async releaseOrAbandon(held: HeldKey, operation: KeyedOperation): Promise<CompleterAction> {
    // Refund keys are never abandoned: a retry can still run them (nothing is reserved at STARTED).
    const abandonable = operation === 'createCharge';
    const state = await releaseOrAbandon(this.db, held, abandonable, this.options.abandonAfterHours);
    return state === 'ABANDONED' ? 'abandoned' : 'released';
  }
}

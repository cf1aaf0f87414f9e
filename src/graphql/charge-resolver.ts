/**
 * Transport for charges: reads the context, calls the use case, shapes the answer. The order of
 * checks is the contract's (docs/contract.md §2): authentication, input validation, key format, then the
 * idempotency store decides fingerprint and key state.
 *
 * One charge, top to bottom: `createCharge` here → `ChargeService.createCharge`
 * (src/charges/create-charge.ts: its phase table) → the key-row statement each phase names
 * (src/idempotency/key-row.ts), the last of which commits the key, the charge and its event.
 * Writes no row itself; answers the stored response, or throws the GatewayError to map.
 */
import { Arg, Ctx, ID, Int, Mutation, Query, Resolver } from 'type-graphql';
import { GatewayError } from '../errors';
import { inFlightWaitMs, readIdempotencyKey } from '../idempotency/key';
import { KeyConflictError } from '../idempotency/idempotency-store';
import type { KeyedResult } from '../charges/create-charge';
import type { ChargeSnapshot } from '../charges/charge';
import { isStorableText, validateCreateChargeInput, validateRefundInput } from '../charges/validation';
import {
  chargeSnapshotSchema,
  refundSnapshotSchema,
  storedRefusalCodeSchema,
  storedRefusalSchema,
} from '../charges/stored-payloads';
import { parseStoredJson } from '../platform/stored-json';
import type { z } from 'zod';
import {
  chargesPageSizeDefault,
  chargesPageSizeMax,
  decodeCursor,
  findCharge,
  listCharges,
} from '../charges/charge-queries';
import { attemptBucket } from './metrics';
import type { RefundSnapshot } from '../charges/refund-charge';
import { Charge, ChargeConnection, CreateChargeInput, Refund, RefundChargeInput } from './charge-types';
import { requireMerchant, type GatewayContext } from './context';

/** The request's Idempotency-Key; a missing or malformed one is counted as the outcome `missing`. */
function keyOf(context: GatewayContext): string {
  try {
    return readIdempotencyKey(context.headers);
  } catch (error) {
    context.services.metrics.countOutcome('missing');
    throw error;
  }
}

/** How long this request waits for an in-flight twin: `Prefer: wait=<seconds>` or the configured default. */
function waitMsOf(context: GatewayContext): number {
  return inFlightWaitMs(context.headers.prefer, context.services.inFlightWaitMs);
}

/**
 * Runs a keyed use case and records what the key resolved to, for headers and extensions. The
 * stored body is parsed with the schema that wrote it; a stored refusal is thrown as it was
 * first answered.
 */
export async function runKeyed<Schema extends z.ZodType>(
  context: GatewayContext,
  key: string,
  snapshotSchema: Schema,
  run: () => Promise<KeyedResult>,
): Promise<z.output<Schema>> {
  context.services.metrics.chargeRequestAttempts.inc({ attempt: attemptBucket(context.headers.attempt) });
  context.idempotency = { key, replayed: false, firstRequestAt: null };
  let result: KeyedResult;
  try {
    result = await run();
  } catch (error) {
    if (error instanceof KeyConflictError) context.idempotency.firstRequestAt = error.firstRequestAt;
    throw error;
  }
  context.idempotency.replayed = result.outcome === 'replayed';
  context.idempotency.firstRequestAt = result.response.firstRequestAt;
  context.idempotency.stored = true;
  if (result.response.code !== null) {
    const refusal = parseStoredJson(storedRefusalSchema, result.response.body, 'refusal');
    throw new GatewayError(storedRefusalCodeSchema.parse(result.response.code), refusal.message);
  }
  return parseStoredJson(snapshotSchema, result.response.body, 'response');
}

@Resolver(() => Charge)
export class ChargeResolver {
  @Mutation(() => Charge, {
    description: 'Charges a card once per Idempotency-Key. Retries with the same key replay the first answer.',
  })
  async createCharge(
    @Arg('input', () => CreateChargeInput) input: CreateChargeInput,
    @Ctx() context: GatewayContext,
  ): Promise<ChargeSnapshot> {
    const merchant = requireMerchant(context);
    const validated = validateCreateChargeInput(input);
    const key = keyOf(context);
    const { charges } = context.services;
    const request = charges.keyedRequest(merchant.id, key, validated);
    return runKeyed(context, key, chargeSnapshotSchema, () =>
      charges.createCharge(request, validated, waitMsOf(context)),
    );
  }

  @Mutation(() => Refund, {
    description:
      'Refunds part or all of a charge once per Idempotency-Key. Retries with the same key replay the first answer.',
  })
  async refundCharge(
    @Arg('input', () => RefundChargeInput) input: RefundChargeInput,
    @Ctx() context: GatewayContext,
  ): Promise<RefundSnapshot> {
    const merchant = requireMerchant(context);
    const validated = validateRefundInput(input);
    const key = keyOf(context);
    const { refunds } = context.services;
    await refunds.assertChargeVisible(merchant.id, validated.chargeId);
    const request = refunds.keyedRequest(merchant.id, key, validated);
    return runKeyed(context, key, refundSnapshotSchema, () =>
      refunds.refundCharge(request, validated, waitMsOf(context)),
    );
  }

  @Query(() => Charge, { nullable: true, description: 'One of your charges; another merchant’s id reads as null.' })
  async charge(@Arg('id', () => ID) id: string, @Ctx() context: GatewayContext): Promise<ChargeSnapshot | null> {
    const merchant = requireMerchant(context);
    // An id the database cannot even store names no charge.
    if (!isStorableText(id)) return null;
    return findCharge(context.services.db, merchant.id, id);
  }

  @Query(() => ChargeConnection, { description: 'Your charges, newest first.' })
  async charges(
    @Arg('first', () => Int, { nullable: true }) first: number | null,
    @Arg('after', () => String, { nullable: true }) after: string | null,
    @Ctx() context: GatewayContext,
  ): Promise<ChargeConnection> {
    const merchant = requireMerchant(context);
    const pageSize = first ?? chargesPageSizeDefault;
    if (pageSize < 1 || pageSize > chargesPageSizeMax) {
      throw new GatewayError('BAD_USER_INPUT', `first: must be from 1 to ${chargesPageSizeMax}`, { field: 'first' });
    }
    const cursor = after === null || after === undefined ? null : decodeCursor(after);
    if (after && cursor === null)
      throw new GatewayError('BAD_USER_INPUT', 'after: not a cursor from this API', { field: 'after' });
    const page = await listCharges(context.services.db, merchant.id, pageSize, cursor);
    return {
      edges: page.charges.map(({ cursor: edgeCursor, charge }) => ({ cursor: edgeCursor, node: charge })),
      pageInfo: { hasNextPage: page.hasNextPage, endCursor: page.charges.at(-1)?.cursor ?? null },
    };
  }
}

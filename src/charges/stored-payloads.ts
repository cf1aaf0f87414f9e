/**
 * Schemas of what the money path stores on the key row and replays: the acquirer's answer, a
 * refund's progress, the charge and refund snapshots and a stored refusal. Each is written with
 * JSON.stringify and read back through its schema (src/platform/stored-json.ts), never cast.
 */
import { z } from 'zod';
import type { Authorization } from '../acquirer/acquirer';
import type { ChargeSnapshot } from './charge';
import { metadataSchema } from './validation';

export const authorizationSchema = z.object({
  authorizationId: z.string(),
  approved: z.boolean(),
  declineCode: z.string().nullable(),
}) satisfies z.ZodType<Authorization>;

/** What a refund's key row holds from RESERVED on (in `acquirer_result`). */
export const refundProgressSchema = z.object({
  amount: z.number().int(),
  currency: z.string(),
  chargeAuthorizationId: z.string(),
  authorization: authorizationSchema.optional(),
});
export type RefundProgress = z.output<typeof refundProgressSchema>;

const status = z.enum(['SUCCEEDED', 'FAILED']);

export const chargeSnapshotSchema = z.object({
  id: z.string(),
  amount: z.number().int(),
  currency: z.string(),
  status,
  failureCode: z.string().nullable(),
  description: z.string().nullable(),
  metadata: metadataSchema,
  createdAt: z.string(),
}) satisfies z.ZodType<ChargeSnapshot>;

export const refundSnapshotSchema = z.object({
  id: z.string(),
  chargeId: z.string(),
  amount: z.number().int(),
  currency: z.string(),
  status,
  failureCode: z.string().nullable(),
  reason: z.string().nullable(),
  createdAt: z.string(),
});
export type RefundSnapshot = z.output<typeof refundSnapshotSchema>;

/** The body of a stored final refusal, and the codes a refusal may be stored with. */
export const storedRefusalSchema = z.object({ message: z.string() });
export const storedRefusalCodeSchema = z.enum(['CHARGE_NOT_REFUNDABLE', 'REFUND_EXCEEDS_CHARGE']);

/**
 * A charge as the API shows it. The snapshot stored with a completed key is exactly this object,
 * serialised once (timestamps already ISO 8601 UTC with milliseconds), so a replay renders what
 * the first response did.
 */
import { randomBytes } from 'node:crypto';
import type { Metadata } from './validation';

export type ChargeStatus = 'SUCCEEDED' | 'FAILED';

export interface ChargeSnapshot {
  readonly id: string;
  readonly amount: number;
  readonly currency: string;
  readonly status: ChargeStatus;
  readonly failureCode: string | null;
  readonly description: string | null;
  readonly metadata: Metadata | null;
  readonly createdAt: string;
}

export function newChargeId(): string {
  return `ch_${randomBytes(12).toString('hex')}`;
}

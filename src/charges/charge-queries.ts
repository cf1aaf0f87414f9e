/**
 * Reading charges. A merchant sees only its own: another merchant's id reads as not found.
 * Pages are keyset-paginated on (created_at, id), newest first.
 */
import type { Database } from '../platform/database';
import type { ChargeSnapshot, ChargeStatus } from './charge';
import { parseStoredJson } from '../platform/stored-json';
import { metadataSchema } from './validation';

export const chargesPageSizeMax = 100;
export const chargesPageSizeDefault = 20;

interface ChargeRow {
  id: string;
  amount: number;
  currency: string;
  status: string;
  failureCode: string | null;
  description: string | null;
  metadata: string | null;
  createdAt: Date;
}

const chargeColumns = {
  id: true,
  amount: true,
  currency: true,
  status: true,
  failureCode: true,
  description: true,
  metadata: true,
  createdAt: true,
} as const;

function toSnapshot(row: ChargeRow): ChargeSnapshot {
  return {
    id: row.id,
    amount: row.amount,
    currency: row.currency,
    status: row.status as ChargeStatus,
    failureCode: row.failureCode,
    description: row.description,
    metadata: row.metadata === null ? null : parseStoredJson(metadataSchema, row.metadata, 'charge metadata'),
    createdAt: row.createdAt.toISOString(),
  };
}

export async function findCharge(db: Database, merchantId: string, chargeId: string): Promise<ChargeSnapshot | null> {
  const row = await db.charge.findFirst({ where: { id: chargeId, merchantId }, select: chargeColumns });
  return row === null ? null : toSnapshot(row);
}

export interface ChargePage {
  readonly charges: { readonly cursor: string; readonly charge: ChargeSnapshot }[];
  readonly hasNextPage: boolean;
}

export function encodeCursor(charge: Pick<ChargeSnapshot, 'createdAt' | 'id'>): string {
  return Buffer.from(`${charge.createdAt}|${charge.id}`).toString('base64url');
}

export function decodeCursor(cursor: string): { createdAt: Date; id: string } | null {
  const [createdAt, id] = Buffer.from(cursor, 'base64url').toString().split('|');
  if (createdAt === undefined || id === undefined || Number.isNaN(Date.parse(createdAt))) return null;
  return { createdAt: new Date(createdAt), id };
}

export async function listCharges(
  db: Database,
  merchantId: string,
  first: number,
  after: { createdAt: Date; id: string } | null,
): Promise<ChargePage> {
  const rows = await db.charge.findMany({
    where: {
      merchantId,
      ...(after === null
        ? {}
        : { OR: [{ createdAt: { lt: after.createdAt } }, { createdAt: after.createdAt, id: { lt: after.id } }] }),
    },
    orderBy: [{ createdAt: 'desc' }, { id: 'desc' }],
    take: first + 1,
    select: chargeColumns,
  });
  const page = rows.slice(0, first).map(toSnapshot);
  return {
    charges: page.map((charge) => ({ cursor: encodeCursor(charge), charge })),
    hasNextPage: rows.length > first,
  };
}

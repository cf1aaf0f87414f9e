/**
 * GraphQL types for charges. Every field names its type explicitly: tsx and vitest compile with
 * esbuild, which emits no decorator metadata (docs/contract.md §10).
 */
import { Field, ID, InputType, Int, ObjectType, registerEnumType } from 'type-graphql';
import type { ChargeStatus as ChargeStatusName } from '../charges/charge';
import type { Metadata } from '../charges/validation';
import { DateTimeScalar, JSONScalar } from './scalars';

export const ChargeStatus = { SUCCEEDED: 'SUCCEEDED', FAILED: 'FAILED' } as const satisfies Record<
  ChargeStatusName,
  ChargeStatusName
>;
registerEnumType(ChargeStatus, {
  name: 'ChargeStatus',
  description: 'SUCCEEDED: the acquirer approved. FAILED: it declined (see failureCode); a decline is final.',
});

@ObjectType({ description: 'A charge, as recorded at its first completion.' })
export class Charge {
  @Field(() => ID)
  id!: string;

  @Field(() => Int, { description: 'Integer minor units (cents; yen for JPY).' })
  amount!: number;

  @Field(() => String, { description: 'ISO 4217 code, upper case.' })
  currency!: string;

  @Field(() => ChargeStatus)
  status!: ChargeStatusName;

  @Field(() => String, { nullable: true, description: 'Why the acquirer declined, for a FAILED charge.' })
  failureCode!: string | null;

  @Field(() => String, { nullable: true })
  description!: string | null;

  @Field(() => JSONScalar, { nullable: true })
  metadata!: Metadata | null;

  @Field(() => DateTimeScalar)
  createdAt!: string;
}

@InputType({ description: 'A charge to create. Needs an Idempotency-Key header.' })
export class CreateChargeInput {
  @Field(() => Int, { description: 'Integer minor units, 1 to 99,999,999, for every currency.' })
  amount!: number;

  @Field(() => String, { description: 'A supported ISO 4217 code, upper case: USD, EUR, JPY, …' })
  currency!: string;

  @Field(() => String, {
    description: 'A card token: tok_visa approves, tok_chargeDeclined declines, tok_timeout fails transiently.',
  })
  source!: string;

  @Field(() => String, { nullable: true, description: 'At most 500 characters.' })
  description?: string | null;

  @Field(() => JSONScalar, { nullable: true, description: 'A flat JSON object: at most 50 keys, scalar values.' })
  metadata?: unknown;
}

@ObjectType()
export class ChargeEdge {
  @Field(() => String)
  cursor!: string;

  @Field(() => Charge)
  node!: Charge;
}

@ObjectType()
export class PageInfo {
  @Field(() => Boolean)
  hasNextPage!: boolean;

  @Field(() => String, { nullable: true })
  endCursor!: string | null;
}

@ObjectType()
export class ChargeConnection {
  @Field(() => [ChargeEdge])
  edges!: ChargeEdge[];

  @Field(() => PageInfo)
  pageInfo!: PageInfo;
}

export const RefundStatus = { SUCCEEDED: 'SUCCEEDED', FAILED: 'FAILED' } as const;
registerEnumType(RefundStatus, { name: 'RefundStatus' });

@ObjectType({ description: 'A refund of part or all of a charge, as recorded at its first completion.' })
export class Refund {
  @Field(() => ID)
  id!: string;

  @Field(() => ID)
  chargeId!: string;

  @Field(() => Int, { description: 'Integer minor units.' })
  amount!: number;

  @Field(() => String)
  currency!: string;

  @Field(() => RefundStatus)
  status!: keyof typeof RefundStatus;

  @Field(() => String, { nullable: true })
  failureCode!: string | null;

  @Field(() => String, { nullable: true })
  reason!: string | null;

  @Field(() => DateTimeScalar)
  createdAt!: string;
}

@InputType({ description: 'A refund to make. Needs an Idempotency-Key header.' })
export class RefundChargeInput {
  @Field(() => ID)
  chargeId!: string;

  @Field(() => Int, { nullable: true, description: 'Integer minor units; defaults to what is left of the charge.' })
  amount?: number | null;

  @Field(() => String, { nullable: true, description: 'At most 500 characters.' })
  reason?: string | null;
}

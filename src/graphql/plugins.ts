/**
 * Apollo plugins: the request guard and the response shaper.
 *
 * Guard (didResolveOperation, before any resolver runs):
 *   - authentication: an operation that selects anything but introspection needs a merchant (401),
 *     then the merchant's request limit (429 RATE_LIMITED with Retry-After);
 *   - at most one money-moving field per keyed operation (400 IDEMPOTENCY_KEY_AMBIGUOUS);
 *   - depth and size limits (400 BAD_REQUEST), measured once per parsed document: the field
 *     count, fragments expanded and @skip/@include ignored, bounds what any variables can select.
 * Response (willSendResponse): HTTP status and Retry-After from the error code list,
 *   Idempotent-Replayed and `extensions.idempotency` for keyed mutations, and request latency.
 */
import type { ApolloServerPlugin, GraphQLRequestContext } from '@apollo/server';
import {
  Kind,
  type FieldNode,
  type FragmentDefinitionNode,
  type OperationDefinitionNode,
  type SelectionSetNode,
} from 'graphql';
import { GatewayError } from '../errors';
import type { MerchantRateLimits } from '../merchants/rate-limits';
import type { GatewayContext } from './context';
import { httpAnswerFor } from './errors';
import { requireMerchant } from './charge-resolver';

export const moneyMovingFields: ReadonlySet<string> = new Set(['createCharge', 'refundCharge']);
const latencyFields = new Set(['createCharge', 'refundCharge', 'charge', 'charges']);

type Fragments = Record<string, FragmentDefinitionNode>;

/** Root fields of an operation, looking through fragments and inline fragments. */
export function rootFields(selectionSet: SelectionSetNode, fragments: Fragments): FieldNode[] {
  const fields: FieldNode[] = [];
  for (const selection of selectionSet.selections) {
    if (selection.kind === Kind.FIELD) fields.push(selection);
    else if (selection.kind === Kind.INLINE_FRAGMENT) fields.push(...rootFields(selection.selectionSet, fragments));
    else {
      const fragment = fragments[selection.name.value];
      if (fragment !== undefined) fields.push(...rootFields(fragment.selectionSet, fragments));
    }
  }
  return fields;
}

export interface SelectionCost {
  /** The deepest chain of nested fields. */
  readonly depth: number;
  /** Every field the operation selects, fragments expanded, @skip/@include ignored: an upper bound. */
  readonly fields: number;
}

/** Measures a selection set: depth and field count, expanding fragments (each once per path). */
export function selectionCost(
  selectionSet: SelectionSetNode | undefined,
  fragments: Fragments,
  seen: ReadonlySet<string> = new Set(),
): SelectionCost {
  if (selectionSet === undefined) return { depth: 0, fields: 0 };
  let depth = 0;
  let fields = 0;
  for (const selection of selectionSet.selections) {
    if (selection.kind === Kind.FIELD) {
      const child = selectionCost(selection.selectionSet, fragments, seen);
      depth = Math.max(depth, 1 + child.depth);
      fields += 1 + child.fields;
      continue;
    }
    const name = selection.kind === Kind.FRAGMENT_SPREAD ? selection.name.value : undefined;
    if (name !== undefined && seen.has(name)) continue;
    const nested =
      selection.kind === Kind.INLINE_FRAGMENT
        ? selection.selectionSet
        : name === undefined
          ? undefined
          : fragments[name]?.selectionSet;
    const child = selectionCost(nested, fragments, name === undefined ? seen : new Set(seen).add(name));
    depth = Math.max(depth, child.depth);
    fields += child.fields;
  }
  return { depth, fields };
}

// Apollo hands the same parsed document back for the same query text, so each is measured once.
const costs = new WeakMap<OperationDefinitionNode, SelectionCost>();

function costOf(operation: OperationDefinitionNode, fragments: Fragments): SelectionCost {
  let cost = costs.get(operation);
  if (cost === undefined) {
    cost = selectionCost(operation.selectionSet, fragments);
    costs.set(operation, cost);
  }
  return cost;
}

export interface GuardOptions {
  /** Per-merchant request limits, checked right after authentication. */
  readonly rateLimits?: MerchantRateLimits;
  readonly depthMax: number;
  readonly complexityMax: number;
  /** The admin schema authenticates differently and has no money-moving fields. */
  readonly requireMerchant: boolean;
}

export function requestGuardPlugin(options: GuardOptions): ApolloServerPlugin<GatewayContext> {
  return {
    async requestDidStart() {
      return {
        async didResolveOperation(requestContext) {
          const operation = requestContext.operation as OperationDefinitionNode;
          const fragments: Fragments = {};
          for (const definition of requestContext.document.definitions) {
            if (definition.kind === Kind.FRAGMENT_DEFINITION) fragments[definition.name.value] = definition;
          }
          const fields = rootFields(operation.selectionSet, fragments);
          const onlyIntrospection = fields.every((field) => field.name.value.startsWith('__'));
          if (options.requireMerchant && !onlyIntrospection) {
            const merchant = requireMerchant(requestContext.contextValue);
            await options.rateLimits?.consume(merchant.id, merchant.rateLimitPerSecond);
          }

          const moneyFields = fields.filter((field) => moneyMovingFields.has(field.name.value));
          if (moneyFields.length > 1) {
            throw new GatewayError(
              'IDEMPOTENCY_KEY_AMBIGUOUS',
              'One Idempotency-Key can stand for one money-moving field only; send each in its own request.',
            );
          }
          const cost = costOf(operation, fragments);
          if (cost.depth > options.depthMax) {
            throw new GatewayError(
              'BAD_REQUEST',
              `The query is ${cost.depth} levels deep; at most ${options.depthMax} are allowed.`,
            );
          }
          if (cost.fields > options.complexityMax) {
            throw new GatewayError(
              'BAD_REQUEST',
              `The query selects ${cost.fields} fields; at most ${options.complexityMax} are allowed.`,
            );
          }
        },
      };
    },
  };
}

export function responsePlugin(): ApolloServerPlugin<GatewayContext> {
  return {
    async requestDidStart() {
      const startedAtNs = process.hrtime.bigint();
      return {
        async willSendResponse(requestContext: GraphQLRequestContext<GatewayContext>) {
          const { response, contextValue } = requestContext;
          const answer = httpAnswerFor(requestContext.errors ?? []);
          if (answer !== undefined) {
            response.http.status = answer.status;
            if (answer.retryAfterSeconds !== undefined)
              response.http.headers.set('retry-after', String(answer.retryAfterSeconds));
          }
          const idempotency = contextValue.idempotency;
          const body = response.body;
          if (idempotency !== null && body?.kind === 'single') {
            // A stored refusal is an outcome too: its replay says so.
            if (answer === undefined || idempotency.stored === true) {
              response.http.headers.set('idempotent-replayed', String(idempotency.replayed));
            }
            body.singleResult.extensions = { ...body.singleResult.extensions, idempotency: { ...idempotency } };
          }
          observeLatency(requestContext, startedAtNs);
          contextValue.logger.info(
            {
              status: response.http.status ?? 200,
              operation: requestContext.operationName ?? undefined,
              code: errorCodeOf(requestContext.errors),
              replayed: idempotency?.replayed,
              ms: Number(process.hrtime.bigint() - startedAtNs) / 1e6,
            },
            'graphql request',
          );
        },
      };
    },
  };
}

function errorCodeOf(errors: readonly { extensions?: Record<string, unknown> }[] | undefined): string | undefined {
  const code = errors?.[0]?.extensions?.code;
  return typeof code === 'string' ? code : undefined;
}

function observeLatency(requestContext: GraphQLRequestContext<GatewayContext>, startedAtNs: bigint): void {
  const operation = requestContext.operation;
  const first = operation === undefined || operation === null ? undefined : operation.selectionSet.selections[0];
  const name = first !== undefined && first.kind === Kind.FIELD ? first.name.value : 'other';
  const field = latencyFields.has(name) ? name : 'other';
  const status = String(requestContext.response.http.status ?? 200);
  const seconds = Number(process.hrtime.bigint() - startedAtNs) / 1e9;
  requestContext.contextValue.services.metrics.httpRequestDuration.observe({ field, status }, seconds);
}

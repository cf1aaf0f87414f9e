/**
 * Apollo plugins: the request guard and the response shaper.
 *
 * Guard (didResolveOperation, before any resolver runs):
 *   - authentication: an operation that selects anything but introspection needs a merchant (401);
 *   - at most one money-moving field per keyed operation (400 IDEMPOTENCY_KEY_AMBIGUOUS);
 *   - depth and complexity limits (400 BAD_REQUEST).
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
  type GraphQLSchema,
} from 'graphql';
import { getComplexity, simpleEstimator } from 'graphql-query-complexity';
import { GatewayError } from '../errors';
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

export function selectionDepth(
  selectionSet: SelectionSetNode | undefined,
  fragments: Fragments,
  seen = new Set<string>(),
): number {
  if (selectionSet === undefined) return 0;
  let deepest = 0;
  for (const selection of selectionSet.selections) {
    if (selection.kind === Kind.FIELD)
      deepest = Math.max(deepest, 1 + selectionDepth(selection.selectionSet, fragments, seen));
    else if (selection.kind === Kind.INLINE_FRAGMENT)
      deepest = Math.max(deepest, selectionDepth(selection.selectionSet, fragments, seen));
    else if (!seen.has(selection.name.value)) {
      const fragment = fragments[selection.name.value];
      const next = new Set(seen).add(selection.name.value);
      if (fragment !== undefined) deepest = Math.max(deepest, selectionDepth(fragment.selectionSet, fragments, next));
    }
  }
  return deepest;
}

/**
 * The query's complexity, or 0 when its variables do not coerce: execution then reports that
 * as BAD_USER_INPUT naming the variable, which is the better answer.
 */
function complexityOf(options: Omit<Parameters<typeof getComplexity>[0], 'estimators'>): number {
  try {
    return getComplexity({ ...options, estimators: [simpleEstimator({ defaultComplexity: 1 })] });
  } catch {
    return 0;
  }
}

export interface GuardOptions {
  readonly schema: GraphQLSchema;
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
          if (options.requireMerchant && !onlyIntrospection) requireMerchant(requestContext.contextValue);

          const moneyFields = fields.filter((field) => moneyMovingFields.has(field.name.value));
          if (moneyFields.length > 1) {
            throw new GatewayError(
              'IDEMPOTENCY_KEY_AMBIGUOUS',
              'One Idempotency-Key can stand for one money-moving field only; send each in its own request.',
            );
          }
          const depth = selectionDepth(operation.selectionSet, fragments);
          if (depth > options.depthMax) {
            throw new GatewayError(
              'BAD_REQUEST',
              `The query is ${depth} levels deep; at most ${options.depthMax} are allowed.`,
            );
          }
          const complexity = complexityOf({
            schema: options.schema,
            query: requestContext.document,
            operationName: requestContext.operationName ?? undefined,
            variables: requestContext.request.variables ?? {},
          });
          if (complexity > options.complexityMax) {
            throw new GatewayError(
              'BAD_REQUEST',
              `The query's complexity is ${complexity}; at most ${options.complexityMax} is allowed.`,
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
            if (answer === undefined) response.http.headers.set('idempotent-replayed', String(idempotency.replayed));
            body.singleResult.extensions = { ...body.singleResult.extensions, idempotency: { ...idempotency } };
          }
          observeLatency(requestContext, startedAtNs);
        },
      };
    },
  };
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

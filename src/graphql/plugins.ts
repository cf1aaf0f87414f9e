/**
 * Apollo plugins: the request guard and the response shaper.
 *
 * Guard (didResolveOperation, before any resolver runs):
 *   - authentication: an operation that selects anything but introspection needs a merchant (401),
 *     then the merchant's request limit (429 RATE_LIMITED with Retry-After);
 *   - an unknown operationName: 400 BAD_REQUEST;
 *   - at most one money-moving field per keyed operation (400 IDEMPOTENCY_KEY_AMBIGUOUS);
 *   - the query's cost with its variables (400 BAD_REQUEST), see query-limits.ts; the structural
 *     limits (tokens, expanded selections, depth, aliases) already ran as validation rules.
 * Response (willSendResponse): HTTP status and Retry-After from the error code list,
 *   Idempotent-Replayed and `extensions.idempotency` for keyed mutations, and request latency.
 */
import type { ApolloServerPlugin, GraphQLRequestContext } from '@apollo/server';
import { Kind, type FieldNode, type FragmentDefinitionNode, type SelectionSetNode } from 'graphql';
import { GatewayError } from '../errors';
import type { MerchantRateLimits } from '../merchants/rate-limits';
import { httpAnswerFor } from './errors';
import { requireMerchant, type GatewayContext } from './context';
import { checkQueryCost, type QueryLimits } from './query-limits';
import type { ReplayCandidate, ReplayFastPath } from './replay-fast-path';

export const moneyMovingFields: ReadonlySet<string> = new Set(['createCharge', 'refundCharge']);
const latencyFields = new Set(['createCharge', 'refundCharge', 'charge', 'charges']);

type Fragments = Record<string, FragmentDefinitionNode>;

/**
 * Root fields of an operation, looking through fragments and inline fragments. Each named fragment
 * is looked through once, as graphql-js does when it collects fields, so this stays linear.
 */
export function rootFields(
  selectionSet: SelectionSetNode,
  fragments: Fragments,
  visited: Set<string> = new Set(),
): FieldNode[] {
  const fields: FieldNode[] = [];
  for (const selection of selectionSet.selections) {
    if (selection.kind === Kind.FIELD) fields.push(selection);
    else if (selection.kind === Kind.INLINE_FRAGMENT)
      fields.push(...rootFields(selection.selectionSet, fragments, visited));
    else if (!visited.has(selection.name.value)) {
      visited.add(selection.name.value);
      const fragment = fragments[selection.name.value];
      if (fragment !== undefined) fields.push(...rootFields(fragment.selectionSet, fragments, visited));
    }
  }
  return fields;
}

export interface GuardOptions {
  /** Per-merchant request limits, checked right after authentication. */
  readonly rateLimits?: MerchantRateLimits;
  /** Replays answered before execution (replay-fast-path.ts); absent: every request executes. */
  readonly replays?: ReplayFastPath;
  /** The cost limit and page size (the structural limits are validation rules: query-limits.ts). */
  readonly limits: QueryLimits;
  /** The admin schema authenticates differently and has no money-moving fields. */
  readonly requireMerchant: boolean;
}

export function requestGuardPlugin(options: GuardOptions): ApolloServerPlugin<GatewayContext> {
  return {
    async requestDidStart() {
      // A keyed mutation that may be a replay, with its key's Redis value (read with the rate limit).
      let replay: { candidate: ReplayCandidate; value: string | null | undefined } | undefined;
      return {
        async didResolveOperation(requestContext) {
          const operation = requestContext.operation;
          if (operation === undefined) {
            // Apollo resolves no operation for an unknown operationName, or several without one.
            throw new GatewayError(
              'BAD_REQUEST',
              'Name one operation of the document in operationName (or send a document with one operation).',
            );
          }
          const fragments: Fragments = {};
          for (const definition of requestContext.document.definitions) {
            if (definition.kind === Kind.FRAGMENT_DEFINITION) fragments[definition.name.value] = definition;
          }
          const fields = rootFields(operation.selectionSet, fragments);
          const onlyIntrospection = fields.every((field) => field.name.value.startsWith('__'));
          if (options.requireMerchant && !onlyIntrospection) {
            const merchant = requireMerchant(requestContext.contextValue);
            const candidate = options.replays?.candidate(requestContext, merchant);
            if (candidate === undefined || options.replays === undefined) {
              await options.rateLimits?.consume(merchant.id, merchant.rateLimitPerSecond);
            } else {
              // One round trip: the limit spent and the key's value read by one script.
              const value =
                options.rateLimits === undefined
                  ? await options.replays.read(candidate)
                  : await options.rateLimits.consumeAndRead(
                      merchant.id,
                      merchant.rateLimitPerSecond,
                      candidate.redisKey,
                    );
              replay = { candidate, value };
            }
          }

          const moneyFields = fields.filter((field) => moneyMovingFields.has(field.name.value));
          if (moneyFields.length > 1) {
            throw new GatewayError(
              'IDEMPOTENCY_KEY_AMBIGUOUS',
              'One Idempotency-Key can stand for one money-moving field only; send each in its own request.',
            );
          }
          checkQueryCost(
            requestContext.schema,
            requestContext.document,
            operation.name?.value,
            requestContext.request.variables,
            options.limits,
          );
        },
        // Runs after every plugin's didResolveOperation, so after all the checks above.
        async responseForOperation(requestContext) {
          if (replay === undefined || typeof replay.value !== 'string' || options.replays === undefined) return null;
          return options.replays.respond(requestContext, replay.candidate, replay.value);
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
            // The contract's three fields (docs/contract.md §2), not the context's bookkeeping (`stored`).
            const { key, replayed, firstRequestAt } = idempotency;
            body.singleResult.extensions = {
              ...body.singleResult.extensions,
              idempotency: { key, replayed, firstRequestAt },
            };
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

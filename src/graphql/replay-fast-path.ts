/**
 * Replays answered before GraphQL execution (docs/idempotency.md, "Replays before execution").
 *
 * A createCharge / refundCharge whose Idempotency-Key already completed in Redis with the same
 * request is answered from the stored response without running a resolver: the request guard
 * (plugins.ts) asks for a candidate once the operation is resolved, reads the key's Redis value in
 * the rate limit's round trip, and its `responseForOperation` hook serves the stored response
 * projected through the operation's selection, as graphql-js would complete it (aliases,
 * fragments, @include/@skip, __typename, each scalar's own serialisation), so the bytes are those
 * of the normal path. The decision is the idempotency store's own (`replayFromRedis`, which
 * records the replay's metric and audit row); the response plugin adds Idempotent-Replayed and
 * `extensions.idempotency` as for any keyed answer.
 *
 * A request is a candidate only when everything the resolver would check before the key passes
 * the same way: a merchant, variables that coerce, input that validates, a well-formed key. Only
 * a completed, verified answer with this request's fingerprint and a stored success is served;
 * everything else (no value, in flight, another body's answer, a stored refusal, a value that does
 * not verify, Redis not answering, a selection this projection does not handle) goes the normal
 * way, which decides it as before. The Redis key carries the merchant id, so one merchant never
 * reads another's answer.
 */
import { HeaderMap, type GraphQLRequestContext, type GraphQLResponse } from '@apollo/server';
import {
  GraphQLIncludeDirective,
  GraphQLSkipDirective,
  Kind,
  getArgumentValues,
  getDirectiveValues,
  getVariableValues,
  isAbstractType,
  isLeafType,
  isListType,
  isNonNullType,
  isObjectType,
  typeFromAST,
  type FieldNode,
  type FragmentDefinitionNode,
  type GraphQLObjectType,
  type GraphQLOutputType,
  type GraphQLSchema,
  type SelectionSetNode,
} from 'graphql';
import type { z } from 'zod';
import { chargeSnapshotSchema, refundSnapshotSchema } from '../charges/stored-payloads';
import { validateCreateChargeInput, validateRefundInput } from '../charges/validation';
import type { IdempotencyStore } from '../idempotency/idempotency-store';
import { readIdempotencyKey } from '../idempotency/key';
import { keyedRequest, type KeyedOperation, type KeyedRequest } from '../idempotency/types';
import type { Merchant } from '../merchants/merchants';
import { tryParseStoredJson } from '../platform/stored-json';
import type { GatewayContext } from './context';
import { attemptBucket } from './metrics';

type Variables = Record<string, unknown>;
type Fragments = Record<string, FragmentDefinitionNode>;

/** A request that may be a replay: what the resolver would compute, and how to complete it. */
export interface ReplayCandidate {
  readonly request: KeyedRequest;
  readonly redisKey: string;
  readonly mutationType: GraphQLObjectType;
  readonly rootFields: ReadonlyMap<string, readonly FieldNode[]>;
  readonly fragments: Fragments;
  readonly variables: Variables;
}

const snapshotSchemas: Record<KeyedOperation, z.ZodType> = {
  createCharge: chargeSnapshotSchema,
  refundCharge: refundSnapshotSchema,
};

const validators: Record<KeyedOperation, (input: never) => unknown> = {
  createCharge: validateCreateChargeInput,
  refundCharge: validateRefundInput,
};

function isKeyedOperation(name: string): name is KeyedOperation {
  return name === 'createCharge' || name === 'refundCharge';
}

/** Thrown inside the projection when it cannot answer as graphql-js would: the normal path runs. */
class Declined extends Error {}

export class ReplayFastPath {
  constructor(private readonly store: IdempotencyStore) {}

  /**
   * The candidate, or undefined when the request is not one (it then runs as before). Throws
   * nothing: a request that would fail a check is left to the normal path, which answers it.
   */
  candidate(requestContext: GraphQLRequestContext<GatewayContext>, merchant: Merchant): ReplayCandidate | undefined {
    const { operation, document, schema } = requestContext;
    const mutationType = schema.getMutationType();
    if (operation?.operation !== 'mutation' || mutationType === null || mutationType === undefined) return undefined;
    try {
      const coerced = getVariableValues(
        schema,
        operation.variableDefinitions ?? [],
        requestContext.request.variables ?? {},
      );
      if (coerced.errors !== undefined) return undefined;
      const variables = coerced.coerced;
      const fragments: Fragments = {};
      for (const definition of document?.definitions ?? []) {
        if (definition.kind === Kind.FRAGMENT_DEFINITION) fragments[definition.name.value] = definition;
      }
      const rootFields = collectFields(schema, fragments, variables, mutationType, operation.selectionSet);
      let keyed: { operation: KeyedOperation; node: FieldNode } | undefined;
      for (const nodes of rootFields.values()) {
        const name = nodes[0]!.name.value;
        if (name === '__typename') continue;
        if (!isKeyedOperation(name) || keyed !== undefined) return undefined;
        keyed = { operation: name, node: nodes[0]! };
      }
      if (keyed === undefined) return undefined;
      const field = mutationType.getFields()[keyed.operation];
      if (field === undefined) return undefined;
      const { input } = getArgumentValues(field, keyed.node, variables);
      const validated = validators[keyed.operation](input as never);
      const key = readIdempotencyKey(requestContext.contextValue.headers);
      const request = keyedRequest(keyed.operation, merchant.id, key, validated);
      return {
        request,
        redisKey: this.store.redisKeyOf(request),
        mutationType,
        rootFields,
        fragments,
        variables,
      };
    } catch {
      // Invalid input, a malformed key, arguments that do not coerce: the resolver answers it.
      return undefined;
    }
  }

  /** Reads the key's value alone, when no rate limit reads it in its own round trip. */
  read(candidate: ReplayCandidate): Promise<string | null | undefined> {
    return this.store.readRedisValue(candidate.request);
  }

  /**
   * The stored success projected through the operation's selection, when the store says the value
   * is this request's replay; null otherwise (the normal path runs).
   */
  respond(
    requestContext: GraphQLRequestContext<GatewayContext>,
    candidate: ReplayCandidate,
    value: string,
  ): GraphQLResponse | null {
    const { request } = candidate;
    const rendered = this.store.replayFromRedis(request, value, (response) => {
      if (response.status !== 200 || response.code !== null) return undefined;
      const snapshot = tryParseStoredJson(snapshotSchemas[request.operation], response.body);
      if (snapshot === undefined) return undefined;
      try {
        return { data: project(requestContext.schema, candidate, snapshot), firstRequestAt: response.firstRequestAt };
      } catch (error) {
        if (error instanceof Declined) return undefined;
        throw error;
      }
    });
    if (rendered === undefined) return null;
    const context = requestContext.contextValue;
    context.services.metrics.chargeRequestAttempts.inc({ attempt: attemptBucket(context.headers.attempt) });
    context.services.metrics.replaysBeforeExecution.inc({ field: request.operation });
    // The same fields, in the same order, as runKeyed sets them for a replay.
    context.idempotency = { key: request.key, replayed: true, firstRequestAt: rendered.firstRequestAt, stored: true };
    return {
      http: { status: undefined, headers: new HeaderMap() },
      body: { kind: 'single', singleResult: { data: rendered.data } },
    };
  }
}

/** `data` for the operation: the keyed field completed from the snapshot, `__typename` beside it. */
function project(schema: GraphQLSchema, candidate: ReplayCandidate, snapshot: unknown): Record<string, unknown> {
  const data: Record<string, unknown> = Object.create(null) as Record<string, unknown>;
  for (const [responseKey, nodes] of candidate.rootFields) {
    const name = nodes[0]!.name.value;
    if (name === '__typename') {
      data[responseKey] = candidate.mutationType.name;
      continue;
    }
    const field = candidate.mutationType.getFields()[name];
    if (field === undefined) throw new Declined();
    data[responseKey] = complete(schema, candidate, field.type, snapshot, nodes);
  }
  return data;
}

/** graphql-js's completeValue for what a stored snapshot holds; anything else declines. */
function complete(
  schema: GraphQLSchema,
  candidate: ReplayCandidate,
  type: GraphQLOutputType,
  value: unknown,
  nodes: readonly FieldNode[],
): unknown {
  if (isNonNullType(type)) {
    const completed = complete(schema, candidate, type.ofType, value, nodes);
    // graphql-js would answer an error here: let it.
    if (completed === null) throw new Declined();
    return completed;
  }
  if (value === null || value === undefined) return null;
  if (isListType(type)) {
    if (!Array.isArray(value)) throw new Declined();
    return value.map((item: unknown) => complete(schema, candidate, type.ofType, item, nodes));
  }
  if (isLeafType(type)) {
    let serialized: unknown;
    try {
      serialized = type.serialize(value);
    } catch {
      throw new Declined();
    }
    if (serialized === undefined) throw new Declined();
    return serialized;
  }
  if (!isObjectType(type) || type.isTypeOf !== undefined || typeof value !== 'object') throw new Declined();
  const fields = new Map<string, FieldNode[]>();
  for (const node of nodes) {
    if (node.selectionSet !== undefined) {
      collectInto(schema, candidate.fragments, candidate.variables, type, node.selectionSet, fields, new Set());
    }
  }
  const result: Record<string, unknown> = Object.create(null) as Record<string, unknown>;
  const source = value as Record<string, unknown>;
  for (const [responseKey, fieldNodes] of fields) {
    const name = fieldNodes[0]!.name.value;
    if (name === '__typename') {
      result[responseKey] = type.name;
      continue;
    }
    const field = type.getFields()[name];
    // graphql-js skips a field the type does not have (validation already refused it).
    if (field === undefined) continue;
    // A field without its own resolver reads the property of the same name, as type-graphql's
    // basic resolver and graphql-js's default one do. Arguments would change that: decline.
    if (field.args.length > 0 || typeof source[name] === 'function') throw new Declined();
    result[responseKey] = complete(schema, candidate, field.type, source[name], fieldNodes);
  }
  return result;
}

/** graphql-js's collectFields: the response keys of a selection set, in order, with @skip/@include. */
function collectFields(
  schema: GraphQLSchema,
  fragments: Fragments,
  variables: Variables,
  runtimeType: GraphQLObjectType,
  selectionSet: SelectionSetNode,
): Map<string, FieldNode[]> {
  const fields = new Map<string, FieldNode[]>();
  collectInto(schema, fragments, variables, runtimeType, selectionSet, fields, new Set());
  return fields;
}

function collectInto(
  schema: GraphQLSchema,
  fragments: Fragments,
  variables: Variables,
  runtimeType: GraphQLObjectType,
  selectionSet: SelectionSetNode,
  fields: Map<string, FieldNode[]>,
  visitedFragments: Set<string>,
): void {
  for (const selection of selectionSet.selections) {
    if (!included(selection, variables)) continue;
    if (selection.kind === Kind.FIELD) {
      const responseKey = selection.alias?.value ?? selection.name.value;
      const existing = fields.get(responseKey);
      if (existing === undefined) fields.set(responseKey, [selection]);
      else existing.push(selection);
    } else if (selection.kind === Kind.INLINE_FRAGMENT) {
      if (!conditionMatches(schema, selection.typeCondition, runtimeType)) continue;
      collectInto(schema, fragments, variables, runtimeType, selection.selectionSet, fields, visitedFragments);
    } else {
      const name = selection.name.value;
      if (visitedFragments.has(name)) continue;
      visitedFragments.add(name);
      const fragment = fragments[name];
      if (fragment === undefined || !conditionMatches(schema, fragment.typeCondition, runtimeType)) continue;
      collectInto(schema, fragments, variables, runtimeType, fragment.selectionSet, fields, visitedFragments);
    }
  }
}

function included(node: Parameters<typeof getDirectiveValues>[1], variables: Variables): boolean {
  if (getDirectiveValues(GraphQLSkipDirective, node, variables)?.if === true) return false;
  return getDirectiveValues(GraphQLIncludeDirective, node, variables)?.if !== false;
}

function conditionMatches(
  schema: GraphQLSchema,
  typeCondition: FragmentDefinitionNode['typeCondition'] | undefined,
  type: GraphQLObjectType,
): boolean {
  if (typeCondition === undefined) return true;
  const conditionalType = typeFromAST(schema, typeCondition);
  if (conditionalType === type) return true;
  return conditionalType !== undefined && isAbstractType(conditionalType) && schema.isSubType(conditionalType, type);
}

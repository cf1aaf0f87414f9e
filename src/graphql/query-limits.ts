/**
 * What one GraphQL request may cost, checked before any resolver runs (docs/security.md).
 *
 * Each check is linear in the size of the request, and each later check runs only on what the
 * earlier ones let through:
 *   1. tokens: graphql-js stops parsing past `tokensMax` (Apollo's parseOptions);
 *   2. selections: Apollo's `maxRecursiveSelections` rule counts every selection as it would be
 *      executed, fragments expanded, in one pass that memoises each fragment's count. A fragment
 *      that spreads the next one twice, 22 levels deep, is refused here in well under a
 *      millisecond. Apollo runs the other validation rules only when this one passes;
 *   3. depth and aliases: graphql-armor's rules (each memoises per fragment too);
 *   4. cost: graphql-query-complexity's getComplexity with the request's variables. A field with a
 *      `first` argument costs its selection `first` times (the page size when `first` is omitted),
 *      and each alias counts on its own. It expands fragments per path, which is safe only because
 *      step 2 already bounded the expanded size. It needs the variables, and Apollo caches a
 *      document as validated for every later request with other variables, so it cannot be a
 *      validation rule: the guard calls it once the operation is resolved, before execution. A
 *      cost within the limit is kept per parsed document when no variable can change it (no
 *      variable in a directive or a `first` argument), so most requests skip the walk.
 * Introspection and `__`-only operations go through the same checks as any other.
 */
import { maxAliasesRule } from '@escape.tech/graphql-armor-max-aliases';
import { maxDepthRule } from '@escape.tech/graphql-armor-max-depth';
import {
  GraphQLError,
  type DocumentNode,
  type GraphQLFormattedError,
  type GraphQLSchema,
  type ValidationContext,
  type ValidationRule,
  visit,
} from 'graphql';
import { getComplexity, type ComplexityEstimator } from 'graphql-query-complexity';
import { GatewayError, type ErrorCode } from '../errors';
import { chargesPageSizeDefault } from '../charges/charge-queries';
import type { Config } from '../config';

export interface QueryLimits {
  /** Lexical tokens in the query text. */
  readonly tokensMax: number;
  /** Selections as executed, fragments expanded. */
  readonly selectionsMax: number;
  readonly depthMax: number;
  readonly aliasesMax: number;
  /** Points: one per field, a paged field's selection counted once per item asked for. */
  readonly costMax: number;
  /** The page size a paged field uses when `first` is not given. */
  readonly pageSizeDefault: number;
}

export function queryLimitsFromConfig(config: Config): QueryLimits {
  return {
    tokensMax: config.queryTokensMax,
    selectionsMax: config.querySelectionsMax,
    depthMax: config.queryDepthMax,
    aliasesMax: config.queryAliasesMax,
    costMax: config.queryComplexityMax,
    pageSizeDefault: chargesPageSizeDefault,
  };
}

/** Apollo Server options that carry the structural limits (steps 1 to 3). */
export function queryLimitServerOptions(limits: QueryLimits): {
  parseOptions: { maxTokens: number };
  maxRecursiveSelections: number;
  validationRules: ValidationRule[];
} {
  // graphql-armor throws out of validate() by default, which Apollo would answer 500: report instead.
  const report = {
    propagateOnRejection: false,
    onReject: [
      (context: ValidationContext | null, error: GraphQLError) =>
        context?.reportError(
          new GraphQLError(error.message.replace(/^Syntax Error: /, ''), {
            extensions: { validationErrorCode: queryLimitExceeded },
          }),
        ),
    ],
    ignoreIntrospection: false,
  };
  return {
    parseOptions: { maxTokens: limits.tokensMax },
    maxRecursiveSelections: limits.selectionsMax,
    validationRules: [
      // Fragments are how clients share selections, not nesting: only fields add depth.
      maxDepthRule({ n: limits.depthMax, flattenFragments: true, ...report }) as unknown as ValidationRule,
      maxAliasesRule({ n: limits.aliasesMax, ...report }) as unknown as ValidationRule,
    ],
  };
}

const queryLimitExceeded = 'QUERY_LIMIT_EXCEEDED';
// What Apollo's own maxRecursiveSelections rule puts in extensions.validationErrorCode.
const limitValidationCodes: ReadonlySet<unknown> = new Set([queryLimitExceeded, 'MAX_RECURSIVE_SELECTIONS_EXCEEDED']);

/** A refused limit answers with the gateway's code for bad requests, like the cost check does. */
export function asBadRequestWhenOverLimit(formatted: GraphQLFormattedError): GraphQLFormattedError {
  // graphql-js 16 says "more that N tokens"; accept the corrected spelling too.
  const overTokens =
    formatted.extensions?.code === 'GRAPHQL_PARSE_FAILED' && /contains more tha[nt] \d+ tokens/.test(formatted.message);
  if (!overTokens && !limitValidationCodes.has(formatted.extensions?.validationErrorCode)) return formatted;
  return { message: formatted.message, extensions: { code: 'BAD_REQUEST' satisfies ErrorCode } };
}

/** One point per field; a field with a `first` argument costs its selection once per item. */
function pagedFieldEstimator(pageSizeDefault: number): ComplexityEstimator {
  return ({ field, args, childComplexity }) => {
    if (!field.args.some((argument) => argument.name === 'first')) return 1 + childComplexity;
    const first: unknown = args.first;
    // A negative or zero `first` is refused by the resolver; count it as one item meanwhile.
    const items = typeof first === 'number' ? Math.max(1, first) : pageSizeDefault;
    return 1 + items * childComplexity;
  };
}

/**
 * Costs within the limit of documents whose cost no variable can change, per parsed document
 * (Apollo hands every request with the same query text the same DocumentNode from its cache) and
 * operation name. A cost over the limit is never kept: it is computed again, as before, so a
 * request whose variables do not coerce still gets execution's own 400.
 */
const costsWithinLimit = new WeakMap<DocumentNode, Map<string, number>>();
const variableFreeCost = new WeakMap<DocumentNode, boolean>();

/**
 * True when no variable can change the cost: the estimator reads only `first`, and graphql-query-
 * complexity reads variables only through arguments and @include/@skip. So a document with no
 * variable inside any directive or any `first` argument costs the same with any variables.
 */
function costIgnoresVariables(document: DocumentNode): boolean {
  let known = variableFreeCost.get(document);
  if (known === undefined) {
    let inside = 0;
    let usesVariable = false;
    const enter = () => {
      inside += 1;
    };
    const leave = () => {
      inside -= 1;
    };
    visit(document, {
      Directive: { enter, leave },
      Argument: {
        enter: (node) => (node.name.value === 'first' ? enter() : undefined),
        leave: (node) => (node.name.value === 'first' ? leave() : undefined),
      },
      Variable: () => {
        if (inside > 0) usesVariable = true;
      },
    });
    known = !usesVariable;
    variableFreeCost.set(document, known);
  }
  return known;
}

/** Step 4: the cost with the request's own variables, or BAD_REQUEST naming both numbers. */
export function checkQueryCost(
  schema: GraphQLSchema,
  document: DocumentNode,
  operationName: string | undefined,
  variables: Record<string, unknown> | undefined,
  limits: QueryLimits,
): number {
  const known = costsWithinLimit.get(document)?.get(operationName ?? '');
  if (known !== undefined) return known;
  let cost: number;
  try {
    cost = getComplexity({
      schema,
      query: document,
      ...(operationName === undefined ? {} : { operationName }),
      variables: variables ?? {},
      estimators: [pagedFieldEstimator(limits.pageSizeDefault)],
      // Step 2 bounds the expanded size well below this; it is the library's own last stop.
      maxQueryNodes: limits.selectionsMax + 1,
    });
  } catch (error) {
    // Variables that do not coerce: execution refuses them (400, naming the variable) before any
    // resolver runs, so there is nothing to cost. Step 2 keeps the node count below the library's stop.
    if (error instanceof GraphQLError) return 0;
    throw error;
  }
  if (cost > limits.costMax) {
    throw new GatewayError(
      'BAD_REQUEST',
      `The query costs ${cost} points; at most ${limits.costMax} are allowed. ` +
        'A paged field costs its selection once per item asked for (first).',
    );
  }
  if (costIgnoresVariables(document)) {
    let costs = costsWithinLimit.get(document);
    if (costs === undefined) {
      costs = new Map();
      costsWithinLimit.set(document, costs);
    }
    costs.set(operationName ?? '', cost);
  }
  return cost;
}

/**
 * An Apollo Client link for frontends: a terminating HTTP link that gives each mutation one
 * Idempotency-Key kept across all its retries, and retries with sendWithRetries.
 *
 * The key is the one the caller puts in the operation's context (`idempotencyKey`), so a page can
 * keep one key across double clicks and reloads (for example in sessionStorage until a final
 * outcome); without one, the link makes a UUID v4 per operation. Queries pass through unkeyed,
 * with no retries.
 *
 *   const client = new ApolloClient({ link: createGatewayLink({ uri: '/graphql', headers: () => ({ authorization }) }), cache });
 *   client.mutate({ mutation: CREATE_CHARGE, variables, context: { idempotencyKey } });
 *
 * The answer's `extensions.idempotency` (key, replayed, firstRequestAt) and the attempts are
 * passed on in the result's extensions, under `idempotency` and `attempts`.
 */
import { ApolloLink } from '@apollo/client/link';
import { Observable } from 'rxjs';
import { print, type DocumentNode, type OperationDefinitionNode } from 'graphql';
import { defaultRetryBudget, sendWithRetries, type TransportOptions } from './retrying-transport';

export interface GatewayLinkOptions extends TransportOptions {
  readonly uri: string;
  readonly headers?: () => Record<string, string>;
}

function isMutation(document: DocumentNode): boolean {
  return document.definitions.some(
    (definition) =>
      definition.kind === 'OperationDefinition' && (definition as OperationDefinitionNode).operation === 'mutation',
  );
}

export function createGatewayLink(options: GatewayLinkOptions): ApolloLink {
  const budget = options.budget ?? defaultRetryBudget();
  const fetchImpl = options.fetch ?? ((input: string, init?: RequestInit) => fetch(input, init));
  return new ApolloLink(
    (operation) =>
      new Observable((subscriber) => {
        const body = JSON.stringify({
          query: print(operation.query),
          variables: operation.variables,
          operationName: operation.operationName,
        });
        const headers = options.headers?.() ?? {};
        const context = operation.getContext() as { idempotencyKey?: string };
        const run = async () => {
          if (!isMutation(operation.query)) {
            const response = await fetchImpl(options.uri, {
              method: 'POST',
              headers: { 'content-type': 'application/json', ...headers },
              body,
            });
            return (await response.json()) as Record<string, unknown>;
          }
          const idempotencyKey = context.idempotencyKey ?? crypto.randomUUID();
          const answer = await sendWithRetries(
            { url: options.uri, headers, body, idempotencyKey, callSite: operation.operationName ?? 'mutation' },
            { ...options, budget },
          );
          return { ...answer.body, extensions: { ...answer.body.extensions, attempts: answer.attempts } };
        };
        run().then(
          (result) => {
            subscriber.next(result as never);
            subscriber.complete();
          },
          (error: unknown) => subscriber.error(error),
        );
      }),
  );
}

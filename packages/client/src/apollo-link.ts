/**
 * An Apollo Client link for frontends (`@payments-gateway/client/apollo`): a terminating HTTP link
 * that gives each mutation one Idempotency-Key kept across all its retries, and retries with
 * sendWithRetries.
 *
 * The key is the one the caller puts in the operation's context (`idempotencyKey`), so a page can
 * keep one key across double clicks and reloads (for example in sessionStorage until a final
 * outcome); without one, the link makes a UUID v4 per operation. Queries pass through unkeyed,
 * with no retries.
 *
 * Headers come from the operation's context (`headers`), as with Apollo's HttpLink, so an auth
 * link made with `setContext` and composed before this one works; `options.headers` gives
 * defaults that the context's headers override. The idempotency headers are always the link's.
 * Unsubscribing (a component unmounting, a query torn down) aborts the fetch in flight and stops
 * the retries.
 *
 *   const auth = setContext((_, { headers }) => ({ headers: { ...headers, authorization: `Bearer ${token}` } }));
 *   const client = new ApolloClient({ link: ApolloLink.from([auth, createGatewayLink({ uri: '/graphql' })]), cache });
 *   client.mutate({ mutation: CreateChargeDocument, variables, context: { idempotencyKey } });
 *
 * The answer's `extensions.idempotency` (key, replayed, firstRequestAt) and the attempts are
 * passed on in the result's extensions, under `idempotency` and `attempts`.
 */
import { ApolloLink } from '@apollo/client/link';
import { Observable } from 'rxjs';
import { print, type DocumentNode } from 'graphql';
import { defaultRetryBudget, sendWithRetries, type TransportOptions } from './retrying-transport.js';

export interface GatewayLinkOptions extends TransportOptions {
  readonly uri: string;
  /** Default headers for every operation; the operation context's `headers` override them. */
  readonly headers?: () => Record<string, string>;
}

/** What the link reads from an operation's context. */
export interface GatewayLinkContext {
  readonly idempotencyKey?: string;
  readonly headers?: Record<string, string>;
}

function isMutation(document: DocumentNode): boolean {
  return document.definitions.some(
    (definition) => definition.kind === 'OperationDefinition' && definition.operation === 'mutation',
  );
}

/** Only string-valued headers, whatever another link put in the context. */
function contextHeaders(context: Record<string, unknown>): Record<string, string> {
  const headers = context.headers;
  if (typeof headers !== 'object' || headers === null) return {};
  return Object.fromEntries(
    Object.entries(headers).filter((entry): entry is [string, string] => typeof entry[1] === 'string'),
  );
}

export function createGatewayLink(options: GatewayLinkOptions): ApolloLink {
  const budget = options.budget ?? defaultRetryBudget();
  const fetchImpl = options.fetch ?? ((input: RequestInfo | URL, init?: RequestInit) => fetch(input, init));
  return new ApolloLink(
    (operation) =>
      new Observable((subscriber) => {
        const controller = new AbortController();
        const body = JSON.stringify({
          query: print(operation.query),
          variables: operation.variables,
          operationName: operation.operationName,
        });
        const context = operation.getContext() as Record<string, unknown>;
        const headers = { ...options.headers?.(), ...contextHeaders(context) };
        const run = async () => {
          if (!isMutation(operation.query)) {
            const response = await fetchImpl(options.uri, {
              method: 'POST',
              headers: { 'content-type': 'application/json', ...headers },
              body,
              signal: controller.signal,
            });
            const result: unknown = await response.json();
            if (typeof result !== 'object' || result === null)
              throw new Error(`not a GraphQL answer (HTTP ${response.status})`);
            return result;
          }
          const idempotencyKey =
            typeof context.idempotencyKey === 'string' ? context.idempotencyKey : crypto.randomUUID();
          const answer = await sendWithRetries(
            {
              url: options.uri,
              headers,
              body,
              idempotencyKey,
              callSite: operation.operationName ?? 'mutation',
              signal: controller.signal,
            },
            { ...options, fetch: fetchImpl, budget },
          );
          return { ...answer.body, extensions: { ...answer.body.extensions, attempts: answer.attempts } };
        };
        run().then(
          (result) => {
            subscriber.next(result as never);
            subscriber.complete();
          },
          (error: unknown) => {
            // After an unsubscribe nobody listens; the abort's rejection is expected, not an error.
            if (!controller.signal.aborted) subscriber.error(error);
          },
        );
        // Runs when the subscriber unsubscribes, and after complete/error (then a no-op).
        return () => controller.abort();
      }),
  );
}

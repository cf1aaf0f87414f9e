/**
 * The one place errors become GraphQL: a GatewayError keeps its code (and the field at fault);
 * anything unexpected becomes INTERNAL, whose message tells the client to retry with the same key.
 * HTTP status and headers are derived from the same code list (src/errors.ts). The public schema,
 * the admin schema and the HTTP layer (authentication, body parsing) all answer through here.
 */
import type { ErrorRequestHandler, Response } from 'express';
import type { GraphQLFormattedError } from 'graphql';
import { GraphQLError } from 'graphql';
import { unwrapResolverError } from '@apollo/server/errors';
import { HeaderMap } from '@apollo/server';
import { isTransientDatabaseError } from '../platform/database';
import { GatewayError, errorCodes, type ErrorCode } from '../errors';

export const internalErrorMessage = 'Internal error. Nothing was recorded twice: retry with the same Idempotency-Key.';

/** On 503: retry soon (docs/contract.md §2); nothing was claimed by a step that failed this way. */
const transientRetryAfterSeconds = 1;

/**
 * Finds the GatewayError behind an error, however Apollo or graphql-js wrapped it. A database
 * failure that escaped its step (a lock or statement timeout, a lost connection) is an
 * infrastructure failure, never a bug: it becomes 503 TRANSIENT_FAILURE here, in one place.
 */
export function toGatewayError(error: unknown): GatewayError | undefined {
  let current: unknown = error;
  for (let depth = 0; depth < 4 && current instanceof Error; depth += 1) {
    if (current instanceof GatewayError) return current;
    if (!(current instanceof GraphQLError) && isTransientDatabaseError(current)) return transientFailure(current);
    current = current instanceof GraphQLError ? current.originalError : undefined;
  }
  return undefined;
}

function transientFailure(cause: unknown): GatewayError {
  return new GatewayError('TRANSIENT_FAILURE', 'A temporary failure stopped this request; retry it.', {
    retryAfterSeconds: transientRetryAfterSeconds,
    cause,
  });
}

/**
 * For a failure while the request's context is built (authentication): Apollo answers those
 * from the error's `extensions.http`, so the status and Retry-After ride on it. An
 * infrastructure failure is 503; anything else stays a bug (500).
 */
export function contextCreationError(error: unknown): unknown {
  const gatewayError = toGatewayError(error);
  if (gatewayError === undefined) return error;
  const headers = new HeaderMap();
  if (gatewayError.retryAfterSeconds !== undefined) headers.set('retry-after', String(gatewayError.retryAfterSeconds));
  return new GraphQLError(gatewayError.message, {
    originalError: gatewayError,
    extensions: { code: gatewayError.code, http: { status: gatewayError.httpStatus, headers } },
  });
}

/** Errors Apollo or graphql-js raise themselves (parse, validation, variable coercion). */
function isFrameworkError(error: unknown): boolean {
  const original = unwrapResolverError(error);
  return original instanceof GraphQLError && typeof original.extensions.code === 'string';
}

export function formatError(formatted: GraphQLFormattedError, error: unknown): GraphQLFormattedError {
  const gatewayError = toGatewayError(error);
  if (gatewayError !== undefined) {
    return {
      message: gatewayError.message,
      ...(formatted.locations === undefined ? {} : { locations: formatted.locations }),
      ...(formatted.path === undefined ? {} : { path: formatted.path }),
      extensions: {
        code: gatewayError.code,
        ...(gatewayError.field === undefined ? {} : { field: gatewayError.field }),
        ...(gatewayError.retryAfterSeconds === undefined ? {} : { retryAfterSeconds: gatewayError.retryAfterSeconds }),
      },
    };
  }
  if (isFrameworkError(error) || unwrapResolverError(error) === undefined) return withoutStacktrace(formatted);
  if (formatted.extensions?.code === 'INTERNAL_SERVER_ERROR' || !(unwrapResolverError(error) instanceof GraphQLError)) {
    return {
      message: internalErrorMessage,
      ...(formatted.path === undefined ? {} : { path: formatted.path }),
      extensions: { code: 'INTERNAL' satisfies ErrorCode },
    };
  }
  return withoutStacktrace(formatted);
}

function withoutStacktrace(formatted: GraphQLFormattedError): GraphQLFormattedError {
  if (formatted.extensions === undefined || !('stacktrace' in formatted.extensions)) return formatted;
  const { stacktrace: _stacktrace, ...extensions } = formatted.extensions;
  return { ...formatted, extensions };
}

export interface HttpAnswer {
  readonly status: number;
  readonly retryAfterSeconds: number | undefined;
}

/** The HTTP status for a response's errors: the first error the gateway raised decides. */
export function httpAnswerFor(errors: readonly unknown[]): HttpAnswer | undefined {
  for (const error of errors) {
    const gatewayError = toGatewayError(error);
    if (gatewayError !== undefined) {
      return { status: gatewayError.httpStatus, retryAfterSeconds: gatewayError.retryAfterSeconds };
    }
  }
  for (const error of errors) {
    const original = unwrapResolverError(error);
    if (!(original instanceof GraphQLError))
      return { status: errorCodes.INTERNAL.httpStatus, retryAfterSeconds: undefined };
  }
  return undefined;
}

/** Answers an error raised outside GraphQL execution with the same body and status as inside it. */
export function sendGatewayError(response: Response, error: GatewayError, httpStatus = error.httpStatus): void {
  if (error.retryAfterSeconds !== undefined) response.setHeader('retry-after', String(error.retryAfterSeconds));
  response.status(httpStatus).json({ errors: [formatError({ message: error.message }, error)] });
}

/** Express's body-parser failures (too large, not JSON) answer like GraphQL errors, not HTML pages. */
export function bodyParserErrorHandler(requestBodyBytesMax: number): ErrorRequestHandler {
  return (error: { status?: number; type?: string }, _request, response, next) => {
    if (response.headersSent || error.status === undefined || error.status >= 500) return next(error);
    const message =
      error.type === 'entity.too.large'
        ? `The request body is over ${requestBodyBytesMax} bytes.`
        : 'The request body is not valid JSON.';
    // The code is BAD_REQUEST either way; the status stays body-parser's own (413 or 400).
    sendGatewayError(response, new GatewayError('BAD_REQUEST', message), error.status);
  };
}

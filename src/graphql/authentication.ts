/**
 * Authentication as HTTP middleware, before any GraphQL work: who is calling (from the API-key
 * cache, or one lookup), limited per client address before the lookup (merchants/auth-limits.ts).
 * Answers 429 RATE_LIMITED or 503 TRANSIENT_FAILURE itself; otherwise sets res.locals.authentication.
 */
import type { NextFunction, Request, RequestHandler, Response } from 'express';
import { GatewayError, errorCodes, type ErrorCode } from '../errors';
import { sendGatewayError, toGatewayError } from './errors';
import type { AuthFailureLimiter } from '../merchants/auth-limits';
import type { Merchant, MerchantAuthenticator } from '../merchants/merchants';
import type { Logger } from '../platform/logger';

export function clientAddress(request: Request): string {
  // request.ip honours TRUST_PROXY_HOPS ('trust proxy'); without a proxy it is the socket's peer.
  return request.ip ?? request.socket.remoteAddress ?? 'unknown';
}

export function bearerToken(request: Request): string | undefined {
  const value = request.headers.authorization;
  return value?.match(/^Bearer\s+(\S+)\s*$/i)?.[1];
}

/** Answers like a GraphQL error, with the HTTP status of its code and Retry-After when given. */
export function refuseRequest(response: Response, code: ErrorCode, message: string, retryAfterSeconds?: number): void {
  sendGatewayError(
    response,
    new GatewayError(code, message, retryAfterSeconds === undefined ? {} : { retryAfterSeconds }),
  );
}

export interface Authentication {
  readonly merchant: Merchant | null;
  /** Why `merchant` is null: no Authorization header, or a key we do not know. */
  readonly problem: 'missing' | 'unknown' | null;
}

const tooManyFailures = 'Too many failed authentications from this address; retry after Retry-After seconds.';

/** Express middleware for /graphql: sets res.locals.authentication, or answers 429 or 503 itself. */
export function merchantAuthentication(
  authenticator: MerchantAuthenticator,
  failures: AuthFailureLimiter,
  logger: Logger,
): RequestHandler {
  return async (request: Request, response: Response, next: NextFunction) => {
    const token = bearerToken(request);
    const cached = token === undefined ? undefined : authenticator.cached(token);
    if (cached !== undefined) {
      response.locals.authentication = { merchant: cached, problem: null } satisfies Authentication;
      return next();
    }
    const address = clientAddress(request);
    const waitSeconds = token === undefined ? await failures.blockedFor(address) : await failures.spend(address);
    if (waitSeconds !== undefined) {
      logger.warn({ address }, 'authentication refused: too many failures from this address');
      return refuseRequest(response, 'RATE_LIMITED', tooManyFailures, waitSeconds);
    }
    let merchant: Merchant | null = null;
    if (token !== undefined) {
      try {
        merchant = await authenticator.authenticate(token);
      } catch (error) {
        // An infrastructure failure (classified where the database is opened) is 503 with
        // Retry-After; anything else is a bug and stays a 500.
        const gatewayError = toGatewayError(error);
        if (gatewayError === undefined || !gatewayError.transient) return next(error);
        logger.warn({ err: error }, 'API key lookup failed');
        // A lookup that could not be made says nothing about the key: it is no failed
        // authentication. Kept, a merchant retrying through a database outage would be locked
        // out (429) for a minute after the database came back.
        void failures.refund(address);
        return sendGatewayError(response, gatewayError);
      }
      if (merchant !== null) void failures.refund(address);
    } else {
      // No key is fine for `__`-only operations outside production; it counts only when it ends in 401.
      response.on('finish', () => {
        if (response.statusCode === errorCodes.UNAUTHENTICATED.httpStatus) void failures.spend(address);
      });
    }
    const problem = merchant !== null ? null : token === undefined ? 'missing' : 'unknown';
    response.locals.authentication = { merchant, problem } satisfies Authentication;
    next();
  };
}

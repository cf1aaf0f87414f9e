/**
 * POST /admin/graphql: the operators' schema behind an admin token that is not a merchant key.
 *   - no ADMIN_TOKEN configured: the route does not exist (404);
 *   - a merchant's API key: 403 FORBIDDEN;
 *   - any other wrong or missing token: 401 UNAUTHENTICATED, logged with the client address;
 *   - past ADMIN_AUTH_FAILURES_PER_MINUTE wrong tokens from one address: 429 with Retry-After,
 *     before the token is even compared;
 *   - the token: the schema.
 * Tokens are compared in constant time.
 */
import { timingSafeEqual } from 'node:crypto';
import { ApolloServer, type ApolloServerPlugin } from '@apollo/server';
import { expressMiddleware } from '@as-integrations/express5';
import express, { type NextFunction, type Request, type Response } from 'express';
import { formatError, httpAnswerFor } from '../graphql/errors';
import { bearerToken, clientAddress, refuseRequest } from '../graphql/authentication';
import type { AuthFailureLimiter } from '../merchants/auth-limits';
import { hashApiKey, type MerchantAuthenticator } from '../merchants/merchants';
import type { Logger } from '../platform/logger';
import { adminActor, buildAdminSchema, type AdminContext } from './admin-schema';

export interface AdminServerOptions {
  readonly adminToken: string;
  readonly authenticator: MerchantAuthenticator;
  /** Wrong admin tokens per client address: limited before anything else, and logged. */
  readonly failures: AuthFailureLimiter;
  readonly logger: Logger;
  readonly isProduction: boolean;
  readonly requestBodyBytesMax: number;
  readonly context: Omit<AdminContext, 'actor'>;
}

function sameSecret(given: string, expected: string): boolean {
  // Hash both first so the comparison has a fixed length and reveals nothing about it.
  return timingSafeEqual(Buffer.from(hashApiKey(given), 'hex'), Buffer.from(hashApiKey(expected), 'hex'));
}

const statusPlugin: ApolloServerPlugin<AdminContext> = {
  async requestDidStart() {
    return {
      async willSendResponse({ response, errors }) {
        const answer = httpAnswerFor(errors ?? []);
        if (answer === undefined) return;
        response.http.status = answer.status;
        if (answer.retryAfterSeconds !== undefined) {
          response.http.headers.set('retry-after', String(answer.retryAfterSeconds));
        }
      },
    };
  },
};

export async function createAdminRouter(
  options: AdminServerOptions,
): Promise<{ router: express.Router; stop(): Promise<void> }> {
  const apollo = new ApolloServer<AdminContext>({
    schema: await buildAdminSchema(),
    formatError,
    introspection: !options.isProduction,
    includeStacktraceInErrorResponses: false,
    // Apollo's own signal handler would stop it and re-raise SIGTERM mid-drain (see graphql/server.ts).
    // No drain plugin here: the public server drains the shared HTTP server, and a second drain
    // would close it twice (the second close never calls back).
    stopOnTerminationSignals: false,
    plugins: [statusPlugin],
  });
  await apollo.start();
  const authenticate = async (request: Request, response: Response, next: NextFunction) => {
    const address = clientAddress(request);
    const waitSeconds = await options.failures.blockedFor(address);
    if (waitSeconds !== undefined) {
      options.logger.warn({ address }, 'admin authentication refused: too many failures from this address');
      return refuseRequest(
        response,
        'RATE_LIMITED',
        'Too many wrong admin tokens; retry after Retry-After.',
        waitSeconds,
      );
    }
    const token = bearerToken(request);
    if (token !== undefined && sameSecret(token, options.adminToken)) return next();
    await options.failures.spend(address);
    options.logger.warn({ address, tokenGiven: token !== undefined }, 'admin authentication failed');
    const merchant = token === undefined ? null : await options.authenticator.authenticate(token).catch(() => null);
    if (merchant !== null) {
      return refuseRequest(response, 'FORBIDDEN', 'A merchant API key cannot use the admin API.');
    }
    return refuseRequest(response, 'UNAUTHENTICATED', 'Send the admin token as Authorization: Bearer <token>.');
  };
  const router = express.Router();
  router.use(
    '/admin/graphql',
    authenticate,
    express.json({ limit: options.requestBodyBytesMax }),
    expressMiddleware(apollo, {
      context: async ({ req }) => ({ ...options.context, actor: adminActor(bearerToken(req) ?? '') }),
    }),
  );
  return { router, stop: () => apollo.stop() };
}

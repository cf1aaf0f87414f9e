/**
 * POST /admin/graphql: the operators' schema behind an admin token that is not a merchant key.
 *   - no ADMIN_TOKEN configured: the route does not exist (404);
 *   - a merchant's API key: 403 FORBIDDEN;
 *   - any other wrong or missing token: 401 UNAUTHENTICATED;
 *   - the token: the schema.
 * Tokens are compared in constant time.
 */
import { timingSafeEqual } from 'node:crypto';
import { ApolloServer, type ApolloServerPlugin } from '@apollo/server';
import { expressMiddleware } from '@as-integrations/express5';
import express, { type NextFunction, type Request, type Response } from 'express';
import { GatewayError } from '../errors';
import { formatError, httpAnswerFor, sendGatewayError } from '../graphql/errors';
import { hashApiKey, type MerchantAuthenticator } from '../merchants/merchants';
import { adminActor, buildAdminSchema, type AdminContext } from './admin-schema';

export interface AdminServerOptions {
  readonly adminToken: string;
  readonly authenticator: MerchantAuthenticator;
  readonly isProduction: boolean;
  readonly requestBodyBytesMax: number;
  readonly context: Omit<AdminContext, 'actor'>;
}

function bearer(request: Request): string | undefined {
  return request.headers.authorization?.match(/^Bearer\s+(\S+)\s*$/i)?.[1];
}

function sameSecret(given: string, expected: string): boolean {
  // Hash both first so the comparison has a fixed length and reveals nothing about it.
  return timingSafeEqual(Buffer.from(hashApiKey(given), 'hex'), Buffer.from(hashApiKey(expected), 'hex'));
}

function refuse(response: Response, code: 'UNAUTHENTICATED' | 'FORBIDDEN', message: string): void {
  sendGatewayError(response, new GatewayError(code, message));
}

const statusPlugin: ApolloServerPlugin<AdminContext> = {
  async requestDidStart() {
    return {
      async willSendResponse({ response, errors }) {
        const answer = httpAnswerFor(errors ?? []);
        if (answer !== undefined) response.http.status = answer.status;
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
    const token = bearer(request);
    if (token !== undefined && sameSecret(token, options.adminToken)) return next();
    if (token !== undefined && (await options.authenticator.authenticate(token)) !== null) {
      return refuse(response, 'FORBIDDEN', 'A merchant API key cannot use the admin API.');
    }
    return refuse(response, 'UNAUTHENTICATED', 'Send the admin token as Authorization: Bearer <token>.');
  };
  const router = express.Router();
  router.use(
    '/admin/graphql',
    authenticate,
    express.json({ limit: options.requestBodyBytesMax }),
    expressMiddleware(apollo, {
      context: async ({ req }) => ({ ...options.context, actor: adminActor(bearer(req) ?? '') }),
    }),
  );
  return { router, stop: () => apollo.stop() };
}

/**
 * HTTP transport: Express 5 with Apollo Server 5 at POST /graphql. Body size and what a query may
 * cost are bounded (query-limits.ts); introspection, field suggestions and Apollo Sandbox are on
 * outside production only.
 */
import { randomUUID } from 'node:crypto';
import type { Server } from 'node:http';
import { ApolloServer } from '@apollo/server';
import { ApolloServerPluginLandingPageDisabled } from '@apollo/server/plugin/disabled';
import { ApolloServerPluginDrainHttpServer } from '@apollo/server/plugin/drainHttpServer';
import { ApolloServerPluginLandingPageLocalDefault } from '@apollo/server/plugin/landingPage/default';
import { expressMiddleware } from '@as-integrations/express5';
import express, { type Request } from 'express';
import type { AuthFailureLimiter } from '../merchants/auth-limits';
import { merchantAuthentication, type Authentication } from './authentication';
import type { MerchantAuthenticator } from '../merchants/merchants';
import type { MerchantRateLimits } from '../merchants/rate-limits';
import type { Logger } from '../platform/logger';
import type { GatewayContext, GatewayServices } from './context';
import { formatError } from './errors';
import { requestGuardPlugin, responsePlugin } from './plugins';
import { asBadRequestWhenOverLimit, queryLimitServerOptions, type QueryLimits } from './query-limits';
import type { ReplayFastPath } from './replay-fast-path';
import { buildPublicSchema } from './schema';

export interface GraphqlServerOptions {
  readonly services: GatewayServices;
  readonly authenticator: MerchantAuthenticator;
  /** Failed or missing authentications per client address, checked before any lookup. */
  readonly authFailures: AuthFailureLimiter;
  readonly logger: Logger;
  readonly isProduction: boolean;
  readonly requestBodyBytesMax: number;
  readonly queryLimits: QueryLimits;
  readonly rateLimits?: MerchantRateLimits;
  /** Replays of completed keys answered from Redis before execution (replay-fast-path.ts). */
  readonly replays?: ReplayFastPath;
  /** The process's HTTP server, drained by Apollo on stop: in-flight requests finish within drainGraceMs. */
  readonly httpServer: Server;
  readonly drainGraceMs: number;
}

const requestIdPattern = /^[A-Za-z0-9._-]{1,100}$/;

export interface GraphqlServer {
  readonly router: express.Router;
  stop(): Promise<void>;
}

export async function createGraphqlServer(options: GraphqlServerOptions): Promise<GraphqlServer> {
  const schema = await buildPublicSchema();
  const apollo = new ApolloServer<GatewayContext>({
    schema,
    formatError: (formatted, error) => formatError(asBadRequestWhenOverLimit(formatted), error),
    introspection: !options.isProduction,
    // "Did you mean …" names fields a client did not ask about: none of that in production.
    hideSchemaDetailsFromClientErrors: options.isProduction,
    includeStacktraceInErrorResponses: false,
    // Outside NODE_ENV=test Apollo installs its own SIGTERM/SIGINT handler, stops itself and then
    // re-raises the signal (maybeRegisterTerminationSignalHandlers in @apollo/server), which kills
    // the process mid-drain. main.ts owns the signals and the lifecycle stops Apollo in its turn.
    stopOnTerminationSignals: false,
    ...queryLimitServerOptions(options.queryLimits),
    plugins: [
      // Stops accepting connections and waits for in-flight requests, cut after drainGraceMs.
      ApolloServerPluginDrainHttpServer({
        httpServer: options.httpServer,
        stopGracePeriodMillis: options.drainGraceMs,
      }),
      requestGuardPlugin({
        ...(options.rateLimits === undefined ? {} : { rateLimits: options.rateLimits }),
        ...(options.replays === undefined ? {} : { replays: options.replays }),
        limits: options.queryLimits,
        requireMerchant: true,
      }),
      responsePlugin(),
      // No landing page in production: Apollo's production page loads an unpinned script from a CDN.
      options.isProduction
        ? ApolloServerPluginLandingPageDisabled()
        : ApolloServerPluginLandingPageLocalDefault({ footer: false, embed: true }),
    ],
  });
  await apollo.start();

  const router = express.Router();
  router.use(
    '/graphql',
    merchantAuthentication(options.authenticator, options.authFailures, options.logger),
    express.json({ limit: options.requestBodyBytesMax }),
    expressMiddleware(apollo, { context: async ({ req, res }) => buildContext(req, res, options) }),
  );
  return { router, stop: () => apollo.stop() };
}

function header(req: Request, name: string): string | undefined {
  const value = req.headers[name];
  return Array.isArray(value) ? value[0] : value;
}

/**
 * The two key headers, one entry per occurrence (what `headersDistinct` gives, without building
 * it for every header of every request).
 */
function keyHeaders(
  rawHeaders: readonly string[],
): Pick<GatewayContext['headers'], 'idempotencyKey' | 'xIdempotencyKey'> {
  let idempotencyKey: string[] | undefined;
  let xIdempotencyKey: string[] | undefined;
  for (let index = 0; index + 1 < rawHeaders.length; index += 2) {
    const name = rawHeaders[index]!;
    if (name.length === 15 && name.toLowerCase() === 'idempotency-key') {
      (idempotencyKey ??= []).push(rawHeaders[index + 1]!);
    } else if (name.length === 17 && name.toLowerCase() === 'x-idempotency-key') {
      (xIdempotencyKey ??= []).push(rawHeaders[index + 1]!);
    }
  }
  return { idempotencyKey, xIdempotencyKey };
}

function buildContext(req: Request, res: express.Response, options: GraphqlServerOptions): GatewayContext {
  const incomingId = header(req, 'x-request-id');
  const requestId = incomingId !== undefined && requestIdPattern.test(incomingId) ? incomingId : randomUUID();
  res.setHeader('x-request-id', requestId);
  const authentication = res.locals.authentication as Authentication;
  return {
    requestId,
    merchant: authentication.merchant,
    authProblem: authentication.problem,
    headers: {
      ...keyHeaders(req.rawHeaders),
      prefer: header(req, 'prefer'),
      attempt: header(req, 'idempotency-attempt'),
    },
    idempotency: null,
    services: options.services,
    logger: options.logger.child({ requestId }),
  };
}

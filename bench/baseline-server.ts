/**
 * The baseline for `npm run bench`: a trivial Apollo Server 5 mutation (`ping`) served with the
 * gateway's own server settings, in its own process, so a replay's cost can be read against what
 * the framework alone costs:
 *   - Express 5, x-powered-by off, ETags off, express.json with the same body limit;
 *   - Apollo Server 5 as the gateway builds it in production: introspection off, no stack traces,
 *     the production landing page plugin;
 *   - HTTP keep-alive timeout 5 s, listening on 0.0.0.0.
 * What it leaves out is the gateway's own work: authentication, the rate limit, the request
 * guard and response plugins, type-graphql, the idempotency layer.
 * Reads PORT and REQUEST_BODY_BYTES_MAX; prints "listening" when ready.
 */
import { ApolloServer } from '@apollo/server';
import { ApolloServerPluginLandingPageProductionDefault } from '@apollo/server/plugin/landingPage/default';
import { expressMiddleware } from '@as-integrations/express5';
import express from 'express';
import { buildSchema } from 'graphql';

const schema = buildSchema(`
  type Query { ok: Boolean }
  type Mutation { ping: Boolean! }
`);

const apollo = new ApolloServer({
  schema,
  rootValue: { ping: () => true },
  introspection: false,
  includeStacktraceInErrorResponses: false,
  plugins: [ApolloServerPluginLandingPageProductionDefault({ footer: false })],
});
await apollo.start();
const app = express();
app.disable('x-powered-by');
app.set('etag', false);
app.use(
  '/graphql',
  express.json({ limit: Number(process.env.REQUEST_BODY_BYTES_MAX ?? 65_536) }),
  expressMiddleware(apollo),
);
const server = app.listen(Number(process.env.PORT ?? 4500), '0.0.0.0', () => process.stdout.write('listening\n'));
server.keepAliveTimeout = 5_000;

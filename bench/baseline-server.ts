/**
 * Baselines for `npm run bench`, in their own process: Express 5 + Apollo Server 5 with
 *   - `ping`: a trivial mutation (what replays are compared with);
 *   - `createChargeDirect`: the same acquirer call and the same charge + outbox write as
 *     createCharge, with the idempotency layer switched off (no key, no Redis, no lease).
 * Reads DATABASE_URL and PORT; prints "listening" when ready.
 */
import { randomBytes } from 'node:crypto';
import { ApolloServer } from '@apollo/server';
import { expressMiddleware } from '@as-integrations/express5';
import express from 'express';
import { buildSchema } from 'graphql';
import { SimulatedAcquirer } from '../src/acquirer/simulated-acquirer';
import { openDatabase } from '../src/platform/database';

const databaseUrl = process.env.DATABASE_URL ?? '';
const merchantId = process.env.BENCH_MERCHANT_ID ?? '';
const database = openDatabase({
  databaseUrl,
  databasePoolSizeMax: 16,
  databaseStatementTimeoutMs: 5_000,
  databaseLockTimeoutMs: 2_000,
});
const acquirer = new SimulatedAcquirer({ databaseUrl, timeoutMs: 3_000, slowMs: 0 });

const schema = buildSchema(`
  type Query { ok: Boolean }
  input ChargeInput { amount: Int!, currency: String!, source: String! }
  type Charge { id: ID!, amount: Int!, currency: String!, status: String!, createdAt: String! }
  type Mutation { ping: Boolean!, createChargeDirect(input: ChargeInput!): Charge! }
`);

const rootValue = {
  ping: () => true,
  async createChargeDirect({ input }: { input: { amount: number; currency: string; source: string } }) {
    const authorization = await acquirer.authorize({
      idempotencyKey: `bench_${randomBytes(10).toString('hex')}`,
      kind: 'charge',
      amount: input.amount,
      currency: input.currency,
      source: input.source,
    });
    const charge = {
      id: `ch_${randomBytes(12).toString('hex')}`,
      amount: input.amount,
      currency: input.currency,
      status: authorization.approved ? 'SUCCEEDED' : 'FAILED',
      createdAt: new Date().toISOString(),
    };
    await database.prisma.$queryRaw`
      WITH charge AS (
        INSERT INTO charges (id, merchant_id, amount, currency, source, status, failure_code, authorization_id, created_at)
        VALUES (${charge.id}, ${merchantId}, ${charge.amount}, ${charge.currency}, ${input.source}, ${charge.status},
                ${authorization.declineCode}, ${authorization.approved ? authorization.authorizationId : null}, ${charge.createdAt}::timestamptz)
        RETURNING id
      )
      INSERT INTO outbox_events (event_type, aggregate_id, payload)
      SELECT 'charge.succeeded', charge.id, ${JSON.stringify(charge)} FROM charge RETURNING id`;
    return charge;
  },
};

const apollo = new ApolloServer({ schema, rootValue });
await apollo.start();
const app = express();
app.use('/graphql', express.json(), expressMiddleware(apollo));
app.listen(Number(process.env.PORT ?? 4500), '127.0.0.1', () => process.stdout.write('listening\n'));

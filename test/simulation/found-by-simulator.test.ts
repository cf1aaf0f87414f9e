/**
 * Regression tests for what the simulator found (docs/proof.md, "What the simulator found") that
 * no other file pins down. Each describe names the seed and the bug; the fix is the gateway's.
 * Over HTTP against a running gateway, with the fault caused for real.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { Redis } from 'ioredis';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { listensOn, startChildGateway } from '../../scripts/harness/child-gateway';
import { startPrivateRedis, type PrivateRedis } from '../../scripts/harness/redis';
import { createTestEnvironment, startTestGateway, type TestEnvironment, type TestGateway } from '../helpers/gateway';
import { postGraphql, type GraphqlAnswer } from '../helpers/http';
import { waitFor } from '../helpers/ledger';

const chargeMutation = 'mutation C($input: CreateChargeInput!) { createCharge(input: $input) { id status amount } }';
const refundMutation = 'mutation R($input: RefundChargeInput!) { refundCharge(input: $input) { id status amount } }';
const input = { amount: 2_500, currency: 'EUR', source: 'tok_visa' };

function send(gateway: TestGateway, mutation: string, key: string, variables: Record<string, unknown>) {
  return postGraphql(
    gateway.url,
    { query: mutation, variables: { input: variables } },
    { authorization: `Bearer ${gateway.apiKey}`, 'idempotency-key': key },
  );
}

/** What the simulator checks of every answer: never 500, and a 409 or 503 says when to retry. */
function expectRetryableOrFinal(answers: readonly GraphqlAnswer[]): void {
  for (const answer of answers) {
    expect(answer.status, answer.text).not.toBe(500);
    expect([200, 409, 503], answer.text).toContain(answer.status);
    if (answer.status !== 200) expect(Number(answer.headers.get('retry-after')), answer.text).toBeGreaterThanOrEqual(1);
  }
}

/** Sends again after each Retry-After, as the client does, until the key has a final answer. */
async function untilFinal(retry: () => Promise<GraphqlAnswer>, deadlineMs = 60_000): Promise<GraphqlAnswer> {
  const deadline = Date.now() + deadlineMs;
  for (;;) {
    const answer = await retry();
    if (answer.status !== 409 && answer.status !== 503) {
      expect(answer.status, answer.text).toBe(200);
      return answer;
    }
    if (Date.now() > deadline) throw new Error(`no final answer within ${deadlineMs} ms: ${answer.text}`);
    await new Promise((resolve) => setTimeout(resolve, Number(answer.headers.get('retry-after')) * 1_000));
  }
}

describe('seed 100: redis-server frozen (SIGSTOP) while charges, replays and refunds arrive', () => {
  let redis: PrivateRedis;
  let environment: TestEnvironment;
  let gateway: TestGateway;
  beforeAll(async () => {
    redis = await startPrivateRedis();
    environment = await createTestEnvironment({ redisUrl: redis.url });
    gateway = await startTestGateway(environment, { ROLE: 'api' });
  });
  afterAll(async () => {
    redis?.signal('SIGCONT');
    await gateway?.stop();
    await redis?.stop();
    await environment?.cleanup();
  });

  it('answers 200, or 409/503 with Retry-After, never 500 INTERNAL; once thawed, each key has one charge or refund', async () => {
    const before = await send(gateway, chargeMutation, 'frozen-before', input);
    expect(before.status).toBe(200);
    const chargeId = String((before.body.data?.createCharge as { id: string }).id);

    redis.signal('SIGSTOP'); // Connections stay open and nothing answers: the hot path's commands time out.
    let during: GraphqlAnswer[];
    try {
      during = await Promise.all([
        send(gateway, chargeMutation, 'frozen-new-1', input),
        send(gateway, chargeMutation, 'frozen-new-2', { ...input, source: 'tok_chargeDeclined' }),
        send(gateway, chargeMutation, 'frozen-before', input), // a replay
        send(gateway, refundMutation, 'frozen-refund', { chargeId, amount: 1_000 }),
        ...Array.from({ length: 5 }, () => send(gateway, chargeMutation, 'frozen-copies', input)),
      ]);
    } finally {
      redis.signal('SIGCONT');
    }
    expectRetryableOrFinal(during);
    expect(during[2]!.status === 200 ? during[2]!.body.data : before.body.data).toEqual(before.body.data);

    const final = await Promise.all([
      untilFinal(() => send(gateway, chargeMutation, 'frozen-new-1', input)),
      untilFinal(() => send(gateway, chargeMutation, 'frozen-new-2', { ...input, source: 'tok_chargeDeclined' })),
      untilFinal(() => send(gateway, refundMutation, 'frozen-refund', { chargeId, amount: 1_000 })),
      untilFinal(() => send(gateway, chargeMutation, 'frozen-copies', input)),
    ]);
    expect(final.map((answer) => (Object.values(answer.body.data ?? {})[0] as { status: string }).status)).toEqual([
      'SUCCEEDED',
      'FAILED',
      'SUCCEEDED',
      'SUCCEEDED',
    ]);
    const count = (sql: string, values: unknown[] = []) => environment.database.count(sql, values);
    expect(await count('SELECT count(*) FROM charges')).toBe(4);
    expect(
      await count(
        `SELECT count(*) FROM charges c JOIN idempotency_keys k ON k.id = c.idempotency_key_id
          WHERE k.key = ANY($1)`,
        [['frozen-before', 'frozen-new-1', 'frozen-new-2', 'frozen-copies']],
      ),
    ).toBe(4);
    expect(await count('SELECT count(*) FROM refunds')).toBe(1);
    expect(await count("SELECT count(*) FROM acquirer_authorizations WHERE kind = 'charge' AND approved")).toBe(3);
    expect(await count("SELECT count(*) FROM acquirer_authorizations WHERE kind = 'refund'")).toBe(1);
    expect(await count('SELECT amount_reserved AS count FROM charges WHERE id = $1', [chargeId])).toBe(0);
  });
});

describe('seeds 1 and 100: a loaded machine (a pool slot or a lock not obtained in time)', () => {
  let environment: TestEnvironment;
  let gateway: TestGateway;
  beforeAll(async () => {
    environment = await createTestEnvironment();
    // One connection, so a request that waits on a lock keeps every other request waiting for the pool.
    gateway = await startTestGateway(environment, {
      ROLE: 'api',
      DATABASE_POOL_SIZE_MAX: '1',
      DATABASE_POOL_CONNECT_TIMEOUT_MS: '500',
      DATABASE_LOCK_TIMEOUT_MS: '3000',
    });
  });
  afterAll(async () => {
    await gateway?.stop();
    await environment?.cleanup();
  });

  it('answers 503 TRANSIENT_FAILURE with Retry-After, never 500 INTERNAL; the retries charge and refund once', async () => {
    const charged = await send(gateway, chargeMutation, 'loaded-charge', input);
    expect(charged.status).toBe(200);
    const chargeId = String((charged.body.data?.createCharge as { id: string }).id);
    const holder = new pg.Client({ connectionString: environment.database.url });
    await holder.connect();
    let during: GraphqlAnswer[];
    try {
      await holder.query('BEGIN');
      await holder.query('LOCK TABLE charges IN ACCESS EXCLUSIVE MODE');
      during = await Promise.all([
        send(gateway, refundMutation, 'loaded-refund-1', { chargeId, amount: 100 }),
        send(gateway, refundMutation, 'loaded-refund-2', { chargeId, amount: 200 }),
        send(gateway, chargeMutation, 'loaded-new', input),
        send(gateway, chargeMutation, 'loaded-charge', input),
      ]);
    } finally {
      await holder.query('ROLLBACK').catch(() => undefined);
      await holder.end();
    }
    expectRetryableOrFinal(during);
    expect(during.some((answer) => answer.status === 503)).toBe(true);

    await untilFinal(() => send(gateway, refundMutation, 'loaded-refund-1', { chargeId, amount: 100 }));
    await untilFinal(() => send(gateway, refundMutation, 'loaded-refund-2', { chargeId, amount: 200 }));
    await untilFinal(() => send(gateway, chargeMutation, 'loaded-new', input));
    const count = (sql: string, values: unknown[] = []) => environment.database.count(sql, values);
    expect(await count('SELECT count(*) FROM charges')).toBe(2);
    expect(await count('SELECT count(*) FROM refunds')).toBe(2);
    expect(await count('SELECT amount_refunded AS count FROM charges WHERE id = $1', [chargeId])).toBe(300);
    expect(await count('SELECT amount_reserved AS count FROM charges WHERE id = $1', [chargeId])).toBe(0);
  });
});

describe('seed 1 in CI: another process took a child gateway’s port and answered its /healthz', () => {
  it('is not taken for the child: the start fails (EADDRINUSE) instead of a "crash" reported later', async () => {
    // What the simulator saw: a gateway of another suite on the machine, on the port freePort()
    // had just handed out, answered /healthz; ours was counted as started, then exited.
    const squatter = http.createServer((_request, response) => response.end('{"status":"ok"}'));
    await new Promise<void>((resolve) => squatter.listen(0, '0.0.0.0', resolve));
    const { port } = squatter.address() as AddressInfo;
    try {
      expect(listensOn(process.pid, port)).toBe(true);
      const environment = await createTestEnvironment();
      try {
        const outcome = await startChildGateway(environment.env({ ROLE: 'worker' }), {
          port,
          readyTimeoutMs: 120_000,
        }).then(
          async (child) => {
            await child.kill(); // Taken for ready: the bug. Do not leave it running.
            return 'ready';
          },
          (error: unknown) => String(error),
        );
        expect(outcome).toMatch(/exited before it was ready[\s\S]*EADDRINUSE/);
      } finally {
        await environment.cleanup();
      }
    } finally {
      squatter.close();
    }
  }, 150_000);
});

describe('seeds 5000–5049: a merchant that retried through a database outage was then locked out (429) for a minute', () => {
  // Every attempt with an uncached key spends one of the address's authentication failures before
  // the lookup, and gets it back when the key is valid; a lookup that failed (503) kept it. A cold
  // api (just restarted) answering 503 through an outage locked its one client address out.
  let environment: TestEnvironment;
  let gateway: TestGateway;
  beforeAll(async () => {
    environment = await createTestEnvironment();
    gateway = await startTestGateway(environment, {
      ROLE: 'api',
      DATABASE_LOCK_TIMEOUT_MS: '200',
      AUTH_FAILURES_PER_MINUTE: '10',
      // No key cache: every request looks the key up, as a restarted api's first requests do.
      MERCHANT_CACHE_TTL_MS: '0',
    });
  });
  afterAll(async () => {
    await gateway?.stop();
    await environment?.cleanup();
  });

  it('answers every attempt 503 while the lookup cannot be made, and 200 as soon as it can', async () => {
    const holder = new pg.Client({ connectionString: environment.database.url });
    await holder.connect();
    const during: GraphqlAnswer[] = [];
    try {
      await holder.query('BEGIN');
      await holder.query('LOCK TABLE merchants IN ACCESS EXCLUSIVE MODE');
      // More attempts than AUTH_FAILURES_PER_MINUTE, one after another, as retrying clients send them.
      for (let attempt = 0; attempt < 15; attempt += 1) {
        during.push(await send(gateway, chargeMutation, `outage-${attempt}`, input));
      }
    } finally {
      await holder.query('ROLLBACK').catch(() => undefined);
      await holder.end();
    }
    expect(during.map((answer) => answer.status)).toEqual(during.map(() => 503));
    const after = await send(gateway, chargeMutation, 'after-outage', input);
    expect(after.status, after.text).toBe(200);
  });
});

describe('seed 5026: a key answered 422 REUSED to the body that took it, from another body’s in-flight Redis marker', () => {
  // Bug, fixed (src/idempotency/idempotency-store.ts, answerFromRedis): an in-flight marker with
  // another fingerprint was answered 422 IDEMPOTENCY_KEY_REUSED from Redis. But a request sets its
  // marker before Postgres decides anything, so the marker can belong to a body that does not hold
  // the key (it is about to be refused, or its Postgres step fails), while the body that holds or
  // completed the key was told, finally, that its key was reused. The simulator saw it with Postgres
  // stopped: body B's attempt set its marker and answered 503; body A's concurrent send through the
  // same api got 422 from the marker; A's twin then got 200 for the charge. Here the window is held
  // open with a lock instead: B's marker sits in Redis while B waits behind the lock. Now Redis
  // answers 422 only from a *completed* marker; another body's in-flight marker sends the request
  // to Postgres.
  let environment: TestEnvironment;
  let gateway: TestGateway;
  beforeAll(async () => {
    environment = await createTestEnvironment();
    gateway = await startTestGateway(environment, { ROLE: 'api', DATABASE_LOCK_TIMEOUT_MS: '15000' });
  });
  afterAll(async () => {
    await gateway?.stop();
    await environment?.cleanup();
  });

  it('answers the body that holds the key its own charge (200, a replay), never 422', async () => {
    const first = await send(gateway, chargeMutation, 'marker-race', input);
    expect(first.status).toBe(200);
    // Redis lost the completed answer (a restart, FLUSHALL: faults the simulator injects).
    const redisKey = `${environment.redisKeyPrefix}:idem:{${gateway.merchantId}}:marker-race`;
    const redis = new Redis(environment.redisUrl, { maxRetriesPerRequest: 1 });
    const holder = new pg.Client({ connectionString: environment.database.url });
    await holder.connect();
    try {
      await redis.del(redisKey);
      await holder.query('BEGIN');
      await holder.query('LOCK TABLE idempotency_keys IN ACCESS EXCLUSIVE MODE');
      const other = send(gateway, chargeMutation, 'marker-race', { ...input, amount: input.amount - 1 });
      await waitFor(async () => (await redis.exists(redisKey)) === 1, 30_000, "the other body's in-flight marker");
      let settled = false;
      const same = send(gateway, chargeMutation, 'marker-race', input).finally(() => (settled = true));
      // Until the same body has its answer, or waits behind the lock too (then Postgres decides).
      await waitFor(
        async () =>
          settled ||
          (await environment.database.count(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'",
          )) >= 2,
        30_000,
        'the same body to be answered or to wait for Postgres',
      );
      await holder.query('ROLLBACK');
      const [otherAnswer, sameAnswer] = await Promise.all([other, same]);
      expect(otherAnswer.body.errors?.[0]?.extensions?.code, otherAnswer.text).toBe('IDEMPOTENCY_KEY_REUSED');
      expect(sameAnswer.status, sameAnswer.text).toBe(200);
      expect(sameAnswer.body.data).toEqual(first.body.data);
    } finally {
      await holder.query('ROLLBACK').catch(() => undefined);
      await holder.end();
      redis.disconnect();
    }
  });
});

/**
 * `npm run bench` (charges): createCharge over HTTP with autocannon at 1, 16 and 64 connections,
 * against a gateway child process (ROLE=api), printing req/s, p50 and p99 for
 *   - new charges (a fresh Idempotency-Key per request),
 *   - replays of completed keys,
 *   - the same charge write with the idempotency layer switched off (bench/baseline-server.ts),
 *   - a trivial Apollo mutation (the same baseline server),
 *   - `{ __typename }` through the gateway's own stack (auth, plugins, type-graphql): what the
 *     server costs before the idempotency layer does anything,
 * and pgbench's tps for the new charge's SQL (the same four statements) at the same concurrency.
 * It uses its own database and Redis prefix and removes them. BENCH_SECONDS sets each run's length.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import autocannon from 'autocannon';
import pg from 'pg';
import { createMerchant } from '../src/merchants/merchants';
import { openDatabase } from '../src/platform/database';
import { migrate } from '../scripts/migrate';
import { startChildGateway } from '../scripts/harness/child-gateway';
import { deleteKeysWithPrefix, freePort } from '../scripts/harness/redis';

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const seconds = Number(process.env.BENCH_SECONDS ?? 5);
const concurrencies = [1, 16, 64];
const serverUrl = process.env.DATABASE_URL ?? 'postgresql://postgres@127.0.0.1:5432/payments';
const redisUrl = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';

interface Row {
  scenario: string;
  clients: number;
  perSecond: number;
  p50: number;
  p99: number;
  errors: number;
}

function databaseUrlFor(name: string): string {
  const url = new URL(serverUrl);
  url.pathname = `/${name}`;
  return url.toString();
}

async function load(
  url: string,
  connections: number,
  body: string,
  headers: Record<string, string>,
  keyFor?: () => string,
): Promise<Omit<Row, 'scenario'>> {
  const result = await autocannon({
    url,
    connections,
    duration: seconds,
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body,
    ...(keyFor === undefined
      ? {}
      : {
          requests: [
            {
              setupRequest: (request) => ({ ...request, headers: { ...request.headers, 'idempotency-key': keyFor() } }),
            },
          ],
        }),
  });
  return {
    clients: connections,
    perSecond: Math.round(result.requests.average),
    p50: result.latency.p50,
    p99: result.latency.p99,
    errors: result.non2xx + result.errors + result.timeouts,
  };
}

function pgbenchScript(merchantId: string): string {
  const key = `'pgb-' || :client_id || '-' || :k`;
  return [
    '\\set k random(1, 1000000000000)',
    `WITH inserted AS (INSERT INTO idempotency_keys (merchant_id, key, operation, fingerprint, request_payload, locked_until) VALUES ('${merchantId}', ${key}, 'createCharge', repeat('a', 64), json_build_object('amount', 100)::text, now() + interval '15 seconds') ON CONFLICT (merchant_id, key) DO NOTHING RETURNING id, created_at), audited AS (INSERT INTO idempotency_audit (merchant_id, key, operation, fingerprint, request_payload, outcome, answered_from) SELECT '${merchantId}', ${key}, 'createCharge', repeat('a', 64), json_build_object('amount', 100)::text, 'created', 'postgres' FROM inserted) SELECT id, iso8601(created_at) FROM inserted;`,
    `INSERT INTO acquirer_authorizations (idempotency_key, authorization_id, kind, amount, currency, source, approved) VALUES (${key}, 'auth-' || ${key}, 'charge', 100, 'USD', 'tok_visa', true) ON CONFLICT (idempotency_key) DO NOTHING RETURNING authorization_id, approved, decline_code;`,
    `UPDATE idempotency_keys SET recovery_point = 'AUTHORIZED', acquirer_result = json_build_object('approved', true)::text, updated_at = now() WHERE merchant_id = '${merchantId}' AND key = ${key} AND lock_token = 1 AND state = 'IN_PROGRESS';`,
    `WITH completed AS (UPDATE idempotency_keys SET state = 'COMPLETED', recovery_point = 'COMPLETED', locked_until = NULL, response_status = 200, response_body = json_build_object('id', 'x')::text, completed_at = now(), updated_at = now() WHERE merchant_id = '${merchantId}' AND key = ${key} AND lock_token = 1 AND state = 'IN_PROGRESS' RETURNING id), charge AS (INSERT INTO charges (id, merchant_id, idempotency_key_id, amount, currency, source, status, authorization_id, created_at) SELECT 'ch_' || ${key}, '${merchantId}', completed.id, 100, 'USD', 'tok_visa', 'SUCCEEDED', 'auth-' || ${key}, now() FROM completed RETURNING id), event AS (INSERT INTO outbox_events (event_type, aggregate_id, payload) SELECT 'charge.succeeded', charge.id, '{}' FROM charge RETURNING id) SELECT count(*) FROM event;`,
  ].join('\n');
}

function pgbench(databaseUrl: string, merchantId: string, clients: number): number | undefined {
  if (spawnSync('sh', ['-c', 'command -v pgbench']).status !== 0) return undefined;
  const folder = mkdtempSync(path.join(os.tmpdir(), 'pgw-bench-'));
  const script = path.join(folder, 'new-charge.sql');
  writeFileSync(script, pgbenchScript(merchantId));
  const result = spawnSync(
    'pgbench',
    ['-n', '-M', 'prepared', '-f', script, '-c', String(clients), '-j', '2', '-T', String(seconds), databaseUrl],
    {
      encoding: 'utf8',
    },
  );
  const match = result.stdout.match(/tps = ([0-9.]+)/);
  if (match === null) {
    process.stderr.write(`pgbench failed: ${result.stderr}\n`);
    return undefined;
  }
  // Four statements per new charge, each its own transaction: a charge is four "transactions".
  return Number(match[1]);
}

async function startBaseline(databaseUrl: string, merchantId: string): Promise<{ url: string; process: ChildProcess }> {
  const port = await freePort();
  const child = spawn(process.execPath, ['--import', 'tsx', path.join(repoRoot, 'bench', 'baseline-server.ts')], {
    env: { ...process.env, DATABASE_URL: databaseUrl, PORT: String(port), BENCH_MERCHANT_ID: merchantId },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  await new Promise<void>((resolve, reject) => {
    child.stdout?.on('data', (chunk: Buffer) => chunk.toString().includes('listening') && resolve());
    child.once('exit', (code) => reject(new Error(`baseline server exited ${String(code)}`)));
  });
  return { url: `http://127.0.0.1:${port}/graphql`, process: child };
}

function print(rows: Row[]): void {
  const header = ['scenario', 'clients', 'req/s', 'p50 ms', 'p99 ms', 'non-2xx'];
  const lines = rows.map((row) => [row.scenario, row.clients, row.perSecond, row.p50, row.p99, row.errors].map(String));
  const widths = header.map((title, column) => Math.max(title.length, ...lines.map((line) => line[column]!.length)));
  const format = (cells: string[]) => cells.map((cell, column) => cell.padEnd(widths[column]!)).join('  ');
  process.stdout.write(`${format(header)}\n${widths.map((width) => '-'.repeat(width)).join('  ')}\n`);
  for (const line of lines) process.stdout.write(`${format(line)}\n`);
}

async function main(): Promise<void> {
  const suffix = randomBytes(4).toString('hex');
  const databaseName = `pgw_bench_${suffix}`;
  const databaseUrl = databaseUrlFor(databaseName);
  const redisKeyPrefix = `bench_${suffix}`;
  const admin = new pg.Client({ connectionString: databaseUrlFor('postgres') });
  await admin.connect();
  await admin.query(`CREATE DATABASE ${databaseName}`);
  const cleanups: (() => Promise<unknown>)[] = [];
  try {
    process.env.MIGRATE_QUIET = '1';
    migrate(databaseUrl);
    const handle = openDatabase({
      databaseUrl,
      databasePoolSizeMax: 1,
      databaseStatementTimeoutMs: 5_000,
      databaseLockTimeoutMs: 2_000,
    });
    const { merchant, apiKey } = await createMerchant(handle.prisma, 'Bench merchant');
    await handle.close();

    const gateway = await startChildGateway({
      DATABASE_URL: databaseUrl,
      REDIS_URL: redisUrl,
      REDIS_KEY_PREFIX: redisKeyPrefix,
      ROLE: 'api',
      LOG_LEVEL: 'warn',
      NODE_ENV: 'production',
      DATABASE_POOL_SIZE_MAX: '16',
      // One merchant drives all the load: the per-merchant limit must not be what is measured.
      MERCHANT_RATE_PER_SECOND: '1000000',
    });
    cleanups.push(() => gateway.kill('SIGTERM'));
    const baseline = await startBaseline(databaseUrl, merchant.id);
    cleanups.push(async () => baseline.process.kill('SIGTERM'));

    const auth = { authorization: `Bearer ${apiKey}` };
    const chargeBody = JSON.stringify({
      query:
        'mutation($input: CreateChargeInput!) { createCharge(input: $input) { id amount currency status createdAt } }',
      variables: { input: { amount: 1999, currency: 'USD', source: 'tok_visa' } },
    });
    const rows: Row[] = [];
    let counter = 0;
    const freshKey = () => `bench-${suffix}-${counter++}`;

    // Completed keys to replay.
    const replayKeys = Array.from({ length: 200 }, (_, index) => `replay-${suffix}-${index}`);
    for (const key of replayKeys) {
      await fetch(`${gateway.url}/graphql`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', ...auth, 'idempotency-key': key },
        body: chargeBody,
      });
    }
    let replayIndex = 0;
    const replayKey = () => replayKeys[replayIndex++ % replayKeys.length]!;

    const pgbenchTps = new Map<number, number | undefined>();
    for (const clients of concurrencies) {
      rows.push({
        scenario: 'new charge',
        ...(await load(`${gateway.url}/graphql`, clients, chargeBody, auth, freshKey)),
      });
      rows.push({
        scenario: 'replay',
        ...(await load(`${gateway.url}/graphql`, clients, chargeBody, auth, replayKey)),
      });
      rows.push({
        scenario: 'idempotency off',
        ...(await load(
          baseline.url,
          clients,
          JSON.stringify({
            query:
              'mutation($input: ChargeInput!) { createChargeDirect(input: $input) { id amount currency status createdAt } }',
            variables: { input: { amount: 1999, currency: 'USD', source: 'tok_visa' } },
          }),
          {},
        )),
      });
      rows.push({
        scenario: 'trivial mutation',
        ...(await load(baseline.url, clients, JSON.stringify({ query: 'mutation { ping }' }), {})),
      });
      rows.push({
        scenario: 'gateway stack only',
        ...(await load(`${gateway.url}/graphql`, clients, JSON.stringify({ query: '{ __typename }' }), auth)),
      });
    }
    // pgbench runs with the servers stopped: their pools would take connections it needs, and cores.
    for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
    for (const clients of concurrencies) pgbenchTps.set(clients, pgbench(databaseUrl, merchant.id, clients));

    process.stdout.write(
      `\ncreateCharge over HTTP, ${seconds} s per run (autocannon and the servers share this machine's cores)\n\n`,
    );
    print(rows);
    process.stdout.write('\n');
    for (const clients of concurrencies) {
      const find = (scenario: string) => rows.find((row) => row.scenario === scenario && row.clients === clients)!;
      const tps = pgbenchTps.get(clients);
      // pgbench counts each of the four statements as a transaction; a charge is four of them.
      const chargesPerSecond = tps === undefined ? undefined : tps / 4;
      const newRatio =
        chargesPerSecond === undefined
          ? 'n/a'
          : `${Math.round((100 * find('new charge').perSecond) / chargesPerSecond)}%`;
      const replayRatio = `${Math.round((100 * find('replay').perSecond) / find('trivial mutation').perSecond)}%`;
      const stackRatio = `${Math.round((100 * find('replay').perSecond) / find('gateway stack only').perSecond)}%`;
      process.stdout.write(
        `${String(clients).padStart(2)} clients: pgbench (same 4 statements) ${chargesPerSecond?.toFixed(0) ?? 'n/a'} charges/s; ` +
          `new charges at ${newRatio} of it (target ≥ 50%); replays at ${replayRatio} of a trivial mutation (target ≥ 70%), ` +
          `${stackRatio} of the gateway's own stack\n`,
      );
    }
  } finally {
    for (const cleanup of cleanups.reverse()) await cleanup().catch(() => undefined);
    await deleteKeysWithPrefix(redisUrl, redisKeyPrefix);
    await admin.query(`DROP DATABASE IF EXISTS ${databaseName} WITH (FORCE)`);
    await admin.end();
  }
}

await main();

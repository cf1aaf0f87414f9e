/**
 * `npm run bench` (charges): createCharge over HTTP with wrk (bench/wrk.ts) at each of
 * BENCH_CONNECTIONS (default 16,64) for BENCH_SECONDS (default 10) each, against a gateway child
 * process (ROLE=api, NODE_ENV=production), printing req/s, p50 and p99 for
 *   - new charges (a fresh Idempotency-Key per request),
 *   - replays of completed keys,
 *   - a trivial Apollo Server 5 mutation served with the gateway's server settings
 *     (bench/baseline-server.ts),
 *   - `{ __typename }` through the gateway's own stack (what the server costs before any resolver),
 * the api process's largest RSS under load, and pgbench (bench/pgbench.ts) for the gateway's own
 * statements and commit boundaries, the design's floor and one transaction, at the same client
 * counts. Every ratio is taken inside this one run. It uses its own database and Redis prefix and
 * removes them. BENCH_SCENARIOS (e.g. `replay` or `new charge,pgbench`) runs only the scenarios
 * whose names start with one of its entries, to profile one path at a time. The gateway runs as it
 * ships, `node dist/main.js` (built here when the sources are newer); BENCH_SOURCE=1 runs the
 * sources under tsx instead, whose loader adds CPU and memory that production does not have.
 * BENCH_WARMUP_SECONDS (default 2) runs the HTTP scenarios but new charges once, unrecorded, first.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { createMerchant } from '../src/merchants/merchants';
import { openDatabase } from '../src/platform/database';
import { migrate, migrationUrls } from '../src/cli/migrate';
import { gatewayRoleUrl } from '../src/platform/database-role';
import { ensureBuilt } from '../scripts/harness/built';
import { startChildGateway, type ChildGateway } from '../scripts/harness/child-gateway';
import { deleteKeysWithPrefix, freePort } from '../scripts/harness/redis';
import { hasPgbench, runPgbench, type PgbenchShape } from './pgbench';
import { ensureWrk, runWrk, type WrkLoad, type WrkResult } from './wrk';

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const seconds = Number(process.env.BENCH_SECONDS ?? 10);
const connectionCounts = (process.env.BENCH_CONNECTIONS ?? '16,64').split(',').map(Number);
// Every HTTP scenario but new charges runs this long first, unrecorded, so the first one measured is
// not the one that pays for the JIT's warm-up (before 2026-12-05 13:20 UTC the replays at the first
// connection count did). 0: no warm-up.
const warmUpSeconds = Number(process.env.BENCH_WARMUP_SECONDS ?? 2);
// The owner creates and migrates the bench's database; the gateway runs as its own role.
const serverUrl = migrationUrls().ownerUrl;
const redisUrl = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
const replayKeyCount = 200;
const fromSource = process.env.BENCH_SOURCE === '1';
const gatewayPgbench = 'pgbench: gateway (3 commits)';
const floorPgbench = 'pgbench: floor (3 commits)';
const scenarioFilter = process.env.BENCH_SCENARIOS?.split(',').map((name) => name.trim());
const selected = (scenario: string) =>
  scenarioFilter === undefined || scenarioFilter.some((name) => scenario.startsWith(name));

interface Row {
  readonly scenario: string;
  readonly connections: number;
  readonly perSecond: number;
  readonly p50Ms: number;
  readonly p99Ms: number;
  readonly failures: number | '';
  readonly rssMb: number | '';
  readonly cpuMs: number | '';
}

function databaseUrlFor(name: string): string {
  const url = new URL(serverUrl);
  url.pathname = `/${name}`;
  return url.toString();
}

async function startBaseline(): Promise<{ url: string; process: ChildProcess }> {
  const port = await freePort();
  const child = spawn(process.execPath, ['--import', 'tsx', path.join(repoRoot, 'bench', 'baseline-server.ts')], {
    env: { ...process.env, PORT: String(port), NODE_ENV: 'production' },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  await new Promise<void>((resolve, reject) => {
    child.stdout?.on('data', (chunk: Buffer) => chunk.toString().includes('listening') && resolve());
    child.once('exit', (code) => reject(new Error(`baseline server exited ${String(code)}`)));
  });
  return { url: `http://127.0.0.1:${port}/graphql`, process: child };
}

const chargeBody = JSON.stringify({
  query: 'mutation($input: CreateChargeInput!) { createCharge(input: $input) { id amount currency status createdAt } }',
  variables: { input: { amount: 1999, currency: 'USD', source: 'tok_visa' } },
});

function row(scenario: string, connections: number, result: WrkResult): Row {
  return {
    scenario,
    connections,
    perSecond: result.perSecond,
    p50Ms: result.p50Ms,
    p99Ms: result.p99Ms,
    failures: result.non2xx + result.socketErrors,
    rssMb: result.rssMbMax === undefined ? '' : Math.round(result.rssMbMax),
    cpuMs: result.cpuMsPerRequest === undefined ? '' : Number(result.cpuMsPerRequest.toFixed(2)),
  };
}

/** The HTTP scenarios at one connection count; `warmUp` runs them for `warmUpSeconds`, unrecorded. */
async function httpRows(
  gateway: ChildGateway,
  baselineUrl: string,
  authorization: string,
  connections: number,
  suffix: string,
  warmUp = false,
): Promise<Row[]> {
  const common = { connections, seconds, rssPid: gateway.process.pid };
  const gatewayUrl = `${gateway.url}/graphql`;
  const loads: [string, WrkLoad][] = [
    [
      'new charge',
      { ...common, url: gatewayUrl, body: chargeBody, authorization, keys: { kind: 'fresh', prefix: `new-${suffix}` } },
    ],
    [
      'replay',
      {
        ...common,
        url: gatewayUrl,
        body: chargeBody,
        authorization,
        keys: { kind: 'cycle', prefix: `replay-${suffix}`, count: replayKeyCount },
      },
    ],
    [
      'trivial mutation',
      {
        connections,
        seconds,
        url: baselineUrl,
        body: JSON.stringify({ query: 'mutation { ping }' }),
        keys: { kind: 'none' },
      },
    ],
    [
      'gateway stack only',
      {
        ...common,
        url: gatewayUrl,
        body: JSON.stringify({ query: '{ __typename }' }),
        authorization,
        keys: { kind: 'none' },
      },
    ],
  ];
  const rows: Row[] = [];
  for (const [scenario, load] of loads) {
    if (!selected(scenario)) continue;
    if (!warmUp) rows.push(row(scenario, connections, await runWrk(load)));
    // New charges are bound by Postgres and would only add rows: no warm-up for them.
    else if (scenario !== 'new charge') await runWrk({ ...load, seconds: warmUpSeconds });
  }
  return rows;
}

function pgbenchRows(databaseUrl: string, merchantId: string): Row[] {
  if (!hasPgbench()) {
    process.stdout.write('pgbench is not installed (apt-get install postgresql-client): no database reference\n');
    return [];
  }
  const allShapes: [PgbenchShape, string][] = [
    ['gateway', gatewayPgbench],
    ['floor', floorPgbench],
    ['before', 'pgbench: before (4 commits)'],
    ['one transaction', 'pgbench: one transaction'],
  ];
  const shapes = allShapes.filter(([, scenario]) => selected(scenario));
  return connectionCounts.flatMap((clients) =>
    shapes.flatMap(([shape, scenario]) => {
      try {
        const result = runPgbench(databaseUrl, merchantId, shape, clients, seconds);
        return [
          { scenario, connections: clients, ...result, failures: '' as const, rssMb: '' as const, cpuMs: '' as const },
        ];
      } catch (error) {
        // A reference that could not run (on a loaded machine 64 connections may not even open in
        // a short run) must not throw away the HTTP figures already measured.
        process.stdout.write(`${scenario} at ${clients} clients did not run: ${String(error).split('\n')[0]}\n`);
        return [];
      }
    }),
  );
}

function print(rows: readonly Row[]): void {
  const header = ['scenario', 'conns', 'per s', 'p50 ms', 'p99 ms', 'failed', 'api RSS MB', 'api CPU ms/req'];
  const lines = rows.map((one) =>
    [
      one.scenario,
      one.connections,
      one.perSecond,
      one.p50Ms.toFixed(1),
      one.p99Ms.toFixed(1),
      one.failures,
      one.rssMb,
      one.cpuMs,
    ].map(String),
  );
  const widths = header.map((title, column) => Math.max(title.length, ...lines.map((line) => line[column]!.length)));
  const format = (cells: string[]) => cells.map((cell, column) => cell.padEnd(widths[column]!)).join('  ');
  process.stdout.write(`${format(header)}\n${widths.map((width) => '-'.repeat(width)).join('  ')}\n`);
  for (const line of lines) process.stdout.write(`${format(line).trimEnd()}\n`);
}

function printRatios(rows: readonly Row[]): void {
  const find = (scenario: string, connections: number) =>
    rows.find((one) => one.scenario === scenario && one.connections === connections);
  const percent = (part: Row | undefined, whole: Row | undefined) =>
    part === undefined || whole === undefined ? 'n/a' : `${Math.round((100 * part.perSecond) / whole.perSecond)}%`;
  for (const connections of connectionCounts) {
    const newCharges = find('new charge', connections);
    process.stdout.write(
      `${String(connections).padStart(2)} connections: replays at ${percent(find('replay', connections), find('trivial mutation', connections))} ` +
        `of a trivial Apollo mutation (target ≥ 70%); new charges at ${percent(newCharges, find(gatewayPgbench, connections))} ` +
        `of pgbench on the gateway's own statements (target ≥ 50%), ${percent(newCharges, find(floorPgbench, connections))} ` +
        `of the floor\n`,
    );
  }
  const rss = Math.max(...rows.map((one) => (one.rssMb === '' ? 0 : one.rssMb)));
  process.stdout.write(`api RSS under load: at most ${rss} MB (target < 250 MB at 64 connections)\n`);
}

async function prepare(databaseUrl: string): Promise<{ merchantId: string; apiKey: string }> {
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
  return { merchantId: merchant.id, apiKey };
}

/** Completes the keys the replay scenario cycles through. */
async function completeReplayKeys(gateway: ChildGateway, authorization: string, suffix: string): Promise<void> {
  for (let index = 0; index < replayKeyCount; index += 1) {
    const answer = await fetch(`${gateway.url}/graphql`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization, 'idempotency-key': `replay-${suffix}-${index}` },
      body: chargeBody,
    });
    if (answer.status !== 200) throw new Error(`could not complete replay key ${index}: ${answer.status}`);
  }
}

async function main(): Promise<void> {
  ensureWrk();
  if (!fromSource) ensureBuilt();
  const suffix = randomBytes(4).toString('hex');
  const databaseName = `pgw_bench_${suffix}`;
  const databaseUrl = databaseUrlFor(databaseName);
  const redisKeyPrefix = `bench_${suffix}`;
  const admin = new pg.Client({ connectionString: databaseUrlFor('postgres') });
  await admin.connect();
  await admin.query(`CREATE DATABASE ${databaseName}`);
  const cleanups: (() => Promise<unknown>)[] = [];
  try {
    const { merchantId, apiKey } = await prepare(databaseUrl);
    const gateway = await startChildGateway(
      {
        DATABASE_URL: gatewayRoleUrl(databaseUrl),
        REDIS_URL: redisUrl,
        REDIS_KEY_PREFIX: redisKeyPrefix,
        ROLE: 'api',
        LOG_LEVEL: 'warn',
        NODE_ENV: 'production',
        // Production refuses to start without these (docs/configuration.md); the bench is no deployment.
        ACQUIRER: 'simulated',
        ACQUIRER_SIMULATED_IN_PRODUCTION: 'true',
        REDIS_ANSWER_SECRET: randomBytes(32).toString('hex'),
        // Production listens for /metrics on 9464 by default: two benched processes (or a bench beside
        // another) would collide. 0: a free port of its own.
        METRICS_PORT: '0',
        DATABASE_POOL_SIZE_MAX: '16',
        // One merchant drives all the load: the per-merchant limit must not be what is measured.
        MERCHANT_RATE_PER_SECOND: '1000000',
      },
      // Node flags for the api process, e.g. --cpu-prof (NODE_OPTIONS refuses it).
      {
        readyTimeoutMs: 300_000,
        built: !fromSource,
        nodeArguments: (process.env.BENCH_NODE_ARGS ?? '').split(' ').filter(Boolean),
      },
    ); // a loaded machine (shared with test suites) starts it slowly
    cleanups.push(() => gateway.kill('SIGTERM'));
    const baseline = await startBaseline();
    cleanups.push(async () => baseline.process.kill('SIGTERM'));
    const authorization = `Bearer ${apiKey}`;
    await completeReplayKeys(gateway, authorization, suffix);

    if (warmUpSeconds > 0) {
      await httpRows(gateway, baseline.url, authorization, connectionCounts[0] ?? 16, suffix, true);
    }
    const rows: Row[] = [];
    for (const connections of connectionCounts) {
      rows.push(...(await httpRows(gateway, baseline.url, authorization, connections, suffix)));
    }
    // pgbench runs with the servers stopped: their pools would take connections it needs, and cores.
    for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
    rows.push(...pgbenchRows(databaseUrl, merchantId));

    process.stdout.write(
      `\ncreateCharge over HTTP with wrk, ${seconds} s per run; wrk, the servers, Postgres and Redis share this machine\n\n`,
    );
    print(rows);
    process.stdout.write('\n');
    printRatios(rows);
  } finally {
    for (const cleanup of cleanups.reverse()) await cleanup().catch(() => undefined);
    await deleteKeysWithPrefix(redisUrl, redisKeyPrefix);
    await admin.query(`DROP DATABASE IF EXISTS ${databaseName} WITH (FORCE)`);
    await admin.end();
  }
}

await main();

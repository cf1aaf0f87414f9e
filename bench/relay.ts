/**
 * `npm run bench` (event path): an 18,000-event backlog drained by a relay and a worker (real
 * processes), uncapped and at a cap, printing
 *   - the relay's publish rate (first to last published_at),
 *   - the end-to-end drain (outbox row committed → inbox row and ledger entries committed),
 *   - the worker's throughput (ledger effects per second) at the default concurrency,
 *   - for the capped run, the busiest one-second window against the cap,
 *   - p50 and p99 from an event's publish to its inbox row.
 * Own database and Redis prefix, removed at the end. BENCH_BACKLOG_EVENTS sets the backlog;
 * BENCH_RELAY_RUNS=uncapped skips the capped run; BENCH_NODE_ARGS (e.g. `--cpu-prof
 * --cpu-prof-dir=/tmp/prof`) is passed as node flags to the worker and the relay processes. They
 * run as the gateway ships, `node dist/main.js` (built when the sources are newer); BENCH_SOURCE=1
 * runs the sources under tsx.
 */
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import pg from 'pg';
import { migrate, migrationUrls } from '../src/cli/migrate';
import { gatewayRoleUrl } from '../src/platform/database-role';
import { ensureBuilt } from '../scripts/harness/built';
import { startChildGateway, type ChildGateway } from '../scripts/harness/child-gateway';
import { insertChargeEvents, insertMerchant } from '../scripts/harness/events';
import { deleteKeysWithPrefix } from '../scripts/harness/redis';

const events = Number(process.env.BENCH_BACKLOG_EVENTS ?? 18_000);
const cap = Number(process.env.BENCH_RELAY_CAP ?? 2_000);
const runs = (process.env.BENCH_RELAY_RUNS ?? 'uncapped,capped').split(',');
// Node flags for the worker and relay (NODE_OPTIONS refuses --cpu-prof).
const nodeArguments = (process.env.BENCH_NODE_ARGS ?? '').split(' ').filter(Boolean);
const built = process.env.BENCH_SOURCE !== '1';
// The owner creates and migrates the bench's database; the gateway runs as its own role.
const serverUrl = migrationUrls().ownerUrl;
const redisUrl = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';

function databaseUrlFor(name: string): string {
  const url = new URL(serverUrl);
  url.pathname = `/${name}`;
  return url.toString();
}

async function waitUntil(condition: () => Promise<boolean>, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error('timed out');
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

interface DrainFigures {
  readonly label: string;
  readonly publishPerSecond: number;
  readonly endToEndPerSecond: number;
  readonly effectsPerSecond: number;
  readonly busiestWindow: number;
  /** From an event's publish to its inbox row: the wait in the queue plus the apply. */
  readonly p50Ms: number;
  readonly p99Ms: number;
  /** CPU time per event (µs) of the worker, the relay and their Postgres backends: noise moves it less than a rate. */
  readonly cpuMicrosPerEvent: { readonly worker: number; readonly relay: number; readonly postgres: number };
}

/** utime + stime of a process in seconds (Linux /proc; clock ticks of 1/100 s); 0 when unreadable. */
function cpuSeconds(pid: number | undefined): number {
  try {
    const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
    return (Number(fields[11]) + Number(fields[12])) / 100;
  } catch {
    return 0;
  }
}

/** CPU seconds of this database's Postgres backends (a local server), by pid. */
async function backendCpu(pool: pg.Pool): Promise<Map<number, number>> {
  const rows = await pool.query<{ pid: number }>(
    'SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()',
  );
  return new Map(rows.rows.map((row) => [row.pid, cpuSeconds(row.pid)]));
}

async function drain(
  pool: pg.Pool,
  env: Record<string, string>,
  label: string,
  ratePerSecond: number,
): Promise<DrainFigures> {
  await pool.query('TRUNCATE inbox_events, ledger_entries, ledger_transactions, outbox_events, charges CASCADE');
  const merchantId = await insertMerchant({ pool });
  for (let written = 0; written < events; written += 6_000)
    await insertChargeEvents({ pool }, merchantId, Math.min(6_000, events - written));
  const children: ChildGateway[] = [];
  try {
    // Generous start deadlines: the machine is often shared with test suites.
    children.push(
      await startChildGateway({ ...env, ROLE: 'worker' }, { readyTimeoutMs: 300_000, nodeArguments, built }),
    );
    const workerCpuAtStart = cpuSeconds(children[0]!.process.pid);
    const backendsAtStart = await backendCpu(pool);
    children.push(
      await startChildGateway(
        { ...env, ROLE: 'relay', RELAY_RATE_PER_SECOND: String(ratePerSecond) },
        { readyTimeoutMs: 300_000, nodeArguments, built },
      ),
    );
    const relayCpuAtStart = cpuSeconds(children[1]!.process.pid);
    const count = async (sql: string) => Number((await pool.query<{ count: string }>(sql)).rows[0]?.count);
    await waitUntil(async () => (await count('SELECT count(*) FROM inbox_events')) === events, 300_000);
    const perEvent = (seconds: number) => Math.round((seconds * 1e6) / events);
    let postgresSeconds = 0;
    for (const [pid, seconds] of await backendCpu(pool)) postgresSeconds += seconds - (backendsAtStart.get(pid) ?? 0);
    const cpuMicrosPerEvent = {
      worker: perEvent(cpuSeconds(children[0]!.process.pid) - workerCpuAtStart),
      relay: perEvent(cpuSeconds(children[1]!.process.pid) - relayCpuAtStart),
      postgres: perEvent(postgresSeconds),
    };
    const published = (
      await pool.query<{ at: string }>(
        'SELECT (extract(epoch FROM published_at) * 1000)::bigint::text AS at FROM outbox_events ORDER BY 1',
      )
    ).rows.map((row) => Number(row.at));
    const processed = (
      await pool.query<{ first: string; last: string }>(
        'SELECT (extract(epoch FROM min(processed_at)) * 1000)::bigint::text AS first, (extract(epoch FROM max(processed_at)) * 1000)::bigint::text AS last FROM inbox_events',
      )
    ).rows[0]!;
    const latency = (
      await pool.query<{ p50: number; p99: number }>(
        `SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY ms) AS p50, percentile_cont(0.99) WITHIN GROUP (ORDER BY ms) AS p99
           FROM (SELECT extract(epoch FROM i.processed_at - o.published_at) * 1000 AS ms
                   FROM inbox_events i JOIN outbox_events o ON o.id = i.event_id) latencies`,
      )
    ).rows[0]!;
    let busiestWindow = 0;
    let start = 0;
    for (let end = 0; end < published.length; end += 1) {
      while (published[end]! - published[start]! >= 1_000) start += 1;
      busiestWindow = Math.max(busiestWindow, end - start + 1);
    }
    return {
      label,
      publishPerSecond: Math.round(events / Math.max(0.001, (published.at(-1)! - published[0]!) / 1_000)),
      // From the first publish to the last inbox row, read from the rows: a slow process start on a
      // loaded machine is not part of the drain.
      endToEndPerSecond: Math.round(events / Math.max(0.001, (Number(processed.last) - published[0]!) / 1_000)),
      effectsPerSecond: Math.round(
        events / Math.max(0.001, (Number(processed.last) - Number(processed.first)) / 1_000),
      ),
      busiestWindow,
      p50Ms: Math.round(Number(latency.p50)),
      p99Ms: Math.round(Number(latency.p99)),
      cpuMicrosPerEvent,
    };
  } finally {
    for (const child of children) await child.kill('SIGTERM');
  }
}

async function main(): Promise<void> {
  if (built) ensureBuilt();
  const suffix = randomBytes(4).toString('hex');
  const databaseName = `pgw_bench_relay_${suffix}`;
  const redisKeyPrefix = `bench_relay_${suffix}`;
  const admin = new pg.Client({ connectionString: databaseUrlFor('postgres') });
  await admin.connect();
  await admin.query(`CREATE DATABASE ${databaseName}`);
  const pool = new pg.Pool({ connectionString: databaseUrlFor(databaseName), max: 2 });
  try {
    process.env.MIGRATE_QUIET = '1';
    migrate(databaseUrlFor(databaseName));
    const env = {
      DATABASE_URL: gatewayRoleUrl(databaseUrlFor(databaseName)),
      REDIS_URL: redisUrl,
      REDIS_KEY_PREFIX: redisKeyPrefix,
      LOG_LEVEL: 'warn',
      NODE_ENV: 'production',
      // Production refuses to start without these (docs/configuration.md); the bench is no deployment.
      ACQUIRER: 'simulated',
      ACQUIRER_SIMULATED_IN_PRODUCTION: 'true',
      REDIS_ANSWER_SECRET: randomBytes(32).toString('hex'),
      // Production listens for /metrics on 9464 by default: two benched processes (or a bench beside
      // another) would collide. 0: a free port of its own.
      METRICS_PORT: '0',
      ...(process.env.WORKER_CONCURRENCY === undefined ? {} : { WORKER_CONCURRENCY: process.env.WORKER_CONCURRENCY }),
    };
    const uncapped = await drain(pool, env, 'uncapped', 0);
    const capped = runs.includes('capped') ? await drain(pool, env, `capped at ${cap}/s`, cap) : undefined;
    process.stdout.write(`\nevent path: a ${events}-event backlog, one relay and one worker (default concurrency)\n\n`);
    process.stdout.write(
      'run                  publish/s  end-to-end/s  worker effects/s  busiest 1-s window  p50 ms  p99 ms  CPU µs/event: worker relay postgres\n',
    );
    for (const figures of capped === undefined ? [uncapped] : [uncapped, capped]) {
      process.stdout.write(
        `${figures.label.padEnd(20)} ${String(figures.publishPerSecond).padStart(9)}  ${String(figures.endToEndPerSecond).padStart(12)}  ` +
          `${String(figures.effectsPerSecond).padStart(16)}  ${String(figures.busiestWindow).padStart(18)}  ` +
          `${String(figures.p50Ms).padStart(6)}  ${String(figures.p99Ms).padStart(6)}  ` +
          `${String(figures.cpuMicrosPerEvent.worker).padStart(19)} ${String(figures.cpuMicrosPerEvent.relay).padStart(5)} ` +
          `${String(figures.cpuMicrosPerEvent.postgres).padStart(8)}\n`,
      );
    }
    process.stdout.write(
      "p50/p99: from an event's publish to its inbox row (queue wait plus apply); CPU: each process's user+system " +
        "time over the drain (Postgres: this database's backends), per event\n",
    );
    const cappedVerdict =
      capped === undefined
        ? 'capped run skipped (BENCH_RELAY_RUNS)'
        : `capped publish ${capped.publishPerSecond}/s, busiest window ${capped.busiestWindow} (target within 10% of ${cap}: ` +
          `${capped.busiestWindow <= 1.1 * cap ? 'met' : 'not met'})`;
    process.stdout.write(
      `\nuncapped end-to-end ${uncapped.endToEndPerSecond}/s (target ≥ 2,000/s: ${uncapped.endToEndPerSecond >= 2_000 ? 'met' : 'not met'}); ` +
        `${cappedVerdict}\n`,
    );
  } finally {
    await pool.end();
    await deleteKeysWithPrefix(redisUrl, redisKeyPrefix);
    await admin.query(`DROP DATABASE IF EXISTS ${databaseName} WITH (FORCE)`);
    await admin.end();
  }
}

await main();

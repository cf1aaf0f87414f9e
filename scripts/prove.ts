/**
 * The effectively-once proof: `npm run prove` (1,000 operations; PROOF_OPERATIONS overrides).
 *
 * Real processes: two api, two relay and two worker gateways against one Postgres and Redis, each
 * api behind a proxy that loses responses for real. Logical charge operations go through the
 * client SDK while faults are injected: duplicate sends of one key, concurrent pairs of one key on
 * different api processes, lost responses, a relay killed after publishing and before marking
 * (then restarted), a worker SIGKILLed again and again (each time restarted), the Redis
 * idempotency and inbox keys deleted mid-run, a Postgres outage (its own private cluster, stopped
 * for PROOF_POSTGRES_OUTAGE_MS and started again) and a Redis restart that loses everything after
 * the relay published (its own private redis-server, killed and started empty: the sweeper
 * publishes the lost events again).
 *
 * Counters come from every process's /metrics (each scraped before it is killed: counters die with
 * their process); the verdict comes from Postgres. It exits non-zero unless applied effects =
 * charges = logical operations, the ledger balances, and reconciliation from facts is healthy
 * (each fact empty: unapplied events, authorizations without a charge, acquirer refunds without
 * a refund, stuck reservations).
 */
import { randomBytes } from 'node:crypto';
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { Redis } from 'ioredis';
import pg from 'pg';
import { GatewayClient, MemoryTokenBucketStore, RetryBudget, type AttemptRecord } from '@payments-gateway/client';
import { createMerchant } from '../src/merchants/merchants';
import { openDatabase } from '../src/platform/database';
import { reconcileFully, reconciliationFactKinds } from '../src/admin/reconciliation';
import { startPrivatePostgres, type PrivatePostgres } from './harness/private-postgres';
import { gatewayRoleUrl } from '../src/platform/database-role';
import { startChildGateway, type ChildGateway } from './harness/child-gateway';
import { startLossyProxy, type LossyProxy } from './harness/lossy-proxy';
import { startPrivateRedis, type PrivateRedis } from './harness/redis';
import { migrate } from '../src/cli/migrate';
import { jobIdFor, openLedgerQueue } from '../src/outbox/queue';

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

export interface ProofOptions {
  readonly operations: number;
  /** How long Postgres stays down mid-run (PROOF_POSTGRES_OUTAGE_MS): longer than all retries take. */
  readonly postgresOutageMs?: number;
  readonly concurrency?: number;
  readonly log?: (line: string) => void;
  readonly transcriptPath?: string;
}

export interface ProofResult {
  readonly ok: boolean;
  readonly table: Readonly<Record<string, number | string>>;
  readonly problems: readonly string[];
}

type Counters = Map<string, number>;

/** Adds the counter samples of one /metrics text into `into` (by metric name and labels). */
function addSamples(into: Counters, text: string): void {
  for (const line of text.split('\n')) {
    if (line.startsWith('#') || line.trim() === '') continue;
    const match = line.match(/^([a-z_]+)(\{[^}]*\})?\s+([0-9.e+-]+)$/);
    if (match === null) continue;
    const [, name, labels = '', value] = match as unknown as [string, string, string | undefined, string];
    const key = `${name}${(labels ?? '')
      .replace(/,?role="[^"]*"/, '')
      .replace('{,', '{')
      .replace('{}', '')}`;
    into.set(key, (into.get(key) ?? 0) + Number(value));
  }
}

class Fleet {
  readonly counters: Counters = new Map();
  private readonly processes = new Map<string, ChildGateway>();

  constructor(private readonly baseEnv: Record<string, string>) {}

  async start(name: string, env: Record<string, string>): Promise<ChildGateway> {
    const child = await startChildGateway({ ...this.baseEnv, ...env });
    this.processes.set(name, child);
    return child;
  }

  get(name: string): ChildGateway {
    const child = this.processes.get(name);
    if (child === undefined) throw new Error(`no process ${name}`);
    return child;
  }

  /** Scrapes a process's counters into the fleet's totals. */
  async scrape(name: string): Promise<void> {
    const response = await fetch(`${this.get(name).url}/metrics`);
    addSamples(this.counters, await response.text());
  }

  /** Scrape, then SIGKILL: what the process counted is kept. */
  async kill(name: string): Promise<void> {
    await this.scrape(name).catch(() => undefined);
    await this.get(name).kill('SIGKILL');
    this.processes.delete(name);
  }

  /** Forget a process that died by itself (its counters since the last scrape are lost). */
  forget(name: string): void {
    this.processes.delete(name);
  }

  async scrapeAndStopAll(): Promise<void> {
    for (const name of [...this.processes.keys()]) {
      await this.scrape(name).catch(() => undefined);
      await this.get(name).kill('SIGTERM');
    }
    this.processes.clear();
  }

  async killAll(): Promise<void> {
    for (const child of this.processes.values()) await child.kill('SIGKILL').catch(() => undefined);
    this.processes.clear();
  }

  counter(key: string): number {
    return this.counters.get(key) ?? 0;
  }
}

async function deleteRedisKeys(redis: Redis, pattern: string): Promise<number> {
  let deleted = 0;
  let cursor = '0';
  do {
    const [next, keys] = await redis.scan(cursor, 'MATCH', pattern, 'COUNT', 1_000);
    cursor = next;
    if (keys.length > 0) deleted += await redis.del(...keys);
  } while (cursor !== '0');
  return deleted;
}

function percentile(sorted: readonly number[], fraction: number): number {
  if (sorted.length === 0) return 0;
  return sorted[Math.min(sorted.length - 1, Math.floor(fraction * sorted.length))] ?? 0;
}

async function waitUntil(condition: () => Promise<boolean>, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

/** The proof stops its Postgres and Redis for real, so it runs its own of each. */
export async function runProof(options: ProofOptions): Promise<ProofResult> {
  const [postgres, privateRedis] = await Promise.all([startPrivatePostgres(), startPrivateRedis()]);
  try {
    return await runProofOn(postgres, privateRedis, options);
  } finally {
    // A cleanup failure must not hide what the proof found.
    await privateRedis.stop().catch(() => undefined);
    await postgres.destroy().catch((error: unknown) => process.stderr.write(`proof: cleanup: ${String(error)}\n`));
  }
}

async function runProofOn(
  postgres: PrivatePostgres,
  privateRedis: PrivateRedis,
  options: ProofOptions,
): Promise<ProofResult> {
  const log = options.log ?? ((line: string) => process.stderr.write(`${line}\n`));
  const serverUrl = postgres.url;
  const redisUrl = privateRedis.url;
  const suffix = randomBytes(4).toString('hex');
  const databaseName = `pgw_proof_${suffix}`;
  const databaseUrl = new URL(serverUrl);
  databaseUrl.pathname = `/${databaseName}`;
  const redisKeyPrefix = `proof_${suffix}`;
  const admin = new pg.Client({
    connectionString: Object.assign(new URL(serverUrl), { pathname: '/postgres' }).toString(),
  });
  // Its connection dies with the Postgres outage; nothing is asked of it until the end.
  admin.on('error', () => undefined);
  await admin.connect();
  const redis = new Redis(redisUrl, { maxRetriesPerRequest: 1 });
  redis.on('error', () => undefined);
  const fleet = new Fleet({
    // The gateways connect as their least-privilege role; the proof's own reads use the owner.
    DATABASE_URL: gatewayRoleUrl(databaseUrl.toString()),
    REDIS_URL: redisUrl,
    REDIS_KEY_PREFIX: redisKeyPrefix,
    NODE_ENV: 'test',
    LOG_LEVEL: 'warn',
    DATABASE_POOL_SIZE_MAX: '6',
    IDEMPOTENCY_LEASE_MS: '3000',
    ACQUIRER_TIMEOUT_MS: '1000',
    RELAY_CLAIM_LEASE_MS: '2000',
    RELAY_RATE_PER_SECOND: '0',
    WORKER_LOCK_DURATION_MS: '3000',
    WORKER_BACKOFF_BASE_MS: '50',
    WORKER_BACKOFF_CAP_MS: '1000',
    COMPLETER_INTERVAL_MS: '1000',
    COMPLETER_GRACE_MS: '2000',
    MERCHANT_RATE_PER_SECOND: '1000000',
    // Jobs Redis loses after publishing are published again this long after; the default minute
    // would only make the run longer.
    SWEEPER_GRACE_MS: '5000',
    SWEEPER_INTERVAL_MS: '1000',
    RETRY_BUDGET_EMPTY_DELAY_MS: '500',
  });
  const proxies: LossyProxy[] = [];
  const database = new pg.Pool({ connectionString: databaseUrl.toString(), max: 2 });
  database.on('error', () => undefined);
  const count = async (sql: string) => Number((await database.query<{ count: string }>(sql)).rows[0]?.count ?? 0);
  try {
    await admin.query(`CREATE DATABASE ${databaseName}`);
    process.env.MIGRATE_QUIET = '1';
    migrate(databaseUrl.toString());
    const handle = openDatabase({
      databaseUrl: gatewayRoleUrl(databaseUrl.toString()),
      databasePoolSizeMax: 1,
      databaseStatementTimeoutMs: 5_000,
      databaseLockTimeoutMs: 2_000,
    });
    const { apiKey } = await createMerchant(handle.prisma, 'Proof merchant');
    await handle.close();

    log(`proof: ${options.operations} operations; database ${databaseName}; Redis prefix ${redisKeyPrefix}`);
    const [api1, api2] = await Promise.all([
      fleet.start('api-1', { ROLE: 'api' }),
      fleet.start('api-2', { ROLE: 'api' }),
    ]);
    await Promise.all([
      // Alone at first, so it is certain to publish, and die, before anyone else does.
      fleet.start('relay-1', { ROLE: 'relay', FAULTS: 'crash_after_publish' }),
      fleet.start('worker-1', { ROLE: 'worker' }),
      fleet.start('worker-2', { ROLE: 'worker' }),
    ]);
    proxies.push(await startLossyProxy(api1.port), await startLossyProxy(api2.port));
    for (const proxy of proxies) proxy.setDropProbability(0.03);

    // The relay with the fault dies on its first publish, after addBulk and before marking.
    let relayRepublishes = 0;
    const relayCrash = fleet.get('relay-1').exited.then(async (exit) => {
      fleet.forget('relay-1');
      relayRepublishes = await count(
        'SELECT count(*) FROM outbox_events WHERE published_at IS NULL AND claimed_until IS NOT NULL',
      );
      log(
        `proof: relay-1 exited (${exit.signal ?? exit.code}) after publishing ${relayRepublishes} events it did not mark; restarting it`,
      );
      await fleet.start('relay-1', { ROLE: 'relay' });
    });

    const transcript: AttemptRecord[] = [];
    const budget = new RetryBudget(new MemoryTokenBucketStore({ capacity: 10_000, refillPerSecond: 100 }), {
      depositPerSuccess: 0.1,
    });
    const clients = proxies.map(
      (proxy) =>
        new GatewayClient({
          url: `${proxy.url}/graphql`,
          apiKey,
          budget,
          transcript: (record) => transcript.push(record),
          // Enough attempts to outlast the Postgres outage (503 with Retry-After) with room to spare.
          retry: { attemptsMax: 30, baseMs: 50, capMs: 2_000, timeoutMs: 5_000 },
        }),
    );
    const kinds = { single: 0, duplicateSend: 0, concurrentPair: 0 };
    const chargeIds = new Map<string, string>();
    const disagreements: string[] = [];
    const runOperation = async (index: number) => {
      const key = `proof-${suffix}-${index}`;
      const input = { amount: 100 + (index % 5_000), currency: index % 7 === 0 ? 'JPY' : 'EUR', source: 'tok_visa' };
      const client = clients[index % 2]!;
      let ids: string[];
      if (index % 10 === 1) {
        kinds.duplicateSend += 1;
        const first = await client.createCharge(input, { idempotencyKey: key });
        const again = await clients[(index + 1) % 2]!.createCharge(input, { idempotencyKey: key });
        ids = [first.charge.id, again.charge.id];
      } else if (index % 10 === 2) {
        kinds.concurrentPair += 1;
        const pair = await Promise.all(clients.map((each) => each.createCharge(input, { idempotencyKey: key })));
        ids = pair.map((outcome) => outcome.charge.id);
      } else {
        kinds.single += 1;
        ids = [(await client.createCharge(input, { idempotencyKey: key })).charge.id];
      }
      if (new Set(ids).size !== 1) disagreements.push(`${key}: ${ids.join(' ≠ ')}`);
      chargeIds.set(key, ids[0]!);
    };

    let redeliveries = 0;
    let workerKills = 0;
    // A kill waits for the previous restart (a cold start takes seconds on a loaded machine), so
    // each kill hits a worker that runs.
    let workerRestarted: Promise<unknown> = Promise.resolve();
    const killWorker = async () => {
      await workerRestarted;
      await fleet.kill('worker-1');
      workerKills += 1;
      log(`proof: killed worker-1 (SIGKILL) mid-run, kill ${workerKills}; restarting it`);
      workerRestarted = fleet.start('worker-1', { ROLE: 'worker' });
      await workerRestarted;
    };
    /**
     * Freezes both workers (SIGSTOP) until the relay has published everything written so far, so
     * the fault that follows meets jobs published and not yet applied; thaws them after `fault`.
     */
    const unappliedPublished = () =>
      count(
        "SELECT count(*) FROM outbox_events o WHERE published_at IS NOT NULL AND NOT EXISTS (SELECT 1 FROM inbox_events i WHERE i.consumer = 'ledger' AND i.event_uid = o.event_uid)",
      );
    const withBacklog = async (fault: (backlog: number) => Promise<void>) => {
      await workerRestarted;
      const workers = ['worker-1', 'worker-2'].map((name) => fleet.get(name).process);
      for (const worker of workers) worker.kill('SIGSTOP');
      try {
        // Operations go on in the other lanes: wait until some of their events are published
        // (the workers frozen, none is applied), or go on with what there is after 20 s.
        const frozenAt = Date.now();
        await waitUntil(async () => (await unappliedPublished()) >= 5, 20_000, 'a backlog').catch((error: unknown) =>
          log(`proof: no backlog after ${Date.now() - frozenAt} ms with the workers frozen (${String(error)})`),
        );
        await fault(await unappliedPublished());
      } finally {
        for (const worker of workers) worker.kill('SIGCONT');
      }
    };
    const outageMs = options.postgresOutageMs ?? 6_000;
    let outageBacklog = 0;
    const postgresOutage = () =>
      withBacklog(async (backlog) => {
        outageBacklog = backlog;
        await postgres.stop('fast');
        log(`proof: stopped Postgres (pg_ctl stop -m fast) for ${outageMs} ms, ${backlog} published events unapplied`);
        // The workers wake into the outage: their jobs are held, not spent.
        for (const name of ['worker-1', 'worker-2']) fleet.get(name).process.kill('SIGCONT');
        await new Promise((resolve) => setTimeout(resolve, outageMs));
        await postgres.start();
        log('proof: started Postgres again');
      });
    let redisLost = 0;
    const redisRestartAfterPublish = () =>
      withBacklog(async (backlog) => {
        redisLost = backlog;
        await privateRedis.stop();
        await privateRedis.start();
        log(`proof: restarted Redis empty; its ${backlog} published, unapplied jobs are gone`);
      });
    const concurrency = options.concurrency ?? 16;
    let nextIndex = 0;
    let completed = 0;
    const milestones = new Map<number, () => Promise<void>>([
      [
        Math.floor(options.operations * 0.3),
        async () => {
          const deleted = await deleteRedisKeys(redis, `${redisKeyPrefix}:idem:*`);
          const inbox = await deleteRedisKeys(redis, `${redisKeyPrefix}:inbox:*`);
          log(`proof: deleted ${deleted} idempotency and ${inbox} inbox keys from Redis`);
        },
      ],
      [Math.floor(options.operations * 0.2), killWorker],
      [Math.floor(options.operations * 0.4), postgresOutage],
      [Math.floor(options.operations * 0.5), killWorker],
      [Math.floor(options.operations * 0.55), redisRestartAfterPublish],
      [Math.floor(options.operations * 0.8), killWorker],
      [
        Math.floor(options.operations * 0.6),
        async () => {
          // Duplicate deliveries after the jobs are gone: only the inbox (or its marker) can stop them.
          const queue = openLedgerQueue(redis, { prefix: `{${redisKeyPrefix}}`, attemptsMax: 5 });
          const { rows } = await database.query<{
            id: string;
            event_uid: string;
            event_type: 'charge.succeeded';
            payload: string;
          }>(
            'SELECT o.id::text, o.event_uid::text, o.event_type, o.payload FROM outbox_events o JOIN inbox_events i ON i.event_id = o.id ORDER BY o.id LIMIT 25',
          );
          await queue.addBulk(
            rows.map((row) => ({
              name: row.event_type,
              data: { eventId: row.id, eventUid: row.event_uid, type: row.event_type, payload: row.payload },
              opts: { jobId: `${jobIdFor(row.event_uid)}-duplicate` },
            })),
          );
          redeliveries += rows.length;
          log(`proof: delivered ${rows.length} applied events again under new job ids`);
        },
      ],
      [
        Math.floor(options.operations * 0.7),
        async () => {
          const deleted = await deleteRedisKeys(redis, `${redisKeyPrefix}:idem:*`);
          const inbox = await deleteRedisKeys(redis, `${redisKeyPrefix}:inbox:*`);
          log(`proof: deleted ${deleted} idempotency and ${inbox} inbox keys from Redis`);
        },
      ],
    ]);
    const startedAt = Date.now();
    const failures: string[] = [];
    let faults: Promise<void> = Promise.resolve();
    await Promise.all(
      Array.from({ length: concurrency }, async () => {
        while (nextIndex < options.operations) {
          const index = nextIndex++;
          await runOperation(index).catch((error: unknown) => failures.push(`op ${index}: ${String(error)}`));
          completed += 1;
          // One fault at a time: the lanes go on, but a milestone waits for the one before it.
          const milestone = milestones.get(completed);
          if (milestone !== undefined) await (faults = faults.then(milestone));
        }
      }),
    );
    const operationsSeconds = (Date.now() - startedAt) / 1_000;
    log(`proof: ${completed} operations in ${operationsSeconds.toFixed(1)} s; waiting for the ledger`);
    await relayCrash;
    await waitUntil(
      async () =>
        (await count('SELECT count(*) FROM outbox_events')) ===
        (await count("SELECT count(*) FROM inbox_events WHERE consumer = 'ledger'")),
      180_000,
      'the ledger to apply every event',
    );
    const ledgerQueue = openLedgerQueue(redis, { prefix: `{${redisKeyPrefix}}`, attemptsMax: 5 });
    await waitUntil(
      async () => {
        const jobs = await ledgerQueue.getJobCounts('waiting', 'active', 'delayed');
        return (jobs.waiting ?? 0) + (jobs.active ?? 0) + (jobs.delayed ?? 0) === 0;
      },
      60_000,
      'the ledger queue to drain',
    );
    await ledgerQueue.close();
    await fleet.scrapeAndStopAll();

    const reconciliation = {
      charges: await count("SELECT count(*) FROM charges WHERE status = 'SUCCEEDED'"),
      allCharges: await count('SELECT count(*) FROM charges'),
      outboxEvents: await count('SELECT count(*) FROM outbox_events'),
      inboxEvents: await count("SELECT count(*) FROM inbox_events WHERE consumer = 'ledger'"),
      ledgerTransactions: await count('SELECT count(*) FROM ledger_transactions'),
      duplicatePostings: await count(
        'SELECT count(*) FROM (SELECT charge_id FROM ledger_transactions GROUP BY charge_id, refund_id HAVING count(*) > 1) d',
      ),
      unbalanced: await count(
        'SELECT count(*) FROM (SELECT transaction_id, currency FROM ledger_entries GROUP BY 1, 2 HAVING sum(amount) <> 0) u',
      ),
      balanceMismatch: await count(
        `SELECT count(*) FROM (
           SELECT c.merchant_id, c.currency, sum(c.amount) AS expected,
                  (SELECT -sum(e.amount) FROM ledger_entries e WHERE e.account_id = 'merchant_balance:' || c.merchant_id
                      AND e.currency = c.currency) AS balance
             FROM charges c WHERE c.status = 'SUCCEEDED' GROUP BY 1, 2) x WHERE expected IS DISTINCT FROM balance`,
      ),
    };
    const facts = await reconcileFromFacts(databaseUrl.toString());
    const deadLetters = await count('SELECT count(*) FROM dead_letters');
    const published = fleet.counter('relay_published_events_total');
    const retries = transcript.filter((record) => record.attempt > 1);
    const delays = retries.map((record) => record.delayMs).sort((a, b) => a - b);
    const retryAfterViolations = retries.filter(
      (record) => record.retryAfterSeconds !== null && record.delayMs < record.retryAfterSeconds * 1_000,
    ).length;
    const table: Record<string, number | string> = {
      'logical operations': options.operations,
      '  of which duplicate sends / concurrent pairs': `${kinds.duplicateSend} / ${kinds.concurrentPair}`,
      'HTTP attempts (client transcript)': transcript.length,
      'HTTP attempts counted by the api processes': sumBy(fleet.counters, 'charge_request_attempts_total'),
      'replays (idempotency outcome)': fleet.counter('idempotency_requests_total{outcome="replayed"}'),
      '409 in progress': fleet.counter('idempotency_requests_total{outcome="in_progress"}'),
      'lost responses (proxy)': proxies.reduce((sum, proxy) => sum + proxy.stats.droppedResponses, 0),
      'relay publishes (metrics, surviving processes)': published,
      'relay re-publishes (killed relay’s unmarked batch)': relayRepublishes,
      'duplicate deliveries injected': redeliveries,
      'inbox duplicates skipped': sumBy(fleet.counters, 'inbox_duplicates_total'),
      'charges (succeeded, Postgres)': reconciliation.charges,
      'outbox events / inbox rows': `${reconciliation.outboxEvents} / ${reconciliation.inboxEvents}`,
      'ledger effects applied (metrics)': fleet.counter('ledger_effects_applied_total'),
      'ledger transactions (Postgres)': reconciliation.ledgerTransactions,
      'ledger balanced': reconciliation.unbalanced === 0 && reconciliation.balanceMismatch === 0 ? 'yes' : 'NO',
      'worker SIGKILLs (each restarted)': workerKills,
      'Postgres outage (private cluster), ms / published events unapplied': `${outageMs} / ${outageBacklog}`,
      '  ledger jobs held meanwhile (no attempt spent)': fleet.counter(
        'ledger_jobs_held_total{reason="infrastructure"}',
      ),
      'Redis restarted empty after publish: unapplied events lost': redisLost,
      '  republished by the sweeper': sumBy(fleet.counters, 'outbox_republished_total'),
      'dead letters': deadLetters,
      'reconciliation from facts (grace 0)': facts.healthy ? 'healthy' : 'UNHEALTHY',
      ...Object.fromEntries(reconciliationFactKinds.map((kind) => [`  ${kind}`, facts[kind].length])),
      'retry delay ms min / median / p90 / max': `${delays[0] ?? 0} / ${percentile(delays, 0.5)} / ${percentile(delays, 0.9)} / ${delays.at(-1) ?? 0}`,
      'retry delays distinct': `${new Set(delays).size} of ${delays.length} (${percent(new Set(delays).size, delays.length)})`,
      'retries after a Retry-After (all waited at least it)': retries.filter(
        (record) => record.retryAfterSeconds !== null,
      ).length,
      'Retry-After not honoured': retryAfterViolations,
    };
    const problems = [
      ...failures,
      ...disagreements,
      ...(reconciliation.charges === options.operations
        ? []
        : [`charges ${reconciliation.charges} ≠ operations ${options.operations}`]),
      ...(reconciliation.allCharges === options.operations
        ? []
        : [`charge rows ${reconciliation.allCharges} ≠ operations`]),
      ...(reconciliation.ledgerTransactions === options.operations
        ? []
        : [`ledger transactions ${reconciliation.ledgerTransactions} ≠ operations`]),
      ...(reconciliation.duplicatePostings === 0 ? [] : [`${reconciliation.duplicatePostings} charges posted twice`]),
      ...(reconciliation.unbalanced === 0 && reconciliation.balanceMismatch === 0
        ? []
        : ['the ledger does not balance']),
      ...(retryAfterViolations === 0 ? [] : [`${retryAfterViolations} retries did not wait Retry-After`]),
      ...(deadLetters === 0 ? [] : [`${deadLetters} dead letters`]),
      ...(facts.healthy
        ? []
        : [
            `reconciliation unhealthy: ${reconciliationFactKinds.map((kind) => `${kind} ${facts[kind].length}`).join(', ')}`,
          ]),
    ];
    if (options.transcriptPath !== undefined) {
      await mkdir(path.dirname(options.transcriptPath), { recursive: true });
      await writeFile(options.transcriptPath, transcript.map((record) => JSON.stringify(record)).join('\n') + '\n');
    }
    return { ok: problems.length === 0, table, problems };
  } finally {
    await fleet.killAll();
    for (const proxy of proxies) await proxy.close();
    await database.end().catch(() => undefined);
    redis.disconnect();
    await admin.query(`DROP DATABASE IF EXISTS ${databaseName} WITH (FORCE)`).catch(() => undefined);
    await admin.end().catch(() => undefined);
  }
}

/** The admin API's reconciliation from facts, every row counted (grace 0: the run is over). */
async function reconcileFromFacts(databaseUrl: string) {
  const handle = openDatabase({
    databaseUrl,
    databasePoolSizeMax: 1,
    databaseStatementTimeoutMs: 30_000,
    databaseLockTimeoutMs: 5_000,
  });
  try {
    return await reconcileFully(handle.prisma, 0);
  } finally {
    await handle.close();
  }
}

function percent(part: number, whole: number): string {
  return whole === 0 ? '-' : `${Math.round((100 * part) / whole)}%`;
}

function sumBy(counters: Counters, name: string): number {
  let total = 0;
  for (const [key, value] of counters) if (key === name || key.startsWith(`${name}{`)) total += value;
  return total;
}

export function formatTable(table: Readonly<Record<string, number | string>>): string {
  const width = Math.max(...Object.keys(table).map((key) => key.length));
  return Object.entries(table)
    .map(([key, value]) => `${key.padEnd(width)}  ${value}`)
    .join('\n');
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const operations = Number(process.env.PROOF_OPERATIONS ?? 1_000);
  const transcriptPath = path.join(repoRoot, 'test-artifacts', 'proof-transcript.jsonl');
  runProof({ operations, transcriptPath }).then(
    (result) => {
      process.stdout.write(`${formatTable(result.table)}\n`);
      process.stdout.write(`client transcript: ${transcriptPath}\n`);
      if (!result.ok) {
        process.stdout.write(`PROOF FAILED:\n  ${result.problems.join('\n  ')}\n`);
        process.exit(1);
      }
      process.stdout.write(
        `PROOF PASSED: ${operations} logical operations, ${operations} charges, ${operations} ledger effects.\n`,
      );
    },
    (error: unknown) => {
      process.stderr.write(`proof could not run: ${error instanceof Error ? error.stack : String(error)}\n`);
      process.exit(2);
    },
  );
}

/**
 * Configuration: the environment, parsed once at start into a typed, frozen object.
 * One zod schema gives the type (`Config`), the check and docs/configuration.md
 * (`npm run config:docs`; a test fails when the file is stale). A bad value throws a ConfigError
 * naming every bad variable, and main() stops the process with it. The variable names in
 * docs/contract.md §8 are a contract; the rest are ours.
 */
import { z } from 'zod';
import {
  decimal,
  flag,
  hostPort,
  integer,
  list,
  oneOf,
  secret,
  setting,
  settingDocs,
  text,
  url,
  type Kind,
} from './platform/environment';
import { gatewayRoleName, localOwnerUrl } from './platform/database-role';

const roles = ['all', 'api', 'relay', 'worker'] as const;
export type Role = (typeof roles)[number];

/** Fault hooks for tests. Off unless named in FAULTS, and refused in production. */
const faultNames = [
  'crash_after_acquirer',
  'fail_after_charge_insert',
  'crash_after_publish',
  // An unexpected error (a bug) just before the charge is recorded: answered 500 INTERNAL.
  'bug_before_record',
  // The /demo page's toggle: lose a first attempt's answer after the charge committed.
  'drop_response',
  // The ledger call throws an unexpected error (a bug, not an outage): attempts, then a dead letter.
  'ledger_bug',
  // The worker takes each job and never finishes it (its lock is renewed) until the process dies:
  // a test can then kill a worker while it holds a job, as often as it likes.
  'ledger_hang',
] as const;
export type Fault = (typeof faultNames)[number];

const acquirerNames = ['simulated'] as const;
export type AcquirerName = (typeof acquirerNames)[number];

const logLevels = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;

const faultList = list(oneOf(faultNames), 'fault names');
const faultSet: Kind<ReadonlySet<Fault>> = {
  schema: faultList.schema.transform((names): ReadonlySet<Fault> => new Set(names)),
  type: faultList.type,
};

/** The service itself: which roles run, how it logs and how long it drains. */
const service = {
  port: setting(integer(0, 65_535), {
    variable: 'PORT',
    default: 4000,
    description: 'HTTP port of every role: `/healthz`, `/readyz`, `/graphql` on api, `/metrics` outside production.',
  }),
  // Outside production the gateway serves Sandbox, introspection and the demo page that hands out
  // the demo key: only to this machine unless asked. In production (a container) every interface.
  host: setting(text(), {
    variable: 'HOST',
    defaultText: '127.0.0.1 (production: 0.0.0.0)',
    production: 'Defaults to 0.0.0.0, every interface (behind the container network or a load balancer).',
    description: 'Address the HTTP listener (`PORT`) binds to.',
  }),
  role: setting(oneOf(roles), {
    variable: 'ROLE',
    default: 'all',
    description: 'Which roles this process runs; `all` runs api, relay and worker together.',
  }),
  nodeEnv: setting(text(), {
    variable: 'NODE_ENV',
    default: 'development',
    production:
      '`production` turns off introspection, field suggestions, the landing and demo pages, the demo merchant ' +
      'and fault hooks, and moves `/metrics` off `PORT` (docs/security.md).',
    description: 'The deployment kind; only `production` changes behaviour.',
  }),
  logLevel: setting(oneOf(logLevels), { variable: 'LOG_LEVEL', default: 'info', description: 'pino log level.' }),
  shutdownGraceMs: setting(integer(0, 120_000), {
    variable: 'SHUTDOWN_GRACE_MS',
    default: 10_000,
    description: 'How long in-flight requests and jobs get after SIGTERM before the process stops them.',
  }),
};

const postgres = {
  databaseUrl: setting(url(['postgres:', 'postgresql:']), {
    variable: 'DATABASE_URL',
    default: `postgresql://${gatewayRoleName}@127.0.0.1:5432/payments`,
    production: 'A role that can TRUNCATE, UPDATE or DELETE ledger rows (a superuser, the owner) is refused at start.',
    description:
      `The Postgres database the gateway uses, as the least-privilege role \`${gatewayRoleName}\` that the ` +
      'migrations create (docs/security.md). Its password, when it has one, is given to the role by the migrate command.',
  }),
  migrationDatabaseUrl: setting(url(['postgres:', 'postgresql:']), {
    variable: 'MIGRATION_DATABASE_URL',
    defaultText: '`DATABASE_URL` as user `postgres`, no password',
    description:
      "The owner's connection, for migrations only: read by the migrate command and `npm start`'s setup, never by a " +
      'running gateway.',
  }),
  databasePoolSizeMax: setting(integer(1, 200), {
    variable: 'DATABASE_POOL_SIZE_MAX',
    default: 16,
    description: 'Postgres connections per process.',
  }),
  databaseStatementTimeoutMs: setting(integer(100, 600_000), {
    variable: 'DATABASE_STATEMENT_TIMEOUT_MS',
    default: 5_000,
    description: '`statement_timeout` on every connection.',
  }),
  databaseLockTimeoutMs: setting(integer(50, 600_000), {
    variable: 'DATABASE_LOCK_TIMEOUT_MS',
    default: 2_000,
    description: '`lock_timeout` on every connection.',
  }),
  databasePoolConnectTimeoutMs: setting(integer(50, 600_000), {
    variable: 'DATABASE_POOL_CONNECT_TIMEOUT_MS',
    default: 5_000,
    description:
      'How long a request waits for a pool connection (a free slot or a new connection) before answering 503. ' +
      'Apart from the lock timeout: waiting for a slot in a burst is queueing, not a fault; a refused connection ' +
      'still fails at once.',
  }),
};

const redis = {
  redisUrl: setting(url(['redis:', 'rediss:']), {
    variable: 'REDIS_URL',
    default: 'redis://127.0.0.1:6379',
    description: 'The Redis the gateway uses.',
  }),
  redisClusterNodes: setting(list(hostPort, 'seed nodes'), {
    variable: 'REDIS_CLUSTER_NODES',
    default: [],
    description: 'Redis Cluster seed nodes; when set, used instead of `REDIS_URL`.',
  }),
  redisKeyPrefix: setting(text({ pattern: /^[A-Za-z0-9_{}.-]{1,64}$/, rule: '1 to 64 of [A-Za-z0-9_{}.-]' }), {
    variable: 'REDIS_KEY_PREFIX',
    defaultText: "`pgw-<16 hex>`, derived from the database's identity",
    description:
      'Prefix of every Redis key the gateway writes, so several deployments or tests share a Redis. Unset, it is ' +
      'derived from the `deployment_identity` row and the database name, so two deployments never share one.',
  }),
  queuePrefix: setting(text(), {
    variable: 'QUEUE_PREFIX',
    defaultText: '`{<REDIS_KEY_PREFIX>}`',
    description: "BullMQ's key prefix. A hash tag (`{…}`) keeps a queue's keys on one Redis Cluster slot.",
  }),
  redisCommandTimeoutMs: setting(integer(10, 10_000), {
    variable: 'REDIS_COMMAND_TIMEOUT_MS',
    default: 250,
    description:
      'Fail-fast bound on a hot-path Redis command; past it the request falls through to Postgres. ' +
      'A healthy Redis answers in well under 1 ms; a dead one must not hold a charge.',
  }),
  redisAnswerSecret: setting(secret(32), {
    variable: 'REDIS_ANSWER_SECRET',
    defaultText: 'generated into `.data/`',
    description: 'HMAC secret that signs every Redis answer and done marker.',
  }),
};

const access = {
  adminToken: setting(secret(16), {
    variable: 'ADMIN_TOKEN',
    description: "The operators' API token; the admin API is off without it.",
  }),
  demoMerchantApiKey: setting(
    text({ pattern: /^[\x21-\x7e]{16,200}$/, rule: '16 to 200 printable ASCII characters' }),
    {
      variable: 'DEMO_MERCHANT_API_KEY',
      defaultText: 'random per start',
      production: 'The demo merchant never authenticates.',
      description: "Outside production, the demo merchant's exact key (a scripted local setup knows it in advance).",
    },
  ),
  acquirer: setting(oneOf(acquirerNames), {
    variable: 'ACQUIRER',
    description: 'Which acquirer the gateway talks to.',
  }),
  acquirerSimulatedInProduction: setting(flag, {
    variable: 'ACQUIRER_SIMULATED_IN_PRODUCTION',
    default: false,
    description: 'Production must opt in to the simulated acquirer explicitly.',
  }),
  acquirerTimeoutMs: setting(integer(50, 60_000), {
    variable: 'ACQUIRER_TIMEOUT_MS',
    default: 3_000,
    description: "The acquirer call's timeout; past it the call is a transient failure.",
  }),
};

const idempotency = {
  idempotencyLeaseMs: setting(integer(200, 600_000), {
    variable: 'IDEMPOTENCY_LEASE_MS',
    default: 15_000,
    description: "How long an in-flight key is held. Longer than the acquirer's timeout, so a live holder keeps it.",
  }),
  idempotencyInFlightWaitMs: setting(integer(0, 10_000), {
    variable: 'IDEMPOTENCY_IN_FLIGHT_WAIT_MS',
    default: 2_000,
    description:
      "How long a request waits for its in-flight twin before answering 409: long enough for a normal acquirer call, short enough for a browser's patience.",
  }),
  idempotencyResponseTtlSeconds: setting(integer(1, 30 * 86_400), {
    variable: 'IDEMPOTENCY_RESPONSE_TTL_SECONDS',
    default: 86_400,
    description: 'How long a completed response is kept in Redis (docs/contract.md §3: 24 hours).',
  }),
  idempotencyRetentionHours: setting(integer(1, 24 * 365), {
    variable: 'IDEMPOTENCY_RETENTION_HOURS',
    default: 72,
    description: 'How long finished keys stay in Postgres before retention may purge them.',
  }),
  idempotencyAbandonAfterHours: setting(integer(1, 24 * 365), {
    variable: 'IDEMPOTENCY_ABANDON_AFTER_HOURS',
    default: 24,
    description:
      'A key left at `STARTED` with nothing authorized this long after its lease ran out is marked `ABANDONED`.',
  }),
  idempotencyTombstoneDays: setting(integer(1, 3_650), {
    variable: 'IDEMPOTENCY_TOMBSTONE_DAYS',
    default: 30,
    description: "How long a purged key's tombstone answers `IDEMPOTENCY_KEY_EXPIRED`.",
  }),
  idempotencyPurgeIntervalMs: setting(integer(1_000, 86_400_000), {
    variable: 'IDEMPOTENCY_PURGE_INTERVAL_MS',
    default: 300_000,
    description: 'How often the worker role purges idempotency keys past retention.',
  }),
  idempotencyPurgeBatchSizeMax: setting(integer(1, 100_000), {
    variable: 'IDEMPOTENCY_PURGE_BATCH_SIZE_MAX',
    default: 1_000,
    description: 'Keys per purge statement: short enough never to hold locks long while requests continue.',
  }),
  completerIntervalMs: setting(integer(50, 3_600_000), {
    variable: 'COMPLETER_INTERVAL_MS',
    default: 5_000,
    description: 'How often the completer looks for keys whose holder died.',
  }),
  completerGraceMs: setting(integer(0, 86_400_000), {
    variable: 'COMPLETER_GRACE_MS',
    default: 30_000,
    description: 'How long past its lease a key waits for its own client before the completer finishes it.',
  }),
  completerBatchSizeMax: setting(integer(1, 10_000), {
    variable: 'COMPLETER_BATCH_SIZE_MAX',
    default: 100,
    description: 'Keys per completer pass.',
  }),
  auditFlushIntervalMs: setting(integer(10, 60_000), {
    variable: 'AUDIT_FLUSH_INTERVAL_MS',
    default: 1_000,
    description: 'Audit rows for attempts answered from Redis are written in batches: this is the crash-loss window.',
  }),
  auditBatchSizeMax: setting(integer(1, 10_000), {
    variable: 'AUDIT_BATCH_SIZE_MAX',
    default: 500,
    description: 'Flush size of the same batches.',
  }),
};

/** Limits on what a client may send (docs/security.md). */
const requestLimits = {
  requestBodyBytesMax: setting(integer(1_024, 10_485_760), {
    variable: 'REQUEST_BODY_BYTES_MAX',
    default: 65_536,
    description:
      'HTTP body limit. 64 KiB holds the largest valid charge (500-character description, 8 KiB of metadata) many times over.',
  }),
  queryDepthMax: setting(integer(2, 100), {
    variable: 'QUERY_DEPTH_MAX',
    default: 16,
    description:
      'GraphQL field depth limit (fragments add none). The standard introspection query (Sandbox, code generators) nests 15 levels; our own types 5.',
  }),
  queryComplexityMax: setting(integer(10, 1_000_000), {
    variable: 'QUERY_COMPLEXITY_MAX',
    default: 5_000,
    description:
      "GraphQL cost limit: one point per field, a paged field's selection counted `first` times; three full pages of charges and then some.",
  }),
  queryTokensMax: setting(integer(100, 1_000_000), {
    variable: 'QUERY_TOKENS_MAX',
    default: 2_000,
    description:
      "Lexical tokens a GraphQL query may have (the parser stops past it); the largest legitimate operation (Sandbox's introspection) has about 300.",
  }),
  querySelectionsMax: setting(integer(10, 1_000_000), {
    variable: 'QUERY_SELECTIONS_MAX',
    default: 1_000,
    description:
      'Selections an operation may make with its fragments expanded (counted once per fragment); a page of charges with every field is about 20.',
  }),
  queryAliasesMax: setting(integer(0, 10_000), {
    variable: 'QUERY_ALIASES_MAX',
    default: 30,
    description: 'Aliased fields an operation may have.',
  }),
  httpHeadersTimeoutMs: setting(integer(100, 120_000), {
    variable: 'HTTP_HEADERS_TIMEOUT_MS',
    default: 10_000,
    description:
      'A client must send its request headers within this (408, then closed). A real client sends them in one packet; a trickling one is cut off early.',
  }),
  httpRequestTimeoutMs: setting(integer(100, 600_000), {
    variable: 'HTTP_REQUEST_TIMEOUT_MS',
    default: 30_000,
    description:
      'A client must send its whole request (headers and body) within this; the body is at most `REQUEST_BODY_BYTES_MAX`, seconds on a slow link.',
  }),
  httpKeepAliveTimeoutMs: setting(integer(100, 600_000), {
    variable: 'HTTP_KEEP_ALIVE_TIMEOUT_MS',
    default: 5_000,
    description:
      "An idle keep-alive connection is closed after this (Node's own default, made explicit); behind a load balancer keep it above the balancer's idle timeout.",
  }),
  httpConnectionsMax: setting(integer(1, 1_000_000), {
    variable: 'HTTP_CONNECTIONS_MAX',
    default: 1_000,
    description:
      'Open connections per listener; new ones past it are closed at once. Far above what the database pool serves at once.',
  }),
  trustProxyHops: setting(integer(0, 10), {
    variable: 'TRUST_PROXY_HOPS',
    default: 0,
    description: "Reverse proxies whose `X-Forwarded-For` names the client address (Express's `trust proxy`).",
  }),
};

const merchants = {
  merchantRatePerSecond: setting(integer(1, 1_000_000), {
    variable: 'MERCHANT_RATE_PER_SECOND',
    default: 200,
    description: 'Requests a second a merchant may make unless its own limit says otherwise.',
  }),
  merchantCacheTtlMs: setting(integer(0, 300_000), {
    variable: 'MERCHANT_CACHE_TTL_MS',
    default: 5_000,
    description:
      'Per-process API-key cache. A revocation evicts at once in every process (Redis pub/sub); this bounds how long a revoked key works when that message is lost.',
  }),
  merchantCacheEntriesMax: setting(integer(1, 10_000_000), {
    variable: 'MERCHANT_CACHE_ENTRIES_MAX',
    default: 10_000,
    description: 'Entries of the API-key LRU cache (least recently used go first; unknown keys are never cached).',
  }),
  authFailuresPerMinute: setting(integer(1, 1_000_000), {
    variable: 'AUTH_FAILURES_PER_MINUTE',
    default: 60,
    description:
      'Failed or missing API-key authentications per client address per minute, then 429 before any lookup. A client with a wrong key finds out long before; a key guesser gets nowhere.',
  }),
  adminAuthFailuresPerMinute: setting(integer(1, 1_000_000), {
    variable: 'ADMIN_AUTH_FAILURES_PER_MINUTE',
    default: 10,
    description: 'Wrong admin tokens per client address per minute, then 429 (each failure is logged).',
  }),
};

const metrics = {
  metricsPort: setting(integer(0, 65_535), {
    variable: 'METRICS_PORT',
    defaultText: '0 (production: 9464)',
    production: 'Defaults to 9464; 0 means any free port of its own, never `PORT`.',
    description: 'Port of the `/metrics` listener; 0 serves it on `PORT` outside production.',
  }),
  metricsHost: setting(text(), {
    variable: 'METRICS_HOST',
    default: '127.0.0.1',
    description: 'Address the metrics listener binds to.',
  }),
};

const eventPath = {
  relayBatchSizeMax: setting(integer(1, 10_000), {
    variable: 'RELAY_BATCH_SIZE_MAX',
    default: 500,
    description:
      "Events a relay claims and publishes at once. A batch's addBulk is one round trip; larger batches hold a claim longer for little gain.",
  }),
  relayPollIntervalMs: setting(integer(10, 60_000), {
    variable: 'RELAY_POLL_INTERVAL_MS',
    default: 1_000,
    description: 'Relay poll when no NOTIFY arrives.',
  }),
  relayClaimLeaseMs: setting(integer(100, 600_000), {
    variable: 'RELAY_CLAIM_LEASE_MS',
    default: 30_000,
    description: "How long a relay's claim on a batch lasts before another relay may publish it.",
  }),
  relayRatePerSecond: setting(integer(0, 1_000_000), {
    variable: 'RELAY_RATE_PER_SECOND',
    default: 2_000,
    description: 'The fleet-wide publish rate cap, events per second; 0 means uncapped.',
  }),
  relayRateBurstMax: setting(integer(0, 1_000_000), {
    variable: 'RELAY_RATE_BURST_MAX',
    default: 0,
    defaultText: '0 (rate / 50)',
    description: 'Tokens the rate bucket may hold, the largest burst above the rate; 0 means rate / 50.',
  }),
  sweeperGraceMs: setting(integer(100, 86_400_000), {
    variable: 'SWEEPER_GRACE_MS',
    default: 60_000,
    description: 'An event published this long ago with no inbox row is published again by the sweeper.',
  }),
  sweeperIntervalMs: setting(integer(50, 3_600_000), {
    variable: 'SWEEPER_INTERVAL_MS',
    default: 10_000,
    description: 'How often the sweeper looks.',
  }),
  workerConcurrency: setting(integer(1, 1_000), {
    variable: 'WORKER_CONCURRENCY',
    // Jobs that run at once share one apply statement (src/ledger/apply-batch.ts), so more of them
    // costs no more connections and makes each statement carry more events.
    default: 64,
    description: 'Jobs a worker process runs at once (they share apply statements: at most this many events each).',
  }),
  workerAttemptsMax: setting(integer(1, 100), {
    variable: 'WORKER_ATTEMPTS_MAX',
    default: 5,
    description: 'Attempts for a failure of the event itself before the job is dead-lettered (outages spend none).',
  }),
  workerBackoffBaseMs: setting(integer(1, 600_000), {
    variable: 'WORKER_BACKOFF_BASE_MS',
    default: 200,
    description: 'Base of the full-jitter backoff between attempts.',
  }),
  workerBackoffCapMs: setting(integer(1, 3_600_000), {
    variable: 'WORKER_BACKOFF_CAP_MS',
    default: 30_000,
    description: 'Cap of the full-jitter backoff between attempts.',
  }),
  workerRatePerSecond: setting(integer(0, 1_000_000), {
    variable: 'WORKER_RATE_PER_SECOND',
    default: 0,
    description: "BullMQ's limiter on the worker side, jobs per second per queue; 0 means none.",
  }),
  workerLockDurationMs: setting(integer(1_000, 600_000), {
    variable: 'WORKER_LOCK_DURATION_MS',
    default: 30_000,
    description:
      "BullMQ's job lock: a worker that dies mid-job gives its job back after about this long (also BullMQ's stalled interval).",
  }),
  workerStalledCountMax: setting(integer(1, 1_000), {
    variable: 'WORKER_STALLED_COUNT_MAX',
    default: 20,
    description:
      "BullMQ's maxStalledCount: deaths of a worker holding a job that the job survives; past it, BullMQ fails the job " +
      'and it becomes a dead letter (docs/event-path.md). A stall is a worker that died holding the job, and re-running ' +
      'is safe (the inbox), so the bound only stops a job that kills every worker that takes it.',
  }),
  retryBudgetCapacity: setting(integer(1, 1_000_000), {
    variable: 'RETRY_BUDGET_CAPACITY',
    default: 50,
    description: 'Retry-budget tokens per call site.',
  }),
  retryBudgetDepositPerSuccess: setting(decimal(0, 1), {
    variable: 'RETRY_BUDGET_DEPOSIT_PER_SUCCESS',
    default: 0.1,
    description: 'What a success puts back into the retry budget.',
  }),
  retryBudgetRefillPerSecond: setting(decimal(0, 1_000), {
    variable: 'RETRY_BUDGET_REFILL_PER_SECOND',
    default: 1,
    description: "The retry budget's steady refill.",
  }),
  retryBudgetEmptyDelayMs: setting(integer(10, 600_000), {
    variable: 'RETRY_BUDGET_EMPTY_DELAY_MS',
    default: 1_000,
    description:
      "How long a job waits when its call site's retry budget is empty (no attempt is spent); also the probe interval.",
  }),
  reconciliationGraceMs: setting(integer(0, 86_400_000), {
    variable: 'RECONCILIATION_GRACE_MS',
    default: 300_000,
    description: 'Reconciliation facts count only rows older than this, so work in flight is not reported.',
  }),
};

/** Test hooks; production refuses them (the rules below). */
const faults = {
  faultLedgerOutageMs: setting(integer(0, 3_600_000), {
    variable: 'FAULT_LEDGER_OUTAGE_MS',
    default: 0,
    description: 'Test only: the ledger call fails transiently for this long after a worker starts.',
  }),
  faults: setting(faultSet, {
    variable: 'FAULTS',
    default: new Set<Fault>(),
    description:
      'Test only: fault hooks to turn on (`ledger_bug`: the ledger call throws an unexpected error; `ledger_hang`: ' +
      'the worker holds each job in its processor until the process dies, for kill tests).',
  }),
};

/** Every variable, in the order docs/configuration.md lists them. */
export const settings = {
  ...service,
  ...postgres,
  ...redis,
  ...access,
  ...idempotency,
  ...requestLimits,
  ...merchants,
  ...metrics,
  ...eventPath,
  ...faults,
};

type Settings = z.output<z.ZodObject<typeof settings>>;

/** A check across variables, or one that holds only in production; its text is also documented. */
export interface SettingRule {
  readonly setting: keyof Settings;
  readonly inProduction: boolean;
  readonly rule: string;
  holds(values: Settings): boolean;
  /** What the error adds to the rule, e.g. the other variable's value. */
  detail?(values: Settings): string;
}

export const settingRules: readonly SettingRule[] = [
  {
    setting: 'idempotencyLeaseMs',
    inProduction: false,
    rule: 'must be longer than ACQUIRER_TIMEOUT_MS',
    holds: (values) => values.idempotencyLeaseMs > values.acquirerTimeoutMs,
    detail: (values) => String(values.acquirerTimeoutMs),
  },
  {
    setting: 'httpHeadersTimeoutMs',
    inProduction: false,
    rule: 'must not exceed HTTP_REQUEST_TIMEOUT_MS',
    holds: (values) => values.httpHeadersTimeoutMs <= values.httpRequestTimeoutMs,
    detail: (values) => String(values.httpRequestTimeoutMs),
  },
  {
    setting: 'acquirer',
    inProduction: true,
    rule: 'must be set in production',
    holds: (values) => values.acquirer !== undefined,
    detail: () => `one of ${acquirerNames.join(', ')}`,
  },
  {
    setting: 'acquirerSimulatedInProduction',
    inProduction: true,
    rule: 'must be true to run the simulated acquirer in production: it approves test cards and moves no money',
    holds: (values) => values.acquirer !== 'simulated' || values.acquirerSimulatedInProduction,
  },
  {
    setting: 'redisAnswerSecret',
    inProduction: true,
    rule: 'must be set in production',
    holds: (values) => values.redisAnswerSecret !== undefined,
    detail: () => 'at least 32 characters',
  },
  {
    setting: 'faultLedgerOutageMs',
    inProduction: true,
    rule: 'must be 0: fault injection is refused when NODE_ENV=production',
    holds: (values) => values.faultLedgerOutageMs === 0,
  },
  {
    setting: 'faults',
    inProduction: true,
    rule: 'must be empty: fault injection is refused when NODE_ENV=production',
    holds: (values) => values.faults.size === 0,
  },
];

export function variableOf(key: keyof typeof settings): string {
  return settingDocs.get(settings[key])!.variable;
}

/** Every environment variable the gateway reads. */
export const variableNames: readonly string[] = Object.values(settings).map(
  (schema) => settingDocs.get(schema)!.variable,
);

const configSchema = z.object(settings).transform((values, context) => {
  const isProduction = values.nodeEnv === 'production';
  for (const { setting: key, inProduction, rule, holds, detail } of settingRules) {
    if ((inProduction && !isProduction) || holds(values)) continue;
    context.issues.push({
      code: 'custom',
      path: [key],
      message: detail ? `${rule} (${detail(values)})` : rule,
      input: values[key],
    });
  }
  return Object.freeze({
    ...values,
    isProduction,
    // Derived defaults: production serves /metrics apart from PORT, on every interface. The Redis namespace and the
    // queues' prefix, when unset, come from the database at start (src/platform/deployment-namespace.ts).
    metricsPort: values.metricsPort ?? (isProduction ? 9464 : 0),
    host: values.host ?? (isProduction ? '0.0.0.0' : '127.0.0.1'),
    migrationDatabaseUrl: values.migrationDatabaseUrl ?? localOwnerUrl(values.databaseUrl),
  });
});

/** The typed, frozen configuration the code uses. */
export type Config = z.output<typeof configSchema>;

export class ConfigError extends Error {
  /** The first bad variable; the message names every one. */
  readonly variable: string;

  constructor(readonly problems: readonly { readonly variable: string; readonly problem: string }[]) {
    super(problems.map(({ variable, problem }) => `${variable}: ${problem}`).join('; '));
    this.name = 'ConfigError';
    this.variable = problems[0]?.variable ?? 'environment';
  }
}

type Env = Readonly<Record<string, string | undefined>>;

function isSettingKey(key: PropertyKey | undefined): key is keyof typeof settings {
  return typeof key === 'string' && Object.hasOwn(settings, key);
}

export function loadConfig(env: Env = process.env): Config {
  const input = Object.fromEntries(
    Object.keys(settings).map((key) => [key, env[isSettingKey(key) ? variableOf(key) : key]]),
  );
  const parsed = configSchema.safeParse(input);
  if (parsed.success) return parsed.data;
  throw new ConfigError(
    parsed.error.issues.map((issue) => {
      const key = issue.path[0];
      return { variable: isSettingKey(key) ? variableOf(key) : 'environment', problem: issue.message };
    }),
  );
}

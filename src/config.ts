/**
 * Configuration: the environment, parsed once at start into a typed, frozen object.
 * A bad value throws a ConfigError naming the variable, and main() stops the process with it.
 * The variable names in docs/contract.md §8 are a contract; the rest are ours and documented in
 * docs/configuration.md.
 */

export type Role = 'all' | 'api' | 'relay' | 'worker';
const roles: readonly Role[] = ['all', 'api', 'relay', 'worker'];

/** Fault hooks for tests. Off unless named in FAULTS, and refused in production. */
export type Fault =
  | 'crash_after_acquirer'
  | 'crash_after_authorized'
  | 'fail_after_charge_insert'
  | 'crash_after_publish'
  | 'bug_before_record'
  | 'drop_response'
  | 'ledger_bug'
  | 'ledger_hang';
const faults: readonly Fault[] = [
  'crash_after_acquirer',
  'crash_after_authorized',
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
];

export interface Config {
  readonly port: number;
  readonly databaseUrl: string;
  readonly redisUrl: string;
  /** Redis Cluster seed nodes (REDIS_CLUSTER_NODES=host:port,…); empty: a single Redis at redisUrl. */
  readonly redisClusterNodes: readonly { readonly host: string; readonly port: number }[];
  readonly role: Role;
  readonly adminToken: string | undefined;
  readonly nodeEnv: string;
  readonly isProduction: boolean;
  readonly logLevel: string;
  readonly demoMerchantApiKey: string | undefined;
  /** Prefix of every Redis key the gateway writes, so several deployments or tests share a Redis. */
  readonly redisKeyPrefix: string;
  /** Fail-fast bound on a hot-path Redis command: past it, the request falls through to Postgres. */
  readonly redisCommandTimeoutMs: number;
  readonly databasePoolSizeMax: number;
  readonly databaseStatementTimeoutMs: number;
  readonly databaseLockTimeoutMs: number;
  /** How long a request waits for a pool connection (a free slot, or a new connection) before a 503. */
  readonly databasePoolConnectTimeoutMs: number;
  /** How long an in-flight key is held. Longer than the acquirer's timeout, so a live holder keeps it. */
  readonly idempotencyLeaseMs: number;
  /** How long a completed response is kept in Redis (docs/contract.md §3: 24 hours). */
  readonly idempotencyResponseTtlSeconds: number;
  /** How long finished keys stay in Postgres before retention may purge them. */
  readonly idempotencyRetentionHours: number;
  /** A key left at STARTED this long after its lease ran out is marked ABANDONED. */
  readonly idempotencyAbandonAfterHours: number;
  readonly acquirerTimeoutMs: number;
  /** How often the completer looks for keys whose holder died. */
  readonly completerIntervalMs: number;
  /** How long past its lease a key must be before the completer finishes it instead of a retry. */
  readonly completerGraceMs: number;
  readonly completerBatchSizeMax: number;
  /** Audit rows for attempts answered from Redis are written in batches: this is the loss window. */
  readonly auditFlushIntervalMs: number;
  readonly auditBatchSizeMax: number;
  readonly requestBodyBytesMax: number;
  readonly queryDepthMax: number;
  readonly queryComplexityMax: number;
  readonly merchantCacheTtlMs: number;
  readonly shutdownGraceMs: number;
  /** BullMQ's key prefix. A hash tag (`{…}`) keeps a queue's keys on one Redis Cluster slot. */
  readonly queuePrefix: string;
  readonly relayBatchSizeMax: number;
  readonly relayPollIntervalMs: number;
  /** How long a relay's claim on a batch lasts before another relay may publish it. */
  readonly relayClaimLeaseMs: number;
  /** The fleet-wide publish rate cap, events per second; 0 means uncapped. */
  readonly relayRatePerSecond: number;
  /** Tokens the rate bucket may hold: the largest burst above the rate. */
  readonly relayRateBurstMax: number;
  readonly workerConcurrency: number;
  /** Attempts for a transient failure before the job is dead-lettered. */
  readonly workerAttemptsMax: number;
  readonly workerBackoffBaseMs: number;
  readonly workerBackoffCapMs: number;
  /** BullMQ's limiter on the worker side, jobs per second per queue; 0 means none. */
  readonly workerRatePerSecond: number;
  /** BullMQ's job lock: a worker that dies mid-job gives its job back after about this long. */
  readonly workerLockDurationMs: number;
  /** BullMQ's maxStalledCount: stalls a job may have in its life before BullMQ fails it (then a dead letter). */
  readonly workerStalledCountMax: number;
  readonly retryBudgetCapacity: number;
  readonly retryBudgetDepositPerSuccess: number;
  readonly retryBudgetRefillPerSecond: number;
  /** How long a job waits when its call site's retry budget is empty (no attempt is spent). */
  readonly retryBudgetEmptyDelayMs: number;
  /** Requests a second a merchant may make unless its own limit says otherwise. */
  readonly merchantRatePerSecond: number;
  /** How often the worker role purges idempotency keys past retention. */
  readonly idempotencyPurgeIntervalMs: number;
  readonly idempotencyPurgeBatchSizeMax: number;
  /** Test hook: the ledger call fails transiently for this long after the worker starts. */
  readonly faultLedgerOutageMs: number;
  readonly faults: ReadonlySet<Fault>;
  // --- Added with the 2026-11-25 contract amendment (docs/contract.md §8). ---
  /** Which acquirer the gateway talks to; unset in production refuses to start. */
  readonly acquirer: AcquirerName | undefined;
  /** Production must opt in to the simulated acquirer explicitly. */
  readonly acquirerSimulatedInProduction: boolean;
  /** Signs every Redis answer and done marker (HMAC). Required in production; outside it, see platform/redis-answer-secret.ts. */
  readonly redisAnswerSecret: string | undefined;
  /** Port of the /metrics listener; 0: on PORT outside production, any free port of its own in production. */
  readonly metricsPort: number;
  /** Host the metrics listener binds to. */
  readonly metricsHost: string;
  /** How long a request waits for its in-flight twin before answering 409. */
  readonly idempotencyInFlightWaitMs: number;
  /** How long a purged key's tombstone answers IDEMPOTENCY_KEY_EXPIRED. */
  readonly idempotencyTombstoneDays: number;
  /** An event published this long ago with no inbox row is published again by the sweeper. */
  readonly sweeperGraceMs: number;
  readonly sweeperIntervalMs: number;
  /** Reconciliation facts count only rows older than this, so work in flight is not reported. */
  readonly reconciliationGraceMs: number;
  // --- Security limits (docs/security.md). ---
  /** Lexical tokens a GraphQL query may have. */
  readonly queryTokensMax: number;
  /** Selections a GraphQL operation may make once its fragments are expanded. */
  readonly querySelectionsMax: number;
  /** Aliased fields a GraphQL operation may have. */
  readonly queryAliasesMax: number;
  /** Failed or missing authentications a client address may make per minute before 429. */
  readonly authFailuresPerMinute: number;
  /** Wrong admin tokens a client address may send per minute before 429. */
  readonly adminAuthFailuresPerMinute: number;
  /** Entries in the per-process API-key cache (least recently used go first). */
  readonly merchantCacheEntriesMax: number;
  /** Reverse proxies in front of the gateway whose X-Forwarded-For is trusted for the client address. */
  readonly trustProxyHops: number;
  /** A client must send its request headers within this long. */
  readonly httpHeadersTimeoutMs: number;
  /** A client must send its whole request (headers and body) within this long. */
  readonly httpRequestTimeoutMs: number;
  /** An idle keep-alive connection is closed after this long. */
  readonly httpKeepAliveTimeoutMs: number;
  /** Open connections per process; past it, new ones are closed at once. */
  readonly httpConnectionsMax: number;
}

export type AcquirerName = 'simulated';
const acquirerNames: readonly AcquirerName[] = ['simulated'];

export class ConfigError extends Error {
  constructor(
    readonly variable: string,
    problem: string,
  ) {
    super(`${variable}: ${problem}`);
    this.name = 'ConfigError';
  }
}

type Env = Readonly<Record<string, string | undefined>>;

function readString(env: Env, name: string, fallback: string): string {
  const value = env[name];
  if (value === undefined || value === '') return fallback;
  return value;
}

function readInteger(env: Env, name: string, fallback: number, min: number, max: number): number {
  const raw = env[name];
  if (raw === undefined || raw === '') return fallback;
  if (!/^-?\d+$/.test(raw.trim())) throw new ConfigError(name, `must be a whole number, got "${raw}"`);
  const value = Number(raw.trim());
  if (value < min || value > max) throw new ConfigError(name, `must be between ${min} and ${max}, got ${value}`);
  return value;
}

function readNumber(env: Env, name: string, fallback: number, min: number, max: number): number {
  const raw = env[name];
  if (raw === undefined || raw === '') return fallback;
  const value = Number(raw.trim());
  if (!Number.isFinite(value)) throw new ConfigError(name, `must be a number, got "${raw}"`);
  if (value < min || value > max) throw new ConfigError(name, `must be between ${min} and ${max}, got ${value}`);
  return value;
}

function readClusterNodes(env: Env): { host: string; port: number }[] {
  const raw = readString(env, 'REDIS_CLUSTER_NODES', '');
  if (raw === '') return [];
  return raw.split(',').map((node) => {
    const match = node.trim().match(/^([A-Za-z0-9.-]+|\[[0-9a-fA-F:]+\]):(\d{1,5})$/);
    if (match === null) throw new ConfigError('REDIS_CLUSTER_NODES', `"${node}" is not host:port`);
    return { host: match[1]!, port: Number(match[2]) };
  });
}

function readFaultDuration(env: Env, isProduction: boolean): number {
  const value = readInteger(env, 'FAULT_LEDGER_OUTAGE_MS', 0, 0, 3_600_000);
  if (value > 0 && isProduction) {
    throw new ConfigError('FAULT_LEDGER_OUTAGE_MS', 'fault injection is refused when NODE_ENV=production');
  }
  return value;
}

function readUrl(env: Env, name: string, fallback: string, protocols: readonly string[]): string {
  const value = readString(env, name, fallback);
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw new ConfigError(name, `must be a URL, got "${value}"`);
  }
  if (!protocols.includes(url.protocol)) {
    throw new ConfigError(name, `must use ${protocols.join(' or ')}, got "${url.protocol}"`);
  }
  return value;
}

function readEnum<T extends string>(env: Env, name: string, fallback: T, allowed: readonly T[]): T {
  const value = readString(env, name, fallback);
  if (!(allowed as readonly string[]).includes(value)) {
    throw new ConfigError(name, `must be one of ${allowed.join(', ')}, got "${value}"`);
  }
  return value as T;
}

function readFaults(env: Env, isProduction: boolean): ReadonlySet<Fault> {
  const raw = readString(env, 'FAULTS', '');
  if (raw === '') return new Set();
  if (isProduction) throw new ConfigError('FAULTS', 'fault injection is refused when NODE_ENV=production');
  const names = raw.split(',').map((name) => name.trim());
  for (const name of names) {
    if (!(faults as readonly string[]).includes(name)) {
      throw new ConfigError('FAULTS', `unknown fault "${name}"; known: ${faults.join(', ')}`);
    }
  }
  return new Set(names as Fault[]);
}

function readBoolean(env: Env, name: string, fallback: boolean): boolean {
  const raw = readString(env, name, String(fallback));
  if (raw !== 'true' && raw !== 'false') throw new ConfigError(name, `must be true or false, got "${raw}"`);
  return raw === 'true';
}

function readOptionalAcquirer(env: Env, isProduction: boolean): AcquirerName | undefined {
  const raw = readString(env, 'ACQUIRER', '');
  if (raw === '') {
    if (isProduction)
      throw new ConfigError('ACQUIRER', `must be set in production (one of ${acquirerNames.join(', ')})`);
    return undefined;
  }
  return readEnum(env, 'ACQUIRER', 'simulated', acquirerNames);
}

function readRedisAnswerSecret(env: Env, isProduction: boolean): string | undefined {
  const value = readString(env, 'REDIS_ANSWER_SECRET', '') || undefined;
  if (value === undefined && isProduction) {
    throw new ConfigError('REDIS_ANSWER_SECRET', 'must be set in production (at least 32 characters)');
  }
  if (value !== undefined && value.length < 32)
    throw new ConfigError('REDIS_ANSWER_SECRET', 'must be at least 32 characters');
  return value;
}

type SecurityLimits = Pick<
  Config,
  | 'queryTokensMax'
  | 'querySelectionsMax'
  | 'queryAliasesMax'
  | 'authFailuresPerMinute'
  | 'adminAuthFailuresPerMinute'
  | 'merchantCacheEntriesMax'
  | 'trustProxyHops'
  | 'httpHeadersTimeoutMs'
  | 'httpRequestTimeoutMs'
  | 'httpKeepAliveTimeoutMs'
  | 'httpConnectionsMax'
>;

function readSecurityLimits(env: Env): SecurityLimits {
  // 10 s for headers: a real client sends them in one packet; a trickling one is cut off early.
  const httpHeadersTimeoutMs = readInteger(env, 'HTTP_HEADERS_TIMEOUT_MS', 10_000, 100, 120_000);
  // 30 s for a whole request: the body is at most REQUEST_BODY_BYTES_MAX, seconds on a slow link.
  const httpRequestTimeoutMs = readInteger(env, 'HTTP_REQUEST_TIMEOUT_MS', 30_000, 100, 600_000);
  if (httpHeadersTimeoutMs > httpRequestTimeoutMs) {
    throw new ConfigError(
      'HTTP_HEADERS_TIMEOUT_MS',
      `must not exceed HTTP_REQUEST_TIMEOUT_MS (${httpRequestTimeoutMs})`,
    );
  }
  return {
    // 2,000 tokens: the largest legitimate operation (Sandbox's introspection) has about 300.
    queryTokensMax: readInteger(env, 'QUERY_TOKENS_MAX', 2_000, 100, 1_000_000),
    // 1,000 selections: a page of charges with every field is about 20; fragments multiply it.
    querySelectionsMax: readInteger(env, 'QUERY_SELECTIONS_MAX', 1_000, 10, 1_000_000),
    queryAliasesMax: readInteger(env, 'QUERY_ALIASES_MAX', 30, 0, 10_000),
    // 60 a minute: a client with a wrong key finds out long before; a key guesser gets nowhere.
    authFailuresPerMinute: readInteger(env, 'AUTH_FAILURES_PER_MINUTE', 60, 1, 1_000_000),
    adminAuthFailuresPerMinute: readInteger(env, 'ADMIN_AUTH_FAILURES_PER_MINUTE', 10, 1, 1_000_000),
    merchantCacheEntriesMax: readInteger(env, 'MERCHANT_CACHE_ENTRIES_MAX', 10_000, 1, 10_000_000),
    trustProxyHops: readInteger(env, 'TRUST_PROXY_HOPS', 0, 0, 10),
    httpHeadersTimeoutMs,
    httpRequestTimeoutMs,
    // 5 s, Node's own default, now explicit; behind a load balancer keep it above the balancer's idle timeout.
    httpKeepAliveTimeoutMs: readInteger(env, 'HTTP_KEEP_ALIVE_TIMEOUT_MS', 5_000, 100, 600_000),
    // 1,000 connections: far above what the database pool serves at once; the rest are refused.
    httpConnectionsMax: readInteger(env, 'HTTP_CONNECTIONS_MAX', 1_000, 1, 1_000_000),
  };
}

export function loadConfig(env: Env = process.env): Config {
  const nodeEnv = readString(env, 'NODE_ENV', 'development');
  const isProduction = nodeEnv === 'production';
  const adminToken = readString(env, 'ADMIN_TOKEN', '') || undefined;
  if (adminToken !== undefined && adminToken.length < 16) {
    throw new ConfigError('ADMIN_TOKEN', 'must be at least 16 characters');
  }
  const demoMerchantApiKey = readString(env, 'DEMO_MERCHANT_API_KEY', '') || undefined;
  if (demoMerchantApiKey !== undefined && !/^[\x21-\x7e]{16,200}$/.test(demoMerchantApiKey)) {
    throw new ConfigError('DEMO_MERCHANT_API_KEY', 'must be 16 to 200 printable ASCII characters');
  }
  const redisKeyPrefix = readString(env, 'REDIS_KEY_PREFIX', 'pgw');
  if (!/^[A-Za-z0-9_{}.-]{1,64}$/.test(redisKeyPrefix)) {
    throw new ConfigError('REDIS_KEY_PREFIX', 'must be 1 to 64 of [A-Za-z0-9_{}.-]');
  }

  const acquirerTimeoutMs = readInteger(env, 'ACQUIRER_TIMEOUT_MS', 3_000, 50, 60_000);
  const idempotencyLeaseMs = readInteger(env, 'IDEMPOTENCY_LEASE_MS', 15_000, 200, 600_000);
  if (idempotencyLeaseMs <= acquirerTimeoutMs) {
    throw new ConfigError('IDEMPOTENCY_LEASE_MS', `must be longer than ACQUIRER_TIMEOUT_MS (${acquirerTimeoutMs})`);
  }

  const config: Config = {
    port: readInteger(env, 'PORT', 4000, 0, 65_535),
    databaseUrl: readUrl(env, 'DATABASE_URL', 'postgresql://postgres@127.0.0.1:5432/payments', [
      'postgres:',
      'postgresql:',
    ]),
    redisUrl: readUrl(env, 'REDIS_URL', 'redis://127.0.0.1:6379', ['redis:', 'rediss:']),
    redisClusterNodes: readClusterNodes(env),
    role: readEnum(env, 'ROLE', 'all', roles),
    adminToken,
    nodeEnv,
    isProduction,
    logLevel: readEnum(env, 'LOG_LEVEL', 'info', ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']),
    demoMerchantApiKey,
    redisKeyPrefix,
    // 250 ms: a healthy local Redis answers in well under 1 ms; a dead one must not hold a charge.
    redisCommandTimeoutMs: readInteger(env, 'REDIS_COMMAND_TIMEOUT_MS', 250, 10, 10_000),
    databasePoolSizeMax: readInteger(env, 'DATABASE_POOL_SIZE_MAX', 16, 1, 200),
    databaseStatementTimeoutMs: readInteger(env, 'DATABASE_STATEMENT_TIMEOUT_MS', 5_000, 100, 600_000),
    databaseLockTimeoutMs: readInteger(env, 'DATABASE_LOCK_TIMEOUT_MS', 2_000, 50, 600_000),
    // 5 s, apart from the lock timeout: waiting for a pool slot in a burst is queueing, not a fault.
    // A refused connection still fails at once; only a hung or saturated database waits this long.
    databasePoolConnectTimeoutMs: readInteger(env, 'DATABASE_POOL_CONNECT_TIMEOUT_MS', 5_000, 50, 600_000),
    idempotencyLeaseMs,
    idempotencyResponseTtlSeconds: readInteger(env, 'IDEMPOTENCY_RESPONSE_TTL_SECONDS', 86_400, 1, 30 * 86_400),
    idempotencyRetentionHours: readInteger(env, 'IDEMPOTENCY_RETENTION_HOURS', 72, 1, 24 * 365),
    idempotencyAbandonAfterHours: readInteger(env, 'IDEMPOTENCY_ABANDON_AFTER_HOURS', 24, 1, 24 * 365),
    acquirerTimeoutMs,
    completerIntervalMs: readInteger(env, 'COMPLETER_INTERVAL_MS', 5_000, 50, 3_600_000),
    completerGraceMs: readInteger(env, 'COMPLETER_GRACE_MS', 30_000, 0, 86_400_000),
    completerBatchSizeMax: readInteger(env, 'COMPLETER_BATCH_SIZE_MAX', 100, 1, 10_000),
    auditFlushIntervalMs: readInteger(env, 'AUDIT_FLUSH_INTERVAL_MS', 1_000, 10, 60_000),
    auditBatchSizeMax: readInteger(env, 'AUDIT_BATCH_SIZE_MAX', 500, 1, 10_000),
    // 64 KiB holds the largest valid charge (500-character description, 8 KiB of metadata) many times over.
    requestBodyBytesMax: readInteger(env, 'REQUEST_BODY_BYTES_MAX', 65_536, 1_024, 10_485_760),
    // 16: the standard introspection query (Sandbox, code generators) nests 15 levels; our own types 5.
    queryDepthMax: readInteger(env, 'QUERY_DEPTH_MAX', 16, 2, 100),
    // 5,000 points: three full pages of charges (first: 100, every field) and then some.
    queryComplexityMax: readInteger(env, 'QUERY_COMPLEXITY_MAX', 5_000, 10, 1_000_000),
    // A revoked key keeps working for at most this long in a process that cached it.
    merchantCacheTtlMs: readInteger(env, 'MERCHANT_CACHE_TTL_MS', 5_000, 0, 300_000),
    shutdownGraceMs: readInteger(env, 'SHUTDOWN_GRACE_MS', 10_000, 0, 120_000),
    queuePrefix: readString(env, 'QUEUE_PREFIX', `{${redisKeyPrefix}}`),
    // 500: a batch's addBulk is one round trip; larger batches hold a claim longer for little gain.
    relayBatchSizeMax: readInteger(env, 'RELAY_BATCH_SIZE_MAX', 500, 1, 10_000),
    relayPollIntervalMs: readInteger(env, 'RELAY_POLL_INTERVAL_MS', 1_000, 10, 60_000),
    relayClaimLeaseMs: readInteger(env, 'RELAY_CLAIM_LEASE_MS', 30_000, 100, 600_000),
    relayRatePerSecond: readInteger(env, 'RELAY_RATE_PER_SECOND', 2_000, 0, 1_000_000),
    relayRateBurstMax: readInteger(env, 'RELAY_RATE_BURST_MAX', 0, 0, 1_000_000),
    workerConcurrency: readInteger(env, 'WORKER_CONCURRENCY', 16, 1, 1_000),
    workerAttemptsMax: readInteger(env, 'WORKER_ATTEMPTS_MAX', 5, 1, 100),
    workerBackoffBaseMs: readInteger(env, 'WORKER_BACKOFF_BASE_MS', 200, 1, 600_000),
    workerBackoffCapMs: readInteger(env, 'WORKER_BACKOFF_CAP_MS', 30_000, 1, 3_600_000),
    workerRatePerSecond: readInteger(env, 'WORKER_RATE_PER_SECOND', 0, 0, 1_000_000),
    workerLockDurationMs: readInteger(env, 'WORKER_LOCK_DURATION_MS', 30_000, 1_000, 600_000),
    // 20: a stall is a worker that died holding the job, and re-running is safe (the inbox), so the
    // bound only stops a job that kills every worker that takes it (src/ledger/worker.ts).
    workerStalledCountMax: readInteger(env, 'WORKER_STALLED_COUNT_MAX', 20, 1, 1_000),
    retryBudgetCapacity: readInteger(env, 'RETRY_BUDGET_CAPACITY', 50, 1, 1_000_000),
    retryBudgetDepositPerSuccess: readNumber(env, 'RETRY_BUDGET_DEPOSIT_PER_SUCCESS', 0.1, 0, 1),
    retryBudgetRefillPerSecond: readNumber(env, 'RETRY_BUDGET_REFILL_PER_SECOND', 1, 0, 1_000),
    retryBudgetEmptyDelayMs: readInteger(env, 'RETRY_BUDGET_EMPTY_DELAY_MS', 1_000, 10, 600_000),
    merchantRatePerSecond: readInteger(env, 'MERCHANT_RATE_PER_SECOND', 200, 1, 1_000_000),
    idempotencyPurgeIntervalMs: readInteger(env, 'IDEMPOTENCY_PURGE_INTERVAL_MS', 300_000, 1_000, 86_400_000),
    // 1,000 rows a statement: short enough never to hold locks long while requests continue.
    idempotencyPurgeBatchSizeMax: readInteger(env, 'IDEMPOTENCY_PURGE_BATCH_SIZE_MAX', 1_000, 1, 100_000),
    faultLedgerOutageMs: readFaultDuration(env, isProduction),
    faults: readFaults(env, isProduction),
    acquirer: readOptionalAcquirer(env, isProduction),
    acquirerSimulatedInProduction: readBoolean(env, 'ACQUIRER_SIMULATED_IN_PRODUCTION', false),
    redisAnswerSecret: readRedisAnswerSecret(env, isProduction),
    metricsPort: readInteger(env, 'METRICS_PORT', isProduction ? 9464 : 0, 0, 65_535),
    metricsHost: readString(env, 'METRICS_HOST', '127.0.0.1'),
    // 2 s: long enough for a normal acquirer call to finish, short enough for a browser's patience.
    idempotencyInFlightWaitMs: readInteger(env, 'IDEMPOTENCY_IN_FLIGHT_WAIT_MS', 2_000, 0, 10_000),
    idempotencyTombstoneDays: readInteger(env, 'IDEMPOTENCY_TOMBSTONE_DAYS', 30, 1, 3_650),
    sweeperGraceMs: readInteger(env, 'SWEEPER_GRACE_MS', 60_000, 100, 86_400_000),
    sweeperIntervalMs: readInteger(env, 'SWEEPER_INTERVAL_MS', 10_000, 50, 3_600_000),
    reconciliationGraceMs: readInteger(env, 'RECONCILIATION_GRACE_MS', 300_000, 0, 86_400_000),
    ...readSecurityLimits(env),
  };
  if (config.isProduction && config.acquirer === 'simulated' && !config.acquirerSimulatedInProduction) {
    throw new ConfigError(
      'ACQUIRER_SIMULATED_IN_PRODUCTION',
      'must be true to run the simulated acquirer in production: it approves test cards and moves no money',
    );
  }
  return Object.freeze(config);
}

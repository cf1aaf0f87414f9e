/**
 * pgbench references for new charges, in charges per second (one script run is one charge), with
 * -M prepared (parsed once per connection, as a pool of prepared statements would) and one
 * connection per client for the whole run (no -C):
 *   - gateway: the gateway's own statements with its own commit boundaries, three commits per
 *     charge (src/idempotency/key-row.ts claimKey with its tombstone check and audit row, the
 *     simulated acquirer's INSERT in src/acquirer/simulated-acquirer.ts, src/charges/record-charge.ts
 *     completing the key with the acquirer's answer);
 *   - before: the same with the AUTHORIZED save (saveRecoveryPoint) the gateway committed
 *     between the acquirer and the record until it was dropped: four commits;
 *   - floor: the fewest commits the recovery-point design needs, three: claim the key; the
 *     acquirer's authorization; charge + outbox event + key completion (with the acquirer's
 *     answer) in one statement. The gateway's shape is the floor now;
 *   - one transaction: the same three statements in one commit, a ceiling no safe design reaches
 *     (the acquirer's call cannot sit inside a transaction).
 * Statements pass values from one to the next with \gset, as the gateway passes the key row.
 * Latency percentiles come from pgbench's per-transaction log (-l).
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

export type PgbenchShape = 'gateway' | 'before' | 'floor' | 'one transaction';

export interface PgbenchResult {
  readonly perSecond: number;
  readonly p50Ms: number;
  readonly p99Ms: number;
}

const key = `'pgb-' || :client_id || '-' || :k`;

const claim = [
  `WITH inserted AS (`,
  `  INSERT INTO idempotency_keys (merchant_id, key, operation, fingerprint, request_payload, locked_until)`,
  `  SELECT :merchant, ${key}, 'createCharge', :fingerprint, :payload, now() + 15000 * interval '1 millisecond'`,
  `   WHERE NOT EXISTS (SELECT 1 FROM idempotency_tombstones t WHERE t.merchant_id = :merchant AND t.key = ${key})`,
  `  ON CONFLICT (merchant_id, key) DO NOTHING`,
  `  RETURNING id, lock_token, recovery_point, acquirer_result, request_payload, created_at`,
  `), audited AS (`,
  `  INSERT INTO idempotency_audit (merchant_id, key, operation, fingerprint, request_payload, outcome, answered_from)`,
  `  SELECT :merchant, ${key}, 'createCharge', :fingerprint, request_without_source(:payload), 'created', 'postgres' FROM inserted`,
  `)`,
  `SELECT id::text AS key_id, lock_token::text AS lock_token, recovery_point, iso8601(created_at) AS first_request_at`,
  `FROM inserted`,
].join(' ');

const authorize = [
  `INSERT INTO acquirer_authorizations (idempotency_key, authorization_id, kind, amount, currency, source, approved, decline_code)`,
  `VALUES ('idem_' || :key_id, 'auth_' || :key_id, 'charge', 1999, 'USD', 'tok_visa', true, NULL)`,
  `ON CONFLICT (idempotency_key) DO NOTHING`,
  `RETURNING authorization_id, approved, decline_code, amount, currency;`,
].join(' ');

const saveAuthorized = [
  `UPDATE idempotency_keys SET recovery_point = 'AUTHORIZED', acquirer_result = :acquirer_result, updated_at = now()`,
  `WHERE id = :key_id::bigint AND lock_token = :lock_token::bigint AND state = 'IN_PROGRESS';`,
].join(' ');

function record(withAcquirerResult: boolean): string {
  return [
    `WITH completed AS (`,
    `  UPDATE idempotency_keys`,
    `     SET state = 'COMPLETED', recovery_point = 'COMPLETED', locked_until = NULL,`,
    withAcquirerResult ? `         acquirer_result = :acquirer_result,` : '',
    `         response_status = 200, response_code = NULL, response_body = :response_body,`,
    `         request_payload = request_without_source(request_payload), completed_at = now(), updated_at = now()`,
    `   WHERE id = :key_id::bigint AND lock_token = :lock_token::bigint AND state = 'IN_PROGRESS'`,
    `  RETURNING id`,
    `), charge AS (`,
    `  INSERT INTO charges (id, merchant_id, idempotency_key_id, amount, currency, source, status, failure_code,`,
    `                       authorization_id, description, metadata, created_at)`,
    `  SELECT 'ch_' || :key_id, :merchant, completed.id, 1999, 'USD', 'tok_visa', 'SUCCEEDED', NULL,`,
    `         'auth_' || :key_id, NULL, NULL, now() FROM completed`,
    `  RETURNING id`,
    `), event AS (`,
    `  INSERT INTO outbox_events (event_type, aggregate_id, payload)`,
    `  SELECT 'charge.succeeded', charge.id, :event_payload FROM charge RETURNING id`,
    `)`,
    `SELECT count(*)::int AS events FROM event;`,
  ].join(' ');
}

export function pgbenchScript(shape: PgbenchShape): string {
  const lines = ['\\set k random(1, 1000000000000)'];
  if (shape === 'one transaction') lines.push('BEGIN;');
  lines.push(`${claim} \\gset`, authorize);
  if (shape === 'before') lines.push(saveAuthorized);
  lines.push(record(shape !== 'before'));
  if (shape === 'one transaction') lines.push('COMMIT;');
  return `${lines.join('\n')}\n`;
}

export function hasPgbench(): boolean {
  return spawnSync('sh', ['-c', 'command -v pgbench']).status === 0;
}

function percentile(sorted: readonly number[], fraction: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(fraction * sorted.length))] ?? Number.NaN;
}

export function runPgbench(
  databaseUrl: string,
  merchantId: string,
  shape: PgbenchShape,
  clients: number,
  seconds: number,
): PgbenchResult {
  const folder = mkdtempSync(path.join(os.tmpdir(), 'pgw-pgbench-'));
  try {
    const script = path.join(folder, 'charge.sql');
    writeFileSync(script, pgbenchScript(shape));
    const payload = JSON.stringify({ amount: 1999, currency: 'USD', source: 'tok_visa' });
    const variables = {
      merchant: merchantId,
      fingerprint: 'a'.repeat(64),
      payload,
      acquirer_result: JSON.stringify({ authorizationId: 'auth_x', approved: true, declineCode: null }),
      response_body: JSON.stringify({ id: 'ch_x', amount: 1999, currency: 'USD', status: 'SUCCEEDED' }),
      event_payload: JSON.stringify({ version: 1, chargeId: 'ch_x', merchantId, amount: 1999, currency: 'USD' }),
    };
    const args = ['-n', '-M', 'prepared', '-f', script, '-c', String(clients), '-j', String(Math.min(2, clients))];
    args.push('-T', String(seconds), '-l', `--log-prefix=${path.join(folder, 'log')}`);
    for (const [name, value] of Object.entries(variables)) args.push('-D', `${name}=${value}`);
    const result = spawnSync('pgbench', [...args, databaseUrl], { encoding: 'utf8', cwd: folder });
    const tps = result.stdout.match(/tps = ([0-9.]+)/);
    if (result.status !== 0 || tps === null) throw new Error(`pgbench failed:\n${result.stdout}${result.stderr}`);
    // Log lines: client_id transaction_no latency_us script_no epoch_s epoch_us.
    const latenciesUs = readdirSync(folder)
      .filter((name) => name.startsWith('log'))
      .flatMap((name) => readFileSync(path.join(folder, name), 'utf8').trim().split('\n'))
      .map((line) => Number(line.split(' ')[2]))
      .filter((value) => Number.isFinite(value))
      .sort((a, b) => a - b);
    return {
      perSecond: Math.round(Number(tps[1])),
      p50Ms: percentile(latenciesUs, 0.5) / 1_000,
      p99Ms: percentile(latenciesUs, 0.99) / 1_000,
    };
  } finally {
    rmSync(folder, { recursive: true, force: true });
  }
}

/**
 * The migration that keeps the card source on the charge only (db/migrations/*_source_stored_once.sql),
 * run on rows as the gateway wrote them before it: a database migrated up to the migration before,
 * filled with such rows, then migrated to the end. Completed keys and every audit row lose the
 * source (the fingerprint takes its place, in the canonical form the gateway now writes); a key in
 * flight or abandoned keeps it (recovery may need it); nothing else changes. From then on a CHECK
 * refuses a source in either place.
 */
import { spawnSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { cpSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it, inject } from 'vitest';
import { validateCreateChargeInput } from '../../src/charges/validation';
import { dbmateUrl } from '../../src/cli/migrate';
import { canonicalJson, fingerprint } from '../../src/idempotency/fingerprint';
import { adminQuery, withDatabase } from '../helpers/database';

const migrationsDirectory = path.resolve(import.meta.dirname, '..', '..', 'db', 'migrations');
const migration = readdirSync(migrationsDirectory).find((file) => file.endsWith('_source_stored_once.sql'))!;
const databaseName = `pgw_srcmig_${randomBytes(6).toString('hex')}`;
const databaseUrl = withDatabase(inject('databaseUrl'), databaseName);
const scratch = mkdtempSync(path.join(tmpdir(), 'source-migration-'));
let pool: pg.Pool;

/** dbmate up with the migrations the filter keeps (it creates the database the first time). */
function migrateWith(keep: (file: string) => boolean): void {
  const directory = mkdtempSync(path.join(scratch, 'migrations-'));
  for (const file of readdirSync(migrationsDirectory).filter(keep)) {
    cpSync(path.join(migrationsDirectory, file), path.join(directory, file));
  }
  const result = spawnSync(
    path.resolve(import.meta.dirname, '..', '..', 'node_modules', '.bin', 'dbmate'),
    ['--no-dump-schema', '--migrations-dir', directory, 'up'],
    { env: { ...process.env, DATABASE_URL: dbmateUrl(databaseUrl) }, encoding: 'utf8' },
  );
  if (result.status !== 0) throw new Error(`dbmate up failed: ${result.stdout}${result.stderr}`);
}

const input = { amount: 4_200, currency: 'EUR', source: 'tok_visa', metadata: { order: 'o-9' } };
const other = { ...input, amount: 4_201 };
const rawPayload = (value: typeof input) => canonicalJson(validateCreateChargeInput(value));
const keptPayload = (value: typeof input) => {
  const { source, ...rest } = validateCreateChargeInput(value);
  return canonicalJson({ ...rest, sourceFingerprint: createHash('sha256').update(source).digest('hex') });
};

beforeAll(async () => {
  migrateWith((file) => file < migration);
  pool = new pg.Pool({ connectionString: databaseUrl, max: 2 });
  const print = fingerprint('createCharge', validateCreateChargeInput(input));
  const otherPrint = fingerprint('createCharge', validateCreateChargeInput(other));
  // Rows as the gateway wrote them before: the raw request everywhere.
  await pool.query(`
    INSERT INTO merchants (id, name) VALUES ('mer_old', 'Old rows');
    INSERT INTO idempotency_keys (merchant_id, key, operation, fingerprint, request_payload, state, recovery_point,
                                  response_status, response_body, completed_at, updated_at)
    VALUES ('mer_old', 'done', 'createCharge', '${print}', '${rawPayload(input)}', 'COMPLETED', 'COMPLETED', 200, '{}',
            now(), '2026-01-01T00:00:00Z'),
           ('mer_old', 'refund', 'refundCharge', repeat('c', 64), '{"amount":null,"chargeId":"ch_old","reason":null}',
            'COMPLETED', 'COMPLETED', 200, '{}', now(), '2026-01-01T00:00:00Z');
    INSERT INTO idempotency_keys (merchant_id, key, operation, fingerprint, request_payload, state, recovery_point,
                                  acquirer_result, locked_until)
    VALUES ('mer_old', 'in-flight', 'createCharge', '${print}', '${rawPayload(input)}', 'IN_PROGRESS', 'AUTHORIZED',
            '{"authorizationId":"auth_old","approved":true,"declineCode":null}', now()),
           ('mer_old', 'abandoned', 'createCharge', '${print}', '${rawPayload(input)}', 'ABANDONED', 'STARTED', NULL, NULL);
    INSERT INTO charges (id, merchant_id, amount, currency, source, status, authorization_id, created_at)
    VALUES ('ch_old', 'mer_old', 4200, 'EUR', 'tok_visa', 'SUCCEEDED', 'auth_old', now());
    INSERT INTO idempotency_audit (merchant_id, key, operation, fingerprint, request_payload, outcome, answered_from)
    VALUES ('mer_old', 'done', 'createCharge', '${print}', '${rawPayload(input)}', 'created', 'postgres'),
           ('mer_old', 'done', 'createCharge', '${print}', '${rawPayload(input)}', 'replayed', 'redis'),
           ('mer_old', 'done', 'createCharge', '${otherPrint}', '${rawPayload(other)}', 'mismatch', 'postgres'),
           ('mer_old', 'refund', 'refundCharge', repeat('c', 64), '{"amount":null,"chargeId":"ch_old","reason":null}',
            'created', 'postgres');`);
  migrateWith(() => true);
});
afterAll(async () => {
  await pool?.end();
  await adminQuery(inject('databaseUrl'), `DROP DATABASE IF EXISTS ${databaseName} WITH (FORCE)`);
  rmSync(scratch, { recursive: true, force: true });
});

describe('the migration keeping the card source on the charge only', () => {
  it('replaces it by its fingerprint in completed keys and every audit row, and keeps it where recovery needs it', async () => {
    const keys = await pool.query<{ key: string; request_payload: string; updated_at: Date }>(
      'SELECT key, request_payload, updated_at FROM idempotency_keys ORDER BY key',
    );
    expect(Object.fromEntries(keys.rows.map((row) => [row.key, row.request_payload]))).toEqual({
      abandoned: rawPayload(input),
      done: keptPayload(input),
      'in-flight': rawPayload(input),
      refund: '{"amount":null,"chargeId":"ch_old","reason":null}',
    });
    // Retention counts from updated_at: the migration does not move it.
    expect(keys.rows.find((row) => row.key === 'done')?.updated_at.toISOString()).toBe('2026-01-01T00:00:00.000Z');
    const audit = await pool.query<{ outcome: string; fingerprint: string; request_payload: string }>(
      'SELECT outcome, fingerprint, request_payload FROM idempotency_audit ORDER BY id',
    );
    expect(audit.rows.map((row) => row.request_payload)).toEqual([
      keptPayload(input),
      keptPayload(input),
      keptPayload(other),
      '{"amount":null,"chargeId":"ch_old","reason":null}',
    ]);
    // The request fingerprint (over the raw input) is untouched.
    expect(audit.rows[0]!.fingerprint).toBe(fingerprint('createCharge', validateCreateChargeInput(input)));
    expect((await pool.query("SELECT source FROM charges WHERE id = 'ch_old'")).rows).toEqual([{ source: 'tok_visa' }]);
  });

  it('refuses a source from then on: in an audit row, and on a key that completes', async () => {
    await expect(
      pool.query(
        `INSERT INTO idempotency_audit (merchant_id, key, operation, fingerprint, request_payload, outcome, answered_from)
         VALUES ('mer_old', 'late', 'createCharge', repeat('a', 64), $1, 'created', 'postgres')`,
        [rawPayload(input)],
      ),
    ).rejects.toThrow(/idempotency_audit_no_source_check/);
    await expect(
      pool.query(
        `UPDATE idempotency_keys SET state = 'COMPLETED', recovery_point = 'COMPLETED', response_status = 200,
                response_body = '{}', completed_at = now() WHERE key = 'in-flight'`,
      ),
    ).rejects.toThrow(/idempotency_keys_completed_no_source_check/);
    const redacted = await pool.query<{ kept: string }>('SELECT request_without_source($1) AS kept', [
      rawPayload(input),
    ]);
    expect(redacted.rows[0]!.kept).toBe(keptPayload(input));
  });
});

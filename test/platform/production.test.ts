/**
 * The configuration we ship, run as it ships (docs/contract.md §8): `npm run build`, then
 * NODE_ENV=production. A production start never starts services and stops at once naming the
 * unreachable one; SIGTERM drains the compiled gateway: the request in flight completes, the
 * buffered audit rows are written, no relay claim is left, and it exits 0 within SHUTDOWN_GRACE_MS.
 */
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createMerchant } from '../../src/merchants/merchants';
import { openDatabase } from '../../src/platform/database';
import { startChildGateway, type ChildGateway } from '../../scripts/harness/child-gateway';
import { freePort } from '../../scripts/harness/redis';
import { ensureBuilt, repoRoot } from '../helpers/built';
import { createTestEnvironment, type TestEnvironment } from '../helpers/gateway';
import { createCharge } from '../helpers/http';
import { waitFor } from '../helpers/ledger';

let environment: TestEnvironment;
let apiKey: string;
const children: ChildGateway[] = [];

function productionEnv(overrides: Record<string, string> = {}): Record<string, string> {
  return environment.env({ NODE_ENV: 'production', LOG_LEVEL: 'info', ...overrides });
}

beforeAll(async () => {
  environment = await createTestEnvironment();
  const database = openDatabase({ ...environment.config(), databasePoolSizeMax: 1 });
  apiKey = (await createMerchant(database.prisma, 'Production merchant')).apiKey;
  await database.close();
  ensureBuilt();
}, 300_000);
afterAll(async () => {
  for (const child of children.splice(0)) await child.kill('SIGKILL');
  await environment?.cleanup();
});

/** `NODE_ENV=production npm start`, to its exit. */
function npmStart(env: Record<string, string>): Promise<{ code: number | null; output: string; ms: number }> {
  const started = Date.now();
  const child = spawn('npm', ['start'], { cwd: repoRoot, env: { ...process.env, ...env }, stdio: 'pipe' });
  let output = '';
  child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
  child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
  return new Promise((resolve) => child.once('exit', (code) => resolve({ code, output, ms: Date.now() - started })));
}

describe('NODE_ENV=production npm start', () => {
  it('exits non-zero at once naming DATABASE_URL when Postgres cannot be reached, and starts no services', async () => {
    const port = await freePort();
    const result = await npmStart(productionEnv({ DATABASE_URL: `postgresql://postgres@127.0.0.1:${port}/payments` }));
    expect(result.code).not.toBe(0);
    expect(result.output).toContain('DATABASE_URL');
    expect(result.output).not.toMatch(/docker compose|private Postgres|private Redis|apt-get/);
    expect(result.ms).toBeLessThan(30_000);
  });

  it('exits non-zero at once naming REDIS_URL when Redis cannot be reached', async () => {
    const port = await freePort();
    const result = await npmStart(productionEnv({ REDIS_URL: `redis://127.0.0.1:${port}` }));
    expect(result.code).not.toBe(0);
    expect(result.output).toContain('REDIS_URL');
    expect(result.output).not.toMatch(/docker compose|private Postgres|private Redis|apt-get/);
    expect(result.ms).toBeLessThan(30_000);
  });
});

describe('the built gateway under NODE_ENV=production, on SIGTERM', () => {
  it('finishes the request in flight (200), flushes the audit buffer, leaves no relay claim, exits 0 within SHUTDOWN_GRACE_MS', async () => {
    const shutdownGraceMs = 8_000;
    const gateway = await startChildGateway(
      productionEnv({
        ROLE: 'all',
        SHUTDOWN_GRACE_MS: String(shutdownGraceMs),
        // Long enough that the replays' audit rows are still buffered when SIGTERM comes.
        AUDIT_FLUSH_INTERVAL_MS: '60000',
      }),
      { built: true, readyTimeoutMs: 60_000 },
    );
    children.push(gateway);
    // As the image runs it: the Dockerfile's NODE_OPTIONS and MALLOC_ARENA_MAX.
    const environ = readFileSync(`/proc/${gateway.process.pid}/environ`, 'utf8').split('\0');
    expect(environ).toEqual(expect.arrayContaining(['NODE_OPTIONS=--max-old-space-size=512', 'MALLOC_ARENA_MAX=2']));
    const input = { amount: 4200, currency: 'USD', source: 'tok_visa' };
    expect((await createCharge(gateway.url, apiKey, 'prod-first', input)).status).toBe(200);
    for (let replay = 0; replay < 3; replay += 1) {
      const answer = await createCharge(gateway.url, apiKey, 'prod-first', input);
      expect(answer.headers.get('idempotent-replayed')).toBe('true');
    }

    const inFlight = createCharge(gateway.url, apiKey, 'prod-in-flight', { ...input, source: 'tok_slow' });
    await waitFor(
      async () =>
        (await environment.database.count("SELECT count(*) FROM idempotency_keys WHERE key = 'prod-in-flight'")) === 1,
      20_000,
      'the slow charge to take its key',
    );
    const signalled = Date.now();
    gateway.process.kill('SIGTERM');
    const answer = await inFlight;
    const exit = await gateway.exited;
    const stopMs = Date.now() - signalled;

    expect(answer.status).toBe(200);
    expect(answer.body.data?.createCharge).toMatchObject({ status: 'SUCCEEDED' });
    expect(exit, gateway.output()).toEqual({ code: 0, signal: null });
    expect(stopMs).toBeLessThan(shutdownGraceMs);
    // Every attempt at the first key, the three replays answered from Redis included.
    expect(
      await environment.database.count("SELECT count(*) FROM idempotency_audit WHERE key = 'prod-first'"),
    ).toBeGreaterThanOrEqual(4);
    expect(
      await environment.database.count(
        'SELECT count(*) FROM outbox_events WHERE published_at IS NULL AND claimed_until IS NOT NULL',
      ),
    ).toBe(0);
    expect(gateway.output()).not.toContain('did not stop cleanly');
  });
});

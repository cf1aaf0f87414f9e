/**
 * The README's commands, run as a person would: `npm run merchant:create` prints a key once,
 * and `npm start` migrates, prints the demo merchant's key and a curl, and serves charges.
 */
import { spawn, spawnSync } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestEnvironment, type TestEnvironment } from '../helpers/gateway';
import { createCharge } from '../helpers/http';
import { freePort } from '../../scripts/harness/redis';

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
let environment: TestEnvironment;

beforeAll(async () => {
  environment = await createTestEnvironment();
});
afterAll(async () => {
  await environment?.cleanup();
});

describe('npm run merchant:create', () => {
  it('prints {"id", "apiKey"} as JSON and stores only the key’s hash', async () => {
    const result = spawnSync('npm', ['run', '-s', 'merchant:create', '--', '--name', 'Acme Ltd', '--json'], {
      cwd: repoRoot,
      env: { ...process.env, ...environment.env() },
      encoding: 'utf8',
    });
    expect(result.status).toBe(0);
    const created = JSON.parse(result.stdout.trim()) as { id: string; apiKey: string };
    expect(created.id).toMatch(/^mer_/);
    expect(created.apiKey).toMatch(/^sk_/);
    const { rows } = await environment.database.pool.query('SELECT name, api_key_hash FROM merchants WHERE id = $1', [
      created.id,
    ]);
    expect(rows[0].name).toBe('Acme Ltd');
    expect(rows[0].api_key_hash).not.toContain(created.apiKey);
  });

  it('refuses a missing --name with a clear message', () => {
    const result = spawnSync('npm', ['run', '-s', 'merchant:create', '--', '--json'], {
      cwd: repoRoot,
      env: { ...process.env, ...environment.env() },
      encoding: 'utf8',
    });
    expect(result.status).not.toBe(0);
    expect(result.stderr).toContain('--name is required');
  });
});

describe('npm start', () => {
  it('migrates, prints the demo key and a curl, and serves a charge with that key, as the gateway role', async () => {
    const port = await freePort();
    const demoKey = 'sk_demo_0123456789abcdef';
    const child = spawn('npm', ['start'], {
      cwd: repoRoot,
      env: {
        ...process.env,
        ...environment.env({ PORT: String(port), LOG_LEVEL: 'info', DEMO_MERCHANT_API_KEY: demoKey }),
      },
      stdio: ['ignore', 'pipe', 'pipe'],
      detached: true,
    });
    let output = '';
    child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
    try {
      const deadline = Date.now() + 45_000;
      while (!output.includes('gateway listening') && Date.now() < deadline)
        await new Promise((r) => setTimeout(r, 200));
      expect(output).toContain(`API key: ${demoKey}`);
      expect(output).toContain('curl -s');
      const answer = await createCharge(`http://127.0.0.1:${port}`, demoKey, 'start-test-1', {
        amount: 1999,
        currency: 'USD',
        source: 'tok_visa',
      });
      expect(answer.status).toBe(200);
      expect(answer.body.data?.createCharge).toMatchObject({ status: 'SUCCEEDED' });
      // It migrated as the owner, but the gateway it runs connects as its least-privilege role.
      const { rows } = await environment.database.pool.query<{ user: string }>(
        `SELECT DISTINCT usename AS user FROM pg_stat_activity
          WHERE datname = $1 AND application_name LIKE 'payments-%'`,
        [environment.database.name],
      );
      expect(rows.map((row) => row.user)).toEqual(['payments_gateway']);
    } finally {
      if (child.pid !== undefined) process.kill(-child.pid, 'SIGTERM');
      await new Promise((resolve) => child.once('exit', resolve));
    }
  });
});

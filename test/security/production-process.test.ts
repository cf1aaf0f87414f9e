/**
 * What ships, started as it ships (`node dist/main.js`, NODE_ENV=production), over HTTP and its own
 * log: fault hooks are refused at start (FAULTS, FAULT_LEDGER_OUTAGE_MS), the test-only demo page
 * that could lose a response does not exist, and every wrong admin token is logged with the
 * client's address (never the token), then limited with a line of its own.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startChildGateway, type ChildGateway } from '../../scripts/harness/child-gateway';
import { ensureBuilt } from '../helpers/built';
import { createTestEnvironment, type TestEnvironment } from '../helpers/gateway';
import { waitFor } from '../helpers/ledger';

let environment: TestEnvironment;
const children: ChildGateway[] = [];
const adminToken = 'admin-token-for-the-production-process-test';

beforeAll(async () => {
  ensureBuilt();
  environment = await createTestEnvironment();
}, 180_000);
afterAll(async () => {
  await Promise.all(children.map(async (child) => child.kill('SIGKILL')));
  await environment?.cleanup();
});

const production = (overrides: Record<string, string> = {}) =>
  environment.env({ NODE_ENV: 'production', ROLE: 'api', LOG_LEVEL: 'info', ...overrides });

async function startBuilt(env: Record<string, string>): Promise<ChildGateway> {
  const child = await startChildGateway(env, { built: true, readyTimeoutMs: 60_000 });
  children.push(child);
  return child;
}

async function refusedStart(env: Record<string, string>): Promise<string> {
  try {
    await startBuilt(env);
  } catch (error) {
    return String(error);
  }
  throw new Error('the gateway started');
}

describe('the built gateway in production', () => {
  it('refuses to start with any fault hook, naming the variable', async () => {
    expect(await refusedStart(production({ FAULTS: 'drop_response' }))).toContain(
      'FAULTS: must be empty: fault injection is refused when NODE_ENV=production',
    );
    expect(await refusedStart(production({ FAULT_LEDGER_OUTAGE_MS: '10000' }))).toContain(
      'FAULT_LEDGER_OUTAGE_MS: must be 0',
    );
  }, 120_000);

  it('has no demo page, so no lose-the-response toggle, and logs each wrong admin token with the address', async () => {
    const gateway = await startBuilt(production({ ADMIN_TOKEN: adminToken, ADMIN_AUTH_FAILURES_PER_MINUTE: '2' }));
    expect((await fetch(`${gateway.url}/demo`)).status).toBe(404);
    expect((await fetch(`${gateway.url}/demo/charge`, { method: 'POST' })).status).toBe(404);

    const guess = async (token: string | undefined) =>
      fetch(`${gateway.url}/admin/graphql`, {
        method: 'POST',
        headers: {
          'content-type': 'application/json',
          ...(token === undefined ? {} : { authorization: `Bearer ${token}` }),
        },
        body: JSON.stringify({ query: '{ outboxStatus { backlog } }' }),
      });
    const statuses = [
      (await guess('guess-number-one-0123456789')).status,
      (await guess(undefined)).status,
      (await guess('guess-number-three-0123456789')).status,
      (await guess(adminToken)).status,
    ];
    expect(statuses).toEqual([401, 401, 429, 429]);

    const logLines = () =>
      gateway
        .output()
        .split('\n')
        .filter((line) => line.startsWith('{'))
        .map((line) => JSON.parse(line) as { msg: string; address?: string; tokenGiven?: boolean });
    const limitedLines = () =>
      logLines().filter((line) => line.msg.startsWith('admin authentication refused: too many failures'));
    // The answer can reach the test before the child's log line crosses its stdout pipe: wait for it.
    await waitFor(async () => limitedLines().length >= 2, 10_000, 'the log line of the last refused attempt');
    const failed = logLines().filter((line) => line.msg === 'admin authentication failed');
    expect(failed.map((line) => line.tokenGiven)).toEqual([true, false]);
    for (const line of failed) expect(line.address).toMatch(/127\.0\.0\.1/);
    expect(limitedLines()).toHaveLength(2);
    // The guesses themselves never reach the log.
    expect(gateway.output()).not.toContain('guess-number');
    expect(gateway.output()).not.toContain(adminToken);
  }, 120_000);
});

/**
 * What the person on call reads: every role's /metrics passes `promtool check metrics`, the four
 * signals move when they should, the alert rules and the Prometheus config pass promtool, and the
 * compose file validates.
 */
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestEnvironment, startTestGateway, type TestEnvironment, type TestGateway } from '../helpers/gateway';
import { createCharge } from '../helpers/http';
import { waitFor } from '../helpers/ledger';

let environment: TestEnvironment;
const gateways: TestGateway[] = [];

beforeAll(async () => {
  environment = await createTestEnvironment();
});
afterAll(async () => {
  for (const gateway of gateways) await gateway.stop();
  await environment?.cleanup();
});

async function scrape(gateway: TestGateway): Promise<string> {
  return (await fetch(`${gateway.url}/metrics`)).text();
}

function sample(text: string, name: string, labels = ''): number {
  const line = text.split('\n').find((candidate) => candidate.startsWith(`${name}{`) && candidate.includes(labels));
  return line === undefined ? Number.NaN : Number(line.split(' ').at(-1));
}

describe('metrics', () => {
  it.each(['api', 'relay', 'worker'])('the %s role serves metrics that pass promtool check metrics', async (role) => {
    const gateway = await startTestGateway(environment, { ROLE: role });
    const text = await scrape(gateway);
    await gateway.stop();
    const check = spawnSync('promtool', ['check', 'metrics'], { input: text, encoding: 'utf8' });
    expect(check.error, 'promtool is installed (.ci/run installs Debian’s prometheus package)').toBeUndefined();
    expect(`${check.stdout}${check.stderr}`.trim()).toBe('');
    expect(check.status).toBe(0);
  });

  it('moves the four signals: a 422 counts as mismatch, a retry as attempt 2, a stopped relay grows the lag', async () => {
    const gateway = await startTestGateway(environment, { ROLE: 'all' });
    gateways.push(gateway);
    const input = { amount: 100, currency: 'USD', source: 'tok_visa' };
    const before = await scrape(gateway);
    await createCharge(gateway.url, gateway.apiKey, 'signals-1', input);
    await createCharge(gateway.url, gateway.apiKey, 'signals-1', { ...input, amount: 101 });
    await createCharge(gateway.url, gateway.apiKey, 'signals-2', input, { headers: { 'idempotency-attempt': '2' } });
    await createCharge(gateway.url, gateway.apiKey, undefined, input);
    const after = await scrape(gateway);
    expect(sample(after, 'idempotency_requests_total', 'outcome="missing"')).toBe(
      sample(before, 'idempotency_requests_total', 'outcome="missing"') + 1,
    );
    expect(sample(after, 'idempotency_requests_total', 'outcome="mismatch"')).toBe(
      sample(before, 'idempotency_requests_total', 'outcome="mismatch"') + 1,
    );
    expect(sample(after, 'charge_request_attempts_total', 'attempt="2"')).toBe(
      sample(before, 'charge_request_attempts_total', 'attempt="2"') + 1,
    );
    await waitFor(
      async () => sample(await scrape(gateway), 'ledger_effects_applied_total') >= 2,
      30_000,
      'two effects',
    );
    expect(sample(await scrape(gateway), 'outbox_lag_seconds')).toBe(0);

    await gateway.relay?.stop();
    await createCharge(gateway.url, gateway.apiKey, 'signals-3', input);
    // The lag is read from Postgres at scrape time: it grows with the database's clock.
    await waitFor(async () => sample(await scrape(gateway), 'outbox_lag_seconds') >= 2, 20_000, 'the lag to reach 2 s');
    const stalled = await scrape(gateway);
    expect(sample(stalled, 'outbox_lag_seconds')).toBeGreaterThanOrEqual(2);
    expect(sample(stalled, 'outbox_backlog_events')).toBe(1);
  });
});

describe('alerting and deployment files', () => {
  it('alert rules and the Grafana dashboard name only metrics the gateway exports', async () => {
    const gateway = await startTestGateway(environment, { ROLE: 'all' });
    const exported = await scrape(gateway);
    await gateway.stop();
    const rules = readFileSync('ops/prometheus/alerts.yml', 'utf8');
    const dashboard = readFileSync('ops/grafana/payments-gateway.json', 'utf8');
    const ours = /^(idempotency_|charge_|outbox_|ledger_|inbox_|dead_letters|retry_budget|http_request|relay_)/;
    const named = new Set(
      [...`${rules}\n${dashboard}`.matchAll(/[a-z_]{4,}/g)].map((match) => match[0]).filter((name) => ours.test(name)),
    );
    expect(named.size).toBeGreaterThan(8);
    for (const name of named) expect(exported, name).toContain(`# TYPE ${name.replace(/_bucket$/, '')} `);
  });

  it('alert rules and the Prometheus config pass promtool', () => {
    const rules = spawnSync('promtool', ['check', 'rules', 'ops/prometheus/alerts.yml'], { encoding: 'utf8' });
    expect(rules.status, rules.stdout + rules.stderr).toBe(0);
    expect(rules.stdout).toContain('11 rules found');
    const config = spawnSync('promtool', ['check', 'config', 'ops/prometheus/prometheus.yml'], { encoding: 'utf8' });
    expect(config.status, config.stdout + config.stderr).toBe(0);
  });

  it('docker-compose.yml validates', () => {
    const plugin = spawnSync('docker', ['compose', 'version'], { encoding: 'utf8' });
    const command = plugin.status === 0 ? ['docker', 'compose'] : ['docker-compose'];
    const result = spawnSync(command[0]!, [...command.slice(1), '-f', 'docker-compose.yml', 'config', '-q'], {
      encoding: 'utf8',
    });
    expect(result.status, result.stdout + result.stderr).toBe(0);
  });
});

import { readFile } from 'node:fs/promises';
import { describe, expect, it } from 'vitest';
import { ConfigError, loadConfig, variableNames } from '../../src/config';
import { renderConfigurationDoc } from '../../scripts/configuration-doc';

describe('configuration', () => {
  it('has defaults that serve local use', () => {
    const config = loadConfig({});
    expect(config).toMatchObject({
      port: 4000,
      // The gateway connects as its least-privilege role; migrations as the owner.
      databaseUrl: 'postgresql://payments_gateway@127.0.0.1:5432/payments',
      migrationDatabaseUrl: 'postgresql://postgres@127.0.0.1:5432/payments',
      redisUrl: 'redis://127.0.0.1:6379',
      role: 'all',
      isProduction: false,
      metricsPort: 0,
      redisKeyPrefix: undefined,
      queuePrefix: undefined,
    });
    expect(Object.isFrozen(config)).toBe(true);
  });

  it.each([
    ['PORT', 'eighty'],
    ['PORT', '70000'],
    ['DATABASE_URL', 'mysql://localhost/x'],
    ['REDIS_URL', 'not a url'],
    ['ROLE', 'cron'],
    ['LOG_LEVEL', 'loud'],
    ['ADMIN_TOKEN', 'short'],
    ['IDEMPOTENCY_LEASE_MS', '100'],
    ['FAULTS', 'crash_everywhere'],
    ['RETRY_BUDGET_DEPOSIT_PER_SUCCESS', 'half'],
    ['ACQUIRER_SIMULATED_IN_PRODUCTION', 'yes'],
    ['REDIS_CLUSTER_NODES', 'localhost'],
  ])('stops on a bad %s, naming the variable', (variable, value) => {
    expect(() => loadConfig({ [variable]: value })).toThrowError(ConfigError);
    expect(() => loadConfig({ [variable]: value })).toThrowError(new RegExp(`^${variable}:`));
  });

  it('names every bad variable at once, and never echoes a secret', () => {
    const error = catchConfigError({ PORT: 'x', ROLE: 'cron', ADMIN_TOKEN: 'hunter2' });
    expect(error.problems.map((problem) => problem.variable)).toEqual(['PORT', 'ROLE', 'ADMIN_TOKEN']);
    expect(error.message).not.toContain('hunter2');
  });

  it('treats an empty variable as unset', () => {
    expect(loadConfig({ PORT: '', ACQUIRER: '' })).toMatchObject({ port: 4000, acquirer: undefined });
  });

  it('refuses a lease no longer than the acquirer timeout', () => {
    expect(() => loadConfig({ IDEMPOTENCY_LEASE_MS: '2000', ACQUIRER_TIMEOUT_MS: '2000' })).toThrowError(
      /IDEMPOTENCY_LEASE_MS/,
    );
  });

  it('refuses fault injection in production', () => {
    expect(() => loadConfig({ ...production, FAULTS: 'crash_after_acquirer' })).toThrowError(/^FAULTS:/);
    expect(() => loadConfig({ ...production, FAULT_LEDGER_OUTAGE_MS: '10' })).toThrowError(/^FAULT_LEDGER_OUTAGE_MS:/);
  });

  it('requires the acquirer and the answer secret in production, and serves metrics apart', () => {
    expect(catchConfigError({ NODE_ENV: 'production' }).problems.map((problem) => problem.variable)).toEqual([
      'ACQUIRER',
      'REDIS_ANSWER_SECRET',
    ]);
    expect(loadConfig(production)).toMatchObject({ isProduction: true, metricsPort: 9464 });
  });

  it('reads every variable named in the contract (docs/contract.md §8)', async () => {
    const contract = await readFile(new URL('../../docs/contract.md', import.meta.url), 'utf8');
    const section = contract.slice(contract.indexOf('## 8.'), contract.indexOf('## 9.'));
    const named = new Set([...section.matchAll(/`([A-Z][A-Z0-9_]+)`/g)].map((match) => match[1]));
    expect([...named].filter((name) => !variableNames.includes(name!))).toEqual([]);
  });

  it('docs/configuration.md is generated from the schema (run `npm run config:docs` after changing it)', async () => {
    expect(await readFile(new URL('../../docs/configuration.md', import.meta.url), 'utf8')).toBe(
      renderConfigurationDoc(),
    );
  });
});

const production = {
  NODE_ENV: 'production',
  ACQUIRER: 'simulated',
  ACQUIRER_SIMULATED_IN_PRODUCTION: 'true',
  REDIS_ANSWER_SECRET: 'a-production-secret-of-32-characters!',
};

function catchConfigError(env: Record<string, string>): ConfigError {
  try {
    loadConfig(env);
  } catch (error) {
    if (error instanceof ConfigError) return error;
    throw error;
  }
  throw new Error('the configuration was accepted');
}

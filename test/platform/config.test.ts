import { describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from '../../src/config';

describe('configuration', () => {
  it('has defaults that serve local use', () => {
    const config = loadConfig({});
    expect(config).toMatchObject({
      port: 4000,
      databaseUrl: 'postgresql://postgres@127.0.0.1:5432/payments',
      redisUrl: 'redis://127.0.0.1:6379',
      role: 'all',
      isProduction: false,
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
  ])('stops on a bad %s, naming the variable', (variable, value) => {
    expect(() => loadConfig({ [variable]: value })).toThrowError(ConfigError);
    expect(() => loadConfig({ [variable]: value })).toThrowError(new RegExp(`^${variable}:`));
  });

  it('refuses a lease no longer than the acquirer timeout', () => {
    expect(() => loadConfig({ IDEMPOTENCY_LEASE_MS: '2000', ACQUIRER_TIMEOUT_MS: '2000' })).toThrowError(
      /IDEMPOTENCY_LEASE_MS/,
    );
  });

  it('refuses fault injection in production', () => {
    expect(() => loadConfig({ NODE_ENV: 'production', FAULTS: 'crash_after_acquirer' })).toThrowError(/FAULTS/);
  });
});

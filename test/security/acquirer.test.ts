/**
 * The acquirer by configuration (docs/security.md): production refuses to start without ACQUIRER,
 * refuses the simulated acquirer without ACQUIRER_SIMULATED_IN_PRODUCTION=true, and warns at every
 * start when it runs it. The refusal is a real start of src/main.ts in a child process.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import pino from 'pino';
import { startChildGateway } from '../../scripts/harness/child-gateway';
import { loadConfig } from '../../src/config';
import { startGateway } from '../../src/gateway';
import { createTestEnvironment, type TestEnvironment } from '../helpers/gateway';

let environment: TestEnvironment;

beforeAll(async () => {
  environment = await createTestEnvironment();
});
afterAll(async () => {
  await environment?.cleanup();
});

const production = (overrides: Record<string, string>) =>
  environment.env({ NODE_ENV: 'production', ROLE: 'api', LOG_LEVEL: 'info', ...overrides });

async function startFailure(env: Record<string, string>): Promise<string> {
  try {
    const child = await startChildGateway(env);
    await child.kill('SIGKILL');
  } catch (error) {
    return String(error);
  }
  throw new Error('the gateway started');
}

describe('in production', () => {
  it('refuses to start with the simulated acquirer unless ACQUIRER_SIMULATED_IN_PRODUCTION=true', async () => {
    const output = await startFailure(production({ ACQUIRER_SIMULATED_IN_PRODUCTION: 'false' }));
    expect(output).toContain('Configuration error: ACQUIRER_SIMULATED_IN_PRODUCTION');
  });

  it('refuses to start without ACQUIRER', () => {
    expect(() => loadConfig(production({ ACQUIRER: '' }))).toThrow(/^ACQUIRER: must be set in production/);
  });

  it('starts with the explicit flag, and warns that the acquirer is simulated', async () => {
    const lines: string[] = [];
    const logger = pino({ level: 'warn' }, { write: (line: string) => lines.push(line) });
    const gateway = await startGateway(loadConfig(production({})), logger);
    try {
      expect(lines.join('')).toContain('SIMULATED acquirer is configured in production');
    } finally {
      await gateway.stop();
    }
  });
});

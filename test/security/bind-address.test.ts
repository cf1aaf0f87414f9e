/**
 * Outside production the gateway serves Sandbox, introspection and the demo page that hands out
 * the demo key, so it listens on 127.0.0.1 unless HOST says otherwise; production listens on every
 * interface. Checked by connecting to this machine's own non-loopback address.
 */
import { networkInterfaces } from 'node:os';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestEnvironment, startTestGateway, type TestEnvironment, type TestGateway } from '../helpers/gateway';

let environment: TestEnvironment;
const gateways: TestGateway[] = [];

beforeAll(async () => {
  environment = await createTestEnvironment();
});
afterAll(async () => {
  await Promise.all(gateways.map(async (gateway) => gateway.stop()));
  await environment?.cleanup();
});

/** This machine's first non-loopback IPv4 address: the one another machine would reach. */
function outsideAddress(): string {
  const address = Object.values(networkInterfaces())
    .flat()
    .find((entry) => entry !== undefined && entry.family === 'IPv4' && !entry.internal)?.address;
  if (address === undefined) throw new Error('this machine has no non-loopback IPv4 address to test with');
  return address;
}

async function healthzFromOutside(gateway: TestGateway): Promise<number | string> {
  try {
    return (await fetch(`http://${outsideAddress()}:${gateway.port}/healthz`)).status;
  } catch (error) {
    return String((error as { cause?: { code?: string } }).cause?.code ?? error);
  }
}

async function start(overrides: Record<string, string>): Promise<TestGateway> {
  const gateway = await startTestGateway(environment, { ROLE: 'api', ...overrides });
  gateways.push(gateway);
  return gateway;
}

describe('the HTTP listener', () => {
  it('outside production answers only on the loopback address by default', async () => {
    const gateway = await start({ NODE_ENV: 'development' });
    expect((await fetch(`${gateway.url}/healthz`)).status).toBe(200);
    expect(await healthzFromOutside(gateway)).toBe('ECONNREFUSED');
  });

  it('outside production answers on every interface when HOST=0.0.0.0', async () => {
    expect(await healthzFromOutside(await start({ NODE_ENV: 'development', HOST: '0.0.0.0' }))).toBe(200);
  });

  it('in production answers on every interface by default', async () => {
    expect(await healthzFromOutside(await start({ NODE_ENV: 'production' }))).toBe(200);
  });
});

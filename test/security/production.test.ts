/**
 * Safe production defaults (docs/security.md), against a gateway started with NODE_ENV=production:
 * no introspection, suggestions, landing page or demo page; /metrics only on its own port; the
 * demo merchant does not authenticate even though its row exists.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ensureDemoMerchant } from '../../src/merchants/merchants';
import { createTestEnvironment, startTestGateway, type TestEnvironment, type TestGateway } from '../helpers/gateway';
import { postGraphql } from '../helpers/http';

let environment: TestEnvironment;
let gateway: TestGateway;

beforeAll(async () => {
  environment = await createTestEnvironment();
  gateway = await startTestGateway(environment, { ROLE: 'api', NODE_ENV: 'production' });
});
afterAll(async () => {
  await gateway?.stop();
  await environment?.cleanup();
});

describe('in production', () => {
  it('serves /metrics on its own port only, not on the API port', async () => {
    expect((await fetch(`${gateway.url}/metrics`)).status).toBe(404);
    const metrics = await fetch(gateway.metricsUrl);
    expect(metrics.status).toBe(200);
    expect(await metrics.text()).toContain('idempotency_requests_total');
    expect(new URL(gateway.metricsUrl).port).not.toBe(String(gateway.port));
  });

  it('answers introspection with 400 and names no field in "Did you mean" errors', async () => {
    const introspection = await postGraphql(gateway.url, { query: '{ __schema { types { name } } }' });
    expect(introspection.status).toBe(400);
    const typo = await postGraphql(
      gateway.url,
      { query: '{ charge(id: "x") { amout } }' },
      { authorization: `Bearer ${gateway.apiKey}` },
    );
    expect(typo.status).toBe(400);
    expect(typo.text).not.toMatch(/Did you mean/i);
    expect(typo.text).not.toContain('"amount"');
  });

  it('shows no landing page (no CDN script) and no demo page', async () => {
    const landing = await fetch(`${gateway.url}/graphql`, { headers: { accept: 'text/html' } });
    expect(await landing.text()).not.toMatch(/<script/i);
    expect((await fetch(`${gateway.url}/demo`)).status).toBe(404);
  });

  it('answers 401 to the demo merchant key even when its row exists', async () => {
    const demo = await ensureDemoMerchant(gateway.database.prisma, 'demo-key-0123456789abcdef');
    expect(demo.merchant.id).toBe('mer_demo');
    const answer = await postGraphql(
      gateway.url,
      { query: '{ charges(first: 1) { edges { cursor } } }' },
      { authorization: `Bearer ${demo.apiKey}` },
    );
    expect(answer.status).toBe(401);
    const own = await postGraphql(
      gateway.url,
      { query: '{ charges(first: 1) { edges { cursor } } }' },
      { authorization: `Bearer ${gateway.apiKey}` },
    );
    expect(own.status).toBe(200);
  });
});

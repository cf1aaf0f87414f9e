/**
 * Redis keys are namespaced per deployment (docs/contract.md §3): with REDIS_KEY_PREFIX unset,
 * the namespace is derived from the database's identity, so two deployments on two databases that
 * share one Redis, with the same merchant id and the same Idempotency-Key, never replay each
 * other's answers. Both test databases are copies of one migrated template, so their
 * `deployment_identity` ids are equal: the database name is what tells such copies apart.
 */
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { demoMerchantId, ensureDemoMerchant } from '../../src/merchants/merchants';
import { namespaceFor } from '../../src/platform/deployment-namespace';
import { startGateway, type Gateway } from '../../src/gateway';
import { createLogger } from '../../src/platform/logger';
import { deleteKeysWithPrefix } from '../../scripts/harness/redis';
import { createTestEnvironment, type TestEnvironment } from '../helpers/gateway';
import { createCharge } from '../helpers/http';

const apiKey = 'sk_test_namespace_shared_key_0123456789';
const noPrefix = { REDIS_KEY_PREFIX: '', ROLE: 'api' };

let environmentA: TestEnvironment;
let environmentB: TestEnvironment;
let gatewayA: Gateway | undefined;
let gatewayB: Gateway | undefined;
let redis: Redis;
const derivedPrefixes = new Set<string>();

async function start(environment: TestEnvironment): Promise<Gateway> {
  const config = environment.config(noPrefix);
  expect(config.redisKeyPrefix).toBeUndefined();
  const gateway = await startGateway(config, createLogger('silent'));
  derivedPrefixes.add(gateway.redisKeyPrefix);
  await ensureDemoMerchant(gateway.database.prisma, apiKey);
  return gateway;
}

beforeAll(async () => {
  environmentA = await createTestEnvironment();
  environmentB = await createTestEnvironment();
  redis = new Redis(environmentA.redisUrl);
  gatewayA = await start(environmentA);
  gatewayB = await start(environmentB);
});
afterAll(async () => {
  await gatewayA?.stop();
  await gatewayB?.stop();
  redis?.disconnect();
  for (const prefix of derivedPrefixes)
    await deleteKeysWithPrefix(environmentA.redisUrl, prefix).catch(() => undefined);
  await environmentA?.cleanup();
  await environmentB?.cleanup();
});

const chargeCount = (environment: TestEnvironment) =>
  environment.database.count('SELECT count(*) FROM charges WHERE merchant_id = $1', [demoMerchantId]);

describe('two deployments sharing one Redis, with no REDIS_KEY_PREFIX set', () => {
  it('derive different namespaces from their databases, the same one on every start', async () => {
    const prefixA = gatewayA!.redisKeyPrefix;
    const prefixB = gatewayB!.redisKeyPrefix;
    expect(prefixA).toMatch(/^pgw-[0-9a-f]{16}$/);
    expect(prefixB).toMatch(/^pgw-[0-9a-f]{16}$/);
    expect(prefixA).not.toBe(prefixB);

    // The namespace is the database's identity: the row the migration made, and the database's name.
    const { rows } = await environmentA.database.pool.query<{ id: string }>(
      'SELECT id::text AS id FROM deployment_identity',
    );
    expect(prefixA).toBe(namespaceFor(rows[0]!.id, environmentA.database.name));

    // A restart of the same deployment finds the same namespace (its Redis answers stay valid).
    await gatewayA!.stop();
    gatewayA = await start(environmentA);
    expect(gatewayA.redisKeyPrefix).toBe(prefixA);
  });

  it('never replays one deployment’s answer in the other: same merchant id, same key, same body', async () => {
    const key = `shared-key-${Date.now()}`;
    const input = { amount: 4200, currency: 'USD', source: 'tok_visa' };

    const first = await createCharge(gatewayA!.url, apiKey, key, input);
    expect(first.status).toBe(200);
    expect(first.headers.get('idempotent-replayed')).toBe('false');
    // A's answer is in the shared Redis, under A's namespace only.
    expect(await redis.exists(`${gatewayA!.redisKeyPrefix}:idem:{${demoMerchantId}}:${key}`)).toBe(1);

    const other = await createCharge(gatewayB!.url, apiKey, key, input);
    expect(other.status).toBe(200);
    expect(other.headers.get('idempotent-replayed')).toBe('false');
    expect(other.body.data?.createCharge?.id).not.toBe(first.body.data?.createCharge?.id);
    expect(await chargeCount(environmentA)).toBe(1);
    expect(await chargeCount(environmentB)).toBe(1);

    // Another body under the same key in B is B's own first use of it, not a 422 from A's answer.
    const otherKey = `shared-key-2-${Date.now()}`;
    expect((await createCharge(gatewayA!.url, apiKey, otherKey, input)).status).toBe(200);
    const differentBody = await createCharge(gatewayB!.url, apiKey, otherKey, { ...input, amount: 4300 });
    expect(differentBody.status).toBe(200);
    expect(differentBody.body.data?.createCharge?.amount).toBe(4300);

    // Each deployment still replays its own answer.
    const replayA = await createCharge(gatewayA!.url, apiKey, key, input);
    expect(replayA.headers.get('idempotent-replayed')).toBe('true');
    expect(replayA.body.data?.createCharge?.id).toBe(first.body.data?.createCharge?.id);
    const replayB = await createCharge(gatewayB!.url, apiKey, key, input);
    expect(replayB.headers.get('idempotent-replayed')).toBe('true');
    expect(replayB.body.data?.createCharge?.id).toBe(other.body.data?.createCharge?.id);
    expect(await chargeCount(environmentA)).toBe(2);
    expect(await chargeCount(environmentB)).toBe(2);
  });
});

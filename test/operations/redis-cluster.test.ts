/**
 * Scale-out on Redis Cluster: the relay, the worker and the api run against a private
 * three-node cluster (started here from redis-server binaries, torn down after), and each event
 * is still applied once. Every key has a hash tag, so BullMQ's scripts and ours stay on one slot.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { insertChargeEvents, insertMerchant } from '../helpers/events';
import { createTestEnvironment, startTestGateway, type TestEnvironment, type TestGateway } from '../helpers/gateway';
import { createCharge } from '../helpers/http';
import { expectLedgerConsistent, waitForLedgerToCatchUp } from '../helpers/ledger';
import { startPrivateCluster, type PrivateCluster } from '../helpers/redis-cluster';

let cluster: PrivateCluster;
let environment: TestEnvironment;
const gateways: TestGateway[] = [];

beforeAll(async () => {
  cluster = await startPrivateCluster();
  environment = await createTestEnvironment();
});
afterAll(async () => {
  for (const gateway of gateways) await gateway.stop();
  await cluster?.stop();
  await environment?.cleanup();
});

describe('on a three-node Redis Cluster', () => {
  it('charges once per key and applies each event once through two relays and two workers', async () => {
    const env = { REDIS_CLUSTER_NODES: cluster.nodes, RELAY_RATE_PER_SECOND: '0' };
    const api = await startTestGateway(environment, { ...env, ROLE: 'api' });
    gateways.push(api);
    for (const role of ['relay', 'relay', 'worker', 'worker'])
      gateways.push(await startTestGateway(environment, { ...env, ROLE: role }));

    const input = { amount: 900, currency: 'EUR', source: 'tok_visa' };
    const first = await createCharge(api.url, api.apiKey, 'cluster-1', input);
    const replay = await createCharge(api.url, api.apiKey, 'cluster-1', input);
    expect(first.status).toBe(200);
    expect(replay.headers.get('idempotent-replayed')).toBe('true');
    const reused = await createCharge(api.url, api.apiKey, 'cluster-1', { ...input, amount: 1 });
    expect(reused.status).toBe(422);

    const merchantId = await insertMerchant(environment.database);
    await insertChargeEvents(environment.database, merchantId, 500);
    await waitForLedgerToCatchUp(environment.database, 60_000);
    expect(await environment.database.count('SELECT count(*) FROM ledger_transactions')).toBe(501);
    await expectLedgerConsistent(environment.database);
  }, 120_000);
});

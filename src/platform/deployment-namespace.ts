/**
 * The deployment's Redis namespace (docs/contract.md §3): `REDIS_KEY_PREFIX` when it is set,
 * otherwise derived from the database's identity, so two deployments sharing one Redis never read
 * each other's answers, rate limits or queues.
 *
 * The identity is the random id the migrations put in `deployment_identity` plus the database's
 * name: the id keeps a deployment's namespace through failover, upgrades and dump/restore, and the
 * name tells apart copies of one database on the same server (CREATE DATABASE … TEMPLATE copies
 * the id). Both are readable by a least-privilege role (a SELECT on that table, and
 * current_database()), unlike the cluster's system identifier, which also changes on pg_upgrade.
 * The queues' prefix follows the namespace unless `QUEUE_PREFIX` is set.
 */
import { createHash } from 'node:crypto';
import pg from 'pg';
import type { Config } from '../config';

/** A config whose Redis namespace is known: what every part of a running gateway reads. */
export type NamespacedConfig = Omit<Config, 'redisKeyPrefix' | 'queuePrefix'> & {
  readonly redisKeyPrefix: string;
  readonly queuePrefix: string;
};

export class DeploymentIdentityError extends Error {
  constructor(detail: string, options?: { cause?: unknown }) {
    super(`REDIS_KEY_PREFIX is unset and the database's identity cannot be read: ${detail}`, options);
    this.name = 'DeploymentIdentityError';
  }
}

// 16 hex characters (64 bits) of the hash: collisions between deployments sharing a Redis are
// out of reach, and the prefix stays short, since it is in every Redis key.
const namespaceHexLength = 16;

/** The prefix a database identity gives; the same identity always gives the same prefix. */
export function namespaceFor(identityId: string, databaseName: string): string {
  const digest = createHash('sha256').update(`${identityId}\u0000${databaseName}`).digest('hex');
  return `pgw-${digest.slice(0, namespaceHexLength)}`;
}

/** Reads the identity over one short connection, with the pool's connect and statement bounds. */
async function readNamespace(config: Config): Promise<string> {
  const client = new pg.Client({
    connectionString: config.databaseUrl,
    connectionTimeoutMillis: config.databasePoolConnectTimeoutMs,
    statement_timeout: config.databaseStatementTimeoutMs,
    application_name: 'payments-gateway-start',
  });
  client.on('error', () => undefined);
  try {
    await client.connect();
    const { rows } = await client.query<{ id: string; database_name: string }>(
      'SELECT id::text AS id, current_database() AS database_name FROM deployment_identity',
    );
    const row = rows[0];
    if (row === undefined) throw new DeploymentIdentityError('deployment_identity has no row (run the migrations)');
    return namespaceFor(row.id, row.database_name);
  } catch (error) {
    if (error instanceof DeploymentIdentityError) throw error;
    throw new DeploymentIdentityError(error instanceof Error ? error.message : String(error), { cause: error });
  } finally {
    await client.end().catch(() => undefined);
  }
}

/** The config with its namespace: the one set, or the one derived from the database. */
export async function withDeploymentNamespace(config: Config): Promise<NamespacedConfig> {
  const redisKeyPrefix = config.redisKeyPrefix ?? (await readNamespace(config));
  return Object.freeze({ ...config, redisKeyPrefix, queuePrefix: config.queuePrefix ?? `{${redisKeyPrefix}}` });
}

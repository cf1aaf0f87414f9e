/**
 * The production start's first step (docs/contract.md §8): Postgres and Redis must answer before
 * anything starts, and when one does not, the process stops at once with the variable to fix.
 * Outside production `npm start` makes the services exist instead, and a gateway whose Redis is
 * down still starts (Postgres decides). Production also refuses a database role that could
 * TRUNCATE the ledger or change its rows (src/platform/database-role.ts).
 */
import pg from 'pg';
import type { Config } from '../config';
import { gatewayRoleName, ledgerPrivileges, type RolePrivileges } from './database-role';
import { closeRedis, openHotPathRedis } from './redis';

export class UnreachableServiceError extends Error {
  constructor(
    readonly variable: 'DATABASE_URL' | 'REDIS_URL' | 'REDIS_CLUSTER_NODES',
    detail: string,
  ) {
    super(`${variable}: ${detail}`);
    this.name = 'UnreachableServiceError';
  }
}

type ReachabilityConfig = Pick<Config, 'databaseUrl' | 'redisUrl' | 'redisClusterNodes' | 'redisCommandTimeoutMs'>;

/** Throws UnreachableServiceError naming the first service that does not answer within timeoutMs. */
export async function assertServicesReachable(config: ReachabilityConfig, timeoutMs: number): Promise<void> {
  await assertPostgresReachable(config.databaseUrl, timeoutMs);
  await assertRedisReachable(config, timeoutMs);
}

async function assertPostgresReachable(databaseUrl: string, timeoutMs: number): Promise<void> {
  const client = new pg.Client({ connectionString: databaseUrl, connectionTimeoutMillis: timeoutMs });
  client.on('error', () => undefined);
  let privileges: RolePrivileges;
  try {
    await client.connect();
    privileges = await ledgerPrivileges(client);
  } catch (error) {
    throw new UnreachableServiceError(
      'DATABASE_URL',
      `Postgres at ${where(databaseUrl)} cannot be reached (${reason(error)})`,
    );
  } finally {
    await client.end().catch(() => undefined);
  }
  // The ledger's append-only triggers hold only against a role that cannot TRUNCATE the tables or
  // switch the triggers off: production never runs as the owner or a superuser.
  if (privileges.privileged) {
    throw new UnreachableServiceError(
      'DATABASE_URL',
      `the role "${privileges.user}" can TRUNCATE, UPDATE or DELETE ledger rows; connect as ${gatewayRoleName}, ` +
        'the least-privilege role the migrations create (docs/security.md)',
    );
  }
}

async function assertRedisReachable(config: ReachabilityConfig, timeoutMs: number): Promise<void> {
  const redis = openHotPathRedis({ ...config, redisCommandTimeoutMs: timeoutMs });
  const variable = config.redisClusterNodes.length > 0 ? 'REDIS_CLUSTER_NODES' : 'REDIS_URL';
  try {
    // The hot-path client has no offline queue: a PING before it connects fails at once, so wait.
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no answer in ${timeoutMs} ms`)), timeoutMs);
      redis.once('ready', () => {
        clearTimeout(timer);
        resolve();
      });
      // A refused or unresolvable address fails the first attempt: no need to wait for more.
      redis.once('error', (error) => {
        clearTimeout(timer);
        reject(error);
      });
    });
    await redis.ping();
  } catch (error) {
    const target = variable === 'REDIS_URL' ? where(config.redisUrl) : 'the configured cluster nodes';
    throw new UnreachableServiceError(variable, `Redis at ${target} cannot be reached (${reason(error)})`);
  } finally {
    await closeRedis(redis);
  }
}

/** Host, port and database of a URL, never its credentials. */
function where(url: string): string {
  try {
    const parsed = new URL(url);
    return `${parsed.hostname}:${parsed.port || '(default port)'}${parsed.pathname === '/' ? '' : parsed.pathname}`;
  } catch {
    return 'an unparsable URL';
  }
}

function reason(error: unknown): string {
  if (error instanceof Error) return (error as NodeJS.ErrnoException).code ?? error.message;
  return String(error);
}

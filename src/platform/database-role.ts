/**
 * The gateway's least-privilege database role (migration 20261205110000_gateway_role.sql,
 * docs/security.md "The database role"). Two connections, two URLs:
 *   - DATABASE_URL: what the api, relay and worker connect with, as `payments_gateway`, which can
 *     read every table and write only what the money path writes (no TRUNCATE, no UPDATE or
 *     DELETE of a ledger, inbox or audit row);
 *   - MIGRATION_DATABASE_URL: the owner, for migrations only (the migrate command, `npm start`'s
 *     setup). It defaults to DATABASE_URL's server and database as `postgres` with no password,
 *     which is what a local trust-authenticated Postgres wants.
 * The migrate command also gives the role DATABASE_URL's password, when it has one, so one
 * secret sets both ends (docker-compose.yml).
 */
import { createHash, createHmac, pbkdf2Sync, randomBytes } from 'node:crypto';
import pg from 'pg';

export const gatewayRoleName = 'payments_gateway';
const localOwnerName = 'postgres';

/** `url` with another user and password (none when `password` is undefined). */
function withCredentials(url: string, user: string, password: string | undefined): string {
  const parsed = new URL(url);
  parsed.username = user;
  parsed.password = password ?? '';
  return parsed.toString();
}

/** The gateway role's URL on the server and database of `url` (tests and scripts derive it). */
export function gatewayRoleUrl(url: string, password?: string): string {
  return withCredentials(url, gatewayRoleName, password);
}

/** MIGRATION_DATABASE_URL's default: DATABASE_URL's server and database, as the local owner. */
export function localOwnerUrl(databaseUrl: string): string {
  return withCredentials(databaseUrl, localOwnerName, undefined);
}

/** `url` pointed at the host and port of `server` (npm start may have started Postgres elsewhere). */
export function onServerOf(url: string, server: string): string {
  const parsed = new URL(url);
  const target = new URL(server);
  parsed.hostname = target.hostname;
  parsed.port = target.port;
  return parsed.toString();
}

/**
 * A SCRAM-SHA-256 verifier for `password` (RFC 5802, as PostgreSQL stores it), so the clear
 * password never reaches the server's statement log: what psql's \password sends too.
 */
export function scramVerifier(password: string, salt = randomBytes(16), iterations = 4_096): string {
  const salted = pbkdf2Sync(password.normalize('NFKC'), salt, iterations, 32, 'sha256');
  const clientKey = createHmac('sha256', salted).update('Client Key').digest();
  const storedKey = createHash('sha256').update(clientKey).digest();
  const serverKey = createHmac('sha256', salted).update('Server Key').digest();
  return `SCRAM-SHA-256$${iterations}:${salt.toString('base64')}$${storedKey.toString('base64')}:${serverKey.toString('base64')}`;
}

/**
 * Run as the owner after the migrations: when DATABASE_URL names the gateway role with a password,
 * the role gets that password. Returns true when it set one.
 */
export async function setGatewayRolePassword(ownerUrl: string, databaseUrl: string): Promise<boolean> {
  const gateway = new URL(databaseUrl);
  if (decodeURIComponent(gateway.username) !== gatewayRoleName || gateway.password === '') return false;
  const client = new pg.Client({ connectionString: ownerUrl });
  await client.connect();
  try {
    const verifier = client.escapeLiteral(scramVerifier(decodeURIComponent(gateway.password)));
    await client.query(`ALTER ROLE ${gatewayRoleName} PASSWORD ${verifier}`);
    return true;
  } finally {
    await client.end();
  }
}

export interface RolePrivileges {
  readonly user: string;
  /** Superuser, or owner of the ledger: it can TRUNCATE the ledger or switch its triggers off. */
  readonly privileged: boolean;
}

/**
 * What the connected role may do to the ledger: a production start refuses a role that could
 * TRUNCATE it or UPDATE or DELETE its rows (src/platform/reachability.ts).
 */
export async function ledgerPrivileges(client: pg.Client): Promise<RolePrivileges> {
  const { rows } = await client.query<{ user: string; privileged: boolean }>(
    `SELECT current_user AS user,
            bool_or(has_table_privilege(t, 'TRUNCATE') OR has_table_privilege(t, 'UPDATE')
                    OR has_table_privilege(t, 'DELETE')) AS privileged
       FROM unnest(ARRAY['ledger_transactions', 'ledger_entries', 'inbox_events']) AS t
      WHERE to_regclass(t) IS NOT NULL`,
  );
  return { user: rows[0]?.user ?? '?', privileged: rows[0]?.privileged === true };
}

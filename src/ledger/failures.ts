/**
 * What a ledger job's failure means, and so what the worker does with the job
 * (docs/contract.md §5, docs/event-path.md "What a failure does"):
 *
 * - `infrastructure`: Postgres or Redis could not be reached or could not take the write (refused
 *   or reset connection, admin shutdown 57P01, a read-only failover 25006, timeouts, too many
 *   connections). Not the event's fault: the job is held, with no attempt and no budget token
 *   spent, however long it lasts.
 * - `order`: a refund whose charge is not posted yet. Held the same way, until the charge is
 *   posted or shown missing.
 * - `final`: the event itself is wrong (poison). Dead-lettered at once.
 * - `transient`: anything else (a bug, a deadlock). Spends an attempt and a budget token; after
 *   the last attempt, dead-lettered.
 */
import { GatewayError } from '../errors';

export type FailureKind = 'infrastructure' | 'order' | 'final' | 'transient';

export interface ClassifiedFailure {
  readonly kind: FailureKind;
  readonly code: string;
  readonly message: string;
}

// SQLSTATE classes and codes that say the database is unreachable or cannot take writes now.
// 08: connection exception; 53: insufficient resources (53300 too many connections);
// 57P01..57P05: admin or crash shutdown, cannot connect now, idle session timeout;
// 57014: statement timeout; 55P03: lock timeout; 25006: read-only transaction (a failover left
// us on a standby); 58: system error (I/O).
const infrastructureCodePattern = /^(08|53|57P0|58)/;
const infrastructureCodes = new Set(['57014', '55P03', '25006']);

// What Prisma's pg adapter reports when the socket is gone (driver-adapter-utils error kinds).
const infrastructureKinds = new Set([
  'DatabaseNotReachable',
  'ConnectionClosed',
  'SocketTimeout',
  'TooManyConnections',
  'TlsConnectionError',
]);

// Node, pg and ioredis errors with no SQLSTATE: socket errors, pool and command timeouts, a
// client used after its connection ended, ioredis giving up while Redis is away.
const infrastructureMessagePattern =
  /ECONNREFUSED|ECONNRESET|ETIMEDOUT|EPIPE|EHOSTUNREACH|ENETUNREACH|ENOTFOUND|EAI_AGAIN|Connection terminated|connection timeout|timeout exceeded when trying to connect|Can't reach database server|Client has encountered a connection error|Connection is closed|Stream isn't writeable|max retries per request|Command timed out|LOADING|READONLY|CLUSTERDOWN|TRYAGAIN|the database system is (shutting down|starting up|in recovery mode)|terminating connection due to administrator command/i;

export function classifyFailure(error: unknown): ClassifiedFailure {
  const message = errorMessage(error);
  if (error instanceof GatewayError) {
    if (error.code === 'LEDGER_CHARGE_NOT_POSTED') return { kind: 'order', code: error.code, message };
    if (error.code === 'LEDGER_UNAVAILABLE') return { kind: 'infrastructure', code: error.code, message };
    return { kind: error.transient ? 'transient' : 'final', code: error.code, message };
  }
  if (isInfrastructureError(error)) return { kind: 'infrastructure', code: 'LEDGER_UNAVAILABLE', message };
  return { kind: 'transient', code: 'LEDGER_APPLY_FAILED', message: `unexpected: ${message}` };
}

/** True when the error says Postgres or Redis is unreachable or cannot take the work now. */
export function isInfrastructureError(error: unknown): boolean {
  let current: unknown = error;
  for (let depth = 0; depth < 6 && current !== null && typeof current === 'object'; depth += 1) {
    const record = current as Record<string, unknown>;
    const code = typeof record.code === 'string' ? record.code : undefined;
    if (code !== undefined && /^[0-9A-Z]{5}$/.test(code) && !code.startsWith('P')) {
      if (infrastructureCodePattern.test(code) || infrastructureCodes.has(code)) return true;
    }
    if (typeof record.kind === 'string' && infrastructureKinds.has(record.kind)) return true;
    if (typeof record.message === 'string' && infrastructureMessagePattern.test(record.message)) return true;
    const meta = record.meta as Record<string, unknown> | undefined;
    current = meta?.driverAdapterError ?? record.cause;
  }
  return typeof error === 'string' && infrastructureMessagePattern.test(error);
}

function errorMessage(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

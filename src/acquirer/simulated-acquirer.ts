/**
 * The simulated acquirer that ships with the gateway. It keeps its authorizations in its own
 * table (`acquirer_authorizations`), through its own connection pool, as a separate system
 * would: it survives a killed gateway process and answers a repeated key with the first answer.
 *
 * Test card tokens choose its behaviour:
 *   tok_visa, tok_mastercard, tok_amex   approve
 *   tok_chargeDeclined                   decline: card_declined
 *   tok_insufficientFunds                decline: insufficient_funds
 *   tok_expiredCard                      decline: expired_card
 *   tok_timeout                          transient failure, nothing recorded
 *   tok_slow                             approve after `slowMs` (records, then answers)
 *   any other tok_…                      decline: card_not_supported
 * Refunds (kind 'refund') are approved.
 */
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { AcquirerUnavailableError, type Acquirer, type Authorization, type AuthorizationRequest } from './acquirer';

const declineCodes: Readonly<Record<string, string>> = {
  tok_chargeDeclined: 'card_declined',
  tok_insufficientFunds: 'insufficient_funds',
  tok_expiredCard: 'expired_card',
};
const approvingTokens = new Set(['tok_visa', 'tok_mastercard', 'tok_amex', 'tok_slow']);

// Named prepared statements: Postgres parses and plans each once per connection of the pool.
const recordStatement = `
  INSERT INTO acquirer_authorizations (idempotency_key, authorization_id, kind, amount, currency, source, approved, decline_code)
  VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
  ON CONFLICT (idempotency_key) DO NOTHING
  RETURNING authorization_id, approved, decline_code, amount, currency`;
const findStatement =
  'SELECT authorization_id, approved, decline_code, amount, currency FROM acquirer_authorizations WHERE idempotency_key = $1';

export interface SimulatedAcquirerOptions {
  readonly databaseUrl: string;
  /** The gateway gives up on a call after this long (transient failure). */
  readonly timeoutMs: number;
  /** How long `tok_slow` takes. */
  readonly slowMs: number;
}

interface AuthorizationRow {
  authorization_id: string;
  approved: boolean;
  decline_code: string | null;
  amount: number;
  currency: string;
}

export class SimulatedAcquirer implements Acquirer {
  private readonly pool: pg.Pool;

  constructor(private readonly options: SimulatedAcquirerOptions) {
    // Its own small pool: the acquirer is "another system" and must not starve the gateway's.
    this.pool = new pg.Pool({
      connectionString: options.databaseUrl,
      max: 4,
      application_name: 'simulated-acquirer',
      // The gateway gives up on a call after timeoutMs; a statement or lock wait that outlives it
      // would only hold a connection (and row locks) nobody waits for. Passed explicitly because
      // pg's defaults are "wait forever".
      statement_timeout: options.timeoutMs,
      lock_timeout: options.timeoutMs,
      connectionTimeoutMillis: options.timeoutMs,
    });
    this.pool.on('error', () => undefined);
  }

  async authorize(request: AuthorizationRequest): Promise<Authorization> {
    if (request.kind === 'charge' && request.source === 'tok_timeout') {
      throw new AcquirerUnavailableError('acquirer timed out (tok_timeout)');
    }
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () => reject(new AcquirerUnavailableError(`acquirer did not answer within ${this.options.timeoutMs} ms`)),
        this.options.timeoutMs,
      );
    });
    try {
      return await Promise.race([this.record(request), timeout]);
    } catch (error) {
      if (error instanceof AcquirerUnavailableError || error instanceof AcquirerInvariantError) throw error;
      throw new AcquirerUnavailableError(`acquirer failed: ${error instanceof Error ? error.message : String(error)}`);
    } finally {
      clearTimeout(timer);
    }
  }

  async findAuthorization(idempotencyKey: string): Promise<Authorization | null> {
    const { rows } = await this.pool.query<AuthorizationRow>({
      name: 'acquirer_find',
      text: findStatement,
      values: [idempotencyKey],
    });
    const row = rows[0];
    return row === undefined ? null : toAuthorization(row);
  }

  async close(): Promise<void> {
    await this.pool.end().catch(() => undefined);
  }

  private async record(request: AuthorizationRequest): Promise<Authorization> {
    if (request.source === 'tok_slow') await new Promise((resolve) => setTimeout(resolve, this.options.slowMs));
    const declineCode = decide(request);
    const authorizationId = `${request.kind === 'charge' ? 'auth' : 'rfnd'}_${randomBytes(10).toString('hex')}`;
    // ON CONFLICT DO NOTHING waits for a concurrent insert of the same key, then yields; the
    // SELECT that follows (a new statement, a new snapshot) reads the winner.
    const inserted = await this.pool.query<AuthorizationRow>({
      name: 'acquirer_record',
      text: recordStatement,
      values: [
        request.idempotencyKey,
        authorizationId,
        request.kind,
        request.amount,
        request.currency,
        request.source,
        declineCode === null,
        declineCode,
      ],
    });
    const row =
      inserted.rows[0] ??
      (
        await this.pool.query<AuthorizationRow>({
          name: 'acquirer_find',
          text: findStatement,
          values: [request.idempotencyKey],
        })
      ).rows[0];
    if (row === undefined) throw new AcquirerUnavailableError('acquirer lost an authorization it had just recorded');
    if (row.amount !== request.amount || row.currency.trim() !== request.currency) {
      // The gateway derives the key from a row with a fixed fingerprint: this cannot happen.
      throw new AcquirerInvariantError(`acquirer key ${request.idempotencyKey} reused with another amount`);
    }
    return toAuthorization(row);
  }
}

class AcquirerInvariantError extends Error {
  constructor(message: string) {
    super(`invariant violated: ${message}`);
    this.name = 'AcquirerInvariantError';
  }
}

function decide(request: AuthorizationRequest): string | null {
  if (request.kind === 'refund') return null;
  const declineCode = declineCodes[request.source];
  if (declineCode !== undefined) return declineCode;
  return approvingTokens.has(request.source) ? null : 'card_not_supported';
}

function toAuthorization(row: AuthorizationRow): Authorization {
  return { authorizationId: row.authorization_id, approved: row.approved, declineCode: row.decline_code };
}

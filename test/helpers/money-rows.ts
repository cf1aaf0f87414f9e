/**
 * How many rows moved money under one Idempotency-Key: what a test counts to show a key charged
 * or refunded exactly once, and that the acquirer authorized it once.
 */
import type { TestDatabase } from './database';

export function chargesForKey(database: TestDatabase, key: string): Promise<number> {
  return database.count(
    'SELECT count(*) FROM charges c JOIN idempotency_keys k ON k.id = c.idempotency_key_id WHERE k.key = $1',
    [key],
  );
}

export function refundsForKey(database: TestDatabase, key: string): Promise<number> {
  return database.count(
    'SELECT count(*) FROM refunds r JOIN idempotency_keys k ON k.id = r.idempotency_key_id WHERE k.key = $1',
    [key],
  );
}

/** The acquirer's records under the key's derived acquirer key (`idem_<row id>`). */
export function authorizationsForKey(database: TestDatabase, key: string): Promise<number> {
  return database.count(
    "SELECT count(*) FROM acquirer_authorizations a JOIN idempotency_keys k ON a.idempotency_key = 'idem_' || k.id WHERE k.key = $1",
    [key],
  );
}

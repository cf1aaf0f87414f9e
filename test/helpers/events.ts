/**
 * Charges and their outbox events written straight into a test database, thousands at a time,
 * in the exact shape the money path writes them (src/charges/record-charge.ts).
 */
import { randomBytes } from 'node:crypto';
import type { TestDatabase } from './database';

export async function insertMerchant(database: Pick<TestDatabase, 'pool'>, name = 'Event merchant'): Promise<string> {
  const id = `mer_${randomBytes(10).toString('hex')}`;
  await database.pool.query('INSERT INTO merchants (id, name, api_key_hash) VALUES ($1, $2, $3)', [
    id,
    name,
    randomBytes(32).toString('hex'),
  ]);
  return id;
}

/** Inserts `count` succeeded charges with their charge.succeeded events; returns the first event id. */
export async function insertChargeEvents(
  database: Pick<TestDatabase, 'pool'>,
  merchantId: string,
  count: number,
): Promise<void> {
  const batch = randomBytes(4).toString('hex');
  await database.pool.query(
    `WITH charges AS (
       INSERT INTO charges (id, merchant_id, amount, currency, source, status, authorization_id, created_at)
       SELECT 'ch_' || $2 || '_' || n, $1, 100 + n % 900, CASE WHEN n % 5 = 0 THEN 'JPY' ELSE 'EUR' END, 'tok_visa',
              'SUCCEEDED', 'auth_' || $2 || '_' || n, now()
         FROM generate_series(1, $3) AS n
       RETURNING id, merchant_id, amount, currency, authorization_id, created_at
     )
     INSERT INTO outbox_events (event_type, aggregate_id, payload)
     SELECT 'charge.succeeded', id,
            json_build_object('version', 1, 'chargeId', id, 'merchantId', merchant_id, 'amount', amount,
                              'currency', currency, 'authorizationId', authorization_id, 'failureCode', NULL,
                              'createdAt', iso8601(created_at))::text
       FROM charges ORDER BY id`,
    [merchantId, batch, count],
  );
}

export interface StoredOutboxEvent {
  id: string;
  event_uid: string;
  event_type: 'charge.succeeded';
  payload: string;
}

export async function outboxEvents(database: TestDatabase): Promise<StoredOutboxEvent[]> {
  const { rows } = await database.pool.query<StoredOutboxEvent>(
    'SELECT id::text, event_uid::text, event_type, payload FROM outbox_events ORDER BY id',
  );
  return rows;
}

/** The job data the relay would publish for an outbox event. */
export function jobDataFor(event: StoredOutboxEvent, payload = event.payload) {
  return { eventId: event.id, eventUid: event.event_uid, type: event.event_type, payload };
}

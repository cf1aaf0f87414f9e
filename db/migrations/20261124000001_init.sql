-- migrate:up

-- Timestamps leave the database as ISO 8601, UTC, millisecond precision: the one format that
-- stored responses are written in, so that a replay is byte-identical to the first answer.
CREATE FUNCTION iso8601(ts timestamptz) RETURNS text LANGUAGE sql IMMUTABLE PARALLEL SAFE AS
$$ SELECT to_char(ts AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"') $$;

-- Merchants. An API key is shown once, at creation; only its SHA-256 is kept.
CREATE TABLE merchants (
  id            text PRIMARY KEY,
  name          text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
  api_key_hash  text UNIQUE CHECK (api_key_hash ~ '^[0-9a-f]{64}$'),
  created_at    timestamptz(3) NOT NULL DEFAULT now()
);

-- One row per (merchant, client key): the truth behind the Redis hot path.
-- state IN_PROGRESS carries a lease (locked_until, lock_token); recovery_point says where a
-- resumed request continues. COMPLETED rows hold the stored response, byte for byte, as text.
CREATE TABLE idempotency_keys (
  id               bigserial PRIMARY KEY,
  merchant_id      text NOT NULL REFERENCES merchants (id),
  key              text NOT NULL CHECK (length(key) BETWEEN 1 AND 255),
  operation        text NOT NULL CHECK (operation IN ('createCharge', 'refundCharge')),
  fingerprint      text NOT NULL CHECK (fingerprint ~ '^[0-9a-f]{64}$'),
  request_payload  text NOT NULL,
  state            text NOT NULL DEFAULT 'IN_PROGRESS'
                   CHECK (state IN ('IN_PROGRESS', 'COMPLETED', 'ABANDONED')),
  recovery_point   text NOT NULL DEFAULT 'STARTED'
                   CHECK (recovery_point IN ('STARTED', 'AUTHORIZED', 'COMPLETED')),
  locked_until     timestamptz(3),
  lock_token       bigint NOT NULL DEFAULT 1 CHECK (lock_token >= 1),
  acquirer_result  text,
  response_status  integer,
  response_code    text,
  response_body    text,
  created_at       timestamptz(3) NOT NULL DEFAULT now(),
  updated_at       timestamptz(3) NOT NULL DEFAULT now(),
  completed_at     timestamptz(3),
  UNIQUE (merchant_id, key),
  CHECK ((state = 'COMPLETED') = (recovery_point = 'COMPLETED')),
  CHECK (state <> 'COMPLETED' OR (response_status IS NOT NULL AND response_body IS NOT NULL AND completed_at IS NOT NULL)),
  CHECK (recovery_point <> 'AUTHORIZED' OR acquirer_result IS NOT NULL)
);
-- The completer scans expired leases; retention scans old finished rows.
CREATE INDEX idempotency_keys_in_progress_idx ON idempotency_keys (locked_until) WHERE state = 'IN_PROGRESS';
CREATE INDEX idempotency_keys_finished_idx ON idempotency_keys (updated_at) WHERE state <> 'IN_PROGRESS';

-- Append-only record of every keyed attempt, kept for disputes. Never updated, never deleted.
CREATE TABLE idempotency_audit (
  id               bigserial PRIMARY KEY,
  merchant_id      text NOT NULL,
  key              text NOT NULL,
  operation        text NOT NULL,
  fingerprint      text NOT NULL,
  request_payload  text NOT NULL,
  outcome          text NOT NULL CHECK (outcome IN ('created', 'resumed', 'replayed', 'in_progress', 'mismatch', 'released')),
  answered_from    text NOT NULL CHECK (answered_from IN ('postgres', 'redis')),
  created_at       timestamptz(3) NOT NULL DEFAULT now()
);
CREATE INDEX idempotency_audit_key_idx ON idempotency_audit (merchant_id, key);

CREATE FUNCTION forbid_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION '% is append-only', TG_TABLE_NAME;
END $$;
CREATE TRIGGER idempotency_audit_append_only BEFORE UPDATE OR DELETE ON idempotency_audit
  FOR EACH ROW EXECUTE FUNCTION forbid_change();

-- Charges. Amounts are integer minor units; the same bounds hold for every currency.
CREATE TABLE charges (
  id                  text PRIMARY KEY,
  merchant_id         text NOT NULL REFERENCES merchants (id),
  idempotency_key_id  bigint UNIQUE REFERENCES idempotency_keys (id) ON DELETE SET NULL,
  amount              integer NOT NULL CHECK (amount BETWEEN 1 AND 99999999),
  currency            char(3) NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
  source              text NOT NULL,
  status              text NOT NULL CHECK (status IN ('SUCCEEDED', 'FAILED')),
  failure_code        text,
  authorization_id    text,
  description         text CHECK (length(description) <= 500),
  metadata            text,
  amount_refunded     integer NOT NULL DEFAULT 0,
  amount_reserved     integer NOT NULL DEFAULT 0,
  created_at          timestamptz(3) NOT NULL,
  CHECK ((status = 'SUCCEEDED') = (authorization_id IS NOT NULL)),
  CHECK ((status = 'FAILED') = (failure_code IS NOT NULL)),
  CHECK (amount_refunded >= 0 AND amount_reserved >= 0 AND amount_refunded + amount_reserved <= amount),
  CHECK (status = 'SUCCEEDED' OR amount_refunded + amount_reserved = 0)
);
CREATE INDEX charges_merchant_created_idx ON charges (merchant_id, created_at DESC, id DESC);

-- The transactional outbox: written in the same statement or transaction as the charge.
CREATE TABLE outbox_events (
  id              bigserial PRIMARY KEY,
  event_type      text NOT NULL CHECK (event_type IN ('charge.succeeded', 'charge.failed', 'refund.succeeded')),
  aggregate_id    text NOT NULL,
  payload         text NOT NULL,
  created_at      timestamptz(3) NOT NULL DEFAULT now(),
  claimed_until   timestamptz(3),
  published_at    timestamptz(3)
);
CREATE INDEX outbox_events_unpublished_idx ON outbox_events (id) WHERE published_at IS NULL;
CREATE UNIQUE INDEX outbox_events_one_per_charge_idx ON outbox_events (aggregate_id)
  WHERE event_type IN ('charge.succeeded', 'charge.failed');

-- Wake relays when an event commits (delivered at commit, once per statement).
CREATE FUNCTION notify_outbox() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  PERFORM pg_notify('outbox_events', '');
  RETURN NULL;
END $$;
CREATE TRIGGER outbox_events_notify AFTER INSERT ON outbox_events
  FOR EACH STATEMENT EXECUTE FUNCTION notify_outbox();

-- The simulated acquirer's own table. The gateway never writes it; only src/acquirer does,
-- as if it were a separate system that survives our crashes.
CREATE TABLE acquirer_authorizations (
  idempotency_key   text PRIMARY KEY,
  authorization_id  text NOT NULL UNIQUE,
  kind              text NOT NULL CHECK (kind IN ('charge', 'refund')),
  amount            integer NOT NULL CHECK (amount > 0),
  currency          char(3) NOT NULL,
  source            text NOT NULL,
  approved          boolean NOT NULL,
  decline_code      text,
  created_at        timestamptz(3) NOT NULL DEFAULT now(),
  CHECK (approved = (decline_code IS NULL))
);

-- migrate:down
DROP TABLE acquirer_authorizations;
DROP TRIGGER outbox_events_notify ON outbox_events;
DROP FUNCTION notify_outbox();
DROP TABLE outbox_events;
DROP TABLE charges;
DROP TABLE idempotency_audit;
DROP FUNCTION forbid_change();
DROP TABLE idempotency_keys;
DROP TABLE merchants;
DROP FUNCTION iso8601(timestamptz);

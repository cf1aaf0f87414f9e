-- migrate:up

-- Refunds pass through one more recovery point: RESERVED (the charge's amount is held for this
-- refund before the acquirer is called).
ALTER TABLE idempotency_keys DROP CONSTRAINT idempotency_keys_recovery_point_check;
ALTER TABLE idempotency_keys ADD CONSTRAINT idempotency_keys_recovery_point_check
  CHECK (recovery_point IN ('STARTED', 'RESERVED', 'AUTHORIZED', 'COMPLETED'));

CREATE TABLE refunds (
  id                  text PRIMARY KEY,
  charge_id           text NOT NULL REFERENCES charges (id),
  merchant_id         text NOT NULL REFERENCES merchants (id),
  idempotency_key_id  bigint UNIQUE REFERENCES idempotency_keys (id) ON DELETE SET NULL,
  amount              integer NOT NULL CHECK (amount BETWEEN 1 AND 99999999),
  currency            char(3) NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
  status              text NOT NULL CHECK (status IN ('SUCCEEDED', 'FAILED')),
  failure_code        text,
  authorization_id    text,
  reason              text CHECK (length(reason) <= 500),
  created_at          timestamptz(3) NOT NULL,
  CHECK ((status = 'SUCCEEDED') = (authorization_id IS NOT NULL))
);
CREATE INDEX refunds_charge_idx ON refunds (charge_id);

-- The consumer's inbox: one row per (consumer, event) it has applied. The unique key is what
-- makes an effect happen once, whatever the queue delivers.
CREATE TABLE inbox_events (
  consumer      text NOT NULL,
  event_id      bigint NOT NULL,
  processed_at  timestamptz(3) NOT NULL DEFAULT now(),
  PRIMARY KEY (consumer, event_id)
);

-- Double-entry ledger. An entry's amount is signed minor units: debit positive, credit negative.
-- Every transaction's entries sum to zero per currency (checked at commit by a deferred trigger).
CREATE TABLE ledger_accounts (
  id           text PRIMARY KEY,
  kind         text NOT NULL CHECK (kind IN ('acquirer_receivable', 'merchant_balance')),
  merchant_id  text REFERENCES merchants (id),
  CHECK ((kind = 'merchant_balance') = (merchant_id IS NOT NULL))
);
INSERT INTO ledger_accounts (id, kind) VALUES ('acquirer_receivable', 'acquirer_receivable');

CREATE TABLE ledger_transactions (
  id          bigserial PRIMARY KEY,
  event_id    bigint NOT NULL UNIQUE,
  event_type  text NOT NULL CHECK (event_type IN ('charge.succeeded', 'refund.succeeded')),
  charge_id   text NOT NULL REFERENCES charges (id),
  refund_id   text UNIQUE REFERENCES refunds (id),
  created_at  timestamptz(3) NOT NULL DEFAULT now(),
  CHECK ((event_type = 'refund.succeeded') = (refund_id IS NOT NULL))
);
-- One posting per charge: a second one is a bug the database refuses.
CREATE UNIQUE INDEX ledger_transactions_one_per_charge_idx ON ledger_transactions (charge_id)
  WHERE event_type = 'charge.succeeded';

CREATE TABLE ledger_entries (
  id              bigserial PRIMARY KEY,
  transaction_id  bigint NOT NULL REFERENCES ledger_transactions (id),
  account_id      text NOT NULL REFERENCES ledger_accounts (id),
  currency        char(3) NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
  amount          bigint NOT NULL CHECK (amount <> 0 AND abs(amount) <= 99999999)
);
CREATE INDEX ledger_entries_transaction_idx ON ledger_entries (transaction_id);
CREATE INDEX ledger_entries_account_idx ON ledger_entries (account_id);

CREATE FUNCTION ledger_transaction_balanced() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
  unbalanced record;
BEGIN
  SELECT currency, sum(amount) AS total INTO unbalanced
    FROM ledger_entries WHERE transaction_id = NEW.transaction_id
   GROUP BY currency HAVING sum(amount) <> 0 LIMIT 1;
  IF FOUND THEN
    RAISE EXCEPTION 'ledger transaction % does not balance in %: %', NEW.transaction_id, unbalanced.currency, unbalanced.total
      USING ERRCODE = 'check_violation';
  END IF;
  RETURN NULL;
END $$;
CREATE CONSTRAINT TRIGGER ledger_entries_balanced AFTER INSERT ON ledger_entries
  DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION ledger_transaction_balanced();

-- The ledger is append-only: corrections are new transactions.
CREATE TRIGGER ledger_entries_append_only BEFORE UPDATE OR DELETE ON ledger_entries
  FOR EACH ROW EXECUTE FUNCTION forbid_change();
CREATE TRIGGER ledger_transactions_append_only BEFORE UPDATE OR DELETE ON ledger_transactions
  FOR EACH ROW EXECUTE FUNCTION forbid_change();

-- Jobs that could not be applied: a final error at once, a transient one after N attempts.
CREATE TABLE dead_letters (
  id              bigserial PRIMARY KEY,
  queue           text NOT NULL,
  job_id          text NOT NULL UNIQUE,
  event_id        bigint NOT NULL,
  payload         text NOT NULL,
  error_code      text NOT NULL,
  error_message   text NOT NULL,
  attempts        integer NOT NULL CHECK (attempts >= 1),
  created_at      timestamptz(3) NOT NULL DEFAULT now(),
  replayed_at     timestamptz(3),
  replay_job_id   text
);
CREATE INDEX dead_letters_unreplayed_idx ON dead_letters (id) WHERE replayed_at IS NULL;

-- migrate:down
DROP TABLE dead_letters;
DROP TABLE ledger_entries;
DROP FUNCTION ledger_transaction_balanced();
DROP TABLE ledger_transactions;
DROP TABLE ledger_accounts;
DROP TABLE inbox_events;
DROP TABLE refunds;
ALTER TABLE idempotency_keys DROP CONSTRAINT idempotency_keys_recovery_point_check;
ALTER TABLE idempotency_keys ADD CONSTRAINT idempotency_keys_recovery_point_check
  CHECK (recovery_point IN ('STARTED', 'AUTHORIZED', 'COMPLETED'));

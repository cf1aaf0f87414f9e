-- migrate:up

-- What retention leaves of a purged key (docs/idempotency.md, "Tombstones"): enough to answer a
-- late retry 422 IDEMPOTENCY_KEY_EXPIRED instead of charging it a second time. Kept for
-- IDEMPOTENCY_TOMBSTONE_DAYS, then deleted by the same purge.
CREATE TABLE idempotency_tombstones (
  merchant_id       text NOT NULL,
  key               text NOT NULL CHECK (length(key) BETWEEN 1 AND 255),
  operation         text NOT NULL CHECK (operation IN ('createCharge', 'refundCharge')),
  fingerprint       text NOT NULL CHECK (fingerprint ~ '^[0-9a-f]{64}$'),
  first_request_at  timestamptz(3) NOT NULL,
  purged_at         timestamptz(3) NOT NULL DEFAULT now(),
  PRIMARY KEY (merchant_id, key)
);
CREATE INDEX idempotency_tombstones_purged_idx ON idempotency_tombstones (purged_at);

-- A late retry that met a tombstone is audited like every other attempt.
ALTER TABLE idempotency_audit DROP CONSTRAINT idempotency_audit_outcome_check;
ALTER TABLE idempotency_audit ADD CONSTRAINT idempotency_audit_outcome_check
  CHECK (outcome IN ('created', 'resumed', 'replayed', 'in_progress', 'mismatch', 'released', 'expired'));

-- migrate:down
ALTER TABLE idempotency_audit DROP CONSTRAINT idempotency_audit_outcome_check;
ALTER TABLE idempotency_audit ADD CONSTRAINT idempotency_audit_outcome_check
  CHECK (outcome IN ('created', 'resumed', 'replayed', 'in_progress', 'mismatch', 'released'));
DROP TABLE idempotency_tombstones;

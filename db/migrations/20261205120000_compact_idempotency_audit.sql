-- migrate:up

-- Audit rows of attempts answered from Redis are compact (docs/idempotency.md, "Audit"): a replay
-- or a 409 carries the same request as the key's first attempt, whose row holds the payload, so
-- its own row keeps only the key, the fingerprint, the outcome and the time. A row keeps a
-- payload when it is the first request ('created') or when its request differs from the first
-- ('mismatch'): that is what a dispute needs to see.
ALTER TABLE idempotency_audit ALTER COLUMN request_payload DROP NOT NULL;
ALTER TABLE idempotency_audit ADD CONSTRAINT idempotency_audit_payload_kept_check
  CHECK (request_payload IS NOT NULL OR outcome NOT IN ('created', 'mismatch'));

-- migrate:down
ALTER TABLE idempotency_audit DROP CONSTRAINT idempotency_audit_payload_kept_check;
-- The table is append-only: lift its trigger for the one UPDATE that gives every compact row back
-- the payload of its key's first attempt (the same request: same fingerprint).
ALTER TABLE idempotency_audit DISABLE TRIGGER idempotency_audit_append_only;
UPDATE idempotency_audit a
   SET request_payload = coalesce(
         (SELECT f.request_payload FROM idempotency_audit f
           WHERE f.merchant_id = a.merchant_id AND f.key = a.key AND f.fingerprint = a.fingerprint
             AND f.request_payload IS NOT NULL
           ORDER BY f.id LIMIT 1),
         '{}')
 WHERE a.request_payload IS NULL;
ALTER TABLE idempotency_audit ENABLE TRIGGER idempotency_audit_append_only;
ALTER TABLE idempotency_audit ALTER COLUMN request_payload SET NOT NULL;

-- migrate:up

-- The card source is stored once, on the charge (docs/security.md, "Audit and data"). Rows kept
-- for good elsewhere hold a fingerprint of it instead: SHA-256 of the source, as
-- "sourceFingerprint" in place of "source". Where the raw source lives:
--   charges.source                       for good (the charge's own record);
--   acquirer_authorizations.source       the acquirer's own table (a separate system);
--   idempotency_keys.request_payload     only while the key is in flight (IN_PROGRESS) or
--                                        ABANDONED (a retry can still resume it; the completer
--                                        finishes a charge from it): completing the key replaces it;
--   idempotency_audit.request_payload    never: the fingerprint from the first INSERT on.
-- Why an unkeyed SHA-256 and not an HMAC: the request fingerprint next to it (SHA-256 over the
-- whole coerced input, source included, which must not change) already lets anyone holding the
-- row test a guessed source; a key would protect nothing more, and this migration, plain SQL,
-- could not compute a keyed fingerprint of the rows already stored.

-- The stored request with its source replaced by the fingerprint. The gateway stores canonical
-- JSON (keys sorted, no white space), where "source" is the last key of a charge's input: the
-- result stays canonical, byte for byte what the gateway writes for a new row. Anything else
-- (never written by the gateway) is rewritten through jsonb. A payload without a top-level
-- "source" (a refund's) comes back unchanged.
CREATE FUNCTION request_without_source(payload text) RETURNS text
  LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE AS $$
DECLARE
  request jsonb := payload::jsonb;
  source text := request ->> 'source';
  raw_tail text;
  fingerprint text;
  kept text;
BEGIN
  IF source IS NULL THEN
    RETURN payload;
  END IF;
  raw_tail := ',"source":' || to_jsonb(source)::text || '}';
  fingerprint := encode(sha256(convert_to(source, 'UTF8')), 'hex');
  IF right(payload, length(raw_tail)) = raw_tail THEN
    kept := left(payload, length(payload) - length(raw_tail)) || ',"sourceFingerprint":"' || fingerprint || '"}';
    -- The tail was the top-level "source" (not a look-alike at the end of a nested object).
    IF (kept::jsonb - 'sourceFingerprint') = (request - 'source') THEN
      RETURN kept;
    END IF;
  END IF;
  RETURN ((request - 'source') || jsonb_build_object('sourceFingerprint', fingerprint))::text;
END $$;

-- Existing rows. The audit table is append-only: its trigger is lifted for this one UPDATE only.
-- updated_at is left alone, so retention still counts from the key's own last change.
ALTER TABLE idempotency_audit DISABLE TRIGGER idempotency_audit_append_only;
UPDATE idempotency_audit SET request_payload = request_without_source(request_payload)
 WHERE request_payload IS NOT NULL AND request_payload::jsonb ? 'source';
ALTER TABLE idempotency_audit ENABLE TRIGGER idempotency_audit_append_only;
UPDATE idempotency_keys SET request_payload = request_without_source(request_payload)
 WHERE state = 'COMPLETED' AND request_payload::jsonb ? 'source';

-- And from now on, whatever writes them.
ALTER TABLE idempotency_audit ADD CONSTRAINT idempotency_audit_no_source_check
  CHECK (request_payload IS NULL OR NOT (request_payload::jsonb ? 'source'));
ALTER TABLE idempotency_keys ADD CONSTRAINT idempotency_keys_completed_no_source_check
  CHECK (state <> 'COMPLETED' OR NOT (request_payload::jsonb ? 'source'));

-- migrate:down
-- The sources replaced by fingerprints cannot come back (that is the point); only the rules go.
ALTER TABLE idempotency_keys DROP CONSTRAINT idempotency_keys_completed_no_source_check;
ALTER TABLE idempotency_audit DROP CONSTRAINT idempotency_audit_no_source_check;
DROP FUNCTION request_without_source(text);

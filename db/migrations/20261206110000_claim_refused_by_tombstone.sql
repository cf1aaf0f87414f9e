-- migrate:up

-- A claim refused by a tombstone that was committed while the claim waited (docs/idempotency.md,
-- "Tombstones"). The claim's `WHERE NOT EXISTS (tombstone)` reads the INSERT's snapshot; when
-- retention's purge has deleted the row but not committed, the INSERT waits for it on the unique
-- index, finds the row gone and goes ahead: a new key row, a new derived acquirer key, a second
-- charge. This trigger runs after the row is in (after any such wait) and reads the tombstones
-- with a fresh snapshot (READ COMMITTED, a volatile function), so it sees that purge; the claim
-- then fails with SQLSTATE IK001, which `claimKey` reads as "not claimed".
CREATE FUNCTION idempotency_keys_refuse_tombstoned() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  IF EXISTS (SELECT 1 FROM idempotency_tombstones t WHERE t.merchant_id = NEW.merchant_id AND t.key = NEW.key) THEN
    RAISE EXCEPTION 'idempotency key was purged; its tombstone refuses a new claim' USING ERRCODE = 'IK001';
  END IF;
  RETURN NULL;
END
$$;

CREATE TRIGGER idempotency_keys_refuse_tombstoned AFTER INSERT ON idempotency_keys
  FOR EACH ROW EXECUTE FUNCTION idempotency_keys_refuse_tombstoned();

-- migrate:down
DROP TRIGGER idempotency_keys_refuse_tombstoned ON idempotency_keys;
DROP FUNCTION idempotency_keys_refuse_tombstoned();

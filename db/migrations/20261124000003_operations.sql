-- migrate:up

-- Every admin mutation leaves a row: who (the admin token's fingerprint), what, when.
CREATE TABLE admin_audit (
  id          bigserial PRIMARY KEY,
  actor       text NOT NULL,
  action      text NOT NULL,
  arguments   text NOT NULL,
  result      text,
  created_at  timestamptz(3) NOT NULL DEFAULT now()
);
CREATE TRIGGER admin_audit_append_only BEFORE UPDATE OR DELETE ON admin_audit
  FOR EACH ROW EXECUTE FUNCTION forbid_change();

-- A merchant's own request rate, when it differs from MERCHANT_RATE_PER_SECOND.
ALTER TABLE merchants ADD COLUMN rate_limit_per_second integer CHECK (rate_limit_per_second > 0);

-- migrate:down
ALTER TABLE merchants DROP COLUMN rate_limit_per_second;
DROP TABLE admin_audit;

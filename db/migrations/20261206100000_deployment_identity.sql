-- migrate:up

-- The deployment's identity (docs/idempotency.md, "Redis namespace"): one random id, made once by
-- this migration. When REDIS_KEY_PREFIX is unset the gateway derives its Redis namespace from it
-- and the database's name, so two deployments sharing one Redis never read each other's answers.
-- It survives failover, major-version upgrades and dump/restore (the id travels with the data),
-- so a deployment keeps its namespace; a copy under another name on the same server (CREATE
-- DATABASE … TEMPLATE) gets another namespace from its name.
CREATE TABLE deployment_identity (
  singleton   boolean PRIMARY KEY DEFAULT true CHECK (singleton),
  id          uuid NOT NULL DEFAULT gen_random_uuid(),
  created_at  timestamptz(3) NOT NULL DEFAULT now()
);
INSERT INTO deployment_identity DEFAULT VALUES;

-- The gateway's least-privilege role, where one exists, only reads it.
DO $$
BEGIN
  IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'payments_gateway') THEN
    GRANT SELECT ON deployment_identity TO payments_gateway;
  END IF;
END $$;

-- migrate:down
DROP TABLE deployment_identity;

-- migrate:up

-- The gateway's own database role (docs/contract.md §7, docs/security.md "The database role").
-- The api, relay and worker connect as `payments_gateway`, never as the owner that runs these
-- migrations: it may read every table and write only what the money path writes. It cannot
-- TRUNCATE anything, and it cannot UPDATE or DELETE a ledger, inbox or audit row, so even a bug
-- or an injected statement cannot get past the append-only triggers (the owner could: TRUNCATE
-- fires no row trigger, and an owner can disable triggers).
--
-- Roles belong to the whole cluster, not to one database: a second database on the same server
-- (another deployment, every test database) finds the role already there, and two migrations
-- running at once (parallel test runs) may both try to create it. Either way the role stays as
-- it is; only this database's grants are written here.
-- The role has no password: local trust or peer authentication lets it in, password
-- authentication refuses it until the migrate command sets one (DATABASE_URL's password,
-- docs/migrations.md).
DO $$
BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'payments_gateway') THEN
    CREATE ROLE payments_gateway LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS;
  END IF;
EXCEPTION
  -- Created by a concurrent migration between our check and our CREATE.
  WHEN duplicate_object OR unique_violation THEN NULL;
END $$;

-- Nobody but the owner creates objects in this schema (PostgreSQL 15 already says so; older
-- clusters let every role create tables in `public`).
REVOKE CREATE ON SCHEMA public FROM PUBLIC;
GRANT USAGE ON SCHEMA public TO payments_gateway;

-- Table by table: exactly what the gateway's statements need. SELECT everywhere (reads,
-- RETURNING, reconciliation and the admin API read every table). TRUNCATE nowhere.
--   append-only: inserted, never changed, never deleted
GRANT SELECT, INSERT ON
  ledger_transactions, ledger_entries, ledger_accounts, inbox_events,
  idempotency_audit, admin_audit, refunds,
  -- The simulated acquirer stands for a separate system, but runs in the gateway's process on
  -- its connection: it records authorizations and never changes one.
  acquirer_authorizations
  TO payments_gateway;
--   the idempotency state machine: claimed, advanced, completed, purged after retention
GRANT SELECT, INSERT, UPDATE, DELETE ON idempotency_keys TO payments_gateway;
--   what retention leaves of a purged key; a second purge of the same key renews it
GRANT SELECT, INSERT, UPDATE, DELETE ON idempotency_tombstones TO payments_gateway;
--   only the columns the gateway moves: a refund's reservation and refunded amount (never a
--   charge's amount, status or authorization), the relay's claim and publish marks (never an
--   event's payload), a dead letter's replay, a merchant's key hash and rate limit
GRANT SELECT, INSERT ON charges TO payments_gateway;
GRANT UPDATE (amount_refunded, amount_reserved) ON charges TO payments_gateway;
GRANT SELECT, INSERT ON outbox_events TO payments_gateway;
GRANT UPDATE (claimed_until, published_at, republished_count) ON outbox_events TO payments_gateway;
GRANT SELECT, INSERT ON dead_letters TO payments_gateway;
GRANT UPDATE (replayed_at, replay_job_id) ON dead_letters TO payments_gateway;
GRANT SELECT, INSERT ON merchants TO payments_gateway;
GRANT UPDATE (api_key_hash, rate_limit_per_second) ON merchants TO payments_gateway;
-- bigserial defaults call nextval(), which needs USAGE on the sequence.
GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO payments_gateway;

-- Tables and sequences that later migrations create (as the same owner) are readable, and their
-- sequences usable, by the gateway; any write is granted in the migration that creates the table,
-- column by column where it can be. test/platform/database-role.test.ts lists every table's
-- grants and fails on a table nobody decided for.
ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT ON TABLES TO payments_gateway;
ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT USAGE ON SEQUENCES TO payments_gateway;

-- migrate:down
ALTER DEFAULT PRIVILEGES IN SCHEMA public REVOKE USAGE ON SEQUENCES FROM payments_gateway;
ALTER DEFAULT PRIVILEGES IN SCHEMA public REVOKE SELECT ON TABLES FROM payments_gateway;
REVOKE ALL ON ALL SEQUENCES IN SCHEMA public FROM payments_gateway;
REVOKE ALL ON ALL TABLES IN SCHEMA public FROM payments_gateway;
REVOKE ALL ON SCHEMA public FROM payments_gateway;
-- The role itself stays: other databases on the cluster may still grant it their tables.

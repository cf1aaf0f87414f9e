-- migrate:up

-- Reconciliation facts (docs/contract.md §7) look up acquirer records by authorization id.
CREATE INDEX charges_authorization_idx ON charges (authorization_id) WHERE authorization_id IS NOT NULL;
CREATE INDEX refunds_authorization_idx ON refunds (authorization_id) WHERE authorization_id IS NOT NULL;

-- A ledger transaction needs at least two entries: checked at commit (deferred), so the entries
-- can follow the transaction row within the same transaction or statement.
CREATE FUNCTION ledger_transaction_has_entries() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
  entries integer;
BEGIN
  SELECT count(*) INTO entries FROM ledger_entries WHERE transaction_id = NEW.id;
  IF entries < 2 THEN
    RAISE EXCEPTION 'ledger transaction % has % entries; at least two are needed', NEW.id, entries
      USING ERRCODE = 'check_violation';
  END IF;
  RETURN NULL;
END $$;
CREATE CONSTRAINT TRIGGER ledger_transactions_two_entries AFTER INSERT ON ledger_transactions
  DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION ledger_transaction_has_entries();

-- migrate:down
DROP TRIGGER ledger_transactions_two_entries ON ledger_transactions;
DROP FUNCTION ledger_transaction_has_entries();
DROP INDEX refunds_authorization_idx;
DROP INDEX charges_authorization_idx;

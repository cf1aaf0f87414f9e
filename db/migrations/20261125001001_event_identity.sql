-- migrate:up

-- Event identity a restore cannot hand out twice (docs/contract.md §5). The bigserial id is
-- reused after a database restore or a lossy failover, while Redis still remembers the old
-- events' job ids and done markers; a UUID per event is not. Job ids (evt_<uid>), done markers,
-- the inbox and dead letters use it. A volatile default is evaluated per row, so this ALTER also
-- gives every existing event its own UUID.
ALTER TABLE outbox_events ADD COLUMN event_uid uuid NOT NULL DEFAULT gen_random_uuid();
CREATE UNIQUE INDEX outbox_events_event_uid_idx ON outbox_events (event_uid);

-- The sweeper republishes an event that was published but never applied (Redis lost the job):
-- it counts its republishes here (job ids evt_<uid>-s<n>) and finds candidates by published_at.
ALTER TABLE outbox_events ADD COLUMN republished_count integer NOT NULL DEFAULT 0
  CHECK (republished_count >= 0);
CREATE INDEX outbox_events_published_idx ON outbox_events (published_at) WHERE published_at IS NOT NULL;

ALTER TABLE inbox_events ADD COLUMN event_uid uuid;
UPDATE inbox_events i SET event_uid = o.event_uid FROM outbox_events o WHERE o.id = i.event_id;
CREATE UNIQUE INDEX inbox_events_event_uid_idx ON inbox_events (consumer, event_uid);

ALTER TABLE dead_letters ADD COLUMN event_uid uuid;
UPDATE dead_letters d SET event_uid = o.event_uid FROM outbox_events o WHERE o.id = d.event_id;
CREATE INDEX dead_letters_event_uid_idx ON dead_letters (event_uid);

-- migrate:down
DROP INDEX dead_letters_event_uid_idx;
ALTER TABLE dead_letters DROP COLUMN event_uid;
DROP INDEX inbox_events_event_uid_idx;
ALTER TABLE inbox_events DROP COLUMN event_uid;
DROP INDEX outbox_events_published_idx;
ALTER TABLE outbox_events DROP COLUMN republished_count;
DROP INDEX outbox_events_event_uid_idx;
ALTER TABLE outbox_events DROP COLUMN event_uid;

-- Issue 14 (write cost): every webhook row of an emitting write paid for a B-tree of
-- rows by (target, event) that only rare operations read. It goes. A redelivery finds
-- an event's rows in the primary key's range around the event id's time (both are
-- UUIDv7s of the same moment); pausing a target reads the queue's index (what waits);
-- deleting a target reads the spot's rows. Held and failed rows, which resuming a target
-- and `~recover` read, get partial indexes that a new (Pending) row never enters.
--
-- One statement (a DO block running each command on its own): on Citus, where `outbox`
-- is distributed by now, an index command is forwarded to the workers with the text of
-- the query it came in, and a worker refuses a text of several commands ("cannot insert
-- multiple commands into a prepared statement"). See docs/citus.md.
DO $$
BEGIN
    EXECUTE 'DROP INDEX outbox_target_event';
    EXECUTE $q$CREATE INDEX outbox_target_paused ON outbox (spot_id, target_id) WHERE state = 'Paused'$q$;
    EXECUTE $q$CREATE INDEX outbox_target_failed ON outbox (spot_id, target_id, created_at) WHERE state = 'Failed'$q$;
END
$$;

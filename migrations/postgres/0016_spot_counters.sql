-- Issue 17 (Citus write cost): a spot's maintained member count, and the row lock that
-- orders the member inserts of one spot, move from `spots` to a table of their own keyed
-- by `spot_id`. On Citus `spots` is a reference table (a copy on every node), so each
-- member write updated every node in a two-phase commit; `spot_counters` is distributed
-- by `spot_id` like the spot's other tables (by `migrate`'s Citus step), so a member write
-- is one worker's transaction. Every spot has its row (written with the spot, deleted
-- with it).
--
-- One statement (a DO block running each command on its own): on Citus `spots` is a
-- reference table by now, and a DDL command on it is forwarded to the workers with the
-- text of the query it came in, which must hold one command. See docs/citus.md.
DO $$
BEGIN
    EXECUTE 'CREATE TABLE spot_counters (
        spot_id UUID PRIMARY KEY NOT NULL REFERENCES spots (id) ON DELETE CASCADE,
        member_count BIGINT NOT NULL DEFAULT 0
    )';
    EXECUTE 'INSERT INTO spot_counters (spot_id, member_count) SELECT id, member_count FROM spots';
    EXECUTE 'ALTER TABLE spots DROP COLUMN member_count';
END
$$;

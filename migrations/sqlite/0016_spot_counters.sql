-- Issue 17 (Citus write cost): a spot's maintained member count, and the row lock that
-- orders the member inserts of one spot (PostgreSQL), move from `spots` to a table of
-- their own keyed by `spot_id` (on Citus `spots` is copied to every node, so every member
-- write was a two-phase commit on all of them). The same schema on both stores. Every
-- spot has its row (written with the spot, deleted with it).
CREATE TABLE spot_counters (
    spot_id BLOB PRIMARY KEY NOT NULL REFERENCES spots (id) ON DELETE CASCADE,
    member_count BIGINT NOT NULL DEFAULT 0
);
INSERT INTO spot_counters (spot_id, member_count) SELECT id, member_count FROM spots;
-- SQLite 3.35 and later (sqlx bundles 3.46).
ALTER TABLE spots DROP COLUMN member_count;

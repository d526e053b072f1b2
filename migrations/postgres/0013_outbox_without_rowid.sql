-- Issue 14: SQLite clusters its outbox on the primary key (see the SQLite migration of
-- the same number). PostgreSQL's heap and primary-key index are what they were: nothing
-- to change here; the version exists so that both stores keep the same list.
SELECT 1;

-- Issue 17 (SQLite reads): the rate limiter's windows leave the main database for a
-- companion file of their own (`<file>-limits`, made by the server when it opens the
-- database; see `store::SqliteLimits`), because every lease committed here made every
-- reader drop its page cache. `Db::migrate` has copied the current windows there before
-- this runs.
DROP TABLE rate_limit_windows;

-- Issue 17 (SQLite reads): on SQLite the rate limiter's windows move to a companion
-- database file. PostgreSQL keeps them in `rate_limit_windows` (a commit there costs the
-- other sessions nothing): the same version on both stores, nothing to change here.
SELECT 1;

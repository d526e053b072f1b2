-- Issue 15: the console's background work in the database, not in the memory of the
-- process that started it, so that behind a load balancer any replica answers a job's
-- progress page, imports a previewed upload and serves a finished import's failed rows,
-- and a restart does not lose a finished job's report. Housekeeping purges both tables
-- (docs/console.md says when). Neither is exported with a spot: they are transient.

-- A bulk action's or an import's progress, polled by /console/jobs/{id}. Written once
-- per chunk of a bulk action (100 members) and at most every 250 ms during an import.
CREATE TABLE console_jobs (
    spot_id BLOB NOT NULL REFERENCES spots (id) ON DELETE CASCADE,
    id BLOB NOT NULL,                       -- UUIDv7 (the job page's address)
    label TEXT NOT NULL,
    total BIGINT NOT NULL,                -- members or data rows to do
    done BIGINT NOT NULL DEFAULT 0,
    failed BIGINT NOT NULL DEFAULT 0,
    finished BOOLEAN NOT NULL DEFAULT FALSE,
    error TEXT,                           -- why it stopped, if it did
    link_path TEXT,                       -- a download the finished job offers
    link_text TEXT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,           -- ms: the last progress written
    PRIMARY KEY (spot_id, id)
);
CREATE INDEX console_jobs_updated ON console_jobs (updated_at);

-- An uploaded import file between its dry run (the preview) and its import, then the
-- finished import's failed rows. The file is kept raw (at most the HTTP body limit) and
-- read again at import time; it is emptied once the import has run.
CREATE TABLE console_uploads (
    spot_id BLOB NOT NULL REFERENCES spots (id) ON DELETE CASCADE,
    id BLOB NOT NULL,                       -- UUIDv7 (in the preview's form)
    file BLOB NOT NULL,
    group_ids TEXT NOT NULL,              -- JSON array of the groups to join
    notify BOOLEAN NOT NULL,              -- send invitations to members created
    started BOOLEAN NOT NULL DEFAULT FALSE, -- set once (conditional UPDATE): one import per upload
    failed_rows_csv TEXT,                 -- the finished import's failed rows (line, email, reason)
    created_at BIGINT NOT NULL,
    PRIMARY KEY (spot_id, id)
);
CREATE INDEX console_uploads_created ON console_uploads (created_at);

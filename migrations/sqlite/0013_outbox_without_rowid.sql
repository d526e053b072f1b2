-- Issue 14: the outbox clustered on its primary key (WITHOUT ROWID). A rowid table kept
-- its rows in one B-tree and the (spot_id, id) key in another, so every queued event
-- wrote four B-trees in the transaction of the change it reports (table, key, due
-- queue, target/event); clustered, it writes three, one page fewer in every commit that
-- queues an event. Rows are a few hundred bytes (the payload), well within what a
-- clustered SQLite table stores inline.
CREATE TABLE outbox_clustered (
    spot_id BLOB NOT NULL REFERENCES spots (id) ON DELETE CASCADE,
    id BLOB NOT NULL,
    event_id BLOB NOT NULL,
    channel TEXT NOT NULL,
    target_id BLOB,
    event_type TEXT NOT NULL,
    payload TEXT NOT NULL,
    occurred_at BIGINT NOT NULL,
    state TEXT NOT NULL,
    attempts BIGINT NOT NULL DEFAULT 0,
    failures BIGINT NOT NULL DEFAULT 0,
    next_attempt_at BIGINT NOT NULL,
    claimed_by BLOB,
    claim_token BLOB,
    last_status BIGINT,
    last_error TEXT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (spot_id, id)
) WITHOUT ROWID;
INSERT INTO outbox_clustered (spot_id, id, event_id, channel, target_id, event_type, payload, occurred_at, state,
    attempts, failures, next_attempt_at, claimed_by, claim_token, last_status, last_error, created_at, updated_at)
SELECT spot_id, id, event_id, channel, target_id, event_type, payload, occurred_at, state,
    attempts, failures, next_attempt_at, claimed_by, claim_token, last_status, last_error, created_at, updated_at
FROM outbox;
DROP TABLE outbox;
ALTER TABLE outbox_clustered RENAME TO outbox;
CREATE INDEX outbox_due ON outbox (next_attempt_at) WHERE state = 'Pending';
CREATE INDEX outbox_target_event ON outbox (spot_id, target_id, event_id);

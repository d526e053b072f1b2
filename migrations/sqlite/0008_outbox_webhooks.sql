-- Issue 14: webhook endpoints, Kaizala subscriptions, and the outbox that delivers
-- their events and invitation emails. Words (`Pending`, `Webhook`, …) are stored as
-- spelled by the `vocabulary!` enums of `domain/vocab.rs`.

-- Webhook endpoints of the MeltingSpot dialect.
CREATE TABLE webhook_endpoints (
    spot_id BLOB NOT NULL REFERENCES spots (id) ON DELETE CASCADE,
    id BLOB NOT NULL,
    url TEXT NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    event_types TEXT NOT NULL,               -- JSON array of wire names, e.g. ["member.created"]
    enabled BOOLEAN NOT NULL DEFAULT TRUE,
    disabled_reason TEXT,
    secret TEXT NOT NULL,                    -- "whsec_<base64>": readable, it signs
    previous_secret TEXT,
    previous_secret_until BIGINT,            -- ms: the previous secret also signs until then
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (spot_id, id)
);

-- Kaizala subscriptions (kaizala-api.md §6).
CREATE TABLE kz_subscriptions (
    spot_id BLOB NOT NULL REFERENCES spots (id) ON DELETE CASCADE,
    id BLOB NOT NULL,
    connector_id BLOB,                       -- creator (informational, no FK)
    object_id TEXT NOT NULL,                 -- group id without '@n' for Group; opaque otherwise
    object_type TEXT NOT NULL,               -- Group | Action | ActionPackage
    event_types TEXT NOT NULL,               -- JSON array of KzEventType words
    callback_url TEXT NOT NULL,
    callback_token TEXT,
    callback_context TEXT,                   -- echoed as `context`
    validity BIGINT NOT NULL,                -- ms
    active BOOLEAN NOT NULL DEFAULT TRUE,
    disabled_reason TEXT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (spot_id, id)
);
CREATE INDEX kz_subscriptions_object ON kz_subscriptions (spot_id, object_type, object_id);

-- The outbox: one row per (event, target), written in the transaction of the change;
-- emails have no target.
CREATE TABLE outbox (
    spot_id BLOB NOT NULL REFERENCES spots (id) ON DELETE CASCADE,
    id BLOB NOT NULL,                        -- UUIDv7: creation order
    event_id BLOB NOT NULL,                  -- the same for every target and attempt
    channel TEXT NOT NULL,                   -- Webhook | Kaizala | Email
    target_id BLOB,                          -- webhook_endpoints.id | kz_subscriptions.id | NULL
    event_type TEXT NOT NULL,
    payload TEXT NOT NULL,                   -- exact body sent, or the email's data
    occurred_at BIGINT NOT NULL,             -- ms
    state TEXT NOT NULL,                     -- Pending | Paused | Delivered | Failed | Skipped
    attempts BIGINT NOT NULL DEFAULT 0,      -- all attempts ever
    failures BIGINT NOT NULL DEFAULT 0,      -- consecutive failures (index into the retry schedule)
    next_attempt_at BIGINT NOT NULL,         -- ms; while claimed: the end of the lease
    claimed_by BLOB,                         -- replica id
    claim_token BLOB,                        -- guards the completion write
    last_status BIGINT,
    last_error TEXT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (spot_id, id)
);
-- The dispatchers' queue: the one index not led by spot_id (like spots_api_key_hash_key),
-- partial so that it holds only what waits. Queries spell `state = 'Pending'` literally
-- (a bound value does not let SQLite use a partial index).
CREATE INDEX outbox_due ON outbox (next_attempt_at) WHERE state = 'Pending';
CREATE INDEX outbox_target_event ON outbox (spot_id, target_id, event_id);

-- Every delivery attempt.
CREATE TABLE outbox_attempts (
    spot_id BLOB NOT NULL REFERENCES spots (id) ON DELETE CASCADE,
    id BLOB NOT NULL,
    outbox_id BLOB NOT NULL,
    target_id BLOB,
    event_id BLOB NOT NULL,
    event_type TEXT NOT NULL,
    channel TEXT NOT NULL,
    attempt BIGINT NOT NULL,                 -- 1-based (= outbox.attempts after it)
    status_code BIGINT,                      -- HTTP status or SMTP reply code
    duration_ms BIGINT NOT NULL,
    error TEXT,                              -- never contains the URL
    response_body TEXT,                      -- first 1 KiB, lossy UTF-8
    replica_id BLOB NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (spot_id, id)
);
CREATE INDEX outbox_attempts_target ON outbox_attempts (spot_id, target_id, id);
CREATE INDEX outbox_attempts_event ON outbox_attempts (spot_id, target_id, event_id, id);

-- Attempts per target, so that a delivery list's `total` needs no scan.
CREATE TABLE outbox_target_stats (
    spot_id BLOB NOT NULL REFERENCES spots (id) ON DELETE CASCADE,
    target_id BLOB NOT NULL,
    attempt_count BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (spot_id, target_id)
);

-- Display name of invitation emails (default: the spot's name).
ALTER TABLE spots ADD COLUMN email_sender_name TEXT;

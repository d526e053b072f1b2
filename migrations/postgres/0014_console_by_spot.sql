-- Issue 17 (Citus): the console's sessions, selections and sign-in links are keyed by
-- spot first, like every other table, so that each lookup reads one spot's rows (one
-- shard on Citus, where a distributed table's primary key must hold spot_id). The
-- session cookie and the link token name their spot (`<spot id, base64url>.<random>`,
-- as Kaizala tokens do since 0013). Sessions and links made before this migration
-- cannot be found by spot: they are dropped (sessions idle out within hours, links
-- within 15 minutes; an operator signs in again).
DROP TABLE console_selections;
DROP TABLE console_sessions;
DROP TABLE console_login_links;

CREATE TABLE console_sessions (
    spot_id UUID NOT NULL,
    id_hash BYTEA NOT NULL,               -- SHA-256 of the cookie's value
    member_id UUID NOT NULL,
    csrf_token TEXT NOT NULL,             -- sent back with every state-changing request
    created_at BIGINT NOT NULL,
    last_seen_at BIGINT NOT NULL,         -- ms: idle expiry counts from here
    PRIMARY KEY (spot_id, id_hash),
    FOREIGN KEY (spot_id, member_id) REFERENCES members (spot_id, id) ON DELETE CASCADE
);
CREATE INDEX console_sessions_member ON console_sessions (spot_id, member_id);
CREATE INDEX console_sessions_last_seen ON console_sessions (last_seen_at);

-- The members a session selected for a bulk action (kept across pages).
CREATE TABLE console_selections (
    spot_id UUID NOT NULL,
    session_id_hash BYTEA NOT NULL,
    member_id UUID NOT NULL,
    PRIMARY KEY (spot_id, session_id_hash, member_id),
    FOREIGN KEY (spot_id, session_id_hash) REFERENCES console_sessions (spot_id, id_hash) ON DELETE CASCADE
);

-- One-time sign-in links (15 minutes, single use).
CREATE TABLE console_login_links (
    spot_id UUID NOT NULL,
    token_hash BYTEA NOT NULL,            -- SHA-256 of the link's token
    member_id UUID NOT NULL,
    expires_at BIGINT NOT NULL,
    used_at BIGINT,
    PRIMARY KEY (spot_id, token_hash),
    FOREIGN KEY (spot_id, member_id) REFERENCES members (spot_id, id) ON DELETE CASCADE
);
CREATE INDEX console_login_links_expires ON console_login_links (expires_at);

-- Issue 15: the operator console. Console users are a spot's members whose role is
-- Admin; these tables hold their passwords, their sessions and their one-time links.
-- Secrets (session ids, link tokens) are stored only as their SHA-256.

-- An admin's password (argon2id, PHC string). A member who is no longer Admin keeps the
-- row but cannot sign in: the role is checked at every request.
CREATE TABLE console_passwords (
    spot_id UUID NOT NULL,
    member_id UUID NOT NULL,
    password_hash TEXT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (spot_id, member_id),
    FOREIGN KEY (spot_id, member_id) REFERENCES members (spot_id, id) ON DELETE CASCADE
);

-- Signed-in sessions, shared by every replica and kept across restarts.
CREATE TABLE console_sessions (
    id_hash BYTEA PRIMARY KEY NOT NULL,     -- SHA-256 of the cookie's value
    spot_id UUID NOT NULL,
    member_id UUID NOT NULL,
    csrf_token TEXT NOT NULL,             -- sent back with every state-changing request
    created_at BIGINT NOT NULL,
    last_seen_at BIGINT NOT NULL,         -- ms: idle expiry counts from here
    FOREIGN KEY (spot_id, member_id) REFERENCES members (spot_id, id) ON DELETE CASCADE
);
CREATE INDEX console_sessions_member ON console_sessions (spot_id, member_id);
CREATE INDEX console_sessions_last_seen ON console_sessions (last_seen_at);

-- The members a session selected for a bulk action (kept across pages).
CREATE TABLE console_selections (
    session_id_hash BYTEA NOT NULL REFERENCES console_sessions (id_hash) ON DELETE CASCADE,
    member_id UUID NOT NULL,
    PRIMARY KEY (session_id_hash, member_id)
);

-- One-time sign-in links (15 minutes, single use).
CREATE TABLE console_login_links (
    token_hash BYTEA PRIMARY KEY NOT NULL,  -- SHA-256 of the link's token
    spot_id UUID NOT NULL,
    member_id UUID NOT NULL,
    expires_at BIGINT NOT NULL,
    used_at BIGINT,
    FOREIGN KEY (spot_id, member_id) REFERENCES members (spot_id, id) ON DELETE CASCADE
);
CREATE INDEX console_login_links_expires ON console_login_links (expires_at);

-- Sign-in finds an email's admin memberships across spots (the one lookup not led by
-- spot_id: a person signs in before choosing a spot). Partial: admins only, so tiny.
CREATE INDEX members_admin_email ON members (email_norm) WHERE role = 'Admin';

-- The Kaizala dialect: connectors (applications) of a spot, their tokens and PINs,
-- and group text messages.

CREATE TABLE kz_connectors (
    spot_id BLOB NOT NULL REFERENCES spots (id) ON DELETE CASCADE,
    id BLOB NOT NULL,
    name TEXT NOT NULL,
    secret_hash BLOB NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (spot_id, id)
);
-- Finds the spot of an applicationId (like spots.api_key_hash, not led by spot_id).
CREATE UNIQUE INDEX kz_connectors_id_key ON kz_connectors (id);

-- One refresh token per (connector, member): minting a new one replaces the old.
CREATE TABLE kz_refresh_tokens (
    spot_id BLOB NOT NULL,
    connector_id BLOB NOT NULL,
    member_id BLOB NOT NULL,
    token_hash BLOB NOT NULL,
    issued_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    PRIMARY KEY (spot_id, connector_id, member_id),
    FOREIGN KEY (spot_id, connector_id) REFERENCES kz_connectors (spot_id, id) ON DELETE CASCADE,
    FOREIGN KEY (spot_id, member_id) REFERENCES members (spot_id, id) ON DELETE CASCADE
);
CREATE UNIQUE INDEX kz_refresh_tokens_hash_key ON kz_refresh_tokens (token_hash);

CREATE TABLE kz_access_tokens (
    spot_id BLOB NOT NULL,
    token_hash BLOB NOT NULL,
    connector_id BLOB NOT NULL,
    member_id BLOB NOT NULL,
    expires_at BIGINT NOT NULL,
    PRIMARY KEY (spot_id, token_hash),
    FOREIGN KEY (spot_id, connector_id) REFERENCES kz_connectors (spot_id, id) ON DELETE CASCADE,
    FOREIGN KEY (spot_id, member_id) REFERENCES members (spot_id, id) ON DELETE CASCADE
);
CREATE UNIQUE INDEX kz_access_tokens_hash_key ON kz_access_tokens (token_hash);
CREATE INDEX kz_access_tokens_expiry ON kz_access_tokens (spot_id, expires_at);

CREATE TABLE kz_pins (
    spot_id BLOB NOT NULL,
    connector_id BLOB NOT NULL,
    member_id BLOB NOT NULL,
    pin_hash BLOB NOT NULL,
    expires_at BIGINT NOT NULL,
    tries_left BIGINT NOT NULL,
    PRIMARY KEY (spot_id, connector_id, member_id),
    FOREIGN KEY (spot_id, connector_id) REFERENCES kz_connectors (spot_id, id) ON DELETE CASCADE,
    FOREIGN KEY (spot_id, member_id) REFERENCES members (spot_id, id) ON DELETE CASCADE
);

CREATE TABLE kz_messages (
    spot_id BLOB NOT NULL,
    id BLOB NOT NULL,
    group_id BLOB NOT NULL,
    sender_member_id BLOB NOT NULL,
    text TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (spot_id, id),
    FOREIGN KEY (spot_id, group_id) REFERENCES spot_groups (spot_id, id) ON DELETE CASCADE
);
CREATE INDEX kz_messages_group ON kz_messages (spot_id, group_id, created_at);

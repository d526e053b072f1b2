-- Spots (tenants), their custom roles and members, and the shared rate-limit windows.
-- Every table after `spots` leads its keys and indexes with spot_id (contract §7).

CREATE TABLE spots (
    id BLOB PRIMARY KEY NOT NULL,
    name TEXT NOT NULL,
    api_key_hash BLOB NOT NULL,
    rate_limit_per_10s BIGINT,
    rate_limit_per_day BIGINT,
    member_count BIGINT NOT NULL DEFAULT 0,
    created_at BIGINT NOT NULL
);
-- The one index not led by spot_id: it finds the spot of an API key.
CREATE UNIQUE INDEX spots_api_key_hash_key ON spots (api_key_hash);

CREATE TABLE custom_roles (
    spot_id BLOB NOT NULL REFERENCES spots (id) ON DELETE CASCADE,
    id BLOB NOT NULL,
    label TEXT NOT NULL,
    description TEXT,
    permissions TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (spot_id, id)
);
CREATE INDEX custom_roles_label ON custom_roles (spot_id, label);

CREATE TABLE members (
    spot_id BLOB NOT NULL REFERENCES spots (id) ON DELETE CASCADE,
    id BLOB NOT NULL,
    user_id BLOB,
    email TEXT,
    email_norm TEXT,
    mobile_number TEXT,
    title TEXT,
    lang TEXT NOT NULL DEFAULT 'en',
    role TEXT NOT NULL DEFAULT 'Member',
    custom_role_id BLOB,
    status TEXT NOT NULL DEFAULT 'Invited',
    firstname TEXT NOT NULL DEFAULT '',
    lastname TEXT NOT NULL DEFAULT '',
    warnings BIGINT NOT NULL DEFAULT 0,
    avatar_url TEXT,
    embed_base_urls TEXT,
    invited_at BIGINT NOT NULL,
    registered_at BIGINT,
    updated_at BIGINT NOT NULL,
    last_activity_at BIGINT,
    PRIMARY KEY (spot_id, id)
);
CREATE UNIQUE INDEX members_spot_email_key ON members (spot_id, email_norm);
CREATE UNIQUE INDEX members_spot_mobile_key ON members (spot_id, mobile_number);
CREATE INDEX members_firstname ON members (spot_id, firstname);
CREATE INDEX members_lastname ON members (spot_id, lastname);
CREATE INDEX members_custom_role ON members (spot_id, custom_role_id);
CREATE INDEX members_invited_at ON members (spot_id, invited_at);
CREATE INDEX members_registered_at ON members (spot_id, registered_at);

-- Fixed windows shared by every replica: `used` counts requests granted in the window.
CREATE TABLE rate_limit_windows (
    spot_id BLOB NOT NULL,
    scope TEXT NOT NULL,
    window_start BIGINT NOT NULL,
    used BIGINT NOT NULL,
    PRIMARY KEY (spot_id, scope, window_start)
);

-- Issue 17 (Citus): Kaizala refresh and access tokens name their spot (the token's
-- text carries the spot id), so each lookup reads one spot's rows: the access tokens'
-- primary key (spot_id, token_hash) already serves it, and refresh tokens get the same
-- key. The hash-only indexes stay, no longer unique (a distributed table's unique index
-- must hold the distribution column), for tokens minted before this migration, which
-- are looked up by hash alone until they expire.
CREATE UNIQUE INDEX kz_refresh_tokens_spot_hash_key ON kz_refresh_tokens (spot_id, token_hash);
DROP INDEX kz_refresh_tokens_hash_key;
CREATE INDEX kz_refresh_tokens_hash ON kz_refresh_tokens (token_hash);
DROP INDEX kz_access_tokens_hash_key;
CREATE INDEX kz_access_tokens_hash ON kz_access_tokens (token_hash);

//! Kaizala connectors, refresh/access tokens, PINs and group messages.

use uuid::Uuid;

use super::{one_row, Ex};
use crate::domain::ids::{ConnectorId, GroupId, MemberId, SpotId};
use crate::domain::kaizala::{Connector, TokenGrant};
use crate::domain::vocab::MemberStatus;
use crate::run;

pub async fn insert_connector(ex: Ex<'_>, c_: &Connector, secret_hash: &[u8]) -> Result<(), sqlx::Error> {
    run!(ex, |c| sqlx::query(
        "INSERT INTO kz_connectors (spot_id, id, name, secret_hash, created_at) VALUES ($1, $2, $3, $4, $5)"
    )
    .bind(c_.spot_id)
    .bind(c_.id)
    .bind(&c_.name)
    .bind(secret_hash)
    .bind(c_.created_at)
    .execute(c)
    .await
    .map(|_| ()))
}

/// The connector with `id` (any spot) and its secret hash.
pub async fn find_connector(ex: Ex<'_>, id: ConnectorId) -> Result<Option<(Connector, Vec<u8>)>, sqlx::Error> {
    run!(ex, |c| {
        let row = sqlx::query_as::<_, (SpotId, ConnectorId, String, i64, Vec<u8>)>(
            "SELECT spot_id, id, name, created_at, secret_hash FROM kz_connectors WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(c)
        .await?;
        Ok(row.map(|(spot_id, id, name, created_at, hash)| (Connector { spot_id, id, name, created_at }, hash)))
    })
}

pub async fn list_connectors(ex: Ex<'_>, spot_id: Option<SpotId>) -> Result<Vec<Connector>, sqlx::Error> {
    run!(ex, |c| sqlx::query_as::<_, Connector>(
        "SELECT spot_id, id, name, created_at FROM kz_connectors WHERE ($1 IS NULL OR spot_id = $1) ORDER BY id"
    )
    .bind(spot_id)
    .fetch_all(c)
    .await)
}

pub async fn delete_connector(ex: Ex<'_>, id: ConnectorId) -> Result<bool, sqlx::Error> {
    run!(ex, |c| one_row(sqlx::query("DELETE FROM kz_connectors WHERE id = $1").bind(id).execute(c).await))
}

/// Stores the (connector, member) refresh token, replacing any older one.
pub async fn upsert_refresh_token(
    ex: Ex<'_>,
    spot_id: SpotId,
    connector_id: ConnectorId,
    member_id: MemberId,
    hash: &[u8],
    issued_at: i64,
    expires_at: i64,
) -> Result<(), sqlx::Error> {
    run!(ex, |c| sqlx::query(
        "INSERT INTO kz_refresh_tokens (spot_id, connector_id, member_id, token_hash, issued_at, expires_at) \
         VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (spot_id, connector_id, member_id) DO UPDATE SET \
         token_hash = excluded.token_hash, issued_at = excluded.issued_at, expires_at = excluded.expires_at"
    )
    .bind(spot_id)
    .bind(connector_id)
    .bind(member_id)
    .bind(hash)
    .bind(issued_at)
    .bind(expires_at)
    .execute(c)
    .await
    .map(|_| ()))
}

/// The grant of a refresh token: (spot, connector, member, issued_at, expires_at).
pub async fn find_refresh_token(ex: Ex<'_>, hash: &[u8]) -> Result<Option<TokenGrant>, sqlx::Error> {
    run!(ex, |c| sqlx::query_as::<_, TokenGrant>(
        "SELECT spot_id, connector_id, member_id, issued_at, expires_at FROM kz_refresh_tokens WHERE token_hash = $1"
    )
    .bind(hash)
    .fetch_optional(c)
    .await)
}

pub async fn insert_access_token(ex: Ex<'_>, g: &TokenGrant, hash: &[u8]) -> Result<(), sqlx::Error> {
    run!(ex, |c| sqlx::query(
        "INSERT INTO kz_access_tokens (spot_id, token_hash, connector_id, member_id, expires_at) \
         VALUES ($1, $2, $3, $4, $5)"
    )
    .bind(g.spot_id)
    .bind(hash)
    .bind(g.connector_id)
    .bind(g.member_id)
    .bind(g.expires_at)
    .execute(c)
    .await
    .map(|_| ()))
}

/// The grant of an access token and its member's status (a member who may no longer
/// sign in must not keep using a token).
pub async fn find_access_token(ex: Ex<'_>, hash: &[u8]) -> Result<Option<(TokenGrant, MemberStatus)>, sqlx::Error> {
    run!(ex, |c| {
        let row = sqlx::query_as::<_, (SpotId, ConnectorId, MemberId, i64, MemberStatus)>(
            "SELECT t.spot_id, t.connector_id, t.member_id, t.expires_at, m.status FROM kz_access_tokens t \
             JOIN members m ON m.spot_id = t.spot_id AND m.id = t.member_id WHERE t.token_hash = $1",
        )
        .bind(hash)
        .fetch_optional(c)
        .await?;
        Ok(row.map(|(spot_id, connector_id, member_id, expires_at, status)| {
            (TokenGrant { spot_id, connector_id, member_id, issued_at: expires_at, expires_at }, status)
        }))
    })
}

/// Revokes every access token of a (connector, member) pair (its refresh token was replaced).
pub async fn delete_access_tokens_of(
    ex: Ex<'_>,
    spot_id: SpotId,
    connector_id: ConnectorId,
    member_id: MemberId,
) -> Result<u64, sqlx::Error> {
    run!(ex, |c| sqlx::query(
        "DELETE FROM kz_access_tokens WHERE spot_id = $1 AND connector_id = $2 AND member_id = $3"
    )
    .bind(spot_id)
    .bind(connector_id)
    .bind(member_id)
    .execute(c)
    .await
    .map(|r| r.rows_affected()))
}

/// Revokes everything a member holds: refresh and access tokens of every connector,
/// and pending PINs (the member was signed out: Deactivated, Rejected or Left).
pub async fn revoke_member(ex: Ex<'_>, spot_id: SpotId, member_id: MemberId) -> Result<(), sqlx::Error> {
    run!(ex, |c| {
        for table in ["kz_access_tokens", "kz_refresh_tokens", "kz_pins"] {
            sqlx::query(&format!("DELETE FROM {table} WHERE spot_id = $1 AND member_id = $2"))
                .bind(spot_id)
                .bind(member_id)
                .execute(&mut *c)
                .await?;
        }
        Ok(())
    })
}

/// Drops the spot's expired access tokens.
pub async fn purge_access_tokens(ex: Ex<'_>, spot_id: SpotId, now: i64) -> Result<(), sqlx::Error> {
    run!(ex, |c| sqlx::query("DELETE FROM kz_access_tokens WHERE spot_id = $1 AND expires_at < $2")
        .bind(spot_id)
        .bind(now)
        .execute(c)
        .await
        .map(|_| ()))
}

pub async fn upsert_pin(
    ex: Ex<'_>,
    spot_id: SpotId,
    connector_id: ConnectorId,
    member_id: MemberId,
    pin_hash: &[u8],
    expires_at: i64,
    tries: i64,
) -> Result<(), sqlx::Error> {
    run!(ex, |c| sqlx::query(
        "INSERT INTO kz_pins (spot_id, connector_id, member_id, pin_hash, expires_at, tries_left) \
         VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (spot_id, connector_id, member_id) DO UPDATE SET \
         pin_hash = excluded.pin_hash, expires_at = excluded.expires_at, tries_left = excluded.tries_left"
    )
    .bind(spot_id)
    .bind(connector_id)
    .bind(member_id)
    .bind(pin_hash)
    .bind(expires_at)
    .bind(tries)
    .execute(c)
    .await
    .map(|_| ()))
}

/// Spends one try of the pair's unexpired PIN and returns its hash; None when there is
/// no such PIN or no try left. One statement, so concurrent guesses (PostgreSQL row
/// lock, SQLite write lock) each take their own try and never more than there are.
pub async fn spend_pin_try(
    ex: Ex<'_>,
    spot_id: SpotId,
    connector_id: ConnectorId,
    member_id: MemberId,
    now: i64,
) -> Result<Option<Vec<u8>>, sqlx::Error> {
    run!(ex, |c| sqlx::query_scalar::<_, Vec<u8>>(
        "UPDATE kz_pins SET tries_left = tries_left - 1 WHERE spot_id = $1 AND connector_id = $2 \
         AND member_id = $3 AND tries_left > 0 AND expires_at > $4 RETURNING pin_hash"
    )
    .bind(spot_id)
    .bind(connector_id)
    .bind(member_id)
    .bind(now)
    .fetch_optional(c)
    .await)
}

pub async fn delete_pin(
    ex: Ex<'_>,
    spot_id: SpotId,
    connector_id: ConnectorId,
    member_id: MemberId,
) -> Result<(), sqlx::Error> {
    run!(ex, |c| sqlx::query("DELETE FROM kz_pins WHERE spot_id = $1 AND connector_id = $2 AND member_id = $3")
        .bind(spot_id)
        .bind(connector_id)
        .bind(member_id)
        .execute(c)
        .await
        .map(|_| ()))
}

pub async fn insert_message(
    ex: Ex<'_>,
    spot_id: SpotId,
    id: Uuid,
    group_id: GroupId,
    sender: MemberId,
    text: &str,
    now: i64,
) -> Result<(), sqlx::Error> {
    run!(ex, |c| sqlx::query(
        "INSERT INTO kz_messages (spot_id, id, group_id, sender_member_id, text, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6)"
    )
    .bind(spot_id)
    .bind(id)
    .bind(group_id)
    .bind(sender)
    .bind(text)
    .bind(now)
    .execute(c)
    .await
    .map(|_| ()))
}

/// (id, sender, text, created_at) of a group's messages, oldest first.
pub async fn list_messages(
    ex: Ex<'_>,
    spot_id: SpotId,
    group_id: GroupId,
) -> Result<Vec<(Uuid, MemberId, String, i64)>, sqlx::Error> {
    run!(ex, |c| sqlx::query_as::<_, (Uuid, MemberId, String, i64)>(
        "SELECT id, sender_member_id, text, created_at FROM kz_messages WHERE spot_id = $1 AND group_id = $2 \
         ORDER BY created_at, id"
    )
    .bind(spot_id)
    .bind(group_id)
    .fetch_all(c)
    .await)
}

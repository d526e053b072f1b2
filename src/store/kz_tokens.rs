//! Kaizala refresh and access tokens (stored as SHA-256 hashes), and revocation.

use super::sql::{Sql, IN_LIST_MAX};
use super::Ex;
use crate::domain::ids::{ConnectorId, MemberId, SpotId};
use crate::domain::vocab::MemberStatus;
use crate::{bind_all, run};

/// Who a token speaks for, and until when (a row of `kz_refresh_tokens`, or of
/// `kz_access_tokens` whose issue time is not kept).
#[derive(Clone, Debug, PartialEq, sqlx::FromRow)]
pub struct GrantRow {
    pub spot_id: SpotId,
    pub connector_id: ConnectorId,
    pub member_id: MemberId,
    pub issued_at: i64,
    pub expires_at: i64,
}

/// Stores the (connector, member) refresh token, replacing any older one.
pub async fn upsert_refresh(
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

/// The grant of a refresh token: looked up in its spot when the token names one
/// (every token minted since migration 0013), else by its hash across spots (older
/// tokens, until they expire; on Citus such a lookup reaches every shard).
pub async fn get_refresh(ex: Ex<'_>, spot_id: Option<SpotId>, hash: &[u8]) -> Result<Option<GrantRow>, sqlx::Error> {
    let sql = match spot_id {
        Some(_) => {
            "SELECT spot_id, connector_id, member_id, issued_at, expires_at FROM kz_refresh_tokens \
                    WHERE token_hash = $1 AND spot_id = $2"
        }
        None => {
            "SELECT spot_id, connector_id, member_id, issued_at, expires_at FROM kz_refresh_tokens \
                 WHERE token_hash = $1"
        }
    };
    run!(ex, |c| {
        let q = sqlx::query_as::<_, GrantRow>(sql).bind(hash);
        match spot_id {
            Some(spot) => q.bind(spot).fetch_optional(c).await,
            None => q.fetch_optional(c).await,
        }
    })
}

pub async fn insert_access(ex: Ex<'_>, g: &GrantRow, hash: &[u8]) -> Result<(), sqlx::Error> {
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
/// Looked up in the token's spot when it names one, as [`get_refresh`].
pub async fn get_access(
    ex: Ex<'_>,
    spot_id: Option<SpotId>,
    hash: &[u8],
) -> Result<Option<(GrantRow, MemberStatus)>, sqlx::Error> {
    let sql = match spot_id {
        Some(_) => {
            "SELECT t.spot_id, t.connector_id, t.member_id, t.expires_at, m.status FROM kz_access_tokens t \
             JOIN members m ON m.spot_id = t.spot_id AND m.id = t.member_id \
             WHERE t.token_hash = $1 AND t.spot_id = $2"
        }
        None => {
            "SELECT t.spot_id, t.connector_id, t.member_id, t.expires_at, m.status FROM kz_access_tokens t \
             JOIN members m ON m.spot_id = t.spot_id AND m.id = t.member_id WHERE t.token_hash = $1"
        }
    };
    run!(ex, |c| {
        let q = sqlx::query_as::<_, (SpotId, ConnectorId, MemberId, i64, MemberStatus)>(sql).bind(hash);
        let row = match spot_id {
            Some(spot) => q.bind(spot).fetch_optional(c).await?,
            None => q.fetch_optional(c).await?,
        };
        Ok(row.map(|(spot_id, connector_id, member_id, expires_at, status)| {
            (GrantRow { spot_id, connector_id, member_id, issued_at: expires_at, expires_at }, status)
        }))
    })
}

/// Revokes every access token of a (connector, member) pair (its refresh token was replaced).
pub async fn delete_access_of_pair(
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
    revoke_members(ex, spot_id, &[member_id]).await
}

/// [`revoke_member`] for several members of a spot at once (a bulk status change), in
/// statements of [`IN_LIST_MAX`] members.
pub async fn revoke_members(mut ex: Ex<'_>, spot_id: SpotId, member_ids: &[MemberId]) -> Result<(), sqlx::Error> {
    for chunk in member_ids.chunks(IN_LIST_MAX) {
        for table in [
            "DELETE FROM kz_access_tokens WHERE spot_id = ",
            "DELETE FROM kz_refresh_tokens WHERE spot_id = ",
            "DELETE FROM kz_pins WHERE spot_id = ",
        ] {
            let mut sql = Sql::new(table);
            sql.push_bind(spot_id.into()).push(" AND member_id IN ").push_list(chunk.iter().map(|id| (*id).into()));
            run!(ex.reborrow(), |c| bind_all!(sqlx::query(sql.text_for(&*c)), &sql.binds)
                .execute(c)
                .await
                .map(|_| ()))?;
        }
    }
    Ok(())
}

/// Drops the spot's expired access tokens.
pub async fn purge_expired_access(ex: Ex<'_>, spot_id: SpotId, now: i64) -> Result<(), sqlx::Error> {
    run!(ex, |c| sqlx::query("DELETE FROM kz_access_tokens WHERE spot_id = $1 AND expires_at < $2")
        .bind(spot_id)
        .bind(now)
        .execute(c)
        .await
        .map(|_| ()))
}

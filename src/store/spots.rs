//! Spots (tenants) and their API-key hashes.

use super::{one_row, Ex};
use crate::domain::ids::SpotId;
use crate::run;

/// One row of `spots` (the API-key hash is read only where it is compared).
#[derive(Clone, Debug, PartialEq, sqlx::FromRow)]
pub struct SpotRow {
    pub id: SpotId,
    pub name: String,
    pub rate_limit_per_10s: Option<i64>,
    pub rate_limit_per_day: Option<i64>,
    pub created_at: i64,
}

const COLUMNS: &str = "id, name, rate_limit_per_10s, rate_limit_per_day, created_at";

/// Inserts the spot and its counters row (zero members); run it in a transaction.
pub async fn insert(ex: Ex<'_>, spot: &SpotRow, key_hash: &[u8]) -> Result<(), sqlx::Error> {
    run!(ex, |c| {
        sqlx::query(
            "INSERT INTO spots (id, name, api_key_hash, rate_limit_per_10s, rate_limit_per_day, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(spot.id)
        .bind(&spot.name)
        .bind(key_hash)
        .bind(spot.rate_limit_per_10s)
        .bind(spot.rate_limit_per_day)
        .bind(spot.created_at)
        .execute(&mut *c)
        .await?;
        sqlx::query("INSERT INTO spot_counters (spot_id, member_count) VALUES ($1, 0)")
            .bind(spot.id)
            .execute(&mut *c)
            .await
            .map(|_| ())
    })
}

pub async fn get(ex: Ex<'_>, id: SpotId) -> Result<Option<SpotRow>, sqlx::Error> {
    let sql = format!("SELECT {COLUMNS} FROM spots WHERE id = $1");
    run!(ex, |c| sqlx::query_as::<_, SpotRow>(&sql).bind(id).fetch_optional(c).await)
}

/// The spot whose key hashes to `hash`, with the stored hash (compared in constant time by the caller).
pub async fn get_by_key_hash(ex: Ex<'_>, hash: &[u8]) -> Result<Option<(SpotRow, Vec<u8>)>, sqlx::Error> {
    let sql = format!("SELECT {COLUMNS}, api_key_hash FROM spots WHERE api_key_hash = $1");
    run!(ex, |c| {
        use sqlx::Row;
        let row = sqlx::query(&sql).bind(hash).fetch_optional(&mut *c).await?;
        match row {
            None => Ok(None),
            Some(r) => {
                let spot = <SpotRow as sqlx::FromRow<_>>::from_row(&r)?;
                let stored: Vec<u8> = r.try_get("api_key_hash")?;
                Ok(Some((spot, stored)))
            }
        }
    })
}

pub async fn list(ex: Ex<'_>) -> Result<Vec<SpotRow>, sqlx::Error> {
    let sql = format!("SELECT {COLUMNS} FROM spots ORDER BY created_at, id");
    run!(ex, |c| sqlx::query_as::<_, SpotRow>(&sql).fetch_all(c).await)
}

/// A spot with its maintained member count.
#[derive(Clone, Debug, PartialEq, sqlx::FromRow)]
pub struct CountedSpotRow {
    #[sqlx(flatten)]
    pub spot: SpotRow,
    pub member_count: i64,
}

/// Every spot with its member count (on Citus a join of the reference table with every
/// shard of `spot_counters`: operator listings only).
pub async fn list_with_member_counts(ex: Ex<'_>) -> Result<Vec<CountedSpotRow>, sqlx::Error> {
    let sql = "SELECT s.id, s.name, s.rate_limit_per_10s, s.rate_limit_per_day, s.created_at, c.member_count \
               FROM spots s JOIN spot_counters c ON c.spot_id = s.id ORDER BY s.created_at, s.id";
    run!(ex, |c| sqlx::query_as::<_, CountedSpotRow>(sql).fetch_all(c).await)
}

/// The spot's maintained member count (None: no such spot): one row by its key.
pub async fn member_count(ex: Ex<'_>, id: SpotId) -> Result<Option<i64>, sqlx::Error> {
    run!(ex, |c| sqlx::query_scalar::<_, i64>("SELECT member_count FROM spot_counters WHERE spot_id = $1")
        .bind(id)
        .fetch_optional(c)
        .await)
}

pub async fn set_key_hash(ex: Ex<'_>, id: SpotId, hash: &[u8]) -> Result<bool, sqlx::Error> {
    run!(ex, |c| one_row(
        sqlx::query("UPDATE spots SET api_key_hash = $2 WHERE id = $1").bind(id).bind(hash).execute(c).await
    ))
}

/// The spot's stored API key hash (None: no such spot).
pub async fn get_key_hash(ex: Ex<'_>, id: SpotId) -> Result<Option<Vec<u8>>, sqlx::Error> {
    run!(ex, |c| sqlx::query_scalar::<_, Vec<u8>>("SELECT api_key_hash FROM spots WHERE id = $1")
        .bind(id)
        .fetch_optional(c)
        .await)
}

/// Replaces the key hash only while it is still `old`; false when it is not (replaced
/// meanwhile) or the spot is gone.
pub async fn replace_key_hash(ex: Ex<'_>, id: SpotId, old: &[u8], new: &[u8]) -> Result<bool, sqlx::Error> {
    run!(ex, |c| one_row(
        sqlx::query("UPDATE spots SET api_key_hash = $3 WHERE id = $1 AND api_key_hash = $2")
            .bind(id)
            .bind(old)
            .bind(new)
            .execute(c)
            .await
    ))
}

pub async fn set_limits(
    ex: Ex<'_>,
    id: SpotId,
    per_10s: Option<i64>,
    per_day: Option<i64>,
) -> Result<bool, sqlx::Error> {
    run!(ex, |c| one_row(
        sqlx::query(
            "UPDATE spots SET rate_limit_per_10s = COALESCE($2, rate_limit_per_10s), \
         rate_limit_per_day = COALESCE($3, rate_limit_per_day) WHERE id = $1"
        )
        .bind(id)
        .bind(per_10s)
        .bind(per_day)
        .execute(c)
        .await
    ))
}

pub async fn delete(ex: Ex<'_>, id: SpotId) -> Result<bool, sqlx::Error> {
    run!(ex, |c| one_row(sqlx::query("DELETE FROM spots WHERE id = $1").bind(id).execute(c).await))
}

/// Adds `delta` to the spot's maintained member count (same transaction as the write).
pub async fn add_member_count(ex: Ex<'_>, id: SpotId, delta: i64) -> Result<(), sqlx::Error> {
    run!(ex, |c| sqlx::query("UPDATE spot_counters SET member_count = member_count + $2 WHERE spot_id = $1")
        .bind(id)
        .bind(delta)
        .execute(c)
        .await
        .map(|_| ()))
}

/// The spot's name and the display name of its invitation emails (None: not set).
pub async fn get_email_sender(ex: Ex<'_>, id: SpotId) -> Result<Option<(String, Option<String>)>, sqlx::Error> {
    run!(ex, |c| sqlx::query_as::<_, (String, Option<String>)>(
        "SELECT name, email_sender_name FROM spots WHERE id = $1"
    )
    .bind(id)
    .fetch_optional(c)
    .await)
}

/// Sets (or with None clears) the display name of the spot's invitation emails.
pub async fn set_email_sender_name(ex: Ex<'_>, id: SpotId, name: Option<&str>) -> Result<bool, sqlx::Error> {
    run!(ex, |c| one_row(
        sqlx::query("UPDATE spots SET email_sender_name = $2 WHERE id = $1").bind(id).bind(name).execute(c).await
    ))
}

//! Fixed rate-limit windows shared by all replicas (contract §3, §7).
//!
//! On PostgreSQL the windows are a table of the database. On SQLite they are in a
//! companion database file of their own ([`super::SqliteLimits`]), so that the
//! limiter's frequent commits leave the readers' page caches of the main file warm;
//! the connection comes from [`super::Db::limits_conn`] on both.

use sqlx::{SqliteConnection, SqlitePool};

use super::Ex;
use crate::domain::ids::SpotId;
use crate::run;

/// The schema of SQLite's companion database, made when its connection opens (the
/// same table as PostgreSQL's migration 0001 creates).
const COMPANION_SCHEMA: &str = "CREATE TABLE IF NOT EXISTS rate_limit_windows (\
     spot_id BLOB NOT NULL, scope TEXT NOT NULL, window_start BIGINT NOT NULL, used BIGINT NOT NULL, \
     PRIMARY KEY (spot_id, scope, window_start))";

/// Creates the windows' table in a new connection to SQLite's companion database.
pub(super) async fn create_companion_schema(c: &mut SqliteConnection) -> Result<(), sqlx::Error> {
    sqlx::query(COMPANION_SCHEMA).execute(c).await.map(|_| ())
}

/// Before SQLite's migration 0017 drops `rate_limit_windows` from the main file, copies
/// its windows of the last two days into the companion (a window already there keeps
/// the larger count), so that an upgrade does not hand spots a fresh day's budget.
/// Nothing to do once the table is gone. Returns the windows copied.
pub(super) async fn carry_over_to_companion(main: &SqlitePool, companion: &SqlitePool) -> Result<u64, sqlx::Error> {
    let in_main: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM main.sqlite_master WHERE type = 'table' AND name = 'rate_limit_windows'",
    )
    .fetch_one(main)
    .await?;
    if in_main == 0 {
        return Ok(0);
    }
    const TWO_DAYS_MS: i64 = 2 * 86_400_000;
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64);
    let since = now - TWO_DAYS_MS;
    let windows: Vec<(Vec<u8>, String, i64, i64)> = sqlx::query_as(
        "SELECT spot_id, scope, window_start, used FROM main.rate_limit_windows WHERE window_start >= $1",
    )
    .bind(since)
    .fetch_all(main)
    .await?;
    let mut tx = companion.begin().await?;
    for (spot_id, scope, window_start, used) in &windows {
        sqlx::query(
            "INSERT INTO rate_limit_windows (spot_id, scope, window_start, used) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (spot_id, scope, window_start) DO UPDATE SET used = MAX(used, excluded.used)",
        )
        .bind(spot_id)
        .bind(scope)
        .bind(window_start)
        .bind(used)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    Ok(windows.len() as u64)
}

/// Takes `n` requests from the window if that keeps it within `limit`; returns the
/// window's new total, or `None` when it would not fit.
pub async fn try_take(
    ex: Ex<'_>,
    spot_id: SpotId,
    scope: &str,
    window_start: i64,
    n: i64,
    limit: i64,
) -> Result<Option<i64>, sqlx::Error> {
    if n > limit {
        return Ok(None);
    }
    run!(ex, |c| {
        sqlx::query_scalar::<_, i64>(
            "INSERT INTO rate_limit_windows (spot_id, scope, window_start, used) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (spot_id, scope, window_start) DO UPDATE SET used = rate_limit_windows.used + excluded.used \
         WHERE rate_limit_windows.used + excluded.used <= $5 RETURNING used",
        )
        .bind(spot_id)
        .bind(scope)
        .bind(window_start)
        .bind(n)
        .bind(limit)
        .fetch_optional(c)
        .await
    })
}

/// Requests granted so far in a window.
pub async fn used(ex: Ex<'_>, spot_id: SpotId, scope: &str, window_start: i64) -> Result<i64, sqlx::Error> {
    run!(ex, |c| {
        sqlx::query_scalar::<_, i64>(
            "SELECT used FROM rate_limit_windows WHERE spot_id = $1 AND scope = $2 AND window_start = $3",
        )
        .bind(spot_id)
        .bind(scope)
        .bind(window_start)
        .fetch_optional(c)
        .await
        .map(|v| v.unwrap_or(0))
    })
}

/// Drops the spot's windows of `scope` that started before `before_ms` (index-served
/// by the primary key; done once per window rollover).
pub async fn purge_before(ex: Ex<'_>, spot_id: SpotId, scope: &str, before_ms: i64) -> Result<u64, sqlx::Error> {
    run!(ex, |c| sqlx::query("DELETE FROM rate_limit_windows WHERE spot_id = $1 AND scope = $2 AND window_start < $3")
        .bind(spot_id)
        .bind(scope)
        .bind(before_ms)
        .execute(c)
        .await
        .map(|r| r.rows_affected()))
}

/// Takes back one request granted in a window (never below zero).
pub async fn give_back(ex: Ex<'_>, spot_id: SpotId, scope: &str, window_start: i64) -> Result<(), sqlx::Error> {
    run!(ex, |c| sqlx::query(
        "UPDATE rate_limit_windows SET used = used - 1 WHERE spot_id = $1 AND scope = $2 AND window_start = $3 \
         AND used > 0"
    )
    .bind(spot_id)
    .bind(scope)
    .bind(window_start)
    .execute(c)
    .await
    .map(|_| ()))
}

/// Drops every window, of any spot and scope, that started before `before_ms`.
pub async fn purge_all_before(ex: Ex<'_>, before_ms: i64) -> Result<u64, sqlx::Error> {
    run!(ex, |c| sqlx::query("DELETE FROM rate_limit_windows WHERE window_start < $1")
        .bind(before_ms)
        .execute(c)
        .await
        .map(|r| r.rows_affected()))
}

pub async fn delete_spot(ex: Ex<'_>, spot_id: SpotId) -> Result<(), sqlx::Error> {
    run!(ex, |c| sqlx::query("DELETE FROM rate_limit_windows WHERE spot_id = $1")
        .bind(spot_id)
        .execute(c)
        .await
        .map(|_| ()))
}

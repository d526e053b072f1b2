//! Fixed rate-limit windows shared by all replicas (contract §3, §7).

use super::Ex;
use crate::domain::ids::SpotId;
use crate::run;

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

//! A smart group's computation state on its `spot_groups` row: the lease a replica
//! holds while computing it, its readiness, and the PostgreSQL transaction bookkeeping
//! that lets a computation wait for member writes that could not see the group yet.
//! Kept apart from [`super::groups`] (the group's plain CRUD) because only the
//! computation (`domain::groups`) and the code deciding which smart groups a write
//! invalidates (property and import changes) use these.

use super::{one_row, Ex};
use crate::domain::ids::{GroupId, SpotId};
use crate::run;

/// Takes the computation lease of a smart group that is not ready, if free or lapsed.
pub async fn claim_compute(
    ex: Ex<'_>,
    spot_id: SpotId,
    id: GroupId,
    now: i64,
    until: i64,
) -> Result<bool, sqlx::Error> {
    run!(ex, |c| {
        let outcome = sqlx::query(
            "UPDATE spot_groups SET compute_lease_until = $4 WHERE spot_id = $1 AND id = $2 AND ready = $5 \
         AND (compute_lease_until IS NULL OR compute_lease_until < $3)",
        )
        .bind(spot_id)
        .bind(id)
        .bind(now)
        .bind(until)
        .bind(false)
        .execute(c)
        .await;
        one_row(outcome)
    })
}

pub async fn extend_lease(ex: Ex<'_>, spot_id: SpotId, id: GroupId, until: i64) -> Result<(), sqlx::Error> {
    run!(ex, |c| sqlx::query("UPDATE spot_groups SET compute_lease_until = $3 WHERE spot_id = $1 AND id = $2")
        .bind(spot_id)
        .bind(id)
        .bind(until)
        .execute(c)
        .await
        .map(|_| ()))
}

/// Marks a smart group for recomputation: not ready, no lease (so any replica's
/// housekeeping takes it up if no one starts it).
pub async fn set_not_ready(ex: Ex<'_>, spot_id: SpotId, id: GroupId) -> Result<(), sqlx::Error> {
    run!(ex, |c| {
        sqlx::query("UPDATE spot_groups SET ready = $3, compute_lease_until = NULL WHERE spot_id = $1 AND id = $2")
            .bind(spot_id)
            .bind(id)
            .bind(false)
            .execute(c)
            .await
            .map(|_| ())
    })
}

pub async fn set_ready(ex: Ex<'_>, spot_id: SpotId, id: GroupId) -> Result<(), sqlx::Error> {
    run!(ex, |c| {
        sqlx::query("UPDATE spot_groups SET ready = $3, compute_lease_until = NULL WHERE spot_id = $1 AND id = $2")
            .bind(spot_id)
            .bind(id)
            .bind(true)
            .execute(c)
            .await
            .map(|_| ())
    })
}

/// PostgreSQL: the ids of the transactions in progress right now. A member write that
/// began before a smart group committed may have evaluated its member without seeing
/// the group, while its rows are still invisible to the group's computation; the
/// computation waits for these to finish first. Empty on SQLite, whose writers are
/// serialised (a write transaction ends before the group's transaction can start).
pub async fn transactions_in_progress(ex: Ex<'_>) -> Result<Vec<i64>, sqlx::Error> {
    match ex {
        Ex::Sqlite(_) => Ok(Vec::new()),
        Ex::Postgres(c) => {
            sqlx::query_scalar::<_, i64>("SELECT txid_snapshot_xip(txid_current_snapshot())::bigint").fetch_all(c).await
        }
    }
}

/// PostgreSQL: how many of `xids` (from [`transactions_in_progress`]) are still running.
pub async fn count_in_progress(ex: Ex<'_>, xids: &[i64]) -> Result<i64, sqlx::Error> {
    match ex {
        Ex::Sqlite(_) => Ok(0),
        Ex::Postgres(_) if xids.is_empty() => Ok(0),
        Ex::Postgres(c) => {
            sqlx::query_scalar::<_, i64>(
                "SELECT COUNT(*) FROM unnest($1::bigint[]) AS x(id) WHERE txid_status(x.id) = 'in progress'",
            )
            .bind(xids)
            .fetch_one(c)
            .await
        }
    }
}

/// Smart groups not ready whose lease is free or lapsed (work a replica may take over).
pub async fn pending_computes(ex: Ex<'_>, now: i64) -> Result<Vec<(SpotId, GroupId)>, sqlx::Error> {
    run!(ex, |c| {
        sqlx::query_as::<_, (SpotId, GroupId)>(
        "SELECT spot_id, id FROM spot_groups WHERE ready = $1 AND (compute_lease_until IS NULL OR compute_lease_until < $2)"
    )
    .bind(false)
    .bind(now)
    .fetch_all(c)
    .await
    })
}

/// The spot's smart groups: (id, rules JSON).
pub async fn list(ex: Ex<'_>, spot_id: SpotId) -> Result<Vec<(GroupId, String)>, sqlx::Error> {
    run!(ex, |c| {
        sqlx::query_as::<_, (GroupId, String)>(
            "SELECT id, rules FROM spot_groups WHERE spot_id = $1 AND kind = 'Smart' AND rules IS NOT NULL ORDER BY id",
        )
        .bind(spot_id)
        .fetch_all(c)
        .await
    })
}

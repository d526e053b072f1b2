//! Kaizala sub-group links (`group_links`): which group is a sub-group of which. Only
//! the Kaizala dialect has sub-groups; the links are their own table so that a group
//! row stays the same for both dialects.

use super::{one_row, Ex};
use crate::domain::ids::{GroupId, SpotId};
use crate::run;

/// Links `child` under `parent`; false when it was already.
pub async fn insert(ex: Ex<'_>, spot_id: SpotId, parent: GroupId, child: GroupId) -> Result<bool, sqlx::Error> {
    run!(ex, |c| {
        let outcome = sqlx::query(
            "INSERT INTO group_links (spot_id, parent_id, child_id) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
        )
        .bind(spot_id)
        .bind(parent)
        .bind(child)
        .execute(c)
        .await;
        one_row(outcome)
    })
}

/// Unlinks `child` from `parent`; false when they were not linked.
pub async fn delete(ex: Ex<'_>, spot_id: SpotId, parent: GroupId, child: GroupId) -> Result<bool, sqlx::Error> {
    run!(ex, |c| {
        let outcome = sqlx::query("DELETE FROM group_links WHERE spot_id = $1 AND parent_id = $2 AND child_id = $3")
            .bind(spot_id)
            .bind(parent)
            .bind(child)
            .execute(c)
            .await;
        one_row(outcome)
    })
}

/// (parent, child) links of the spot.
pub async fn list(ex: Ex<'_>, spot_id: SpotId) -> Result<Vec<(GroupId, GroupId)>, sqlx::Error> {
    run!(ex, |c| sqlx::query_as::<_, (GroupId, GroupId)>(
        "SELECT parent_id, child_id FROM group_links WHERE spot_id = $1 ORDER BY child_id"
    )
    .bind(spot_id)
    .fetch_all(c)
    .await)
}

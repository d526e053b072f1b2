//! Smart-group blacklists (`group_blacklist`): the members kept out of a smart group
//! whatever its rules say. A table of its own because both the group's computation
//! and every re-evaluation of one member read it.

use super::{one_row, Ex};
use crate::domain::ids::{GroupId, MemberId, SpotId};
use crate::run;

/// Blacklists the member in the group; false when it was already.
pub async fn insert(ex: Ex<'_>, spot_id: SpotId, group_id: GroupId, member_id: MemberId) -> Result<bool, sqlx::Error> {
    run!(ex, |c| {
        let outcome = sqlx::query(
            "INSERT INTO group_blacklist (spot_id, group_id, member_id) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
        )
        .bind(spot_id)
        .bind(group_id)
        .bind(member_id)
        .execute(c)
        .await;
        one_row(outcome)
    })
}

/// Takes the member off the group's blacklist; false when it was not on it.
pub async fn delete(ex: Ex<'_>, spot_id: SpotId, group_id: GroupId, member_id: MemberId) -> Result<bool, sqlx::Error> {
    run!(ex, |c| {
        let outcome =
            sqlx::query("DELETE FROM group_blacklist WHERE spot_id = $1 AND group_id = $2 AND member_id = $3")
                .bind(spot_id)
                .bind(group_id)
                .bind(member_id)
                .execute(c)
                .await;
        one_row(outcome)
    })
}

/// The ids of the members on the group's blacklist, in id order.
pub async fn list(ex: Ex<'_>, spot_id: SpotId, group_id: GroupId) -> Result<Vec<MemberId>, sqlx::Error> {
    run!(ex, |c| {
        sqlx::query_scalar::<_, MemberId>(
            "SELECT member_id FROM group_blacklist WHERE spot_id = $1 AND group_id = $2 ORDER BY member_id",
        )
        .bind(spot_id)
        .bind(group_id)
        .fetch_all(c)
        .await
    })
}

/// Whether the group's blacklist holds the member.
pub async fn contains(
    ex: Ex<'_>,
    spot_id: SpotId,
    group_id: GroupId,
    member_id: MemberId,
) -> Result<bool, sqlx::Error> {
    run!(ex, |c| {
        sqlx::query_scalar::<_, i64>(
            "SELECT COUNT(*) FROM group_blacklist WHERE spot_id = $1 AND group_id = $2 AND member_id = $3",
        )
        .bind(spot_id)
        .bind(group_id)
        .bind(member_id)
        .fetch_one(c)
        .await
        .map(|n| n > 0)
    })
}

/// Ids of the groups whose blacklist holds the member.
pub async fn groups_of_member(ex: Ex<'_>, spot_id: SpotId, member_id: MemberId) -> Result<Vec<GroupId>, sqlx::Error> {
    run!(ex, |c| sqlx::query_scalar::<_, GroupId>(
        "SELECT group_id FROM group_blacklist WHERE spot_id = $1 AND member_id = $2"
    )
    .bind(spot_id)
    .bind(member_id)
    .fetch_all(c)
    .await)
}

//! Course <-> group links (`course_groups`): the members of a linked group are invited
//! to the course, now and as they join it. Its own table, read from both sides (a
//! course's groups, a group's courses).

use super::Ex;
use crate::domain::ids::{CourseId, GroupId, SpotId};
use crate::run;

/// Links the course to the group (a no-op when linked already).
pub async fn insert(ex: Ex<'_>, spot_id: SpotId, course_id: CourseId, group_id: GroupId) -> Result<(), sqlx::Error> {
    run!(ex, |c| sqlx::query(
        "INSERT INTO course_groups (spot_id, course_id, group_id) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING"
    )
    .bind(spot_id)
    .bind(course_id)
    .bind(group_id)
    .execute(c)
    .await
    .map(|_| ()))
}

/// Unlinks the course from the group (a no-op when not linked).
pub async fn delete(ex: Ex<'_>, spot_id: SpotId, course_id: CourseId, group_id: GroupId) -> Result<(), sqlx::Error> {
    run!(ex, |c| sqlx::query("DELETE FROM course_groups WHERE spot_id = $1 AND course_id = $2 AND group_id = $3")
        .bind(spot_id)
        .bind(course_id)
        .bind(group_id)
        .execute(c)
        .await
        .map(|_| ()))
}

/// Whether the course is linked to the group.
pub async fn contains(
    ex: Ex<'_>,
    spot_id: SpotId,
    course_id: CourseId,
    group_id: GroupId,
) -> Result<bool, sqlx::Error> {
    run!(ex, |c| sqlx::query_scalar::<_, i64>(
        "SELECT COUNT(*) FROM course_groups WHERE spot_id = $1 AND course_id = $2 AND group_id = $3"
    )
    .bind(spot_id)
    .bind(course_id)
    .bind(group_id)
    .fetch_one(c)
    .await
    .map(|n| n > 0))
}

/// Courses linked to a group.
pub async fn courses_of_group(ex: Ex<'_>, spot_id: SpotId, group_id: GroupId) -> Result<Vec<CourseId>, sqlx::Error> {
    run!(ex, |c| sqlx::query_scalar::<_, CourseId>(
        "SELECT course_id FROM course_groups WHERE spot_id = $1 AND group_id = $2"
    )
    .bind(spot_id)
    .bind(group_id)
    .fetch_all(c)
    .await)
}

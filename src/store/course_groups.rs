//! Course <-> group links (`course_groups`): the members of a linked group are invited
//! to the course, now and as they join it. Its own table, read from both sides (a
//! course's groups, a group's courses).
//!
//! A link also carries the background job that invites the group's members at the
//! time of the link (migration 0012, `domain::courses`): `ready` once every one of them
//! is invited, the cursor `invited_through` (the last member id invited, in id order)
//! and the lease of the process working it (`leased_by`, `lease_until`, ms).

use uuid::Uuid;

use super::{one_row, Ex};
use crate::domain::ids::{CourseId, GroupId, MemberId, SpotId};
use crate::run;

/// Links the course to the group. A new link is written `ready` as given (false: its
/// members are still to be invited, by a job). An existing link that is ready takes
/// `ready` again with its cursor reset (false: its members are invited once more, from
/// the first); one whose job is under way is left as it is. Returns whether the link is
/// ready after the call.
pub async fn insert(
    ex: Ex<'_>,
    spot_id: SpotId,
    course_id: CourseId,
    group_id: GroupId,
    ready: bool,
) -> Result<bool, sqlx::Error> {
    run!(ex, |c| sqlx::query_scalar::<_, bool>(
        "INSERT INTO course_groups (spot_id, course_id, group_id, ready) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (spot_id, course_id, group_id) DO UPDATE SET ready = excluded.ready, invited_through = NULL \
         WHERE course_groups.ready = $5 RETURNING ready"
    )
    .bind(spot_id)
    .bind(course_id)
    .bind(group_id)
    .bind(ready)
    .bind(true)
    .fetch_optional(c)
    .await
    // No row returned: the link's job is under way (not ready).
    .map(|r| r.unwrap_or(false)))
}

/// Unlinks the course from the group (a no-op when not linked). A job working the link
/// stops at its next slice.
pub async fn delete(ex: Ex<'_>, spot_id: SpotId, course_id: CourseId, group_id: GroupId) -> Result<(), sqlx::Error> {
    run!(ex, |c| sqlx::query("DELETE FROM course_groups WHERE spot_id = $1 AND course_id = $2 AND group_id = $3")
        .bind(spot_id)
        .bind(course_id)
        .bind(group_id)
        .execute(c)
        .await
        .map(|_| ()))
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

/// Takes the lease of a link that is not ready for `process` until `until`, if the
/// lease is free, lapsed (before `now`) or `process`'s already.
pub async fn claim(
    ex: Ex<'_>,
    spot_id: SpotId,
    course_id: CourseId,
    group_id: GroupId,
    process: Uuid,
    now: i64,
    until: i64,
) -> Result<bool, sqlx::Error> {
    run!(ex, |c| one_row(
        sqlx::query(
            "UPDATE course_groups SET leased_by = $4, lease_until = $6 \
             WHERE spot_id = $1 AND course_id = $2 AND group_id = $3 AND ready = $7 \
             AND (lease_until IS NULL OR lease_until < $5 OR leased_by = $4)"
        )
        .bind(spot_id)
        .bind(course_id)
        .bind(group_id)
        .bind(process)
        .bind(now)
        .bind(until)
        .bind(false)
        .execute(c)
        .await
    ))
}

/// Extends `process`'s lease on a link that is not ready until `until` and returns the
/// link's cursor (`Some(None)` before the first member); None when the link is gone,
/// ready or leased by another process. On PostgreSQL the row stays locked until the
/// transaction ends, so an unlink or a takeover waits for it.
pub async fn renew(
    ex: Ex<'_>,
    spot_id: SpotId,
    course_id: CourseId,
    group_id: GroupId,
    process: Uuid,
    until: i64,
) -> Result<Option<Option<MemberId>>, sqlx::Error> {
    run!(ex, |c| sqlx::query_scalar::<_, Option<MemberId>>(
        "UPDATE course_groups SET lease_until = $5 \
         WHERE spot_id = $1 AND course_id = $2 AND group_id = $3 AND ready = $6 AND leased_by = $4 \
         RETURNING invited_through"
    )
    .bind(spot_id)
    .bind(course_id)
    .bind(group_id)
    .bind(process)
    .bind(until)
    .bind(false)
    .fetch_optional(c)
    .await)
}

/// Moves a link's cursor: every member up to `through` (in id order) is invited.
pub async fn advance(
    ex: Ex<'_>,
    spot_id: SpotId,
    course_id: CourseId,
    group_id: GroupId,
    through: MemberId,
) -> Result<(), sqlx::Error> {
    run!(ex, |c| sqlx::query(
        "UPDATE course_groups SET invited_through = $4 WHERE spot_id = $1 AND course_id = $2 AND group_id = $3"
    )
    .bind(spot_id)
    .bind(course_id)
    .bind(group_id)
    .bind(through)
    .execute(c)
    .await
    .map(|_| ()))
}

/// Marks a link ready (every member invited) and frees its lease.
pub async fn set_ready(ex: Ex<'_>, spot_id: SpotId, course_id: CourseId, group_id: GroupId) -> Result<(), sqlx::Error> {
    run!(ex, |c| sqlx::query(
        "UPDATE course_groups SET ready = $4, invited_through = NULL, lease_until = NULL, leased_by = NULL \
         WHERE spot_id = $1 AND course_id = $2 AND group_id = $3"
    )
    .bind(spot_id)
    .bind(course_id)
    .bind(group_id)
    .bind(true)
    .execute(c)
    .await
    .map(|_| ()))
}

/// Links that are not ready and that `process` may work: lease free, lapsed (before
/// `now`) or its own (a job of its that failed). Every spot's: housekeeping's query.
pub async fn pending(ex: Ex<'_>, now: i64, process: Uuid) -> Result<Vec<(SpotId, CourseId, GroupId)>, sqlx::Error> {
    run!(ex, |c| sqlx::query_as::<_, (SpotId, CourseId, GroupId)>(
        "SELECT spot_id, course_id, group_id FROM course_groups \
         WHERE ready = $1 AND (lease_until IS NULL OR lease_until < $2 OR leased_by = $3)"
    )
    .bind(false)
    .bind(now)
    .bind(process)
    .fetch_all(c)
    .await)
}

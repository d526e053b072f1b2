//! Courses, participants and course <-> group links.

use uuid::Uuid;

use super::sql::{Bind, Sql};
use super::Ex;
use crate::domain::courses::{Course, Participant};
use crate::domain::filter::Predicate;
use crate::{bind_all, run};

const COURSE_COLUMNS: &str = "spot_id, id, title, description, privacy, status, navigation_mode, participant_count";
const PARTICIPANT_COLUMNS: &str = "p.spot_id, p.id, p.course_id, p.member_id, p.status, p.invited_by, p.invited_at, \
    p.started_at, p.completed_at, p.unenrolled_at, p.last_activity_at, p.completion_rate, m.email AS member_email, \
    m.firstname AS member_firstname, m.lastname AS member_lastname";
const PARTICIPANT_FROM: &str =
    "FROM course_participants p JOIN members m ON m.spot_id = p.spot_id AND m.id = p.member_id WHERE p.spot_id = ";

pub async fn insert_course(ex: Ex<'_>, c_: &Course, now: i64) -> Result<(), sqlx::Error> {
    run!(ex, |c| sqlx::query(
        "INSERT INTO courses (spot_id, id, title, description, privacy, status, navigation_mode, participant_count, \
         created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, 0, $8)"
    )
    .bind(c_.spot_id)
    .bind(c_.id)
    .bind(&c_.title)
    .bind(&c_.description)
    .bind(&c_.privacy)
    .bind(&c_.status)
    .bind(&c_.navigation_mode)
    .bind(now)
    .execute(c)
    .await
    .map(|_| ()))
}

pub async fn get_course(ex: Ex<'_>, spot_id: Uuid, id: Uuid) -> Result<Option<Course>, sqlx::Error> {
    let sql = format!("SELECT {COURSE_COLUMNS} FROM courses WHERE spot_id = $1 AND id = $2");
    run!(ex, |c| sqlx::query_as::<_, Course>(&sql).bind(spot_id).bind(id).fetch_optional(c).await)
}

pub async fn list_courses(
    ex: Ex<'_>,
    spot_id: Uuid,
    filters: &[Predicate],
    offset: i64,
    limit: i64,
) -> Result<(Vec<Course>, i64), sqlx::Error> {
    super::sql::page(ex, "courses", COURSE_COLUMNS, spot_id, filters, offset, limit).await
}

/// Takes the course's row lock until the transaction ends (PostgreSQL; SQLite
/// transactions are already serialised by `BEGIN IMMEDIATE`); false when there is no
/// such course. Every write to a course's participants holds it, so concurrent
/// invitations of one member cannot both create (or re-invite) the participant.
pub async fn lock_course(ex: Ex<'_>, spot_id: Uuid, id: Uuid) -> Result<bool, sqlx::Error> {
    run!(ex, |c| sqlx::query("UPDATE courses SET participant_count = participant_count WHERE spot_id = $1 AND id = $2")
        .bind(spot_id)
        .bind(id)
        .execute(c)
        .await
        .map(|r| r.rows_affected() == 1))
}

/// Takes a participant's row lock until the transaction ends (see [`lock_course`]);
/// false when there is no such participant in the course.
pub async fn lock_participant(ex: Ex<'_>, spot_id: Uuid, course_id: Uuid, id: Uuid) -> Result<bool, sqlx::Error> {
    run!(ex, |c| sqlx::query(
        "UPDATE course_participants SET status = status WHERE spot_id = $1 AND course_id = $2 AND id = $3"
    )
    .bind(spot_id)
    .bind(course_id)
    .bind(id)
    .execute(c)
    .await
    .map(|r| r.rows_affected() == 1))
}

pub async fn update_course(ex: Ex<'_>, c_: &Course) -> Result<(), sqlx::Error> {
    run!(ex, |c| sqlx::query(
        "UPDATE courses SET title = $3, description = $4, privacy = $5, status = $6, navigation_mode = $7 \
         WHERE spot_id = $1 AND id = $2"
    )
    .bind(c_.spot_id)
    .bind(c_.id)
    .bind(&c_.title)
    .bind(&c_.description)
    .bind(&c_.privacy)
    .bind(&c_.status)
    .bind(&c_.navigation_mode)
    .execute(c)
    .await
    .map(|_| ()))
}

pub async fn delete_course(ex: Ex<'_>, spot_id: Uuid, id: Uuid) -> Result<bool, sqlx::Error> {
    run!(ex, |c| sqlx::query("DELETE FROM courses WHERE spot_id = $1 AND id = $2")
        .bind(spot_id)
        .bind(id)
        .execute(c)
        .await
        .map(|r| r.rows_affected() == 1))
}

pub async fn add_participant_count(ex: Ex<'_>, spot_id: Uuid, id: Uuid, delta: i64) -> Result<(), sqlx::Error> {
    if delta == 0 {
        return Ok(());
    }
    run!(ex, |c| sqlx::query(
        "UPDATE courses SET participant_count = participant_count + $3 WHERE spot_id = $1 AND id = $2"
    )
    .bind(spot_id)
    .bind(id)
    .bind(delta)
    .execute(c)
    .await
    .map(|_| ()))
}

/// Inserts new `Invited` participants for `member_ids` (those not yet participants),
/// in multi-row statements; returns how many were inserted.
pub async fn insert_invited(
    ex: Ex<'_>,
    spot_id: Uuid,
    course_id: Uuid,
    member_ids: &[(Uuid, Uuid)],
    invited_by: Option<Uuid>,
    now: i64,
) -> Result<u64, sqlx::Error> {
    if member_ids.is_empty() {
        return Ok(0);
    }
    let mut sql = Sql::new(
        "INSERT INTO course_participants (spot_id, id, course_id, member_id, status, invited_by, invited_at, \
         completion_rate) VALUES ",
    );
    for (i, (participant_id, member_id)) in member_ids.iter().enumerate() {
        if i > 0 {
            sql.push(", ");
        }
        sql.push("(").push_bind(Bind::Uuid(spot_id)).push(", ").push_bind(Bind::Uuid(*participant_id));
        sql.push(", ").push_bind(Bind::Uuid(course_id)).push(", ").push_bind(Bind::Uuid(*member_id));
        sql.push(", 'Invited', ");
        match invited_by {
            Some(by) => sql.push_bind(Bind::Uuid(by)),
            None => sql.push("NULL"),
        };
        sql.push(", ").push_bind(Bind::I64(now)).push(", 0)");
    }
    sql.push(" ON CONFLICT DO NOTHING");
    run!(ex, |c| bind_all!(sqlx::query(sql.text_for(&*c)), &sql.binds).execute(c).await.map(|r| r.rows_affected()))
}

pub async fn get_participant(
    ex: Ex<'_>,
    spot_id: Uuid,
    course_id: Uuid,
    id: Uuid,
) -> Result<Option<Participant>, sqlx::Error> {
    let sql = format!("SELECT {PARTICIPANT_COLUMNS} {PARTICIPANT_FROM}$1 AND p.course_id = $2 AND p.id = $3");
    run!(ex, |c| sqlx::query_as::<_, Participant>(&sql).bind(spot_id).bind(course_id).bind(id).fetch_optional(c).await)
}

/// The participants of `course_id` among `member_ids`.
pub async fn participants_of_members(
    ex: Ex<'_>,
    spot_id: Uuid,
    course_id: Uuid,
    member_ids: &[Uuid],
) -> Result<Vec<Participant>, sqlx::Error> {
    if member_ids.is_empty() {
        return Ok(Vec::new());
    }
    let mut sql = Sql::from_parts(&["SELECT ", PARTICIPANT_COLUMNS, " ", PARTICIPANT_FROM]);
    sql.push_bind(Bind::Uuid(spot_id)).push(" AND p.course_id = ").push_bind(Bind::Uuid(course_id));
    sql.push(" AND p.member_id IN ");
    sql.push_list(member_ids.iter().map(|id| Bind::Uuid(*id))).push(" ORDER BY p.id");
    run!(ex, |c| bind_all!(sqlx::query_as::<_, Participant>(sql.text_for(&*c)), &sql.binds).fetch_all(c).await)
}

/// The members among `member_ids` who participate in the course (any status).
pub async fn participating(
    ex: Ex<'_>,
    spot_id: Uuid,
    course_id: Uuid,
    member_ids: &[Uuid],
) -> Result<Vec<Uuid>, sqlx::Error> {
    if member_ids.is_empty() {
        return Ok(Vec::new());
    }
    let mut sql = Sql::new("SELECT member_id FROM course_participants WHERE spot_id = ");
    sql.push_bind(Bind::Uuid(spot_id)).push(" AND course_id = ").push_bind(Bind::Uuid(course_id));
    sql.push(" AND member_id IN ").push_list(member_ids.iter().map(|id| Bind::Uuid(*id)));
    run!(ex, |c| bind_all!(sqlx::query_scalar::<_, Uuid>(sql.text_for(&*c)), &sql.binds).fetch_all(c).await)
}

pub async fn list_participants(
    ex: Ex<'_>,
    spot_id: Uuid,
    course_id: Uuid,
    filters: &[Predicate],
    offset: i64,
    limit: i64,
) -> Result<Vec<Participant>, sqlx::Error> {
    let mut sql = Sql::from_parts(&["SELECT ", PARTICIPANT_COLUMNS, " ", PARTICIPANT_FROM]);
    sql.push_bind(Bind::Uuid(spot_id)).push(" AND p.course_id = ").push_bind(Bind::Uuid(course_id));
    sql.push_predicates(filters);
    sql.push(" ORDER BY p.id LIMIT ").push_bind(Bind::I64(limit)).push(" OFFSET ").push_bind(Bind::I64(offset));
    run!(ex, |c| bind_all!(sqlx::query_as::<_, Participant>(sql.text_for(&*c)), &sql.binds).fetch_all(c).await)
}

pub async fn count_participants(
    ex: Ex<'_>,
    spot_id: Uuid,
    course_id: Uuid,
    filters: &[Predicate],
) -> Result<i64, sqlx::Error> {
    let mut sql = Sql::new("SELECT COUNT(*) ");
    sql.push(PARTICIPANT_FROM)
        .push_bind(Bind::Uuid(spot_id))
        .push(" AND p.course_id = ")
        .push_bind(Bind::Uuid(course_id));
    sql.push_predicates(filters);
    run!(ex, |c| bind_all!(sqlx::query_scalar::<_, i64>(sql.text_for(&*c)), &sql.binds).fetch_one(c).await)
}

pub async fn update_participant(ex: Ex<'_>, p: &Participant) -> Result<(), sqlx::Error> {
    run!(ex, |c| sqlx::query(
        "UPDATE course_participants SET status = $3, invited_by = $4, invited_at = $5, started_at = $6, \
         completed_at = $7, unenrolled_at = $8, last_activity_at = $9, completion_rate = $10 \
         WHERE spot_id = $1 AND id = $2"
    )
    .bind(p.spot_id)
    .bind(p.id)
    .bind(&p.status)
    .bind(p.invited_by)
    .bind(p.invited_at)
    .bind(p.started_at)
    .bind(p.completed_at)
    .bind(p.unenrolled_at)
    .bind(p.last_activity_at)
    .bind(p.completion_rate)
    .execute(c)
    .await
    .map(|_| ()))
}

pub async fn link_group(ex: Ex<'_>, spot_id: Uuid, course_id: Uuid, group_id: Uuid) -> Result<(), sqlx::Error> {
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

pub async fn unlink_group(ex: Ex<'_>, spot_id: Uuid, course_id: Uuid, group_id: Uuid) -> Result<(), sqlx::Error> {
    run!(ex, |c| sqlx::query("DELETE FROM course_groups WHERE spot_id = $1 AND course_id = $2 AND group_id = $3")
        .bind(spot_id)
        .bind(course_id)
        .bind(group_id)
        .execute(c)
        .await
        .map(|_| ()))
}

/// Whether the course is linked to the group.
pub async fn is_linked(ex: Ex<'_>, spot_id: Uuid, course_id: Uuid, group_id: Uuid) -> Result<bool, sqlx::Error> {
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
pub async fn courses_of_group(ex: Ex<'_>, spot_id: Uuid, group_id: Uuid) -> Result<Vec<Uuid>, sqlx::Error> {
    run!(ex, |c| sqlx::query_scalar::<_, Uuid>(
        "SELECT course_id FROM course_groups WHERE spot_id = $1 AND group_id = $2"
    )
    .bind(spot_id)
    .bind(group_id)
    .fetch_all(c)
    .await)
}

/// A batch of a group's member ids after `after`, in id order (keyset paging).
pub async fn group_member_ids(
    ex: Ex<'_>,
    spot_id: Uuid,
    group_id: Uuid,
    after: Option<Uuid>,
    limit: i64,
) -> Result<Vec<Uuid>, sqlx::Error> {
    let mut sql = Sql::new("SELECT member_id FROM group_members WHERE spot_id = ");
    sql.push_bind(Bind::Uuid(spot_id)).push(" AND group_id = ").push_bind(Bind::Uuid(group_id));
    if let Some(a) = after {
        sql.push(" AND member_id > ").push_bind(Bind::Uuid(a));
    }
    sql.push(" ORDER BY member_id LIMIT ").push_bind(Bind::I64(limit));
    run!(ex, |c| bind_all!(sqlx::query_scalar::<_, Uuid>(sql.text_for(&*c)), &sql.binds).fetch_all(c).await)
}

//! Course participants (`course_participants`): a member's enrolment in a course and
//! its progress. Read joined with the member's name and email, which the API shows
//! with each participant. Every write holds the course's row lock
//! ([`super::courses::lock`]) so that concurrent invitations cannot race.

use super::sql::Predicate;
use super::sql::{Bind, Sql};
use super::{one_row, Ex};
use crate::domain::ids::{CourseId, MemberId, ParticipantId, SpotId};
use crate::domain::vocab::ParticipantStatus;
use crate::{bind_all, run};

/// One row as the domain's `Participant` reads it.
#[derive(Clone, Debug, PartialEq, sqlx::FromRow)]
pub struct ParticipantRow {
    pub spot_id: SpotId,
    pub id: ParticipantId,
    pub course_id: CourseId,
    pub member_id: MemberId,
    pub status: ParticipantStatus,
    pub invited_by: Option<MemberId>,
    pub invited_at: i64,
    pub started_at: Option<i64>,
    pub completed_at: Option<i64>,
    pub unenrolled_at: Option<i64>,
    pub last_activity_at: Option<i64>,
    pub completion_rate: i64,
    pub member_email: Option<String>,
    pub member_firstname: String,
    pub member_lastname: String,
}

const COLUMNS: &str = "p.spot_id, p.id, p.course_id, p.member_id, p.status, p.invited_by, p.invited_at, \
    p.started_at, p.completed_at, p.unenrolled_at, p.last_activity_at, p.completion_rate, m.email AS member_email, \
    m.firstname AS member_firstname, m.lastname AS member_lastname";
const FROM: &str =
    "FROM course_participants p JOIN members m ON m.spot_id = p.spot_id AND m.id = p.member_id WHERE p.spot_id = ";

/// Takes a participant's row lock until the transaction ends (see [`super::courses::lock`]);
/// false when there is no such participant in the course.
pub async fn lock(ex: Ex<'_>, spot_id: SpotId, course_id: CourseId, id: ParticipantId) -> Result<bool, sqlx::Error> {
    run!(ex, |c| {
        let outcome = sqlx::query(
            "UPDATE course_participants SET status = status WHERE spot_id = $1 AND course_id = $2 AND id = $3",
        )
        .bind(spot_id)
        .bind(course_id)
        .bind(id)
        .execute(c)
        .await;
        one_row(outcome)
    })
}

/// Inserts `Invited` participants for those of `member_ids` who do not participate yet,
/// in one multi-row statement (a member who does is skipped by the unique key, one
/// index probe each); returns the members inserted, in no particular order.
pub async fn insert_invited(
    ex: Ex<'_>,
    spot_id: SpotId,
    course_id: CourseId,
    member_ids: &[(ParticipantId, MemberId)],
    invited_by: Option<MemberId>,
    now: i64,
) -> Result<Vec<MemberId>, sqlx::Error> {
    if member_ids.is_empty() {
        return Ok(Vec::new());
    }
    let mut sql = Sql::new(
        "INSERT INTO course_participants (spot_id, id, course_id, member_id, status, invited_by, invited_at, \
         completion_rate) VALUES ",
    );
    for (i, (participant_id, member_id)) in member_ids.iter().enumerate() {
        if i > 0 {
            sql.push(", ");
        }
        sql.push("(").push_bind(spot_id.into()).push(", ").push_bind((*participant_id).into());
        sql.push(", ").push_bind(course_id.into()).push(", ").push_bind((*member_id).into());
        sql.push(", 'Invited', ");
        match invited_by {
            Some(by) => sql.push_bind(by.into()),
            None => sql.push("NULL"),
        };
        sql.push(", ").push_bind(Bind::I64(now)).push(", 0)");
    }
    sql.push(" ON CONFLICT DO NOTHING RETURNING member_id");
    run!(ex, |c| bind_all!(sqlx::query_scalar::<_, MemberId>(sql.text_for(&*c)), &sql.binds).fetch_all(c).await)
}

pub async fn get(
    ex: Ex<'_>,
    spot_id: SpotId,
    course_id: CourseId,
    id: ParticipantId,
) -> Result<Option<ParticipantRow>, sqlx::Error> {
    let sql = format!("SELECT {COLUMNS} {FROM}$1 AND p.course_id = $2 AND p.id = $3");
    run!(ex, |c| sqlx::query_as::<_, ParticipantRow>(&sql)
        .bind(spot_id)
        .bind(course_id)
        .bind(id)
        .fetch_optional(c)
        .await)
}

/// The participants of `course_id` among `member_ids`.
pub async fn get_many_by_member(
    ex: Ex<'_>,
    spot_id: SpotId,
    course_id: CourseId,
    member_ids: &[MemberId],
) -> Result<Vec<ParticipantRow>, sqlx::Error> {
    if member_ids.is_empty() {
        return Ok(Vec::new());
    }
    let mut sql = Sql::from_parts(&["SELECT ", COLUMNS, " ", FROM]);
    sql.push_bind(spot_id.into()).push(" AND p.course_id = ").push_bind(course_id.into());
    sql.push(" AND p.member_id IN ");
    sql.push_list(member_ids.iter().map(|id| (*id).into())).push(" ORDER BY p.id");
    run!(ex, |c| bind_all!(sqlx::query_as::<_, ParticipantRow>(sql.text_for(&*c)), &sql.binds).fetch_all(c).await)
}

pub async fn list(
    ex: Ex<'_>,
    spot_id: SpotId,
    course_id: CourseId,
    filters: &[Predicate],
    offset: i64,
    limit: i64,
) -> Result<Vec<ParticipantRow>, sqlx::Error> {
    let mut sql = Sql::from_parts(&["SELECT ", COLUMNS, " ", FROM]);
    sql.push_bind(spot_id.into()).push(" AND p.course_id = ").push_bind(course_id.into());
    sql.push_predicates(filters);
    sql.push(" ORDER BY p.id LIMIT ").push_bind(Bind::I64(limit)).push(" OFFSET ").push_bind(Bind::I64(offset));
    run!(ex, |c| bind_all!(sqlx::query_as::<_, ParticipantRow>(sql.text_for(&*c)), &sql.binds).fetch_all(c).await)
}

pub async fn count(
    ex: Ex<'_>,
    spot_id: SpotId,
    course_id: CourseId,
    filters: &[Predicate],
) -> Result<i64, sqlx::Error> {
    let mut sql = Sql::new("SELECT COUNT(*) ");
    sql.push(FROM).push_bind(spot_id.into()).push(" AND p.course_id = ").push_bind(course_id.into());
    sql.push_predicates(filters);
    run!(ex, |c| bind_all!(sqlx::query_scalar::<_, i64>(sql.text_for(&*c)), &sql.binds).fetch_one(c).await)
}

pub async fn update(ex: Ex<'_>, p: &ParticipantRow) -> Result<(), sqlx::Error> {
    run!(ex, |c| sqlx::query(
        "UPDATE course_participants SET status = $3, invited_by = $4, invited_at = $5, started_at = $6, \
         completed_at = $7, unenrolled_at = $8, last_activity_at = $9, completion_rate = $10 \
         WHERE spot_id = $1 AND id = $2"
    )
    .bind(p.spot_id)
    .bind(p.id)
    .bind(p.status)
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

//! CourseRow rows (`courses`): the plain CRUD of a course, its row lock and its
//! participant count. Participants are [`super::participants`], links to groups
//! [`super::course_groups`] (a course read says whether their invitations are done:
//! `groups_ready`).

use super::sql::{Predicate, Sql};
use super::{one_row, Ex};
use crate::domain::ids::{CourseId, SpotId};
use crate::domain::vocab::{CoursePrivacy, CourseStatus, NavigationMode};
use crate::run;

/// One row as the domain's `Course` reads it.
#[derive(Clone, Debug, PartialEq, sqlx::FromRow)]
pub struct CourseRow {
    pub spot_id: SpotId,
    pub id: CourseId,
    pub title: String,
    pub description: Option<String>,
    pub privacy: CoursePrivacy,
    pub status: CourseStatus,
    pub navigation_mode: NavigationMode,
    pub participant_count: i64,
    /// Whether every group linked to the course has had its members invited (no link's
    /// job under way); read from `course_groups`, never written here.
    pub groups_ready: bool,
}

/// `SELECT` a course's columns, and whether a link of it is still inviting (a range of
/// the `course_groups` primary key: the course's links), `FROM courses WHERE spot_id =
/// <spot>`. The subquery names the spot itself rather than `courses.spot_id`: Citus
/// routes a subquery of the select list to the spot's shard only then (otherwise every
/// course read went to every shard).
fn select(spot_id: SpotId) -> Sql {
    let mut sql = Sql::new(
        "SELECT spot_id, id, title, description, privacy, status, navigation_mode, participant_count, \
         NOT EXISTS (SELECT 1 FROM course_groups g WHERE g.spot_id = ",
    );
    sql.push_bind(spot_id.into());
    sql.push(" AND g.course_id = courses.id AND NOT g.ready) AS groups_ready FROM courses WHERE spot_id = ");
    sql.push_bind(spot_id.into());
    sql
}

pub async fn insert(ex: Ex<'_>, c_: &CourseRow, now: i64) -> Result<(), sqlx::Error> {
    run!(ex, |c| sqlx::query(
        "INSERT INTO courses (spot_id, id, title, description, privacy, status, navigation_mode, participant_count, \
         created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, 0, $8)"
    )
    .bind(c_.spot_id)
    .bind(c_.id)
    .bind(&c_.title)
    .bind(&c_.description)
    .bind(c_.privacy)
    .bind(c_.status)
    .bind(c_.navigation_mode)
    .bind(now)
    .execute(c)
    .await
    .map(|_| ()))
}

pub async fn get(ex: Ex<'_>, spot_id: SpotId, id: CourseId) -> Result<Option<CourseRow>, sqlx::Error> {
    super::sql::by_id_of(ex, select(spot_id), id).await
}

pub async fn list(
    ex: Ex<'_>,
    spot_id: SpotId,
    filters: &[Predicate],
    offset: i64,
    limit: i64,
) -> Result<(Vec<CourseRow>, i64), sqlx::Error> {
    super::sql::page_of(ex, select(spot_id), "courses", spot_id, filters, offset, limit).await
}

/// Takes the course's row lock until the transaction ends (PostgreSQL; SQLite
/// transactions are already serialised by `BEGIN IMMEDIATE`); false when there is no
/// such course. Every write to a course's participants holds it, so concurrent
/// invitations of one member cannot both create (or re-invite) the participant.
pub async fn lock(ex: Ex<'_>, spot_id: SpotId, id: CourseId) -> Result<bool, sqlx::Error> {
    run!(ex, |c| one_row(
        sqlx::query("UPDATE courses SET participant_count = participant_count WHERE spot_id = $1 AND id = $2")
            .bind(spot_id)
            .bind(id)
            .execute(c)
            .await
    ))
}

pub async fn update(ex: Ex<'_>, c_: &CourseRow) -> Result<(), sqlx::Error> {
    run!(ex, |c| sqlx::query(
        "UPDATE courses SET title = $3, description = $4, privacy = $5, status = $6, navigation_mode = $7 \
         WHERE spot_id = $1 AND id = $2"
    )
    .bind(c_.spot_id)
    .bind(c_.id)
    .bind(&c_.title)
    .bind(&c_.description)
    .bind(c_.privacy)
    .bind(c_.status)
    .bind(c_.navigation_mode)
    .execute(c)
    .await
    .map(|_| ()))
}

pub async fn delete(ex: Ex<'_>, spot_id: SpotId, id: CourseId) -> Result<bool, sqlx::Error> {
    run!(ex, |c| one_row(
        sqlx::query("DELETE FROM courses WHERE spot_id = $1 AND id = $2").bind(spot_id).bind(id).execute(c).await
    ))
}

pub async fn add_participant_count(ex: Ex<'_>, spot_id: SpotId, id: CourseId, delta: i64) -> Result<(), sqlx::Error> {
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

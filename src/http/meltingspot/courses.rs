//! `/v1/courses` (`meltingspot-api.md` §3.10; contract §4 course and progress
//! extensions, §8 "Courses"). Participant dates are ISO-8601 strings on the wire.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::openapi::path::{Parameter, ParameterIn};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::domain::courses::{self, Course, CourseInput, Participant};
use crate::domain::ids::{CourseId, MemberId, ParticipantId};
use crate::domain::vocab::{CoursePrivacy, CourseStatus, NavigationMode, ParticipantStatus};
use crate::error::{Entity, Error};
use crate::http::error::{ErrorBody, MsError};
use crate::http::extract::{list_query_params, nullable, parse_id, CallerSpot, ListParams, MsJson};
use crate::http::AppState;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_courses, create_course))
        .routes(routes!(get_course, update_course, delete_course))
        .routes(routes!(list_participants, invite_participant))
        .routes(routes!(bulk_invite_participants))
        .routes(routes!(get_participant, update_participant))
        .routes(routes!(link_groups))
        .routes(routes!(unlink_groups))
}

/// Milliseconds since the epoch as ISO-8601 (`2025-05-04T09:42:00.123Z`).
pub fn iso8601(ms: Option<i64>) -> Option<String> {
    let ms = ms?;
    let t = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).ok()?;
    t.format(&time::format_description::well_known::Rfc3339).ok()
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CourseDto {
    #[schema(value_type = Uuid)]
    id: CourseId,
    title: String,
    description: Option<String>,
    privacy: CoursePrivacy,
    status: CourseStatus,
    navigation_mode: NavigationMode,
    /// openspot: false while the current members of a group linked by
    /// `groups~bulkAdd` are still being invited in the background (a large group);
    /// true once every linked group's members are participants.
    groups_ready: bool,
}

impl From<Course> for CourseDto {
    fn from(c: Course) -> Self {
        CourseDto {
            id: c.id,
            title: c.title,
            description: c.description,
            privacy: c.privacy,
            status: c.status,
            navigation_mode: c.navigation_mode,
            groups_ready: c.groups_ready,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CoursePage {
    items: Vec<CourseDto>,
    total: i64,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CourseParticipantDto {
    #[schema(value_type = Uuid)]
    id: ParticipantId,
    #[schema(value_type = Uuid)]
    course_id: CourseId,
    #[schema(value_type = Uuid)]
    spot_member_id: MemberId,
    spot_member_email: Option<String>,
    spot_member_firstname: Option<String>,
    spot_member_lastname: Option<String>,
    status: ParticipantStatus,
    invited_at: Option<String>,
    started_at: Option<String>,
    completed_at: Option<String>,
    unenrolled_at: Option<String>,
    last_activity_at: Option<String>,
    /// 0..100.
    completion_rate: i64,
}

impl From<Participant> for CourseParticipantDto {
    fn from(p: Participant) -> Self {
        let non_empty = |s: String| (!s.is_empty()).then_some(s);
        CourseParticipantDto {
            id: p.id,
            course_id: p.course_id,
            spot_member_id: p.member_id,
            spot_member_email: p.member_email,
            spot_member_firstname: non_empty(p.member_firstname),
            spot_member_lastname: non_empty(p.member_lastname),
            status: p.status,
            invited_at: iso8601(Some(p.invited_at)),
            started_at: iso8601(p.started_at),
            completed_at: iso8601(p.completed_at),
            unenrolled_at: iso8601(p.unenrolled_at),
            last_activity_at: iso8601(p.last_activity_at),
            completion_rate: p.completion_rate,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ParticipantPage {
    items: Vec<CourseParticipantDto>,
    total: i64,
}

/// Query parameters of the course list: `page`, `limit` and one `field[op]` per entry of
/// the allow-list the domain validates with ([`courses::COURSE_FILTERS`]).
pub struct CourseListQuery;

impl IntoParams for CourseListQuery {
    fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        list_query_params(courses::COURSE_FILTERS)
    }
}

/// List courses
#[utoipa::path(get, path = "/v1/courses", tag = "Courses", params(CourseListQuery),
    responses(
        (status = 200, description = "Courses returned successfully", body = CoursePage),
        (status = 400, description = "Bad filter or pagination parameter", body = ErrorBody),
        (status = 401, description = "Unauthorized", body = ErrorBody),
    ))]
async fn list_courses(
    State(st): State<AppState>,
    CallerSpot(spot): CallerSpot,
    ListParams(q): ListParams,
) -> Result<Json<CoursePage>, MsError> {
    let (items, total) = courses::list_courses(&st.db, spot, &q).await?;
    Ok(Json(CoursePage { items: items.into_iter().map(Into::into).collect(), total }))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CourseBody {
    /// Required on create.
    title: Option<String>,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<String>)]
    description: Option<Option<String>>,
    /// `Draft` (default) or `Published`.
    status: Option<String>,
    /// `Secret` (default) or `Public`.
    privacy: Option<String>,
    /// `Flexible` (default) or `Sequential`.
    navigation_mode: Option<String>,
}

impl From<CourseBody> for CourseInput {
    fn from(b: CourseBody) -> Self {
        CourseInput {
            title: b.title,
            description: b.description,
            status: b.status,
            privacy: b.privacy,
            navigation_mode: b.navigation_mode,
        }
    }
}

/// Create a course (openspot)
#[utoipa::path(post, path = "/v1/courses", tag = "Courses", request_body = CourseBody,
    extensions(("x-openspot" = json!(true))),
    responses(
        (status = 201, description = "Course created", body = CourseDto),
        (status = 400, description = "Invalid field", body = ErrorBody),
        (status = 401, description = "Unauthorized", body = ErrorBody),
    ))]
async fn create_course(
    State(st): State<AppState>,
    CallerSpot(spot): CallerSpot,
    MsJson(body): MsJson<CourseBody>,
) -> Result<(StatusCode, Json<CourseDto>), MsError> {
    let c = courses::create_course(&st.db, spot, body.into()).await?;
    Ok((StatusCode::CREATED, Json(c.into())))
}

/// Get a course (openspot)
#[utoipa::path(get, path = "/v1/courses/{courseId}", tag = "Courses", params(("courseId" = String, Path)),
    extensions(("x-openspot" = json!(true))),
    responses(
        (status = 200, description = "Course", body = CourseDto),
        (status = 401, description = "Unauthorized", body = ErrorBody),
        (status = 404, description = "Course not found", body = ErrorBody),
    ))]
async fn get_course(
    State(st): State<AppState>,
    CallerSpot(spot): CallerSpot,
    Path(id): Path<String>,
) -> Result<Json<CourseDto>, MsError> {
    let id = parse_id(&id, Entity::Course)?;
    Ok(Json(courses::get_course(&st.db, spot, id).await?.into()))
}

/// Update a course (openspot)
#[utoipa::path(put, path = "/v1/courses/{courseId}", tag = "Courses", params(("courseId" = String, Path)),
    request_body = CourseBody, extensions(("x-openspot" = json!(true))),
    responses(
        (status = 200, description = "Course updated", body = CourseDto),
        (status = 400, description = "Invalid field", body = ErrorBody),
        (status = 401, description = "Unauthorized", body = ErrorBody),
        (status = 404, description = "Course not found", body = ErrorBody),
    ))]
async fn update_course(
    State(st): State<AppState>,
    CallerSpot(spot): CallerSpot,
    Path(id): Path<String>,
    MsJson(body): MsJson<CourseBody>,
) -> Result<Json<CourseDto>, MsError> {
    let id = parse_id(&id, Entity::Course)?;
    Ok(Json(courses::update_course(&st.db, spot, id, body.into()).await?.into()))
}

/// Delete a course (openspot)
///
/// Its participants and group links go with it.
#[utoipa::path(delete, path = "/v1/courses/{courseId}", tag = "Courses", params(("courseId" = String, Path)),
    extensions(("x-openspot" = json!(true))),
    responses(
        (status = 204, description = "Course deleted"),
        (status = 401, description = "Unauthorized", body = ErrorBody),
        (status = 404, description = "Course not found", body = ErrorBody),
    ))]
async fn delete_course(
    State(st): State<AppState>,
    CallerSpot(spot): CallerSpot,
    Path(id): Path<String>,
) -> Result<StatusCode, MsError> {
    let id = parse_id(&id, Entity::Course)?;
    courses::delete_course(&st.db, spot, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Query parameters of a course's participant list: `page`, `limit` and one `field[op]` per entry of
/// the allow-list the domain validates with ([`courses::PARTICIPANT_FILTERS`]).
pub struct ParticipantListQuery;

impl IntoParams for ParticipantListQuery {
    fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        list_query_params(courses::PARTICIPANT_FILTERS)
    }
}

/// List course participants
#[utoipa::path(get, path = "/v1/courses/{courseId}/participants", tag = "Courses",
    params(("courseId" = String, Path), ParticipantListQuery),
    responses(
        (status = 200, description = "Participants returned successfully", body = ParticipantPage),
        (status = 400, description = "Bad filter or pagination parameter", body = ErrorBody),
        (status = 401, description = "Unauthorized", body = ErrorBody),
        (status = 404, description = "Course not found", body = ErrorBody),
    ))]
async fn list_participants(
    State(st): State<AppState>,
    CallerSpot(spot): CallerSpot,
    Path(id): Path<String>,
    ListParams(q): ListParams,
) -> Result<Json<ParticipantPage>, MsError> {
    let id = parse_id(&id, Entity::Course)?;
    let (items, total) = courses::list_participants(&st.db, spot, id, &q).await?;
    Ok(Json(ParticipantPage { items: items.into_iter().map(Into::into).collect(), total }))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct InviteParticipantBody {
    /// Required.
    spot_member_id: Option<String>,
    invited_by_spot_member_id: Option<String>,
    /// Send an invitation email to a new or re-invited participant (default false).
    #[serde(default)]
    with_email_notification: bool,
}

fn optional_id(field: &str, raw: Option<String>) -> Result<Option<MemberId>, Error> {
    raw.map(|r| r.trim().parse::<MemberId>().map_err(|_| Error::invalid(field, "must be a UUID"))).transpose()
}

/// Invite a member to a course
///
/// 201 with the new participant; 200 with the existing participant ("Member already invited").
#[utoipa::path(post, path = "/v1/courses/{courseId}/participants", tag = "Courses",
    params(("courseId" = String, Path)), request_body = InviteParticipantBody,
    responses(
        (status = 201, description = "Participant invited", body = CourseParticipantDto),
        (status = 200, description = "Member already invited: the existing participant", body = CourseParticipantDto),
        (status = 400, description = "Invalid field", body = ErrorBody),
        (status = 401, description = "Unauthorized", body = ErrorBody),
        (status = 404, description = "Course not found / Spot member not found", body = ErrorBody),
    ))]
async fn invite_participant(
    State(st): State<AppState>,
    CallerSpot(spot): CallerSpot,
    Path(id): Path<String>,
    MsJson(body): MsJson<InviteParticipantBody>,
) -> Result<Response, MsError> {
    let course = parse_id(&id, Entity::Course)?;
    let raw = body.spot_member_id.ok_or_else(|| Error::invalid("spotMemberId", "is required"))?;
    let member = parse_id(&raw, Entity::SpotMember)?;
    let by = optional_id("invitedBySpotMemberId", body.invited_by_spot_member_id)?;
    let (p, created) =
        courses::invite_participant(&st.db, spot, course, member, by, body.with_email_notification).await?;
    let status = if created { StatusCode::CREATED } else { StatusCode::OK };
    Ok((status, Json(CourseParticipantDto::from(p))).into_response())
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct BulkInviteParticipantsBody {
    /// 1 to 200 spot member ids.
    spot_member_ids: Option<Vec<String>>,
    invited_by_spot_member_id: Option<String>,
    /// Send an invitation email to each new or re-invited participant (default false).
    #[serde(default)]
    with_email_notification: bool,
}

/// Invite several members to a course
///
/// 201 with the newly invited participants; 200 with the existing participants when none
/// is new ("Members already invited"). Any unknown id → 400 naming it, nothing written.
#[utoipa::path(post, path = "/v1/courses/{courseId}/participants~bulkInvite", tag = "Courses",
    params(("courseId" = String, Path)), request_body = BulkInviteParticipantsBody,
    responses(
        (status = 201, description = "Participants invited", body = Vec<CourseParticipantDto>),
        (status = 200, description = "Members already invited", body = Vec<CourseParticipantDto>),
        (status = 400, description = "Unknown spot member ids (named)", body = ErrorBody),
        (status = 401, description = "Unauthorized", body = ErrorBody),
        (status = 404, description = "Course not found", body = ErrorBody),
        (status = 413, description = "Payload is too large (more than 200 ids)", body = ErrorBody),
    ))]
async fn bulk_invite_participants(
    State(st): State<AppState>,
    CallerSpot(spot): CallerSpot,
    Path(id): Path<String>,
    MsJson(body): MsJson<BulkInviteParticipantsBody>,
) -> Result<Response, MsError> {
    let course = parse_id(&id, Entity::Course)?;
    let by = optional_id("invitedBySpotMemberId", body.invited_by_spot_member_id)?;
    let ids = body.spot_member_ids.unwrap_or_default();
    let (invited, all) = courses::bulk_invite(&st.db, spot, course, &ids, by, body.with_email_notification).await?;
    let (status, list) = if invited.is_empty() { (StatusCode::OK, all) } else { (StatusCode::CREATED, invited) };
    let list: Vec<CourseParticipantDto> = list.into_iter().map(Into::into).collect();
    Ok((status, Json(list)).into_response())
}

/// Get a course participant
#[utoipa::path(get, path = "/v1/courses/{courseId}/participants/{courseParticipantId}", tag = "Courses",
    params(("courseId" = String, Path), ("courseParticipantId" = String, Path)),
    responses(
        (status = 200, description = "Participant", body = CourseParticipantDto),
        (status = 401, description = "Unauthorized", body = ErrorBody),
        (status = 404, description = "Course not found / Course participant not found", body = ErrorBody),
    ))]
async fn get_participant(
    State(st): State<AppState>,
    CallerSpot(spot): CallerSpot,
    Path((course, pid)): Path<(String, String)>,
) -> Result<Json<CourseParticipantDto>, MsError> {
    let course = parse_id(&course, Entity::Course)?;
    let pid = parse_id(&pid, Entity::CourseParticipant)?;
    Ok(Json(courses::get_participant(&st.db, spot, course, pid).await?.into()))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProgressBody {
    /// `Started`, `Completed` or `Unenrolled`.
    status: Option<String>,
    /// 0..100.
    completion_rate: Option<i64>,
}

/// Record learner progress (openspot)
///
/// Allowed moves: Invited→Started→Completed, any→Unenrolled. Completed sets
/// `completionRate` to 100. Timestamps are set by the server.
#[utoipa::path(put, path = "/v1/courses/{courseId}/participants/{courseParticipantId}", tag = "Courses",
    params(("courseId" = String, Path), ("courseParticipantId" = String, Path)), request_body = ProgressBody,
    extensions(("x-openspot" = json!(true))),
    responses(
        (status = 200, description = "Participant updated", body = CourseParticipantDto),
        (status = 400, description = "Invalid field", body = ErrorBody),
        (status = 401, description = "Unauthorized", body = ErrorBody),
        (status = 404, description = "Course not found / Course participant not found", body = ErrorBody),
        (status = 409, description = "Move not allowed (names both statuses)", body = ErrorBody),
    ))]
async fn update_participant(
    State(st): State<AppState>,
    CallerSpot(spot): CallerSpot,
    Path((course, pid)): Path<(String, String)>,
    MsJson(body): MsJson<ProgressBody>,
) -> Result<Json<CourseParticipantDto>, MsError> {
    let course = parse_id(&course, Entity::Course)?;
    let pid = parse_id(&pid, Entity::CourseParticipant)?;
    let p = courses::update_progress(&st.db, spot, course, pid, body.status, body.completion_rate).await?;
    Ok(Json(p.into()))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct GroupIdsBody {
    /// 1 to 200 group ids.
    group_ids: Option<Vec<String>>,
    /// Accepted for compatibility; linking groups sends no invitation email (docs/email.md).
    #[serde(default)]
    #[allow(dead_code)]
    with_email_notification: bool,
}

/// Link groups to a course
///
/// Every current member of the groups becomes a participant (Invited) unless already
/// one; members who join a linked group later are invited when they join. The answer
/// comes at once: the members of large groups (over 1,000 in all) are invited in the
/// background, and the course answers `groupsReady: false` until they all are.
#[utoipa::path(post, path = "/v1/courses/{courseId}/groups~bulkAdd", tag = "Courses",
    params(("courseId" = String, Path)), request_body = GroupIdsBody,
    responses(
        (status = 204, description = "Groups linked successfully"),
        (status = 400, description = "Unknown group ids (named)", body = ErrorBody),
        (status = 401, description = "Unauthorized", body = ErrorBody),
        (status = 404, description = "Course not found", body = ErrorBody),
    ))]
async fn link_groups(
    State(st): State<AppState>,
    CallerSpot(spot): CallerSpot,
    Path(id): Path<String>,
    MsJson(body): MsJson<GroupIdsBody>,
) -> Result<StatusCode, MsError> {
    let course = parse_id(&id, Entity::Course)?;
    courses::link_groups(&st.db, spot, course, &body.group_ids.unwrap_or_default()).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Unlink groups from a course
///
/// Stops inviting the groups' members (future joiners, and a background invitation
/// still under way); existing participants stay.
#[utoipa::path(post, path = "/v1/courses/{courseId}/groups~bulkRemove", tag = "Courses",
    params(("courseId" = String, Path)), request_body = GroupIdsBody,
    responses(
        (status = 204, description = "Groups unlinked"),
        (status = 400, description = "Unknown group ids (named)", body = ErrorBody),
        (status = 401, description = "Unauthorized", body = ErrorBody),
        (status = 404, description = "Course not found", body = ErrorBody),
    ))]
async fn unlink_groups(
    State(st): State<AppState>,
    CallerSpot(spot): CallerSpot,
    Path(id): Path<String>,
    MsJson(body): MsJson<GroupIdsBody>,
) -> Result<StatusCode, MsError> {
    let course = parse_id(&id, Entity::Course)?;
    courses::unlink_groups(&st.db, spot, course, &body.group_ids.unwrap_or_default()).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    #[test]
    fn iso8601_renders_utc_with_millis() {
        assert_eq!(super::iso8601(Some(1_746_351_720_123)).as_deref(), Some("2025-05-04T09:42:00.123Z"));
        assert_eq!(super::iso8601(None), None);
    }
}

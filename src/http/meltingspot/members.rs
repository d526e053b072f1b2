//! `/v1/spotMembers` (`meltingspot-api.md` §3.1): list, get, update, invite, bulk invite.

use std::collections::BTreeMap;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::openapi::path::{Parameter, ParameterIn};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::domain::ids::{MemberId, RoleId, SpotId};
use crate::domain::members::{self, FailedInvite, Member, MemberPatch};
use crate::domain::vocab::{MemberRole, MemberStatus};
use crate::error::Entity;
use crate::http::error::{ErrorBody, MsError};
use crate::http::extract::{list_query_params, nullable, parse_id, CallerSpot, ListParams, MsJson};
use crate::http::AppState;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_spot_members, invite_spot_member))
        .routes(routes!(get_spot_member, update_spot_member))
        .routes(routes!(bulk_invite_spot_members))
}

/// A member of the spot.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SpotMemberDto {
    #[schema(value_type = Uuid)]
    pub id: MemberId,
    #[schema(value_type = Uuid)]
    pub spot_id: SpotId,
    pub user_id: Option<Uuid>,
    /// Null for a member known only by mobile number (Kaizala).
    pub email: Option<String>,
    /// E.164 mobile number (openspot/Kaizala), or null.
    pub mobile_number: Option<String>,
    pub title: Option<String>,
    #[schema(example = "en")]
    pub lang: String,
    pub role: MemberRole,
    pub custom_role_id: Option<Uuid>,
    pub status: MemberStatus,
    pub firstname: String,
    pub lastname: String,
    pub warnings: i64,
    pub avatar_url: Option<String>,
    /// `default` plus any custom embed base URL.
    pub embed_base_urls: BTreeMap<String, String>,
    /// Milliseconds since the epoch.
    pub updated_at: Option<i64>,
    /// Milliseconds since the epoch.
    pub last_activity_at: Option<i64>,
}

impl SpotMemberDto {
    pub fn new(m: Member, public_url: &str) -> Self {
        let mut embed: BTreeMap<String, String> =
            m.embed_base_urls.as_deref().and_then(|s| serde_json::from_str(s).ok()).unwrap_or_default();
        embed.entry("default".into()).or_insert_with(|| public_url.to_string());
        SpotMemberDto {
            id: m.id,
            spot_id: m.spot_id,
            user_id: m.user_id,
            email: m.email,
            mobile_number: m.mobile_number,
            title: m.title,
            lang: m.lang,
            role: m.role,
            custom_role_id: m.custom_role_id.map(Uuid::from),
            status: m.status,
            firstname: m.firstname,
            lastname: m.lastname,
            warnings: m.warnings,
            avatar_url: m.avatar_url,
            embed_base_urls: embed,
            updated_at: Some(m.updated_at),
            last_activity_at: m.last_activity_at,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SpotMemberPage {
    pub items: Vec<SpotMemberDto>,
    pub total: i64,
}

/// Query parameters of the spot-member list: `page`, `limit` and one `field[op]` per entry of
/// the allow-list the domain validates with ([`members::MEMBER_FILTERS`]).
pub struct SpotMemberListQuery;

impl IntoParams for SpotMemberListQuery {
    fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        list_query_params(members::MEMBER_FILTERS)
    }
}

/// List Spot members
///
/// Besides the filters below, `customProperties.<slug>[op]=value` filters on a custom
/// property of the spot, with the operators of its type: `Text`: eq, neq, in, contains;
/// `Number`: eq, neq, gt, gte, lt, lte; `Boolean`: eq; `Date`: eq, before, after;
/// `SingleSelect`: eq, neq, in; `MultipleSelect`: contains, in.
#[utoipa::path(get, path = "/v1/spotMembers", tag = "Spot members",
    params(SpotMemberListQuery),
    responses(
        (status = 200, description = "Spot members returned successfully", body = SpotMemberPage),
        (status = 400, description = "Bad filter or pagination parameter", body = ErrorBody),
        (status = 401, description = "Unauthorized", body = ErrorBody),
        (status = 429, description = "Too many requests", body = ErrorBody),
    ))]
async fn list_spot_members(
    State(st): State<AppState>,
    CallerSpot(spot): CallerSpot,
    ListParams(q): ListParams,
) -> Result<Json<SpotMemberPage>, MsError> {
    let (items, total) = members::list_members(&st.db, spot, &q).await?;
    let items = items.into_iter().map(|m| SpotMemberDto::new(m, &st.config.public_url)).collect();
    Ok(Json(SpotMemberPage { items, total }))
}

/// Get a spot member
#[utoipa::path(get, path = "/v1/spotMembers/{spotMemberId}", tag = "Spot members",
    params(("spotMemberId" = String, Path, description = "The id of the spot member")),
    responses(
        (status = 200, description = "Spot member returned successfully", body = SpotMemberDto),
        (status = 401, description = "Unauthorized", body = ErrorBody),
        (status = 404, description = "Spot member not found", body = ErrorBody),
    ))]
async fn get_spot_member(
    State(st): State<AppState>,
    CallerSpot(spot): CallerSpot,
    Path(id): Path<String>,
) -> Result<Json<SpotMemberDto>, MsError> {
    let id = parse_id(&id, Entity::SpotMember)?;
    let m = members::get_member(&st.db, spot, id).await?;
    Ok(Json(SpotMemberDto::new(m, &st.config.public_url)))
}

/// Body of `PUT /v1/spotMembers/{id}`; every field is optional (partial update).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct UpdateSpotMemberBody {
    firstname: Option<String>,
    lastname: Option<String>,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<String>)]
    title: Option<Option<String>>,
    /// `Member` or `Admin`.
    role: Option<String>,
    /// Only `Accepted`, `Deactivated` or `Rejected`.
    status: Option<String>,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<String>)]
    avatar_url: Option<Option<String>>,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<BTreeMap<String, String>>)]
    embed_base_urls: Option<Option<BTreeMap<String, String>>>,
    /// A custom role of the spot, or null to remove it.
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<Uuid>)]
    custom_role_id: Option<Option<Uuid>>,
}

/// Update a spot member
#[utoipa::path(put, path = "/v1/spotMembers/{spotMemberId}", tag = "Spot members",
    params(("spotMemberId" = String, Path, description = "The id of the spot member")),
    request_body = UpdateSpotMemberBody,
    responses(
        (status = 200, description = "Spot member successfully updated", body = SpotMemberDto),
        (status = 400, description = "Invalid field (named in the message)", body = ErrorBody),
        (status = 401, description = "Unauthorized", body = ErrorBody),
        (status = 404, description = "Spot member not found", body = ErrorBody),
    ))]
async fn update_spot_member(
    State(st): State<AppState>,
    CallerSpot(spot): CallerSpot,
    Path(id): Path<String>,
    MsJson(body): MsJson<UpdateSpotMemberBody>,
) -> Result<Json<SpotMemberDto>, MsError> {
    let id = parse_id(&id, Entity::SpotMember)?;
    let patch = MemberPatch {
        firstname: body.firstname,
        lastname: body.lastname,
        title: body.title,
        role: body.role,
        status: body.status,
        avatar_url: body.avatar_url,
        embed_base_urls: body.embed_base_urls,
        custom_role_id: body.custom_role_id.map(|r| r.map(RoleId::from)),
    };
    let m = members::update_member(&st.db, spot, id, patch).await?;
    Ok(Json(SpotMemberDto::new(m, &st.config.public_url)))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct InviteSpotMemberBody {
    /// Required.
    email: Option<String>,
    /// Send an invitation email (default false).
    #[serde(default)]
    with_email_notification: bool,
}

/// Invite a spot member
///
/// 201 with the new member; 200 with the existing member when the email is already in the spot.
#[utoipa::path(post, path = "/v1/spotMembers", tag = "Spot members",
    request_body = InviteSpotMemberBody,
    responses(
        (status = 201, description = "Spot member has been successfully invited", body = SpotMemberDto),
        (status = 200, description = "The email is already a member: the existing member", body = SpotMemberDto),
        (status = 400, description = "Invalid email", body = ErrorBody),
        (status = 401, description = "Unauthorized", body = ErrorBody),
    ))]
async fn invite_spot_member(
    State(st): State<AppState>,
    CallerSpot(spot): CallerSpot,
    MsJson(body): MsJson<InviteSpotMemberBody>,
) -> Result<Response, MsError> {
    let email = body.email.unwrap_or_default();
    let (m, created) = members::invite_member(&st.db, spot, &email, body.with_email_notification).await?;
    let status = if created { StatusCode::CREATED } else { StatusCode::OK };
    Ok((status, Json(SpotMemberDto::new(m, &st.config.public_url))).into_response())
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct BulkInviteBody {
    /// 1 to 200 emails.
    emails: Option<Vec<String>>,
    #[serde(default)]
    with_email_notification: bool,
}

/// An email that was not invited, echoed in the documented shape.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct FailedInviteDto {
    email: String,
    firstname: Option<String>,
    lastname: Option<String>,
    title: Option<String>,
    role: MemberRole,
    avatar_url: Option<String>,
    lang: String,
    theme: String,
    timezone: Option<String>,
    /// Why it failed (openspot addition).
    reason: String,
}

impl From<FailedInvite> for FailedInviteDto {
    fn from(f: FailedInvite) -> Self {
        FailedInviteDto {
            email: f.email,
            firstname: None,
            lastname: None,
            title: None,
            role: MemberRole::Member,
            avatar_url: None,
            lang: "en".into(),
            theme: "light".into(),
            timezone: None,
            reason: f.reason,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct BulkInviteResult {
    created: Vec<SpotMemberDto>,
    failed: Vec<FailedInviteDto>,
}

/// Invite multiple spot members
///
/// Each valid email is invited once (an existing member is returned in `created`);
/// invalid emails and repeats within the request land in `failed`.
#[utoipa::path(post, path = "/v1/spotMembers~bulkInvite", tag = "Spot members",
    request_body = BulkInviteBody,
    responses(
        (status = 201, description = "Spot members has been successfully invited", body = BulkInviteResult),
        (status = 400, description = "No email given or malformed body", body = ErrorBody),
        (status = 401, description = "Unauthorized", body = ErrorBody),
        (status = 413, description = "Payload is too large (more than 200 emails)", body = ErrorBody),
    ))]
async fn bulk_invite_spot_members(
    State(st): State<AppState>,
    CallerSpot(spot): CallerSpot,
    MsJson(body): MsJson<BulkInviteBody>,
) -> Result<(StatusCode, Json<BulkInviteResult>), MsError> {
    let emails = body.emails.unwrap_or_default();
    let (created, failed) = members::bulk_invite(&st.db, spot, &emails, body.with_email_notification).await?;
    let created = created.into_iter().map(|m| SpotMemberDto::new(m, &st.config.public_url)).collect();
    let failed = failed.into_iter().map(FailedInviteDto::from).collect();
    Ok((StatusCode::CREATED, Json(BulkInviteResult { created, failed })))
}

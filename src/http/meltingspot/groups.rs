//! `/v1/groups` (`meltingspot-api.md` §3.4; contract §4 smart groups, §8 "Groups").

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::openapi::path::{Parameter, ParameterIn};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::members::{SpotMemberDto, SpotMemberPage};
use crate::domain::groups::{self, Group, GroupPatch, NewGroup};
use crate::domain::ids::{GroupId, MemberId};
use crate::domain::vocab::GroupKind;
use crate::error::Entity;
use crate::http::error::{ErrorBody, MsError};
use crate::http::extract::{list_query_params, nullable, parse_id, CallerSpot, ListParams, MsJson};
use crate::http::AppState;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_groups, create_group))
        .routes(routes!(bulk_create_groups))
        .routes(routes!(get_group, update_group, delete_group))
        .routes(routes!(list_group_members, add_group_member))
        .routes(routes!(bulk_add_group_members))
        .routes(routes!(bulk_remove_group_members))
        .routes(routes!(blacklist_add))
        .routes(routes!(blacklist_remove))
}

/// A group. `type` and `rules` are openspot additions (smart groups).
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct GroupDto {
    #[schema(value_type = Uuid)]
    id: GroupId,
    name: String,
    description: Option<String>,
    emoji: Option<String>,
    icon: Option<String>,
    #[serde(rename = "type")]
    kind: GroupKind,
    /// Smart groups: `{operator, conditions: [{operator, triggers: [{field, op, value}]}]}`.
    #[schema(value_type = Option<Object>)]
    rules: Option<Value>,
    /// False while a new smart group's membership is being computed.
    ready: bool,
    /// Current number of members.
    members_count: i64,
}

impl From<Group> for GroupDto {
    fn from(g: Group) -> Self {
        let rules = g.rules_json();
        GroupDto {
            id: g.id,
            name: g.name,
            description: g.description,
            emoji: g.emoji,
            icon: g.icon,
            kind: g.kind,
            rules,
            ready: g.ready,
            members_count: g.member_count,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct GroupPage {
    items: Vec<GroupDto>,
    total: i64,
}

/// Query parameters of the group list: `page`, `limit` and one `field[op]` per entry of
/// the allow-list the domain validates with ([`groups::GROUP_FILTERS`]).
pub struct GroupListQuery;

impl IntoParams for GroupListQuery {
    fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        list_query_params(groups::GROUP_FILTERS)
    }
}

/// List groups
#[utoipa::path(get, path = "/v1/groups", tag = "Groups", params(GroupListQuery),
    responses(
        (status = 200, description = "Groups returned successfully", body = GroupPage),
        (status = 400, description = "Bad filter or pagination parameter", body = ErrorBody),
        (status = 401, description = "Unauthorized", body = ErrorBody),
    ))]
async fn list_groups(
    State(st): State<AppState>,
    CallerSpot(spot): CallerSpot,
    ListParams(q): ListParams,
) -> Result<Json<GroupPage>, MsError> {
    let (items, total) = groups::list_groups(&st.db, spot, &q).await?;
    Ok(Json(GroupPage { items: items.into_iter().map(Into::into).collect(), total }))
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CreateGroupBody {
    /// Required.
    name: Option<String>,
    description: Option<String>,
    emoji: Option<String>,
    /// `Static` (default) or `Smart` (openspot).
    #[serde(rename = "type")]
    kind: Option<String>,
    /// Required for a smart group.
    #[schema(value_type = Option<Object>)]
    rules: Option<Value>,
}

impl From<CreateGroupBody> for NewGroup {
    fn from(b: CreateGroupBody) -> Self {
        NewGroup {
            name: b.name,
            description: b.description,
            emoji: b.emoji,
            kind: b.kind,
            rules: b.rules,
            ..Default::default()
        }
    }
}

/// Create a group
///
/// A smart group answers `ready: false` until its membership has been computed.
#[utoipa::path(post, path = "/v1/groups", tag = "Groups", request_body = CreateGroupBody,
    responses(
        (status = 201, description = "Group created", body = GroupDto),
        (status = 400, description = "Invalid field, e.g. `rules.conditions[0].triggers[1].op`", body = ErrorBody),
        (status = 401, description = "Unauthorized", body = ErrorBody),
    ))]
async fn create_group(
    State(st): State<AppState>,
    CallerSpot(spot): CallerSpot,
    MsJson(body): MsJson<CreateGroupBody>,
) -> Result<(StatusCode, Json<GroupDto>), MsError> {
    let g = groups::create_group(&st.db, spot, body.into()).await?;
    Ok((StatusCode::CREATED, Json(g.into())))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct BulkCreateResult {
    created: Vec<GroupDto>,
    /// The invalid items, as sent (any JSON value: an item that is not an object fails too).
    failed: Vec<Value>,
}

/// Create multiple groups
///
/// The body is a top-level array (1..200). Invalid items are echoed in `failed`.
#[utoipa::path(post, path = "/v1/groups~bulkCreate", tag = "Groups", request_body = Vec<CreateGroupBody>,
    responses(
        (status = 201, description = "Groups created", body = BulkCreateResult),
        (status = 400, description = "Not an array, or empty", body = ErrorBody),
        (status = 401, description = "Unauthorized", body = ErrorBody),
        (status = 413, description = "Payload is too large (more than 200 groups)", body = ErrorBody),
    ))]
async fn bulk_create_groups(
    State(st): State<AppState>,
    CallerSpot(spot): CallerSpot,
    MsJson(items): MsJson<Vec<Value>>,
) -> Result<(StatusCode, Json<BulkCreateResult>), MsError> {
    let parsed = items
        .iter()
        .map(|raw| {
            let parsed: CreateGroupBody = serde_json::from_value(raw.clone()).unwrap_or_default();
            let mut n: NewGroup = parsed.into();
            if !raw.is_object() {
                n.name = None;
            }
            n
        })
        .collect();
    let (created, failed) = groups::bulk_create(&st.db, spot, parsed).await?;
    // Invalid items are echoed exactly as the client sent them.
    let failed = failed.into_iter().filter_map(|i| items.get(i).cloned()).collect();
    Ok((StatusCode::CREATED, Json(BulkCreateResult { created: created.into_iter().map(Into::into).collect(), failed })))
}

/// Get a group
#[utoipa::path(get, path = "/v1/groups/{groupId}", tag = "Groups", params(("groupId" = String, Path)),
    responses(
        (status = 200, description = "Group returned successfully", body = GroupDto),
        (status = 401, description = "Unauthorized", body = ErrorBody),
        (status = 404, description = "Group not found", body = ErrorBody),
    ))]
async fn get_group(
    State(st): State<AppState>,
    CallerSpot(spot): CallerSpot,
    Path(id): Path<String>,
) -> Result<Json<GroupDto>, MsError> {
    let id = parse_id(&id, Entity::Group)?;
    Ok(Json(groups::get_group(&st.db, spot, id).await?.into()))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct UpdateGroupBody {
    name: Option<String>,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<String>)]
    description: Option<Option<String>>,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<String>)]
    emoji: Option<Option<String>>,
    /// Cannot change (409).
    #[serde(rename = "type")]
    kind: Option<String>,
    /// Cannot change (409).
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<Object>)]
    rules: Option<Option<Value>>,
}

/// Update a group
#[utoipa::path(put, path = "/v1/groups/{groupId}", tag = "Groups", params(("groupId" = String, Path)),
    request_body = UpdateGroupBody,
    responses(
        (status = 200, description = "Group updated", body = GroupDto),
        (status = 400, description = "Invalid field", body = ErrorBody),
        (status = 401, description = "Unauthorized", body = ErrorBody),
        (status = 404, description = "Group not found", body = ErrorBody),
        (status = 409, description = "`rules` sent or `type` changed", body = ErrorBody),
    ))]
async fn update_group(
    State(st): State<AppState>,
    CallerSpot(spot): CallerSpot,
    Path(id): Path<String>,
    MsJson(body): MsJson<UpdateGroupBody>,
) -> Result<Json<GroupDto>, MsError> {
    let id = parse_id(&id, Entity::Group)?;
    let patch = GroupPatch {
        name: body.name,
        description: body.description,
        emoji: body.emoji,
        kind: body.kind,
        rules_sent: body.rules.is_some(),
    };
    Ok(Json(groups::update_group(&st.db, spot, id, patch).await?.into()))
}

/// Delete a group
///
/// Its memberships go with it; the members stay in the spot.
#[utoipa::path(delete, path = "/v1/groups/{groupId}", tag = "Groups", params(("groupId" = String, Path)),
    responses(
        (status = 204, description = "Group deleted"),
        (status = 401, description = "Unauthorized", body = ErrorBody),
        (status = 404, description = "Group not found", body = ErrorBody),
    ))]
async fn delete_group(
    State(st): State<AppState>,
    CallerSpot(spot): CallerSpot,
    Path(id): Path<String>,
) -> Result<StatusCode, MsError> {
    let id = parse_id(&id, Entity::Group)?;
    groups::delete_group(&st.db, spot, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Query parameters of a group's member list: `page`, `limit` and one `field[op]` per entry of
/// the allow-list the domain validates with ([`groups::GROUP_MEMBER_FILTERS`]).
pub struct GroupMemberListQuery;

impl IntoParams for GroupMemberListQuery {
    fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        list_query_params(groups::GROUP_MEMBER_FILTERS)
    }
}

/// List the members of a group
#[utoipa::path(get, path = "/v1/groups/{groupId}/spotMembers", tag = "Groups",
    params(("groupId" = String, Path), GroupMemberListQuery),
    responses(
        (status = 200, description = "Group members returned successfully", body = SpotMemberPage),
        (status = 400, description = "Bad filter or pagination parameter", body = ErrorBody),
        (status = 401, description = "Unauthorized", body = ErrorBody),
        (status = 404, description = "Group not found", body = ErrorBody),
    ))]
async fn list_group_members(
    State(st): State<AppState>,
    CallerSpot(spot): CallerSpot,
    Path(id): Path<String>,
    ListParams(q): ListParams,
) -> Result<Json<SpotMemberPage>, MsError> {
    let id = parse_id(&id, Entity::Group)?;
    let (items, total) = groups::list_group_members(&st.db, spot, id, &q).await?;
    let items: Vec<SpotMemberDto> = items.into_iter().map(|m| SpotMemberDto::new(m, &st.config.public_url)).collect();
    Ok(Json(SpotMemberPage { items, total }))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AddGroupMemberBody {
    /// Required.
    spot_member_id: Option<String>,
}

/// Add a member to a group
#[utoipa::path(post, path = "/v1/groups/{groupId}/spotMembers", tag = "Groups",
    params(("groupId" = String, Path)), request_body = AddGroupMemberBody,
    responses(
        (status = 204, description = "Member added (or already there)"),
        (status = 400, description = "spotMemberId missing", body = ErrorBody),
        (status = 401, description = "Unauthorized", body = ErrorBody),
        (status = 404, description = "Group not found / Spot member not found", body = ErrorBody),
        (status = 409, description = "The group is a smart group", body = ErrorBody),
    ))]
async fn add_group_member(
    State(st): State<AppState>,
    CallerSpot(spot): CallerSpot,
    Path(id): Path<String>,
    MsJson(body): MsJson<AddGroupMemberBody>,
) -> Result<StatusCode, MsError> {
    let id = parse_id(&id, Entity::Group)?;
    let raw = body.spot_member_id.ok_or_else(|| crate::error::Error::invalid("spotMemberId", "is required"))?;
    let member = parse_id(&raw, Entity::SpotMember)?;
    groups::add_member(&st.db, spot, id, member).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SpotMemberIdsBody {
    /// 1 to 200 spot member ids.
    spot_member_ids: Option<Vec<String>>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct BulkAddResult {
    added_spot_member_ids: Vec<String>,
    failed_spot_member_ids: Vec<String>,
}

/// Add multiple members to a group
///
/// Ids already in the group count as added; unknown ids (and every id, on a smart group) fail.
#[utoipa::path(post, path = "/v1/groups/{groupId}/spotMembers~bulkAdd", tag = "Groups",
    params(("groupId" = String, Path)), request_body = SpotMemberIdsBody,
    responses(
        (status = 200, description = "Members added", body = BulkAddResult),
        (status = 400, description = "No ids", body = ErrorBody),
        (status = 401, description = "Unauthorized", body = ErrorBody),
        (status = 404, description = "Group not found", body = ErrorBody),
        (status = 413, description = "Payload is too large (more than 200 ids)", body = ErrorBody),
    ))]
async fn bulk_add_group_members(
    State(st): State<AppState>,
    CallerSpot(spot): CallerSpot,
    Path(id): Path<String>,
    MsJson(body): MsJson<SpotMemberIdsBody>,
) -> Result<Json<BulkAddResult>, MsError> {
    let id = parse_id(&id, Entity::Group)?;
    let ids = body.spot_member_ids.unwrap_or_default();
    let (added, failed) = groups::bulk_add(&st.db, spot, id, &ids).await?;
    Ok(Json(BulkAddResult { added_spot_member_ids: added, failed_spot_member_ids: failed }))
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct BulkRemoveResult {
    removed_spot_members_count: u64,
}

/// Remove multiple members from a group
#[utoipa::path(post, path = "/v1/groups/{groupId}/spotMembers~bulkRemove", tag = "Groups",
    params(("groupId" = String, Path)), request_body = SpotMemberIdsBody,
    responses(
        (status = 200, description = "Members removed", body = BulkRemoveResult),
        (status = 400, description = "No ids", body = ErrorBody),
        (status = 401, description = "Unauthorized", body = ErrorBody),
        (status = 404, description = "Group not found", body = ErrorBody),
        (status = 409, description = "The group is a smart group", body = ErrorBody),
        (status = 413, description = "Payload is too large (more than 200 ids)", body = ErrorBody),
    ))]
async fn bulk_remove_group_members(
    State(st): State<AppState>,
    CallerSpot(spot): CallerSpot,
    Path(id): Path<String>,
    MsJson(body): MsJson<SpotMemberIdsBody>,
) -> Result<Json<BulkRemoveResult>, MsError> {
    let id = parse_id(&id, Entity::Group)?;
    let ids = body.spot_member_ids.unwrap_or_default();
    let n = groups::bulk_remove(&st.db, spot, id, &ids).await?;
    Ok(Json(BulkRemoveResult { removed_spot_members_count: n }))
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct BlacklistResult {
    #[schema(value_type = Vec<Uuid>)]
    blacklisted_spot_member_ids: Vec<MemberId>,
}

/// Exclude members from a smart group (openspot)
#[utoipa::path(post, path = "/v1/groups/{groupId}/blacklist~bulkAdd", tag = "Groups",
    params(("groupId" = String, Path)), request_body = SpotMemberIdsBody,
    extensions(("x-openspot" = json!(true))),
    responses(
        (status = 200, description = "The whole blacklist", body = BlacklistResult),
        (status = 400, description = "Not a JSON body, or an item is not a member id", body = ErrorBody),
        (status = 401, description = "Unauthorized", body = ErrorBody),
        (status = 404, description = "Group not found", body = ErrorBody),
        (status = 409, description = "Not a smart group", body = ErrorBody),
        (status = 413, description = "Payload is too large (more than 200 ids)", body = ErrorBody),
    ))]
async fn blacklist_add(
    State(st): State<AppState>,
    CallerSpot(spot): CallerSpot,
    Path(id): Path<String>,
    MsJson(body): MsJson<SpotMemberIdsBody>,
) -> Result<Json<BlacklistResult>, MsError> {
    let id = parse_id(&id, Entity::Group)?;
    let list = groups::change_blacklist(&st.db, spot, id, &body.spot_member_ids.unwrap_or_default(), true).await?;
    Ok(Json(BlacklistResult { blacklisted_spot_member_ids: list }))
}

/// Re-include members in a smart group (openspot)
#[utoipa::path(post, path = "/v1/groups/{groupId}/blacklist~bulkRemove", tag = "Groups",
    params(("groupId" = String, Path)), request_body = SpotMemberIdsBody,
    extensions(("x-openspot" = json!(true))),
    responses(
        (status = 200, description = "The whole blacklist", body = BlacklistResult),
        (status = 400, description = "Not a JSON body, or an item is not a member id", body = ErrorBody),
        (status = 401, description = "Unauthorized", body = ErrorBody),
        (status = 404, description = "Group not found", body = ErrorBody),
        (status = 409, description = "Not a smart group", body = ErrorBody),
        (status = 413, description = "Payload is too large (more than 200 ids)", body = ErrorBody),
    ))]
async fn blacklist_remove(
    State(st): State<AppState>,
    CallerSpot(spot): CallerSpot,
    Path(id): Path<String>,
    MsJson(body): MsJson<SpotMemberIdsBody>,
) -> Result<Json<BlacklistResult>, MsError> {
    let id = parse_id(&id, Entity::Group)?;
    let list = groups::change_blacklist(&st.db, spot, id, &body.spot_member_ids.unwrap_or_default(), false).await?;
    Ok(Json(BlacklistResult { blacklisted_spot_member_ids: list }))
}

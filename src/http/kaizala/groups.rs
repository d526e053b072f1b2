//! Kaizala groups, sub-groups, members and messages (`kaizala-api.md` §3–5, contract §6).
//! Success bodies never carry a top-level `message` key (clients read that as failure).

use axum::extract::{Path, State};
use axum::http::Uri;
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::{group_id, lenient, member_id, query_flag, Caller, KzError, KzErrorBody, KzJson};
use crate::domain::groups::Group;
use crate::domain::ids::{GroupId, MemberId};
use crate::domain::kaizala::{self, GroupView};
use crate::domain::vocab::{GroupRole, KaizalaGroupType, MemberStatus};
use crate::http::AppState;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(kz_create_group, kz_list_groups))
        .routes(routes!(kz_get_group))
        .routes(routes!(kz_create_sub_group, kz_attach_sub_groups, kz_list_sub_groups))
        .routes(routes!(kz_detach_sub_group))
        .routes(routes!(kz_list_members, kz_add_members))
        .routes(routes!(kz_set_member_role, kz_remove_member))
        .routes(routes!(kz_send_message))
}

/// `{"result": true}`: the answer of member and sub-group changes.
#[derive(Debug, Serialize, ToSchema)]
pub struct KzResult {
    result: bool,
}

fn ok_result() -> Json<KzResult> {
    Json(KzResult { result: true })
}

/// Body of group creation (keys in any case; JSON5 syntax accepted).
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub struct KzCreateGroupBody {
    name: Option<String>,
    /// Sub-group creation may send `groupName` instead of `name`.
    #[schema(rename = "groupName")]
    groupname: Option<String>,
    #[schema(rename = "welcomeMessage")]
    welcomemessage: Option<String>,
    /// Up to 100 mobile numbers with country code.
    #[serde(default)]
    members: Vec<String>,
    /// `Group` (default) or `ConnectGroup`.
    #[schema(rename = "groupType")]
    grouptype: Option<String>,
    /// Sub-groups: false leaves the caller out of the new group.
    #[serde(default, deserialize_with = "lenient::opt_bool")]
    #[schema(rename = "addUserToGroup", value_type = Option<bool>)]
    addusertogroup: Option<bool>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct KzCreatedGroup {
    #[schema(value_type = Uuid)]
    group_id: GroupId,
    group_name: String,
    members_added: bool,
}

/// Create a group
///
/// The caller becomes the group's Admin; each listed number joins as Member (unknown
/// numbers become spot members).
#[utoipa::path(post, path = "/kaizala/v1/groups", tag = "Kaizala: groups", request_body = KzCreateGroupBody,
    security(("kaizalaToken" = [])),
    responses(
        (status = 200, description = "Group created", body = KzCreatedGroup),
        (status = 400, description = "InvalidParameters", body = KzErrorBody),
        (status = 401, description = "InvalidToken", body = KzErrorBody),
        (status = 429, description = "Throttled", body = KzErrorBody),
    ))]
async fn kz_create_group(
    State(st): State<AppState>,
    Caller(caller): Caller,
    KzJson(b): KzJson<KzCreateGroupBody>,
) -> Result<Json<KzCreatedGroup>, KzError> {
    let name = b.name.or(b.groupname);
    let (g, added) =
        kaizala::create_group(&st.db, &caller, name, b.welcomemessage, &b.members, b.grouptype, None, true).await?;
    Ok(Json(KzCreatedGroup { group_id: g.id, group_name: g.name, members_added: added }))
}

/// A group in `GET /groups` without `showDetail(s)`. Exactly these fields
/// (`additionalProperties: false`), so a [`KzGroupDetail`], which has them all and more,
/// is not also a summary: `oneOf` holds for one of the two only.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct KzGroupSummary {
    #[schema(value_type = Uuid)]
    group_id: GroupId,
    group_name: String,
    /// Always empty: openspot stores no group images.
    group_image_url: String,
    group_type: KaizalaGroupType,
    /// `Admin`, `Member`, or null when the caller only sees it through a related group.
    caller_role: Option<GroupRole>,
}

impl From<&GroupView> for KzGroupSummary {
    fn from(v: &GroupView) -> Self {
        KzGroupSummary {
            group_id: v.group.id,
            group_name: v.group.name.clone(),
            group_image_url: String::new(),
            group_type: v.group.group_type,
            caller_role: v.caller_role,
        }
    }
}

/// A group with every documented count (`showDetail(s)=true`, and `GET /groups/{id}`).
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct KzGroupDetail {
    group_name: String,
    #[schema(value_type = Uuid)]
    group_id: GroupId,
    group_image_url: String,
    has_sub_groups: bool,
    has_parent_groups: bool,
    caller_role: Option<GroupRole>,
    current_level_sub_group_count: usize,
    current_level_parent_group_count: usize,
    /// Members across the group and its sub-groups (one in two groups counts twice).
    user_count: i64,
    unique_user_count: i64,
    current_level_user_count: i64,
    current_level_un_provisioned_user_count: i64,
    un_provisioned_user_count: i64,
    is_mapped_to_tenant: bool,
    group_type: KaizalaGroupType,
    is_duplicate: bool,
    is_editable: bool,
    is_details_readable: bool,
    welcome_message: Option<String>,
}

impl From<&GroupView> for KzGroupDetail {
    fn from(v: &GroupView) -> Self {
        KzGroupDetail {
            group_name: v.group.name.clone(),
            group_id: v.group.id,
            group_image_url: String::new(),
            has_sub_groups: !v.child_ids.is_empty(),
            has_parent_groups: !v.parent_ids.is_empty(),
            caller_role: v.caller_role,
            current_level_sub_group_count: v.child_ids.len(),
            current_level_parent_group_count: v.parent_ids.len(),
            user_count: v.user_count,
            unique_user_count: v.unique_user_count,
            current_level_user_count: v.current_level_user_count,
            current_level_un_provisioned_user_count: v.current_level_unprovisioned,
            un_provisioned_user_count: v.unprovisioned_user_count,
            is_mapped_to_tenant: true,
            group_type: v.group.group_type,
            is_duplicate: false,
            is_editable: v.caller_role == Some(GroupRole::Admin),
            is_details_readable: true,
            welcome_message: v.group.welcome_message.clone(),
        }
    }
}

/// One entry of `{groups: [...]}`: a summary, or the details when asked for.
#[derive(Debug, Serialize, ToSchema)]
#[serde(untagged)]
pub enum KzGroupItem {
    Summary(KzGroupSummary),
    Detail(KzGroupDetail),
}

/// `{groups: [...]}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct KzGroups {
    groups: Vec<KzGroupItem>,
}

/// List the caller's groups
///
/// Groups the caller belongs to (every group of the spot for a spot Admin); with
/// `fetchAllGroups=true` also their parent and sub-groups. `showDetail`/`showDetails`
/// adds every documented count.
#[utoipa::path(get, path = "/kaizala/v1/groups", tag = "Kaizala: groups", security(("kaizalaToken" = [])),
    params(("fetchAllGroups" = Option<bool>, Query), ("showDetail" = Option<bool>, Query), ("showDetails" = Option<bool>, Query)),
    responses(
        (status = 200, description = "The caller's groups", body = KzGroups),
        (status = 401, description = "InvalidToken", body = KzErrorBody),
    ))]
async fn kz_list_groups(
    State(st): State<AppState>,
    Caller(caller): Caller,
    uri: Uri,
) -> Result<Json<KzGroups>, KzError> {
    let fetch_all = query_flag(&uri, &["fetchAllGroups"]);
    let details = query_flag(&uri, &["showDetail", "showDetails"]);
    let views = kaizala::list_groups(&st.db, &caller, fetch_all).await?;
    let groups = views
        .iter()
        .map(|v| if details { KzGroupItem::Detail(v.into()) } else { KzGroupItem::Summary(v.into()) })
        .collect();
    Ok(Json(KzGroups { groups }))
}

/// Get a group's details
#[utoipa::path(get, path = "/kaizala/v1/groups/{groupId}", tag = "Kaizala: groups", security(("kaizalaToken" = [])),
    params(("groupId" = String, Path, description = "Group id; an `@<n>` suffix is accepted")),
    responses(
        (status = 200, description = "`{groups: [<the group, with details>]}`", body = KzGroups),
        (status = 401, description = "InvalidToken", body = KzErrorBody),
        (status = 403, description = "AccessDenied: not a member", body = KzErrorBody),
        (status = 404, description = "GroupNotFound", body = KzErrorBody),
    ))]
async fn kz_get_group(
    State(st): State<AppState>,
    Caller(caller): Caller,
    Path(gid): Path<String>,
) -> Result<Json<KzGroups>, KzError> {
    let v = kaizala::group_detail(&st.db, &caller, group_id(&gid)?).await?;
    Ok(Json(KzGroups { groups: vec![KzGroupItem::Detail((&v).into())] }))
}

/// A sub-group just created.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct KzCreatedSubGroup {
    #[schema(value_type = Uuid)]
    group_id: GroupId,
    group_name: String,
}

/// Create a sub-group
#[utoipa::path(post, path = "/kaizala/v1/groups/{groupId}/subGroups", tag = "Kaizala: groups",
    security(("kaizalaToken" = [])), params(("groupId" = String, Path)), request_body = KzCreateGroupBody,
    responses(
        (status = 200, description = "Sub-group created", body = KzCreatedSubGroup),
        (status = 400, description = "InvalidParameters", body = KzErrorBody),
        (status = 403, description = "AccessDenied: not an Admin of the parent", body = KzErrorBody),
        (status = 404, description = "GroupNotFound", body = KzErrorBody),
    ))]
async fn kz_create_sub_group(
    State(st): State<AppState>,
    Caller(caller): Caller,
    Path(gid): Path<String>,
    KzJson(b): KzJson<KzCreateGroupBody>,
) -> Result<Json<KzCreatedSubGroup>, KzError> {
    let parent = group_id(&gid)?;
    let name = b.name.or(b.groupname);
    let add_caller = b.addusertogroup.unwrap_or(true);
    let (g, _) = kaizala::create_group(
        &st.db,
        &caller,
        name,
        b.welcomemessage,
        &b.members,
        b.grouptype,
        Some(parent),
        add_caller,
    )
    .await?;
    Ok(Json(KzCreatedSubGroup { group_id: g.id, group_name: g.name }))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub struct KzSubGroupsBody {
    #[serde(default)]
    #[schema(rename = "subGroups")]
    subgroups: Vec<String>,
}

/// Attach existing groups as sub-groups
#[utoipa::path(put, path = "/kaizala/v1/groups/{groupId}/subGroups", tag = "Kaizala: groups",
    security(("kaizalaToken" = [])), params(("groupId" = String, Path)), request_body = KzSubGroupsBody,
    responses(
        (status = 200, description = "`{\"result\": true}`", body = KzResult),
        (status = 400, description = "InvalidParameters (unknown group, cycle)", body = KzErrorBody),
        (status = 403, description = "AccessDenied", body = KzErrorBody),
        (status = 404, description = "GroupNotFound (the parent)", body = KzErrorBody),
    ))]
async fn kz_attach_sub_groups(
    State(st): State<AppState>,
    Caller(caller): Caller,
    Path(gid): Path<String>,
    KzJson(b): KzJson<KzSubGroupsBody>,
) -> Result<Json<KzResult>, KzError> {
    let parent = group_id(&gid)?;
    let children = b.subgroups.iter().map(|s| group_id(s)).collect::<Result<Vec<_>, _>>()?;
    kaizala::attach_sub_groups(&st.db, &caller, parent, &children).await?;
    Ok(ok_result())
}

/// A group as the sub-group listing shows it.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct KzSubGroup {
    group_name: String,
    #[schema(value_type = Uuid)]
    group_id: GroupId,
    group_image_url: String,
    has_sub_groups: bool,
    has_parent_groups: bool,
    is_mapped_to_tenant: bool,
    group_type: KaizalaGroupType,
    is_duplicate: bool,
    welcome_message: Option<String>,
}

impl KzSubGroup {
    fn of(g: &Group, links: &[(GroupId, GroupId)]) -> Self {
        KzSubGroup {
            group_name: g.name.clone(),
            group_id: g.id,
            group_image_url: String::new(),
            has_sub_groups: links.iter().any(|(p, _)| *p == g.id),
            has_parent_groups: links.iter().any(|(_, c)| *c == g.id),
            is_mapped_to_tenant: true,
            group_type: g.group_type,
            is_duplicate: false,
            welcome_message: g.welcome_message.clone(),
        }
    }
}

/// The group itself, with its sub-groups.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct KzSubGroups {
    #[serde(flatten)]
    group: KzSubGroup,
    sub_groups: Vec<KzSubGroup>,
}

/// List sub-groups
#[utoipa::path(get, path = "/kaizala/v1/groups/{groupId}/subGroups", tag = "Kaizala: groups",
    security(("kaizalaToken" = [])), params(("groupId" = String, Path), ("fetchAllGroups" = Option<bool>, Query)),
    responses(
        (status = 200, description = "The group with `subGroups: [...]`", body = KzSubGroups),
        (status = 403, description = "AccessDenied", body = KzErrorBody),
        (status = 404, description = "GroupNotFound", body = KzErrorBody),
    ))]
async fn kz_list_sub_groups(
    State(st): State<AppState>,
    Caller(caller): Caller,
    Path(gid): Path<String>,
    uri: Uri,
) -> Result<Json<KzSubGroups>, KzError> {
    let fetch_all = query_flag(&uri, &["fetchAllGroups"]);
    let (g, subs, links) = kaizala::sub_groups(&st.db, &caller, group_id(&gid)?, fetch_all).await?;
    Ok(Json(KzSubGroups {
        group: KzSubGroup::of(&g, &links),
        sub_groups: subs.iter().map(|s| KzSubGroup::of(s, &links)).collect(),
    }))
}

/// Detach a sub-group
#[utoipa::path(delete, path = "/kaizala/v1/groups/{groupId}/subGroups/{subGroupId}", tag = "Kaizala: groups",
    security(("kaizalaToken" = [])), params(("groupId" = String, Path), ("subGroupId" = String, Path)),
    responses(
        (status = 200, description = "`{\"result\": true}`", body = KzResult),
        (status = 403, description = "AccessDenied", body = KzErrorBody),
        (status = 404, description = "GroupNotFound (not a sub-group)", body = KzErrorBody),
    ))]
async fn kz_detach_sub_group(
    State(st): State<AppState>,
    Caller(caller): Caller,
    Path((gid, sub)): Path<(String, String)>,
) -> Result<Json<KzResult>, KzError> {
    kaizala::detach_sub_group(&st.db, &caller, group_id(&gid)?, group_id(&sub)?).await?;
    Ok(ok_result())
}

/// List a group's members
#[utoipa::path(get, path = "/kaizala/v1/groups/{groupId}/members", tag = "Kaizala: members",
    security(("kaizalaToken" = [])), params(("groupId" = String, Path)),
    responses(
        (status = 200, description = "The group's members", body = KzMembers),
        (status = 403, description = "AccessDenied", body = KzErrorBody),
        (status = 404, description = "GroupNotFound", body = KzErrorBody),
    ))]
async fn kz_list_members(
    State(st): State<AppState>,
    Caller(caller): Caller,
    Path(gid): Path<String>,
) -> Result<Json<KzMembers>, KzError> {
    let rows = kaizala::list_members(&st.db, &caller, group_id(&gid)?).await?;
    let members = rows
        .iter()
        .map(|r| {
            let name = format!("{} {}", r.member.firstname, r.member.lastname).trim().to_string();
            KzMember {
                id: r.member.id,
                role: r.group_role,
                mobile_number: r.member.mobile_number.clone(),
                is_provisioned: r.member.status == MemberStatus::Accepted,
                name: (!name.is_empty()).then_some(name),
            }
        })
        .collect();
    Ok(Json(KzMembers { members }))
}

/// A group member as Kaizala lists it.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct KzMember {
    #[schema(value_type = Uuid)]
    id: MemberId,
    role: GroupRole,
    /// E.164; null for an email-only member.
    mobile_number: Option<String>,
    /// True when the member's status is `Accepted`.
    is_provisioned: bool,
    /// First and last name, when the member has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<String>,
}

/// `{members: [...]}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct KzMembers {
    members: Vec<KzMember>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub struct KzMembersBody {
    /// Mobile numbers with country code (at most 100).
    #[serde(default)]
    members: Vec<String>,
}

/// Add members by mobile number
#[utoipa::path(put, path = "/kaizala/v1/groups/{groupId}/members", tag = "Kaizala: members",
    security(("kaizalaToken" = [])), params(("groupId" = String, Path)), request_body = KzMembersBody,
    responses(
        (status = 200, description = "`{\"result\": true}`", body = KzResult),
        (status = 400, description = "InvalidParameters (bad number: nothing is added)", body = KzErrorBody),
        (status = 403, description = "AccessDenied: only a group Admin", body = KzErrorBody),
        (status = 404, description = "GroupNotFound", body = KzErrorBody),
    ))]
async fn kz_add_members(
    State(st): State<AppState>,
    Caller(caller): Caller,
    Path(gid): Path<String>,
    KzJson(b): KzJson<KzMembersBody>,
) -> Result<Json<KzResult>, KzError> {
    kaizala::add_members(&st.db, &caller, group_id(&gid)?, &b.members).await?;
    Ok(ok_result())
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub struct KzRoleBody {
    /// `Admin` or `Member`.
    role: Option<String>,
}

/// Change a member's role
#[utoipa::path(put, path = "/kaizala/v1/groups/{groupId}/members/{memberId}", tag = "Kaizala: members",
    security(("kaizalaToken" = [])), params(("groupId" = String, Path), ("memberId" = String, Path)),
    request_body = KzRoleBody,
    responses(
        (status = 200, description = "`{\"result\": true}`", body = KzResult),
        (status = 400, description = "InvalidParameters (bad role; last Admin)", body = KzErrorBody),
        (status = 403, description = "AccessDenied", body = KzErrorBody),
        (status = 404, description = "GroupNotFound / MemberNotFound", body = KzErrorBody),
    ))]
async fn kz_set_member_role(
    State(st): State<AppState>,
    Caller(caller): Caller,
    Path((gid, mid)): Path<(String, String)>,
    KzJson(b): KzJson<KzRoleBody>,
) -> Result<Json<KzResult>, KzError> {
    let role = normalize_role(b.role.as_deref().unwrap_or_default());
    kaizala::set_member_role(&st.db, &caller, group_id(&gid)?, member_id(&mid)?, &role).await?;
    Ok(ok_result())
}

/// A role in any letter case (`admin`, `MEMBER`) as its word; anything else as sent,
/// for the domain to refuse.
fn normalize_role(raw: &str) -> String {
    match GroupRole::ALL.iter().find(|r| r.as_str().eq_ignore_ascii_case(raw.trim())) {
        Some(role) => role.to_string(),
        None => raw.to_string(),
    }
}

/// Remove a member
#[utoipa::path(delete, path = "/kaizala/v1/groups/{groupId}/members/{memberId}", tag = "Kaizala: members",
    security(("kaizalaToken" = [])), params(("groupId" = String, Path), ("memberId" = String, Path)),
    responses(
        (status = 200, description = "`{\"result\": true}`", body = KzResult),
        (status = 400, description = "InvalidParameters (last Admin)", body = KzErrorBody),
        (status = 403, description = "AccessDenied", body = KzErrorBody),
        (status = 404, description = "GroupNotFound / MemberNotFound", body = KzErrorBody),
    ))]
async fn kz_remove_member(
    State(st): State<AppState>,
    Caller(caller): Caller,
    Path((gid, mid)): Path<(String, String)>,
) -> Result<Json<KzResult>, KzError> {
    kaizala::remove_member(&st.db, &caller, group_id(&gid)?, member_id(&mid)?).await?;
    Ok(ok_result())
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub struct KzMessageBody {
    /// At most 4000 characters.
    message: Option<String>,
}

/// Send a text message to a group
#[utoipa::path(post, path = "/kaizala/v1/groups/{groupId}/messages", tag = "Kaizala: messages",
    security(("kaizalaToken" = [])), params(("groupId" = String, Path)), request_body = KzMessageBody,
    responses(
        (status = 200, description = "Message stored", body = KzMessageSent),
        (status = 400, description = "InvalidParameters", body = KzErrorBody),
        (status = 403, description = "AccessDenied: not a member", body = KzErrorBody),
        (status = 404, description = "GroupNotFound", body = KzErrorBody),
    ))]
async fn kz_send_message(
    State(st): State<AppState>,
    Caller(caller): Caller,
    Path(gid): Path<String>,
    KzJson(b): KzJson<KzMessageBody>,
) -> Result<Json<KzMessageSent>, KzError> {
    let id = kaizala::post_message(&st.db, &caller, group_id(&gid)?, b.message.as_deref().unwrap_or_default()).await?;
    Ok(Json(KzMessageSent { reference_id: id }))
}

/// `{referenceId}` of a stored message.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct KzMessageSent {
    reference_id: Uuid,
}

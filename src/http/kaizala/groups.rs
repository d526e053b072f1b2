//! Kaizala groups, sub-groups, members and messages (`kaizala-api.md` §3–5, contract §6).
//! Success bodies never carry a top-level `message` key (clients read that as failure).

use axum::extract::{Path, State};
use axum::http::Uri;
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::{group_id, lenient, member_id, query_flag, Caller, KzError, KzErrorBody, KzJson};
use crate::domain::groups::Group;
use crate::domain::kaizala::{self, GroupView};
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

fn ok_result() -> Json<Value> {
    Json(json!({"result": true}))
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
    group_id: Uuid,
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

fn summary(v: &GroupView) -> Value {
    json!({
        "groupId": v.group.id,
        "groupName": v.group.name,
        "groupImageUrl": "",
        "groupType": v.group.group_type,
        "callerRole": v.caller_role,
    })
}

fn detail(v: &GroupView) -> Value {
    json!({
        "groupName": v.group.name,
        "groupId": v.group.id,
        "groupImageUrl": "",
        "hasSubGroups": !v.child_ids.is_empty(),
        "hasParentGroups": !v.parent_ids.is_empty(),
        "callerRole": v.caller_role,
        "currentLevelSubGroupCount": v.child_ids.len(),
        "currentLevelParentGroupCount": v.parent_ids.len(),
        "userCount": v.user_count,
        "uniqueUserCount": v.unique_user_count,
        "currentLevelUserCount": v.current_level_user_count,
        "currentLevelUnProvisionedUserCount": v.current_level_unprovisioned,
        "unProvisionedUserCount": v.unprovisioned_user_count,
        "isMappedToTenant": true,
        "groupType": v.group.group_type,
        "isDuplicate": false,
        "isEditable": v.caller_role.as_deref() == Some("Admin"),
        "isDetailsReadable": true,
        "welcomeMessage": v.group.welcome_message,
    })
}

/// List the caller's groups
///
/// Groups the caller belongs to (every group of the spot for a spot Admin); with
/// `fetchAllGroups=true` also their parent and sub-groups. `showDetail`/`showDetails`
/// adds every documented count.
#[utoipa::path(get, path = "/kaizala/v1/groups", tag = "Kaizala: groups", security(("kaizalaToken" = [])),
    params(("fetchAllGroups" = Option<bool>, Query), ("showDetail" = Option<bool>, Query), ("showDetails" = Option<bool>, Query)),
    responses(
        (status = 200, description = "`{groups: [...]}`", body = Object),
        (status = 401, description = "InvalidToken", body = KzErrorBody),
    ))]
async fn kz_list_groups(State(st): State<AppState>, Caller(caller): Caller, uri: Uri) -> Result<Json<Value>, KzError> {
    let fetch_all = query_flag(&uri, &["fetchAllGroups"]);
    let details = query_flag(&uri, &["showDetail", "showDetails"]);
    let views = kaizala::list_groups(&st.db, &caller, fetch_all).await?;
    let groups: Vec<Value> = views.iter().map(|v| if details { detail(v) } else { summary(v) }).collect();
    Ok(Json(json!({ "groups": groups })))
}

/// Get a group's details
#[utoipa::path(get, path = "/kaizala/v1/groups/{groupId}", tag = "Kaizala: groups", security(("kaizalaToken" = [])),
    params(("groupId" = String, Path, description = "Group id; an `@<n>` suffix is accepted")),
    responses(
        (status = 200, description = "`{groups: [<group with details>]}`", body = Object),
        (status = 401, description = "InvalidToken", body = KzErrorBody),
        (status = 403, description = "AccessDenied: not a member", body = KzErrorBody),
        (status = 404, description = "GroupNotFound", body = KzErrorBody),
    ))]
async fn kz_get_group(
    State(st): State<AppState>,
    Caller(caller): Caller,
    Path(gid): Path<String>,
) -> Result<Json<Value>, KzError> {
    let v = kaizala::group_detail(&st.db, &caller, group_id(&gid)?).await?;
    Ok(Json(json!({ "groups": [detail(&v)] })))
}

/// Create a sub-group
#[utoipa::path(post, path = "/kaizala/v1/groups/{groupId}/subGroups", tag = "Kaizala: groups",
    security(("kaizalaToken" = [])), params(("groupId" = String, Path)), request_body = KzCreateGroupBody,
    responses(
        (status = 200, description = "`{groupId, groupName}`", body = Object),
        (status = 400, description = "InvalidParameters", body = KzErrorBody),
        (status = 403, description = "AccessDenied: not an Admin of the parent", body = KzErrorBody),
        (status = 404, description = "GroupNotFound", body = KzErrorBody),
    ))]
async fn kz_create_sub_group(
    State(st): State<AppState>,
    Caller(caller): Caller,
    Path(gid): Path<String>,
    KzJson(b): KzJson<KzCreateGroupBody>,
) -> Result<Json<Value>, KzError> {
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
    Ok(Json(json!({"groupId": g.id, "groupName": g.name})))
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
        (status = 200, description = "`{\"result\": true}`", body = Object),
        (status = 400, description = "InvalidParameters (unknown group, cycle)", body = KzErrorBody),
        (status = 403, description = "AccessDenied", body = KzErrorBody),
    ))]
async fn kz_attach_sub_groups(
    State(st): State<AppState>,
    Caller(caller): Caller,
    Path(gid): Path<String>,
    KzJson(b): KzJson<KzSubGroupsBody>,
) -> Result<Json<Value>, KzError> {
    let parent = group_id(&gid)?;
    let children = b.subgroups.iter().map(|s| group_id(s)).collect::<Result<Vec<_>, _>>()?;
    kaizala::attach_sub_groups(&st.db, &caller, parent, &children).await?;
    Ok(ok_result())
}

fn sub_group_json(g: &Group, links: &[(Uuid, Uuid)]) -> Value {
    json!({
        "groupName": g.name,
        "groupId": g.id,
        "groupImageUrl": "",
        "hasSubGroups": links.iter().any(|(p, _)| *p == g.id),
        "hasParentGroups": links.iter().any(|(_, c)| *c == g.id),
        "isMappedToTenant": true,
        "groupType": g.group_type,
        "isDuplicate": false,
        "welcomeMessage": g.welcome_message,
    })
}

/// List sub-groups
#[utoipa::path(get, path = "/kaizala/v1/groups/{groupId}/subGroups", tag = "Kaizala: groups",
    security(("kaizalaToken" = [])), params(("groupId" = String, Path), ("fetchAllGroups" = Option<bool>, Query)),
    responses(
        (status = 200, description = "The group with `subGroups: [...]`", body = Object),
        (status = 403, description = "AccessDenied", body = KzErrorBody),
        (status = 404, description = "GroupNotFound", body = KzErrorBody),
    ))]
async fn kz_list_sub_groups(
    State(st): State<AppState>,
    Caller(caller): Caller,
    Path(gid): Path<String>,
    uri: Uri,
) -> Result<Json<Value>, KzError> {
    let fetch_all = query_flag(&uri, &["fetchAllGroups"]);
    let (g, subs, links) = kaizala::sub_groups(&st.db, &caller, group_id(&gid)?, fetch_all).await?;
    let mut out = sub_group_json(&g, &links);
    out["subGroups"] = Value::from(subs.iter().map(|s| sub_group_json(s, &links)).collect::<Vec<_>>());
    Ok(Json(out))
}

/// Detach a sub-group
#[utoipa::path(delete, path = "/kaizala/v1/groups/{groupId}/subGroups/{subGroupId}", tag = "Kaizala: groups",
    security(("kaizalaToken" = [])), params(("groupId" = String, Path), ("subGroupId" = String, Path)),
    responses(
        (status = 200, description = "`{\"result\": true}`", body = Object),
        (status = 403, description = "AccessDenied", body = KzErrorBody),
        (status = 404, description = "GroupNotFound (not a sub-group)", body = KzErrorBody),
    ))]
async fn kz_detach_sub_group(
    State(st): State<AppState>,
    Caller(caller): Caller,
    Path((gid, sub)): Path<(String, String)>,
) -> Result<Json<Value>, KzError> {
    kaizala::detach_sub_group(&st.db, &caller, group_id(&gid)?, group_id(&sub)?).await?;
    Ok(ok_result())
}

/// List a group's members
#[utoipa::path(get, path = "/kaizala/v1/groups/{groupId}/members", tag = "Kaizala: members",
    security(("kaizalaToken" = [])), params(("groupId" = String, Path)),
    responses(
        (status = 200, description = "`{members: [{id, role, mobileNumber, isProvisioned, name}]}`", body = Object),
        (status = 403, description = "AccessDenied", body = KzErrorBody),
        (status = 404, description = "GroupNotFound", body = KzErrorBody),
    ))]
async fn kz_list_members(
    State(st): State<AppState>,
    Caller(caller): Caller,
    Path(gid): Path<String>,
) -> Result<Json<Value>, KzError> {
    let rows = kaizala::list_members(&st.db, &caller, group_id(&gid)?).await?;
    let members: Vec<Value> = rows
        .iter()
        .map(|r| {
            let name = format!("{} {}", r.member.firstname, r.member.lastname).trim().to_string();
            let mut v = json!({
                "id": r.member.id,
                "role": r.group_role,
                "mobileNumber": r.member.mobile_number,
                "isProvisioned": r.member.status == "Accepted",
            });
            if !name.is_empty() {
                v["name"] = Value::from(name);
            }
            v
        })
        .collect();
    Ok(Json(json!({ "members": members })))
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
        (status = 200, description = "`{\"result\": true}`", body = Object),
        (status = 400, description = "InvalidParameters (bad number: nothing is added)", body = KzErrorBody),
        (status = 403, description = "AccessDenied: only a group Admin", body = KzErrorBody),
        (status = 404, description = "GroupNotFound", body = KzErrorBody),
    ))]
async fn kz_add_members(
    State(st): State<AppState>,
    Caller(caller): Caller,
    Path(gid): Path<String>,
    KzJson(b): KzJson<KzMembersBody>,
) -> Result<Json<Value>, KzError> {
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
        (status = 200, description = "`{\"result\": true}`", body = Object),
        (status = 400, description = "InvalidParameters (bad role; last Admin)", body = KzErrorBody),
        (status = 403, description = "AccessDenied", body = KzErrorBody),
        (status = 404, description = "GroupNotFound / MemberNotFound", body = KzErrorBody),
    ))]
async fn kz_set_member_role(
    State(st): State<AppState>,
    Caller(caller): Caller,
    Path((gid, mid)): Path<(String, String)>,
    KzJson(b): KzJson<KzRoleBody>,
) -> Result<Json<Value>, KzError> {
    let role = normalize_role(b.role.as_deref().unwrap_or_default());
    kaizala::set_member_role(&st.db, &caller, group_id(&gid)?, member_id(&mid)?, &role).await?;
    Ok(ok_result())
}

fn normalize_role(raw: &str) -> String {
    match raw.trim().to_ascii_lowercase().as_str() {
        "admin" => "Admin".into(),
        "member" => "Member".into(),
        _ => raw.to_string(),
    }
}

/// Remove a member
#[utoipa::path(delete, path = "/kaizala/v1/groups/{groupId}/members/{memberId}", tag = "Kaizala: members",
    security(("kaizalaToken" = [])), params(("groupId" = String, Path), ("memberId" = String, Path)),
    responses(
        (status = 200, description = "`{\"result\": true}`", body = Object),
        (status = 400, description = "InvalidParameters (last Admin)", body = KzErrorBody),
        (status = 403, description = "AccessDenied", body = KzErrorBody),
        (status = 404, description = "GroupNotFound / MemberNotFound", body = KzErrorBody),
    ))]
async fn kz_remove_member(
    State(st): State<AppState>,
    Caller(caller): Caller,
    Path((gid, mid)): Path<(String, String)>,
) -> Result<Json<Value>, KzError> {
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
        (status = 200, description = "`{referenceId}`", body = Object),
        (status = 400, description = "InvalidParameters", body = KzErrorBody),
        (status = 403, description = "AccessDenied: not a member", body = KzErrorBody),
        (status = 404, description = "GroupNotFound", body = KzErrorBody),
    ))]
async fn kz_send_message(
    State(st): State<AppState>,
    Caller(caller): Caller,
    Path(gid): Path<String>,
    KzJson(b): KzJson<KzMessageBody>,
) -> Result<Json<Value>, KzError> {
    let id = kaizala::post_message(&st.db, &caller, group_id(&gid)?, b.message.as_deref().unwrap_or_default()).await?;
    Ok(Json(json!({"referenceId": id})))
}

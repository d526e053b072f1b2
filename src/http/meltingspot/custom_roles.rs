//! `/v1/spotMemberCustomRole` (`meltingspot-api.md` §3.2): custom roles of the spot.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::openapi::path::{Parameter, ParameterIn};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::domain::custom_roles::{self, CustomRole};
use crate::domain::ids::RoleId;
use crate::error::Entity;
use crate::http::error::{ErrorBody, MsError};
use crate::http::extract::{list_query_params, nullable, parse_id, CallerSpot, ListParams, MsJson};
use crate::http::AppState;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list_custom_roles, create_custom_role)).routes(routes!(
        get_custom_role,
        update_custom_role,
        delete_custom_role
    ))
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CustomRoleDto {
    #[schema(value_type = Uuid)]
    id: RoleId,
    label: String,
    description: Option<String>,
    /// Values of: live.*, live.full.*, live.limited.*, moderation.*, spot.member.invite.*,
    /// course.limited.*, course.full.*, collection.full.*, collection.limited.*
    permissions: Vec<String>,
}

impl From<CustomRole> for CustomRoleDto {
    fn from(r: CustomRole) -> Self {
        CustomRoleDto { id: r.id, label: r.label, description: r.description, permissions: r.permissions.0 }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CustomRolePage {
    items: Vec<CustomRoleDto>,
    total: i64,
}

/// Query parameters of the custom-role list: `page`, `limit` and one `field[op]` per entry of
/// the allow-list the domain validates with ([`custom_roles::ROLE_FILTERS`]).
pub struct CustomRoleListQuery;

impl IntoParams for CustomRoleListQuery {
    fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        list_query_params(custom_roles::ROLE_FILTERS)
    }
}

/// List custom roles
#[utoipa::path(get, path = "/v1/spotMemberCustomRole", tag = "Custom roles",
    params(CustomRoleListQuery),
    responses(
        (status = 200, description = "Custom roles returned successfully", body = CustomRolePage),
        (status = 400, description = "Bad filter or pagination parameter", body = ErrorBody),
        (status = 401, description = "Unauthorized", body = ErrorBody),
    ))]
async fn list_custom_roles(
    State(st): State<AppState>,
    CallerSpot(spot): CallerSpot,
    ListParams(q): ListParams,
) -> Result<Json<CustomRolePage>, MsError> {
    let (items, total) = custom_roles::list_roles(&st.db, spot, &q).await?;
    Ok(Json(CustomRolePage { items: items.into_iter().map(Into::into).collect(), total }))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CreateCustomRoleBody {
    /// Required.
    label: Option<String>,
    description: Option<String>,
    #[serde(default)]
    permissions: Vec<String>,
}

/// Create a custom role
#[utoipa::path(post, path = "/v1/spotMemberCustomRole", tag = "Custom roles",
    request_body = CreateCustomRoleBody,
    responses(
        (status = 201, description = "Custom role created", body = CustomRoleDto),
        (status = 400, description = "Invalid field (named in the message)", body = ErrorBody),
        (status = 401, description = "Unauthorized", body = ErrorBody),
    ))]
async fn create_custom_role(
    State(st): State<AppState>,
    CallerSpot(spot): CallerSpot,
    MsJson(body): MsJson<CreateCustomRoleBody>,
) -> Result<(StatusCode, Json<CustomRoleDto>), MsError> {
    let label = body.label.unwrap_or_default();
    let role = custom_roles::create_role(&st.db, spot, &label, body.description, body.permissions).await?;
    Ok((StatusCode::CREATED, Json(role.into())))
}

/// Get a custom role
#[utoipa::path(get, path = "/v1/spotMemberCustomRole/{customRoleId}", tag = "Custom roles",
    params(("customRoleId" = String, Path)),
    responses(
        (status = 200, description = "Custom role returned successfully", body = CustomRoleDto),
        (status = 401, description = "Unauthorized", body = ErrorBody),
        (status = 404, description = "Custom role not found", body = ErrorBody),
    ))]
async fn get_custom_role(
    State(st): State<AppState>,
    CallerSpot(spot): CallerSpot,
    Path(id): Path<String>,
) -> Result<Json<CustomRoleDto>, MsError> {
    let id = parse_id(&id, Entity::CustomRole)?;
    Ok(Json(custom_roles::get_role(&st.db, spot, id).await?.into()))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct UpdateCustomRoleBody {
    label: Option<String>,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<String>)]
    description: Option<Option<String>>,
    permissions: Option<Vec<String>>,
}

/// Update a custom role
#[utoipa::path(put, path = "/v1/spotMemberCustomRole/{customRoleId}", tag = "Custom roles",
    params(("customRoleId" = String, Path)),
    request_body = UpdateCustomRoleBody,
    responses(
        (status = 200, description = "Custom role updated", body = CustomRoleDto),
        (status = 400, description = "Invalid field (named in the message)", body = ErrorBody),
        (status = 401, description = "Unauthorized", body = ErrorBody),
        (status = 404, description = "Custom role not found", body = ErrorBody),
    ))]
async fn update_custom_role(
    State(st): State<AppState>,
    CallerSpot(spot): CallerSpot,
    Path(id): Path<String>,
    MsJson(body): MsJson<UpdateCustomRoleBody>,
) -> Result<Json<CustomRoleDto>, MsError> {
    let id = parse_id(&id, Entity::CustomRole)?;
    let role = custom_roles::update_role(&st.db, spot, id, body.label, body.description, body.permissions).await?;
    Ok(Json(role.into()))
}

/// Delete a custom role
///
/// Members holding the role get `customRoleId: null`.
#[utoipa::path(delete, path = "/v1/spotMemberCustomRole/{customRoleId}", tag = "Custom roles",
    params(("customRoleId" = String, Path)),
    responses(
        (status = 204, description = "Custom role deleted"),
        (status = 401, description = "Unauthorized", body = ErrorBody),
        (status = 404, description = "Custom role not found", body = ErrorBody),
    ))]
async fn delete_custom_role(
    State(st): State<AppState>,
    CallerSpot(spot): CallerSpot,
    Path(id): Path<String>,
) -> Result<StatusCode, MsError> {
    let id = parse_id(&id, Entity::CustomRole)?;
    custom_roles::delete_role(&st.db, spot, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

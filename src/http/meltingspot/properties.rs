//! Custom properties: the definitions extension (`/v1/customProperties`, contract §4)
//! and the documented values API (`/v1/spotMembers/{id}/customPropertiesValues`,
//! `meltingspot-api.md` §3.3).

use std::collections::HashMap;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::openapi::path::{Parameter, ParameterIn};
use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, OneOfBuilder, Schema, Type};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::domain::ids::PropertyId;
use crate::domain::properties::{self, NewProperty, PropertyDef, PropertyPatch, PropertyValue};
use crate::domain::vocab::PropertyType;
use crate::error::{Entity, Error};
use crate::http::error::{ErrorBody, MsError};
use crate::http::extract::{list_query_params, nullable, parse_id, CallerSpot, ListParams, MsJson};
use crate::http::AppState;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_custom_properties, create_custom_property))
        .routes(routes!(get_custom_property, update_custom_property, delete_custom_property))
        .routes(routes!(list_member_values))
        .routes(routes!(set_member_value))
        .routes(routes!(bulk_upsert_member_values))
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CustomPropertyDto {
    #[schema(value_type = Uuid)]
    id: PropertyId,
    slug: String,
    label: String,
    description: Option<String>,
    #[serde(rename = "type")]
    kind: PropertyType,
    possible_values: Vec<String>,
}

impl From<PropertyDef> for CustomPropertyDto {
    fn from(d: PropertyDef) -> Self {
        CustomPropertyDto {
            id: d.id,
            slug: d.slug,
            label: d.label,
            description: d.description,
            kind: d.kind,
            possible_values: d.possible_values.0,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CustomPropertyPage {
    items: Vec<CustomPropertyDto>,
    total: i64,
}

/// Query parameters of the lists that take no filters: `page` and `limit` (any filter is a 400).
pub struct PageQuery;

impl IntoParams for PageQuery {
    fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        list_query_params(&[])
    }
}

fn page_of<T>(items: Vec<T>, q: &crate::domain::filter::ListQuery) -> Result<(Vec<T>, i64), Error> {
    if let Some(f) = q.filters.first() {
        return Err(Error::invalid(&f.param, "this list takes no filters"));
    }
    let total = items.len() as i64;
    Ok((items.into_iter().skip(q.offset() as usize).take(q.limit as usize).collect(), total))
}

/// List custom properties (openspot)
#[utoipa::path(get, path = "/v1/customProperties", tag = "Custom properties", params(PageQuery),
    extensions(("x-openspot" = json!(true))),
    responses(
        (status = 200, description = "Definitions", body = CustomPropertyPage),
        (status = 400, description = "Bad pagination parameter", body = ErrorBody),
        (status = 401, description = "Unauthorized", body = ErrorBody),
    ))]
async fn list_custom_properties(
    State(st): State<AppState>,
    CallerSpot(spot): CallerSpot,
    ListParams(q): ListParams,
) -> Result<Json<CustomPropertyPage>, MsError> {
    let (items, total) = page_of(properties::list_properties(&st.db, spot).await?, &q)?;
    Ok(Json(CustomPropertyPage { items: items.into_iter().map(Into::into).collect(), total }))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CreateCustomPropertyBody {
    /// `^[a-z0-9][a-z0-9_-]{0,63}$`; derived from the label when omitted. Immutable.
    slug: Option<String>,
    /// Required.
    label: Option<String>,
    description: Option<String>,
    /// Required: Text, Number, Boolean, Date, SingleSelect or MultipleSelect. Immutable.
    #[serde(rename = "type")]
    kind: Option<String>,
    /// Required for select types.
    possible_values: Option<Vec<String>>,
}

/// Create a custom property (openspot)
#[utoipa::path(post, path = "/v1/customProperties", tag = "Custom properties", request_body = CreateCustomPropertyBody,
    extensions(("x-openspot" = json!(true))),
    responses(
        (status = 201, description = "Created", body = CustomPropertyDto),
        (status = 400, description = "Invalid field", body = ErrorBody),
        (status = 401, description = "Unauthorized", body = ErrorBody),
        (status = 409, description = "Slug already in use", body = ErrorBody),
    ))]
async fn create_custom_property(
    State(st): State<AppState>,
    CallerSpot(spot): CallerSpot,
    MsJson(b): MsJson<CreateCustomPropertyBody>,
) -> Result<(StatusCode, Json<CustomPropertyDto>), MsError> {
    let n = NewProperty {
        slug: b.slug,
        label: b.label,
        description: b.description,
        kind: b.kind,
        possible_values: b.possible_values,
    };
    Ok((StatusCode::CREATED, Json(properties::create_property(&st.db, spot, n).await?.into())))
}

/// Get a custom property (openspot)
#[utoipa::path(get, path = "/v1/customProperties/{slug}", tag = "Custom properties", params(("slug" = String, Path)),
    extensions(("x-openspot" = json!(true))),
    responses(
        (status = 200, description = "Definition", body = CustomPropertyDto),
        (status = 401, description = "Unauthorized", body = ErrorBody),
        (status = 404, description = "Custom property not found", body = ErrorBody),
    ))]
async fn get_custom_property(
    State(st): State<AppState>,
    CallerSpot(spot): CallerSpot,
    Path(slug): Path<String>,
) -> Result<Json<CustomPropertyDto>, MsError> {
    Ok(Json(properties::get_property(&st.db, spot, &slug).await?.into()))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct UpdateCustomPropertyBody {
    /// Cannot change.
    slug: Option<String>,
    /// Cannot change.
    #[serde(rename = "type")]
    kind: Option<String>,
    label: Option<String>,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<String>)]
    description: Option<Option<String>>,
    /// The new list of options; options left out are removed with their stored values.
    possible_values: Option<Vec<String>>,
    /// Options to rename, old → new (applied first, all at once: `{"a": "b", "b": "a"}`
    /// swaps them; stored values follow). Each old value must be an option; two options
    /// cannot be renamed to one, nor one onto an option that stays.
    #[serde(default)]
    renamed_values: HashMap<String, String>,
}

/// Update a custom property (openspot)
#[utoipa::path(put, path = "/v1/customProperties/{slug}", tag = "Custom properties", params(("slug" = String, Path)),
    request_body = UpdateCustomPropertyBody, extensions(("x-openspot" = json!(true))),
    responses(
        (status = 200, description = "Updated", body = CustomPropertyDto),
        (status = 400, description = "Invalid field (slug and type are immutable)", body = ErrorBody),
        (status = 401, description = "Unauthorized", body = ErrorBody),
        (status = 404, description = "Custom property not found", body = ErrorBody),
    ))]
async fn update_custom_property(
    State(st): State<AppState>,
    CallerSpot(spot): CallerSpot,
    Path(slug): Path<String>,
    MsJson(b): MsJson<UpdateCustomPropertyBody>,
) -> Result<Json<CustomPropertyDto>, MsError> {
    let patch = PropertyPatch {
        slug: b.slug,
        kind: b.kind,
        label: b.label,
        description: b.description,
        possible_values: b.possible_values,
        renamed_values: b.renamed_values,
    };
    Ok(Json(properties::update_property(&st.db, spot, &slug, patch).await?.into()))
}

/// Delete a custom property (openspot)
///
/// Every stored value of it goes too.
#[utoipa::path(delete, path = "/v1/customProperties/{slug}", tag = "Custom properties", params(("slug" = String, Path)),
    extensions(("x-openspot" = json!(true))),
    responses(
        (status = 204, description = "Deleted"),
        (status = 401, description = "Unauthorized", body = ErrorBody),
        (status = 404, description = "Custom property not found", body = ErrorBody),
    ))]
async fn delete_custom_property(
    State(st): State<AppState>,
    CallerSpot(spot): CallerSpot,
    Path(slug): Path<String>,
) -> Result<StatusCode, MsError> {
    properties::delete_property(&st.db, spot, &slug).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A property with a member's value.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CustomPropertyValueDto {
    #[schema(value_type = Uuid)]
    custom_property_id: PropertyId,
    custom_property_label: String,
    custom_property_slug: String,
    custom_property_description: Option<String>,
    custom_property_type: PropertyType,
    possible_values: Vec<String>,
    /// string | number | boolean | string[] | null (unset).
    #[schema(schema_with = property_value_schema)]
    value: Value,
}

impl From<PropertyValue> for CustomPropertyValueDto {
    fn from(v: PropertyValue) -> Self {
        CustomPropertyValueDto {
            custom_property_id: v.def.id,
            custom_property_label: v.def.label,
            custom_property_slug: v.def.slug,
            custom_property_description: v.def.description,
            custom_property_type: v.def.kind,
            possible_values: v.def.possible_values.0,
            value: v.value,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CustomPropertyValuePage {
    items: Vec<CustomPropertyValueDto>,
    total: i64,
}

/// List a member's custom property values
///
/// One item per property of the spot; `value` is null when unset.
#[utoipa::path(get, path = "/v1/spotMembers/{spotMemberId}/customPropertiesValues", tag = "Custom properties",
    params(("spotMemberId" = String, Path), PageQuery),
    responses(
        (status = 200, description = "Values", body = CustomPropertyValuePage),
        (status = 400, description = "Bad pagination parameter", body = ErrorBody),
        (status = 401, description = "Unauthorized", body = ErrorBody),
        (status = 404, description = "Spot member not found", body = ErrorBody),
    ))]
async fn list_member_values(
    State(st): State<AppState>,
    CallerSpot(spot): CallerSpot,
    Path(id): Path<String>,
    ListParams(q): ListParams,
) -> Result<Json<CustomPropertyValuePage>, MsError> {
    let member = parse_id(&id, Entity::SpotMember)?;
    page_of(Vec::<()>::new(), &q)?;
    let (items, total) = properties::member_values(&st.db, spot, member, q.offset() as usize, q.limit as usize).await?;
    Ok(Json(CustomPropertyValuePage { items: items.into_iter().map(Into::into).collect(), total }))
}

/// A `value` field that must be present: absent is None, `null` is `Some(Null)`.
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Value>, D::Error> {
    Value::deserialize(d).map(Some)
}

/// A required `value`: a body without one is a 400 naming `field` (it used to clear the
/// value silently); an explicit `null` clears it.
fn required_value(value: Option<Value>, field: &str) -> Result<Value, Error> {
    value.ok_or_else(|| Error::invalid(field, "is required (null clears the value)"))
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct SetValueBody {
    /// Required: string | number | boolean | string[] as the property's type requires,
    /// or null to clear the value.
    #[serde(default, deserialize_with = "present")]
    #[schema(schema_with = property_value_schema, required = true)]
    value: Option<Value>,
}

/// Set a member's value of one property
#[utoipa::path(put, path = "/v1/spotMembers/{spotMemberId}/customPropertiesValues/{customPropertySlug}",
    tag = "Custom properties", params(("spotMemberId" = String, Path), ("customPropertySlug" = String, Path)),
    request_body = SetValueBody,
    responses(
        (status = 200, description = "The value", body = CustomPropertyValueDto),
        (status = 400, description = "Value of the wrong type", body = ErrorBody),
        (status = 401, description = "Unauthorized", body = ErrorBody),
        (status = 404, description = "Spot member not found / Custom property not found", body = ErrorBody),
    ))]
async fn set_member_value(
    State(st): State<AppState>,
    CallerSpot(spot): CallerSpot,
    Path((id, slug)): Path<(String, String)>,
    MsJson(b): MsJson<SetValueBody>,
) -> Result<Json<CustomPropertyValueDto>, MsError> {
    let member = parse_id(&id, Entity::SpotMember)?;
    let value = required_value(b.value, "value")?;
    let mut out = properties::set_values(&st.db, spot, member, &[(slug, value, "value".into())]).await?;
    let v = out.pop().ok_or(Error::NotFound(Entity::CustomProperty))?;
    Ok(Json(v.into()))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct UpsertItem {
    custom_property_slug: String,
    /// Required, as in the single PUT; null clears the value.
    #[serde(default, deserialize_with = "present")]
    #[schema(schema_with = property_value_schema, required = true)]
    value: Option<Value>,
}

/// Set several values of a member (all or nothing)
#[utoipa::path(post, path = "/v1/spotMembers/{spotMemberId}/customPropertiesValues~bulkUpsert",
    tag = "Custom properties", params(("spotMemberId" = String, Path)), request_body = Vec<UpsertItem>,
    responses(
        (status = 200, description = "The values written", body = Vec<CustomPropertyValueDto>),
        (status = 400, description = "An invalid item (named by index); nothing written", body = ErrorBody),
        (status = 401, description = "Unauthorized", body = ErrorBody),
        (status = 404, description = "Spot member not found / Custom property not found", body = ErrorBody),
        (status = 413, description = "Payload is too large (more than 200 items)", body = ErrorBody),
    ))]
async fn bulk_upsert_member_values(
    State(st): State<AppState>,
    CallerSpot(spot): CallerSpot,
    Path(id): Path<String>,
    MsJson(items): MsJson<Vec<UpsertItem>>,
) -> Result<Json<Vec<CustomPropertyValueDto>>, MsError> {
    let member = parse_id(&id, Entity::SpotMember)?;
    if items.is_empty() {
        return Err(Error::invalid("body", "must be a non-empty array").into());
    }
    if items.len() > 200 {
        return Err(Error::TooLarge.into());
    }
    let items: Vec<(String, Value, String)> = items
        .into_iter()
        .enumerate()
        .map(|(i, it)| {
            let field = format!("[{i}].value");
            Ok((it.custom_property_slug, required_value(it.value, &field)?, field))
        })
        .collect::<Result<_, Error>>()?;
    let out = properties::set_values(&st.db, spot, member, &items).await?;
    Ok(Json(out.into_iter().map(Into::into).collect()))
}

/// A property value on the wire: `string | number | boolean | string[] | null`, as the
/// property's type requires (null: unset).
fn property_value_schema() -> Schema {
    let of = |t: Type| ObjectBuilder::new().schema_type(t);
    Schema::OneOf(
        OneOfBuilder::new()
            .item(of(Type::String))
            .item(of(Type::Number))
            .item(of(Type::Boolean))
            .item(ArrayBuilder::new().items(of(Type::String)))
            .item(of(Type::Null))
            .build(),
    )
}

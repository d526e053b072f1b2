//! Extractors of the MeltingSpot handlers, and [`body_bytes`], the one body reader of
//! both dialects. Each rejects with the crate [`Error`], so a malformed body, an
//! oversized body or a bad query parameter is answered in the dialect's error shape
//! and names what is wrong. [`list_query_params`] documents a list's query from the
//! same allow-list the filter check reads.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use serde::de::DeserializeOwned;
use utoipa::openapi::path::{Parameter, ParameterBuilder, ParameterIn};
use utoipa::openapi::schema::{ArrayBuilder, KnownFormat, ObjectBuilder, Schema, SchemaFormat, Type};
use utoipa::openapi::{RefOr, Required};
use uuid::Uuid;

use super::error::MsError;
use crate::domain::auth::AuthedSpot;
use crate::domain::filter::{
    self, parse_list_query, FieldSpec, Kind, ListQuery, DEFAULT_LIMIT, MAX_LIMIT, MAX_LIST_VALUES, MAX_OFFSET,
};
use crate::domain::ids::SpotId;
use crate::error::Error;

/// A JSON body; type errors name the offending field (`emails[3]: invalid type ...`).
pub struct MsJson<T>(pub T);

/// Reads the body bytes, mapping the 1 MiB cap to 413 "Payload is too large" (both
/// dialects' JSON bodies come through here; each parses them its own way).
pub async fn body_bytes<S: Send + Sync>(req: Request, state: &S) -> Result<Bytes, Error> {
    Bytes::from_request(req, state).await.map_err(|rej| {
        if rej.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
            Error::TooLarge
        } else {
            Error::BadRequest(format!("cannot read the request body: {}", rej.body_text()))
        }
    })
}

/// Parses JSON, naming the path of the first offending field.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, Error> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(Error::invalid("body", "a JSON body is required"));
    }
    super::nesting::check_nesting(bytes, super::nesting::MAX_DEPTH).map_err(|e| Error::invalid("body", e))?;
    let mut de = serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let reason = strip_position(&inner.to_string());
        if inner.is_syntax() || inner.is_eof() {
            Error::invalid("body", format!("malformed JSON: {reason}"))
        } else if path == "." {
            Error::invalid("body", reason)
        } else {
            Error::invalid(path, reason)
        }
    })
}

fn strip_position(msg: &str) -> String {
    match msg.find(" at line ") {
        Some(i) => msg[..i].to_string(),
        None => msg.to_string(),
    }
}

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for MsJson<T> {
    type Rejection = MsError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = body_bytes(req, state).await?;
        Ok(MsJson(parse_json(&bytes)?))
    }
}

/// The spot of the API key (set by the auth middleware).
#[derive(Clone, Copy, Debug)]
pub struct CallerSpot(pub SpotId);

impl<S: Send + Sync> FromRequestParts<S> for CallerSpot {
    type Rejection = MsError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<AuthedSpot>()
            .map(|a| CallerSpot(a.spot_id))
            .ok_or_else(|| MsError(Error::Unauthorized("Unauthorized".into())))
    }
}

/// `page`, `limit` and the `field[op]=value` filters of a list request.
pub struct ListParams(pub ListQuery);

impl<S: Send + Sync> FromRequestParts<S> for ListParams {
    type Rejection = MsError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(ListParams(parse_list_query(parts.uri.query(), &[])?))
    }
}

/// The query parameters of a list operation for the API document: `page`, `limit` and
/// one parameter per `field[op]` of the resource's allow-list, typed as [`validate`]
/// reads it. Handlers document their lists with this, so the document lists exactly
/// what [`ListParams`] and the domain's filter check accept.
///
/// [`validate`]: crate::domain::filter::validate
pub fn list_query_params(specs: &[FieldSpec]) -> Vec<Parameter> {
    let page = ObjectBuilder::new()
        .schema_type(Type::Integer)
        .format(Some(SchemaFormat::KnownFormat(KnownFormat::Int32)))
        .minimum(Some(1))
        .default(Some(1.into()));
    let limit = ObjectBuilder::new()
        .schema_type(Type::Integer)
        .format(Some(SchemaFormat::KnownFormat(KnownFormat::Int32)))
        .minimum(Some(1))
        .maximum(Some(MAX_LIMIT))
        .default(Some(DEFAULT_LIMIT.into()));
    let mut out = vec![
        query_param(
            "page",
            format!("Page number, 1-based; (page - 1) × limit must not exceed {MAX_OFFSET}."),
            page.into(),
        ),
        query_param("limit", format!("Items per page, 1 to {MAX_LIMIT}."), limit.into()),
    ];
    for (name, spec, op) in filter::params(specs) {
        let value = value_schema(spec.kind);
        let schema: RefOr<Schema> = if op.is_list() {
            ArrayBuilder::new().items(value).max_items(Some(MAX_LIST_VALUES)).into()
        } else {
            value.into()
        };
        let description = format!("Keeps the items whose `{}` {}.{}", spec.field, op.meaning(), kind_note(spec.kind));
        out.push(query_param(&name, description, schema));
    }
    out
}

fn query_param(name: &str, description: String, schema: RefOr<Schema>) -> Parameter {
    ParameterBuilder::new()
        .name(name)
        .parameter_in(ParameterIn::Query)
        .required(Required::False)
        .description(Some(description))
        .schema(Some(schema))
        .build()
}

/// The schema of one filter value of `kind`.
fn value_schema(kind: Kind) -> ObjectBuilder {
    let text = ObjectBuilder::new().schema_type(Type::String);
    match kind {
        Kind::Text | Kind::TextLower => text,
        Kind::Uuid => text.format(Some(SchemaFormat::KnownFormat(KnownFormat::Uuid))),
        Kind::Enum(values) => text.enum_values(Some(values.iter().copied())),
        Kind::Date | Kind::Integer => {
            ObjectBuilder::new().schema_type(Type::Integer).format(Some(SchemaFormat::KnownFormat(KnownFormat::Int64)))
        }
    }
}

fn kind_note(kind: Kind) -> &'static str {
    match kind {
        Kind::TextLower => " Case-insensitive.",
        Kind::Date => " A Unix timestamp in seconds (milliseconds above 10^12), years 0000 to 9999.",
        Kind::Text | Kind::Uuid | Kind::Enum(_) | Kind::Integer => "",
    }
}

/// A UUID path segment as the typed id the caller expects (see [`crate::domain::ids`]);
/// anything else is the resource's 404 (an id that cannot exist).
pub fn parse_id<I: From<Uuid>>(raw: &str, entity: crate::error::Entity) -> Result<I, Error> {
    Uuid::parse_str(raw.trim()).map(I::from).map_err(|_| Error::NotFound(entity))
}

/// Serde helper: distinguishes an absent field (`None`) from an explicit null (`Some(None)`).
pub fn nullable<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::Deserialize<'de>,
{
    use serde::Deserialize;
    Option::<T>::deserialize(d).map(Some)
}

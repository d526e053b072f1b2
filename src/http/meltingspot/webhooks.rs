//! `/v1/webhooks` (openspot extension, contract §4): the spot's webhook endpoints, their
//! test sends and their delivery log.
//!
//! The operations written `{webhookId}~action` cannot be routes of their own (the router
//! matches whole path segments), so one `POST /v1/webhooks/{webhookId}` handler splits the
//! segment at `~` and dispatches; each operation is documented on its own path.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Json;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use utoipa::openapi::path::{Parameter, ParameterIn};
use utoipa::{IntoParams, OpenApi, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::courses::iso8601;
use crate::domain::events::EventType;
use crate::domain::ids::{EventId, SpotId, WebhookId};
use crate::domain::now_ms;
use crate::domain::webhooks::{self, Delivery, EndpointPatch, NewEndpoint, WebhookEndpoint};
use crate::error::{Entity, Error};
use crate::http::error::{error_response, ErrorBody, MsError};
use crate::http::extract::{list_query_params, parse_id, parse_json, CallerSpot, ListParams, MsJson};
use crate::http::{AppState, OUTBOUND_TIMEOUT};
use crate::outbound::Outbound;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(WebhookActionsDoc::openapi())
        .routes(routes!(list_webhooks, create_webhook))
        .routes(routes!(get_webhook, update_webhook, delete_webhook))
        .routes(routes!(list_deliveries))
        .route("/v1/webhooks/{webhookId}", post(webhook_action))
        .route("/v1/webhooks/{webhookId}/deliveries/{eventId}", post(delivery_action))
}

/// The `~` operations, documented on their own paths (served by [`webhook_action`]).
#[derive(OpenApi)]
#[openapi(paths(send_test, recover, rotate_secret, redeliver))]
struct WebhookActionsDoc;

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct WebhookEndpointDto {
    #[schema(value_type = Uuid)]
    id: WebhookId,
    url: String,
    /// Values of: member.created, member.updated, course.participant.created,
    /// course.participant.status.updated, group.member.added, group.member.removed
    event_types: Vec<String>,
    description: String,
    enabled: bool,
    /// Why the endpoint is disabled (null while enabled).
    disabled_reason: Option<String>,
    /// `whsec_<base64>`: the key of the signatures (`svix-signature`, `webhook-signature`).
    secret: String,
    /// Until when the secret replaced by `~rotateSecret` signs too (ISO-8601), or null.
    previous_secret_expires_at: Option<String>,
    created_at: Option<String>,
    updated_at: Option<String>,
}

impl From<WebhookEndpoint> for WebhookEndpointDto {
    fn from(e: WebhookEndpoint) -> Self {
        let previous_secret_expires_at = iso8601(e.previous_secret_expires_at(now_ms()));
        WebhookEndpointDto {
            id: e.id,
            url: e.url,
            event_types: e.event_types.iter().map(|t| t.as_str().to_string()).collect(),
            description: e.description,
            enabled: e.enabled,
            disabled_reason: e.disabled_reason,
            secret: e.secret,
            previous_secret_expires_at,
            created_at: iso8601(Some(e.created_at)),
            updated_at: iso8601(Some(e.updated_at)),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct WebhookEndpointPage {
    items: Vec<WebhookEndpointDto>,
    total: i64,
}

/// Query parameters of the endpoint list: `page` and `limit` (any filter is a 400).
pub struct WebhookListQuery;

impl IntoParams for WebhookListQuery {
    fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        list_query_params(&[])
    }
}

/// The client that vets endpoint URLs (the operator's private-target rule).
fn outbound(st: &AppState) -> Result<Outbound, Error> {
    Ok(Outbound::new(st.config.allow_private_targets, OUTBOUND_TIMEOUT)?)
}

/// List webhook endpoints (openspot)
#[utoipa::path(get, path = "/v1/webhooks", tag = "Webhooks", params(WebhookListQuery),
    extensions(("x-openspot" = json!(true))),
    responses(
        (status = 200, description = "Webhook endpoints returned successfully", body = WebhookEndpointPage),
        (status = 400, description = "Bad pagination parameter", body = ErrorBody),
        (status = 401, description = "Unauthorized", body = ErrorBody),
    ))]
async fn list_webhooks(
    State(st): State<AppState>,
    CallerSpot(spot): CallerSpot,
    ListParams(q): ListParams,
) -> Result<Json<WebhookEndpointPage>, MsError> {
    let (items, total) = webhooks::list_endpoints(&st.db, spot, &q).await?;
    Ok(Json(WebhookEndpointPage { items: items.into_iter().map(Into::into).collect(), total }))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CreateWebhookBody {
    /// Required: an http(s) URL of at most 2,048 characters.
    url: Option<String>,
    /// Required, non-empty.
    event_types: Option<Vec<String>>,
    description: Option<String>,
    /// Default true.
    enabled: Option<bool>,
    /// `whsec_<base64 of 24 to 64 bytes>`; default: a fresh one.
    secret: Option<String>,
}

/// Create a webhook endpoint (openspot)
///
/// A spot has at most 20 endpoints.
#[utoipa::path(post, path = "/v1/webhooks", tag = "Webhooks", request_body = CreateWebhookBody,
    extensions(("x-openspot" = json!(true))),
    responses(
        (status = 201, description = "Webhook endpoint created", body = WebhookEndpointDto),
        (status = 400, description = "Invalid field (named in the message), or the spot has 20 endpoints", body = ErrorBody),
        (status = 401, description = "Unauthorized", body = ErrorBody),
    ))]
async fn create_webhook(
    State(st): State<AppState>,
    CallerSpot(spot): CallerSpot,
    MsJson(body): MsJson<CreateWebhookBody>,
) -> Result<(StatusCode, Json<WebhookEndpointDto>), MsError> {
    let new = NewEndpoint {
        url: body.url,
        event_types: body.event_types,
        description: body.description,
        enabled: body.enabled,
        secret: body.secret,
    };
    let endpoint = webhooks::create_endpoint(&st.db, &outbound(&st)?, spot, new).await?;
    Ok((StatusCode::CREATED, Json(endpoint.into())))
}

/// Get a webhook endpoint (openspot)
#[utoipa::path(get, path = "/v1/webhooks/{webhookId}", tag = "Webhooks",
    params(("webhookId" = String, Path)), extensions(("x-openspot" = json!(true))),
    responses(
        (status = 200, description = "Webhook endpoint returned successfully", body = WebhookEndpointDto),
        (status = 401, description = "Unauthorized", body = ErrorBody),
        (status = 404, description = "Webhook not found", body = ErrorBody),
    ))]
async fn get_webhook(
    State(st): State<AppState>,
    CallerSpot(spot): CallerSpot,
    Path(id): Path<String>,
) -> Result<Json<WebhookEndpointDto>, MsError> {
    let id = parse_id(&id, Entity::Webhook)?;
    Ok(Json(webhooks::get_endpoint(&st.db, spot, id).await?.into()))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct UpdateWebhookBody {
    url: Option<String>,
    event_types: Option<Vec<String>>,
    description: Option<String>,
    /// true resumes the deliveries paused while the endpoint was disabled.
    enabled: Option<bool>,
    /// Not writable here: use `~rotateSecret`.
    #[schema(value_type = Option<String>)]
    secret: Option<serde_json::Value>,
}

/// Update a webhook endpoint (openspot)
///
/// Partial: absent fields keep their value. Enabling a disabled endpoint clears its
/// `disabledReason` and delivers what was held back meanwhile.
#[utoipa::path(put, path = "/v1/webhooks/{webhookId}", tag = "Webhooks",
    params(("webhookId" = String, Path)), request_body = UpdateWebhookBody,
    extensions(("x-openspot" = json!(true))),
    responses(
        (status = 200, description = "Webhook endpoint updated", body = WebhookEndpointDto),
        (status = 400, description = "Invalid field (named in the message)", body = ErrorBody),
        (status = 401, description = "Unauthorized", body = ErrorBody),
        (status = 404, description = "Webhook not found", body = ErrorBody),
    ))]
async fn update_webhook(
    State(st): State<AppState>,
    CallerSpot(spot): CallerSpot,
    Path(id): Path<String>,
    MsJson(body): MsJson<UpdateWebhookBody>,
) -> Result<Json<WebhookEndpointDto>, MsError> {
    let id = parse_id(&id, Entity::Webhook)?;
    if body.secret.is_some() {
        return Err(
            Error::invalid("secret", "cannot be changed here: use POST /v1/webhooks/{webhookId}~rotateSecret").into()
        );
    }
    let patch = EndpointPatch {
        url: body.url,
        event_types: body.event_types,
        description: body.description,
        enabled: body.enabled,
    };
    Ok(Json(webhooks::update_endpoint(&st.db, &outbound(&st)?, spot, id, patch).await?.into()))
}

/// Delete a webhook endpoint (openspot)
///
/// Its queued deliveries and its delivery log go with it.
#[utoipa::path(delete, path = "/v1/webhooks/{webhookId}", tag = "Webhooks",
    params(("webhookId" = String, Path)), extensions(("x-openspot" = json!(true))),
    responses(
        (status = 204, description = "Webhook endpoint deleted"),
        (status = 401, description = "Unauthorized", body = ErrorBody),
        (status = 404, description = "Webhook not found", body = ErrorBody),
    ))]
async fn delete_webhook(
    State(st): State<AppState>,
    CallerSpot(spot): CallerSpot,
    Path(id): Path<String>,
) -> Result<StatusCode, MsError> {
    let id = parse_id(&id, Entity::Webhook)?;
    webhooks::delete_endpoint(&st.db, spot, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The body of a `~` operation: JSON, or nothing at all for those whose fields are all optional.
fn optional_body<T: DeserializeOwned + Default>(bytes: &[u8]) -> Result<T, Error> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        Ok(T::default())
    } else {
        parse_json(bytes)
    }
}

/// `POST /v1/webhooks/{webhookId}~<operation>`: splits the segment and dispatches.
async fn webhook_action(
    State(st): State<AppState>,
    CallerSpot(spot): CallerSpot,
    Path(segment): Path<String>,
    body: Bytes,
) -> Result<Response, MsError> {
    let Some((raw_id, operation)) = segment.split_once('~') else {
        return Ok(cannot_post(&segment));
    };
    match operation {
        "test" => {
            let id = parse_id(raw_id, Entity::Webhook)?;
            let body: TestBody = optional_body(&body)?;
            Ok(send_test(st, spot, id, body).await?.into_response())
        }
        "recover" => {
            let id = parse_id(raw_id, Entity::Webhook)?;
            let body: RecoverBody = parse_json(&body)?;
            Ok(recover(st, spot, id, body).await?.into_response())
        }
        "rotateSecret" => {
            let id = parse_id(raw_id, Entity::Webhook)?;
            let body: RotateSecretBody = optional_body(&body)?;
            Ok(rotate_secret(st, spot, id, body).await?.into_response())
        }
        _ => Ok(cannot_post(&segment)),
    }
}

/// The router's own 404 for a path it does not serve.
fn cannot_post(segment: &str) -> Response {
    error_response(404, format!("Cannot POST /v1/webhooks/{segment}"))
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TestBody {
    /// The sample's event type; default: the endpoint's first.
    event_type: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TestQueued {
    /// The `svix-id` / `webhook-id` the sample is delivered with.
    #[schema(value_type = Uuid)]
    event_id: EventId,
    event_type: EventType,
}

/// Send a test event (openspot)
///
/// Queues a sample payload (`test: true`; member `00000000-0000-0000-0000-000000000000`,
/// `jane.doe@example.com`, the real spot) for this endpoint only, signed and retried like
/// any event. Its attempts appear in the delivery log.
#[utoipa::path(post, path = "/v1/webhooks/{webhookId}~test", tag = "Webhooks",
    params(("webhookId" = String, Path)), request_body(content = TestBody, description = "May be omitted"),
    extensions(("x-openspot" = json!(true))),
    responses(
        (status = 202, description = "The sample is queued", body = TestQueued),
        (status = 400, description = "Unknown event type", body = ErrorBody),
        (status = 401, description = "Unauthorized", body = ErrorBody),
        (status = 404, description = "Webhook not found", body = ErrorBody),
        (status = 409, description = "The endpoint is disabled", body = ErrorBody),
    ))]
async fn send_test(
    st: AppState,
    spot: SpotId,
    id: WebhookId,
    body: TestBody,
) -> Result<(StatusCode, Json<TestQueued>), MsError> {
    let (event_id, event_type) = webhooks::send_test(&st.db, spot, id, body.event_type.as_deref()).await?;
    Ok((StatusCode::ACCEPTED, Json(TestQueued { event_id, event_type })))
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RotateSecretBody {
    /// `whsec_<base64 of 24 to 64 bytes>`; default: a fresh one.
    secret: Option<String>,
}

/// Rotate a webhook endpoint's secret (openspot)
///
/// The new secret signs from now on; the previous one keeps signing beside it for 24 hours
/// (both signatures in the header, the new one first), so receivers can switch without
/// losing a delivery.
#[utoipa::path(post, path = "/v1/webhooks/{webhookId}~rotateSecret", tag = "Webhooks",
    params(("webhookId" = String, Path)), request_body(content = RotateSecretBody, description = "May be omitted"),
    extensions(("x-openspot" = json!(true))),
    responses(
        (status = 200, description = "The endpoint with its new secret", body = WebhookEndpointDto),
        (status = 400, description = "Invalid secret", body = ErrorBody),
        (status = 401, description = "Unauthorized", body = ErrorBody),
        (status = 404, description = "Webhook not found", body = ErrorBody),
    ))]
async fn rotate_secret(
    st: AppState,
    spot: SpotId,
    id: WebhookId,
    body: RotateSecretBody,
) -> Result<Json<WebhookEndpointDto>, MsError> {
    Ok(Json(webhooks::rotate_secret(&st.db, spot, id, body.secret).await?.into()))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RecoverBody {
    /// Required: Unix seconds (milliseconds above 10^12) or an ISO-8601 date-time, not in
    /// the future.
    #[schema(value_type = String)]
    since: Option<serde_json::Value>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Requeued {
    /// How many failed events were queued again.
    requeued: u64,
}

/// Recover failed events (openspot)
///
/// Queues again every event whose retries were spent (failed for good) since `since`,
/// with the same event ids and bodies and a fresh retry schedule.
#[utoipa::path(post, path = "/v1/webhooks/{webhookId}~recover", tag = "Webhooks",
    params(("webhookId" = String, Path)), request_body = RecoverBody,
    extensions(("x-openspot" = json!(true))),
    responses(
        (status = 202, description = "The failed events are queued again", body = Requeued),
        (status = 400, description = "Missing or invalid since", body = ErrorBody),
        (status = 401, description = "Unauthorized", body = ErrorBody),
        (status = 404, description = "Webhook not found", body = ErrorBody),
        (status = 409, description = "The endpoint is disabled", body = ErrorBody),
    ))]
async fn recover(
    st: AppState,
    spot: SpotId,
    id: WebhookId,
    body: RecoverBody,
) -> Result<(StatusCode, Json<Requeued>), MsError> {
    let since = webhooks::parse_since("since", body.since.as_ref().unwrap_or(&serde_json::Value::Null), now_ms())?;
    let requeued = webhooks::recover(&st.db, spot, id, since).await?;
    Ok((StatusCode::ACCEPTED, Json(Requeued { requeued })))
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeliveryDto {
    #[schema(value_type = Uuid)]
    id: uuid::Uuid,
    /// The `svix-id` / `webhook-id` of the event (the same on every attempt).
    #[schema(value_type = Uuid)]
    event_id: EventId,
    event_type: String,
    /// 1-based; a redelivery continues the count.
    attempt: i64,
    /// The HTTP status answered, or null when no answer came (connection error, timeout).
    status_code: Option<i64>,
    duration_ms: i64,
    /// What went wrong, or null.
    error: Option<String>,
    /// The start of the answer's body (at most 1 KiB).
    response_body: Option<String>,
    created_at: Option<String>,
}

impl From<Delivery> for DeliveryDto {
    fn from(d: Delivery) -> Self {
        DeliveryDto {
            id: d.id,
            event_id: d.event_id,
            event_type: d.event_type,
            attempt: d.attempt,
            status_code: d.status_code,
            duration_ms: d.duration_ms,
            error: d.error,
            response_body: d.response_body,
            created_at: iso8601(Some(d.created_at)),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DeliveryPage {
    items: Vec<DeliveryDto>,
    total: i64,
}

/// Query parameters of the delivery log: `page`, `limit`, `eventId[eq]`, `eventType[eq]`.
pub struct DeliveryListQuery;

impl IntoParams for DeliveryListQuery {
    fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        list_query_params(webhooks::DELIVERY_FILTERS)
    }
}

/// List an endpoint's delivery attempts (openspot)
///
/// Every attempt, in the order made: the event, the status answered (or the error), how
/// long it took and the start of the answer.
#[utoipa::path(get, path = "/v1/webhooks/{webhookId}/deliveries", tag = "Webhooks",
    params(("webhookId" = String, Path), DeliveryListQuery), extensions(("x-openspot" = json!(true))),
    responses(
        (status = 200, description = "Delivery attempts returned successfully", body = DeliveryPage),
        (status = 400, description = "Bad filter or pagination parameter", body = ErrorBody),
        (status = 401, description = "Unauthorized", body = ErrorBody),
        (status = 404, description = "Webhook not found", body = ErrorBody),
    ))]
async fn list_deliveries(
    State(st): State<AppState>,
    CallerSpot(spot): CallerSpot,
    Path(id): Path<String>,
    ListParams(q): ListParams,
) -> Result<Json<DeliveryPage>, MsError> {
    let id = parse_id(&id, Entity::Webhook)?;
    let (items, total) = webhooks::list_deliveries(&st.db, spot, id, &q).await?;
    Ok(Json(DeliveryPage { items: items.into_iter().map(Into::into).collect(), total }))
}

/// `POST /v1/webhooks/{webhookId}/deliveries/{eventId}~redeliver`.
async fn delivery_action(
    State(st): State<AppState>,
    CallerSpot(spot): CallerSpot,
    Path((raw_id, segment)): Path<(String, String)>,
) -> Result<Response, MsError> {
    match segment.split_once('~') {
        Some((raw_event, "redeliver")) => {
            let id = parse_id(&raw_id, Entity::Webhook)?;
            let event_id = parse_id(raw_event, Entity::WebhookEvent)?;
            Ok(redeliver(st, spot, id, event_id).await?.into_response())
        }
        _ => Ok(error_response(404, format!("Cannot POST /v1/webhooks/{raw_id}/deliveries/{segment}"))),
    }
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Redelivered {
    #[schema(value_type = Uuid)]
    event_id: EventId,
}

/// Redeliver an event (openspot)
///
/// Sends the event to this endpoint again, with the same event id and body and a fresh
/// retry schedule, whatever became of it before.
#[utoipa::path(post, path = "/v1/webhooks/{webhookId}/deliveries/{eventId}~redeliver", tag = "Webhooks",
    params(("webhookId" = String, Path), ("eventId" = String, Path)),
    extensions(("x-openspot" = json!(true))),
    responses(
        (status = 202, description = "The event is queued again", body = Redelivered),
        (status = 401, description = "Unauthorized", body = ErrorBody),
        (status = 404, description = "Webhook not found, or Webhook event not found", body = ErrorBody),
        (status = 409, description = "The endpoint is disabled", body = ErrorBody),
    ))]
async fn redeliver(
    st: AppState,
    spot: SpotId,
    id: WebhookId,
    event_id: EventId,
) -> Result<(StatusCode, Json<Redelivered>), MsError> {
    webhooks::redeliver(&st.db, spot, id, event_id).await?;
    Ok((StatusCode::ACCEPTED, Json(Redelivered { event_id })))
}

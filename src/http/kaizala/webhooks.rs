//! Kaizala webhook subscriptions (`kaizala-api.md` §6): `POST/GET /kaizala/v1/webhook`,
//! `PUT/DELETE /kaizala/v1/webhook/{webhookId}`.
//!
//! Requests spell `callBackUrl`, `callBackToken`, `callBackContext` (any case: keys are
//! lower-cased, so `callbackUrl` binds too); answers spell `callbackUrl` and
//! `callbackToken`, as the real service did. `Active` is a boolean or `"true"`/`"false"`.

use axum::extract::{Path, State};
use axum::http::Uri;
use axum::Json;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{lenient, Caller, KzError, KzErrorBody, KzJson};
use crate::domain::ids::SubscriptionId;
use crate::domain::kaizala::webhooks::{self, Subscription, SubscriptionInput, VALIDATION_TIMEOUT};
use crate::domain::vocab::{KzEventType, KzObjectType};
use crate::error::{Entity, Error};
use crate::http::{AppState, OUTBOUND_TIMEOUT};
use crate::outbound::Outbound;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(kz_subscribe, kz_list_webhooks))
        .routes(routes!(kz_update_webhook, kz_delete_webhook))
}

/// A list of strings, or one string (comma-separated words allowed).
fn opt_string_list<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<String>>, D::Error> {
    match Option::<Value>::deserialize(d)? {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => {
            Ok(Some(s.split(',').map(str::trim).filter(|w| !w.is_empty()).map(str::to_string).collect()))
        }
        Some(Value::Array(items)) => items
            .into_iter()
            .map(|v| match v {
                Value::String(s) => Ok(s),
                other => Err(serde::de::Error::custom(format!("expected a string, got {other}"))),
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Some),
        Some(other) => Err(serde::de::Error::custom(format!("expected a list of strings, got {other}"))),
    }
}

/// An integer given as a number or as its decimal text; null → None.
fn opt_i64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    match Option::<Value>::deserialize(d)? {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => n
            .as_i64()
            .or_else(|| n.as_f64().map(|f| f as i64))
            .map(Some)
            .ok_or_else(|| serde::de::Error::custom(format!("expected an integer, got {n}"))),
        Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
        Some(Value::String(s)) => s
            .trim()
            .parse()
            .map(Some)
            .map_err(|_| serde::de::Error::custom(format!("expected an integer, got \"{s}\""))),
        Some(other) => Err(serde::de::Error::custom(format!("expected an integer, got {other}"))),
    }
}

/// A subscription (keys in any case; JSON5 syntax accepted). `POST` needs `objectId`,
/// `objectType`, `eventTypes` and `callBackUrl`; `PUT` changes the fields given.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub struct KzWebhookBody {
    /// A group id (`@n` suffix accepted) for `Group`; an action or action-package id otherwise.
    #[serde(default, deserialize_with = "lenient::opt_string_or_number")]
    #[schema(rename = "objectId")]
    objectid: Option<String>,
    /// `Group`, `Action` or `ActionPackage` (any case).
    #[schema(rename = "objectType")]
    objecttype: Option<String>,
    /// Kaizala event types (any case). `MemberAdded`, `MemberRemoved` and
    /// `TextMessageCreated` fire; the others are stored.
    #[serde(default, deserialize_with = "opt_string_list")]
    #[schema(rename = "eventTypes", value_type = Option<Vec<KzEventType>>)]
    eventtypes: Option<Vec<String>>,
    /// http(s); verified by `GET ?validationToken=` before anything is stored.
    #[schema(rename = "callBackUrl")]
    callbackurl: Option<String>,
    /// Sent back as the `kz-callback-token` header of every callback.
    #[serde(default, deserialize_with = "lenient::opt_string_or_number")]
    #[schema(rename = "callBackToken")]
    callbacktoken: Option<String>,
    /// Sent back as `context` in every payload.
    #[serde(default, deserialize_with = "lenient::opt_string_or_number")]
    #[schema(rename = "callBackContext")]
    callbackcontext: Option<String>,
    /// Epoch ms (or seconds) until which events are sent; default 730 days.
    #[serde(default, deserialize_with = "opt_i64")]
    #[schema(value_type = Option<i64>)]
    validity: Option<i64>,
    /// A boolean or `"true"`/`"false"`; `true` resumes an inactive subscription.
    #[serde(default, deserialize_with = "lenient::opt_bool")]
    #[schema(rename = "Active", value_type = Option<bool>)]
    active: Option<bool>,
}

impl From<KzWebhookBody> for SubscriptionInput {
    fn from(b: KzWebhookBody) -> Self {
        SubscriptionInput {
            object_id: b.objectid,
            object_type: b.objecttype,
            event_types: b.eventtypes,
            callback_url: b.callbackurl,
            callback_token: b.callbacktoken,
            callback_context: b.callbackcontext,
            validity: b.validity,
            active: b.active,
        }
    }
}

/// `{webhookId}` of a new subscription.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct KzWebhookCreated {
    #[schema(value_type = Uuid)]
    webhook_id: SubscriptionId,
}

/// A subscription as `GET /webhook` lists it.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct KzWebhook {
    #[schema(value_type = Uuid)]
    id: SubscriptionId,
    object_id: String,
    object_type: KzObjectType,
    events: Vec<KzEventType>,
    /// Always empty: openspot has no event filters.
    filters: Vec<Value>,
    callback_url: String,
    callback_token: Option<String>,
    /// `callBackContext` as given.
    callback_context: Option<String>,
    /// Creation time, epoch ms.
    ts: i64,
    /// Epoch ms.
    validity: i64,
    active: bool,
    /// Why it is inactive (`Disabled through the API`, a 410, retries exhausted).
    disabled_reason: Option<String>,
}

impl From<Subscription> for KzWebhook {
    fn from(s: Subscription) -> Self {
        KzWebhook {
            id: s.id,
            object_id: s.object_id,
            object_type: s.object_type,
            events: s.event_types,
            filters: Vec::new(),
            callback_url: s.callback_url,
            callback_token: s.callback_token,
            callback_context: s.callback_context,
            ts: s.created_at,
            validity: s.validity,
            active: s.active,
            disabled_reason: s.disabled_reason,
        }
    }
}

/// `{webhooks: [...]}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct KzWebhooks {
    webhooks: Vec<KzWebhook>,
}

/// `{"result": true}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct KzWebhookResult {
    result: bool,
}

/// The vetted client of callback validations.
fn client(st: &AppState) -> Result<Outbound, KzError> {
    Outbound::new(st.config.allow_private_targets, OUTBOUND_TIMEOUT).map_err(|e| KzError(Error::Internal(e)))
}

fn subscription_id(raw: &str) -> Result<SubscriptionId, KzError> {
    raw.trim().parse().map_err(|_| KzError(Error::NotFound(Entity::Webhook)))
}

/// Subscribe to a group's events
///
/// Before storing, openspot calls `GET <callBackUrl>?validationToken=<token>`; the
/// callback must answer 2xx with the token as its body within 5 s, else the
/// registration is refused (400 `InvalidParameters`). The caller must be an Admin of
/// the group.
#[utoipa::path(post, path = "/kaizala/v1/webhook", tag = "Kaizala: webhooks", request_body = KzWebhookBody,
    security(("kaizalaToken" = [])),
    responses(
        (status = 200, description = "Subscribed", body = KzWebhookCreated),
        (status = 400, description = "InvalidParameters (a field; the validation handshake failed)", body = KzErrorBody),
        (status = 401, description = "InvalidToken", body = KzErrorBody),
        (status = 403, description = "AccessDenied: not an Admin of the group", body = KzErrorBody),
        (status = 404, description = "GroupNotFound", body = KzErrorBody),
        (status = 429, description = "Throttled", body = KzErrorBody),
    ))]
async fn kz_subscribe(
    State(st): State<AppState>,
    Caller(caller): Caller,
    KzJson(b): KzJson<KzWebhookBody>,
) -> Result<Json<KzWebhookCreated>, KzError> {
    let sub = webhooks::create(&st.db, &client(&st)?, VALIDATION_TIMEOUT, &caller, b.into()).await?;
    Ok(Json(KzWebhookCreated { webhook_id: sub.id }))
}

/// List subscriptions
///
/// The spot's subscriptions the caller manages (those of groups it is an Admin of;
/// all of them for a spot Admin), optionally of one object.
#[utoipa::path(get, path = "/kaizala/v1/webhook", tag = "Kaizala: webhooks",
    security(("kaizalaToken" = [])),
    params(("objectId" = Option<String>, Query), ("objectType" = Option<String>, Query)),
    responses(
        (status = 200, description = "The subscriptions", body = KzWebhooks),
        (status = 400, description = "InvalidParameters (objectType)", body = KzErrorBody),
        (status = 401, description = "InvalidToken", body = KzErrorBody),
    ))]
async fn kz_list_webhooks(
    State(st): State<AppState>,
    Caller(caller): Caller,
    uri: Uri,
) -> Result<Json<KzWebhooks>, KzError> {
    let query = |name: &str| {
        form_urlencoded::parse(uri.query().unwrap_or("").as_bytes())
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.into_owned())
    };
    let (object_id, object_type) = (query("objectId"), query("objectType"));
    let subs = webhooks::list(&st.db, &caller, object_type.as_deref(), object_id.as_deref()).await?;
    Ok(Json(KzWebhooks { webhooks: subs.into_iter().map(KzWebhook::from).collect() }))
}

/// Change a subscription
///
/// Any field, partially; a new `callBackUrl` is verified again. `Active: true` (or
/// `"true"`) resumes an inactive subscription with the events kept for it.
#[utoipa::path(put, path = "/kaizala/v1/webhook/{webhookId}", tag = "Kaizala: webhooks", request_body = KzWebhookBody,
    security(("kaizalaToken" = [])), params(("webhookId" = String, Path)),
    responses(
        (status = 200, description = "`{\"result\": true}`", body = KzWebhookResult),
        (status = 400, description = "InvalidParameters", body = KzErrorBody),
        (status = 403, description = "AccessDenied", body = KzErrorBody),
        (status = 404, description = "ResourceNotFound: no such subscription in the spot", body = KzErrorBody),
    ))]
async fn kz_update_webhook(
    State(st): State<AppState>,
    Caller(caller): Caller,
    Path(id): Path<String>,
    KzJson(b): KzJson<KzWebhookBody>,
) -> Result<Json<KzWebhookResult>, KzError> {
    let id = subscription_id(&id)?;
    webhooks::update(&st.db, &client(&st)?, VALIDATION_TIMEOUT, &caller, id, b.into()).await?;
    Ok(Json(KzWebhookResult { result: true }))
}

/// Delete a subscription
#[utoipa::path(delete, path = "/kaizala/v1/webhook/{webhookId}", tag = "Kaizala: webhooks",
    security(("kaizalaToken" = [])), params(("webhookId" = String, Path)),
    responses(
        (status = 200, description = "`{\"result\": true}`", body = KzWebhookResult),
        (status = 403, description = "AccessDenied", body = KzErrorBody),
        (status = 404, description = "ResourceNotFound: no such subscription in the spot", body = KzErrorBody),
    ))]
async fn kz_delete_webhook(
    State(st): State<AppState>,
    Caller(caller): Caller,
    Path(id): Path<String>,
) -> Result<Json<KzWebhookResult>, KzError> {
    webhooks::delete(&st.db, &caller, subscription_id(&id)?).await?;
    Ok(Json(KzWebhookResult { result: true }))
}

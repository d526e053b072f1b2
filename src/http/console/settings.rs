//! Page 7, Settings: the spot's API key (rotated, the new key shown once), its rate
//! limits, Kaizala connectors (created with their secret shown once, deleted), and
//! webhook endpoints with their deliveries.

use askama::Template;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Redirect};
use axum::routing::{get, post};
use axum::Router;

use super::form::Fields;
use super::{render, Admin, Nav, PageResult};
use crate::domain::console::ConsoleSession;
use crate::domain::events::EventType;
use crate::domain::filter::ListQuery;
use crate::domain::ids::{ConnectorId, WebhookId};
use crate::domain::kaizala::auth::{self as kz_auth, Connector};
use crate::domain::spots::{self, Spot};
use crate::domain::webhooks::{self, Delivery, NewEndpoint, WebhookEndpoint};
use crate::error::{Entity, Error};
use crate::http::{AppState, OUTBOUND_TIMEOUT};
use crate::outbound::Outbound;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/console/settings", get(show))
        .route("/console/settings/rotate-key", post(rotate_key))
        .route("/console/settings/limits", post(limits))
        .route("/console/settings/connectors", post(create_connector))
        .route("/console/settings/connectors/{id}/delete", post(delete_connector))
        .route("/console/settings/webhooks", post(create_webhook))
        .route("/console/settings/webhooks/{id}", get(webhook))
        .route("/console/settings/webhooks/{id}/delete", post(delete_webhook))
}

#[derive(Template)]
#[template(path = "console/settings.html")]
struct SettingsPage {
    nav: Nav,
    spot: Spot,
    /// Names the current key in the rotation form ([`spots::key_fingerprint`]).
    key_fingerprint: String,
    default_per_10s: i64,
    default_per_day: i64,
    connectors: Vec<Connector>,
    endpoints: Vec<WebhookEndpoint>,
    event_types: &'static [EventType],
    /// A secret to show once: (what it is, its value).
    shown_once: Option<(String, String)>,
    error: Option<(String, String)>,
}

impl SettingsPage {
    fn error_for(&self, field: &str) -> Option<&str> {
        self.error.as_ref().filter(|(f, _)| f == field).map(|(_, r)| r.as_str())
    }
}

async fn page(
    st: &AppState,
    s: &ConsoleSession,
    shown_once: Option<(String, String)>,
    error: Option<(String, String)>,
) -> PageResult {
    let spot = spots::get_spot(&st.db, s.spot_id).await?;
    let key_fingerprint = spots::key_fingerprint(&st.db, s.spot_id).await?;
    let connectors = kz_auth::list_connectors(&st.db, Some(s.spot_id)).await?;
    let (endpoints, _) =
        webhooks::list_endpoints(&st.db, s.spot_id, &ListQuery { page: 1, limit: 100, filters: Vec::new() }).await?;
    let bad = error.is_some();
    let mut r = render(&SettingsPage {
        nav: Nav::of(s, "settings"),
        spot,
        key_fingerprint,
        default_per_10s: st.config.default_limits.per_10s,
        default_per_day: st.config.default_limits.per_day,
        connectors,
        endpoints,
        event_types: EventType::ALL,
        shown_once,
        error,
    });
    if bad {
        *r.status_mut() = axum::http::StatusCode::BAD_REQUEST;
    }
    Ok(r)
}

async fn show(State(st): State<AppState>, Admin(s): Admin) -> PageResult {
    page(&st, &s, None, None).await
}

/// Replaces the API key; the new one is on this answer only (and the old stops working).
/// The form names the key it replaces: sent again (a reload of this answer re-posts
/// it), it changes nothing and says so, and the key shown the first time stays the key.
async fn rotate_key(State(st): State<AppState>, Admin(s): Admin, body: Bytes) -> PageResult {
    let f = Fields::from_body(&body);
    match spots::rotate_key_if_current(&st.db, s.spot_id, f.get("key")).await? {
        Some(key) => {
            st.keys.forget_spot(s.spot_id);
            page(&st, &s, Some(("New API key".into(), key)), None).await
        }
        None => {
            let reason = "the key was already replaced since this page was loaded (a reload sends the form again): \
                          the key shown then is the key; rotate again to replace it";
            let mut r = page(&st, &s, None, Some(("key".into(), reason.into()))).await?;
            *r.status_mut() = axum::http::StatusCode::CONFLICT;
            Ok(r)
        }
    }
}

async fn limits(State(st): State<AppState>, Admin(s): Admin, body: Bytes) -> PageResult {
    let f = Fields::from_body(&body);
    let parse = |name: &str| -> Result<Option<i64>, Error> {
        let v = f.get(name).trim();
        if v.is_empty() {
            return Ok(None);
        }
        v.parse().map(Some).map_err(|_| Error::invalid(name, "must be a whole number"))
    };
    let result = match (parse("per-10s"), parse("per-day")) {
        (Ok(a), Ok(b)) => spots::set_limits(&st.db, s.spot_id, a, b).await.map(|_| ()),
        (Err(e), _) | (_, Err(e)) => Err(e),
    };
    match result {
        Ok(()) => Ok(Redirect::to("/console/settings").into_response()),
        Err(Error::Invalid { field, reason }) => page(&st, &s, None, Some((field, reason))).await,
        Err(e) => Err(e.into()),
    }
}

async fn create_connector(State(st): State<AppState>, Admin(s): Admin, body: Bytes) -> PageResult {
    let f = Fields::from_body(&body);
    match kz_auth::create_connector(&st.db, s.spot_id, f.get("name")).await {
        Ok((c, secret)) => {
            page(&st, &s, Some((format!("Connector {} (applicationId {}) secret", c.name, c.id), secret)), None).await
        }
        Err(Error::Invalid { field, reason }) => {
            page(&st, &s, None, Some((format!("connector.{field}"), reason))).await
        }
        Err(e) => Err(e.into()),
    }
}

async fn delete_connector(State(st): State<AppState>, Admin(s): Admin, Path(id): Path<String>) -> PageResult {
    let id: ConnectorId = id.parse().map_err(|_| Error::NotFound(Entity::Connector))?;
    // The domain deletes by id alone: the connector must be this spot's.
    if !kz_auth::list_connectors(&st.db, Some(s.spot_id)).await?.iter().any(|c| c.id == id) {
        return Err(Error::NotFound(Entity::Connector).into());
    }
    kz_auth::delete_connector(&st.db, id).await?;
    Ok(Redirect::to("/console/settings").into_response())
}

async fn create_webhook(State(st): State<AppState>, Admin(s): Admin, body: Bytes) -> PageResult {
    let f = Fields::from_body(&body);
    let new = NewEndpoint {
        url: Some(f.get("url").trim().to_string()),
        event_types: Some(f.all("event")),
        description: Some(f.get("description").to_string()),
        enabled: Some(true),
        secret: None,
    };
    let outbound = Outbound::new(st.config.allow_private_targets, OUTBOUND_TIMEOUT).map_err(Error::Internal)?;
    match webhooks::create_endpoint(&st.db, &outbound, s.spot_id, new).await {
        Ok(e) => page(&st, &s, Some((format!("Webhook {} signing secret", e.url), e.secret)), None).await,
        Err(Error::Invalid { field, reason }) => page(&st, &s, None, Some((format!("webhook.{field}"), reason))).await,
        Err(e) => Err(e.into()),
    }
}

#[derive(Template)]
#[template(path = "console/webhook.html")]
struct WebhookPage {
    nav: Nav,
    e: WebhookEndpoint,
    deliveries: Vec<Delivery>,
    total: i64,
}

fn webhook_id(raw: &str) -> Result<WebhookId, Error> {
    raw.parse().map_err(|_| Error::NotFound(Entity::Webhook))
}

async fn webhook(State(st): State<AppState>, Admin(s): Admin, Path(id): Path<String>) -> PageResult {
    let id = webhook_id(&id)?;
    let e = webhooks::get_endpoint(&st.db, s.spot_id, id).await?;
    let (deliveries, total) =
        webhooks::list_deliveries(&st.db, s.spot_id, id, &ListQuery { page: 1, limit: 100, filters: Vec::new() })
            .await?;
    Ok(render(&WebhookPage { nav: Nav::of(&s, "settings"), e, deliveries, total }))
}

async fn delete_webhook(State(st): State<AppState>, Admin(s): Admin, Path(id): Path<String>) -> PageResult {
    webhooks::delete_endpoint(&st.db, s.spot_id, webhook_id(&id)?).await?;
    Ok(Redirect::to("/console/settings").into_response())
}

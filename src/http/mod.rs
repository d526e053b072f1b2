//! HTTP: the router of both dialects, the shared middleware (request ids, tracing,
//! body cap, panic guard), health probes and the OpenAPI document with its docs UI.

pub mod console;
pub mod error;
pub mod extract;
pub mod kaizala;
pub mod meltingspot;
pub mod nesting;
pub mod openapi;
pub mod server;

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderName, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, SecurityScheme};
use utoipa::openapi::OpenApi as OpenApiDoc;
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;
use utoipa_swagger_ui::SwaggerUi;

use crate::config::Config;
use crate::domain::auth::{FailedAuthThrottle, KeyCache};
use crate::domain::housekeeping::Housekeeping;
use crate::domain::kaizala::{PinDelivery, TokenCache};
use crate::domain::outbox::{self, Channels, Runtime};
use crate::domain::rate_limit::RateLimiter;
use crate::outbound::Outbound;
use crate::store::Db;

/// The largest request body accepted (contract §3): larger → 413.
pub const BODY_LIMIT: usize = 1 << 20;

/// What every handler shares.
#[derive(Clone)]
pub struct AppState {
    pub db: Db,
    pub config: Arc<Config>,
    pub keys: Arc<KeyCache>,
    pub limiter: Arc<RateLimiter>,
    pub kz_tokens: Arc<TokenCache>,
    pub pin_delivery: PinDelivery,
    /// Failed credential checks per client address (anonymous cost bound).
    pub failed_auth: Arc<FailedAuthThrottle>,
    /// Requests handled at once (see [`server::bound_requests`]).
    pub in_flight: server::InFlight,
    /// The outbox dispatcher's configuration, channels and counters.
    pub outbox: Arc<Runtime>,
}

/// Timeout of every outbound call (contract §5).
pub const OUTBOUND_TIMEOUT: Duration = Duration::from_secs(10);

impl AppState {
    pub fn new(db: Db, config: Config) -> anyhow::Result<Self> {
        let outbound = Outbound::new(config.allow_private_targets, OUTBOUND_TIMEOUT)?;
        let pin_delivery = PinDelivery::new(config.sms_webhook_url.clone(), outbound);
        let mut channels = Channels::default();
        let email = crate::domain::email::EmailChannel::new(&config)?;
        channels.register(crate::domain::vocab::ChannelKind::Email, Arc::new(email));
        let webhook_outbound = Outbound::new(config.allow_private_targets, config.outbox.attempt_timeout)?;
        channels.register(
            crate::domain::vocab::ChannelKind::Webhook,
            Arc::new(crate::domain::webhooks::WebhookChannel::new(webhook_outbound.clone())),
        );
        channels.register(
            crate::domain::vocab::ChannelKind::Kaizala,
            Arc::new(crate::domain::kaizala::webhooks::KzChannel::new(webhook_outbound)),
        );
        Ok(AppState {
            db,
            keys: Arc::new(KeyCache::new(config.auth_cache_ttl)),
            limiter: Arc::new(RateLimiter::new()),
            kz_tokens: Arc::new(TokenCache::new(config.auth_cache_ttl)),
            pin_delivery,
            failed_auth: Arc::new(FailedAuthThrottle::new(config.auth.failed_auth_per_address)),
            in_flight: server::InFlight(Arc::new(tokio::sync::Semaphore::new(config.server.max_in_flight.max(1)))),
            outbox: Arc::new(Runtime::new(config.outbox.clone(), channels)),
            config: Arc::new(config),
        })
    }
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "openspot",
        description = "Self-hosted community-membership server. `/v1` speaks the MeltingSpot Open API v1; \
                       `/kaizala/v1` speaks the Kaizala connectors API. Operations marked `x-openspot: true` \
                       are openspot extensions."
    ),
    modifiers(&SecurityAddon),
    security(("apiKey" = [])),
)]
struct ApiDoc;

struct SecurityAddon;

impl Modify for SecurityAddon {
    fn modify(&self, openapi: &mut OpenApiDoc) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "kaizalaToken",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "accessToken",
                "A Kaizala access token (from GET /kaizala/v1/accessToken); `Authorization: Bearer <token>` also works.",
            ))),
        );
        components.add_security_scheme(
            "apiKey",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "Authorization",
                "The spot's API key, raw or as `Bearer <key>`.",
            ))),
        );
    }
}

/// The OpenAPI document and the router of every dialect.
pub fn build(state: AppState) -> (Router, OpenApiDoc) {
    let (api_router, mut doc) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(meltingspot::routes(state.clone()))
        .merge(kaizala::routes(state.clone()))
        .split_for_parts();
    openapi::add_shared_responses(&mut doc);
    (api_router.with_state(state), doc)
}

/// The whole application: API routes, probes, docs, fallbacks and middleware.
pub fn app(state: AppState) -> Router {
    let (api, doc) = build(state.clone());
    let probes = Router::new()
        .route("/healthz", get(|| async { Json(serde_json::json!({"status": "ok"})) }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_endpoint))
        .with_state(state.clone());
    let request_id = HeaderName::from_static("x-request-id");
    Router::new()
        .merge(api)
        .merge(console::routes(state.clone()).with_state(state.clone()))
        .merge(probes)
        .merge(SwaggerUi::new("/docs").url("/openapi.json", doc))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(state.clone(), server::bound_requests))
        .layer(axum::middleware::from_fn(record_request))
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(CatchPanicLayer::custom(|_| error::error_response(500, "Internal server error".into())))
        .layer(PropagateRequestIdLayer::new(request_id.clone()))
        .layer(TraceLayer::new_for_http().make_span_with(|req: &Request| {
            let id = req.headers().get("x-request-id").and_then(|v| v.to_str().ok()).unwrap_or("-");
            tracing::info_span!("request", method = %req.method(), path = %req.uri().path(), request_id = %id)
        }))
        .layer(SetRequestIdLayer::new(request_id, MakeRequestUuid))
}

/// Times every routed request into `http_server_request_duration_seconds` (labelled by
/// its route template, never its path) and counts 429s.
async fn record_request(req: Request, next: axum::middleware::Next) -> Response {
    let began = std::time::Instant::now();
    let method = req.method().as_str().to_string();
    let route = req
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map_or_else(|| "unmatched".to_string(), |p| p.as_str().to_string());
    let response = next.run(req).await;
    let status = response.status().as_u16();
    let metrics = crate::metrics::global();
    if status == 429 {
        metrics.rate_limited.inc();
    }
    let labels = crate::metrics::RequestLabels {
        http_request_method: method,
        http_route: route,
        http_response_status_code: status,
    };
    metrics.requests.get_or_create(&labels).observe(began.elapsed().as_secs_f64());
    response
}

/// `GET /metrics`: every metric in the OpenMetrics text format. With a metrics token
/// configured, only `Authorization: Bearer <token>` may read it.
async fn metrics_endpoint(State(st): State<AppState>, headers: axum::http::HeaderMap) -> Response {
    if let Some(expected) = &st.config.metrics_token_hash {
        let presented = headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or_default();
        let hash: [u8; 32] = <sha2::Sha256 as sha2::Digest>::digest(presented.trim().as_bytes()).into();
        if !bool::from(subtle::ConstantTimeEq::ct_eq(&hash[..], &expected[..])) {
            return error::error_response(401, "Unauthorized".into());
        }
    }
    let metrics = crate::metrics::global();
    let (size, idle) = st.db.pool_stats();
    metrics.set_pool(size, idle);
    if let Ok(Ok(b)) = tokio::time::timeout(Duration::from_secs(1), outbox::status(&st.db, &st.outbox)).await {
        metrics.set_outbox_backlog(b.backlog.pending, b.backlog.due, b.backlog.oldest_due_age_ms);
    }
    (
        [(axum::http::header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")],
        metrics.render(),
    )
        .into_response()
}

/// Ready when the database answers; the detail adds the outbox backlog and this
/// replica's delivery counters (left out if they cannot be read in time).
async fn readyz(State(st): State<AppState>) -> Response {
    match tokio::time::timeout(Duration::from_secs(2), st.db.ping()).await {
        Ok(Ok(())) => {
            let outbox = tokio::time::timeout(Duration::from_secs(1), outbox::status(&st.db, &st.outbox)).await;
            match outbox {
                Ok(Ok(o)) => Json(serde_json::json!({"status": "ready", "outbox": o})).into_response(),
                _ => Json(serde_json::json!({"status": "ready"})).into_response(),
            }
        }
        _ => (StatusCode::SERVICE_UNAVAILABLE, Json(serde_json::json!({"status": "database unavailable"})))
            .into_response(),
    }
}

async fn not_found(req: Request) -> Response {
    error::error_response(404, format!("Cannot {} {}", req.method(), req.uri().path()))
}

async fn method_not_allowed(req: Request) -> Response {
    error::error_response(405, format!("Method {} is not allowed on {}", req.method(), req.uri().path()))
}

/// Serves `app` on `listener` until `shutdown` resolves; in-flight requests finish.
pub async fn serve(
    state: AppState,
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    use tower::Layer as _;
    let housekeeping = Housekeeping {
        db: state.db.clone(),
        limiter: state.limiter.clone(),
        failed_auth: state.failed_auth.clone(),
        outbox_retention: state.config.outbox.retention,
    }
    .spawn();
    // Kaizala paths as clients write them are normalised before routing.
    let service =
        tower::util::MapRequestLayer::new(kaizala::normalize_request::<axum::body::Body>).layer(app(state.clone()));
    let dispatcher = crate::domain::outbox::spawn(state.db.clone(), state.outbox.clone());
    let result = server::run(listener, service, &state.config, shutdown).await;
    // PINs already answered for are stored and relayed before the process exits (the
    // relay's own timeout bounds this).
    state.pin_delivery.drain(std::time::Duration::from_secs(15)).await;
    housekeeping.abort();
    // After the last request: in-flight deliveries end or are released for the others.
    dispatcher.shutdown().await;
    result
}

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
use tower_http::request_id::PropagateRequestIdLayer;
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

/// What every handler shares: one allocation, so that the clones axum makes of the
/// state on every request (each stateful layer and extractor takes one) cost one
/// reference count rather than one per field.
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

impl std::ops::Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

/// The fields of [`AppState`].
pub struct Shared {
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
        Ok(AppState(Arc::new(Shared {
            db,
            keys: Arc::new(KeyCache::new(config.auth_cache_ttl)),
            limiter: Arc::new(RateLimiter::new()),
            kz_tokens: Arc::new(TokenCache::new(config.auth_cache_ttl)),
            pin_delivery,
            failed_auth: Arc::new(FailedAuthThrottle::new(config.auth.failed_auth_per_address)),
            in_flight: server::InFlight(Arc::new(tokio::sync::Semaphore::new(config.server.max_in_flight.max(1)))),
            outbox: Arc::new(Runtime::new(config.outbox.clone(), channels)),
            config: Arc::new(config),
        })))
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
///
/// The middleware every request passes (request ids, tracing, panic guard, body cap)
/// wraps the router once, as one tower stack, instead of being applied to each route
/// with `Router::layer`: axum calls a route by cloning its service stack (a boxed
/// service per layer), so every layer applied per route cost each request a clone and
/// an allocation per layer beneath it, and a boxed response body (issue 17, item 4).
/// Only what needs the matched route ([`server::RouteBoundsLayer`]: the in-flight cap,
/// the request timeout and the request metrics) is applied per route, as before, so
/// it also covers the fallbacks.
pub fn app(
    state: AppState,
) -> impl tower::Service<
    Request,
    Response = Response,
    Error = std::convert::Infallible,
    Future = impl std::future::Future<Output = Result<Response, std::convert::Infallible>> + Send + 'static,
> + Clone
       + Send
       + 'static {
    let (api, doc) = build(state.clone());
    let probes = Router::new()
        .route("/healthz", get(|| async { Json(serde_json::json!({"status": "ok"})) }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_endpoint))
        .with_state(state.clone());
    let router = Router::new()
        .merge(api)
        .merge(console::routes(state.clone()).with_state(state.clone()))
        .merge(probes)
        .merge(SwaggerUi::new("/docs").url("/openapi.json", doc))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(server::RouteBoundsLayer(state));
    // Outermost first (the order `Router::layer` calls applied them in, reversed).
    tower::ServiceBuilder::new()
        .map_response(IntoResponse::into_response)
        .map_request(with_request_id)
        .layer(TraceLayer::new_for_http().make_span_with(|req: &Request| {
            let id = req.headers().get(&REQUEST_ID).and_then(|v| v.to_str().ok()).unwrap_or("-");
            tracing::info_span!("request", method = %req.method(), path = %req.uri().path(), request_id = %id)
        }))
        .layer(PropagateRequestIdLayer::new(REQUEST_ID.clone()))
        .layer(CatchPanicLayer::custom(|_| error::error_response(500, "Internal server error".into())))
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .service(router)
}

/// The request id's header, parsed once (every request looks it up).
static REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// `req` with an `x-request-id`: the client's, or a random (version 4) UUID, as
/// tower-http's `MakeRequestUuid` makes, but drawn from the thread's random generator
/// instead of a `getrandom` system call per request. A request id names a request in
/// the logs (the trace span reads the header); it is no secret. The response gets it
/// from `PropagateRequestIdLayer`, which reads the header. (In place of tower-http's
/// `SetRequestIdLayer`, which also stores the id in the request's extensions, a map
/// insert per request that nothing here reads: issue 17, item 4.)
fn with_request_id(mut req: Request) -> Request {
    if !req.headers().contains_key(&REQUEST_ID) {
        let id = uuid::Builder::from_random_bytes(rand::random()).into_uuid();
        let mut text = [0u8; uuid::fmt::Hyphenated::LENGTH];
        if let Ok(value) = axum::http::HeaderValue::from_str(id.hyphenated().encode_lower(&mut text)) {
            req.headers_mut().insert(REQUEST_ID.clone(), value);
        }
    }
    req
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

//! Process metrics, served at `GET /metrics` in the OpenMetrics text format (which
//! Prometheus scrapes natively).
//!
//! One process-wide registry ([`global`]), so the layers record where things happen
//! without threading a handle through every call: the HTTP middleware times requests,
//! the domain counts smart-group computations and imported rows, and the pool gauges
//! are read from the database pool when a scrape arrives. Names follow OpenTelemetry's
//! semantic conventions where one exists (`http_server_request_duration_seconds` with
//! `http_request_method`, `http_route`, `http_response_status_code`). Labels never
//! carry tenant data: a route is its template (`/v1/groups/{groupId}`), never a path.

use std::sync::OnceLock;

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

/// The labels of one HTTP request series. Nothing in them is copied per request (they
/// are made on every answer): the method is a constant, the route the router's own.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// The method, or `_OTHER` for a method HTTP does not define (OpenTelemetry's
    /// convention: a client cannot add series by inventing methods).
    pub http_request_method: &'static str,
    /// The matched route template, or `unmatched` (404s of unknown paths share one series).
    pub http_route: RouteLabel,
    pub http_response_status_code: u16,
}

/// The `http_request_method` label of `method`.
pub fn method_label(method: &axum::http::Method) -> &'static str {
    use axum::http::Method;
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        Method::CONNECT => "CONNECT",
        Method::TRACE => "TRACE",
        _ => "_OTHER",
    }
}

/// The `http_route` label: the route template the router matched (a clone shares the
/// router's text), or a fixed name (`unmatched`).
#[derive(Clone, Debug)]
pub enum RouteLabel {
    Matched(axum::extract::MatchedPath),
    Named(&'static str),
}

impl RouteLabel {
    /// The label of a request the router matched to `route`, or of one it did not.
    pub fn of(route: Option<&axum::extract::MatchedPath>) -> Self {
        route.map_or(RouteLabel::Named("unmatched"), |p| RouteLabel::Matched(p.clone()))
    }

    pub fn as_str(&self) -> &str {
        match self {
            RouteLabel::Matched(p) => p.as_str(),
            RouteLabel::Named(name) => name,
        }
    }
}

impl std::hash::Hash for RouteLabel {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.as_str().hash(state)
    }
}

impl PartialEq for RouteLabel {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for RouteLabel {}

impl prometheus_client::encoding::EncodeLabelValue for RouteLabel {
    fn encode(&self, encoder: &mut prometheus_client::encoding::LabelValueEncoder) -> std::fmt::Result {
        prometheus_client::encoding::EncodeLabelValue::encode(&self.as_str(), encoder)
    }
}

/// How an imported row ended.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
pub enum RowOutcome {
    Created,
    Updated,
    Failed,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RowLabels {
    pub outcome: RowOutcome,
}

/// A pool's connections by state.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
pub enum ConnectionState {
    Used,
    Idle,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PoolLabels {
    pub state: ConnectionState,
}

/// How an outbox delivery attempt ended (webhooks, Kaizala callbacks, emails).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
pub enum DeliveryOutcome {
    Delivered,
    Retried,
    Failed,
    Skipped,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DeliveryLabels {
    pub outcome: DeliveryOutcome,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

/// Every metric openspot records.
pub struct Metrics {
    registry: Registry,
    pub requests: HistogramFamily<RequestLabels>,
    /// Requests refused with 429 (rate limits, throttles, lockouts).
    pub rate_limited: Counter,
    /// Smart-group computations running in this process.
    pub smart_group_computations: Gauge,
    /// How long each finished computation took.
    pub smart_group_computation_seconds: Histogram,
    pub import_rows: Family<RowLabels, Counter>,
    /// The database pool's connections, read at scrape time.
    pub db_connections: Family<PoolLabels, Gauge>,
    /// How long the store waited to obtain a pooled connection (see [`crate::store`]'s
    /// `waited`): a pool too small for the load shows here before requests time out.
    pub db_connection_wait_seconds: Histogram,
    /// This process's outbox delivery attempts by outcome.
    pub outbox_deliveries: Family<DeliveryLabels, Counter>,
    /// Outbox rows waiting (all replicas), read at scrape time.
    pub outbox_pending: Gauge,
    pub outbox_due: Gauge,
    /// How long the oldest due row has waited, in seconds (0 when none is due).
    pub outbox_oldest_due_seconds: Gauge<f64, std::sync::atomic::AtomicU64>,
}

/// OpenTelemetry's default buckets for HTTP server durations (seconds).
const HTTP_BUCKETS: [f64; 14] = [0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0];

/// Pool waits (seconds): from the usual tens of microseconds of an idle connection to
/// the acquire timeouts (10 s on PostgreSQL, 30 s on SQLite).
const POOL_WAIT_BUCKETS: [f64; 12] = [0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0];

fn http_histogram() -> Histogram {
    Histogram::new(HTTP_BUCKETS)
}

impl Metrics {
    fn new() -> Self {
        let mut registry = Registry::default();
        let requests: HistogramFamily<RequestLabels> = Family::new_with_constructor(http_histogram);
        registry.register_with_unit(
            "http_server_request_duration",
            "Duration of HTTP server requests",
            Unit::Seconds,
            requests.clone(),
        );
        let rate_limited = Counter::default();
        registry.register("openspot_rate_limited_requests", "Requests refused with 429", rate_limited.clone());
        let smart_group_computations = Gauge::default();
        registry.register(
            "openspot_smart_group_computations_running",
            "Smart-group computations running in this process",
            smart_group_computations.clone(),
        );
        let smart_group_computation_seconds = Histogram::new([0.01, 0.1, 0.5, 1.0, 5.0, 15.0, 60.0, 300.0, 1800.0]);
        registry.register_with_unit(
            "openspot_smart_group_computation_duration",
            "Duration of finished smart-group computations",
            Unit::Seconds,
            smart_group_computation_seconds.clone(),
        );
        let import_rows = Family::<RowLabels, Counter>::default();
        registry.register("openspot_import_rows", "Rows of member imports, by outcome", import_rows.clone());
        let db_connections = Family::<PoolLabels, Gauge>::default();
        registry.register("db_client_connection_count", "Database pool connections by state", db_connections.clone());
        let db_connection_wait_seconds = Histogram::new(POOL_WAIT_BUCKETS);
        registry.register_with_unit(
            "db_client_connection_wait_time",
            "Time to obtain a pooled database connection (a write transaction's BEGIN included)",
            Unit::Seconds,
            db_connection_wait_seconds.clone(),
        );
        let outbox_deliveries = Family::<DeliveryLabels, Counter>::default();
        registry.register(
            "openspot_outbox_deliveries",
            "Outbox delivery attempts of this process, by outcome",
            outbox_deliveries.clone(),
        );
        let outbox_pending = Gauge::default();
        registry.register("openspot_outbox_pending", "Outbox rows not yet delivered", outbox_pending.clone());
        let outbox_due = Gauge::default();
        registry.register("openspot_outbox_due", "Outbox rows due now and not being delivered", outbox_due.clone());
        let outbox_oldest_due_seconds = Gauge::<f64, std::sync::atomic::AtomicU64>::default();
        registry.register_with_unit(
            "openspot_outbox_oldest_due_age",
            "How long the oldest due outbox row has waited",
            Unit::Seconds,
            outbox_oldest_due_seconds.clone(),
        );
        Metrics {
            registry,
            outbox_deliveries,
            outbox_pending,
            outbox_due,
            outbox_oldest_due_seconds,
            requests,
            rate_limited,
            smart_group_computations,
            smart_group_computation_seconds,
            import_rows,
            db_connections,
            db_connection_wait_seconds,
        }
    }

    /// The OpenMetrics text of every metric.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }

    /// Sets the pool gauges (called at scrape time).
    pub fn set_pool(&self, size: u32, idle: usize) {
        let idle = idle as i64;
        self.db_connections.get_or_create(&PoolLabels { state: ConnectionState::Idle }).set(idle);
        self.db_connections.get_or_create(&PoolLabels { state: ConnectionState::Used }).set(i64::from(size) - idle);
    }

    /// Sets the outbox backlog gauges (as read at scrape time).
    pub fn set_outbox_backlog(&self, pending: i64, due: i64, oldest_due_ms: Option<i64>) {
        self.outbox_pending.set(pending);
        self.outbox_due.set(due);
        self.outbox_oldest_due_seconds.set(oldest_due_ms.unwrap_or(0) as f64 / 1000.0);
    }

    /// Counts one finished delivery attempt.
    pub fn count_delivery(&self, outcome: DeliveryOutcome) {
        self.outbox_deliveries.get_or_create(&DeliveryLabels { outcome }).inc();
    }

    /// Counts the rows of a finished import.
    pub fn count_import(&self, created: u64, updated: u64, failed: u64) {
        for (outcome, n) in
            [(RowOutcome::Created, created), (RowOutcome::Updated, updated), (RowOutcome::Failed, failed)]
        {
            self.import_rows.get_or_create(&RowLabels { outcome }).inc_by(n);
        }
    }
}

/// The process's metrics.
pub fn global() -> &'static Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    METRICS.get_or_init(Metrics::new)
}

/// Marks a smart-group computation as running until dropped, then records its duration.
pub struct ComputationTimer(std::time::Instant);

impl ComputationTimer {
    pub fn start() -> Self {
        global().smart_group_computations.inc();
        ComputationTimer(std::time::Instant::now())
    }
}

impl Drop for ComputationTimer {
    fn drop(&mut self) {
        let m = global();
        m.smart_group_computations.dec();
        m.smart_group_computation_seconds.observe(self.0.elapsed().as_secs_f64());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Methods HTTP does not define share one label value.
    #[test]
    fn invented_methods_share_one_label() {
        assert_eq!(method_label(&axum::http::Method::GET), "GET");
        assert_eq!(method_label(&axum::http::Method::DELETE), "DELETE");
        assert_eq!(method_label(&axum::http::Method::from_bytes(b"BREW").unwrap()), "_OTHER");
    }

    #[test]
    fn renders_the_documented_names() {
        let m = global();
        m.requests
            .get_or_create(&RequestLabels {
                http_request_method: "GET",
                http_route: RouteLabel::Named("/v1/groups/{groupId}"),
                http_response_status_code: 200,
            })
            .observe(0.003);
        m.count_import(2, 1, 0);
        let text = m.render();
        for name in [
            "# TYPE http_server_request_duration_seconds histogram",
            "http_server_request_duration_seconds_bucket{le=\"0.005\",http_request_method=\"GET\",http_route=\"/v1/groups/{groupId}\",http_response_status_code=\"200\"}",
            "openspot_import_rows_total{outcome=\"Created\"}",
            "# TYPE openspot_rate_limited_requests counter",
            "# TYPE db_client_connection_wait_time_seconds histogram",
            "# EOF",
        ] {
            assert!(text.contains(name), "{name} missing from:\n{text}");
        }
    }
}

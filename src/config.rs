//! Server configuration, read once at start-up (flags and `OPENSPOT_*` env vars, see `cli`)
//! and shared read-only through the application state.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use crate::domain::auth::Limits;

#[derive(Clone, Debug)]
pub struct Config {
    pub listen: SocketAddr,
    /// Base URL of this deployment as clients see it, without a trailing slash.
    pub public_url: String,
    /// Rate limits of spots that have no override.
    pub default_limits: Limits,
    /// `/kaizala/v1` calls per minute of an access token's connector and of its spot
    /// (contract: 100 and 300, kaizala-api.md §1.6).
    pub kaizala_limits: KaizalaLimits,
    /// Where Kaizala login PINs are posted (`{mobileNumber, pin}`); None: not sent.
    pub sms_webhook_url: Option<String>,
    /// When set, `GET /metrics` requires `Authorization: Bearer <token>`; only the
    /// token's SHA-256 is kept (compared in constant time).
    pub metrics_token_hash: Option<[u8; 32]>,
    /// Let outbound calls reach private, loopback and link-local addresses.
    pub allow_private_targets: bool,
    /// Connection and request bounds of the HTTP server.
    pub server: ServerLimits,
    /// Throttles of unauthenticated work (PIN login, failed credentials).
    pub auth: AuthLimits,
    /// Reverse proxies whose `X-Forwarded-For` names the client; every other peer's
    /// address is its own (a client cannot pick the address it is throttled as).
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// How long an API-key or Kaizala access-token lookup is cached: a rotated key or a
    /// revoked token keeps working for at most this long on replicas that cached it.
    pub auth_cache_ttl: Duration,
    /// Delivery of webhooks, Kaizala subscription events and emails.
    pub outbox: OutboxConfig,
    /// Invitation emails (`domain::email`).
    pub email: EmailConfig,
    /// How long a replica's claim on a smart-group computation lasts without renewal
    /// (`domain::groups::set_compute_lease`, applied at start-up).
    pub smart_group_lease: Duration,
}

/// See [`Config::kaizala_limits`].
#[derive(Clone, Copy, Debug)]
pub struct KaizalaLimits {
    pub per_connector_per_minute: i64,
    pub per_spot_per_minute: i64,
}

/// Default of [`Config::auth_cache_ttl`].
pub const DEFAULT_AUTH_CACHE_TTL: Duration = Duration::from_secs(5);

/// Bounds that keep slow or numerous clients from holding the server (SECURITY.md).
#[derive(Clone, Debug)]
pub struct ServerLimits {
    /// A request's head must arrive within this (also bounds an idle keep-alive connection).
    pub header_read_timeout: Duration,
    /// A request, body included, must be answered within this (408 otherwise).
    pub request_timeout: Duration,
    /// The same for member imports (a 5 MiB upload over a slow link).
    pub import_timeout: Duration,
    /// Open connections at once; more wait in the listen backlog.
    pub max_connections: usize,
    /// Open connections of one client address (trusted proxies exempt); more are closed.
    pub max_connections_per_address: usize,
    /// Requests being handled at once; more are answered 503 at once.
    pub max_in_flight: usize,
}

impl Default for ServerLimits {
    fn default() -> Self {
        ServerLimits {
            header_read_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
            import_timeout: Duration::from_secs(120),
            max_connections: 1024,
            max_connections_per_address: 128,
            max_in_flight: 512,
        }
    }
}

/// Limits on what anonymous callers can make the server do.
#[derive(Clone, Debug)]
pub struct AuthLimits {
    /// `generatePin` per mobile number per 10 minutes.
    pub pins_per_number: i64,
    /// `generatePin` and PIN logins per connector per minute.
    pub pin_calls_per_connector: i64,
    /// `generatePin` and PIN logins per client address per minute.
    pub pin_calls_per_address: i64,
    /// Wrong PINs per mobile number per hour before logins of that number are refused
    /// until the hour ends (a new PIN does not reset it).
    pub pin_failures_per_number: i64,
    /// Failed API-key or token lookups per client address per minute before that
    /// address is refused without a database lookup until the minute ends.
    pub failed_auth_per_address: u32,
}

impl Default for AuthLimits {
    fn default() -> Self {
        AuthLimits {
            pins_per_number: 5,
            pin_calls_per_connector: 100,
            pin_calls_per_address: 30,
            pin_failures_per_number: 10,
            failed_auth_per_address: 100,
        }
    }
}

/// How the outbox dispatcher delivers (`domain::outbox`).
#[derive(Clone, Debug, PartialEq)]
pub struct OutboxConfig {
    /// Waits before the retries of a failed delivery: one retry per entry, then the row
    /// fails (`--webhook-retry-schedule`, default 5 s, 5 min, 30 min, 2 h, 5 h, 10 h).
    pub retry_schedule: Vec<Duration>,
    /// One attempt (connection, request and answer) must end within this.
    pub attempt_timeout: Duration,
    /// How long a claimed row belongs to the replica that claimed it; a replica that
    /// dies leaves its rows due again after this. Must exceed the attempt timeout.
    pub lease: Duration,
    /// How often a dispatcher looks for due rows when nothing woke it (rows written by
    /// other replicas, retries coming due, leases lapsing).
    pub poll_interval: Duration,
    /// Attempts in flight at once per replica.
    pub max_in_flight: usize,
    /// Attempts in flight at once per target (one endpoint or subscription).
    pub max_in_flight_per_target: usize,
    /// Finished rows and logged attempts are deleted after this (housekeeping).
    pub retention: Duration,
}

/// How much longer than an attempt a lease lasts at least: the dispatcher's backstop
/// (1 s past the timeout) plus the time to record the outcome.
pub const LEASE_MARGIN: Duration = Duration::from_secs(2);

/// Default of [`OutboxConfig::retry_schedule`].
pub const DEFAULT_RETRY_SCHEDULE: &str = "5s,5m,30m,2h,5h,10h";

impl Default for OutboxConfig {
    fn default() -> Self {
        OutboxConfig {
            retry_schedule: parse_retry_schedule(DEFAULT_RETRY_SCHEDULE).unwrap_or_default(),
            attempt_timeout: Duration::from_secs(10),
            lease: Duration::from_secs(30),
            poll_interval: Duration::from_millis(500),
            max_in_flight: 64,
            max_in_flight_per_target: 16,
            retention: Duration::from_secs(30 * 24 * 3600),
        }
    }
}

impl OutboxConfig {
    /// The lease must outlast an attempt and the recording of its outcome, so that a
    /// live replica never loses a row it is still delivering.
    pub fn check(&self) -> Result<(), String> {
        if self.lease < self.attempt_timeout + LEASE_MARGIN {
            return Err(format!(
                "the outbox lease ({} ms) must exceed the attempt timeout ({} ms) by at least 2 s",
                self.lease.as_millis(),
                self.attempt_timeout.as_millis()
            ));
        }
        if self.max_in_flight == 0 || self.max_in_flight_per_target == 0 {
            return Err("outbox in-flight limits must be at least 1".into());
        }
        if self.poll_interval.is_zero() {
            return Err("the outbox poll interval must be positive".into());
        }
        Ok(())
    }
}

/// Parses a retry schedule: durations separated by commas, each a number with a unit
/// `ms`, `s`, `m` or `h` (`5s,5m,30m`). An empty text is an empty schedule (no retry).
pub fn parse_retry_schedule(raw: &str) -> Result<Vec<Duration>, String> {
    raw.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            let digits = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
            let (n, unit) = s.split_at(digits);
            let n: u64 = n.parse().map_err(|_| format!("'{s}' is not a duration such as 500ms, 5s, 5m or 2h"))?;
            let ms = match unit.trim() {
                "ms" => Some(n),
                "s" => n.checked_mul(1_000),
                "m" => n.checked_mul(60_000),
                "h" => n.checked_mul(3_600_000),
                _ => return Err(format!("'{s}' has no unit: write ms, s, m or h")),
            };
            ms.map(Duration::from_millis).ok_or_else(|| format!("'{s}' is too long"))
        })
        .collect()
}

impl Config {
    pub fn new(listen: SocketAddr, public_url: Option<String>) -> Self {
        let public_url = public_url.unwrap_or_else(|| format!("http://{listen}"));
        Config {
            listen,
            public_url: public_url.trim_end_matches('/').to_string(),
            default_limits: Limits { per_10s: 100, per_day: 50_000 },
            kaizala_limits: KaizalaLimits { per_connector_per_minute: 100, per_spot_per_minute: 300 },
            sms_webhook_url: None,
            metrics_token_hash: None,
            allow_private_targets: false,
            server: ServerLimits::default(),
            auth: AuthLimits::default(),
            trusted_proxies: Vec::new(),
            auth_cache_ttl: DEFAULT_AUTH_CACHE_TTL,
            outbox: OutboxConfig::default(),
            email: EmailConfig::default(),
            smart_group_lease: Duration::from_millis(crate::domain::groups::COMPUTE_LEASE_MS as u64),
        }
    }

    /// True when `ip` is a configured reverse proxy.
    pub fn is_trusted_proxy(&self, ip: IpAddr) -> bool {
        self.trusted_proxies.iter().any(|net| net.contains(&ip))
    }
}

/// Parses `OPENSPOT_TRUSTED_PROXIES`: addresses or CIDR ranges, comma-separated.
pub fn parse_trusted_proxies(raw: &str) -> Result<Vec<ipnet::IpNet>, String> {
    raw.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<ipnet::IpNet>()
                .or_else(|_| s.parse::<IpAddr>().map(ipnet::IpNet::from))
                .map_err(|_| format!("'{s}' is neither an IP address nor a CIDR range"))
        })
        .collect()
}

/// How invitation emails are sent (`domain::email`).
#[derive(Clone, Debug, PartialEq)]
pub struct EmailConfig {
    /// The SMTP relay (`smtp://host:25`, `smtps://user:pass@host:465`,
    /// `smtp://host?tls=starttls`); None: emails are recorded as skipped.
    pub smtp_url: Option<String>,
    /// The address emails come from (default `openspot@<public-url host>`).
    pub smtp_from: Option<String>,
    /// The link of an invitation: `{publicUrl}`, `{spotId}`, `{memberId}` and
    /// `{courseId}` (empty for a spot invitation) are replaced.
    pub invitation_url: String,
}

/// Default of [`EmailConfig::invitation_url`].
pub const DEFAULT_INVITATION_URL: &str = "{publicUrl}/invitations/{memberId}";

impl Default for EmailConfig {
    fn default() -> Self {
        EmailConfig { smtp_url: None, smtp_from: None, invitation_url: DEFAULT_INVITATION_URL.to_string() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trusted_proxies_parse_addresses_and_ranges() {
        let mut c = Config::new("127.0.0.1:1".parse().unwrap(), None);
        c.trusted_proxies = parse_trusted_proxies("10.0.0.0/8, 192.168.1.7,::1").unwrap();
        assert_eq!(c.trusted_proxies.len(), 3);
        assert!(c.is_trusted_proxy("10.9.8.7".parse().unwrap()));
        assert!(c.is_trusted_proxy("192.168.1.7".parse().unwrap()));
        assert!(!c.is_trusted_proxy("192.168.1.8".parse().unwrap()));
        assert!(parse_trusted_proxies("10.0.0.0/8,nope").is_err());
    }

    #[test]
    fn retry_schedules_parse_with_units() {
        let s = |ms: u64| Duration::from_millis(ms);
        assert_eq!(
            parse_retry_schedule(DEFAULT_RETRY_SCHEDULE).unwrap(),
            vec![s(5_000), s(300_000), s(1_800_000), s(7_200_000), s(18_000_000), s(36_000_000)]
        );
        assert_eq!(parse_retry_schedule(" 50ms, 100ms ").unwrap(), vec![s(50), s(100)]);
        assert_eq!(parse_retry_schedule("").unwrap(), Vec::<Duration>::new());
        assert!(parse_retry_schedule("5").unwrap_err().contains("no unit"));
        assert!(parse_retry_schedule("5d").is_err());
        assert!(parse_retry_schedule("x5s").is_err());
        assert!(parse_retry_schedule("99999999999999999h").is_err());
        assert_eq!(OutboxConfig::default().retry_schedule.len(), 6);
        assert!(OutboxConfig::default().check().is_ok());
        let short = OutboxConfig { lease: Duration::from_millis(11_999), ..OutboxConfig::default() };
        assert!(short.check().is_err());
        let test = OutboxConfig {
            lease: Duration::from_secs(3),
            attempt_timeout: Duration::from_secs(1),
            ..OutboxConfig::default()
        };
        assert!(test.check().is_ok());
    }
}

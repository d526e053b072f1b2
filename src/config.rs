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

impl Config {
    pub fn new(listen: SocketAddr, public_url: Option<String>) -> Self {
        let public_url = public_url.unwrap_or_else(|| format!("http://{listen}"));
        Config {
            listen,
            public_url: public_url.trim_end_matches('/').to_string(),
            default_limits: Limits { per_10s: 100, per_day: 50_000 },
            sms_webhook_url: None,
            metrics_token_hash: None,
            allow_private_targets: false,
            server: ServerLimits::default(),
            auth: AuthLimits::default(),
            trusted_proxies: Vec::new(),
            auth_cache_ttl: DEFAULT_AUTH_CACHE_TTL,
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
}

//! Server configuration, read once at start-up (flags and `OPENSPOT_*` env vars, see `cli`)
//! and shared read-only through the application state.

use std::net::SocketAddr;

use crate::domain::auth::Limits;

#[derive(Clone, Debug)]
pub struct Config {
    pub listen: SocketAddr,
    /// Base URL of this deployment as clients see it, without a trailing slash.
    pub public_url: String,
    /// Rate limits of spots that have no override.
    pub default_limits: Limits,
    /// Where Kaizala login PINs are posted (`{mobileNumber, pin}`); None: the server log.
    pub sms_webhook_url: Option<String>,
    /// Let outbound calls reach private, loopback and link-local addresses.
    pub allow_private_targets: bool,
}

impl Config {
    pub fn new(listen: SocketAddr, public_url: Option<String>) -> Self {
        let public_url = public_url.unwrap_or_else(|| format!("http://{listen}"));
        Config {
            listen,
            public_url: public_url.trim_end_matches('/').to_string(),
            default_limits: Limits { per_10s: 100, per_day: 50_000 },
            sms_webhook_url: None,
            allow_private_targets: false,
        }
    }
}

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
}

impl Config {
    pub fn new(listen: SocketAddr, public_url: Option<String>) -> Self {
        let public_url = public_url.unwrap_or_else(|| format!("http://{listen}"));
        Config {
            listen,
            public_url: public_url.trim_end_matches('/').to_string(),
            default_limits: Limits {
                per_10s: 100,
                per_day: 50_000,
            },
        }
    }
}

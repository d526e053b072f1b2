//! openspot: a self-hosted, multi-tenant community-membership server.
//!
//! Layers, outermost first: [`cli`] (commands), [`http`] (the MeltingSpot and Kaizala
//! dialects, thin adapters), [`domain`] (what things mean; the only caller of the
//! store), [`store`] (SQL for SQLite and PostgreSQL).

/// Command-line interface: `serve`, `spots …`, `migrate`.
pub mod cli;
/// Server configuration.
pub mod config;
/// Domain logic shared by both dialects.
pub mod domain;
/// The one error type.
pub mod error;
/// Entry points of the fuzz targets and of their corpus replay (not an API).
#[doc(hidden)]
pub mod fuzzing;
/// HTTP router, middleware and dialect adapters.
pub mod http;
/// Process metrics (`GET /metrics`).
pub mod metrics;
/// Outbound HTTP with timeouts and the private-target check.
pub mod outbound;
/// SQL on SQLite and PostgreSQL.
pub mod store;

pub use config::Config;
pub use http::{serve, AppState};
pub use store::Db;

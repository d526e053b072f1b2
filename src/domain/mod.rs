//! The domain layer: what openspot means, independent of either HTTP dialect.
//!
//! Both dialects (MeltingSpot under `/v1`, Kaizala under `/kaizala`) call these
//! functions; this is the only code that calls the store. Validation, status moves,
//! counters and transactions live here.

pub mod auth;
pub mod background;
pub mod console;
pub mod courses;
pub mod custom_roles;
pub mod demo;
pub mod email;
pub mod events;
pub mod filter;
pub mod groups;
pub mod housekeeping;
pub mod ids;
pub mod import;
pub mod kaizala;
pub mod members;
pub mod outbox;
pub mod phone;
pub mod properties;
pub mod rate_limit;
pub mod smart_rules;
pub mod spots;
pub mod transfer;
pub mod vocab;
pub mod webhooks;

use std::time::{SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

/// A new, time-ordered id (UUIDv7: creation order is id order, and it indexes well).
pub fn new_id() -> uuid::Uuid {
    uuid::Uuid::now_v7()
}

/// `From` conversions both ways between a domain struct and the store's row type, for
/// structs whose fields are the row's columns one for one: reads (`Row` → struct) and
/// writes (struct or `&struct` → `Row`). The store never sees a domain type; this is the seam.
macro_rules! row_conversions {
    ($domain:ty, $row:ty { $($field:ident),+ $(,)? }) => {
        impl From<$row> for $domain {
            fn from(row: $row) -> Self {
                Self { $($field: row.$field),+ }
            }
        }
        impl From<$domain> for $row {
            fn from(d: $domain) -> Self {
                Self { $($field: d.$field),+ }
            }
        }
        impl From<&$domain> for $row {
            #[allow(clippy::clone_on_copy)]
            fn from(d: &$domain) -> Self {
                Self { $($field: d.$field.clone()),+ }
            }
        }
    };
}
pub(crate) use row_conversions;

/// The domain structs of rows the store returned.
pub(crate) fn from_rows<R, T: From<R>>(rows: Vec<R>) -> Vec<T> {
    rows.into_iter().map(T::from).collect()
}

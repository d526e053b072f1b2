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
///
/// Made here rather than by `Uuid::now_v7`, which asks the kernel for its random bits
/// (a `getrandom` system call per id: an invite with an endpoint made five, about a
/// tenth of the system calls the outbox added to it; issue 14). The layout is RFC
/// 9562's with a counter: 48 bits of Unix milliseconds, the version, 12 bits of a
/// counter that starts at a random value below 2,048 each new millisecond and counts
/// up within it (past 4,095 the millisecond moves on by one: ids stay in order under
/// a burst), the variant, and 62 bits from the thread's random generator. Ids are not
/// secrets (they show their time anyway); secrets are drawn elsewhere.
pub fn new_id() -> uuid::Uuid {
    use std::sync::Mutex;
    /// The last id's millisecond and counter.
    static LAST: Mutex<(u64, u16)> = Mutex::new((0, 0));
    let now = u64::try_from(now_ms()).unwrap_or(0);
    let (ms, counter) = {
        let mut last = LAST.lock().unwrap_or_else(|p| p.into_inner());
        *last = match *last {
            (ms, counter) if now <= ms && counter < 0xFFF => (ms, counter + 1),
            (ms, _) if now <= ms => (ms + 1, rand::random::<u16>() & 0x7FF),
            _ => (now, rand::random::<u16>() & 0x7FF),
        };
        *last
    };
    let mut bytes = [0u8; 10];
    bytes[..2].copy_from_slice(&counter.to_be_bytes());
    bytes[2..].copy_from_slice(&rand::random::<[u8; 8]>());
    uuid::Builder::from_unix_timestamp_millis(ms, &bytes).into_uuid()
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_ids_are_v7_in_strict_order_and_carry_their_time() {
        let before = u64::try_from(now_ms()).unwrap();
        // More than one millisecond's counter holds: the burst must stay in order.
        let ids: Vec<uuid::Uuid> = (0..20_000).map(|_| new_id()).collect();
        let after = u64::try_from(now_ms()).unwrap();
        assert!(ids.windows(2).all(|w| w[0] < w[1]), "ids out of order");
        for id in &ids {
            assert_eq!(id.get_version(), Some(uuid::Version::SortRand));
            assert_eq!(id.get_variant(), uuid::Variant::RFC4122);
            let (secs, nanos) = id.get_timestamp().unwrap().to_unix();
            let ms = secs * 1000 + u64::from(nanos / 1_000_000);
            // A burst may run ahead of the clock by a millisecond per 2,048 ids.
            assert!(ms >= before && ms <= after + 10, "{ms} not in {before}..{after}");
        }
        let distinct: std::collections::HashSet<_> = ids.iter().map(|id| &id.as_bytes()[8..]).collect();
        assert_eq!(distinct.len(), ids.len(), "the random part repeats");
    }
}

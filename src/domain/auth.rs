//! API-key authentication for the MeltingSpot dialect, with a short-lived in-process
//! cache so that a request costs no database round-trip for auth (contract §7).
//! A rotated or deleted key keeps working for at most the cache's lifetime
//! ([`crate::config::Config::auth_cache_ttl`]) on replicas that had it cached.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use subtle::ConstantTimeEq;

use super::spots::hash_api_key;
use crate::domain::ids::SpotId;
use crate::error::{Error, Result};
use crate::store::{self, Db};

/// A secret that names its spot (a Kaizala token, a console session cookie or sign-in
/// link): `prefix`, the spot id (16 bytes) and 32 random bytes, each base64url, joined by
/// a dot (not in that alphabet). Its lookup then reads one spot's rows (one shard on
/// Citus); the stored hash covers the whole value, so one whose spot part was changed
/// matches nothing.
pub fn spot_token(prefix: &str, spot_id: SpotId) -> String {
    use base64::Engine;
    use rand::RngCore;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let mut random = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut random);
    format!("{prefix}{}.{}", b64.encode(spot_id.uuid().as_bytes()), b64.encode(random))
}

/// The spot a [`spot_token`] made with one of `prefixes` names (read as presented,
/// trimmed); None for a malformed value or one made before secrets named their spot.
pub fn token_spot(token: &str, prefixes: &[&str]) -> Option<SpotId> {
    use base64::Engine;
    let (head, _) = token.trim().split_once('.')?;
    let encoded = prefixes.iter().find_map(|p| head.strip_prefix(p))?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(encoded).ok()?;
    let id = uuid::Uuid::from_slice(&bytes).ok()?;
    Some(SpotId::from(id))
}

/// Request budgets of a spot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    pub per_10s: i64,
    pub per_day: i64,
}

/// The caller of a `/v1` request.
#[derive(Clone, Debug)]
pub struct AuthedSpot {
    pub spot_id: SpotId,
    pub limits: Limits,
}

/// A short-lived in-process cache keyed by a credential's SHA-256, holding at most
/// [`HashCache::CAPACITY`] entries: when full, expired entries are swept (at most once
/// per TTL, so a flood of misses never makes each insert a scan) and, if it is still
/// full, new entries are simply not cached.
#[derive(Debug)]
pub struct HashCache<V> {
    ttl: Duration,
    entries: Mutex<(Entries<V>, Instant)>,
}

/// Cached values by credential hash, with when each was cached. Hashed with foldhash
/// (seeded per map) rather than SipHash: the keys are SHA-256 digests, which a client
/// cannot aim at one bucket without the seed, and this lookup runs on every request.
type Entries<V> = HashMap<[u8; 32], (Instant, V), foldhash::fast::RandomState>;

impl<V: Clone> HashCache<V> {
    pub const CAPACITY: usize = 10_000;

    pub fn new(ttl: Duration) -> Self {
        HashCache { ttl, entries: Mutex::new((HashMap::default(), Instant::now())) }
    }

    pub fn get(&self, hash: &[u8; 32]) -> Option<V> {
        let guard = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        guard.0.get(hash).filter(|(at, _)| at.elapsed() < self.ttl).map(|(_, v)| v.clone())
    }

    pub fn put(&self, hash: [u8; 32], value: V) {
        let mut guard = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        let (entries, last_sweep) = &mut *guard;
        if entries.len() >= Self::CAPACITY && !entries.contains_key(&hash) {
            if last_sweep.elapsed() >= self.ttl {
                let ttl = self.ttl;
                entries.retain(|_, (at, _)| at.elapsed() < ttl);
                *last_sweep = Instant::now();
            }
            if entries.len() >= Self::CAPACITY {
                return;
            }
        }
        entries.insert(hash, (Instant::now(), value));
    }

    /// Forgets every entry whose value fails `keep`.
    pub fn retain(&self, keep: impl Fn(&V) -> bool) {
        let mut guard = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        guard.0.retain(|_, (_, v)| keep(v));
    }

    pub fn len(&self) -> usize {
        self.entries.lock().unwrap_or_else(|p| p.into_inner()).0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// API-key lookups. Unknown keys are cached too (as `None`), so repeating a bad key
/// costs no lookup; [`FailedAuthThrottle`] bounds the distinct bad keys an address tries.
#[derive(Debug)]
pub struct KeyCache {
    cache: HashCache<Option<AuthedSpot>>,
    db_lookups: AtomicU64,
}

impl KeyCache {
    /// A cache whose entries live for `ttl`.
    pub fn new(ttl: Duration) -> Self {
        KeyCache { cache: HashCache::new(ttl), db_lookups: AtomicU64::new(0) }
    }

    /// Finds the spot of `key`; 401 when there is none.
    pub async fn authenticate(&self, db: &Db, key: &str, defaults: Limits) -> Result<AuthedSpot> {
        let hash = hash_api_key(key);
        if let Some(cached) = self.cache.get(&hash) {
            return cached.ok_or_else(|| Error::Unauthorized("Unauthorized".into()));
        }
        self.db_lookups.fetch_add(1, Ordering::Relaxed);
        let mut c = db.conn().await?;
        let found = store::spots::get_by_key_hash(c.ex(), &hash).await?;
        drop(c);
        let spot = match found {
            Some((spot, stored)) if bool::from(stored.as_slice().ct_eq(&hash)) => spot,
            _ => {
                self.cache.put(hash, None);
                return Err(Error::Unauthorized("Unauthorized".into()));
            }
        };
        let authed = AuthedSpot {
            spot_id: spot.id,
            limits: Limits {
                per_10s: spot.rate_limit_per_10s.unwrap_or(defaults.per_10s),
                per_day: spot.rate_limit_per_day.unwrap_or(defaults.per_day),
            },
        };
        self.cache.put(hash, Some(authed.clone()));
        Ok(authed)
    }

    /// The spot of `key` if it is cached as valid (no database lookup): lets a valid
    /// client through while its address is throttled for others' failures.
    pub fn cached_valid(&self, key: &str) -> Option<AuthedSpot> {
        self.cache.get(&hash_api_key(key)).flatten()
    }

    /// Forgets every cached key of `spot_id` (after a rotation in this process), and
    /// every cached unknown key (the new key must not be shadowed by a cached miss).
    pub fn forget_spot(&self, spot_id: SpotId) {
        self.cache.retain(|s| s.as_ref().is_some_and(|s| s.spot_id != spot_id));
    }

    /// Key lookups that reached the database since start-up.
    pub fn db_lookups(&self) -> u64 {
        self.db_lookups.load(Ordering::Relaxed)
    }
}

/// Failed credential checks (API keys, Kaizala tokens and application secrets) per
/// client address, counted in this process in one-minute windows. Past the limit the
/// address is refused (429) without a database lookup until its window ends, so a
/// flood of made-up keys costs the database at most `limit` lookups a minute per address.
#[derive(Debug)]
pub struct FailedAuthThrottle {
    limit: u32,
    windows: Mutex<HashMap<IpAddr, (u64, u32)>>,
}

/// Addresses tracked at most; past it, windows that ended are dropped first.
const MAX_TRACKED_ADDRESSES: usize = 100_000;
const FAILURE_WINDOW_S: u64 = 60;

impl FailedAuthThrottle {
    pub fn new(limit_per_minute: u32) -> Self {
        FailedAuthThrottle { limit: limit_per_minute, windows: Mutex::new(HashMap::new()) }
    }

    fn window_now() -> (u64, u64) {
        let now_s = (super::now_ms() / 1000).max(0) as u64;
        (now_s - now_s % FAILURE_WINDOW_S, now_s)
    }

    /// Seconds until `ip` may try again, when it is over its limit.
    pub fn blocked_for(&self, ip: Option<IpAddr>) -> Option<u64> {
        let ip = ip?;
        let (window, now_s) = Self::window_now();
        let windows = self.windows.lock().unwrap_or_else(|p| p.into_inner());
        match windows.get(&ip) {
            Some(&(w, n)) if w == window && n >= self.limit => Some((window + FAILURE_WINDOW_S - now_s).max(1)),
            _ => None,
        }
    }

    /// Counts one failed check from `ip`.
    pub fn record_failure(&self, ip: Option<IpAddr>) {
        let Some(ip) = ip else { return };
        let (window, _) = Self::window_now();
        let mut windows = self.windows.lock().unwrap_or_else(|p| p.into_inner());
        if windows.len() >= MAX_TRACKED_ADDRESSES && !windows.contains_key(&ip) {
            windows.retain(|_, (w, _)| *w == window);
            if windows.len() >= MAX_TRACKED_ADDRESSES {
                // Still full within one minute (a flood spread over 100,000 addresses):
                // new addresses go untracked rather than the map growing or the
                // addresses already refused being forgiven.
                return;
            }
        }
        let entry = windows.entry(ip).or_insert((window, 0));
        if entry.0 != window {
            *entry = (window, 0);
        }
        entry.1 = entry.1.saturating_add(1);
    }

    /// Drops windows that ended (housekeeping).
    pub fn forget_stale(&self) {
        let (window, _) = Self::window_now();
        self.windows.lock().unwrap_or_else(|p| p.into_inner()).retain(|_, (w, _)| *w == window);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_cache_stops_growing() {
        let c: HashCache<Option<u32>> = HashCache::new(Duration::from_secs(60));
        for i in 0..(HashCache::<Option<u32>>::CAPACITY as u32 + 500) {
            let mut h = [0u8; 32];
            h[..4].copy_from_slice(&i.to_le_bytes());
            c.put(h, None);
        }
        assert_eq!(c.len(), HashCache::<Option<u32>>::CAPACITY);
        // An entry already there can still be refreshed.
        c.put([0u8; 32], Some(7));
        assert_eq!(c.get(&[0u8; 32]), Some(Some(7)));
    }

    #[test]
    fn an_address_is_refused_past_its_failures_and_others_are_not() {
        let t = FailedAuthThrottle::new(3);
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        for _ in 0..3 {
            assert_eq!(t.blocked_for(Some(a)), None);
            t.record_failure(Some(a));
        }
        assert!(t.blocked_for(Some(a)).is_some_and(|s| (1..=60).contains(&s)));
        assert_eq!(t.blocked_for(Some(b)), None);
        assert_eq!(t.blocked_for(None), None);
    }
}

//! API-key authentication for the MeltingSpot dialect, with a short-lived in-process
//! cache so that a request costs no database round-trip for auth (contract §7).
//! A rotated or deleted key keeps working for at most [`KeyCache::TTL`] on replicas
//! that had it cached.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use subtle::ConstantTimeEq;
use uuid::Uuid;

use super::spots::hash_api_key;
use crate::error::{Error, Result};
use crate::store::{self, Db};

/// Request budgets of a spot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    pub per_10s: i64,
    pub per_day: i64,
}

/// The caller of a `/v1` request.
#[derive(Clone, Debug)]
pub struct AuthedSpot {
    pub spot_id: Uuid,
    pub limits: Limits,
}

/// A short-lived in-process cache keyed by a credential's SHA-256.
#[derive(Debug)]
pub struct HashCache<V> {
    ttl: Duration,
    entries: Mutex<HashMap<[u8; 32], (Instant, V)>>,
}

impl<V: Clone> HashCache<V> {
    pub fn new(ttl: Duration) -> Self {
        HashCache { ttl, entries: Mutex::new(HashMap::new()) }
    }

    pub fn get(&self, hash: &[u8; 32]) -> Option<V> {
        let entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        entries.get(hash).filter(|(at, _)| at.elapsed() < self.ttl).map(|(_, v)| v.clone())
    }

    pub fn put(&self, hash: [u8; 32], value: V) {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if entries.len() > 10_000 {
            let ttl = self.ttl;
            entries.retain(|_, (at, _)| at.elapsed() < ttl);
        }
        entries.insert(hash, (Instant::now(), value));
    }

    /// Forgets every entry whose value fails `keep`.
    pub fn retain(&self, keep: impl Fn(&V) -> bool) {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        entries.retain(|_, (_, v)| keep(v));
    }
}

#[derive(Debug)]
pub struct KeyCache {
    cache: HashCache<AuthedSpot>,
}

impl Default for KeyCache {
    fn default() -> Self {
        KeyCache { cache: HashCache::new(Self::TTL) }
    }
}

impl KeyCache {
    pub const TTL: Duration = Duration::from_secs(5);

    pub fn new() -> Self {
        Self::default()
    }

    /// Finds the spot of `key`; 401 when there is none.
    pub async fn authenticate(&self, db: &Db, key: &str, defaults: Limits) -> Result<AuthedSpot> {
        let hash = hash_api_key(key);
        if let Some(spot) = self.cache.get(&hash) {
            return Ok(spot);
        }
        let mut c = db.conn().await?;
        let found = store::spots::find_by_key_hash(c.ex(), &hash).await?;
        drop(c);
        let Some((spot, stored)) = found else {
            return Err(Error::Unauthorized("Unauthorized".into()));
        };
        if !bool::from(stored.as_slice().ct_eq(&hash)) {
            return Err(Error::Unauthorized("Unauthorized".into()));
        }
        let authed = AuthedSpot {
            spot_id: spot.id,
            limits: Limits {
                per_10s: spot.rate_limit_per_10s.unwrap_or(defaults.per_10s),
                per_day: spot.rate_limit_per_day.unwrap_or(defaults.per_day),
            },
        };
        self.cache.put(hash, authed.clone());
        Ok(authed)
    }

    /// Forgets every cached key of `spot_id` (after a rotation in this process).
    pub fn forget_spot(&self, spot_id: Uuid) {
        self.cache.retain(|s| s.spot_id != spot_id);
    }
}

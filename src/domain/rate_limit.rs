//! Rate limiting that holds across replicas without a database round-trip per request.
//!
//! Each window (per spot and scope: the `/v1` 10-second and daily budgets, the Kaizala
//! per-connector and per-spot minutes) is a row in the shared database counting the
//! requests *granted* in it. A replica leases a small batch of requests from the row
//! with one conditional upsert (`used + n <= limit`) and spends the batch locally. The
//! batch shrinks as the window fills (an eighth of what is left, 1 to 20), so the
//! database sees about one write per 20 requests on a quiet window and the limit is
//! never exceeded: a replica can only spend what it leased. The cost is that a replica
//! holding an unspent lease may make another one refuse a little early near the limit.

use std::collections::HashMap;
use std::sync::Mutex;

use uuid::Uuid;

use super::now_ms;
use crate::domain::ids::SpotId;
use crate::error::{Error, Result};
use crate::store::{self, Db};

pub const TEN_SECONDS_MS: i64 = 10_000;
pub const MINUTE_MS: i64 = 60_000;
pub const DAY_MS: i64 = 86_400_000;
pub const HOUR_MS: i64 = 3_600_000;

/// The "spot" of windows that belong to no spot: per-address and per-number throttles
/// of anonymous calls (PIN login). Their rows are purged by housekeeping.
pub const ANONYMOUS: SpotId = SpotId(Uuid::nil());

/// Drops windows that started more than two days ago, of every spot and scope: the
/// longest window is a day, and scopes keyed by an address or a number are one-off,
/// so rollover never purges them (housekeeping).
pub async fn purge_old_windows(db: &Db) -> Result<u64> {
    let mut c = db.conn().await?;
    Ok(store::rate_limits::purge_all_before(c.ex(), now_ms() - 2 * DAY_MS).await?)
}

/// A counter of attempts in a fixed window, exact across replicas (one database write
/// per attempt, no leasing): for lockouts, where every attempt must count.
pub struct AttemptWindow<'a> {
    pub spot_id: SpotId,
    pub scope: &'a str,
    pub window_ms: i64,
    pub limit: i64,
}

impl AttemptWindow<'_> {
    fn start(&self, now: i64) -> i64 {
        now - now.rem_euclid(self.window_ms)
    }

    /// Takes one attempt; [`Error::RateLimited`] until the window ends when none is left.
    pub async fn take(&self, db: &Db) -> Result<()> {
        let now = now_ms();
        let start = self.start(now);
        let mut c = db.conn().await?;
        let taken = store::rate_limits::try_take(c.ex(), self.spot_id, self.scope, start, 1, self.limit).await?;
        match taken {
            Some(_) => Ok(()),
            None => {
                Err(Error::RateLimited { retry_after_s: ((start + self.window_ms - now + 999) / 1000).max(1) as u64 })
            }
        }
    }

    /// Returns an attempt that turned out not to count (a successful login).
    pub async fn give_back(&self, db: &Db) -> Result<()> {
        let start = self.start(now_ms());
        let mut c = db.conn().await?;
        store::rate_limits::give_back(c.ex(), self.spot_id, self.scope, start).await?;
        Ok(())
    }
}

/// The outcome of one check.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decision {
    pub allowed: bool,
    pub limit: i64,
    pub remaining: i64,
    /// Seconds until the window resets (at least 1).
    pub reset_s: u64,
}

#[derive(Debug)]
struct Lease {
    window_start: i64,
    window_ms: i64,
    /// Requests leased from the database and not yet spent here.
    unspent: i64,
    /// The window's total in the database as last seen.
    db_used: i64,
}

#[derive(Debug, Default)]
pub struct RateLimiter {
    leases: Mutex<HashMap<(SpotId, String), Lease>>,
}

impl RateLimiter {
    pub fn new() -> Self {
        Self::default()
    }

    /// Spends one request of `scope` for `spot_id`, leasing more from the database when needed.
    pub async fn check(&self, db: &Db, spot_id: SpotId, scope: &str, limit: i64, window_ms: i64) -> Result<Decision> {
        let now = now_ms();
        let window_start = now - now.rem_euclid(window_ms);
        let reset_s = ((window_start + window_ms - now + 999) / 1000).max(1) as u64;
        let key = (spot_id, scope.to_string());
        let mut rolled_over = false;
        let want = {
            let mut leases = self.leases.lock().unwrap_or_else(|p| p.into_inner());
            let lease = leases.entry(key.clone()).or_insert_with(|| {
                rolled_over = true;
                Lease { window_start, window_ms, unspent: 0, db_used: 0 }
            });
            if lease.window_start != window_start {
                rolled_over = true;
                *lease = Lease { window_start, window_ms, unspent: 0, db_used: 0 };
            }
            if lease.unspent > 0 {
                lease.unspent -= 1;
                let remaining = (limit - lease.db_used + lease.unspent).max(0);
                return Ok(Decision { allowed: true, limit, remaining, reset_s });
            }
            ((limit - lease.db_used) / 8).clamp(1, 20)
        };

        let mut c = db.conn().await?;
        let mut granted = want;
        let mut total = store::rate_limits::try_take(c.ex(), spot_id, scope, window_start, want, limit).await?;
        if total.is_none() && want > 1 {
            granted = 1;
            total = store::rate_limits::try_take(c.ex(), spot_id, scope, window_start, 1, limit).await?;
        }
        if rolled_over {
            // First use of this window here: past windows of the scope are dead rows.
            store::rate_limits::purge_before(c.ex(), spot_id, scope, window_start).await?;
        }
        drop(c);

        let mut leases = self.leases.lock().unwrap_or_else(|p| p.into_inner());
        let lease = leases.entry(key).or_insert(Lease { window_start, window_ms, unspent: 0, db_used: 0 });
        if lease.window_start != window_start {
            *lease = Lease { window_start, window_ms, unspent: 0, db_used: 0 };
        }
        match total {
            Some(total) => {
                lease.db_used = lease.db_used.max(total);
                lease.unspent += granted - 1;
                let remaining = (limit - lease.db_used + lease.unspent).max(0);
                Ok(Decision { allowed: true, limit, remaining, reset_s })
            }
            // Concurrent requests here may have leased the rest of the window while
            // this one waited on the database: spend from their lease before refusing.
            None if lease.unspent > 0 => {
                lease.unspent -= 1;
                lease.db_used = limit;
                Ok(Decision { allowed: true, limit, remaining: lease.unspent, reset_s })
            }
            None => {
                lease.db_used = limit;
                Ok(Decision { allowed: false, limit, remaining: 0, reset_s })
            }
        }
    }

    /// Drops leases of windows that ended (housekeeping). Scopes keyed by an address
    /// or a number are one-off, so without this the map would grow with every caller.
    pub fn forget_stale(&self) {
        let now = now_ms();
        let mut leases = self.leases.lock().unwrap_or_else(|p| p.into_inner());
        leases.retain(|_, l| now < l.window_start + l.window_ms);
    }
}

//! Rate limiting that holds across replicas without a database round-trip per request.
//!
//! Each window (per spot and scope: the `/v1` 10-second and daily budgets, the Kaizala
//! per-connector and per-spot minutes) is a row in the shared database counting the
//! requests *granted* in it. A replica leases a small batch of requests from the row
//! with one conditional upsert (`used + n <= limit`) and spends the batch locally. The
//! batch shrinks as the window fills (an eighth of what is left, at most 1 % of the
//! limit, and never fewer than 1 or more than 20 to 1,000: [`max_batch`]), so the
//! database sees about one write per 20 requests (per 1 % of a large limit) on a quiet
//! window and the limit is never exceeded: a replica can only spend what it leased. The
//! cost is that a replica holding an unspent lease may make another one refuse a little
//! early near the limit, and that what a replica leased and did not spend (at most two
//! leases: 2 % of a large limit) is lost to the window if it stops.
//! While a window is far from its limit, the next lease is taken in the background
//! before the current one runs out ([`refill_at`]), so a request spends from a lease
//! instead of waiting on a database write (on SQLite, behind the one writer): the
//! writes are as many, off the requests' path. Near the limit leases are taken as
//! before, when needed, so no replica holds more than one small lease there.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

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
    let mut c = db.limits_conn().await?;
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
        let mut c = db.limits_conn().await?;
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
        let mut c = db.limits_conn().await?;
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
    /// A lease is being taken in the background (see [`refill_at`]).
    refilling: bool,
}

impl Lease {
    fn new(window_start: i64, window_ms: i64) -> Self {
        Lease { window_start, window_ms, unspent: 0, db_used: 0, refilling: false }
    }
}

/// The most requests one lease takes from the database: 1 % of the window's limit,
/// at least 20 and at most 1,000. Every lease is a write to the window's row (on SQLite
/// in the companion database, so that it leaves the readers' page caches of the main
/// file alone: `store::SqliteLimits`), so a spot with a large budget (a day's 50,000
/// requests) leases 500 at a time rather than 20: its writes fall 25-fold, and the most
/// a stopped replica can take from the window unspent stays 2 % of it. Small limits
/// (the 10-second budget of 100) are as before: their leases are an eighth of what is
/// left. Leased requests count in the window's row, so a spot whose limit is lowered
/// (or a database restored under smaller limits) may find up to two of the old leases
/// already counted in its current windows.
pub fn max_batch(limit: i64) -> i64 {
    (limit / 100).clamp(20, 1000)
}

/// When a window has room for full leases ([`max_batch`]) and a quarter of one is
/// left unspent, the next lease is taken in the background.
pub fn refill_at(limit: i64) -> i64 {
    max_batch(limit) / 4
}

/// Leases by spot, then by scope: a check looks its lease up by the borrowed scope,
/// without building an owned key (it runs twice on every `/v1` request).
/// Hashed with foldhash rather than SipHash (two lookups per check, two checks per
/// request): spot ids and scopes are the server's own values, not a client's.
type Leases = Arc<Mutex<LeaseMap>>;
type LeaseMap = HashMap<SpotId, HashMap<String, Lease, Fold>, Fold>;
type Fold = foldhash::fast::RandomState;

/// Runs `f` on the lease of `scope` in `leases`, created (and `rolled_over` set) when
/// there is none or when it is of another window. (A closure rather than a returned
/// reference: the borrow checker cannot return the found lease and insert on a miss
/// in one function without a second lookup that could fail.)
fn with_lease<R>(
    leases: &mut LeaseMap,
    spot_id: SpotId,
    scope: &str,
    (window_start, window_ms): (i64, i64),
    rolled_over: &mut bool,
    f: impl FnOnce(&mut Lease) -> R,
) -> R {
    let by_scope = leases.entry(spot_id).or_default();
    if let Some(lease) = by_scope.get_mut(scope) {
        if lease.window_start != window_start {
            *rolled_over = true;
            *lease = Lease::new(window_start, window_ms);
        }
        return f(lease);
    }
    *rolled_over = true;
    f(by_scope.entry(scope.to_string()).or_insert(Lease::new(window_start, window_ms)))
}

#[derive(Debug, Default)]
pub struct RateLimiter {
    leases: Leases,
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
        let mut rolled_over = false;
        // Spent from the lease (with whether to refill it), or the lease to take.
        let spent = {
            let mut leases = self.leases.lock().unwrap_or_else(|p| p.into_inner());
            with_lease(&mut leases, spot_id, scope, (window_start, window_ms), &mut rolled_over, |lease| {
                if lease.unspent > 0 {
                    lease.unspent -= 1;
                    let remaining = (limit - lease.db_used + lease.unspent).max(0);
                    let refill = lease.unspent <= refill_at(limit)
                        && !lease.refilling
                        && (limit - lease.db_used) / 8 >= max_batch(limit);
                    lease.refilling |= refill;
                    Ok((remaining, refill))
                } else {
                    Err(((limit - lease.db_used) / 8).clamp(1, max_batch(limit)))
                }
            })
        };
        let want = match spent {
            Ok((remaining, refill)) => {
                if refill {
                    self.refill(db.clone(), (spot_id, scope.to_string()), window_start, limit);
                }
                return Ok(Decision { allowed: true, limit, remaining, reset_s });
            }
            Err(want) => want,
        };

        let mut c = db.limits_conn().await?;
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
        with_lease(&mut leases, spot_id, scope, (window_start, window_ms), &mut false, |lease| match total {
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
        })
    }

    /// Takes a full lease of `key`'s window in the background and adds it to what is
    /// left to spend. A lease taken for a window that has since ended is dropped (its
    /// requests count in a dead row); a failure leaves the next request to lease.
    fn refill(&self, db: Db, key: (SpotId, String), window_start: i64, limit: i64) {
        let leases = self.leases.clone();
        let batch = max_batch(limit);
        tokio::spawn(async move {
            let taken = match db.limits_conn().await {
                Ok(mut c) => store::rate_limits::try_take(c.ex(), key.0, &key.1, window_start, batch, limit).await,
                Err(e) => Err(e),
            };
            if let Err(e) = &taken {
                tracing::warn!(error = %e, scope = %key.1, "rate-limit lease in the background failed");
            }
            let mut leases = leases.lock().unwrap_or_else(|p| p.into_inner());
            let lease = leases.get_mut(&key.0).and_then(|m| m.get_mut(&key.1));
            if let Some(lease) = lease.filter(|l| l.window_start == window_start) {
                lease.refilling = false;
                if let Ok(Some(total)) = taken {
                    lease.db_used = lease.db_used.max(total);
                    lease.unspent += batch;
                }
            }
        });
    }

    /// Drops leases of windows that ended (housekeeping). Scopes keyed by an address
    /// or a number are one-off, so without this the map would grow with every caller.
    pub fn forget_stale(&self) {
        let now = now_ms();
        let mut leases = self.leases.lock().unwrap_or_else(|p| p.into_inner());
        leases.retain(|_, by_scope| {
            by_scope.retain(|_, l| now < l.window_start + l.window_ms);
            !by_scope.is_empty()
        });
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::time::Duration;

    use super::*;

    async fn lease_of(limiter: &RateLimiter, spot: SpotId, scope: &str) -> (i64, bool) {
        let leases = limiter.leases.lock().unwrap();
        let l = &leases[&spot][scope];
        (l.unspent, l.refilling)
    }

    /// Leases are 1 % of the limit, from 20 to 1,000 requests.
    #[test]
    fn leases_scale_with_the_limit() {
        assert_eq!(max_batch(100), 20);
        assert_eq!(max_batch(2_000), 20);
        assert_eq!(max_batch(50_000), 500);
        assert_eq!(max_batch(1_000_000), 1000);
        assert_eq!(max_batch(i64::MAX / 4), 1000);
    }

    /// Far from the limit the next lease is taken before the current one runs out;
    /// near it, only when needed; and the database never grants past the limit.
    #[tokio::test]
    async fn leases_ahead_only_far_from_the_limit() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::connect_and_migrate(&format!("sqlite://{}", dir.path().join("rl.db").display())).await.unwrap();
        let limiter = RateLimiter::new();
        let (spot, window) = (SpotId(Uuid::now_v7()), 3_600_000);
        let used = |scope: &'static str| {
            let db = db.clone();
            async move {
                let now = now_ms();
                let mut c = db.limits_conn().await.unwrap();
                store::rate_limits::used(c.ex(), spot, scope, now - now.rem_euclid(window)).await.unwrap()
            }
        };
        // First request: a full lease, taken on the request's path.
        let far = 1_000_000;
        let (batch, at) = (max_batch(far), refill_at(far));
        assert_eq!((batch, at), (1000, 250));
        assert!(limiter.check(&db, spot, "far", far, window).await.unwrap().allowed);
        assert_eq!(lease_of(&limiter, spot, "far").await, (batch - 1, false));
        // Spending down to refill_at starts one background lease, added when it lands.
        for _ in 0..(batch - 1 - at) {
            assert!(limiter.check(&db, spot, "far", far, window).await.unwrap().allowed);
        }
        for _ in 0..100 {
            if !lease_of(&limiter, spot, "far").await.1 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(lease_of(&limiter, spot, "far").await, (at + batch, false));
        assert_eq!(used("far").await, 2 * batch);

        // Near the limit (less than 8 full leases left): leases as needed, never ahead,
        // and never past the limit.
        let limit = 100;
        let mut allowed = 0;
        for _ in 0..limit + 10 {
            let d = limiter.check(&db, spot, "near", limit, window).await.unwrap();
            allowed += i64::from(d.allowed);
            assert!(!lease_of(&limiter, spot, "near").await.1);
        }
        assert_eq!(allowed, limit);
        assert_eq!(used("near").await, limit);
    }

    /// On SQLite a lease commits to the companion database, not to the main file, so a
    /// reader of the main file keeps its page cache: `PRAGMA data_version` (which moves
    /// when another connection commits to the database, the moment SQLite drops the
    /// cache) stays put across leases. A commit to the main file moves it (the probe works).
    #[tokio::test]
    async fn leases_leave_the_readers_page_caches_alone() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::connect_and_migrate(&format!("sqlite://{}", dir.path().join("rl.db").display())).await.unwrap();
        let limiter = RateLimiter::new();
        let spot = SpotId(Uuid::now_v7());
        let mut reader = db.conn().await.unwrap();
        let crate::store::Ex::Sqlite(r) = reader.ex() else { unreachable!() };
        async fn version(r: &mut sqlx::SqliteConnection) -> i64 {
            sqlx::query_scalar::<_, i64>("PRAGMA main.data_version").fetch_one(r).await.unwrap()
        }
        let before = version(&mut *r).await;
        // Small limits lease a few requests at a time: many leases, each a commit.
        for i in 0..40 {
            let scope = if i % 2 == 0 { "v1:10s" } else { "v1:day" };
            assert!(limiter.check(&db, spot, scope, 100, HOUR_MS).await.unwrap().allowed);
        }
        let mut c = db.limits_conn().await.unwrap();
        let now = now_ms();
        let used = store::rate_limits::used(c.ex(), spot, "v1:10s", now - now.rem_euclid(HOUR_MS)).await;
        drop(c);
        assert!(used.unwrap() >= 20, "the 40 checks leased from the windows' table");
        assert_eq!(version(&mut *r).await, before, "a lease reset the reader's page cache");
        let mut w = db.write_conn().await.unwrap();
        crate::run!(w.ex(), |c| sqlx::query("CREATE TABLE probe (x)").execute(c).await.map(|_| ())).unwrap();
        drop(w);
        assert_ne!(version(&mut *r).await, before, "a commit to the main file is seen");
    }
}

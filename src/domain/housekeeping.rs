//! Background housekeeping of a serving replica: resuming smart-group computations and
//! course link jobs a stopped replica left behind, forgetting stale in-memory rate-limit leases and
//! failed-auth windows, purging rate-limit windows of past days, outbox rows past
//! their retention and the console's old jobs and uploads, and keeping the planner's
//! statistics current.
//!
//! None of it is about a request, so it lives here rather than in `http`: `http::serve`
//! only starts it ([`Housekeeping::spawn`]) and stops it when the server ends.

use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;

use super::auth::FailedAuthThrottle;
use super::console;
use super::courses;
use super::groups;
use super::outbox;
use super::rate_limit::{self, RateLimiter};
use crate::store::Db;

/// What the periodic work touches: the database and the replica's in-memory throttles.
pub struct Housekeeping {
    pub db: Db,
    pub limiter: Arc<RateLimiter>,
    pub failed_auth: Arc<FailedAuthThrottle>,
    /// How long finished outbox rows and delivery attempts are kept.
    pub outbox_retention: Duration,
}

impl Housekeeping {
    /// Time between two rounds.
    pub const TICK: Duration = Duration::from_secs(30);
    /// Rounds between two purges of old rate-limit windows (every ten minutes).
    pub const PURGE_EVERY: u64 = 20;
    /// Rounds between two planner-statistics refreshes (about hourly).
    pub const OPTIMIZE_EVERY: u64 = 120;

    /// Runs the rounds in the background until the returned task is aborted.
    pub fn spawn(self) -> JoinHandle<()> {
        tokio::spawn(self.run())
    }

    async fn run(self) {
        let mut tick = tokio::time::interval(Self::TICK);
        let mut round: u64 = 1;
        loop {
            tick.tick().await;
            self.round(round).await;
            round += 1;
        }
    }

    /// Round `round` (counted from 1): every round resumes computations and course link
    /// jobs and forgets stale leases; the rarer chores run on multiples of their period.
    /// A failed chore is logged and tried again in a later round.
    pub async fn round(&self, round: u64) {
        if let Err(e) = groups::resume_computations(&self.db).await {
            tracing::warn!(error = ?e, "cannot resume smart-group computations");
        }
        if let Err(e) = courses::resume_link_jobs(&self.db).await {
            tracing::warn!(error = ?e, "cannot resume course link jobs");
        }
        self.limiter.forget_stale();
        self.failed_auth.forget_stale();
        if round % Self::PURGE_EVERY == 0 {
            // Windows of past days (one-off address and number scopes).
            if let Err(e) = rate_limit::purge_old_windows(&self.db).await {
                tracing::warn!(error = ?e, "cannot purge old rate-limit windows");
            }
            // Deliveries and their log past the retention.
            match outbox::purge(&self.db, self.outbox_retention).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(deleted = n, "purged old outbox rows and delivery attempts"),
                Err(e) => tracing::warn!(error = ?e, "cannot purge old outbox rows"),
            }
            // The console's finished jobs, and its uploads and their reports (docs/console.md).
            match console::purge_background(&self.db).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(deleted = n, "purged old console jobs and uploads"),
                Err(e) => tracing::warn!(error = ?e, "cannot purge old console jobs and uploads"),
            }
        }
        if round % Self::OPTIMIZE_EVERY == 0 {
            // Keeps the planner's statistics current as spots grow.
            if let Err(e) = self.db.optimize().await {
                tracing::warn!(error = ?e, "database optimize failed");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn every_chore_runs_on_a_fresh_database() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("housekeeping.db").display());
        let db = Db::connect_and_migrate(&url).await.unwrap();
        let chores = Housekeeping {
            db,
            limiter: Arc::new(RateLimiter::new()),
            failed_auth: Arc::new(FailedAuthThrottle::new(10)),
            outbox_retention: Duration::from_secs(86_400),
        };
        // The round where every chore is due, then an ordinary one.
        chores.round(Housekeeping::PURGE_EVERY * Housekeeping::OPTIMIZE_EVERY).await;
        chores.round(1).await;
    }
}

//! Delivery of what the outbox holds (issue 14): webhook events, Kaizala subscription
//! events and invitation emails.
//!
//! Rows are written by the change that causes them, in its transaction
//! (`store::outbox::insert_many` + [`Tx::note_outbox_write`]); a dispatcher per replica
//! claims due rows, hands each to the [`Channel`] registered for its kind, and records
//! the [`Outcome`]. A kind with no channel registered ([`Channels::register`]) is not
//! claimed at all: its rows stay Pending until a process that has one runs.

pub mod dispatch;
pub mod record;
pub mod schedule;

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use uuid::Uuid;

use crate::config::OutboxConfig;
use crate::domain::ids::SpotId;
use crate::domain::vocab::{ChannelKind, OutboxState};
use crate::error::Result;
use crate::store::outbox::{self as store_outbox, OutboxFilter, OutboxRow};
use crate::store::{Db, Tx};

pub use dispatch::{spawn, DispatcherHandle};

/// A boxed, sendable future (the [`Channel`] methods return these so that the trait
/// stays object-safe without an extra dependency).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What one attempt did, for the delivery log.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Attempted {
    /// HTTP status or SMTP reply code, when there was an answer.
    pub status: Option<u16>,
    pub duration_ms: i64,
    /// The start of the answer's body (at most `outbound::RESPONSE_KEEP` bytes, lossy UTF-8).
    pub response: Option<String>,
    /// What went wrong, in words that never contain the target's URL.
    pub error: Option<String>,
}

/// The result of one attempt, as a channel reports it.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    /// Accepted by the target (2xx, SMTP 250).
    Delivered(Attempted),
    /// Try again later, on the retry schedule.
    Retry(Attempted),
    /// The target is gone for good (HTTP 410): disable it now.
    Gone(Attempted),
    /// Permanent failure of this row (e.g. SMTP 5xx): no retry.
    Fail(Attempted),
    /// Nothing can send it (e.g. no SMTP relay configured); the reason is recorded.
    Skip(String),
    /// The target was deleted since the row was claimed: drop the row.
    TargetMissing,
}

/// One way of delivering rows (webhook, Kaizala subscription, email).
pub trait Channel: Send + Sync {
    /// Makes one attempt at `row`. Never panics and never fails: every problem is an
    /// [`Outcome`].
    fn attempt<'a>(&'a self, db: &'a Db, row: &'a OutboxRow) -> BoxFuture<'a, Outcome>;

    /// Marks `target` disabled with `reason`, inside the dispatcher's transaction (after
    /// a 410 or once the retry schedule is exhausted).
    fn disable<'a>(
        &'a self,
        tx: &'a mut Tx,
        spot_id: SpotId,
        target: Uuid,
        reason: &'a str,
    ) -> BoxFuture<'a, Result<()>>;
}

/// The channels of a process, by kind.
#[derive(Clone, Default)]
pub struct Channels {
    webhook: Option<Arc<dyn Channel>>,
    kaizala: Option<Arc<dyn Channel>>,
    email: Option<Arc<dyn Channel>>,
}

impl Channels {
    /// Delivers rows of `kind` through `channel` (replacing any earlier one).
    pub fn register(&mut self, kind: ChannelKind, channel: Arc<dyn Channel>) -> &mut Self {
        *self.slot(kind) = Some(channel);
        self
    }

    fn slot(&mut self, kind: ChannelKind) -> &mut Option<Arc<dyn Channel>> {
        match kind {
            ChannelKind::Webhook => &mut self.webhook,
            ChannelKind::Kaizala => &mut self.kaizala,
            ChannelKind::Email => &mut self.email,
        }
    }

    /// The channel of `kind`, if one is registered.
    pub fn get(&self, kind: ChannelKind) -> Option<&Arc<dyn Channel>> {
        match kind {
            ChannelKind::Webhook => self.webhook.as_ref(),
            ChannelKind::Kaizala => self.kaizala.as_ref(),
            ChannelKind::Email => self.email.as_ref(),
        }
    }

    /// The kinds with a channel, in declared order.
    pub fn kinds(&self) -> Vec<ChannelKind> {
        ChannelKind::ALL.iter().copied().filter(|k| self.get(*k).is_some()).collect()
    }
}

/// This replica's delivery counters (since start), shown by `/readyz`.
#[derive(Debug, Default)]
pub struct Stats {
    pub in_flight: AtomicU64,
    pub delivered: AtomicU64,
    pub retried: AtomicU64,
    pub failed: AtomicU64,
    pub skipped: AtomicU64,
}

/// A snapshot of [`Stats`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StatsSnapshot {
    pub in_flight: u64,
    pub delivered: u64,
    pub retried: u64,
    pub failed: u64,
    pub skipped: u64,
}

impl Stats {
    pub fn snapshot(&self) -> StatsSnapshot {
        StatsSnapshot {
            in_flight: self.in_flight.load(Ordering::Relaxed),
            delivered: self.delivered.load(Ordering::Relaxed),
            retried: self.retried.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
            skipped: self.skipped.load(Ordering::Relaxed),
        }
    }
}

/// What a replica's dispatcher runs with.
pub struct Runtime {
    pub config: OutboxConfig,
    pub channels: Channels,
    pub stats: Arc<Stats>,
    /// This process's id in claims and in the attempt log.
    pub replica_id: Uuid,
    /// The last backlog read for [`status`], and when.
    backlog_cache: Mutex<Option<(Instant, Backlog)>>,
}

impl Runtime {
    pub fn new(config: OutboxConfig, channels: Channels) -> Self {
        Runtime {
            config,
            channels,
            stats: Arc::new(Stats::default()),
            replica_id: crate::domain::new_id(),
            backlog_cache: Mutex::new(None),
        }
    }
}

/// How long [`status`] reuses a backlog it read.
pub const BACKLOG_CACHE: Duration = Duration::from_secs(5);

/// The queue (read at most every [`BACKLOG_CACHE`]) and this replica's counters, for
/// `/readyz`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Status {
    #[serde(flatten)]
    pub backlog: Backlog,
    #[serde(flatten)]
    pub counters: StatsSnapshot,
}

pub async fn status(db: &Db, rt: &Runtime) -> Result<Status> {
    let cached = rt.backlog_cache.lock().ok().and_then(|c| *c).filter(|(at, _)| at.elapsed() < BACKLOG_CACHE);
    let backlog = match cached {
        Some((_, b)) => b,
        None => {
            let b = backlog(db).await?;
            if let Ok(mut c) = rt.backlog_cache.lock() {
                *c = Some((Instant::now(), b));
            }
            b
        }
    };
    Ok(Status { backlog, counters: rt.stats.snapshot() })
}

/// Which outbox rows an operator names (`openspot outbox list|retry`): every condition
/// given must hold.
#[derive(Clone, Debug, Default)]
pub struct Filter {
    pub spot_id: Option<SpotId>,
    /// One row.
    pub id: Option<Uuid>,
    /// Every row of one event.
    pub event_id: Option<Uuid>,
    /// Rows in any of these states (empty: any state).
    pub states: Vec<OutboxState>,
    pub channel: Option<ChannelKind>,
}

impl From<&Filter> for OutboxFilter {
    fn from(f: &Filter) -> Self {
        OutboxFilter {
            spot_id: f.spot_id,
            id: f.id,
            event_id: f.event_id,
            states: f.states.clone(),
            channel: f.channel,
        }
    }
}

/// One outbox row as operators see it (times in ms since the epoch).
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OutboxItem {
    pub id: Uuid,
    pub spot_id: SpotId,
    pub event_id: Uuid,
    pub channel: ChannelKind,
    pub target_id: Option<Uuid>,
    pub event_type: String,
    pub state: OutboxState,
    pub attempts: i64,
    pub next_attempt_at: i64,
    pub last_status: Option<i64>,
    pub last_error: Option<String>,
    pub created_at: i64,
}

impl From<OutboxRow> for OutboxItem {
    fn from(r: OutboxRow) -> Self {
        OutboxItem {
            id: r.id,
            spot_id: r.spot_id,
            event_id: r.event_id,
            channel: r.channel,
            target_id: r.target_id,
            event_type: r.event_type,
            state: r.state,
            attempts: r.attempts,
            next_attempt_at: r.next_attempt_at,
            last_status: r.last_status,
            last_error: r.last_error,
            created_at: r.created_at,
        }
    }
}

/// The newest rows matching `f`, at most `limit` (1..=1000).
pub async fn list(db: &Db, f: &Filter, limit: i64) -> Result<Vec<OutboxItem>> {
    let mut conn = db.conn().await?;
    let rows = store_outbox::list(conn.ex(), &f.into(), limit.clamp(1, 1_000)).await?;
    Ok(crate::domain::from_rows(rows))
}

/// Queues the finished rows matching `f` again (due now, fresh retry schedule); rows
/// still Pending are left alone. Wakes the dispatchers (of this process, or of the
/// servers through PostgreSQL when run from the CLI).
pub async fn retry(db: &Db, f: &Filter) -> Result<u64> {
    let mut tx = db.begin().await?;
    let n = store_outbox::requeue(tx.ex(), &f.into(), crate::domain::now_ms()).await?;
    if n > 0 {
        tx.note_outbox_write();
    }
    tx.commit().await?;
    Ok(n)
}

/// What waits in the queue now.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Backlog {
    /// Pending rows: due, scheduled for a retry, or being delivered.
    pub pending: i64,
    /// Pending rows due now and not being delivered.
    pub due: i64,
    /// How long the oldest due row has waited (ms).
    pub oldest_due_age_ms: Option<i64>,
}

pub async fn backlog(db: &Db) -> Result<Backlog> {
    let now = crate::domain::now_ms();
    let mut conn = db.conn().await?;
    let b = store_outbox::backlog(conn.ex(), now).await?;
    Ok(Backlog { pending: b.pending, due: b.due, oldest_due_age_ms: b.oldest_due.map(|t| (now - t).max(0)) })
}

/// Rows and attempts deleted per transaction by [`purge`].
pub const PURGE_BATCH: i64 = 1_000;

/// Deletes what is older than `retention`: finished rows (Paused ones too) and attempts,
/// spot by spot, in short transactions. Returns how many rows and attempts went.
pub async fn purge(db: &Db, retention: Duration) -> Result<u64> {
    let cutoff = crate::domain::now_ms() - i64::try_from(retention.as_millis()).unwrap_or(i64::MAX / 2);
    let before = store_outbox::uuid_v7_floor(cutoff);
    let spots = {
        let mut conn = db.conn().await?;
        crate::store::spots::list(conn.ex()).await?
    };
    let mut total = 0;
    let mut pacer = db.write_pacer();
    for spot in spots {
        loop {
            let mut tx = db.begin().await?;
            let n = store_outbox::purge_spot(tx.ex(), spot.id, before, PURGE_BATCH).await?;
            tx.commit().await?;
            total += n;
            if n == 0 {
                break;
            }
            pacer.between_slices().await;
        }
    }
    Ok(total)
}

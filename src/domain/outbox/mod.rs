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
use std::sync::Arc;

use uuid::Uuid;

use crate::config::OutboxConfig;
use crate::domain::ids::SpotId;
use crate::domain::vocab::ChannelKind;
use crate::error::Result;
use crate::store::outbox::OutboxRow;
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
}

impl Runtime {
    pub fn new(config: OutboxConfig, channels: Channels) -> Self {
        Runtime { config, channels, stats: Arc::new(Stats::default()), replica_id: crate::domain::new_id() }
    }
}

//! The outbox (issue 14): one row per (event, target) or per email, written in the
//! transaction of the change that caused it, claimed and completed by the dispatchers
//! (`domain::outbox`), with a log of every attempt.
//!
//! Claiming leases a row: `next_attempt_at` becomes the end of the lease and a fresh
//! `claim_token` is stamped on it, so a replica that dies with rows claimed leaves them
//! due again when the lease lapses, and a completion is written only by the holder of
//! the token. The queue is read through the partial index `outbox_due` (`state =
//! 'Pending'`), the one index not led by `spot_id`; statements spell that predicate
//! literally so SQLite can use the partial index.

use std::sync::atomic::{AtomicBool, Ordering};

use tokio::sync::Notify;
use uuid::Uuid;

use super::sql::{Bind, Sql};
use super::Ex;
use crate::domain::ids::SpotId;
use crate::domain::vocab::{ChannelKind, OutboxState};
use crate::{bind_all, run};

/// Woken (`notify_waiters`) after a commit that wrote outbox rows: the dispatcher of
/// this process waits on it beside its poll interval.
pub static WAKE: Notify = Notify::const_new();

/// Set while this process runs a dispatcher. Without one (the CLI), a commit that wrote
/// outbox rows tells the other processes through PostgreSQL `NOTIFY` instead.
pub static DISPATCHER_RUNNING: AtomicBool = AtomicBool::new(false);

/// Wakes this process's dispatcher (if any).
pub fn wake() {
    WAKE.notify_waiters();
}

/// Marks whether this process runs a dispatcher (see [`DISPATCHER_RUNNING`]).
pub fn set_dispatcher_running(running: bool) {
    DISPATCHER_RUNNING.store(running, Ordering::Relaxed);
}

/// The PostgreSQL channel on which processes without a dispatcher announce new rows.
pub const OUTBOX_CHANNEL: &str = "openspot_outbox";

/// Every column of `outbox`, in [`OutboxRow`] order.
pub const COLUMNS: &str = "spot_id, id, event_id, channel, target_id, event_type, payload, occurred_at, state, \
     attempts, failures, next_attempt_at, claimed_by, claim_token, last_status, last_error, created_at, updated_at";

/// One outbox row.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct OutboxRow {
    pub spot_id: SpotId,
    pub id: Uuid,
    pub event_id: Uuid,
    pub channel: ChannelKind,
    pub target_id: Option<Uuid>,
    pub event_type: String,
    pub payload: String,
    pub occurred_at: i64,
    pub state: OutboxState,
    pub attempts: i64,
    pub failures: i64,
    pub next_attempt_at: i64,
    pub claimed_by: Option<Uuid>,
    pub claim_token: Option<Uuid>,
    pub last_status: Option<i64>,
    pub last_error: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
}

/// A row to insert (its spot is the call's).
#[derive(Clone, Debug)]
pub struct NewOutboxRow {
    pub id: Uuid,
    pub event_id: Uuid,
    pub channel: ChannelKind,
    pub target_id: Option<Uuid>,
    pub event_type: String,
    pub payload: String,
    pub occurred_at: i64,
    /// Pending, Paused (target disabled) or Skipped (nothing can send it).
    pub state: OutboxState,
    /// `last_error` of a row written Skipped.
    pub last_error: Option<String>,
}

/// One delivery attempt, as logged.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct AttemptRow {
    pub spot_id: SpotId,
    pub id: Uuid,
    pub outbox_id: Uuid,
    pub target_id: Option<Uuid>,
    pub event_id: Uuid,
    pub event_type: String,
    pub channel: ChannelKind,
    pub attempt: i64,
    pub status_code: Option<i64>,
    pub duration_ms: i64,
    pub error: Option<String>,
    pub response_body: Option<String>,
    pub replica_id: Uuid,
    pub created_at: i64,
}

/// Every column of `outbox_attempts`, in [`AttemptRow`] order.
pub const ATTEMPT_COLUMNS: &str = "spot_id, id, outbox_id, target_id, event_id, event_type, channel, attempt, \
     status_code, duration_ms, error, response_body, replica_id, created_at";

/// What a completed attempt leaves on its row.
#[derive(Clone, Debug, PartialEq)]
pub struct Completion {
    pub state: OutboxState,
    pub failures: i64,
    pub next_attempt_at: i64,
    pub last_status: Option<i64>,
    pub last_error: Option<String>,
}

/// Rows per multi-row `INSERT`.
pub const INSERT_CHUNK: usize = 100;

fn opt_uuid(sql: &mut Sql, v: Option<Uuid>) {
    match v {
        Some(id) => sql.push_bind(Bind::Uuid(id)),
        None => sql.push("NULL"),
    };
}

fn opt_text(sql: &mut Sql, v: Option<&str>) {
    match v {
        Some(t) => sql.push_bind(Bind::Text(t.to_string())),
        None => sql.push("NULL"),
    };
}

/// Inserts `rows` of one spot, [`INSERT_CHUNK`] per statement; all are due at `now`.
pub async fn insert_many(mut ex: Ex<'_>, spot_id: SpotId, rows: &[NewOutboxRow], now: i64) -> Result<(), sqlx::Error> {
    for chunk in rows.chunks(INSERT_CHUNK) {
        let mut sql = Sql::new(
            "INSERT INTO outbox (spot_id, id, event_id, channel, target_id, event_type, payload, occurred_at, \
             state, last_error, next_attempt_at, created_at, updated_at) VALUES ",
        );
        for (i, r) in chunk.iter().enumerate() {
            sql.push(if i == 0 { "(" } else { ", (" });
            sql.push_bind(spot_id.into()).push(", ");
            sql.push_bind(Bind::Uuid(r.id)).push(", ");
            sql.push_bind(Bind::Uuid(r.event_id)).push(", ");
            sql.push_bind(Bind::Text(r.channel.as_str().to_string())).push(", ");
            opt_uuid(&mut sql, r.target_id);
            sql.push(", ");
            sql.push_bind(Bind::Text(r.event_type.clone())).push(", ");
            sql.push_bind(Bind::Text(r.payload.clone())).push(", ");
            sql.push_bind(Bind::I64(r.occurred_at)).push(", ");
            sql.push_bind(Bind::Text(r.state.as_str().to_string())).push(", ");
            opt_text(&mut sql, r.last_error.as_deref());
            sql.push(", ");
            sql.push_bind(Bind::I64(now)).push(", ");
            sql.push_bind(Bind::I64(now)).push(", ");
            sql.push_bind(Bind::I64(now)).push(")");
        }
        run!(&mut ex, |c| bind_all!(sqlx::query(sql.text_for(&**c)), &sql.binds).execute(&mut **c).await.map(|_| ()))?;
    }
    Ok(())
}

/// On PostgreSQL, `NOTIFY openspot_outbox` (delivered when the transaction commits), for
/// processes that run no dispatcher of their own; nothing on SQLite (one process).
pub async fn notify_outbox(ex: Ex<'_>) -> Result<(), sqlx::Error> {
    match ex {
        Ex::Sqlite(_) => Ok(()),
        Ex::Postgres(c) => sqlx::query("SELECT pg_notify($1, '')").bind(OUTBOX_CHANNEL).execute(c).await.map(|_| ()),
    }
}

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

use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::Notify;
use uuid::Uuid;

use super::sql::{Bind, Sql, IN_LIST_MAX};
use super::Ex;
use crate::domain::ids::SpotId;
use crate::domain::vocab::{ChannelKind, OutboxState};
use crate::{bind_all, run};

/// Woken (`notify_waiters`) after a commit that wrote outbox rows: the dispatcher of
/// this process waits on it beside its poll interval.
pub static WAKE: Notify = Notify::const_new();

/// Dispatchers running in this process. Without one (the CLI), a commit that wrote
/// outbox rows tells the other processes through PostgreSQL `NOTIFY` instead.
static DISPATCHERS: AtomicUsize = AtomicUsize::new(0);

/// Wakes this process's dispatchers (if any).
pub fn wake() {
    WAKE.notify_waiters();
}

/// Counts a dispatcher started in this process (see [`dispatcher_running`]).
pub fn dispatcher_started() {
    DISPATCHERS.fetch_add(1, Ordering::SeqCst);
}

/// Counts a dispatcher stopped.
pub fn dispatcher_stopped() {
    DISPATCHERS.fetch_sub(1, Ordering::SeqCst);
}

/// Whether this process runs a dispatcher.
pub fn dispatcher_running() -> bool {
    DISPATCHERS.load(Ordering::SeqCst) > 0
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
        let mut sql = Sql::new("");
        push_insert(&mut sql, spot_id, chunk, now);
        run!(&mut ex, |c| bind_all!(sqlx::query(sql.text_for(&**c)), &sql.binds).execute(&mut **c).await.map(|_| ()))?;
    }
    Ok(())
}

/// Adds `delta` to the spot's maintained member count and inserts `rows` (as
/// [`insert_many`]) in one round trip to the database: on PostgreSQL one statement (the
/// insert as a data-modifying `WITH`), on SQLite two statements sent as one query.
///
/// Why: on PostgreSQL every statement is a network round trip, which riding on a
/// statement the write makes anyway saves (the outbox then adds 3–5 % to a member
/// invite, benches/outbox.rs `--write-cost`). On SQLite the two forms measure the same:
/// there the cost is the row's own pages in the commit. More rows than one statement
/// takes are inserted separately.
pub async fn insert_with_member_count(
    mut ex: Ex<'_>,
    spot_id: SpotId,
    delta: i64,
    rows: &[NewOutboxRow],
    now: i64,
) -> Result<(), sqlx::Error> {
    if rows.is_empty() || rows.len() > INSERT_CHUNK {
        insert_many(ex.reborrow(), spot_id, rows, now).await?;
        return super::spots::add_member_count(ex, spot_id, delta).await;
    }
    let mut sql = Sql::new("");
    sql.push_per_backend("WITH queued AS (", "");
    push_insert(&mut sql, spot_id, rows, now);
    sql.push_per_backend(") ", "; ");
    sql.push("UPDATE spot_counters SET member_count = member_count + ").push_bind(Bind::I64(delta));
    sql.push(" WHERE spot_id = ").push_bind(spot_id.into());
    run!(ex, |c| bind_all!(sqlx::query(sql.text_for(&*c)), &sql.binds).execute(c).await.map(|_| ()))
}

/// Appends `INSERT INTO outbox … VALUES …` of `rows` (due at `now`) to `sql`.
fn push_insert(sql: &mut Sql, spot_id: SpotId, rows: &[NewOutboxRow], now: i64) {
    sql.push(
        "INSERT INTO outbox (spot_id, id, event_id, channel, target_id, event_type, payload, occurred_at, \
         state, last_error, next_attempt_at, created_at, updated_at) VALUES ",
    );
    for (i, r) in rows.iter().enumerate() {
        sql.push(if i == 0 { "(" } else { ", (" });
        sql.push_bind(spot_id.into()).push(", ");
        sql.push_bind(Bind::Uuid(r.id)).push(", ");
        sql.push_bind(Bind::Uuid(r.event_id)).push(", ");
        sql.push_bind(Bind::Text(r.channel.as_str().to_string())).push(", ");
        opt_uuid(sql, r.target_id);
        sql.push(", ");
        sql.push_bind(Bind::Text(r.event_type.clone())).push(", ");
        sql.push_bind(Bind::Text(r.payload.clone())).push(", ");
        sql.push_bind(Bind::I64(r.occurred_at)).push(", ");
        sql.push_bind(Bind::Text(r.state.as_str().to_string())).push(", ");
        opt_text(sql, r.last_error.as_deref());
        sql.push(", ");
        sql.push_bind(Bind::I64(now)).push(", ");
        sql.push_bind(Bind::I64(now)).push(", ");
        sql.push_bind(Bind::I64(now)).push(")");
    }
}

/// On PostgreSQL, `NOTIFY openspot_outbox` (delivered when the transaction commits), for
/// processes that run no dispatcher of their own; nothing on SQLite (one process).
pub async fn notify_outbox(ex: Ex<'_>) -> Result<(), sqlx::Error> {
    match ex {
        Ex::Sqlite(_) => Ok(()),
        Ex::Postgres(c) => sqlx::query("SELECT pg_notify($1, '')").bind(OUTBOX_CHANNEL).execute(c).await.map(|_| ()),
    }
}

fn push_kinds(sql: &mut Sql, kinds: &[ChannelKind]) {
    sql.push_list(kinds.iter().map(|k| Bind::Text(k.as_str().to_string())));
}

/// The due Pending rows' condition (after `WHERE`): due at `now`, of `kinds`, not of
/// `exclude_targets`.
fn push_due(sql: &mut Sql, now: i64, kinds: &[ChannelKind], exclude_targets: &[Uuid]) {
    sql.push("state = 'Pending' AND next_attempt_at <= ").push_bind(Bind::I64(now));
    sql.push(" AND channel IN ");
    push_kinds(sql, kinds);
    if !exclude_targets.is_empty() {
        sql.push(" AND (target_id IS NULL OR target_id NOT IN ");
        sql.push_list(exclude_targets.iter().map(|t| Bind::Uuid(*t)));
        sql.push(")");
    }
}

/// The spots of the (at most `limit`) earliest due rows that [`claim`] would take,
/// each once, earliest first. A plain read of every spot's rows (every shard on Citus,
/// where a `FOR UPDATE` may not span shards): the claim then locks one spot's rows at
/// a time.
pub async fn due_spots(
    mut ex: Ex<'_>,
    now: i64,
    limit: i64,
    kinds: &[ChannelKind],
    exclude_targets: &[Uuid],
) -> Result<Vec<SpotId>, sqlx::Error> {
    if kinds.is_empty() || limit <= 0 {
        return Ok(Vec::new());
    }
    let mut sql = Sql::new("SELECT spot_id FROM outbox WHERE ");
    push_due(&mut sql, now, kinds, exclude_targets);
    sql.push(" ORDER BY next_attempt_at LIMIT ").push_bind(Bind::I64(limit));
    let found = run!(&mut ex, |c| bind_all!(sqlx::query_scalar::<_, SpotId>(sql.text_for(&**c)), &sql.binds)
        .fetch_all(&mut **c)
        .await)?;
    let mut spots: Vec<SpotId> = Vec::with_capacity(found.len());
    for s in found {
        if !spots.contains(&s) {
            spots.push(s);
        }
    }
    Ok(spots)
}

/// Claims up to `limit` due Pending rows of the `kinds` given for `replica`: stamps them
/// with `token` and leases them until `lease_until` (their `next_attempt_at`). Rows of
/// `exclude_targets` (targets with as many attempts in flight as allowed) are left.
/// With `spot`, only that spot's rows (one shard on Citus: see [`due_spots`]).
/// On PostgreSQL `FOR UPDATE SKIP LOCKED` lets concurrent claimers pass each other
/// without ever taking the same row; SQLite's write transactions exclude each other.
/// Call it in a write transaction ([`super::Db::begin`]).
#[allow(clippy::too_many_arguments)]
pub async fn claim(
    mut ex: Ex<'_>,
    spot: Option<SpotId>,
    replica: Uuid,
    token: Uuid,
    now: i64,
    lease_until: i64,
    limit: i64,
    kinds: &[ChannelKind],
    exclude_targets: &[Uuid],
) -> Result<Vec<OutboxRow>, sqlx::Error> {
    if kinds.is_empty() || limit <= 0 {
        return Ok(Vec::new());
    }
    let mut sql = Sql::new("WITH picked AS MATERIALIZED (SELECT spot_id, id FROM outbox WHERE ");
    if let Some(s) = spot {
        sql.push("spot_id = ").push_bind(s.into()).push(" AND ");
    }
    push_due(&mut sql, now, kinds, exclude_targets);
    sql.push(" ORDER BY next_attempt_at LIMIT ").push_bind(Bind::I64(limit));
    sql.push(ex.row_lock(" FOR UPDATE SKIP LOCKED"));
    sql.push(") UPDATE outbox SET claimed_by = ").push_bind(Bind::Uuid(replica));
    sql.push(", claim_token = ").push_bind(Bind::Uuid(token));
    sql.push(", next_attempt_at = ").push_bind(Bind::I64(lease_until));
    sql.push(", updated_at = ").push_bind(Bind::I64(now));
    sql.push(" WHERE ");
    if let Some(s) = spot {
        sql.push("spot_id = ").push_bind(s.into()).push(" AND ");
    }
    sql.push("(spot_id, id) IN (SELECT spot_id, id FROM picked) RETURNING ").push(COLUMNS);
    run!(&mut ex, |c| bind_all!(sqlx::query_as::<_, OutboxRow>(sql.text_for(&**c)), &sql.binds)
        .fetch_all(&mut **c)
        .await)
}

/// When the earliest Pending row of `kinds` is due (a claimed row: when its lease ends).
pub async fn next_due(mut ex: Ex<'_>, kinds: &[ChannelKind]) -> Result<Option<i64>, sqlx::Error> {
    if kinds.is_empty() {
        return Ok(None);
    }
    let mut sql = Sql::new("SELECT next_attempt_at FROM outbox WHERE state = 'Pending' AND channel IN ");
    push_kinds(&mut sql, kinds);
    sql.push(" ORDER BY next_attempt_at LIMIT 1");
    run!(&mut ex, |c| bind_all!(sqlx::query_scalar::<_, i64>(sql.text_for(&**c)), &sql.binds)
        .fetch_optional(&mut **c)
        .await)
}

/// Writes the outcome of an attempt on a claimed row, if `token` still holds it (false:
/// the lease lapsed and another replica claimed the row; it owns the row now). Counts
/// the attempt and releases the claim.
pub async fn complete(
    ex: Ex<'_>,
    spot_id: SpotId,
    id: Uuid,
    token: Uuid,
    c: &Completion,
    now: i64,
) -> Result<bool, sqlx::Error> {
    run!(ex, |conn| super::one_row(
        sqlx::query(
            "UPDATE outbox SET state = $4, attempts = attempts + 1, failures = $5, next_attempt_at = $6, \
         last_status = $7, last_error = $8, claimed_by = NULL, claim_token = NULL, updated_at = $9 \
         WHERE spot_id = $1 AND id = $2 AND claim_token = $3"
        )
        .bind(spot_id)
        .bind(id)
        .bind(token)
        .bind(c.state)
        .bind(c.failures)
        .bind(c.next_attempt_at)
        .bind(c.last_status)
        .bind(c.last_error.as_deref())
        .bind(now)
        .execute(conn)
        .await
    ))
}

/// Deletes one row (its target is gone).
pub async fn delete_row(ex: Ex<'_>, spot_id: SpotId, id: Uuid) -> Result<(), sqlx::Error> {
    run!(ex, |c| sqlx::query("DELETE FROM outbox WHERE spot_id = $1 AND id = $2")
        .bind(spot_id)
        .bind(id)
        .execute(c)
        .await
        .map(|_| ()))
}

/// Appends attempts to the delivery log, [`INSERT_CHUNK`] per statement.
pub async fn insert_attempts(mut ex: Ex<'_>, rows: &[AttemptRow]) -> Result<(), sqlx::Error> {
    for chunk in rows.chunks(INSERT_CHUNK) {
        let mut sql = Sql::from_parts(&["INSERT INTO outbox_attempts (", ATTEMPT_COLUMNS, ") VALUES "]);
        for (i, r) in chunk.iter().enumerate() {
            sql.push(if i == 0 { "(" } else { ", (" });
            sql.push_bind(r.spot_id.into()).push(", ");
            sql.push_bind(Bind::Uuid(r.id)).push(", ");
            sql.push_bind(Bind::Uuid(r.outbox_id)).push(", ");
            opt_uuid(&mut sql, r.target_id);
            sql.push(", ");
            sql.push_bind(Bind::Uuid(r.event_id)).push(", ");
            sql.push_bind(Bind::Text(r.event_type.clone())).push(", ");
            sql.push_bind(Bind::Text(r.channel.as_str().to_string())).push(", ");
            sql.push_bind(Bind::I64(r.attempt)).push(", ");
            match r.status_code {
                Some(s) => sql.push_bind(Bind::I64(s)),
                None => sql.push("NULL"),
            };
            sql.push(", ");
            sql.push_bind(Bind::I64(r.duration_ms)).push(", ");
            opt_text(&mut sql, r.error.as_deref());
            sql.push(", ");
            opt_text(&mut sql, r.response_body.as_deref());
            sql.push(", ");
            sql.push_bind(Bind::Uuid(r.replica_id)).push(", ");
            sql.push_bind(Bind::I64(r.created_at)).push(")");
        }
        run!(&mut ex, |c| bind_all!(sqlx::query(sql.text_for(&**c)), &sql.binds).execute(&mut **c).await.map(|_| ()))?;
    }
    Ok(())
}

/// Adds `n` attempts to each target's count (`outbox_target_stats`).
pub async fn add_attempt_counts(mut ex: Ex<'_>, counts: &[(SpotId, Uuid, i64)]) -> Result<(), sqlx::Error> {
    for chunk in counts.chunks(INSERT_CHUNK) {
        let mut sql = Sql::new("INSERT INTO outbox_target_stats (spot_id, target_id, attempt_count) VALUES ");
        for (i, (spot, target, n)) in chunk.iter().enumerate() {
            sql.push(if i == 0 { "(" } else { ", (" });
            sql.push_bind((*spot).into()).push(", ");
            sql.push_bind(Bind::Uuid(*target)).push(", ");
            sql.push_bind(Bind::I64(*n)).push(")");
        }
        sql.push(
            " ON CONFLICT (spot_id, target_id) DO UPDATE \
             SET attempt_count = outbox_target_stats.attempt_count + excluded.attempt_count",
        );
        run!(&mut ex, |c| bind_all!(sqlx::query(sql.text_for(&**c)), &sql.binds).execute(&mut **c).await.map(|_| ()))?;
    }
    Ok(())
}

/// Releases claims so that the rows are due at `now`: those of `replica` (its graceful
/// shutdown), or every claim (`None`: a SQLite server starting, the one process of
/// its file, takes back what a killed predecessor held).
pub async fn release_claims(mut ex: Ex<'_>, replica: Option<Uuid>, now: i64) -> Result<u64, sqlx::Error> {
    let mut sql = Sql::new("UPDATE outbox SET claimed_by = NULL, claim_token = NULL, next_attempt_at = ");
    sql.push_bind(Bind::I64(now)).push(", updated_at = ").push_bind(Bind::I64(now));
    sql.push(" WHERE state = 'Pending' AND claim_token IS NOT NULL");
    if let Some(r) = replica {
        sql.push(" AND claimed_by = ").push_bind(Bind::Uuid(r));
    }
    run!(&mut ex, |c| bind_all!(sqlx::query(sql.text_for(&**c)), &sql.binds)
        .execute(&mut **c)
        .await
        .map(|r| super::WriteOutcome::rows_affected(&r)))
}

/// Gives back rows this claim (`token`) took beyond a target's in-flight cap: they are
/// due at `now` for the next claim that finds room for their target.
pub async fn unclaim(mut ex: Ex<'_>, token: Uuid, rows: &[(SpotId, Uuid)], now: i64) -> Result<u64, sqlx::Error> {
    let mut released = 0;
    for chunk in rows.chunks(IN_LIST_MAX) {
        let mut sql = Sql::new("UPDATE outbox SET claimed_by = NULL, claim_token = NULL, next_attempt_at = ");
        sql.push_bind(Bind::I64(now)).push(", updated_at = ").push_bind(Bind::I64(now));
        sql.push(" WHERE claim_token = ").push_bind(Bind::Uuid(token)).push(" AND (spot_id, id) IN (");
        for (i, (spot, id)) in chunk.iter().enumerate() {
            sql.push(if i == 0 { "(" } else { ", (" });
            sql.push_bind((*spot).into()).push(", ").push_bind(Bind::Uuid(*id)).push(")");
        }
        sql.push(")");
        released += run!(&mut ex, |c| bind_all!(sqlx::query(sql.text_for(&**c)), &sql.binds)
            .execute(&mut **c)
            .await
            .map(|r| super::WriteOutcome::rows_affected(&r)))?;
    }
    Ok(released)
}

/// Which rows an operator's list or retry names (all given conditions hold).
#[derive(Clone, Debug, Default)]
pub struct OutboxFilter {
    pub spot_id: Option<SpotId>,
    pub id: Option<Uuid>,
    pub event_id: Option<Uuid>,
    pub states: Vec<OutboxState>,
    pub channel: Option<ChannelKind>,
}

fn push_filter(sql: &mut Sql, f: &OutboxFilter) {
    sql.push(" WHERE 1 = 1");
    if let Some(s) = f.spot_id {
        sql.push(" AND spot_id = ").push_bind(s.into());
    }
    if let Some(id) = f.id {
        sql.push(" AND id = ").push_bind(Bind::Uuid(id));
    }
    if let Some(e) = f.event_id {
        let (from, to) = event_rows_range(e);
        sql.push(" AND event_id = ").push_bind(Bind::Uuid(e));
        sql.push(" AND id >= ").push_bind(Bind::Uuid(from)).push(" AND id < ").push_bind(Bind::Uuid(to));
    }
    if !f.states.is_empty() {
        sql.push(" AND state IN ").push_list(f.states.iter().map(|s| Bind::Text(s.as_str().to_string())));
    }
    if let Some(ch) = f.channel {
        sql.push(" AND channel = ").push_bind(Bind::Text(ch.as_str().to_string()));
    }
}

/// Rows matching `f`, newest first, at most `limit` (operators' view; not for requests:
/// without a spot it reads across spots).
pub async fn list(mut ex: Ex<'_>, f: &OutboxFilter, limit: i64) -> Result<Vec<OutboxRow>, sqlx::Error> {
    let mut sql = Sql::from_parts(&["SELECT ", COLUMNS, " FROM outbox"]);
    push_filter(&mut sql, f);
    sql.push(" ORDER BY id DESC LIMIT ").push_bind(Bind::I64(limit));
    run!(&mut ex, |c| bind_all!(sqlx::query_as::<_, OutboxRow>(sql.text_for(&**c)), &sql.binds)
        .fetch_all(&mut **c)
        .await)
}

/// Puts the finished rows matching `f` back in the queue, due at `now` with a fresh
/// retry schedule; rows still Pending (perhaps claimed) are left alone.
pub async fn requeue(mut ex: Ex<'_>, f: &OutboxFilter, now: i64) -> Result<u64, sqlx::Error> {
    let mut sql = Sql::new("UPDATE outbox SET state = 'Pending', failures = 0, claimed_by = NULL, claim_token = NULL");
    sql.push(", next_attempt_at = ").push_bind(Bind::I64(now));
    sql.push(", updated_at = ").push_bind(Bind::I64(now));
    push_filter(&mut sql, f);
    sql.push(" AND state <> 'Pending'");
    run!(&mut ex, |c| bind_all!(sqlx::query(sql.text_for(&**c)), &sql.binds)
        .execute(&mut **c)
        .await
        .map(|r| super::WriteOutcome::rows_affected(&r)))
}

/// What waits in the queue (read through the `outbox_due` index only).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, sqlx::FromRow)]
pub struct Backlog {
    /// Pending rows (due, scheduled for a retry, or claimed).
    pub pending: i64,
    /// Pending rows due now (claimed ones are not: their lease runs).
    pub due: i64,
    /// `next_attempt_at` of the earliest due row.
    pub oldest_due: Option<i64>,
}

pub async fn backlog(ex: Ex<'_>, now: i64) -> Result<Backlog, sqlx::Error> {
    run!(ex, |c| sqlx::query_as::<_, Backlog>(
        "SELECT COUNT(*) AS pending, \
                COALESCE(SUM(CASE WHEN next_attempt_at <= $1 THEN 1 ELSE 0 END), 0) AS due, \
                MIN(CASE WHEN next_attempt_at <= $1 THEN next_attempt_at END) AS oldest_due \
         FROM outbox WHERE state = 'Pending'"
    )
    .bind(now)
    .fetch_one(c)
    .await)
}

/// Holds a disabled target's waiting rows (Pending → Paused), claimed ones included: the
/// attempt in flight is still logged but cannot complete (its claim is gone).
/// The rows are found through the queue's index (what waits is a small part of a spot's
/// rows): no index of rows by target is kept, see [`EVENT_ROWS_SLACK_MS`].
pub async fn pause_target(ex: Ex<'_>, spot_id: SpotId, target: Uuid, now: i64) -> Result<u64, sqlx::Error> {
    let mut sql = Sql::new("UPDATE outbox");
    sql.push_per_backend("", " INDEXED BY outbox_due");
    sql.push(" SET state = 'Paused', claimed_by = NULL, claim_token = NULL, updated_at = ").push_bind(Bind::I64(now));
    sql.push(" WHERE state = 'Pending' AND spot_id = ").push_bind(spot_id.into());
    sql.push(" AND target_id = ").push_bind(Bind::Uuid(target));
    run!(ex, |c| bind_all!(sqlx::query(sql.text_for(&*c)), &sql.binds)
        .execute(c)
        .await
        .map(|r| super::WriteOutcome::rows_affected(&r)))
}

/// A re-enabled target's held rows go back in the queue, due now, with a fresh schedule.
pub async fn resume_target(ex: Ex<'_>, spot_id: SpotId, target: Uuid, now: i64) -> Result<u64, sqlx::Error> {
    run!(ex, |c| sqlx::query(
        "UPDATE outbox SET state = 'Pending', failures = 0, next_attempt_at = $3, updated_at = $3 \
         WHERE spot_id = $1 AND target_id = $2 AND state = 'Paused'"
    )
    .bind(spot_id)
    .bind(target)
    .bind(now)
    .execute(c)
    .await
    .map(|r| super::WriteOutcome::rows_affected(&r)))
}

/// Queues the row of (`target`, `event_id`) again whatever its state, due now with a
/// fresh schedule (a redelivery); false when there is no such row.
pub async fn requeue_event(
    ex: Ex<'_>,
    spot_id: SpotId,
    target: Uuid,
    event_id: Uuid,
    now: i64,
) -> Result<bool, sqlx::Error> {
    let (from, to) = event_rows_range(event_id);
    run!(ex, |c| sqlx::query(
        "UPDATE outbox SET state = 'Pending', failures = 0, next_attempt_at = $4, claimed_by = NULL, \
         claim_token = NULL, updated_at = $4 \
         WHERE spot_id = $1 AND id >= $5 AND id < $6 AND target_id = $2 AND event_id = $3"
    )
    .bind(spot_id)
    .bind(target)
    .bind(event_id)
    .bind(now)
    .bind(from)
    .bind(to)
    .execute(c)
    .await
    .map(|r| super::WriteOutcome::rows_affected(&r) > 0))
}

/// Queues again every Failed row of `target` created at or after `since_ms`.
pub async fn requeue_failed_since(
    ex: Ex<'_>,
    spot_id: SpotId,
    target: Uuid,
    since_ms: i64,
    now: i64,
) -> Result<u64, sqlx::Error> {
    run!(ex, |c| sqlx::query(
        "UPDATE outbox SET state = 'Pending', failures = 0, next_attempt_at = $4, updated_at = $4 \
         WHERE spot_id = $1 AND target_id = $2 AND state = 'Failed' AND created_at >= $3"
    )
    .bind(spot_id)
    .bind(target)
    .bind(since_ms)
    .bind(now)
    .execute(c)
    .await
    .map(|r| super::WriteOutcome::rows_affected(&r)))
}

/// Deletes everything of a deleted target: its rows (read through the spot's primary
/// key range: no index of rows by target is kept, see [`EVENT_ROWS_SLACK_MS`]), its
/// attempts and its count.
pub async fn delete_target(mut ex: Ex<'_>, spot_id: SpotId, target: Uuid) -> Result<(), sqlx::Error> {
    for sql in [
        "DELETE FROM outbox WHERE spot_id = $1 AND target_id = $2",
        "DELETE FROM outbox_attempts WHERE spot_id = $1 AND target_id = $2",
        "DELETE FROM outbox_target_stats WHERE spot_id = $1 AND target_id = $2",
    ] {
        run!(&mut ex, |c| sqlx::query(sql).bind(spot_id).bind(target).execute(&mut **c).await.map(|_| ()))?;
    }
    Ok(())
}

/// A page of `target`'s attempts in creation order, optionally of one event or event
/// type, and how many there are in all (unfiltered: the maintained count; filtered: an
/// index range of the target's attempts).
#[allow(clippy::too_many_arguments)]
pub async fn list_attempts(
    mut ex: Ex<'_>,
    spot_id: SpotId,
    target: Uuid,
    event_id: Option<Uuid>,
    event_type: Option<&str>,
    offset: i64,
    limit: i64,
) -> Result<(Vec<AttemptRow>, i64), sqlx::Error> {
    let filter = |sql: &mut Sql| {
        sql.push_bind(spot_id.into()).push(" AND target_id = ").push_bind(Bind::Uuid(target));
        if let Some(e) = event_id {
            sql.push(" AND event_id = ").push_bind(Bind::Uuid(e));
        }
        if let Some(t) = event_type {
            sql.push(" AND event_type = ").push_bind(Bind::Text(t.to_string()));
        }
    };
    let mut sql = Sql::from_parts(&["SELECT ", ATTEMPT_COLUMNS, " FROM outbox_attempts WHERE spot_id = "]);
    filter(&mut sql);
    sql.push(" ORDER BY id LIMIT ").push_bind(Bind::I64(limit)).push(" OFFSET ").push_bind(Bind::I64(offset));
    let items = run!(&mut ex, |c| bind_all!(sqlx::query_as::<_, AttemptRow>(sql.text_for(&**c)), &sql.binds)
        .fetch_all(&mut **c)
        .await)?;
    let total = if event_id.is_none() && event_type.is_none() {
        run!(&mut ex, |c| sqlx::query_scalar::<_, i64>(
            "SELECT attempt_count FROM outbox_target_stats WHERE spot_id = $1 AND target_id = $2"
        )
        .bind(spot_id)
        .bind(target)
        .fetch_optional(&mut **c)
        .await)?
        .unwrap_or(0)
    } else {
        let mut count = Sql::new("SELECT COUNT(*) FROM outbox_attempts WHERE spot_id = ");
        filter(&mut count);
        run!(&mut ex, |c| bind_all!(sqlx::query_scalar::<_, i64>(count.text_for(&**c)), &count.binds)
            .fetch_one(&mut **c)
            .await)?
    };
    Ok((items, total))
}

/// A PostgreSQL `LISTEN` connection (its own, outside the pool's count).
pub struct Listener(sqlx::postgres::PgListener);

/// Listens on `channels` (PostgreSQL); None on SQLite, where one process writes and
/// delivers.
pub async fn listen(db: &super::Db, channels: &[&str]) -> Result<Option<Listener>, sqlx::Error> {
    match db {
        super::Db::Sqlite(..) => Ok(None),
        super::Db::Postgres(pool) => {
            let mut l = sqlx::postgres::PgListener::connect_with(pool).await?;
            l.listen_all(channels.iter().copied()).await?;
            Ok(Some(Listener(l)))
        }
    }
}

impl Listener {
    /// The next notification as (channel, payload); None when the connection was lost
    /// (it is re-established on the next call, and notifications may have been missed).
    pub async fn recv(&mut self) -> Result<Option<(String, String)>, sqlx::Error> {
        Ok(self.0.try_recv().await?.map(|n| (n.channel().to_string(), n.payload().to_string())))
    }
}

/// The smallest UUIDv7 of millisecond `ms`: every id made before `ms` sorts below it
/// (both stores compare UUIDs byte by byte).
pub fn uuid_v7_floor(ms: i64) -> Uuid {
    let ms = u64::try_from(ms.max(0)).unwrap_or(0) & 0xFFFF_FFFF_FFFF;
    let mut b = [0u8; 16];
    b[..6].copy_from_slice(&ms.to_be_bytes()[2..]);
    b[6] = 0x70;
    b[8] = 0x80;
    Uuid::from_bytes(b)
}

/// The rows of an event are written in the same moment as its id (ids and event ids are
/// UUIDv7s made one after the other), so they lie in the primary key's range around
/// the event id's time: how an event's rows are found without an index of their own
/// (each index is a B-tree more that every emitting write pays for). The slack is far
/// wider than the microseconds between the two; an id that is not a UUIDv7 finds nothing.
pub const EVENT_ROWS_SLACK_MS: i64 = 10 * 60 * 1000;

/// The primary-key range `[from, to)` that holds the rows of `event_id` (see
/// [`EVENT_ROWS_SLACK_MS`]).
pub fn event_rows_range(event_id: Uuid) -> (Uuid, Uuid) {
    let b = event_id.as_bytes();
    let ms = b[..6].iter().fold(0i64, |ms, byte| (ms << 8) | i64::from(*byte));
    (uuid_v7_floor(ms - EVENT_ROWS_SLACK_MS), uuid_v7_floor(ms + EVENT_ROWS_SLACK_MS + 1))
}

/// Deletes up to `limit` finished rows (anything but Pending) and up to `limit`
/// attempts of one spot created before `before` (a [`uuid_v7_floor`]), keeping the
/// per-target attempt counts right. Returns how many rows and attempts went.
pub async fn purge_spot(mut ex: Ex<'_>, spot_id: SpotId, before: Uuid, limit: i64) -> Result<u64, sqlx::Error> {
    let rows = run!(&mut ex, |c| sqlx::query(
        "DELETE FROM outbox WHERE (spot_id, id) IN (SELECT spot_id, id FROM outbox \
         WHERE spot_id = $1 AND id < $2 AND state <> 'Pending' ORDER BY id LIMIT $3)"
    )
    .bind(spot_id)
    .bind(before)
    .bind(limit)
    .execute(&mut **c)
    .await
    .map(|r| super::WriteOutcome::rows_affected(&r)))?;
    let targets: Vec<Option<Uuid>> = run!(&mut ex, |c| sqlx::query_scalar(
        "DELETE FROM outbox_attempts WHERE (spot_id, id) IN (SELECT spot_id, id FROM outbox_attempts \
         WHERE spot_id = $1 AND id < $2 ORDER BY id LIMIT $3) RETURNING target_id"
    )
    .bind(spot_id)
    .bind(before)
    .bind(limit)
    .fetch_all(&mut **c)
    .await)?;
    let mut per_target: std::collections::HashMap<Uuid, i64> = std::collections::HashMap::new();
    for t in targets.iter().flatten() {
        *per_target.entry(*t).or_default() += 1;
    }
    for (target, n) in per_target {
        run!(&mut ex, |c| sqlx::query(
            "UPDATE outbox_target_stats SET attempt_count = attempt_count - $3 WHERE spot_id = $1 AND target_id = $2"
        )
        .bind(spot_id)
        .bind(target)
        .bind(n)
        .execute(&mut **c)
        .await
        .map(|_| ()))?;
    }
    Ok(rows + targets.len() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_events_rows_lie_in_the_range_around_its_id() {
        let event_id = Uuid::now_v7();
        let row_id = Uuid::now_v7();
        let (from, to) = event_rows_range(event_id);
        assert!(from <= event_id && event_id < to);
        assert!(from <= row_id && row_id < to, "a row made just after its event");
        // Rows of events far apart in time are outside the range (Uuid orders by its
        // bytes, as both stores compare UUIDs).
        let ms = i64::try_from(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis())
            .unwrap();
        assert!(uuid_v7_floor(ms - 2 * EVENT_ROWS_SLACK_MS) < from);
        assert!(uuid_v7_floor(ms + 2 * EVENT_ROWS_SLACK_MS) >= to);
    }
}

//! The dispatcher loop of one replica: claims due rows, runs one task per attempt
//! within the in-flight limits, and hands outcomes to the recorder.
//!
//! It sleeps until the first of: a commit in this process that wrote outbox rows
//! ([`outbox::WAKE`]), the earliest scheduled row coming due, the poll interval
//! (rows written by other replicas, leases of dead ones lapsing), an attempt ending
//! (a free slot), or shutdown.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::task::{Id, JoinSet};
use uuid::Uuid;

use super::record::{self, Finished};
use super::schedule::{target_of, SMTP_RELAY};
use super::{Attempted, Outcome, Runtime};
use crate::domain::ids::SpotId;
use crate::domain::now_ms;
use crate::domain::vocab::ChannelKind;
use crate::store::outbox::{self, OutboxRow};
use crate::store::{Backend, Db};

/// Rows claimed per statement at most.
pub const CLAIM_BATCH: usize = 100;
/// What an attempt may take beyond the attempt timeout before the dispatcher gives up
/// on it (the channel's own client enforces the timeout; this is the backstop).
pub const GRACE: Duration = Duration::from_secs(1);

/// A running dispatcher; [`DispatcherHandle::shutdown`] stops it cleanly (dropping the
/// handle starts the same shutdown without waiting for it).
pub struct DispatcherHandle {
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl DispatcherHandle {
    /// Stops claiming, waits for the attempts in flight (at most the attempt timeout
    /// plus [`GRACE`]), records their outcomes and releases what this replica still
    /// holds, so the rows are due at once for whoever runs next.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        if let Err(e) = self.task.await {
            tracing::error!(error = %e, "the outbox dispatcher ended abnormally");
        }
    }
}

/// Starts the dispatcher of this replica.
pub fn spawn(db: Db, rt: Arc<Runtime>) -> DispatcherHandle {
    let (stop, stopped) = watch::channel(false);
    outbox::dispatcher_started();
    let task = tokio::spawn(run(db, rt, stopped));
    DispatcherHandle { stop, task }
}

struct InFlight {
    tasks: JoinSet<()>,
    targets: HashMap<Id, Option<Uuid>>,
    per_target: HashMap<Uuid, usize>,
}

impl InFlight {
    fn reaped(&mut self, id: Id) {
        if let Some(Some(t)) = self.targets.remove(&id) {
            if let Some(n) = self.per_target.get_mut(&t) {
                *n -= 1;
                if *n == 0 {
                    self.per_target.remove(&t);
                }
            }
        }
    }

    fn reap_finished(&mut self) {
        while let Some(done) = self.tasks.try_join_next_with_id() {
            self.reaped(done.map_or_else(|e| e.id(), |(id, ())| id));
        }
    }
}

async fn run(db: Db, rt: Arc<Runtime>, mut stopped: watch::Receiver<bool>) {
    if let crate::store::Db::Sqlite(..) = db {
        // One process per SQLite file: whatever is claimed was claimed by a predecessor
        // that did not shut down cleanly; it is due again now.
        match release(&db, None).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(rows = n, "outbox: took back the claims of a stopped server"),
            Err(e) => tracing::warn!(error = %e, "outbox: cannot release old claims"),
        }
    }
    let kinds = rt.channels.kinds();
    // Without a channel there is nothing to deliver: no notifications, no reports.
    let listener = (!kinds.is_empty()).then(|| tokio::spawn(listen(db.clone())));
    let (results, rx) = mpsc::channel::<Finished>(record::BATCH * 4);
    let recorder = tokio::spawn(record::run(db.clone(), rt.clone(), rx));
    let cfg = &rt.config;
    let mut fl = InFlight { tasks: JoinSet::new(), targets: HashMap::new(), per_target: HashMap::new() };
    let mut claim_failures = 0u32;
    let mut last_report = tokio::time::Instant::now();
    while !*stopped.borrow() {
        if last_report.elapsed() >= REPORT_EVERY && !kinds.is_empty() {
            last_report = tokio::time::Instant::now();
            report(&db).await;
        }
        let woken = outbox::WAKE.notified();
        tokio::pin!(woken);
        woken.as_mut().enable();
        fl.reap_finished();
        rt.stats.in_flight.store(fl.tasks.len() as u64, Ordering::Relaxed);

        let free = cfg.max_in_flight.saturating_sub(fl.tasks.len()).min(CLAIM_BATCH);
        // A read first: an idle dispatcher takes no write lock (SQLite has one).
        let mut next = if free > 0 && !kinds.is_empty() { next_due(&db, &kinds).await } else { Ok(None) };
        if matches!(next, Ok(Some(at)) if at <= now_ms()) {
            match claim(&db, &rt, &kinds, &fl.per_target, free).await {
                Ok(rows) => {
                    let full = rows.len() == free;
                    for row in rows {
                        start(&mut fl, &db, &rt, &results, row);
                    }
                    rt.stats.in_flight.store(fl.tasks.len() as u64, Ordering::Relaxed);
                    if full {
                        continue;
                    }
                    next = next_due(&db, &kinds).await;
                }
                Err(e) => next = Err(e),
            }
        }
        let mut wait = cfg.poll_interval;
        match next {
            Ok(Some(at)) => {
                claim_failures = 0;
                let ms = at - now_ms();
                if ms > 0 {
                    wait = wait.min(Duration::from_millis(ms as u64));
                }
            }
            Ok(None) => claim_failures = 0,
            Err(e) => {
                claim_failures += 1;
                if claim_failures == 1 || claim_failures % 60 == 0 {
                    tracing::warn!(error = %e, "outbox: cannot read or claim due rows");
                }
            }
        }
        tokio::select! {
            _ = &mut woken => {}
            _ = tokio::time::sleep(wait) => {}
            done = fl.tasks.join_next_with_id(), if !fl.tasks.is_empty() => {
                if let Some(done) = done {
                    fl.reaped(done.map_or_else(|e| e.id(), |(id, ())| id));
                }
            }
            changed = stopped.changed() => {
                // The handle was dropped without a shutdown: stop all the same.
                if changed.is_err() {
                    break;
                }
            }
        }
    }
    if let Some(l) = listener {
        l.abort();
    }
    // Shutdown: no more claims; let the attempts in flight end, then record them.
    let grace = cfg.attempt_timeout + GRACE;
    let drained = tokio::time::timeout(grace, async { while fl.tasks.join_next().await.is_some() {} }).await;
    if drained.is_err() {
        tracing::warn!(in_flight = fl.tasks.len(), "outbox: attempts still running at shutdown; released unrecorded");
        fl.tasks.abort_all();
        while fl.tasks.join_next().await.is_some() {}
    }
    drop(results);
    if let Err(e) = recorder.await {
        tracing::error!(error = %e, "the outbox recorder ended abnormally");
    }
    match release(&db, Some(rt.replica_id)).await {
        Ok(n) if n > 0 => tracing::info!(rows = n, "outbox: released claims at shutdown"),
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "outbox: cannot release claims at shutdown; they lapse with their lease"),
    }
    rt.stats.in_flight.store(0, Ordering::Relaxed);
    outbox::dispatcher_stopped();
}

/// How often a dispatcher logs the backlog while something is due.
pub const REPORT_EVERY: Duration = Duration::from_secs(60);

async fn report(db: &Db) {
    if let Ok(b) = super::backlog(db).await {
        if b.due > 0 {
            let age_s = b.oldest_due_age_ms.unwrap_or(0) as f64 / 1000.0;
            tracing::info!(due = b.due, pending = b.pending, "outbox: {} due, oldest {age_s:.1} s", b.due);
        }
    }
}

/// On PostgreSQL: wakes the dispatcher when a process without one (the CLI) wrote
/// rows; drops this process's cached delivery targets of a spot when another replica
/// changed them (`openspot_targets`); after a lost connection (notifications may have
/// been missed) does both for everything. Runs until aborted.
async fn listen(db: Db) {
    use crate::store::webhooks::TARGETS_CHANNEL;
    let mut listener = loop {
        match outbox::listen(&db, &[outbox::OUTBOX_CHANNEL, TARGETS_CHANNEL]).await {
            Ok(Some(l)) => break l,
            Ok(None) => return,
            Err(e) => {
                tracing::warn!(error = %e, "outbox: cannot listen for notifications; polling only");
                tokio::time::sleep(Duration::from_secs(5)).await;
            }
        }
    };
    loop {
        match listener.recv().await {
            Ok(Some((channel, payload))) if channel == TARGETS_CHANNEL => match payload.parse() {
                Ok(spot_id) => crate::domain::events::invalidate(spot_id),
                Err(_) => crate::domain::events::invalidate_all(),
            },
            Ok(Some(_)) => outbox::wake(),
            Ok(None) => {
                crate::domain::events::invalidate_all();
                outbox::wake();
            }
            Err(e) => {
                tracing::warn!(error = %e, "outbox: notification connection failed");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}

async fn claim(
    db: &Db,
    rt: &Runtime,
    kinds: &[crate::domain::vocab::ChannelKind],
    in_flight: &HashMap<Uuid, usize>,
    n: usize,
) -> crate::error::Result<Vec<OutboxRow>> {
    let cap = rt.config.max_in_flight_per_target;
    let mut saturated: Vec<Uuid> = in_flight.iter().filter(|(_, n)| **n >= cap).map(|(t, _)| *t).collect();
    // A busy SMTP relay is left out by channel (email rows have no target id).
    let relay_busy = saturated.contains(&SMTP_RELAY);
    saturated.retain(|t| *t != SMTP_RELAY);
    let kinds: Vec<ChannelKind> = kinds.iter().copied().filter(|k| !(relay_busy && *k == ChannelKind::Email)).collect();
    let now = now_ms();
    let lease_until = now + i64::try_from(rt.config.lease.as_millis()).unwrap_or(i64::MAX / 4);
    let token = crate::domain::new_id();
    // PostgreSQL: the spots with due rows first (a plain read), then each spot's rows
    // claimed by a statement that names it, so that on Citus every `FOR UPDATE` stays in
    // one shard. SQLite (one process, one writer): one claim across spots.
    let spots: Vec<Option<SpotId>> = match db.backend() {
        Backend::Sqlite => vec![None],
        Backend::Postgres => {
            let mut c = db.conn().await?;
            outbox::due_spots(c.ex(), now, n as i64, &kinds, &saturated).await?.into_iter().map(Some).collect()
        }
    };
    let mut tx = db.begin().await?;
    let mut rows = Vec::new();
    for spot in spots {
        let left = n.saturating_sub(rows.len());
        if left == 0 {
            break;
        }
        rows.extend(
            outbox::claim(tx.ex(), spot, rt.replica_id, token, now, lease_until, left as i64, &kinds, &saturated)
                .await?,
        );
    }
    // A batch may hold more rows of one target than it has room for: those go back,
    // due now, in the same transaction (claims skip the target until a slot frees).
    let mut room: HashMap<Uuid, usize> = HashMap::new();
    let (mut keep, mut give_back) = (Vec::with_capacity(rows.len()), Vec::new());
    for row in rows {
        match target_of(&row) {
            Some(t) => {
                let left = room.entry(t).or_insert_with(|| cap.saturating_sub(in_flight.get(&t).copied().unwrap_or(0)));
                if *left == 0 {
                    give_back.push((row.spot_id, row.id));
                } else {
                    *left -= 1;
                    keep.push(row);
                }
            }
            None => keep.push(row),
        }
    }
    if !give_back.is_empty() {
        outbox::unclaim(tx.ex(), token, &give_back, now).await?;
    }
    tx.commit().await?;
    Ok(keep)
}

async fn next_due(db: &Db, kinds: &[crate::domain::vocab::ChannelKind]) -> crate::error::Result<Option<i64>> {
    let mut conn = db.conn().await?;
    Ok(outbox::next_due(conn.ex(), kinds).await?)
}

async fn release(db: &Db, replica: Option<Uuid>) -> crate::error::Result<u64> {
    let mut tx = db.begin().await?;
    let n = outbox::release_claims(tx.ex(), replica, now_ms()).await?;
    tx.commit().await?;
    Ok(n)
}

/// Runs one attempt in its own task; its outcome goes to the recorder.
fn start(fl: &mut InFlight, db: &Db, rt: &Arc<Runtime>, results: &mpsc::Sender<Finished>, row: OutboxRow) {
    let target = target_of(&row);
    if let Some(t) = target {
        *fl.per_target.entry(t).or_default() += 1;
    }
    let (db, rt, results) = (db.clone(), rt.clone(), results.clone());
    let handle = fl.tasks.spawn(async move {
        let started = tokio::time::Instant::now();
        let limit = rt.config.attempt_timeout + GRACE;
        let outcome = match rt.channels.get(row.channel) {
            Some(channel) => match tokio::time::timeout(limit, channel.attempt(&db, &row)).await {
                Ok(o) => o,
                Err(_) => Outcome::Retry(Attempted {
                    status: None,
                    duration_ms: started.elapsed().as_millis() as i64,
                    response: None,
                    error: Some(format!("no answer within {} ms", limit.as_millis())),
                }),
            },
            // Not claimed without a channel; kept for completeness of the match.
            None => Outcome::Skip(format!("no {} channel in this process", row.channel)),
        };
        let _ = results.send(Finished { row, outcome, ended_at: now_ms() }).await;
    });
    fl.targets.insert(handle.id(), target);
}

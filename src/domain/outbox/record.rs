//! The recorder: the one task of a dispatcher that writes outcomes, batched (up to
//! [`BATCH`] results or [`LINGER`] per transaction) so that a burst of deliveries costs
//! a few commits rather than one each.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use uuid::Uuid;

use super::schedule::{decide, random_jitter, Decision};
use super::{Outcome, Runtime};
use crate::domain::ids::SpotId;
use crate::domain::now_ms;
use crate::domain::vocab::OutboxState;
use crate::error::Result;
use crate::store::outbox::{self, AttemptRow, OutboxRow};
use crate::store::Db;

/// Results written per transaction at most.
pub const BATCH: usize = 100;
/// How long the recorder waits for more results before writing what it has.
pub const LINGER: Duration = Duration::from_millis(10);
/// Tries of one batch's transaction (a database hiccup must not lose outcomes; if all
/// fail, the rows come due again when their lease ends: at least once).
const WRITE_TRIES: u32 = 3;

/// One finished attempt, sent by a worker.
pub struct Finished {
    pub row: OutboxRow,
    pub outcome: Outcome,
    /// When the attempt ended (ms): the time of its log entry.
    pub ended_at: i64,
}

/// Writes what arrives on `rx` until every sender is gone and the queue is drained.
pub async fn run(db: Db, rt: Arc<Runtime>, mut rx: mpsc::Receiver<Finished>) {
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        let deadline = tokio::time::Instant::now() + LINGER;
        while batch.len() < BATCH {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(f)) => batch.push(f),
                Ok(None) | Err(_) => break,
            }
        }
        write(&db, &rt, batch).await;
    }
}

async fn write(db: &Db, rt: &Runtime, batch: Vec<Finished>) {
    let now = now_ms();
    let decided: Vec<(Finished, Decision)> = batch
        .into_iter()
        .map(|f| {
            let d = decide(&f.row, f.outcome.clone(), &rt.config.retry_schedule, now, random_jitter());
            (f, d)
        })
        .collect();
    let mut tries = 0;
    loop {
        tries += 1;
        match write_once(db, rt, &decided, now).await {
            Ok(()) => break,
            Err(e) if tries < WRITE_TRIES => {
                tracing::warn!(error = %e, "cannot record delivery outcomes; trying again");
                tokio::time::sleep(Duration::from_millis(100 * u64::from(tries))).await;
            }
            Err(e) => {
                tracing::error!(error = %e, rows = decided.len(),
                    "cannot record delivery outcomes; the rows will be delivered again after their lease");
                return;
            }
        }
    }
    // A retry due sooner than the dispatcher's next look (short test schedules, or a
    // retry due before the poll) must not wait for it.
    if decided.iter().any(|(_, d)| d.completion.as_ref().is_some_and(|c| c.state == OutboxState::Pending)) {
        outbox::wake();
    }
    for (_, d) in &decided {
        use crate::metrics::DeliveryOutcome as O;
        let (counter, outcome) = match d.completion.as_ref().map(|c| c.state) {
            Some(OutboxState::Delivered) => (&rt.stats.delivered, O::Delivered),
            Some(OutboxState::Pending) => (&rt.stats.retried, O::Retried),
            Some(OutboxState::Failed | OutboxState::Paused) => (&rt.stats.failed, O::Failed),
            Some(OutboxState::Skipped) => (&rt.stats.skipped, O::Skipped),
            None => continue,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        crate::metrics::global().count_delivery(outcome);
    }
}

async fn write_once(db: &Db, rt: &Runtime, decided: &[(Finished, Decision)], now: i64) -> Result<()> {
    let mut tx = db.begin().await?;
    let mut attempts = Vec::new();
    let mut counts: HashMap<(SpotId, Uuid), i64> = HashMap::new();
    for (f, d) in decided {
        let row = &f.row;
        let token = row.claim_token.unwrap_or_else(Uuid::nil);
        let held = match &d.completion {
            Some(c) => outbox::complete(tx.ex(), row.spot_id, row.id, token, c, now).await?,
            None => {
                outbox::delete_row(tx.ex(), row.spot_id, row.id).await?;
                false
            }
        };
        if !held && d.completion.is_some() {
            tracing::info!(outbox_id = %row.id, "a delivered row's lease had lapsed; its new holder owns it");
        }
        if let Some(a) = &d.attempted {
            attempts.push(AttemptRow {
                spot_id: row.spot_id,
                id: crate::domain::new_id(),
                outbox_id: row.id,
                target_id: row.target_id,
                event_id: row.event_id,
                event_type: row.event_type.clone(),
                channel: row.channel,
                attempt: row.attempts + 1,
                status_code: a.status.map(i64::from),
                duration_ms: a.duration_ms,
                error: a.error.clone(),
                response_body: a.response.clone(),
                replica_id: rt.replica_id,
                created_at: f.ended_at,
            });
            if let Some(t) = row.target_id {
                *counts.entry((row.spot_id, t)).or_default() += 1;
            }
        }
        if let (Some(reason), Some(target)) = (&d.disable, row.target_id) {
            if let Some(channel) = rt.channels.get(row.channel) {
                channel.disable(&mut tx, row.spot_id, target, reason).await?;
            }
            outbox::pause_target(tx.ex(), row.spot_id, target, now).await?;
            tracing::warn!(spot_id = %row.spot_id, target = %target, reason = %reason, "delivery target disabled");
        }
    }
    outbox::insert_attempts(tx.ex(), &attempts).await?;
    let counts: Vec<(SpotId, Uuid, i64)> = counts.into_iter().map(|((s, t), n)| (s, t, n)).collect();
    outbox::add_attempt_counts(tx.ex(), &counts).await?;
    tx.commit().await?;
    Ok(())
}

//! The outbox core (issue 14) on both stores: claim semantics at the store level, and
//! the dispatcher delivering to a real loopback HTTP receiver through a channel
//! written here (the webhook, Kaizala and email channels have their own suites).
//! Each test uses a database of its own with no server on it, so no other dispatcher
//! claims its rows.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use openspot::config::OutboxConfig;
use openspot::domain::ids::SpotId;
use openspot::domain::outbox::{self, Attempted, BoxFuture, Channel, Channels, Outcome, Runtime};
use openspot::domain::vocab::{ChannelKind, OutboxState};
use openspot::store::outbox::{self as store, Completion, NewOutboxRow, OutboxFilter, OutboxRow};
use openspot::store::{Backend, Db, Tx};
use uuid::Uuid;

use crate::both;

/// A fresh migrated database with one spot; the guards keep it alive.
struct Fresh {
    db: Db,
    url: String,
    spot: SpotId,
    _guards: (Option<tempfile::TempDir>, Option<crate::common::PgGuard>),
}

async fn fresh(backend: Backend) -> Option<Fresh> {
    let (url, dir, pg) = crate::common::test_database(backend).await?;
    let db = Db::connect_and_migrate(&url).await.expect("migrate");
    let (spot, _) = openspot::domain::spots::create_spot(&db, "outbox spot").await.expect("spot");
    Some(Fresh { db, url, spot: spot.id, _guards: (dir, pg) })
}

macro_rules! both_db {
    ($name:ident, |$f:ident| $body:block) => {
        mod $name {
            use super::*;
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                let Some($f) = fresh(Backend::Sqlite).await else { return };
                $body
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                let Some($f) = fresh(Backend::Postgres).await else { return };
                $body
            }
        }
    };
}

fn new_row(channel: ChannelKind, target: Option<Uuid>, payload: &str) -> NewOutboxRow {
    NewOutboxRow {
        id: Uuid::now_v7(),
        event_id: Uuid::now_v7(),
        channel,
        target_id: target,
        event_type: "member.created".into(),
        payload: payload.into(),
        occurred_at: openspot::domain::now_ms(),
        state: OutboxState::Pending,
        last_error: None,
    }
}

async fn insert(db: &Db, spot: SpotId, rows: &[NewOutboxRow], now: i64) {
    let mut tx = db.begin().await.unwrap();
    store::insert_many(tx.ex(), spot, rows, now).await.unwrap();
    tx.note_outbox_write();
    tx.commit().await.unwrap();
}

async fn claim(db: &Db, replica: Uuid, token: Uuid, now: i64, lease_until: i64, limit: i64) -> Vec<OutboxRow> {
    let mut tx = db.begin().await.unwrap();
    let rows = store::claim(tx.ex(), None, replica, token, now, lease_until, limit, &[ChannelKind::Webhook], &[])
        .await
        .unwrap();
    tx.commit().await.unwrap();
    rows
}

async fn list(db: &Db, f: &OutboxFilter) -> Vec<OutboxRow> {
    let mut c = db.conn().await.unwrap();
    store::list(c.ex(), f, 1_000).await.unwrap()
}

both_db!(concurrent_claimers_never_take_the_same_row, |f| {
    let target = Uuid::now_v7();
    let rows: Vec<NewOutboxRow> =
        (0..250).map(|i| new_row(ChannelKind::Webhook, Some(target), &i.to_string())).collect();
    insert(&f.db, f.spot, &rows, 1_000).await;
    // Four claimers, each taking batches of 7 until nothing is left.
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let db = f.db.clone();
        tasks.push(tokio::spawn(async move {
            let replica = Uuid::now_v7();
            let mut mine = Vec::new();
            loop {
                let got = claim(&db, replica, Uuid::now_v7(), 2_000, 60_000, 7).await;
                if got.is_empty() {
                    break mine;
                }
                assert!(got.iter().all(|r| r.claimed_by == Some(replica) && r.next_attempt_at == 60_000));
                mine.extend(got.into_iter().map(|r| r.id));
            }
        }));
    }
    let mut seen = HashSet::new();
    let mut total = 0;
    for t in tasks {
        let ids = t.await.unwrap();
        total += ids.len();
        seen.extend(ids);
    }
    assert_eq!(total, 250, "every row claimed once");
    assert_eq!(seen.len(), 250, "no row claimed twice");
});

both_db!(a_lapsed_lease_is_taken_over_and_a_stale_token_cannot_complete, |f| {
    let target = Uuid::now_v7();
    let row = new_row(ChannelKind::Webhook, Some(target), "{}");
    insert(&f.db, f.spot, std::slice::from_ref(&row), 1_000).await;
    let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
    let (old_token, new_token) = (Uuid::now_v7(), Uuid::now_v7());
    // Not due before its time.
    assert!(claim(&f.db, a, old_token, 999, 4_000, 10).await.is_empty());
    let got = claim(&f.db, a, old_token, 1_000, 4_000, 10).await;
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].claim_token, Some(old_token));
    // Held while the lease runs, then taken over.
    assert!(claim(&f.db, b, new_token, 3_999, 7_000, 10).await.is_empty());
    let mut c = f.db.conn().await.unwrap();
    assert_eq!(store::next_due(c.ex(), &[ChannelKind::Webhook]).await.unwrap(), Some(4_000));
    assert_eq!(store::next_due(c.ex(), &[ChannelKind::Email]).await.unwrap(), None);
    drop(c);
    let taken = claim(&f.db, b, new_token, 4_000, 7_000, 10).await;
    assert_eq!(taken.len(), 1);
    assert_eq!((taken[0].id, taken[0].claimed_by), (row.id, Some(b)));

    let done = Completion {
        state: OutboxState::Delivered,
        failures: 0,
        next_attempt_at: 5_000,
        last_status: Some(200),
        last_error: None,
    };
    let mut tx = f.db.begin().await.unwrap();
    assert!(!store::complete(tx.ex(), f.spot, row.id, old_token, &done, 5_000).await.unwrap(), "stale token");
    assert!(store::complete(tx.ex(), f.spot, row.id, new_token, &done, 5_000).await.unwrap());
    assert!(!store::complete(tx.ex(), f.spot, row.id, new_token, &done, 5_000).await.unwrap(), "only once");
    tx.commit().await.unwrap();
    let rows = list(&f.db, &OutboxFilter { spot_id: Some(f.spot), ..OutboxFilter::default() }).await;
    assert_eq!(rows.len(), 1);
    let r = &rows[0];
    assert_eq!((r.state, r.attempts, r.last_status, r.claim_token), (OutboxState::Delivered, 1, Some(200), None));
    assert!(claim(&f.db, a, Uuid::now_v7(), 99_000, 100_000, 10).await.is_empty(), "a delivered row is not claimed");
});

both_db!(claims_skip_other_kinds_and_saturated_targets_and_release_on_demand, |f| {
    let (busy, idle) = (Uuid::now_v7(), Uuid::now_v7());
    let rows = vec![
        new_row(ChannelKind::Webhook, Some(busy), "busy"),
        new_row(ChannelKind::Webhook, Some(idle), "idle"),
        new_row(ChannelKind::Email, None, "email"),
    ];
    insert(&f.db, f.spot, &rows, 1_000).await;
    let replica = Uuid::now_v7();
    let mut tx = f.db.begin().await.unwrap();
    let got = store::claim(tx.ex(), None, replica, Uuid::now_v7(), 1_000, 9_000, 10, &[ChannelKind::Webhook], &[busy])
        .await
        .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(got.iter().map(|r| r.payload.as_str()).collect::<Vec<_>>(), vec!["idle"]);

    let mut c = f.db.conn().await.unwrap();
    let b = store::backlog(c.ex(), 1_000).await.unwrap();
    assert_eq!((b.pending, b.due, b.oldest_due), (3, 2, Some(1_000)));
    drop(c);

    // Another replica's release leaves this one's claim; a release by replica frees it.
    let mut tx = f.db.begin().await.unwrap();
    assert_eq!(store::release_claims(tx.ex(), Some(Uuid::now_v7()), 2_000).await.unwrap(), 0);
    assert_eq!(store::release_claims(tx.ex(), Some(replica), 2_000).await.unwrap(), 1);
    tx.commit().await.unwrap();
    let idle_row = list(&f.db, &OutboxFilter { spot_id: Some(f.spot), ..OutboxFilter::default() })
        .await
        .into_iter()
        .find(|r| r.payload == "idle")
        .unwrap();
    assert_eq!((idle_row.claim_token, idle_row.next_attempt_at), (None, 2_000));
    // A starting SQLite server releases every claim.
    claim(&f.db, replica, Uuid::now_v7(), 2_000, 9_000, 10).await;
    let mut tx = f.db.begin().await.unwrap();
    assert_eq!(store::release_claims(tx.ex(), None, 3_000).await.unwrap(), 2);
    tx.commit().await.unwrap();
});

/// A loopback HTTP receiver answering a scripted sequence of statuses (then the last
/// one forever) and recording each request's `webhook-id` header and body.
struct Receiver {
    url: String,
    seen: Arc<Mutex<Vec<(String, String)>>>,
}

impl Receiver {
    async fn start(statuses: Vec<u16>) -> Receiver {
        use axum::extract::State;
        use axum::http::{HeaderMap, StatusCode};
        type Shared = (Arc<Mutex<Vec<(String, String)>>>, Arc<Vec<u16>>);
        let seen = Arc::new(Mutex::new(Vec::new()));
        let state: Shared = (seen.clone(), Arc::new(statuses));
        let app = axum::Router::new()
            .route(
                "/hook",
                axum::routing::post(
                    |State((seen, statuses)): State<Shared>, headers: HeaderMap, body: String| async move {
                        let id = headers.get("webhook-id").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
                        let n = {
                            let mut s = seen.lock().unwrap();
                            s.push((id, body));
                            s.len()
                        };
                        let code = statuses.get(n - 1).or(statuses.last()).copied().unwrap_or(200);
                        (StatusCode::from_u16(code).unwrap(), format!("answer {n}"))
                    },
                ),
            )
            .with_state(state);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Receiver { url: format!("http://{addr}/hook"), seen }
    }

    fn seen(&self) -> Vec<(String, String)> {
        self.seen.lock().unwrap().clone()
    }
}

/// The targets a channel was told to disable, with the reasons.
type Disabled = Arc<Mutex<Vec<(Uuid, String)>>>;

/// A channel posting the row's payload to one URL with the event id as `webhook-id`.
struct TestChannel {
    url: String,
    client: reqwest::Client,
    disabled: Disabled,
}

impl Channel for TestChannel {
    fn attempt<'a>(&'a self, _db: &'a Db, row: &'a OutboxRow) -> BoxFuture<'a, Outcome> {
        Box::pin(async move {
            let started = std::time::Instant::now();
            let sent = self
                .client
                .post(&self.url)
                .header("webhook-id", row.event_id.to_string())
                .body(row.payload.clone())
                .send()
                .await;
            let duration_ms = started.elapsed().as_millis() as i64;
            match sent {
                Ok(r) => {
                    let status = r.status().as_u16();
                    let body = r.text().await.ok();
                    let a = Attempted { status: Some(status), duration_ms, response: body, error: None };
                    match status {
                        200..=299 => Outcome::Delivered(a),
                        410 => Outcome::Gone(a),
                        _ => Outcome::Retry(a),
                    }
                }
                Err(e) => Outcome::Retry(Attempted {
                    status: None,
                    duration_ms,
                    response: None,
                    error: Some(e.without_url().to_string()),
                }),
            }
        })
    }

    fn disable<'a>(
        &'a self,
        _tx: &'a mut Tx,
        _spot_id: SpotId,
        target: Uuid,
        reason: &'a str,
    ) -> BoxFuture<'a, openspot::error::Result<()>> {
        Box::pin(async move {
            self.disabled.lock().unwrap().push((target, reason.to_string()));
            Ok(())
        })
    }
}

fn test_config() -> OutboxConfig {
    OutboxConfig {
        retry_schedule: vec![Duration::from_millis(50), Duration::from_millis(100)],
        attempt_timeout: Duration::from_secs(1),
        lease: Duration::from_secs(3),
        poll_interval: Duration::from_millis(500),
        ..OutboxConfig::default()
    }
}

fn runtime(url: &str, config: OutboxConfig) -> (Arc<Runtime>, Disabled) {
    let disabled = Arc::new(Mutex::new(Vec::new()));
    let channel = TestChannel { url: url.to_string(), client: openspot_test_client(), disabled: disabled.clone() };
    let mut channels = Channels::default();
    channels.register(ChannelKind::Webhook, Arc::new(channel));
    (Arc::new(Runtime::new(config, channels)), disabled)
}

fn openspot_test_client() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().timeout(Duration::from_secs(1)).build().unwrap()
}

/// Polls `check` every 20 ms for up to `within`.
async fn eventually<T>(within: Duration, mut check: impl AsyncFnMut() -> Option<T>) -> T {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(tokio::time::Instant::now() < deadline, "condition not met within {within:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

both_db!(a_receiver_failing_twice_gets_the_same_event_three_times, |f| {
    let receiver = Receiver::start(vec![500, 500, 200]).await;
    let (rt, disabled) = runtime(&receiver.url, test_config());
    let dispatcher = outbox::spawn(f.db.clone(), rt.clone());
    let target = Uuid::now_v7();
    let row = new_row(ChannelKind::Webhook, Some(target), r#"{"type":"member.created"}"#);
    // An email row: no email channel here, so it stays Pending, untouched.
    let email = new_row(ChannelKind::Email, None, "{}");
    let written = std::time::Instant::now();
    insert(&f.db, f.spot, &[row.clone(), email.clone()], openspot::domain::now_ms()).await;

    let delivered = eventually(Duration::from_secs(10), async || {
        let rows = list(&f.db, &OutboxFilter { id: Some(row.id), ..OutboxFilter::default() }).await;
        rows.into_iter().find(|r| r.state == OutboxState::Delivered)
    })
    .await;
    assert!(written.elapsed() < Duration::from_secs(3), "woken by the commit, retried on the 50/100 ms schedule");
    assert_eq!((delivered.attempts, delivered.failures, delivered.last_status), (3, 0, Some(200)));
    let seen = receiver.seen();
    assert_eq!(seen.len(), 3);
    assert!(seen.iter().all(|(id, body)| *id == row.event_id.to_string() && body == &row.payload), "{seen:?}");

    let mut c = f.db.conn().await.unwrap();
    let (log, total) = store::list_attempts(c.ex(), f.spot, target, None, None, 0, 10).await.unwrap();
    assert_eq!(total, 3);
    let shape: Vec<(i64, Option<i64>, Option<&str>)> =
        log.iter().map(|a| (a.attempt, a.status_code, a.response_body.as_deref())).collect();
    assert_eq!(
        shape,
        vec![(1, Some(500), Some("answer 1")), (2, Some(500), Some("answer 2")), (3, Some(200), Some("answer 3"))]
    );
    assert!(log.iter().all(|a| a.event_id == row.event_id && a.replica_id == rt.replica_id && a.outbox_id == row.id));
    let (only, n) = store::list_attempts(c.ex(), f.spot, target, Some(row.event_id), None, 1, 10).await.unwrap();
    assert_eq!((only.len(), n), (2, 3));
    drop(c);

    let email_row = list(&f.db, &OutboxFilter { id: Some(email.id), ..OutboxFilter::default() }).await;
    assert_eq!((email_row[0].state, email_row[0].attempts), (OutboxState::Pending, 0));
    assert!(disabled.lock().unwrap().is_empty());
    let stats = rt.stats.snapshot();
    assert_eq!((stats.delivered, stats.retried), (1, 2));
    dispatcher.shutdown().await;
});

both_db!(an_exhausted_schedule_fails_the_row_and_disables_the_target, |f| {
    let receiver = Receiver::start(vec![503]).await;
    let (rt, disabled) = runtime(&receiver.url, test_config());
    let dispatcher = outbox::spawn(f.db.clone(), rt.clone());
    let target = Uuid::now_v7();
    let first = new_row(ChannelKind::Webhook, Some(target), "1");
    insert(&f.db, f.spot, std::slice::from_ref(&first), openspot::domain::now_ms()).await;
    let failed = eventually(Duration::from_secs(10), async || {
        let rows = list(&f.db, &OutboxFilter { id: Some(first.id), ..OutboxFilter::default() }).await;
        rows.into_iter().find(|r| r.state == OutboxState::Failed)
    })
    .await;
    assert_eq!((failed.attempts, failed.last_status), (3, Some(503)));
    assert_eq!(
        disabled.lock().unwrap().clone(),
        vec![(target, "3 attempts failed in a row; last: HTTP 503".to_string())]
    );
    dispatcher.shutdown().await;

    // Rows written for the target meanwhile are held, and resume on demand.
    let later = NewOutboxRow { state: OutboxState::Paused, ..new_row(ChannelKind::Webhook, Some(target), "2") };
    insert(&f.db, f.spot, std::slice::from_ref(&later), openspot::domain::now_ms()).await;
    let mut tx = f.db.begin().await.unwrap();
    assert_eq!(store::resume_target(tx.ex(), f.spot, target, openspot::domain::now_ms()).await.unwrap(), 1);
    assert_eq!(store::requeue_failed_since(tx.ex(), f.spot, target, 0, openspot::domain::now_ms()).await.unwrap(), 1);
    tx.commit().await.unwrap();
    let pending = list(&f.db, &OutboxFilter { states: vec![OutboxState::Pending], ..OutboxFilter::default() }).await;
    assert_eq!(pending.len(), 2);
    assert!(pending.iter().all(|r| r.failures == 0));
});

both_db!(shutdown_releases_what_is_in_flight, |f| {
    // A receiver that never answers in time: the attempt is cut by the timeout or
    // released at shutdown; either way no claim is left behind.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((sock, _)) = listener.accept().await {
            held.push(sock);
        }
    });
    let (rt, _) = runtime(&url, test_config());
    let dispatcher = outbox::spawn(f.db.clone(), rt.clone());
    let row = new_row(ChannelKind::Webhook, Some(Uuid::now_v7()), "{}");
    insert(&f.db, f.spot, std::slice::from_ref(&row), openspot::domain::now_ms()).await;
    eventually(Duration::from_secs(5), async || {
        let rows = list(&f.db, &OutboxFilter { id: Some(row.id), ..OutboxFilter::default() }).await;
        rows.into_iter().find(|r| r.claim_token.is_some())
    })
    .await;
    let stopping = std::time::Instant::now();
    dispatcher.shutdown().await;
    assert!(stopping.elapsed() < Duration::from_secs(4), "bounded by the attempt timeout plus grace");
    let rows = list(&f.db, &OutboxFilter { id: Some(row.id), ..OutboxFilter::default() }).await;
    assert_eq!((rows[0].state, rows[0].claim_token, rows[0].claimed_by), (OutboxState::Pending, None, None));
    assert!(rows[0].next_attempt_at <= openspot::domain::now_ms() + 1_000);
});

both_db!(a_notification_reaches_listeners_at_commit, |f| {
    let Some(mut listener) = store::listen(&f.db, &[store::OUTBOX_CHANNEL]).await.unwrap() else {
        // SQLite: one process writes and delivers; nothing to listen to.
        assert!(matches!(f.db, Db::Sqlite(..)));
        return;
    };
    let mut tx = f.db.begin().await.unwrap();
    store::notify_outbox(tx.ex()).await.unwrap();
    // Not before the commit.
    assert!(tokio::time::timeout(Duration::from_millis(200), listener.recv()).await.is_err());
    tx.commit().await.unwrap();
    let got = tokio::time::timeout(Duration::from_secs(5), listener.recv()).await.unwrap().unwrap();
    assert_eq!(got, Some((store::OUTBOX_CHANNEL.to_string(), String::new())));
});

both!(readyz_shows_the_outbox_backlog_and_counters, |app| {
    let r = app.get("/readyz").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["status"], "ready");
    let o = &r.body["outbox"];
    for key in ["pending", "due", "inFlight", "delivered", "retried", "failed", "skipped"] {
        assert!(o[key].is_i64(), "{key} in {}", r.text);
    }
    assert!(o.get("oldestDueAgeMs").is_some(), "{}", r.text);
});

both_db!(purge_deletes_what_is_past_the_retention_and_keeps_counts_right, |f| {
    let day_ms = 86_400_000i64;
    let old_ms = openspot::domain::now_ms() - 2 * day_ms;
    let old_id = |n: u32| {
        let ms = u64::try_from(old_ms).unwrap();
        Uuid::new_v7(uuid::Timestamp::from_unix(uuid::NoContext, ms / 1_000, (ms % 1_000) as u32 * 1_000_000 + n))
    };
    let target = Uuid::now_v7();
    let rows = vec![
        NewOutboxRow {
            id: old_id(1),
            state: OutboxState::Delivered,
            ..new_row(ChannelKind::Webhook, Some(target), "old")
        },
        NewOutboxRow { id: old_id(2), ..new_row(ChannelKind::Webhook, Some(target), "old but pending") },
        NewOutboxRow { state: OutboxState::Delivered, ..new_row(ChannelKind::Webhook, Some(target), "new") },
    ];
    insert(&f.db, f.spot, &rows, old_ms).await;
    let attempt = |id: Uuid| store::AttemptRow {
        spot_id: f.spot,
        id,
        outbox_id: rows[0].id,
        target_id: Some(target),
        event_id: rows[0].event_id,
        event_type: "member.created".into(),
        channel: ChannelKind::Webhook,
        attempt: 1,
        status_code: Some(200),
        duration_ms: 1,
        error: None,
        response_body: None,
        replica_id: Uuid::now_v7(),
        created_at: old_ms,
    };
    let mut tx = f.db.begin().await.unwrap();
    store::insert_attempts(tx.ex(), &[attempt(old_id(3)), attempt(old_id(4)), attempt(Uuid::now_v7())]).await.unwrap();
    store::add_attempt_counts(tx.ex(), &[(f.spot, target, 3)]).await.unwrap();
    tx.commit().await.unwrap();

    assert_eq!(outbox::purge(&f.db, Duration::from_secs(86_400)).await.unwrap(), 3, "one row, two attempts");
    let left: Vec<String> = list(&f.db, &OutboxFilter::default()).await.into_iter().map(|r| r.payload).collect();
    assert_eq!(left, vec!["new".to_string(), "old but pending".to_string()]);
    let mut c = f.db.conn().await.unwrap();
    let (items, total) = store::list_attempts(c.ex(), f.spot, target, None, None, 0, 10).await.unwrap();
    assert_eq!((items.len(), total), (1, 1));
    drop(c);
    assert_eq!(outbox::purge(&f.db, Duration::from_secs(86_400)).await.unwrap(), 0);
});

/// Two dispatchers (two replicas' worth: own runtime and replica id) on one PostgreSQL
/// database and a burst of 1,000 rows: each delivered exactly once, by both replicas.
/// (On SQLite one process serves a file, so there is no second replica to test.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_deliver_a_burst_exactly_once_postgres() {
    let Some(f) = fresh(Backend::Postgres).await else { return };
    let receiver = Receiver::start(vec![200]).await;
    let (a, _) = runtime(&receiver.url, test_config());
    let (b, _) = runtime(&receiver.url, test_config());
    let db_b = Db::connect(&f.url).await.unwrap();
    let (da, db) = (outbox::spawn(f.db.clone(), a.clone()), outbox::spawn(db_b.clone(), b.clone()));
    let targets: Vec<Uuid> = (0..10).map(|_| Uuid::now_v7()).collect();
    let mut events = HashSet::new();
    for batch in 0..10 {
        let rows: Vec<NewOutboxRow> = (0..100)
            .map(|i| new_row(ChannelKind::Webhook, Some(targets[(batch + i) % 10]), &format!("{batch}/{i}")))
            .collect();
        events.extend(rows.iter().map(|r| r.event_id.to_string()));
        insert(&f.db, f.spot, &rows, openspot::domain::now_ms()).await;
    }
    eventually(Duration::from_secs(30), async || (receiver.seen().len() >= 1_000).then_some(())).await;
    // Nothing more arrives: no event went out twice.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let seen = receiver.seen();
    assert_eq!(seen.len(), 1_000);
    let ids: HashSet<String> = seen.into_iter().map(|(id, _)| id).collect();
    assert_eq!(ids, events);
    da.shutdown().await;
    db.shutdown().await;
    let mut replicas = HashSet::new();
    let mut c = f.db.conn().await.unwrap();
    for t in &targets {
        let (log, total) = store::list_attempts(c.ex(), f.spot, *t, None, None, 0, 1_000).await.unwrap();
        assert_eq!(total, 100);
        replicas.extend(log.into_iter().map(|a| a.replica_id));
    }
    assert_eq!(replicas, HashSet::from([a.replica_id, b.replica_id]), "both replicas delivered");
    let (sa, sb) = (a.stats.snapshot(), b.stats.snapshot());
    assert_eq!(sa.delivered + sb.delivered, 1_000);
    db_b.close().await;
}

both_db!(a_dead_replicas_claims_are_delivered_by_the_next, |f| {
    let receiver = Receiver::start(vec![200]).await;
    let row = new_row(ChannelKind::Webhook, Some(Uuid::now_v7()), "{}");
    insert(&f.db, f.spot, std::slice::from_ref(&row), openspot::domain::now_ms()).await;
    // A replica claims the row and dies without recording or releasing anything.
    let claimed_at = openspot::domain::now_ms();
    let lease_until = claimed_at + 2_000;
    assert_eq!(claim(&f.db, Uuid::now_v7(), Uuid::now_v7(), claimed_at, lease_until, 10).await.len(), 1);
    let (rt, _) = runtime(&receiver.url, test_config());
    let dispatcher = outbox::spawn(f.db.clone(), rt);
    eventually(Duration::from_secs(10), async || (!receiver.seen().is_empty()).then_some(())).await;
    let received_at = openspot::domain::now_ms();
    match f.db {
        // The one process of its file releases every claim at start.
        Db::Sqlite(..) => assert!(received_at < lease_until, "SQLite: at once"),
        // Another replica may still be alive: the row waits for its lease.
        Db::Postgres(_) => assert!(received_at >= lease_until, "PostgreSQL: after the lease"),
    }
    assert_eq!(receiver.seen()[0].0, row.event_id.to_string(), "the same event id");
    dispatcher.shutdown().await;
});

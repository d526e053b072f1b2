//! On-demand benchmark of the outbox dispatcher (not part of `cargo test`):
//!
//! ```sh
//! cargo bench --bench outbox                                   # SQLite
//! OPENSPOT_BENCH_DATABASE_URL=postgres://postgres@127.0.0.1/bench cargo bench --bench outbox
//! # --write-cost: what an endpoint adds to a member write, alone; --throughput: the
//! # sustained delivery rates alone; --profile-invites: phases for callgrind or strace
//! ```
//!
//! Rows are written as the change that causes them would write them (in a transaction
//! that notes the outbox write) and delivered by real dispatchers, through the outbound
//! client, to an HTTP receiver on loopback. It measures commit-to-receipt latency at
//! idle (one write every 20 ms), and sustained deliveries per second from one replica
//! and, on PostgreSQL, from two (two dispatchers with pools of their own). What the
//! writes themselves cost (an event emitted from a member invite) belongs with the
//! event emission, not here.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use openspot::config::OutboxConfig;
use openspot::domain::ids::SpotId;
use openspot::domain::outbox::{self, Attempted, BoxFuture, Channel, Channels, Outcome, Runtime};
use openspot::domain::vocab::{ChannelKind, OutboxState};
use openspot::outbound::Outbound;
use openspot::store::outbox::{insert_many, NewOutboxRow, OutboxRow};
use openspot::store::{Db, Tx};
use uuid::Uuid;

/// Receipt time of every event id the receiver got.
type Receipts = Arc<Mutex<HashMap<String, Instant>>>;

async fn receiver() -> (String, Receipts) {
    use axum::http::HeaderMap;
    let got: Receipts = Arc::new(Mutex::new(HashMap::new()));
    let state = got.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: HeaderMap| {
            let got = state.clone();
            async move {
                let id = headers.get("webhook-id").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
                got.lock().unwrap().entry(id).or_insert_with(Instant::now);
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, got)
}

struct HttpChannel {
    url: String,
    out: Outbound,
}

impl Channel for HttpChannel {
    fn attempt<'a>(&'a self, _db: &'a Db, row: &'a OutboxRow) -> BoxFuture<'a, Outcome> {
        Box::pin(async move {
            let headers = [("webhook-id", row.event_id.to_string()), ("content-type", "application/json".into())];
            match self.out.post_bytes(&self.url, &headers, row.payload.clone().into_bytes()).await {
                Ok(r) => {
                    let a = Attempted {
                        status: Some(r.status),
                        duration_ms: r.elapsed.as_millis() as i64,
                        response: Some(r.body_prefix),
                        error: None,
                    };
                    if (200..300).contains(&r.status) {
                        Outcome::Delivered(a)
                    } else {
                        Outcome::Retry(a)
                    }
                }
                Err(e) => Outcome::Retry(Attempted { error: Some(e.to_string()), ..Attempted::default() }),
            }
        })
    }

    fn disable<'a>(
        &'a self,
        _tx: &'a mut Tx,
        _spot: SpotId,
        _target: Uuid,
        _reason: &'a str,
    ) -> BoxFuture<'a, openspot::error::Result<()>> {
        Box::pin(async { Ok(()) })
    }
}

fn runtime(url: &str) -> Arc<Runtime> {
    let mut channels = Channels::default();
    let out = Outbound::new(true, Duration::from_secs(10)).unwrap();
    channels.register(ChannelKind::Webhook, Arc::new(HttpChannel { url: url.to_string(), out }));
    Arc::new(Runtime::new(OutboxConfig::default(), channels))
}

fn row(target: Uuid) -> NewOutboxRow {
    let payload = r#"{"type":"member.created","member":{"id":"00000000-0000-0000-0000-000000000000","email":"jane.doe@example.com","firstname":"Jane","lastname":"Doe","status":"Invited","title":null},"spot":{"id":"00000000-0000-0000-0000-000000000000","name":"Bench"},"occurredAt":1764271234,"test":false}"#;
    NewOutboxRow {
        id: Uuid::now_v7(),
        event_id: Uuid::now_v7(),
        channel: ChannelKind::Webhook,
        target_id: Some(target),
        event_type: "member.created".into(),
        payload: payload.into(),
        occurred_at: openspot::domain::now_ms(),
        state: OutboxState::Pending,
        last_error: None,
    }
}

/// Writes `rows` in one transaction, as an emitting change does; returns when committed.
async fn write(db: &Db, spot: SpotId, rows: &[NewOutboxRow]) {
    let mut tx = db.begin().await.unwrap();
    insert_many(tx.ex(), spot, rows, openspot::domain::now_ms()).await.unwrap();
    tx.note_outbox_write();
    tx.commit().await.unwrap();
}

/// CPU time this process has used, all threads (Linux `schedstat`), in nanoseconds:
/// what a write costs the machine, steadier than wall time on a busy one.
fn cpu_ns() -> u64 {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else { return 0 };
    tasks
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .sum()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

async fn wait_for(got: &Receipts, n: usize, within: Duration) {
    let deadline = Instant::now() + within;
    while got.lock().unwrap().len() < n {
        assert!(Instant::now() < deadline, "only {} of {n} delivered", got.lock().unwrap().len());
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

async fn latency(db: &Db, spot: SpotId, url: &str) {
    let rt = runtime(url);
    let got = receiver_of(url);
    let dispatcher = outbox::spawn(db.clone(), rt);
    let target = Uuid::now_v7();
    let mut written = Vec::new();
    for _ in 0..500 {
        let r = row(target);
        write(db, spot, std::slice::from_ref(&r)).await;
        written.push((r.event_id.to_string(), Instant::now()));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    wait_for(&got, 500, Duration::from_secs(30)).await;
    let receipts = got.lock().unwrap().clone();
    let mut lat: Vec<Duration> = written.iter().map(|(id, at)| receipts[id].saturating_duration_since(*at)).collect();
    lat.sort();
    println!(
        "commit-to-receipt at idle (500 events, one every 20 ms): p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        percentile(&lat, 0.5).as_secs_f64() * 1e3,
        percentile(&lat, 0.99).as_secs_f64() * 1e3,
        lat[lat.len() - 1].as_secs_f64() * 1e3
    );
    dispatcher.shutdown().await;
}

/// Receipts are kept per receiver URL so that scenarios do not see each other's.
static RECEIVERS: Mutex<Vec<(String, Receipts)>> = Mutex::new(Vec::new());

fn receiver_of(url: &str) -> Receipts {
    RECEIVERS.lock().unwrap().iter().find(|(u, _)| u == url).map(|(_, r)| r.clone()).unwrap()
}

async fn new_receiver() -> String {
    let (url, got) = receiver().await;
    RECEIVERS.lock().unwrap().push((url.clone(), got));
    url
}

/// Events per second delivered from `replicas` dispatchers (each with its own pool).
async fn throughput(url_db: &str, spot: SpotId, replicas: usize, events: usize) -> f64 {
    let url = new_receiver().await;
    let got = receiver_of(&url);
    let writer = Db::connect(url_db).await.unwrap();
    // Written before the dispatchers start, so that the rate is the dispatchers' alone.
    let targets: Vec<Uuid> = (0..20).map(|_| Uuid::now_v7()).collect();
    let rows: Vec<NewOutboxRow> = (0..events).map(|i| row(targets[i % targets.len()])).collect();
    for chunk in rows.chunks(500) {
        write(&writer, spot, chunk).await;
    }
    let start = Instant::now();
    let mut running = Vec::new();
    for _ in 0..replicas {
        let db = Db::connect(url_db).await.unwrap();
        running.push((outbox::spawn(db.clone(), runtime(&url)), db));
    }
    wait_for(&got, events, Duration::from_secs(300)).await;
    let rate = events as f64 / start.elapsed().as_secs_f64();
    for (d, db) in running {
        d.shutdown().await;
        db.close().await;
    }
    writer.close().await;
    rate
}

/// Rounds and writes per round of the part timings of [`write_cost`].
const ROUNDS: u32 = 5;
const PER_ROUND: u32 = 400;
/// Rounds and writes per round of [`compare_writes`]: many short rounds, so that the
/// median of the rounds' ratios is not moved by a burst of other work on the machine.
const COMPARE_ROUNDS: u32 = 20;
const COMPARE_PER_ROUND: u32 = 250;

/// Per-write wall and CPU time in µs, without and with an endpoint, over `n` writes
/// each; and the median and quartiles of the rounds' ratios (with / without, in %).
struct Compared {
    wall: [f64; 2],
    cpu: [f64; 2],
    n: u32,
    wall_ratio: [f64; 3],
    cpu_ratio: [f64; 3],
}

/// The quartiles and median of `ratios`, as percentages added.
fn quartiles(mut ratios: Vec<f64>) -> [f64; 3] {
    ratios.sort_by(f64::total_cmp);
    let at = |p: f64| (ratios[((ratios.len() as f64 - 1.0) * p).round() as usize] - 1.0) * 100.0;
    [at(0.25), at(0.5), at(0.75)]
}

/// Times `write(with_endpoint, email)` in [`COMPARE_ROUNDS`] rounds of
/// [`COMPARE_PER_ROUND`] writes without an endpoint then with one (the order
/// alternating), so that drift hits both alike.
async fn compare_writes(mut write: impl AsyncFnMut(bool, String)) -> Compared {
    let (mut wall, mut cpu) = ([Duration::ZERO; 2], [0u64; 2]);
    let (mut wall_ratios, mut cpu_ratios) = (Vec::new(), Vec::new());
    for round in 0..COMPARE_ROUNDS {
        let (mut round_wall, mut round_cpu) = ([Duration::ZERO; 2], [0u64; 2]);
        let order = if round % 2 == 0 { [false, true] } else { [true, false] };
        for with in order {
            let (start, cpu_start) = (Instant::now(), cpu_ns());
            for i in 0..COMPARE_PER_ROUND {
                write(with, format!("w{round}-{i}@x.io")).await;
            }
            round_wall[usize::from(with)] = start.elapsed();
            round_cpu[usize::from(with)] = cpu_ns() - cpu_start;
        }
        wall_ratios.push(round_wall[1].as_secs_f64() / round_wall[0].as_secs_f64());
        cpu_ratios.push(round_cpu[1] as f64 / round_cpu[0].max(1) as f64);
        for k in 0..2 {
            wall[k] += round_wall[k];
            cpu[k] += round_cpu[k];
        }
    }
    let n = COMPARE_ROUNDS * COMPARE_PER_ROUND;
    Compared {
        wall: wall.map(|d| (d / n).as_secs_f64() * 1e6),
        cpu: cpu.map(|ns| ns as f64 / f64::from(n) / 1e3),
        n,
        wall_ratio: quartiles(wall_ratios),
        cpu_ratio: quartiles(cpu_ratios),
    }
}

/// `+m % (q1 to q3)`: a [`quartiles`] result.
fn spread([q1, m, q3]: [f64; 3]) -> String {
    format!("{m:+.1} % (quartiles {q1:+.1} to {q3:+.1} %)")
}

/// How much larger `b` is than `a`, in percent.
fn percent(a: f64, b: f64) -> f64 {
    (b / a - 1.0) * 100.0
}

/// What the outbox adds to a member write: `invite_member` in a spot with no endpoint
/// and in one with an endpoint listening to `member.created` (rows only queued here: no
/// dispatcher runs), interleaved in rounds so drift hits both alike; and the cost of
/// `events::emit` itself for a spot without endpoints (its cached "nobody listens").
async fn write_cost(db: &Db, url: &str) {
    use openspot::domain::{events, members, webhooks};
    let (quiet, _) = openspot::domain::spots::create_spot(db, "no endpoint").await.unwrap();
    let (heard, _) = openspot::domain::spots::create_spot(db, "one endpoint").await.unwrap();
    let outbound = Outbound::new(true, Duration::from_secs(10)).unwrap();
    webhooks::create_endpoint(
        db,
        &outbound,
        heard.id,
        webhooks::NewEndpoint {
            url: Some(url.to_string()),
            event_types: Some(vec!["member.created".into()]),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    // As in a server, whose dispatcher learns of its own writes in-process: without
    // this, a PostgreSQL commit would also announce the rows (`NOTIFY`) to others.
    openspot::store::outbox::dispatcher_started();
    let c = compare_writes(async |with, email: String| {
        let spot = if with { heard.id } else { quiet.id };
        members::invite_member(db, spot, &email, false).await.unwrap();
    })
    .await;
    let ([a, b], [ca, cb], n) = (c.wall, c.cpu, c.n);
    println!(
        "member write: {a:.0} µs without an endpoint, {b:.0} µs with one ({:+.1} %; {n} invites each); \
         median of {COMPARE_ROUNDS} rounds' ratios {}",
        percent(a, b),
        spread(c.wall_ratio)
    );
    println!(
        "member write, CPU time of this process: {ca:.0} µs without an endpoint, {cb:.0} µs with one ({:+.1} %); \
         median of rounds {}",
        percent(ca, cb),
        spread(c.cpu_ratio)
    );
    // The parts: an empty transaction, and one holding just the outbox row.
    let (mut empty, mut one_row) = (Duration::ZERO, Duration::ZERO);
    for _ in 0..ROUNDS {
        let start = Instant::now();
        for _ in 0..PER_ROUND {
            db.begin().await.unwrap().commit().await.unwrap();
        }
        empty += start.elapsed();
        let start = Instant::now();
        for _ in 0..PER_ROUND {
            let mut tx = db.begin().await.unwrap();
            insert_many(tx.ex(), quiet.id, &[row(Uuid::now_v7())], openspot::domain::now_ms()).await.unwrap();
            tx.commit().await.unwrap();
        }
        one_row += start.elapsed();
    }
    println!(
        "an empty transaction: {:.0} µs; one holding one outbox row: {:.0} µs",
        (empty / n).as_secs_f64() * 1e6,
        (one_row / n).as_secs_f64() * 1e6
    );
    // The member-count update a member invite makes anyway, alone, with an outbox row as
    // a statement of its own, and with the row riding on it (what an invite does).
    let mut parts = [Duration::ZERO; 3];
    for _ in 0..ROUNDS {
        for (k, part) in parts.iter_mut().enumerate() {
            let start = Instant::now();
            for _ in 0..PER_ROUND {
                let mut tx = db.begin().await.unwrap();
                let now = openspot::domain::now_ms();
                match k {
                    0 => openspot::store::spots::add_member_count(tx.ex(), quiet.id, 0).await.unwrap(),
                    1 => {
                        insert_many(tx.ex(), quiet.id, &[row(Uuid::now_v7())], now).await.unwrap();
                        openspot::store::spots::add_member_count(tx.ex(), quiet.id, 0).await.unwrap();
                    }
                    _ => openspot::store::outbox::insert_with_member_count(
                        tx.ex(),
                        quiet.id,
                        0,
                        &[row(Uuid::now_v7())],
                        now,
                    )
                    .await
                    .unwrap(),
                }
                tx.commit().await.unwrap();
            }
            *part += start.elapsed();
        }
    }
    let [alone, separate, riding] = parts.map(|d| (d / n).as_secs_f64() * 1e6);
    println!(
        "a member-count update: {alone:.0} µs; with an outbox row in its own statement: {separate:.0} µs; \
         with the row riding on it: {riding:.0} µs"
    );
    openspot::store::outbox::dispatcher_stopped();
    let member = members::invite_member(db, quiet.id, "probe@x.io", false).await.unwrap().0;
    let mut tx = db.begin().await.unwrap();
    let calls = 100_000u32;
    let start = Instant::now();
    for _ in 0..calls {
        events::emit(&mut tx, quiet.id, events::Event::MemberCreated(std::slice::from_ref(&member))).await.unwrap();
    }
    let per_call = start.elapsed() / calls;
    tx.commit().await.unwrap();
    println!("events::emit for a spot without endpoints: {:.0} ns per call", per_call.as_secs_f64() * 1e9);
}

/// For profiling the write path (`--profile-invites`, under callgrind): `N` invites
/// (`OPENSPOT_BENCH_INVITES`, 1,000) in a spot without an endpoint, then `N` in one
/// with an endpoint listening, each phase announced on stdout and framed by a 2 s pause
/// in which an outside `callgrind_control -z` / `-d` zeroes and dumps the counts. No
/// dispatcher runs (the rows are only queued).
async fn profile_invites(db: &Db, url: &str) {
    use openspot::domain::{members, webhooks};
    use std::io::Write as _;
    let n: u32 = std::env::var("OPENSPOT_BENCH_INVITES").ok().and_then(|v| v.parse().ok()).unwrap_or(1000);
    let (quiet, _) = openspot::domain::spots::create_spot(db, "no endpoint").await.unwrap();
    let (heard, _) = openspot::domain::spots::create_spot(db, "one endpoint").await.unwrap();
    let outbound = Outbound::new(true, Duration::from_secs(10)).unwrap();
    let endpoint = webhooks::NewEndpoint {
        url: Some(url.to_string()),
        event_types: Some(vec!["member.created".into()]),
        ..Default::default()
    };
    webhooks::create_endpoint(db, &outbound, heard.id, endpoint).await.unwrap();
    openspot::store::outbox::dispatcher_started();
    for (spot, name) in [(quiet.id, "without"), (heard.id, "with")] {
        for i in 0..200 {
            members::invite_member(db, spot, &format!("warm-{name}-{i}@x.io"), false).await.unwrap();
        }
    }
    for (spot, name) in [(quiet.id, "without"), (heard.id, "with")] {
        println!("phase {name} start");
        std::io::stdout().flush().unwrap();
        tokio::time::sleep(Duration::from_secs(2)).await;
        for i in 0..n {
            members::invite_member(db, spot, &format!("p-{name}-{i}@x.io"), false).await.unwrap();
        }
        println!("phase {name} end");
        std::io::stdout().flush().unwrap();
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    openspot::store::outbox::dispatcher_stopped();
}

/// The same comparison through the API, as an integration sees a member write:
/// `POST /v1/spotMembers` to a real server on loopback, in a spot without an endpoint
/// and in one with an endpoint listening to `member.created`, which the server's own
/// dispatcher delivers (signed, recorded) to the loopback receiver meanwhile. CPU time
/// counts the whole process: client, server and dispatcher.
async fn http_write_cost(db: &Db, receiver: &str) {
    use openspot::domain::auth::Limits;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let mut config = openspot::Config::new(listener.local_addr().unwrap(), None);
    config.default_limits = Limits { per_10s: 1_000_000, per_day: 100_000_000 };
    config.allow_private_targets = true;
    let state = openspot::AppState::new(db.clone(), config).unwrap();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(openspot::serve(state, listener, async move {
        let _ = stop_rx.await;
    }));
    let (_, quiet_key) = openspot::domain::spots::create_spot(db, "api, no endpoint").await.unwrap();
    let (_, heard_key) = openspot::domain::spots::create_spot(db, "api, one endpoint").await.unwrap();
    let client = reqwest::Client::new();
    let r = client
        .post(format!("{base}/v1/webhooks"))
        .header("authorization", &heard_key)
        .json(&serde_json::json!({"url": receiver, "eventTypes": ["member.created"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let c = compare_writes(async |with, email: String| {
        let key = if with { &heard_key } else { &quiet_key };
        let r = client
            .post(format!("{base}/v1/spotMembers"))
            .header("authorization", key.as_str())
            .json(&serde_json::json!({"email": email}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
    })
    .await;
    let ([a, b], [ca, cb], n) = (c.wall, c.cpu, c.n);
    println!(
        "member write through the API: {a:.0} µs without an endpoint, {b:.0} µs with one ({:+.1} %, median of \
         rounds {}); CPU {ca:.0} µs vs {cb:.0} µs ({:+.1} %, median of rounds {}; delivery included; {n} invites each)",
        percent(a, b),
        spread(c.wall_ratio),
        percent(ca, cb),
        spread(c.cpu_ratio)
    );
    let _ = stop_tx.send(());
    let _ = server.await;
}

/// Latencies of single member invites, one every 5 ms, until `done` says stop (at
/// least `min` of them): what the write path feels while something else runs.
async fn probe_writes(
    db: &Db,
    spot: SpotId,
    tag: &str,
    min: usize,
    done: &std::sync::atomic::AtomicBool,
) -> Vec<Duration> {
    use std::sync::atomic::Ordering;
    let mut lat = Vec::new();
    let mut i = 0;
    while lat.len() < min || !done.load(Ordering::SeqCst) {
        let start = Instant::now();
        openspot::domain::members::invite_member(db, spot, &format!("probe-{tag}-{i}@x.io"), false).await.unwrap();
        lat.push(start.elapsed());
        i += 1;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    lat.sort();
    lat
}

fn summary(lat: &[Duration]) -> String {
    format!(
        "p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms ({} writes)",
        percentile(lat, 0.5).as_secs_f64() * 1e3,
        percentile(lat, 0.99).as_secs_f64() * 1e3,
        lat[lat.len() - 1].as_secs_f64() * 1e3,
        lat.len()
    )
}

/// Bulk operations must not stall the write path (issue 14): in a spot of 100,000
/// members with an endpoint listening to every event and the real webhook channel
/// delivering to a loopback receiver, the latency of single invites made meanwhile
/// (one every 5 ms) during a 2,000-row import, a 200-id bulk add and a smart group
/// filling with 100,000 members, against the same invites at idle; and how long each
/// bulk operation took (its events all written in its own transactions).
async fn bulk_stall(db: &Db, url: &str) {
    use openspot::domain::{events::EventType, groups, import, members, webhooks};
    use std::sync::atomic::{AtomicBool, Ordering};
    let (spot, _) = openspot::domain::spots::create_spot(db, "bulk").await.unwrap();
    let population = 100_000;
    let start = Instant::now();
    let mut ids = Vec::new();
    for b in 0..population / 200 {
        let emails: Vec<String> = (0..200).map(|i| format!("pop{b}-{i}@x.io")).collect();
        let (created, _) = members::bulk_invite(db, spot.id, &emails, false).await.unwrap();
        if ids.len() < 200 {
            ids.extend(created.iter().take(200 - ids.len()).map(|m| m.id.to_string()));
        }
    }
    println!("bulk: {population} members invited in {:.1} s (200 per call)", start.elapsed().as_secs_f64());
    let outbound = Outbound::new(true, Duration::from_secs(10)).unwrap();
    webhooks::create_endpoint(
        db,
        &outbound,
        spot.id,
        webhooks::NewEndpoint {
            url: Some(url.to_string()),
            event_types: Some(EventType::NAMES.iter().map(|s| s.to_string()).collect()),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let mut channels = Channels::default();
    channels.register(ChannelKind::Webhook, Arc::new(webhooks::WebhookChannel::new(outbound)));
    let dispatcher = outbox::spawn(db.clone(), Arc::new(Runtime::new(OutboxConfig::default(), channels)));

    let idle = AtomicBool::new(true);
    let base = probe_writes(db, spot.id, "idle", 400, &idle).await;
    println!("bulk: single invites at idle: {}", summary(&base));

    let csv: String = std::iter::once("email,firstname\n".to_string())
        .chain((0..2_000).map(|i| format!("imp{i}@x.io,Imported\n")))
        .collect();
    let rows = import::read_rows(csv.as_bytes(), &import::HTTP_LIMITS).unwrap();
    let group =
        groups::create_group(db, spot.id, groups::NewGroup { name: Some("static".into()), ..Default::default() })
            .await
            .unwrap();
    let rules = serde_json::json!({"operator": "AND", "conditions": [
        {"operator": "AND", "triggers": [{"field": "email", "op": "contains", "value": "@x.io"}]}]});

    for (n, op) in ["2,000-row import", "200-id bulk add", "smart group of 100,000+"].into_iter().enumerate() {
        let done = AtomicBool::new(false);
        let bulk = async {
            let start = Instant::now();
            match op {
                "2,000-row import" => {
                    let report = import::import_rows(db, spot.id, &rows, &[], false, false, &|_| {}).await.unwrap();
                    assert_eq!(report.created, 2_000);
                }
                "200-id bulk add" => {
                    let (added, _) = groups::bulk_add(db, spot.id, group.id, &ids).await.unwrap();
                    assert_eq!(added.len(), 200);
                }
                _ => {
                    let g = groups::create_group(
                        db,
                        spot.id,
                        groups::NewGroup {
                            name: Some("everyone".into()),
                            kind: Some("Smart".into()),
                            rules: Some(rules.clone()),
                            ..Default::default()
                        },
                    )
                    .await
                    .unwrap();
                    while !groups::get_group(db, spot.id, g.id).await.unwrap().ready {
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                }
            }
            let took = start.elapsed();
            done.store(true, Ordering::SeqCst);
            took
        };
        let tag = format!("op{n}");
        let (took, lat) = tokio::join!(bulk, probe_writes(db, spot.id, &tag, 20, &done));
        println!("bulk: {op} took {:.2} s; single invites meanwhile: {}", took.as_secs_f64(), summary(&lat));
    }
    dispatcher.shutdown().await;
}

#[tokio::main]
async fn main() {
    let dir = tempfile::tempdir().unwrap();
    let url = std::env::var("OPENSPOT_BENCH_DATABASE_URL")
        .unwrap_or_else(|_| format!("sqlite://{}", dir.path().join("outbox-bench.db").display()));
    let db = Db::connect_and_migrate(&url).await.unwrap();
    let (spot, _) = openspot::domain::spots::create_spot(&db, "outbox bench").await.unwrap();
    println!("openspot outbox benchmark on {}", db.backend_name());
    if std::env::args().any(|a| a == "--with-old-index") {
        // The index on (spot, target, event) that migration 0015 dropped, for a
        // comparison in the same build.
        let sql = "CREATE INDEX outbox_target_event ON outbox (spot_id, target_id, event_id)";
        match &db {
            Db::Sqlite(p, ..) => sqlx::query(sql).execute(p).await.map(|_| ()),
            Db::Postgres(p) => sqlx::query(sql).execute(p).await.map(|_| ()),
        }
        .unwrap();
        println!("with the index outbox_target_event (before migration 0015)");
    }

    let receiver = new_receiver().await;
    if std::env::args().any(|a| a == "--profile-invites") {
        profile_invites(&db, &receiver).await;
        return;
    }
    if std::env::args().any(|a| a == "--write-cost") {
        write_cost(&db, &receiver).await;
        http_write_cost(&db, &receiver).await;
        return;
    }
    // `--throughput`: the sustained delivery rates alone (for repeated runs).
    if !std::env::args().any(|a| a == "--throughput") {
        latency(&db, spot.id, &receiver).await;
        write_cost(&db, &receiver).await;
        http_write_cost(&db, &receiver).await;
        if std::env::args().any(|a| a == "--bulk") || std::env::var("OPENSPOT_BENCH_BULK").is_ok() {
            bulk_stall(&db, &receiver).await;
        }
    }

    let events = 10_000;
    let one = throughput(&url, spot.id, 1, events).await;
    println!("sustained delivery, one replica: {one:.0} events/s ({events} events to a loopback receiver)");
    if let Db::Postgres(_) = db {
        let two = throughput(&url, spot.id, 2, events).await;
        println!("sustained delivery, two replicas: {two:.0} events/s ({:.2}x one)", two / one);
    }
    db.close().await;
}

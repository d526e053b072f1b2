//! On-demand load benchmark (not part of `cargo test`):
//!
//! ```sh
//! cargo bench --bench load                       # 100,000 members on SQLite
//! OPENSPOT_BENCH_MEMBERS=1000000 cargo bench --bench load
//! OPENSPOT_BENCH_DATABASE_URL=postgres://postgres@127.0.0.1/bench cargo bench --bench load
//! # OPENSPOT_BENCH_READS_ONLY=1 stops after the reads; OPENSPOT_BENCH_SKIP_SMART=1
//! # leaves the smart groups out; OPENSPOT_BENCH_LINK_ONLY=1 runs the course link alone;
//! # OPENSPOT_BENCH_SECONDS=s per server and round (2); OPENSPOT_BENCH_ROUNDS=n rounds
//! # per read (6), after OPENSPOT_BENCH_WARMUP_ROUNDS=n uncounted ones (3);
//! # OPENSPOT_BENCH_SERVE=<file> seeds, starts both servers, writes
//! # their addresses, the key and member ids to <file> and serves until killed (for
//! # profiling with an outside client); OPENSPOT_BENCH_TRACE_ROUNDS=1 prints each
//! # round's rate and its seconds since start (to line up with `perf stat -I`).
//! ```
//!
//! Seeds one spot with N members, starts a real server on a loopback port and drives
//! it with concurrent HTTP clients. Each read is also served by a bare axum + sqlx
//! server on the same database with the same SQL (`load/bare.rs`) in the same run,
//! interleaved, and reported as a ratio to it (throughput and p99 latency): the
//! fraction of the stack's own ceiling openspot reaches. The other figures are ratios
//! to GET one member by id in the same run. It also times what the design avoids (a
//! `COUNT(*)` over the spot), the cost of smart groups per member change, and linking
//! a large group to a course (the request's time, and the time until its background
//! job has invited every member).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use openspot::domain::auth::Limits;
use openspot::store::Db;
use openspot::{AppState, Config};
use serde_json::json;
use uuid::Uuid;

#[path = "load/bare.rs"]
mod bare;

const WORKERS: usize = 8;
const RUN: Duration = Duration::from_secs(3);

/// When the bench process started (round timings of OPENSPOT_BENCH_TRACE_ROUNDS).
static PROCESS_START: std::sync::LazyLock<Instant> = std::sync::LazyLock::new(Instant::now);

/// One scenario's figures against one server.
#[derive(Clone, Copy, Debug, Default)]
struct Stats {
    rate: f64,
    /// openspot only: the median and quartiles of the rounds' throughput ratios to the
    /// bare server (each round runs both, back to back).
    round_ratios: [f64; 3],
    p50_ms: f64,
    p99_ms: f64,
}

/// Requests a scenario sends: method, path and query, body.
type Make = Arc<dyn Fn(u64) -> (reqwest::Method, String, Option<serde_json::Value>) + Send + Sync>;

struct Bench {
    base: String,
    key: String,
    client: reqwest::Client,
}

impl Bench {
    /// Requests per second over `run` with `WORKERS` concurrent clients against `base`,
    /// with the latencies of the successful ones (microseconds).
    async fn drive(&self, base: &str, make: &Make, run: Duration) -> (f64, Vec<u32>, u64) {
        let done = Arc::new(AtomicU64::new(0));
        let errors = Arc::new(AtomicU64::new(0));
        let start = Instant::now();
        let mut tasks = Vec::new();
        for w in 0..WORKERS {
            let (client, base, key, make, done, errors) =
                (self.client.clone(), base.to_string(), self.key.clone(), make.clone(), done.clone(), errors.clone());
            tasks.push(tokio::spawn(async move {
                let mut lat = Vec::with_capacity(16_384);
                let mut i = w as u64;
                while start.elapsed() < run {
                    let (method, path, body) = make(i);
                    let mut rb = client.request(method, format!("{base}{path}")).header("authorization", &key);
                    if let Some(b) = body {
                        rb = rb.json(&b);
                    }
                    let sent = Instant::now();
                    match rb.send().await {
                        Ok(r) if r.status().is_success() => {
                            let _ = r.bytes().await;
                            lat.push(sent.elapsed().as_micros().min(u32::MAX as u128) as u32);
                            done.fetch_add(1, Ordering::Relaxed);
                        }
                        _ => {
                            errors.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    i += WORKERS as u64;
                }
                lat
            }));
        }
        let mut lat = Vec::new();
        for t in tasks {
            lat.extend(t.await.unwrap());
        }
        let rate = done.load(Ordering::Relaxed) as f64 / start.elapsed().as_secs_f64();
        (rate, lat, errors.load(Ordering::Relaxed))
    }

    /// Requests per second over `RUN` with `WORKERS` concurrent clients against openspot.
    async fn rate(
        &self,
        label: &str,
        make: impl Fn(u64) -> (reqwest::Method, String, Option<serde_json::Value>) + Send + Sync + 'static,
    ) -> f64 {
        let make: Make = Arc::new(make);
        let (rate, _, errs) = self.drive(&self.base, &make, RUN).await;
        eprintln!(
            "  {label:<48} {rate:>9.0} req/s{}",
            if errs > 0 { format!("  ({errs} errors)") } else { String::new() }
        );
        rate
    }

    /// One read against openspot and against the bare server, interleaved in
    /// [`rounds`] rounds (openspot then bare, then bare then openspot, ...) so that drift
    /// in the machine's load falls on both alike; latencies of all rounds pooled. The
    /// ratio reported is the median of the rounds' ratios: a burst of other work on the
    /// machine moves one round, not the median. Before them, [`warmup_rounds`] rounds
    /// are run the same way and thrown away: each server has a pool of its own, and a
    /// SQLite connection caches only the pages it has read itself, so the first seconds
    /// of a read (above all the first read after seeding a large spot) measure how cold
    /// each pool still is rather than what a request costs.
    async fn compare(
        &self,
        bare: &str,
        label: &str,
        make: impl Fn(u64) -> (reqwest::Method, String, Option<serde_json::Value>) + Send + Sync + 'static,
    ) -> (Stats, Stats) {
        let make: Make = Arc::new(make);
        let (run, rounds, warmup) = (run_time(), rounds(), warmup_rounds());
        let mut figures = [(0.0, Vec::new(), 0u64), (0.0, Vec::new(), 0u64)];
        let mut ratios = Vec::with_capacity(rounds);
        for round in 0..warmup + rounds {
            let counted = round >= warmup;
            let order = if round % 2 == 0 { [0, 1] } else { [1, 0] };
            let mut round_rates = [0.0; 2];
            for which in order {
                let base = if which == 0 { self.base.as_str() } else { bare };
                let began = PROCESS_START.elapsed().as_secs_f64();
                let (rate, lat, errs) = self.drive(base, &make, run).await;
                if flag("OPENSPOT_BENCH_TRACE_ROUNDS") {
                    // For lining rounds up with `perf stat -I` intervals (seconds since start).
                    let who = if which == 0 { "openspot" } else { "bare" };
                    let kind = if counted { "round" } else { "warm-up" };
                    eprintln!(
                        "    {kind} {round} {who:<8} {began:>7.2}s..{:>7.2}s {rate:>8.0} req/s",
                        PROCESS_START.elapsed().as_secs_f64()
                    );
                }
                if !counted {
                    continue;
                }
                round_rates[which] = rate;
                let f = &mut figures[which];
                f.0 += rate / rounds as f64;
                f.1.extend(lat);
                f.2 += errs;
            }
            if counted {
                ratios.push(round_rates[0] / round_rates[1].max(f64::MIN_POSITIVE));
            }
        }
        ratios.sort_by(f64::total_cmp);
        let at = |p: f64| ratios[((ratios.len() as f64 - 1.0) * p).round() as usize];
        let round_ratios = [at(0.25), at(0.5), at(0.75)];
        let [open, bare] = figures.map(|(rate, mut lat, errs)| {
            lat.sort_unstable();
            let q = |p: f64| lat.get(((lat.len() as f64 * p) as usize).min(lat.len().saturating_sub(1))).copied();
            let ms = |v: Option<u32>| v.map_or(f64::NAN, |v| v as f64 / 1000.0);
            (Stats { rate, round_ratios, p50_ms: ms(q(0.50)), p99_ms: ms(q(0.99)) }, errs)
        });
        let errs = if open.1 + bare.1 > 0 { format!("  ({} / {} errors)", open.1, bare.1) } else { String::new() };
        eprintln!(
            "  {label:<44} openspot {:>7.0} req/s p50 {:>6.2} p99 {:>6.2} ms | bare {:>7.0} req/s p50 {:>6.2} p99 {:>6.2} ms | \
             {:.2}x req/s (median of rounds {:.2}x), {:.2}x p99{errs}",
            open.0.rate,
            open.0.p50_ms,
            open.0.p99_ms,
            bare.0.rate,
            bare.0.p50_ms,
            bare.0.p99_ms,
            open.0.rate / bare.0.rate,
            open.0.round_ratios[1],
            open.0.p99_ms / bare.0.p99_ms,
        );
        (open.0, bare.0)
    }
}

/// Rounds of each openspot/bare comparison, alternating which goes first
/// (OPENSPOT_BENCH_ROUNDS, default 6).
fn rounds() -> usize {
    std::env::var("OPENSPOT_BENCH_ROUNDS").ok().and_then(|v| v.parse().ok()).unwrap_or(6).max(1)
}

/// Rounds run before the counted ones and thrown away (OPENSPOT_BENCH_WARMUP_ROUNDS,
/// default 3). One was not enough on PostgreSQL after seeding: both servers' rates
/// still climbed for about 10 s, and as the counted rounds start bare, openspot,
/// openspot, bare, openspot's two early rounds carried the slow tail (get by id p99
/// 1.45-1.53x with one warm-up round, 1.03x with three).
fn warmup_rounds() -> usize {
    std::env::var("OPENSPOT_BENCH_WARMUP_ROUNDS").ok().and_then(|v| v.parse().ok()).unwrap_or(3)
}

/// Seconds per server per round of a comparison (OPENSPOT_BENCH_SECONDS, default 2).
fn run_time() -> Duration {
    let s = std::env::var("OPENSPOT_BENCH_SECONDS").ok().and_then(|v| v.parse().ok()).unwrap_or(2.0);
    Duration::from_secs_f64(s)
}

fn flag(name: &str) -> bool {
    std::env::var(name).is_ok_and(|v| !v.is_empty() && v != "0")
}

async fn exec(db: &Db, sql: &str) {
    match db {
        Db::Sqlite(p, ..) => {
            sqlx::query(sql).execute(p).await.unwrap();
        }
        Db::Postgres(p) => {
            sqlx::query(sql).execute(p).await.unwrap();
        }
    }
}

/// Inserts `n` members with multi-row statements (the bench seeds below the API).
async fn seed_members(db: &Db, spot: Uuid, n: usize) -> Vec<Uuid> {
    let now = openspot::domain::now_ms();
    let mut ids = Vec::with_capacity(n);
    let chunk = 500;
    let mut i = 0;
    while i < n {
        let m = chunk.min(n - i);
        let mut sql = String::from(
            "INSERT INTO members (spot_id, id, email, email_norm, firstname, lastname, status, invited_at, registered_at, updated_at) VALUES ",
        );
        for j in 0..m {
            let id = Uuid::now_v7();
            ids.push(id);
            let k = i + j;
            let (spot_lit, id_lit) = match db {
                Db::Sqlite(..) => (format!("X'{}'", spot.simple()), format!("X'{}'", id.simple())),
                Db::Postgres(_) => (format!("'{spot}'"), format!("'{id}'")),
            };
            let status = if k % 3 == 0 { "Accepted" } else { "Invited" };
            let reg = if k % 3 == 0 { (now - 1000).to_string() } else { "NULL".into() };
            if j > 0 {
                sql.push(',');
            }
            sql.push_str(&format!(
                "({spot_lit}, {id_lit}, 'm{k}@bench.io', 'm{k}@bench.io', 'First{}', 'Last{}', '{status}', {}, {reg}, {now})",
                k % 1000,
                k % 997,
                now - (n - k) as i64
            ));
        }
        exec(db, &sql).await;
        i += m;
    }
    let lit = match db {
        Db::Sqlite(..) => format!("X'{}'", spot.simple()),
        Db::Postgres(_) => format!("'{spot}'"),
    };
    exec(db, &format!("UPDATE spot_counters SET member_count = {n} WHERE spot_id = {lit}")).await;
    ids
}

async fn count_scan_ms(db: &Db, spot: Uuid) -> f64 {
    let start = Instant::now();
    let runs = 5;
    for _ in 0..runs {
        let _: i64 = match db {
            Db::Sqlite(p, ..) => sqlx::query_scalar("SELECT COUNT(*) FROM members WHERE spot_id = $1")
                .bind(spot)
                .fetch_one(p)
                .await
                .unwrap(),
            Db::Postgres(p) => sqlx::query_scalar("SELECT COUNT(*) FROM members WHERE spot_id = $1")
                .bind(spot)
                .fetch_one(p)
                .await
                .unwrap(),
        };
    }
    start.elapsed().as_secs_f64() * 1000.0 / runs as f64
}

#[tokio::main]
async fn main() {
    std::sync::LazyLock::force(&PROCESS_START);
    let n: usize = std::env::var("OPENSPOT_BENCH_MEMBERS").ok().and_then(|v| v.parse().ok()).unwrap_or(100_000);
    let dir = tempfile::tempdir().unwrap();
    let url = std::env::var("OPENSPOT_BENCH_DATABASE_URL")
        .unwrap_or_else(|_| format!("sqlite://{}", dir.path().join("bench.db").display()));
    let db = Db::connect_and_migrate(&url).await.unwrap();
    let (spot, key) = openspot::domain::spots::create_spot(&db, "bench").await.unwrap();
    eprintln!(
        "openspot load benchmark: {n} members, {WORKERS} concurrent clients, {}s per scenario, {}",
        RUN.as_secs(),
        db.backend_name()
    );
    let t = Instant::now();
    let ids = Arc::new(seed_members(&db, spot.id.into(), n).await);
    eprintln!("  seeded {n} members in {:.1}s", t.elapsed().as_secs_f64());
    // What an import does after its rows (and autovacuum soon after a bulk insert on
    // PostgreSQL): planner statistics, and on PostgreSQL pages marked all-visible, so
    // counts read an index alone. Without it PostgreSQL's first minutes measure the
    // seeding's aftermath rather than the reads.
    db.analyze_after_bulk_write().await.unwrap();

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let mut config = Config::new(addr, None);
    config.default_limits = Limits { per_10s: i64::MAX / 4, per_day: i64::MAX / 4 };
    // The server opens its own pool on the seeded database, as a server process started
    // on it would and as the bare server does (`bare::spawn`): the two then differ by
    // the code between the socket and the pool only, not by what the seeding's pool
    // has been through.
    let served = Db::connect(&url).await.unwrap();
    let state = AppState::new(served, config).unwrap();
    let state_public_url = state.config.public_url.clone();
    tokio::spawn(openspot::serve(state, listener, std::future::pending()));
    let bench = Bench { base: format!("http://{addr}"), key, client: reqwest::Client::new() };

    if flag("OPENSPOT_BENCH_LINK_ONLY") {
        let (link_s, ready_s, group_size) = course_link(&bench, &db, spot.id, &ids, n).await;
        eprintln!(
            "  course link of a {group_size}-member group: 204 in {link_s:.3}s, every member invited in {ready_s:.2}s"
        );
        return;
    }
    let bare = format!("http://{}", bare::spawn(&url, spot.id.into(), state_public_url).await);
    if let Ok(path) = std::env::var("OPENSPOT_BENCH_SERVE") {
        // Profiling: write both servers' addresses, the key and some member ids to
        // `path` (one a line) and serve until killed, for an outside client to drive
        // (e.g. under `valgrind --tool=callgrind`).
        let mut out = format!("{}\n{bare}\n{}\n", bench.base, bench.key);
        for id in ids.iter().take(1000) {
            out.push_str(&format!("{id}\n"));
        }
        std::fs::write(&path, out).unwrap();
        eprintln!("serving: {} (openspot), {bare} (bare); wrote {path}", bench.base);
        std::future::pending::<()>().await;
    }

    eprintln!(
        "reads, openspot against the bare axum + sqlx server ({} interleaved rounds of {:.0}s each):",
        rounds(),
        run_time().as_secs_f64()
    );
    let ids2 = ids.clone();
    let (by_id, by_id_bare) = bench
        .compare(&bare, "GET /v1/spotMembers/{id}", move |i| {
            (reqwest::Method::GET, format!("/v1/spotMembers/{}", ids2[(i as usize * 7919) % ids2.len()]), None)
        })
        .await;
    let baseline = by_id.rate;
    let (page, page_bare) = bench
        .compare(&bare, "GET /v1/spotMembers (page 1, counted total)", |_| {
            (reqwest::Method::GET, "/v1/spotMembers".into(), None)
        })
        .await;
    let (email, email_bare) = bench
        .compare(&bare, "GET /v1/spotMembers?email[in]=1 email", move |i| {
            (reqwest::Method::GET, format!("/v1/spotMembers?email%5Bin%5D=m{}@bench.io", (i as usize * 31) % n), None)
        })
        .await;
    let (first, first_bare) = bench
        .compare(&bare, &format!("GET ?firstname[in]=1 name ({} match)", n / 1000), move |i| {
            (reqwest::Method::GET, format!("/v1/spotMembers?firstname%5Bin%5D=First{}", i % 1000), None)
        })
        .await;
    // A wide filter: 100 first names (the most an `in` list takes) match a tenth of the
    // spot, so `total` counts a large index range (issue 17 item 2).
    let (wide, wide_bare) = bench
        .compare(&bare, &format!("GET ?firstname[in]=100 names ({} match)", n / 10), move |i| {
            let from = (i as usize % 10) * 100;
            let names: Vec<String> = (from..from + 100).map(|k| format!("First{k}")).collect();
            (reqwest::Method::GET, format!("/v1/spotMembers?firstname%5Bin%5D={}", names.join(",")), None)
        })
        .await;
    let scan = count_scan_ms(&db, spot.id.into()).await;
    eprintln!("  what the maintained count avoids: COUNT(*) over the spot = {scan:.1} ms per request");
    eprintln!("\nreads as ratios to the bare server (openspot / bare):");
    eprintln!(
        "  | read | openspot req/s | bare req/s | ratio of the means | median of rounds' ratios (quartiles) | openspot p50 / p99 ms | bare p50 / p99 ms | p99 ratio |"
    );
    for (label, o, b) in [
        ("get by id", by_id, by_id_bare),
        ("page 1, unfiltered", page, page_bare),
        ("email[in], 1 email", email, email_bare),
        ("firstname[in], 1 name", first, first_bare),
        ("firstname[in], 100 names", wide, wide_bare),
    ] {
        eprintln!(
            "  | {label} | {:.0} | {:.0} | {:.2} | {:.2} ({:.2}–{:.2}) | {:.2} / {:.2} | {:.2} / {:.2} | {:.2} |",
            o.rate,
            b.rate,
            o.rate / b.rate,
            o.round_ratios[1],
            o.round_ratios[0],
            o.round_ratios[2],
            o.p50_ms,
            o.p99_ms,
            b.p50_ms,
            b.p99_ms,
            o.p99_ms / b.p99_ms
        );
    }
    if flag("OPENSPOT_BENCH_READS_ONLY") {
        return;
    }

    eprintln!("member changes (PUT /v1/spotMembers/{{id}}):");
    let ids3 = ids.clone();
    let put = move |i: u64| {
        let status = if i % 2 == 0 { "Accepted" } else { "Deactivated" };
        (
            reqwest::Method::PUT,
            format!("/v1/spotMembers/{}", ids3[(i as usize * 104_729) % ids3.len()]),
            Some(json!({"status": status})),
        )
    };
    let put_plain = bench.rate("no smart group", put.clone()).await;
    // OPENSPOT_BENCH_SKIP_SMART=1 leaves the smart groups out (their first computation
    // over a large spot takes minutes on PostgreSQL).
    let put_smart = if flag("OPENSPOT_BENCH_SKIP_SMART") {
        f64::NAN
    } else {
        for k in 0..10 {
            let rules = json!({"operator": "AND", "conditions": [{"operator": "OR", "triggers": [
                {"field": "status", "op": "eq", "value": "Accepted"},
                {"field": "firstname", "op": "eq", "value": format!("First{k}")}]}]});
            openspot::domain::groups::create_group(
                &db,
                spot.id,
                openspot::domain::groups::NewGroup {
                    name: Some(format!("smart {k}")),
                    kind: Some("Smart".into()),
                    rules: Some(rules),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        }
        let t = Instant::now();
        loop {
            let (groups, _) = openspot::domain::groups::list_groups(&db, spot.id, &Default::default()).await.unwrap();
            if groups.iter().all(|g| g.ready) {
                break;
            }
            if t.elapsed() > Duration::from_secs(1800) {
                panic!("smart groups not computed in 30 minutes");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        eprintln!("  10 smart groups computed over {n} members in {:.1}s (background)", t.elapsed().as_secs_f64());
        if let Db::Sqlite(p, ..) = &db {
            // Fold the computation's write-ahead log into the database first, so the
            // update figures measure updates, not a checkpoint of the bulk work.
            sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)").execute(p).await.unwrap();
        }
        bench.rate("with 10 smart groups", put).await
    };

    let (link_s, ready_s, group_size) = course_link(&bench, &db, spot.id, &ids, n).await;

    eprintln!("\nsummary (ratios to the baseline of this run, {baseline:.0} req/s):");
    eprintln!("  unfiltered page      {:.2}x", page.rate / baseline);
    eprintln!("  email[in] filter     {:.2}x", email.rate / baseline);
    eprintln!("  firstname[in] filter {:.2}x", first.rate / baseline);
    eprintln!(
        "  member update        {:.2}x (no smart group), {:.2}x (10 smart groups)",
        put_plain / baseline,
        put_smart / baseline
    );
    // Member writes are serialised (SQLite's one writer, the spot's counter row on
    // PostgreSQL), so 1/rate is the write-path time of one update.
    eprintln!(
        "  smart-group cost per member change: +{:.0} µs ({:.0} → {:.0} µs of write path per update)",
        1e6 / put_smart - 1e6 / put_plain,
        1e6 / put_plain,
        1e6 / put_smart
    );
    eprintln!(
        "  course link of a {group_size}-member group: 204 in {link_s:.3}s, every member invited in {ready_s:.2}s"
    );
}

/// Links a course to a group of (up to) 100,000 members through the API: the request's
/// own time (it answers at once, a link job invites the members in the background) and
/// the time until the course says every member is invited (`groupsReady`, polled).
async fn course_link(
    bench: &Bench,
    db: &Db,
    spot: openspot::domain::ids::SpotId,
    ids: &[Uuid],
    n: usize,
) -> (f64, f64, usize) {
    eprintln!("course linked to a large group:");
    let group_size = n.min(100_000);
    let g = openspot::domain::groups::create_group(
        db,
        spot,
        openspot::domain::groups::NewGroup { name: Some("big".into()), ..Default::default() },
    )
    .await
    .unwrap();
    for chunk in ids[..group_size].chunks(200) {
        let strs: Vec<String> = chunk.iter().map(|i| i.to_string()).collect();
        openspot::domain::groups::bulk_add(db, spot, g.id, &strs).await.unwrap();
    }
    let course = openspot::domain::courses::create_course(
        db,
        spot,
        openspot::domain::courses::CourseInput { title: Some("big course".into()), ..Default::default() },
    )
    .await
    .unwrap();
    let t = Instant::now();
    let r = bench
        .client
        .post(format!("{}/v1/courses/{}/groups~bulkAdd", bench.base, course.id))
        .header("authorization", &bench.key)
        .json(&json!({"groupIds": [g.id]}))
        .send()
        .await
        .unwrap();
    let link_s = t.elapsed().as_secs_f64();
    eprintln!("  POST groups~bulkAdd with a {group_size}-member group: HTTP {} in {link_s:.3}s", r.status());
    let get =
        |path: String| bench.client.get(format!("{}{path}", bench.base)).header("authorization", &bench.key).send();
    loop {
        let c: serde_json::Value = get(format!("/v1/courses/{}", course.id)).await.unwrap().json().await.unwrap();
        if c["groupsReady"] == true {
            break;
        }
        if t.elapsed() > Duration::from_secs(1800) {
            panic!("course link not done in 30 minutes: {c}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let ready_s = t.elapsed().as_secs_f64();
    let page: serde_json::Value =
        get(format!("/v1/courses/{}/participants?limit=1", course.id)).await.unwrap().json().await.unwrap();
    assert_eq!(page["total"], group_size, "every member invited");
    eprintln!("  every member invited (groupsReady) {ready_s:.2}s after the request");
    (link_s, ready_s, group_size)
}

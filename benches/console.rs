//! On-demand benchmark of the operator console at scale (not part of `cargo test`):
//!
//! ```sh
//! cargo bench --bench console                                   # SQLite, 1,000,000 members
//! OPENSPOT_BENCH_MEMBERS=100000 cargo bench --bench console
//! OPENSPOT_BENCH_DATABASE_URL=postgres://postgres@127.0.0.1/bench cargo bench --bench console
//! ```
//!
//! Seeds one spot below the API (`common/seed.rs`: a third of the members Accepted, a
//! Number property `score` on every second one), starts a real server on a loopback
//! port and signs in to the console as the spot's first Admin. Then:
//!
//! * each members page (unfiltered, filtered by status, by a custom property, by a
//!   text search that matches many members and one that matches few) is fetched 20
//!   times: the median and worst time of the whole request on loopback (the server's
//!   time plus well under a millisecond of client and socket) and the HTML's size;
//! * the overview page, the same way;
//! * a bulk action over the 10,000 members matching a filter (add to a group, set a
//!   property, set the status): the time from the confirmed form to the job's end, while a
//!   second client reads one member through the API every 20 ms: its worst and p99
//!   latency meanwhile, beside the same reads with nothing else running.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use openspot::domain::auth::Limits;
use openspot::domain::groups::{self, NewGroup};
use openspot::store::Db;

#[path = "common/seed.rs"]
mod seed;

/// A signed-in console client.
struct Console {
    base: String,
    client: reqwest::Client,
    cookie: String,
    csrf: String,
}

impl Console {
    async fn get(&self, path: &str) -> (Duration, usize, String) {
        let start = Instant::now();
        let r = self
            .client
            .get(format!("{}{path}", self.base))
            .header("cookie", format!("{}={}", openspot::http::console::COOKIE, self.cookie))
            .send()
            .await
            .unwrap();
        let status = r.status();
        let body = r.text().await.unwrap();
        let took = start.elapsed();
        assert!(status.is_success(), "GET {path}: {status} {body}");
        (took, body.len(), body)
    }

    async fn post_form(&self, path: &str, form: &[(&str, &str)]) -> reqwest::Response {
        let mut fields: Vec<(&str, &str)> = form.to_vec();
        fields.push(("_csrf", &self.csrf));
        self.client
            .post(format!("{}{path}", self.base))
            .header("cookie", format!("{}={}", openspot::http::console::COOKIE, self.cookie))
            .form(&fields)
            .send()
            .await
            .unwrap()
    }
}

/// Median and worst of 20 fetches of `path`, with the page's size.
async fn time_page(c: &Console, label: &str, path: &str) {
    let mut times = Vec::new();
    let mut size = 0;
    let mut body = String::new();
    for _ in 0..20 {
        let (t, n, b) = c.get(path).await;
        times.push(t);
        size = n;
        body = b;
    }
    // Which fetches were slow (an outlier's place says whether it is the first fetch
    // of a query, or periodic).
    let slow: Vec<String> = times
        .iter()
        .enumerate()
        .filter(|(_, t)| t.as_millis() >= 250)
        .map(|(i, t)| format!("#{} {:.0} ms", i + 1, t.as_secs_f64() * 1e3))
        .collect();
    if !slow.is_empty() {
        eprintln!("    slow fetches of {path}: {}", slow.join(", "));
    }
    times.sort();
    let shown = body.matches("class=\"pick\"").count();
    eprintln!(
        "  {label:<34} median {:7.1} ms, worst {:7.1} ms, {:5.1} KB, {shown} rows",
        times[times.len() / 2].as_secs_f64() * 1e3,
        times[times.len() - 1].as_secs_f64() * 1e3,
        size as f64 / 1024.0
    );
}

/// Reads one member through the API every 20 ms until `stop`; returns the latencies.
async fn probe(base: String, key: String, member: uuid::Uuid, stop: Arc<AtomicBool>) -> Vec<Duration> {
    let client = reqwest::Client::new();
    let mut out = Vec::new();
    while !stop.load(Ordering::SeqCst) {
        let start = Instant::now();
        let r = client.get(format!("{base}/v1/spotMembers/{member}")).header("authorization", &key).send().await;
        assert!(r.unwrap().status().is_success());
        out.push(start.elapsed());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    out
}

fn summary(mut lat: Vec<Duration>) -> String {
    lat.sort();
    let p = |q: f64| lat[((lat.len() - 1) as f64 * q).round() as usize].as_secs_f64() * 1e3;
    format!("p50 {:.1} ms, p99 {:.1} ms, worst {:.1} ms ({} reads)", p(0.5), p(0.99), p(1.0), lat.len())
}

/// Runs one bulk action over the members matching `query` (confirmation, then the
/// job), with the API probe running; prints the time to the job's end.
async fn time_bulk(
    c: &Console,
    db: &Db,
    spot: openspot::domain::ids::SpotId,
    key: &str,
    probe_member: uuid::Uuid,
    form: &[(&str, &str)],
) {
    let stop = Arc::new(AtomicBool::new(false));
    let probing = tokio::spawn(probe(c.base.clone(), key.to_string(), probe_member, stop.clone()));
    let start = Instant::now();
    let r = c.post_form("/console/members/bulk", form).await;
    let confirm = r.text().await.unwrap();
    let count_at = start.elapsed();
    let mut confirmed = form.to_vec();
    confirmed.push(("confirm", "1"));
    let r = c.post_form("/console/members/bulk", &confirmed).await;
    let location = r.url().path().to_string();
    let job: uuid::Uuid =
        location.rsplit('/').next().unwrap().parse().unwrap_or_else(|_| panic!("{location}: {confirm}"));
    let (total, failed) = loop {
        let j = openspot::domain::console::job(db, spot, job).await.unwrap().expect("the job exists");
        if j.finished {
            assert!(j.error.is_none(), "{:?}", j.error);
            break (j.total, j.failed);
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let took = start.elapsed();
    stop.store(true, Ordering::SeqCst);
    let lat = probing.await.unwrap();
    let action = form.iter().find(|(k, _)| *k == "action").map(|(_, v)| *v).unwrap_or("");
    eprintln!(
        "  {action:<18} {total} members ({failed} failed): {:.2} s to the job's end (confirmation page {:.0} ms)",
        took.as_secs_f64(),
        count_at.as_secs_f64() * 1e3
    );
    eprintln!("    API reads meanwhile: {}", summary(lat));
}

#[tokio::main]
async fn main() {
    let n: usize = std::env::var("OPENSPOT_BENCH_MEMBERS").ok().and_then(|v| v.parse().ok()).unwrap_or(1_000_000);
    let dir = tempfile::tempdir().unwrap();
    let url = std::env::var("OPENSPOT_BENCH_DATABASE_URL")
        .unwrap_or_else(|_| format!("sqlite://{}", dir.path().join("bench.db").display()));
    let db = Db::connect_and_migrate(&url).await.unwrap();
    let (spot, key) = openspot::domain::spots::create_spot(&db, "bench").await.unwrap();
    let score = seed::property(&db, spot.id, "score", "Score", "Number").await;
    seed::property(&db, spot.id, "team", "Team", "Text").await;
    eprintln!("openspot console benchmark: {n} members, {}", db.backend_name());
    let t = Instant::now();
    let ids = seed::seed(&db, spot.id.into(), score.id.uuid(), n).await;
    eprintln!("  seeded in {:.1}s", t.elapsed().as_secs_f64());
    // As an import does after a bulk write: the planner's statistics of the loaded
    // tables (without them PostgreSQL sorted a third of a million rows per page).
    db.analyze_after_bulk_write().await.unwrap();
    // The seed's write-ahead log into the database file now, as a server's would be by
    // then, rather than by whichever request commits next (seconds, in the figures).
    if let Db::Sqlite(p, ..) = &db {
        sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)").execute(p).await.unwrap();
    }
    let group = groups::create_group(&db, spot.id, NewGroup { name: Some("Bulk target".into()), ..Default::default() })
        .await
        .unwrap();

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let mut config = openspot::Config::new(listener.local_addr().unwrap(), None);
    config.default_limits = Limits { per_10s: 1_000_000, per_day: 100_000_000 };
    let state = openspot::AppState::new(db.clone(), config).unwrap();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(openspot::serve(state, listener, async move {
        let _ = stop_rx.await;
    }));

    // The seed's member 0 is an Admin (m0@bench.io).
    let token = openspot::domain::console::create_login_link(&db, spot.id, "m0@bench.io").await.unwrap();
    let session = openspot::domain::console::sign_in_with_link(&db, &token, None).await.unwrap();
    let s = openspot::domain::console::authenticate(&db, &session.cookie_value).await.unwrap();
    let c = Console {
        base: base.clone(),
        client: reqwest::Client::builder().redirect(reqwest::redirect::Policy::limited(2)).build().unwrap(),
        cookie: session.cookie_value.clone(),
        csrf: s.csrf_token.clone(),
    };

    eprintln!("console pages (20 fetches each, whole request on loopback):");
    time_page(&c, "overview", "/console/").await;
    time_page(&c, "members, first page", "/console/members").await;
    time_page(&c, "members, status = Accepted", "/console/members?status=Accepted").await;
    time_page(&c, "members, role = Admin", "/console/members?role=Admin").await;
    time_page(&c, "members, score >= 50", "/console/members?prop=score&op=gte&value=50").await;
    time_page(&c, "members, score < 1 (few)", "/console/members?prop=score&op=lt&value=1").await;
    time_page(&c, "members, score >= 50, Accepted", "/console/members?prop=score&op=gte&value=50&status=Accepted")
        .await;
    time_page(&c, "members, search 'first12' (many)", "/console/members?q=first12").await;
    time_page(&c, "members, search 'm123456@' (one)", "/console/members?q=m123456%40").await;
    time_page(&c, "members, search 'last99' by name", "/console/members?q=last99&sort=lastname").await;

    // Every value of `score` is held by n/200 members: enough values for 10,000.
    let per_value = (n / 200).max(1);
    let below = (10_000 / per_value).clamp(1, 100);
    let query = format!("prop=score&op=lt&value={below}");
    let quiet = {
        let stop = Arc::new(AtomicBool::new(false));
        let probing = tokio::spawn(probe(base.clone(), key.clone(), ids[1], stop.clone()));
        tokio::time::sleep(Duration::from_secs(3)).await;
        stop.store(true, Ordering::SeqCst);
        probing.await.unwrap()
    };
    eprintln!("bulk actions over the {} members with score < {below}:", below * per_value);
    eprintln!("    API reads with nothing else running: {}", summary(quiet));
    let group_id = group.id.to_string();
    let common = [("scope", "all"), ("query", query.as_str())];
    let mut add = common.to_vec();
    add.extend([("action", "add_to_group"), ("target", group_id.as_str())]);
    time_bulk(&c, &db, spot.id, &key, ids[1], &add).await;
    let mut set = common.to_vec();
    set.extend([("action", "set_property"), ("target", "team"), ("value", "Blue")]);
    time_bulk(&c, &db, spot.id, &key, ids[1], &set).await;
    let mut status = common.to_vec();
    status.extend([("action", "set_status"), ("target", "Deactivated")]);
    time_bulk(&c, &db, spot.id, &key, ids[1], &status).await;

    let _ = stop_tx.send(());
    let _ = server.await;
}

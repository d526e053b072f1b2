//! The security issue, tried as an attacker would: hostile bodies, PIN guessing,
//! revocation, the membership oracle, slow clients, the in-flight cap, floods of bad
//! keys, and secrets in the logs. Each test fails without the protection it names.

use std::time::{Duration, Instant};

use futures_util::future::join_all;
use reqwest::Method;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::both;
use crate::common::{assert_ms_error, outlive_auth_cache, Resp, TestApp};
use crate::kaizala::{access, assert_kz_error, call, raw, relayed, setup, slow_sms_receiver, sms_receiver, user};

fn nested_arrays(depth: usize) -> String {
    format!("{}{}", "[".repeat(depth), "]".repeat(depth))
}

/// Every operation of `/openapi.json` that takes a JSON body: (method, path with its
/// parameters filled in).
async fn json_body_operations(app: &TestApp) -> Vec<(Method, String)> {
    let doc: Value = app.client.get(format!("{}/openapi.json", app.base)).send().await.unwrap().json().await.unwrap();
    let mut ops = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            if op["requestBody"]["content"].get("application/json").is_none() {
                continue;
            }
            let mut filled = String::new();
            for seg in path.split('/').filter(|s| !s.is_empty()) {
                filled.push('/');
                if let Some(end) = seg.strip_prefix('{').and_then(|s| s.find('}')) {
                    // `{id}` or `{id}~operation`: the id replaced, the operation kept.
                    filled.push_str(&uuid::Uuid::new_v4().to_string());
                    filled.push_str(&seg[end + 2..]);
                } else {
                    filled.push_str(seg);
                }
            }
            ops.push((method.to_uppercase().parse().unwrap(), filled));
        }
    }
    ops
}

both!(deep_bodies_are_refused_and_the_server_keeps_serving, |app| {
    // The reported crash: 100,000 `[` to an anonymous Kaizala endpoint.
    let r = raw(&app, Method::POST, "/kaizala/v1/generatePin", &[], Some("[".repeat(100_000).as_bytes())).await;
    let msg = assert_kz_error(&r, 400, "InvalidParameters");
    assert!(msg.contains("deeper than 64"), "{msg}");
    assert_eq!(app.get("/healthz").await.status, 200);
    // A line comment that JSON5 ends at U+2028 must not hide the brackets after it.
    let hidden = format!("{{a: //\u{2028}{}", "[".repeat(100_000));
    let r = raw(&app, Method::POST, "/kaizala/v1/generatePin", &[], Some(hidden.as_bytes())).await;
    assert_kz_error(&r, 400, "InvalidParameters");
    assert_eq!(app.get("/healthz").await.status, 200);
    // JSON5 objects, unquoted keys.
    let objects = format!("{}1{}", "{a:".repeat(5_000), "}".repeat(5_000));
    let r = raw(&app, Method::POST, "/kaizala/v1/loginWithPinAndApplicationId", &[], Some(objects.as_bytes())).await;
    assert_kz_error(&r, 400, "InvalidParameters");

    // Every JSON body of both dialects refuses 1,000 levels with the dialect's 400.
    let kz = setup(&app, "+911199999999").await;
    let ops = json_body_operations(&app).await;
    assert!(ops.len() >= 20, "{ops:?}");
    let body = nested_arrays(1_000);
    for (method, path) in ops {
        let mut rb = app.client.request(method.clone(), format!("{}{path}", app.base)).body(body.clone());
        rb = rb.header("content-type", "application/json");
        rb = if path.starts_with("/kaizala") {
            rb.header("accessToken", &kz.token)
        } else {
            rb.header("authorization", &app.key)
        };
        let r = rb.send().await.unwrap();
        let status = r.status().as_u16();
        let text = r.text().await.unwrap();
        assert_eq!(status, 400, "{method} {path}: {text}");
        assert!(text.contains("deeper than 64"), "{method} {path}: {text}");
    }
    // Smart-group rules nested 1,000 deep inside an otherwise valid body.
    let rules = format!("{{\"operator\": \"AND\", \"conditions\": {}}}", nested_arrays(1_000));
    let body = format!("{{\"name\": \"deep\", \"type\": \"Smart\", \"rules\": {rules}}}");
    let r = app.post_raw("/v1/groups", body.into_bytes(), "application/json").await;
    assert!(assert_ms_error(&r, 400).contains("deeper than 64"));
    // Shallow bodies at the limit still parse.
    let ok = format!("{{\"name\": \"ok\", \"description\": \"{}\"}}", "[".repeat(10_000));
    assert_eq!(app.post_raw("/v1/groups", ok.into_bytes(), "application/json").await.status, 201);
    assert_eq!(app.get("/healthz").await.status, 200);
});

fn login_body(app_id: &str, number: &str, pin: &str) -> String {
    json!({"mobileNumber": number, "applicationId": app_id, "pin": pin}).to_string()
}

async fn login(app: &TestApp, app_id: &str, number: &str, pin: &str) -> Resp {
    let body = login_body(app_id, number, pin);
    raw(app, Method::POST, "/kaizala/v1/loginWithPinAndApplicationId", &[], Some(body.as_bytes())).await
}

async fn generate_pin(app: &TestApp, app_id: &str, number: &str) -> Resp {
    let body = json!({"mobileNumber": number, "applicationId": app_id}).to_string();
    raw(app, Method::POST, "/kaizala/v1/generatePin", &[], Some(body.as_bytes())).await
}

fn wrong_pin(pin: &str) -> &'static str {
    if pin == "1000" {
        "1001"
    } else {
        "1000"
    }
}

type Relayed = std::sync::Arc<std::sync::Mutex<Vec<Value>>>;

/// A server whose PINs go to a loopback relay, with `tweak` applied to its limits.
async fn app_with_relay(
    backend: openspot::store::Backend,
    tweak: impl FnOnce(&mut openspot::config::AuthLimits),
) -> Option<(TestApp, Relayed)> {
    let (url, seen) = sms_receiver().await;
    let app = TestApp::spawn_with(backend, |c| {
        c.sms_webhook_url = Some(url.clone());
        c.allow_private_targets = true;
        tweak(&mut c.auth);
    })
    .await?;
    Some((app, seen))
}

async fn pin_guessing_hits_a_lockout(backend: openspot::store::Backend) {
    let Some((app, seen)) = app_with_relay(backend, |a| {
        a.pins_per_number = 100;
        a.pin_calls_per_address = 1_000;
    })
    .await
    else {
        return;
    };
    let victim = "+911199999999";
    let kz = setup(&app, victim).await;
    user(&app, &kz.app_id, &kz.secret, "+911199999998").await;
    // Two PINs, five wrong guesses each: ten failures this hour.
    for round in 1..=2 {
        assert_eq!(generate_pin(&app, &kz.app_id, victim).await.status, 200);
        let pin = relayed(&seen, round).await[round - 1]["pin"].as_str().unwrap().to_string();
        for _ in 0..5 {
            assert_kz_error(&login(&app, &kz.app_id, victim, wrong_pin(&pin)).await, 401, "Unauthenticated");
        }
    }
    // A third PIN does not reset the count: even the right PIN is refused now.
    assert_eq!(generate_pin(&app, &kz.app_id, victim).await.status, 200);
    let pin = relayed(&seen, 3).await[2]["pin"].as_str().unwrap().to_string();
    let r = login(&app, &kz.app_id, victim, &pin).await;
    assert_kz_error(&r, 429, "Throttled");
    let retry: u64 = r.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=3600).contains(&retry), "{retry}");
    // Another number is not locked.
    assert_eq!(generate_pin(&app, &kz.app_id, "+911199999998").await.status, 200);
    let pin = relayed(&seen, 4).await[3]["pin"].as_str().unwrap().to_string();
    assert_eq!(login(&app, &kz.app_id, "+911199999998", &pin).await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pin_guessing_hits_a_lockout_sqlite() {
    pin_guessing_hits_a_lockout(openspot::store::Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pin_guessing_hits_a_lockout_postgres() {
    pin_guessing_hits_a_lockout(openspot::store::Backend::Postgres).await;
}

async fn tries_left(db: &openspot::Db) -> Vec<i64> {
    let sql = "SELECT tries_left FROM kz_pins";
    match db {
        openspot::Db::Sqlite(p, ..) => sqlx::query_scalar(sql).fetch_all(p).await.unwrap(),
        openspot::Db::Postgres(p) => sqlx::query_scalar(sql).fetch_all(p).await.unwrap(),
    }
}

async fn concurrent_guesses_share_five_tries(backend: openspot::store::Backend) {
    // The number's hourly attempt budget stays at its default (10).
    let Some((app, seen)) = app_with_relay(backend, |a| {
        a.pin_calls_per_address = 1_000;
        a.pin_calls_per_connector = 1_000;
    })
    .await
    else {
        return;
    };
    let number = "+911199999999";
    let kz = setup(&app, number).await;
    assert_eq!(generate_pin(&app, &kz.app_id, number).await.status, 200);
    let pin = relayed(&seen, 1).await[0]["pin"].as_str().unwrap().to_string();
    let guesses = (0..50).map(|_| login(&app, &kz.app_id, number, wrong_pin(&pin)));
    let answers = join_all(guesses).await;
    let count = |s: u16| answers.iter().filter(|r| r.status == s).count();
    // Exactly ten guesses reached the PIN check; the other forty met the lockout.
    assert_eq!((count(401), count(429)), (10, 40), "{:?}", answers.iter().map(|r| r.status).collect::<Vec<_>>());
    // Of those ten, exactly the PIN's five tries were spent, never more: a stale read
    // would drive the count below zero (each guess decrementing the 5 it read).
    assert_eq!(tries_left(&app.db).await, vec![0]);
    assert_kz_error(&login(&app, &kz.app_id, number, &pin).await, 429, "Throttled");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_guesses_share_five_tries_sqlite() {
    concurrent_guesses_share_five_tries(openspot::store::Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_guesses_share_five_tries_postgres() {
    concurrent_guesses_share_five_tries(openspot::store::Backend::Postgres).await;
}

both!(replaced_tokens_and_signed_out_members_lose_access, |app| {
    let number = "+911199999999";
    let kz = setup(&app, number).await;
    // A second token for the same (connector, member) revokes the first pair's access
    // token at once (this one was never used, so no replica has it cached).
    let fresh = kz.token.clone();
    let again = user(&app, &kz.app_id, &kz.secret, number).await;
    assert_kz_error(&call(&app, &kz, Method::GET, "/groups", None).await, 401, "InvalidToken");
    assert_kz_error(&access(&app, &kz.app_id, &kz.secret, &kz.refresh).await, 401, "InvalidToken");
    assert_ne!(fresh, again.token);
    assert_eq!(call(&app, &again, Method::GET, "/groups", None).await.status, 200);

    // Deactivating the member (through the other dialect) ends every way in.
    let list = app.get("/v1/spotMembers?limit=100").await;
    let id = list.body["items"].as_array().unwrap().iter().find(|m| m["mobileNumber"] == number).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(app.put(&format!("/v1/spotMembers/{id}"), json!({"status": "Deactivated"})).await.status, 200);
    // Within the auth cache's lifetime.
    outlive_auth_cache(&app).await;
    assert_kz_error(&call(&app, &again, Method::GET, "/groups", None).await, 401, "InvalidToken");
    assert_kz_error(&access(&app, &kz.app_id, &kz.secret, &again.refresh).await, 401, "InvalidToken");
    assert!(openspot::domain::kaizala::create_user_token(&app.db, &kz.app_id, number).await.is_err());
    assert_eq!(generate_pin(&app, &kz.app_id, number).await.body, json!({}));
    assert_kz_error(&login(&app, &kz.app_id, number, "1234").await, 401, "Unauthenticated");
    // Reactivation does not revive the tokens the member held when signed out.
    assert_eq!(app.put(&format!("/v1/spotMembers/{id}"), json!({"status": "Accepted"})).await.status, 200);
    assert_kz_error(&access(&app, &kz.app_id, &kz.secret, &again.refresh).await, 401, "InvalidToken");
    assert_kz_error(&call(&app, &again, Method::GET, "/groups", None).await, 401, "InvalidToken");
    assert!(!user(&app, &kz.app_id, &kz.secret, number).await.token.is_empty());
});

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generate_pin_answers_members_and_strangers_alike() {
    let (url, seen) = slow_sms_receiver(Duration::from_secs(2)).await;
    let Some(app) = TestApp::spawn_with(openspot::store::Backend::Sqlite, |c| {
        c.sms_webhook_url = Some(url.clone());
        c.allow_private_targets = true;
        c.auth.pins_per_number = 100;
        c.auth.pin_calls_per_address = 1_000;
    })
    .await
    else {
        return;
    };
    let kz = setup(&app, "+911199999999").await;
    let (mut member, mut stranger) = (Vec::new(), Vec::new());
    for _ in 0..8 {
        for (number, times) in [("+911199999999", &mut member), ("+911199999990", &mut stranger)] {
            let t = Instant::now();
            let r = generate_pin(&app, &kz.app_id, number).await;
            times.push(t.elapsed());
            assert_eq!((r.status, r.text.as_str()), (200, "{}"));
        }
    }
    let (m, s) = (median(member.clone()), median(stranger.clone()));
    eprintln!("generatePin median: member {m:?}, non-member {s:?}");
    // The 2-second relay is never waited for, so it cannot tell the two apart.
    assert!(member.iter().all(|d| *d < Duration::from_secs(1)), "{member:?}");
    assert!(m.abs_diff(s) < Duration::from_millis(20), "member {m:?} vs non-member {s:?}");
    // The member's PINs did go out.
    assert!(!relayed(&seen, 1).await.is_empty());
}

/// A raw TCP exchange: writes `head`, then reads until the server answers or closes.
async fn read_until_closed(stream: &mut tokio::net::TcpStream, within: Duration) -> (String, Duration) {
    let start = Instant::now();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        match tokio::time::timeout(within.saturating_sub(start.elapsed()), stream.read(&mut chunk)).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => break,
            Ok(Ok(n)) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    (String::from_utf8_lossy(&buf).into_owned(), start.elapsed())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_and_idle_clients_are_cut_off() {
    let Some(app) = TestApp::spawn_with(openspot::store::Backend::Sqlite, |c| {
        c.server.header_read_timeout = Duration::from_secs(1);
        c.server.request_timeout = Duration::from_secs(2);
        c.server.max_in_flight = 1;
    })
    .await
    else {
        return;
    };
    let addr = app.base.trim_start_matches("http://").to_string();
    // Headers that never end: the connection is closed after the head timeout.
    let mut s = tokio::net::TcpStream::connect(&addr).await.unwrap();
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ").await.unwrap();
    let (_, took) = read_until_closed(&mut s, Duration::from_secs(10)).await;
    assert!(took < Duration::from_secs(5), "slow head held for {took:?}");

    // An idle keep-alive connection is closed too.
    let mut s = tokio::net::TcpStream::connect(&addr).await.unwrap();
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    let (text, took) = read_until_closed(&mut s, Duration::from_secs(10)).await;
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(took < Duration::from_secs(5), "idle connection held for {took:?}");

    // A body that trickles: 408 within the request timeout, and the connection closes.
    let mut slow = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let head = format!(
        "POST /v1/spotMembers HTTP/1.1\r\nHost: x\r\nAuthorization: {}\r\nContent-Type: application/json\r\n\
         Content-Length: 100\r\n\r\n{{\"email\"",
        app.key
    );
    slow.write_all(head.as_bytes()).await.unwrap();
    let slow_answer = tokio::spawn(async move { read_until_closed(&mut slow, Duration::from_secs(10)).await });
    // While it holds the one in-flight slot, other requests get 503 at once; probes still answer.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let r = app.get("/v1/spotMembers").await;
    assert_ms_error(&r, 503);
    assert_eq!(r.header("retry-after").as_deref(), Some("1"));
    assert_eq!(app.get("/healthz").await.status, 200);
    let (text, took) = slow_answer.await.unwrap();
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(text.contains("\"statusCode\":408"), "{text}");
    assert!(took < Duration::from_secs(5), "slow body held for {took:?}");
    assert_eq!(app.get("/v1/spotMembers").await.status, 200);
}

/// A request head with more than 100 headers is refused with 431 (hyper's default
/// bound, which the connection loop relies on); 100 are served.
#[tokio::test]
async fn too_many_headers_are_refused() {
    let Some(app) = TestApp::spawn(openspot::store::Backend::Sqlite).await else {
        return;
    };
    let addr = app.base.trim_start_matches("http://").to_string();
    for (extra, status) in [(98, "HTTP/1.1 200"), (101, "HTTP/1.1 431")] {
        let mut head = String::from("GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n");
        for i in 0..extra {
            head.push_str(&format!("X-Extra-{i}: v\r\n"));
        }
        head.push_str("\r\n");
        let mut s = tokio::net::TcpStream::connect(&addr).await.unwrap();
        s.write_all(head.as_bytes()).await.unwrap();
        let (text, _) = read_until_closed(&mut s, Duration::from_secs(10)).await;
        assert!(text.starts_with(status), "{} headers: {text}", extra + 2);
    }
}

/// A server whose auth cache keeps the production lifetime: the flood below outlasts
/// the tests' 200 ms, and what it proves relies on entries staying cached meanwhile.
async fn app_with_default_auth_cache(backend: openspot::store::Backend) -> Option<TestApp> {
    TestApp::spawn_with(backend, |c| c.auth_cache_ttl = openspot::config::DEFAULT_AUTH_CACHE_TTL).await
}

async fn a_flood_of_bad_keys_barely_reaches_the_database(backend: openspot::store::Backend) {
    let Some(app) = app_with_default_auth_cache(backend).await else { return };
    let limit = app.state.config.auth.failed_auth_per_address as u64;
    assert_eq!(app.get("/v1/spotMembers").await.status, 200);
    let before = app.state.keys.db_lookups();
    let start = Instant::now();
    let mut statuses = std::collections::HashMap::<u16, u32>::new();
    // 10,000 requests, 50 at a time (well under the 128 connections one address may hold).
    for batch in 0..200 {
        let reqs = (0..50).map(|i| {
            let key = format!("os_bad_{batch}_{i}_{}", uuid::Uuid::new_v4().simple());
            let app = &app;
            async move { app.send(Method::GET, "/v1/spotMembers", Some(&key), None).await }
        });
        for r in join_all(reqs).await {
            *statuses.entry(r.status).or_default() += 1;
        }
    }
    let lookups = app.state.keys.db_lookups() - before;
    eprintln!("10,000 bad keys: {statuses:?}, {lookups} database lookups, {:?}", start.elapsed());
    assert!(lookups <= limit + 100, "{lookups} lookups reached the database");
    assert!(statuses.get(&429).copied().unwrap_or(0) >= 9_000 - 100, "{statuses:?}");
    assert_eq!(statuses.values().sum::<u32>(), 10_000);
    // A valid key this process knows still works from the throttled address.
    assert_eq!(app.get("/v1/spotMembers").await.status, 200);
    assert_ms_error(&app.send(Method::GET, "/v1/spotMembers", Some("os_yet_another"), None).await, 429);
    // Repeating one bad key costs one lookup at most (it is cached as unknown).
    let Some(fresh) = app_with_default_auth_cache(app.db.backend()).await else { return };
    let before = fresh.state.keys.db_lookups();
    for _ in 0..20 {
        assert_ms_error(&fresh.send(Method::GET, "/v1/spotMembers", Some("os_same_bad_key"), None).await, 401);
    }
    assert_eq!(fresh.state.keys.db_lookups() - before, 1);
}

mod a_flood_of_bad_keys_barely_reaches_the_database {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sqlite() {
        super::a_flood_of_bad_keys_barely_reaches_the_database(openspot::store::Backend::Sqlite).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres() {
        super::a_flood_of_bad_keys_barely_reaches_the_database(openspot::store::Backend::Postgres).await;
    }
}

/// Runs the real binary with `args` (SQLite at `db`) and returns its stdout as JSON.
pub(crate) fn cli_json(db: &str, args: &[&str]) -> Value {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_openspot"))
        .args(["--database-url", db])
        .args(args)
        .output()
        .unwrap();
    assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Starts `openspot serve` (asked to listen on port 0) with its stderr captured; returns
/// the process, the address it reported on its `listening on` line (bound before that
/// line is printed, so it answers at once), and a thread that yields the whole log once
/// the process ends.
pub(crate) async fn serve_logged(
    command: &mut std::process::Command,
) -> (std::process::Child, String, std::thread::JoinHandle<String>) {
    let mut child = command.stdout(std::process::Stdio::null()).stderr(std::process::Stdio::piped()).spawn().unwrap();
    let (bound_tx, bound_rx) = tokio::sync::oneshot::channel();
    let stderr = child.stderr.take().unwrap();
    let log_reader = std::thread::spawn(move || {
        use std::io::BufRead;
        let mut log = String::new();
        let mut bound_tx = Some(bound_tx);
        for line in std::io::BufReader::new(stderr).lines() {
            let line = line.unwrap();
            if let Some(addr) = line.strip_prefix("listening on ") {
                if let Some(tx) = bound_tx.take() {
                    let _ = tx.send(addr.to_string());
                }
            }
            log.push_str(&line);
            log.push('\n');
        }
        log
    });
    let listen = tokio::time::timeout(Duration::from_secs(20), bound_rx)
        .await
        .expect("server never reported its address")
        .expect("server ended before listening");
    (child, listen, log_reader)
}

/// Sends SIGTERM and waits (bounded) for the process to exit.
pub(crate) async fn stop(mut child: std::process::Child) {
    std::process::Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    let start = Instant::now();
    while child.try_wait().unwrap().is_none() {
        assert!(start.elapsed() < Duration::from_secs(40), "no exit after SIGTERM");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_reaches_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("logs.db").display());
    let spot = cli_json(&db, &["spots", "create", "--name", "logs", "--json"]);
    let key = spot["apiKey"].as_str().unwrap().to_string();
    let spot_id = spot["spotId"].as_str().unwrap().to_string();
    let conn = cli_json(&db, &["kaizala", "connectors", "create", "--spot", &spot_id, "--name", "c", "--json"]);
    let (app_id, secret) =
        (conn["applicationId"].as_str().unwrap().to_string(), conn["applicationSecret"].as_str().unwrap().to_string());
    let number = "+911199999999";
    let minted = cli_json(
        &db,
        &["kaizala", "tokens", "create", "--application-id", &app_id, "--mobile-number", number, "--json"],
    );
    let refresh = minted["refreshToken"].as_str().unwrap().to_string();

    // The relay's URL carries credentials, as an SMS gateway's often does.
    let (relay, seen) = sms_receiver().await;
    let relay = relay.replace("http://", "http://relayuser:relaysecret@");
    let (child, listen, log_reader) = serve_logged(
        std::process::Command::new(env!("CARGO_BIN_EXE_openspot"))
            .args(["--database-url", &db, "serve", "--listen", "127.0.0.1:0"])
            .env("RUST_LOG", "debug")
            .env("OPENSPOT_SMS_WEBHOOK_URL", &relay)
            .env("OPENSPOT_ALLOW_PRIVATE_TARGETS", "true"),
    )
    .await;
    let base = format!("http://{listen}");
    let client = crate::common::test_client();
    let ok = client.get(format!("{base}/v1/spotMembers")).header("authorization", &key).send().await.unwrap();
    assert_eq!(ok.status(), 200);
    let r = client
        .get(format!("{base}/kaizala/v1/accessToken"))
        .header("applicationId", &app_id)
        .header("applicationSecret", &secret)
        .header("refreshToken", &refresh)
        .send()
        .await
        .unwrap();
    let token = r.json::<Value>().await.unwrap()["accessToken"].as_str().unwrap().to_string();
    let r = client.get(format!("{base}/kaizala/v1/groups")).header("accessToken", &token).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let r = client
        .post(format!("{base}/kaizala/v1/generatePin"))
        .body(json!({"mobileNumber": number, "applicationId": app_id}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let pin = relayed(&seen, 1).await[0]["pin"].as_str().unwrap().to_string();
    let r = client
        .post(format!("{base}/kaizala/v1/loginWithPinAndApplicationId"))
        .body(
            json!({"mobileNumber": number, "applicationId": app_id, "pin": pin, "applicationSecret": secret})
                .to_string(),
        )
        .send()
        .await
        .unwrap();
    let second_refresh = r.json::<Value>().await.unwrap()["refreshToken"].as_str().unwrap().to_string();
    stop(child).await;

    let log = log_reader.join().unwrap();
    assert!(log.contains("PIN sent through the SMS relay"), "the log was captured: {log}");
    for (what, secret) in [
        ("API key", key.as_str()),
        ("application secret", secret.as_str()),
        ("refresh token", refresh.as_str()),
        ("second refresh token", second_refresh.as_str()),
        ("access token", token.as_str()),
        ("relay credentials", "relaysecret"),
    ] {
        assert!(!secret.is_empty());
        assert!(!log.contains(secret), "the log contains the {what}");
    }
    for line in log.lines().filter(|l| l.to_lowercase().contains("pin")) {
        assert!(!line.contains(&pin), "the log shows the PIN: {line}");
    }

    // Without a relay the server says a PIN was issued, and not which.
    let (child, listen, log_reader) = serve_logged(
        std::process::Command::new(env!("CARGO_BIN_EXE_openspot"))
            .args(["--database-url", &db, "serve", "--listen", "127.0.0.1:0"])
            .env("RUST_LOG", "debug")
            .env_remove("OPENSPOT_SMS_WEBHOOK_URL"),
    )
    .await;
    let r = client
        .post(format!("http://{listen}/kaizala/v1/generatePin"))
        .body(json!({"mobileNumber": number, "applicationId": app_id}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    stop(child).await;
    let log = log_reader.join().unwrap();
    assert!(log.contains("Kaizala PIN issued"), "{log}");
    for line in log.lines() {
        assert!(!line.contains("pin=") && !line.contains("\"pin\""), "the log shows a PIN: {line}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_address_cannot_hold_every_connection() {
    let Some(app) = TestApp::spawn_with(openspot::store::Backend::Sqlite, |c| {
        c.server.max_connections_per_address = 2;
    })
    .await
    else {
        return;
    };
    let addr = app.base.trim_start_matches("http://").to_string();
    let held =
        [tokio::net::TcpStream::connect(&addr).await.unwrap(), tokio::net::TcpStream::connect(&addr).await.unwrap()];
    tokio::time::sleep(Duration::from_millis(200)).await;
    // A third connection from the same address is closed at once, unanswered.
    let mut third = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let _ = third.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").await;
    let (text, took) = read_until_closed(&mut third, Duration::from_secs(5)).await;
    assert!(text.is_empty(), "{text}");
    assert!(took < Duration::from_secs(2), "{took:?}");
    // Given back when they close.
    drop(held);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(app.get("/healthz").await.status, 200);
}

/// Waits out the last seconds of a minute, so a few steps fit in one failed-auth window.
async fn start_of_a_minute() {
    let s = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() % 60;
    if s > 45 {
        tokio::time::sleep(Duration::from_secs(61 - s)).await;
    }
}

/// The failed-auth throttle counts refused Kaizala access tokens, application secrets
/// and refresh tokens, but not wrong PINs (they have budgets of their own); past the
/// limit an address is refused before any lookup, valid token or not.
async fn kaizala_credential_failures_are_throttled_per_address(backend: openspot::store::Backend) {
    let Some(app) = TestApp::spawn_with(backend, |c| c.auth.failed_auth_per_address = 3).await else { return };
    let number = "+911188888888";
    let kz = setup(&app, number).await;
    start_of_a_minute().await;
    for _ in 0..5 {
        let m = assert_kz_error(&login(&app, &kz.app_id, number, "1000").await, 401, "Unauthenticated");
        assert_eq!(m, "Invalid mobile number, PIN or application");
    }
    assert_eq!(call(&app, &kz, Method::GET, "/groups", None).await.status, 200);
    let m = assert_kz_error(&access(&app, &kz.app_id, "wrong", &kz.refresh).await, 401, "Unauthenticated");
    assert_eq!(m, "Dont have correct applicationId and secret in header!");
    let m = assert_kz_error(&access(&app, &kz.app_id, &kz.secret, "kzr_bogus").await, 401, "InvalidToken");
    assert_eq!(m, "Invalid token. Failure reason:Token validation failed due to unknown reason!");
    let r = raw(&app, Method::GET, "/kaizala/v1/groups", &[("accessToken", "kza_bogus")], None).await;
    assert_kz_error(&r, 401, "InvalidToken");
    // Three failures: the address is refused now, whatever it presents.
    let r = call(&app, &kz, Method::GET, "/groups", None).await;
    assert_kz_error(&r, 429, "Throttled");
    assert!(r.header("retry-after").and_then(|v| v.parse::<u64>().ok()).is_some_and(|s| (1..=60).contains(&s)));
    assert_kz_error(&access(&app, &kz.app_id, &kz.secret, &kz.refresh).await, 429, "Throttled");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kaizala_credential_failures_are_throttled_per_address_sqlite() {
    kaizala_credential_failures_are_throttled_per_address(openspot::store::Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kaizala_credential_failures_are_throttled_per_address_postgres() {
    kaizala_credential_failures_are_throttled_per_address(openspot::store::Backend::Postgres).await;
}

// An oversized body is refused before it is read; the client, still sending, must get
// the 413 rather than a reset connection (the server reads and drops the rest first).
both!(a_refused_upload_still_gets_its_answer, |app| {
    let addr = app.base.trim_start_matches("http://").to_string();
    // Well past what the kernel's socket buffers absorb, within what the server drains.
    for (path, size) in [("/v1/spotMembers", 12usize << 20), ("/v1/spotMembers~import", 14 << 20)] {
        let mut s = tokio::net::TcpStream::connect(&addr).await.unwrap();
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: x\r\nAuthorization: {}\r\nContent-Type: multipart/form-data; \
             boundary=XX\r\nContent-Length: {size}\r\n\r\n--XX\r\nContent-Disposition: form-data; name=\"file\"; \
             filename=\"m.csv\"\r\n\r\n",
            app.key
        );
        s.write_all(head.as_bytes()).await.unwrap();
        // Write the whole body as a client library does before it reads the answer: a
        // connection reset under it here is what clients saw as a broken pipe.
        let body = vec![b'a'; size];
        s.write_all(&body).await.unwrap_or_else(|e| panic!("{path}: the upload was cut off: {e}"));
        let (text, _) = read_until_closed(&mut s, Duration::from_secs(10)).await;
        assert!(text.starts_with("HTTP/1.1 413"), "{path}: {text:?}");
        assert!(text.contains("Payload is too large"), "{path}: {text}");
    }
});

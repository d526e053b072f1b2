//! Database faults: PostgreSQL going away under traffic (through a TCP proxy the test
//! cuts, so the shared server keeps running) and a read-only SQLite file. The server
//! answers 503 within a bound, says why, never panics, and recovers by itself.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use openspot::config::Config;
use openspot::http::AppState;
use openspot::store::{Backend, Db};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

use crate::common::{test_client, test_database};

/// A TCP proxy to PostgreSQL that the test can cut (every connection dropped, new ones
/// refused) and restore.
struct Proxy {
    port: u16,
    open: Arc<AtomicBool>,
    links: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

impl Proxy {
    async fn start(target: String) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let open = Arc::new(AtomicBool::new(true));
        let links: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let (open2, links2) = (open.clone(), links.clone());
        tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                if !open2.load(Ordering::SeqCst) {
                    continue; // dropped: the connection is closed at once
                }
                let target = target.clone();
                let link = tokio::spawn(async move {
                    if let Ok(mut server) = TcpStream::connect(&target).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
                links2.lock().unwrap().push(link);
            }
        });
        Proxy { port, open, links }
    }

    fn cut(&self) {
        self.open.store(false, Ordering::SeqCst);
        for link in self.links.lock().unwrap().drain(..) {
            link.abort();
        }
    }

    fn restore(&self) {
        self.open.store(true, Ordering::SeqCst);
    }
}

/// Polls `url` until it answers `status` (true) or `within` passes (false).
async fn answers(client: &reqwest::Client, url: &str, key: &str, status: u16, within: Duration) -> bool {
    let start = Instant::now();
    while start.elapsed() < within {
        if let Ok(r) = client.get(url).header("authorization", key).send().await {
            if r.status().as_u16() == status {
                return true;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_going_away_answers_503_and_service_resumes() {
    let Some((url, _dir, _pg)) = test_database(Backend::Postgres).await else { return };
    // The same database, reached through the proxy.
    let after_scheme = url.trim_start_matches("postgres://");
    let (auth_host, db_name) = after_scheme.split_once('/').unwrap();
    let (auth, host) = auth_host.rsplit_once('@').map_or(("", auth_host), |(a, h)| (a, h));
    let proxy = Proxy::start(host.to_string()).await;
    let at = if auth.is_empty() { String::new() } else { format!("{auth}@") };
    let proxied = format!("postgres://{at}127.0.0.1:{}/{db_name}", proxy.port);

    let db = Db::connect_and_migrate(&proxied).await.unwrap();
    let (_, key) = openspot::domain::spots::create_spot(&db, "outage").await.unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let mut config = Config::new(addr, None);
    config.auth_cache_ttl = Duration::from_millis(100);
    let state = AppState::new(db.clone(), config).unwrap();
    tokio::spawn(async move {
        let _ = openspot::serve(state, listener, std::future::pending()).await;
    });
    let client = test_client();
    let (members, ready) = (format!("http://{addr}/v1/spotMembers"), format!("http://{addr}/readyz"));
    assert!(answers(&client, &members, &key, 200, Duration::from_secs(5)).await);

    proxy.cut();
    // Readiness says so within its 2-second probe bound.
    assert!(answers(&client, &ready, &key, 503, Duration::from_secs(5)).await, "/readyz turns 503");
    // Requests fail with 503 and a reason, within a bound, and never hang.
    tokio::time::sleep(Duration::from_millis(200)).await; // past the auth cache
    for _ in 0..3 {
        let start = Instant::now();
        let r = client.get(&members).header("authorization", &key).send().await.unwrap();
        let took = start.elapsed();
        assert_eq!(r.status(), 503, "a database outage is a 503");
        assert!(r.headers().contains_key("retry-after"));
        let body: serde_json::Value = r.json().await.unwrap();
        assert!(body["message"].as_str().unwrap().contains("unavailable"), "{body}");
        assert!(took < Duration::from_secs(12), "answered in {took:?}");
    }

    proxy.restore();
    assert!(answers(&client, &ready, &key, 200, Duration::from_secs(15)).await, "/readyz recovers by itself");
    assert!(answers(&client, &members, &key, 200, Duration::from_secs(15)).await, "requests recover by themselves");
    db.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_only_sqlite_file_refuses_writes_clearly() {
    let (url, dir, _) = test_database(Backend::Sqlite).await.unwrap();
    let db = Db::connect_and_migrate(&url).await.unwrap();
    let (_, key) = openspot::domain::spots::create_spot(&db, "read-only").await.unwrap();
    db.close().await;
    // The same file opened read-only (as on a read-only mount).
    let path = dir.as_ref().unwrap().path().join("openspot.db");
    let ro = Db::connect(&format!("sqlite://{}?mode=ro", path.display())).await.unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let state = AppState::new(ro.clone(), Config::new(addr, None)).unwrap();
    tokio::spawn(async move {
        let _ = openspot::serve(state, listener, std::future::pending()).await;
    });
    let client = test_client();
    let base = format!("http://{addr}");
    // Reads are served: the rate-limit windows every /v1 request spends are in the
    // companion database (`openspot.db-limits`), which stays writable beside it.
    let read = client.get(format!("{base}/v1/spotMembers")).header("authorization", &key).send().await.unwrap();
    assert_eq!(read.status(), 200);
    assert_eq!(read.headers()["ratelimit-remaining"], "99", "the read was counted");
    let write = client
        .post(format!("{base}/v1/spotMembers"))
        .header("authorization", &key)
        .json(&serde_json::json!({"email": "new@x.io"}))
        .send()
        .await
        .unwrap();
    assert_eq!(write.status(), 503);
    let body: serde_json::Value = write.json().await.unwrap();
    assert!(body["message"].as_str().unwrap().contains("read-only"), "{body}");
    let health = client.get(format!("{base}/healthz")).send().await.unwrap();
    assert_eq!(health.status(), 200, "the server is still up");
}

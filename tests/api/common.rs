//! Test harness: a real openspot server on a random loopback port, over a fresh
//! SQLite file or a freshly created PostgreSQL database (dropped afterwards).
//!
//! PostgreSQL tests run when `TEST_POSTGRES_URL` is set (e.g.
//! `postgres://postgres@127.0.0.1:5432/postgres`); otherwise they print a skip notice,
//! unless `TEST_REQUIRE_POSTGRES=1` turns the skip into a failure (CI).

#![allow(dead_code)]

use std::sync::Arc;

use openspot::domain::auth::Limits;
use openspot::domain::ids::SpotId;
use openspot::store::Backend;
use openspot::{AppState, Config, Db};
use reqwest::Method;
use serde_json::Value;
use uuid::Uuid;

/// One HTTP answer, body parsed as JSON (`Value::Null` when empty or not JSON).
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub body: Value,
    pub text: String,
    pub headers: reqwest::header::HeaderMap,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_string)
    }
}

/// Drops the PostgreSQL test database when the test ends (unless TEST_KEEP_DB=1).
pub struct PgGuard {
    admin_url: String,
    name: String,
}

impl Drop for PgGuard {
    fn drop(&mut self) {
        if std::env::var("TEST_KEEP_DB").is_ok_and(|v| v == "1") {
            eprintln!("keeping test database {}", self.name);
            return;
        }
        let admin_url = self.admin_url.clone();
        let name = self.name.clone();
        // Drop runs inside the test's runtime: use a thread with its own runtime.
        let _ = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread().enable_all().build() else {
                return;
            };
            rt.block_on(async move {
                if let Ok(db) = Db::connect(&admin_url).await {
                    if let Db::Postgres(p) = &db {
                        let _ =
                            sqlx::query(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)")).execute(p).await;
                    }
                    db.close().await;
                }
            });
        })
        .join();
    }
}

/// The API-key and access-token cache lifetime of every test server.
pub const AUTH_CACHE_TTL: std::time::Duration = std::time::Duration::from_millis(200);

/// Waits until every auth-cache entry made so far has expired.
pub async fn outlive_auth_cache(app: &TestApp) {
    tokio::time::sleep(app.state.config.auth_cache_ttl + std::time::Duration::from_millis(100)).await;
}

pub struct TestApp {
    pub base: String,
    pub key: String,
    pub spot_id: SpotId,
    pub client: reqwest::Client,
    pub db: Db,
    pub state: AppState,
    pub database_url: String,
    _dir: Option<Arc<tempfile::TempDir>>,
    _pg: Option<PgGuard>,
}

/// A database URL for `backend`, or None when PostgreSQL is not configured.
pub async fn test_database(backend: Backend) -> Option<(String, Option<tempfile::TempDir>, Option<PgGuard>)> {
    match backend {
        Backend::Sqlite => {
            let dir = tempfile::tempdir().ok()?;
            let url = format!("sqlite://{}", dir.path().join("openspot.db").display());
            Some((url, Some(dir), None))
        }
        Backend::Postgres => {
            let Ok(admin_url) = std::env::var("TEST_POSTGRES_URL") else {
                if std::env::var("TEST_REQUIRE_POSTGRES").is_ok_and(|v| v == "1") {
                    panic!("TEST_REQUIRE_POSTGRES=1 but TEST_POSTGRES_URL is not set");
                }
                eprintln!("skipped: PostgreSQL test (set TEST_POSTGRES_URL to run it)");
                return None;
            };
            let name = format!("openspot_t_{}", Uuid::new_v4().simple());
            let admin = Db::connect(&admin_url).await.expect("cannot reach TEST_POSTGRES_URL");
            if let Db::Postgres(p) = &admin {
                sqlx::query(&format!("CREATE DATABASE \"{name}\"")).execute(p).await.expect("create test database");
            }
            admin.close().await;
            let base = match admin_url.rfind('/') {
                Some(i) if i > "postgres://".len() => admin_url[..i].to_string(),
                _ => admin_url.trim_end_matches('/').to_string(),
            };
            let url = format!("{base}/{name}");
            Some((url, None, Some(PgGuard { admin_url, name })))
        }
    }
}

impl TestApp {
    pub async fn spawn(backend: Backend) -> Option<TestApp> {
        Self::spawn_with(backend, |_| {}).await
    }

    /// Spawns with a configuration tweak applied before the server starts.
    pub async fn spawn_with(backend: Backend, tweak: impl FnOnce(&mut Config)) -> Option<TestApp> {
        let (url, dir, pg) = test_database(backend).await?;
        let db = Db::connect_and_migrate(&url).await.expect("connect and migrate");
        Some(Self::spawn_on(db, url, dir, pg, tweak).await)
    }

    /// Spawns a server over `db`, already migrated (at `url`), on a new spot of its own;
    /// `dir` and `pg` are kept until the app is dropped. A database shared by several
    /// tests (the Citus tests) passes neither.
    pub async fn spawn_on(
        db: Db,
        url: String,
        dir: Option<tempfile::TempDir>,
        pg: Option<PgGuard>,
        tweak: impl FnOnce(&mut Config),
    ) -> TestApp {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind loopback");
        let addr = listener.local_addr().expect("local addr");
        let mut config = Config::new(addr, None);
        // Generous defaults so suites never trip the limiter by accident; the
        // rate-limit tests lower a spot's own limits.
        config.default_limits = Limits { per_10s: 100_000, per_day: 10_000_000 };
        // A short auth-cache lifetime, so tests of revoked credentials wait 200 ms, not 5 s.
        config.auth_cache_ttl = AUTH_CACHE_TTL;
        tweak(&mut config);
        let state = AppState::new(db.clone(), config).expect("state");
        let (spot, key) = openspot::domain::spots::create_spot(&db, "test spot").await.expect("create spot");
        let serve_state = state.clone();
        tokio::spawn(async move {
            let _ = openspot::serve(serve_state, listener, std::future::pending()).await;
        });
        TestApp {
            base: format!("http://{addr}"),
            key,
            spot_id: spot.id,
            client: test_client(),
            db,
            state,
            database_url: url,
            _dir: dir.map(Arc::new),
            _pg: pg,
        }
    }

    /// Creates another spot in the same database; returns its id and key.
    pub async fn other_spot(&self) -> (SpotId, String) {
        let (s, k) = openspot::domain::spots::create_spot(&self.db, "other spot").await.expect("create spot");
        (s.id, k)
    }

    /// A request authenticated with `key` (or none when `key` is None).
    pub async fn send(&self, method: Method, path: &str, key: Option<&str>, body: Option<Value>) -> Resp {
        let mut rb = self.client.request(method, format!("{}{}", self.base, path));
        if let Some(k) = key {
            rb = rb.header("authorization", k);
        }
        if let Some(b) = body {
            rb = rb.json(&b);
        }
        let r = rb.send().await.expect("request");
        let status = r.status().as_u16();
        let headers = r.headers().clone();
        let text = r.text().await.unwrap_or_default();
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        Resp { status, body, text, headers }
    }

    pub async fn get(&self, path: &str) -> Resp {
        self.send(Method::GET, path, Some(&self.key.clone()), None).await
    }
    pub async fn post(&self, path: &str, body: Value) -> Resp {
        self.send(Method::POST, path, Some(&self.key.clone()), Some(body)).await
    }
    pub async fn put(&self, path: &str, body: Value) -> Resp {
        self.send(Method::PUT, path, Some(&self.key.clone()), Some(body)).await
    }
    pub async fn delete(&self, path: &str) -> Resp {
        self.send(Method::DELETE, path, Some(&self.key.clone()), None).await
    }

    /// Sends a raw body (for malformed JSON and size tests).
    pub async fn post_raw(&self, path: &str, body: Vec<u8>, content_type: &str) -> Resp {
        let r = self
            .client
            .post(format!("{}{}", self.base, path))
            .header("authorization", &self.key)
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .expect("request");
        let status = r.status().as_u16();
        let headers = r.headers().clone();
        let text = r.text().await.unwrap_or_default();
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        Resp { status, body, text, headers }
    }

    /// Invites `email` and returns the member's id.
    pub async fn invite(&self, email: &str) -> String {
        let r = self.post("/v1/spotMembers", serde_json::json!({ "email": email })).await;
        assert!(r.status == 201 || r.status == 200, "invite {email}: {} {}", r.status, r.text);
        r.body["id"].as_str().expect("member id").to_string()
    }
}

/// The HTTP client of the tests. Its idle connections are dropped before the server's
/// (which closes a keep-alive connection after its 10-second head timeout), so a
/// request is never sent on a connection the server is closing.
pub fn test_client() -> reqwest::Client {
    reqwest::Client::builder().pool_idle_timeout(std::time::Duration::from_secs(4)).build().expect("HTTP client")
}

/// Waits (bounded, 10 s) for a smart group to be `ready`.
pub async fn wait_until_ready(app: &TestApp, gid: &str) {
    for _ in 0..400 {
        if app.get(&format!("/v1/groups/{gid}")).await.body["ready"] == true {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
}

/// Waits for a smart group to be ready, then lists its members' emails, sorted.
pub async fn smart_members(app: &TestApp, gid: &str) -> Vec<String> {
    wait_until_ready(app, gid).await;
    let r = app.get(&format!("/v1/groups/{gid}/spotMembers?limit=100")).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let mut v: Vec<String> =
        r.body["items"].as_array().unwrap().iter().map(|m| m["email"].as_str().unwrap().to_string()).collect();
    v.sort();
    v
}

/// Asserts the MeltingSpot error shape and returns the message.
pub fn assert_ms_error(r: &Resp, status: u16) -> String {
    assert_eq!(r.status, status, "unexpected status; body: {}", r.text);
    assert_eq!(r.body["statusCode"], status, "body: {}", r.text);
    assert!(r.body["error"].is_string(), "body: {}", r.text);
    r.body["message"].as_str().expect("message is a string").to_string()
}

/// Generates `name::sqlite` and `name::postgres` tests from one body.
#[macro_export]
macro_rules! both {
    ($name:ident, |$app:ident| $body:block) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                let Some($app) = $crate::common::TestApp::spawn(openspot::store::Backend::Sqlite).await else {
                    return;
                };
                $body
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                let Some($app) = $crate::common::TestApp::spawn(openspot::store::Backend::Postgres).await else {
                    return;
                };
                $body
            }
        }
    };
}

/// Like [`both!`], with a configuration tweak applied before each server starts:
/// `both_with!(name, |config| { config.x = y; }, |app| { … })`.
#[macro_export]
macro_rules! both_with {
    ($name:ident, |$config:ident| $tweak:block, |$app:ident| $body:block) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                let Some($app) = $crate::common::TestApp::spawn_with(
                    openspot::store::Backend::Sqlite,
                    |$config: &mut openspot::Config| $tweak,
                )
                .await
                else {
                    return;
                };
                $body
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                let Some($app) = $crate::common::TestApp::spawn_with(
                    openspot::store::Backend::Postgres,
                    |$config: &mut openspot::Config| $tweak,
                )
                .await
                else {
                    return;
                };
                $body
            }
        }
    };
}

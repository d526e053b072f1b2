//! Contract tests of `/openapi.json` against a live server (issue 16): the document and
//! the server must agree, in both directions (see `docs/openapi.md`).
//!
//! - `schemathesis_finds_no_disagreement`: schemathesis (PyPI, installed by `.ci/run`)
//!   generates requests for every operation of both dialects from the document and checks
//!   that no answer is a 5xx, and that every answer's status, content type and body are
//!   the documented ones. The server is a real one on a loopback port over a fresh SQLite
//!   file, seeded with a few entities of each kind so that path ids can be real.
//! - `every_operation_documents_what_the_shared_layers_return`: a lint of the document:
//!   each operation lists the statuses the shared layers answer on their own (the guard's
//!   401 and 429, the body cap's 413, the parsers' 400, the id lookup's 404).
//! - `documented_error_statuses_are_reachable`: the other direction. Every documented 4xx
//!   of every operation is probed with a request that must get it; a documented status
//!   the server cannot give fails.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "api/common.rs"]
mod common;
#[path = "support/python.rs"]
mod python;
#[path = "support/receiver.rs"]
mod receiver;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::Command;

use openspot::domain::auth::Limits;
use openspot::store::Backend;
use openspot::{AppState, Config, Db};
use reqwest::Method;
use serde_json::{json, Value};

/// Examples per operation and phase: enough to reach past the first validation errors
/// of each operation, few enough that the run stays well inside CI's time.
const MAX_EXAMPLES: u32 = 50;
/// A fixed seed, so a failure in CI reproduces locally.
const SEED: u64 = 20_261_127;
const CHECKS: &str = "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance";

/// A server on a loopback port over a fresh SQLite file, with one spot (its API key)
/// and one Kaizala connector user (an access token).
struct Server {
    base: String,
    key: String,
    kz_token: String,
    /// The connector's application id and secret.
    kz_app: (String, String),
    /// The refresh token of the user of `kz_token`.
    kz_refresh: String,
    client: reqwest::Client,
    db: Db,
    _dir: Option<tempfile::TempDir>,
    _pg: Option<common::PgGuard>,
}

/// One answer: status and body (`Value::Null` when not JSON).
struct Answer {
    status: u16,
    body: Value,
    text: String,
}

impl Server {
    /// None when `backend` is PostgreSQL and no test server is configured (see
    /// `tests/api/common.rs`).
    async fn spawn(backend: Backend, tweak: impl FnOnce(&mut Config)) -> Option<Server> {
        let (url, dir, pg) = common::test_database(backend).await?;
        let db = Db::connect_and_migrate(&url).await.unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut config = Config::new(addr, None);
        // The generated requests must reach the handlers: no spot budget or failed-key
        // throttle in the way (their 429 is documented, and triggered below).
        config.default_limits = Limits { per_10s: 10_000_000, per_day: 1_000_000_000 };
        config.kaizala_limits.per_connector_per_minute = 1_000_000;
        config.kaizala_limits.per_spot_per_minute = 1_000_000;
        config.auth.failed_auth_per_address = 1_000_000;
        config.auth.pin_calls_per_address = 1_000_000;
        // Webhook targets are receivers on loopback.
        config.allow_private_targets = true;
        tweak(&mut config);
        let state = AppState::new(db.clone(), config).unwrap();
        let (spot, key) = openspot::domain::spots::create_spot(&db, "contract").await.unwrap();
        tokio::spawn(async move {
            let _ = openspot::serve(state, listener, std::future::pending()).await;
        });
        let (connector, secret) = openspot::domain::kaizala::create_connector(&db, spot.id, "contract").await.unwrap();
        let app_id = connector.id.to_string();
        let client = reqwest::Client::builder().pool_idle_timeout(std::time::Duration::from_secs(4)).build().unwrap();
        let mut s = Server {
            base: format!("http://{addr}"),
            key,
            kz_token: String::new(),
            kz_app: (app_id, secret),
            kz_refresh: String::new(),
            client,
            db,
            _dir: dir,
            _pg: pg,
        };
        (s.kz_token, s.kz_refresh) = s.kz_tokens_of("+911199999999").await;
        Some(s)
    }

    /// An access token of the connector's user with this mobile number.
    async fn kz_token_of(&self, number: &str) -> String {
        self.kz_tokens_of(number).await.0
    }

    /// An access token and the refresh token it was had with.
    async fn kz_tokens_of(&self, number: &str) -> (String, String) {
        let (app_id, secret) = &self.kz_app;
        let (refresh, _) = openspot::domain::kaizala::create_user_token(&self.db, app_id, number).await.unwrap();
        let r = self
            .client
            .get(format!("{}/kaizala/v1/accessToken", self.base))
            .header("applicationId", app_id)
            .header("applicationSecret", secret)
            .header("refreshToken", &refresh)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        (r.json::<Value>().await.unwrap()["accessToken"].as_str().unwrap().to_string(), refresh)
    }

    /// A request to `path` with these headers (the credential among them, or not).
    async fn call(&self, method: Method, path: &str, headers: &[(&str, &str)], body: Option<Body>) -> Answer {
        let mut rb = self.client.request(method, format!("{}{path}", self.base));
        for (name, value) in headers {
            rb = rb.header(*name, *value);
        }
        rb = match body {
            Some(Body::Json(v)) => rb.json(&v),
            Some(Body::Raw(bytes, content_type)) => rb.header("content-type", content_type).body(bytes),
            None => rb,
        };
        let r = rb.send().await.unwrap();
        let status = r.status().as_u16();
        let text = r.text().await.unwrap_or_default();
        Answer { status, body: serde_json::from_str(&text).unwrap_or(Value::Null), text }
    }

    /// The credential header of the dialect of `path`.
    fn auth_for(&self, path: &str) -> (&'static str, &str) {
        if path.starts_with("/kaizala/") {
            ("accessToken", self.kz_token.as_str())
        } else {
            ("authorization", self.key.as_str())
        }
    }

    /// An authenticated JSON request that must succeed; returns the body.
    async fn ok(&self, method: Method, path: &str, body: Value) -> Value {
        let auth = self.auth_for(path);
        let body = (!body.is_null()).then_some(Body::Json(body));
        let a = self.call(method.clone(), path, &[auth], body).await;
        assert!((200..300).contains(&a.status), "{method} {path}: {} {}", a.status, a.text);
        a.body
    }

    async fn document(&self) -> Value {
        self.client.get(format!("{}/openapi.json", self.base)).send().await.unwrap().json().await.unwrap()
    }
}

enum Body {
    Json(Value),
    Raw(Vec<u8>, &'static str),
}

fn id(v: &Value, field: &str) -> String {
    v[field].as_str().unwrap_or_else(|| panic!("no {field} in {v}")).to_string()
}

/// A few entities of each kind, by the name of the path parameter that takes their id
/// (`kz:` before the name for the Kaizala dialect's). The n-th of each kind belong
/// together: the n-th participant is in the n-th course, and so on.
async fn seed(s: &Server, callbacks: &receiver::Receiver) -> BTreeMap<&'static str, Vec<String>> {
    let mut ids: BTreeMap<&'static str, Vec<String>> = BTreeMap::new();
    for n in 0..3 {
        let member = s.ok(Method::POST, "/v1/spotMembers", json!({"email": format!("seed{n}@example.com")})).await;
        let member = id(&member, "id");
        let group = s.ok(Method::POST, "/v1/groups", json!({"name": format!("Seed {n}")})).await;
        let group = id(&group, "id");
        s.ok(Method::POST, &format!("/v1/groups/{group}/spotMembers"), json!({"spotMemberId": member})).await;
        let course = s.ok(Method::POST, "/v1/courses", json!({"title": format!("Seed {n}")})).await;
        let course = id(&course, "id");
        let p =
            s.ok(Method::POST, &format!("/v1/courses/{course}/participants"), json!({"spotMemberId": member})).await;
        ids.entry("courseParticipantId").or_default().push(id(&p, "id"));
        let prop =
            s.ok(Method::POST, "/v1/customProperties", json!({"label": format!("Seed {n}"), "type": "Text"})).await;
        ids.entry("slug").or_default().push(id(&prop, "slug"));
        ids.entry("customPropertySlug").or_default().push(id(&prop, "slug"));
        let role = s.ok(Method::POST, "/v1/spotMemberCustomRole", json!({"label": format!("Seed {n}")})).await;
        ids.entry("customRoleId").or_default().push(id(&role, "id"));
        let hook = json!({"url": callbacks.url(), "eventTypes": ["member.created"]});
        let hook = id(&s.ok(Method::POST, "/v1/webhooks", hook).await, "id");
        let event = s.ok(Method::POST, &format!("/v1/webhooks/{hook}~test"), json!({})).await;
        ids.entry("eventId").or_default().push(id(&event, "eventId"));
        ids.entry("webhookId").or_default().push(hook);
        ids.entry("spotMemberId").or_default().push(member);
        ids.entry("groupId").or_default().push(group);
        ids.entry("courseId").or_default().push(course);

        // Kaizala: a group of the token's user with another member, a sub-group, and a
        // subscription to it (the receiver answers the validation handshake).
        let body = json!({"name": format!("Kz seed {n}"), "members": [format!("+91119999990{n}")]});
        let kz_group = id(&s.ok(Method::POST, "/kaizala/v1/groups", body).await, "groupId");
        let members = s.ok(Method::GET, &format!("/kaizala/v1/groups/{kz_group}/members"), Value::Null).await;
        for m in members["members"].as_array().unwrap() {
            ids.entry("kz:memberId").or_default().push(id(m, "id"));
        }
        let sub = json!({"name": format!("Kz sub {n}")});
        let sub = s.ok(Method::POST, &format!("/kaizala/v1/groups/{kz_group}/subGroups"), sub).await;
        ids.entry("kz:subGroupId").or_default().push(id(&sub, "groupId"));
        let subscription = json!({"objectId": kz_group, "objectType": "Group", "eventTypes": ["MemberAdded"],
                                  "callBackUrl": callbacks.url()});
        let subscription = s.ok(Method::POST, "/kaizala/v1/webhook", subscription).await;
        ids.entry("kz:webhookId").or_default().push(id(&subscription, "webhookId"));
        ids.entry("kz:groupId").or_default().push(kz_group);
    }
    ids
}

/// The venv's interpreter when it can import schemathesis; None (after a skip notice)
/// otherwise, unless `TEST_REQUIRE_PYTHON=1` makes that a failure.
fn schemathesis_python() -> Option<PathBuf> {
    let python = python::python()?;
    let importable = Command::new(&python).args(["-c", "import schemathesis"]).status().is_ok_and(|s| s.success());
    if importable {
        return Some(python);
    }
    if std::env::var("TEST_REQUIRE_PYTHON").is_ok_and(|v| v == "1") {
        panic!("TEST_REQUIRE_PYTHON=1 but {} cannot import schemathesis (see .ci/run)", python.display());
    }
    eprintln!("skipped: schemathesis contract test ({} cannot import schemathesis)", python.display());
    None
}

/// The schemathesis configuration: both credentials (each bound to its security
/// scheme, so each dialect gets its own) and the seeded ids, which path parameters
/// take half of the time (the other half, generated values exercise the 404s).
fn config_file(s: &Server, seeded: &BTreeMap<&'static str, Vec<String>>) -> String {
    let quote = |v: &str| Value::from(v).to_string();
    // One dictionary per parameter name, whichever dialect's ids it takes.
    let mut ids: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for (name, values) in seeded {
        ids.entry(name.trim_start_matches("kz:")).or_default().extend(values.iter().cloned());
    }
    let ids = &ids;
    let mut toml = format!(
        "[auth.openapi.apiKey]\napi_key = {}\n\n[auth.openapi.kaizalaToken]\napi_key = {}\n\n",
        quote(&s.key),
        quote(&s.kz_token)
    );
    for (name, values) in ids {
        let values: Vec<String> = values.iter().map(|v| quote(v)).collect();
        toml.push_str(&format!("[dictionaries.{name}]\nvalues = [{}]\n\n", values.join(", ")));
    }
    // The access-token exchange gets the connector's real credentials: its 200 is then
    // checked too (its 401 and 429 are probed below), and no generated header value is
    // one the HTTP client refuses to send (an error of the run, not of the server).
    let (app_id, secret) = &s.kz_app;
    toml.push_str(&format!(
        "[[operations]]\ninclude-path = \"/kaizala/v1/accessToken\"\nparameters = {{ \"header.applicationId\" = {}, \
         \"header.applicationSecret\" = {}, \"header.refreshToken\" = {} }}\n\n",
        quote(app_id),
        quote(secret),
        quote(&s.kz_refresh)
    ));
    toml.push_str("[parameters]\n");
    for name in ids.keys() {
        toml.push_str(&format!("\"path.{name}\" = {{ dictionary = \"{name}\", probability = 0.5 }}\n"));
    }
    toml
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemathesis_finds_no_disagreement() {
    let Some(python) = schemathesis_python() else { return };
    let s = Server::spawn(Backend::Sqlite, |_| {}).await.unwrap();
    let callbacks = receiver::Receiver::start(receiver::Reply::EchoValidationToken).await;
    let ids = seed(&s, &callbacks).await;
    let work = tempfile::tempdir().unwrap();
    let config = work.path().join("schemathesis.toml");
    std::fs::write(&config, config_file(&s, &ids)).unwrap();

    let operations = operations(&s.document().await).len();
    let url = format!("{}/openapi.json", s.base);
    let started = std::time::Instant::now();
    let out = tokio::task::spawn_blocking(move || {
        Command::new(&python)
            .args(["-m", "schemathesis.cli", "--config-file"])
            .arg(&config)
            .args(["run", &url, "--checks", CHECKS, "--workers", "2", "--no-color"])
            .args(["--max-examples", &MAX_EXAMPLES.to_string(), "--seed", &SEED.to_string()])
            .args(["--request-timeout", "30", "--generation-database", "none"])
            .current_dir(work.path())
            .env("NO_COLOR", "1")
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let output = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    // The figures of the run (RELIABILITY.md quotes them).
    let summary: Vec<&str> = output
        .lines()
        .filter(|l| l.contains("Tested:") || l.contains("generated,") || l.starts_with("=") && l.contains(" in "))
        .collect();
    eprintln!("schemathesis ({:.0} s): {}", started.elapsed().as_secs_f64(), summary.join(" | "));
    // Its warnings (operations mostly answering 404, 429, …) show what the run could not reach.
    let warnings: Vec<&str> = output
        .lines()
        .skip_while(|l| !(l.starts_with('=') && l.contains(" WARNINGS ")))
        .take_while(|l| !(l.starts_with('=') && l.contains(" SUMMARY ")))
        .collect();
    eprintln!("{}", warnings.join("\n"));
    assert!(out.status.success(), "schemathesis found disagreements between /openapi.json and the server:\n{output}");
    assert!(output.contains(&format!("Tested: {operations}")), "not every operation was tested:\n{output}");
}

/// Every operation of the document: (method, path, operation object).
fn operations(doc: &Value) -> Vec<(Method, String, Value)> {
    let mut ops = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (name, method) in
            [("get", Method::GET), ("put", Method::PUT), ("post", Method::POST), ("delete", Method::DELETE)]
        {
            if let Some(op) = item.get(name) {
                ops.push((method, path.clone(), op.clone()));
            }
        }
        assert!(item.get("patch").is_none(), "{path}: PATCH is not expected (add it to operations())");
    }
    ops
}

/// Whether the operation needs a credential: the document's default is the API key,
/// and `security: [{}]` marks the Kaizala operations that take none.
fn guarded(op: &Value) -> bool {
    match op.get("security").and_then(Value::as_array) {
        None => true,
        Some(requirements) => requirements.iter().any(|r| r.as_object().is_some_and(|m| !m.is_empty())),
    }
}

/// The documented statuses of an operation.
fn documented(op: &Value) -> BTreeSet<u16> {
    op["responses"].as_object().unwrap().keys().map(|k| k.parse().unwrap()).collect()
}

fn has_query(op: &Value, name: &str) -> bool {
    op["parameters"].as_array().is_some_and(|ps| ps.iter().any(|p| p["in"] == "query" && p["name"] == name))
}

// What the shared layers answer on their own is documented on every operation they
// guard: 401 and 429 (guards), 400 and 413 (bodies, list queries), 404 (path ids). No
// 5xx is documented, every error has the dialect's error body, every operation a 2xx.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_operation_documents_what_the_shared_layers_return() {
    let s = Server::spawn(Backend::Sqlite, |_| {}).await.unwrap();
    let doc = s.document().await;
    let mut wrong = Vec::new();
    for (method, path, op) in operations(&doc) {
        let have = documented(&op);
        let mut want = BTreeSet::new();
        if guarded(&op) {
            want.extend([401, 429]);
        }
        if op.get("requestBody").is_some() {
            want.extend([400, 413]);
        }
        if has_query(&op, "page") {
            want.insert(400);
        }
        if path.contains('{') {
            want.insert(404);
        }
        for status in want.difference(&have) {
            wrong.push(format!("{method} {path}: {status} is not documented"));
        }
        let error_body = if path.starts_with("/kaizala/") { "KzErrorBody" } else { "ErrorBody" };
        for status in &have {
            if *status >= 500 {
                wrong.push(format!("{method} {path}: documents {status}, a server error"));
            } else if *status >= 400 {
                let schema = &op["responses"][status.to_string()]["content"]["application/json"]["schema"]["$ref"];
                if *schema != json!(format!("#/components/schemas/{error_body}")) {
                    wrong.push(format!("{method} {path}: {status} is not a {error_body} but {schema}"));
                }
            }
        }
        if !have.iter().any(|s| (200..300).contains(s)) {
            wrong.push(format!("{method} {path}: no success status"));
        }
    }
    assert!(wrong.is_empty(), "the document vs the shared layers:\n{}", wrong.join("\n"));
}

/// `path` with each `{param}` replaced by the first seeded id of that name (`real`), or
/// by an id nothing has.
fn fill(path: &str, ids: &BTreeMap<&'static str, Vec<String>>, real: bool) -> String {
    let kaizala = path.starts_with("/kaizala/");
    let mut out = String::new();
    let mut rest = path;
    while let Some(open) = rest.find('{') {
        let close = rest[open..].find('}').unwrap() + open;
        let name = &rest[open + 1..close];
        let key = if kaizala { format!("kz:{name}") } else { name.to_string() };
        let value = match ids.get(key.as_str()).or_else(|| ids.get(name)) {
            Some(values) if real => values[0].clone(),
            _ => uuid::Uuid::new_v4().to_string(),
        };
        out.push_str(&rest[..open]);
        out.push_str(&value);
        rest = &rest[close + 1..];
    }
    out.push_str(rest);
    out
}

/// A body the operation accepts (as far as its access checks go), for probes that must
/// pass the body parser to reach them.
fn valid_body(method: &Method, path: &str, ids: &BTreeMap<&'static str, Vec<String>>, callback: &str) -> Option<Body> {
    let body = match (method.as_str(), path) {
        ("PUT", "/kaizala/v1/groups/{groupId}/members") => json!({"members": ["+911177777777"]}),
        ("PUT", "/kaizala/v1/groups/{groupId}/members/{memberId}") => json!({"role": "Member"}),
        ("POST", "/kaizala/v1/groups/{groupId}/messages") => json!({"message": "hello"}),
        ("PUT", "/kaizala/v1/groups/{groupId}/subGroups") => json!({"subGroups": []}),
        ("POST", "/kaizala/v1/groups/{groupId}/subGroups") => json!({"name": "Sub"}),
        ("POST", "/kaizala/v1/webhook") => json!({"objectId": ids["kz:groupId"][0], "objectType": "Group",
                                                  "eventTypes": ["MemberAdded"], "callBackUrl": callback}),
        ("PUT", "/kaizala/v1/webhook/{webhookId}") => json!({"callBackContext": "probe"}),
        ("POST", "/v1/courses/{courseId}/groups~bulkAdd" | "/v1/courses/{courseId}/groups~bulkRemove") => {
            json!({"groupIds": [uuid::Uuid::new_v4()]})
        }
        ("POST", "/v1/courses/{courseId}/participants" | "/v1/groups/{groupId}/spotMembers") => {
            json!({"spotMemberId": uuid::Uuid::new_v4()})
        }
        ("PUT", "/v1/courses/{courseId}/participants/{courseParticipantId}") => json!({"status": "Started"}),
        ("POST", _)
            if path.ends_with("~bulkInvite") || path.contains("spotMembers~bulk") || path.contains("blacklist~") =>
        {
            json!({"spotMemberIds": [uuid::Uuid::new_v4()]})
        }
        ("PUT", "/v1/spotMembers/{spotMemberId}/customPropertiesValues/{customPropertySlug}") => json!({"value": "x"}),
        ("POST", "/v1/spotMembers/{spotMemberId}/customPropertiesValues~bulkUpsert") => {
            json!([{"customPropertySlug": "x", "value": "x"}])
        }
        ("POST", "/v1/webhooks/{webhookId}~recover") => json!({"since": 1_700_000_000}),
        (_, _) => return None,
    };
    Some(Body::Json(body))
}

/// The probe of one documented error status of one operation: the answer to a request
/// that should get it, or None when no probe is written for it.
async fn probe(
    s: &Server,
    ids: &BTreeMap<&'static str, Vec<String>>,
    stranger: &str,
    callback: &str,
    (method, path, op): (&Method, &str, &Value),
    status: u16,
) -> Option<Answer> {
    let caller = s.auth_for(path);
    let has_body = op.get("requestBody").is_some();
    let multipart = op["requestBody"]["content"].get("multipart/form-data").is_some();
    let m = method.clone();
    let app_id = &s.kz_app.0;
    Some(match (status, method.as_str(), path) {
        // No credential.
        (401, "GET", "/kaizala/v1/accessToken") => {
            let headers =
                [("applicationId", app_id.as_str()), ("applicationSecret", "WRONG"), ("refreshToken", "kzr_x")];
            s.call(m, path, &headers, None).await
        }
        (401, "POST", "/kaizala/v1/loginWithPinAndApplicationId") => {
            let body = json!({"mobileNumber": "+911199999999", "applicationId": app_id, "pin": 1234,
                              "applicationSecret": "WRONG"});
            s.call(m, path, &[], Some(Body::Json(body))).await
        }
        (401, _, _) if guarded(op) => {
            s.call(m, &fill(path, ids, false), &[], has_body.then(|| Body::Json(json!({})))).await
        }
        // A body the parser refuses, a list query it refuses, and the handlers' own 400s.
        (400, _, _) if multipart => s.call(m, &fill(path, ids, true), &[caller], Some(Body::Json(json!({})))).await,
        (400, _, _) if has_body => {
            s.call(m, &fill(path, ids, true), &[caller], Some(Body::Raw(b"{\"".to_vec(), "application/json"))).await
        }
        (400, _, _) if has_query(op, "page") => {
            s.call(m, &format!("{}?page=0", fill(path, ids, true)), &[caller], None).await
        }
        (400, "GET", "/kaizala/v1/webhook") => s.call(m, "/kaizala/v1/webhook?objectType=Nope", &[caller], None).await,
        (400, "DELETE", "/kaizala/v1/groups/{groupId}/members/{memberId}") => {
            // The caller is the group's only Admin.
            let group = &ids["kz:groupId"][0];
            let members = s.ok(Method::GET, &format!("/kaizala/v1/groups/{group}/members"), Value::Null).await;
            let admin = members["members"].as_array().unwrap().iter().find(|x| x["role"] == "Admin").unwrap();
            s.call(m, &format!("/kaizala/v1/groups/{group}/members/{}", id(admin, "id")), &[caller], None).await
        }
        // Over the body cap (the import has its own, larger one).
        (413, _, _) if multipart => {
            let part = "--x\r\nContent-Disposition: form-data; name=\"file\"; filename=\"m.csv\"\r\n\r\n";
            let big = format!("{part}email\r\n{}\r\n--x--\r\n", "a".repeat(6 << 20));
            let body = Body::Raw(big.into_bytes(), "multipart/form-data; boundary=x");
            s.call(m, path, &[caller], Some(body)).await
        }
        (413, _, _) if has_body => {
            let big = format!("{{\"name\": \"{}\"}}", "a".repeat(1_100_000));
            s.call(m, &fill(path, ids, true), &[caller], Some(Body::Raw(big.into_bytes(), "application/json"))).await
        }
        // Ids nothing has.
        (404, "POST", "/kaizala/v1/webhook") => {
            let body = json!({"objectId": uuid::Uuid::new_v4(), "objectType": "Group", "eventTypes": ["MemberAdded"],
                              "callBackUrl": callback});
            s.call(m, path, &[caller], Some(Body::Json(body))).await
        }
        (404, _, _) if path.contains('{') => {
            let body = valid_body(method, path, ids, callback).or_else(|| has_body.then(|| Body::Json(json!({}))));
            s.call(m, &fill(path, ids, false), &[caller], body).await
        }
        // Kaizala: a user of the connector who is not in the group.
        (403, _, _) if path.starts_with("/kaizala/") => {
            let body = valid_body(method, path, ids, callback);
            s.call(m, &fill(path, ids, true), &[("accessToken", stranger)], body).await
        }
        // The MeltingSpot conflicts.
        (409, "PUT", "/v1/courses/{courseId}/participants/{courseParticipantId}") => {
            // Invited → Completed skips Started.
            s.call(m, &fill(path, ids, true), &[caller], Some(Body::Json(json!({"status": "Completed"})))).await
        }
        (409, "POST", "/v1/customProperties") => {
            let body = json!({"label": "Again", "type": "Text", "slug": ids["slug"][0]});
            s.call(m, path, &[caller], Some(Body::Json(body))).await
        }
        (409, "PUT", "/v1/groups/{groupId}") => {
            s.call(m, &fill(path, ids, true), &[caller], Some(Body::Json(json!({"type": "Smart"})))).await
        }
        (409, "POST", "/v1/groups/{groupId}/blacklist~bulkAdd" | "/v1/groups/{groupId}/blacklist~bulkRemove") => {
            // A static group.
            let body = json!({"spotMemberIds": [ids["spotMemberId"][0]]});
            s.call(m, &fill(path, ids, true), &[caller], Some(Body::Json(body))).await
        }
        (409, "POST", "/v1/groups/{groupId}/spotMembers" | "/v1/groups/{groupId}/spotMembers~bulkRemove") => {
            let rules = json!({"operator": "AND", "conditions": [
                {"operator": "OR", "triggers": [{"field": "status", "op": "eq", "value": "Accepted"}]}]});
            let smart =
                s.ok(Method::POST, "/v1/groups", json!({"name": "Smart", "type": "Smart", "rules": rules})).await;
            let member = &ids["spotMemberId"][0];
            let body = if path.ends_with("spotMembers") {
                json!({"spotMemberId": member})
            } else {
                json!({"spotMemberIds": [member]})
            };
            let url = path.replace("{groupId}", &id(&smart, "id"));
            s.call(m, &url, &[caller], Some(Body::Json(body))).await
        }
        (409, "POST", _) if path.starts_with("/v1/webhooks/{webhookId}") => {
            // A disabled endpoint.
            let hook = json!({"url": callback, "eventTypes": ["member.created"], "enabled": false});
            let hook = id(&s.ok(Method::POST, "/v1/webhooks", hook).await, "id");
            let url = fill(path, ids, true).replace(&ids["webhookId"][0], &hook);
            let body = valid_body(method, path, ids, callback).or_else(|| has_body.then(|| Body::Json(json!({}))));
            s.call(m, &url, &[caller], body).await
        }
        _ => return None,
    })
}

// Every documented 4xx of every operation is one the server gives: a probe per status
// gets it (see docs/openapi.md). 429 is probed on a second server whose failed-credential
// and PIN throttles refuse an address after one attempt.
mod documented_error_statuses_are_reachable {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sqlite() {
        super::documented_error_statuses_are_reachable(super::Backend::Sqlite).await;
    }
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres() {
        super::documented_error_statuses_are_reachable(super::Backend::Postgres).await;
    }
}

async fn documented_error_statuses_are_reachable(backend: Backend) {
    let Some(s) = Server::spawn(backend, |_| {}).await else { return };
    let callbacks = receiver::Receiver::start(receiver::Reply::EchoValidationToken).await;
    let ids = seed(&s, &callbacks).await;
    let stranger = s.kz_token_of("+911188888888").await;
    let Some(throttled) = Server::spawn(backend, |c| {
        c.auth.failed_auth_per_address = 1;
        c.auth.pin_calls_per_address = 1;
    })
    .await
    else {
        return;
    };
    let doc = s.document().await;
    let mut wrong = Vec::new();
    let mut shown = 0;
    for (method, path, op) in operations(&doc) {
        for status in documented(&op).into_iter().filter(|s| (400..500).contains(s)) {
            let answer = if status == 429 {
                probe_throttle(&throttled, (&method, &path, &op)).await
            } else {
                probe(&s, &ids, &stranger, &callbacks.url(), (&method, &path, &op), status).await
            };
            match answer {
                None => wrong.push(format!("{method} {path}: documents {status}; no probe gets it")),
                Some(a) if a.status != status => {
                    wrong.push(format!("{method} {path}: documents {status}; the probe got {} {}", a.status, a.text))
                }
                Some(_) => shown += 1,
            }
        }
    }
    eprintln!("{shown} documented error statuses shown reachable");
    assert!(wrong.is_empty(), "documented statuses the server did not give:\n{}", wrong.join("\n"));
}

/// A request that a server refusing an address after one failed credential (or one PIN
/// call) answers 429, sent until it does (at most three times).
async fn probe_throttle(s: &Server, (method, path, op): (&Method, &str, &Value)) -> Option<Answer> {
    let mut last = None;
    for _ in 0..3 {
        let app_id = s.kz_app.0.as_str();
        let answer = match path {
            "/kaizala/v1/accessToken" => {
                let headers = [("applicationId", app_id), ("applicationSecret", "WRONG"), ("refreshToken", "kzr_x")];
                s.call(method.clone(), path, &headers, None).await
            }
            "/kaizala/v1/generatePin" | "/kaizala/v1/loginWithPinAndApplicationId" => {
                let body = json!({"mobileNumber": "+911199999999", "applicationId": app_id, "pin": 1234});
                s.call(method.clone(), path, &[], Some(Body::Json(body))).await
            }
            _ if guarded(op) => {
                let wrong = if path.starts_with("/kaizala/") { "accessToken" } else { "authorization" };
                s.call(method.clone(), &fill(path, &BTreeMap::new(), false), &[(wrong, "WRONG")], None).await
            }
            _ => return None,
        };
        let done = answer.status == 429;
        last = Some(answer);
        if done {
            break;
        }
    }
    last
}

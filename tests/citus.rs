//! Citus (issue 17): `migrate` distributes the schema (reference `spots` and
//! `kz_connectors`, every other table hash-distributed by `spot_id`, one colocation
//! group) once and idempotently; the request paths of both dialects and of the console
//! each read and write one shard (run with multi-shard queries made errors); the outbox
//! dispatcher delivers on Citus; a new member writes no reference table (no two-phase
//! commit); on plain PostgreSQL the step does nothing.
//!
//! The Citus tests run when `OPENSPOT_TEST_CITUS_URL` points at a prepared coordinator
//! (the `citus` extension created and the workers added: `docs/citus.md`) and are
//! skipped with a notice otherwise. They share that database (the server is
//! multi-tenant): each works on spots of its own and creates no database.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "api/common.rs"]
mod common;
#[path = "support/receiver.rs"]
mod receiver;

use std::collections::BTreeSet;
use std::time::Duration;

use common::{Resp, TestApp};
use openspot::store::{citus, Backend};
use openspot::Db;
use reqwest::Method;
use serde_json::{json, Value};

/// The Citus coordinator's URL, or None (with the skip notice).
fn citus_url() -> Option<String> {
    match std::env::var("OPENSPOT_TEST_CITUS_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            eprintln!("skipped: Citus test (set OPENSPOT_TEST_CITUS_URL to run it)");
            None
        }
    }
}

/// `url` with a session setting for every connection of its pool.
fn with_setting(url: &str, name: &str, value: &str) -> String {
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}options=-c%20{name}%3D{value}")
}

fn pool(db: &Db) -> &sqlx::PgPool {
    match db {
        Db::Postgres(p) => p,
        Db::Sqlite(..) => panic!("a PostgreSQL database was expected"),
    }
}

/// The tables of the schema that hold a `spot_id` column.
async fn spot_tables(db: &Db) -> BTreeSet<String> {
    sqlx::query_scalar::<_, String>(
        "SELECT table_name::text FROM information_schema.columns \
         WHERE table_schema = current_schema() AND column_name = 'spot_id'",
    )
    .fetch_all(pool(db))
    .await
    .unwrap()
    .into_iter()
    .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_distributes_every_table_once() {
    let Some(url) = citus_url() else { return };
    let db = Db::connect_and_migrate(&url).await.expect("migrate");
    // A second migrate, as every `serve` start runs, and the step itself: nothing to do.
    let again = Db::connect_and_migrate(&url).await.expect("migrate again");
    let second = citus::distribute(pool(&again)).await.unwrap();
    assert!(second.citus);
    assert!(second.referenced.is_empty() && second.distributed.is_empty(), "{second:?}");
    again.close().await;

    let rows: Vec<(String, String, String, Option<String>, i32)> = sqlx::query_as(
        "SELECT c.relname::text, p.partmethod::text, p.repmodel::text, \
         column_to_column_name(p.logicalrelid, p.partkey), p.colocationid \
         FROM pg_dist_partition p JOIN pg_class c ON c.oid = p.logicalrelid \
         JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = current_schema()",
    )
    .fetch_all(pool(&db))
    .await
    .unwrap();
    let find = |t: &str| rows.iter().find(|r| r.0 == t).unwrap_or_else(|| panic!("{t} is not a Citus table"));
    for t in citus::REFERENCE_TABLES {
        let r = find(t);
        assert_eq!((r.1.as_str(), r.2.as_str()), ("n", "t"), "{t} is a reference table");
    }
    let mut groups = BTreeSet::new();
    let tables = spot_tables(&db).await;
    assert!(tables.len() >= 25, "{tables:?}");
    for t in tables.iter().filter(|t| !citus::REFERENCE_TABLES.contains(&t.as_str())) {
        let r = find(t);
        assert_eq!(r.1, "h", "{t} is hash-distributed");
        assert_eq!(r.3.as_deref(), Some("spot_id"), "{t} is distributed by spot_id");
        groups.insert(r.4);
    }
    assert_eq!(groups.len(), 1, "one colocation group: {rows:?}");
    // Migration 0016: the spots' member counts (written by every member write) are in
    // `spot_counters`, distributed with the spots' other rows; the reference table
    // `spots` holds no count any more.
    assert!(tables.contains("spot_counters"), "{tables:?}");
    assert_eq!(find("spot_counters").1, "h", "spot_counters is hash-distributed");
    let count_column: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM information_schema.columns \
         WHERE table_schema = current_schema() AND table_name = 'spots' AND column_name = 'member_count'",
    )
    .fetch_one(pool(&db))
    .await
    .unwrap();
    assert_eq!(count_column, 0, "spots.member_count is dropped");
    assert!(!rows.iter().any(|r| r.0 == "_sqlx_migrations"), "the migrations table stays local");
    // The foreign keys are back (created again after the conversion).
    let keys: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM pg_constraint c JOIN pg_namespace n ON n.oid = c.connamespace \
         WHERE c.contype = 'f' AND n.nspname = current_schema()",
    )
    .fetch_one(pool(&db))
    .await
    .unwrap();
    assert!(keys >= 30, "foreign keys: {keys}");
    db.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_postgresql_migrate_does_nothing_for_citus() {
    let Some((url, _, _guard)) = common::test_database(Backend::Postgres).await else { return };
    let db = Db::connect_and_migrate(&url).await.expect("migrate");
    assert!(!citus::is_citus(pool(&db)).await.unwrap());
    let d = citus::distribute(pool(&db)).await.unwrap();
    assert_eq!(d, citus::Distribution::default());
    db.close().await;
}

/// A server on the Citus database whose every connection makes a multi-shard query an
/// error (`citus.multi_task_query_log_level = error`): a request that reads or writes
/// more than one shard fails. The outbox dispatcher and housekeeping of this server
/// read every shard on purpose: they log their errors and retry, which no request waits on.
async fn one_shard_app(url: &str) -> TestApp {
    Db::connect_and_migrate(url).await.expect("migrate").close().await;
    let strict = with_setting(url, "citus.multi_task_query_log_level", "error");
    let db = Db::connect(&strict).await.expect("connect");
    let mut c = pool(&db).acquire().await.unwrap();
    let level: String = sqlx::query_scalar("SHOW citus.multi_task_query_log_level").fetch_one(&mut *c).await.unwrap();
    assert_eq!(level, "error");
    // The check works: a query over every spot fails on this pool.
    let e = sqlx::query("SELECT COUNT(*) FROM members").execute(&mut *c).await.unwrap_err();
    assert!(e.to_string().contains("multi-task"), "{e}");
    drop(c);
    TestApp::spawn_on(db, strict, None, None, |c| c.allow_private_targets = true).await
}

async fn ok(app: &TestApp, m: Method, path: &str, body: Option<Value>) -> Value {
    let r = app.send(m.clone(), path, Some(&app.key.clone()), body).await;
    assert!((200..300).contains(&r.status), "{m} {path}: {} {}", r.status, r.text);
    r.body
}

fn id_of(v: &Value) -> String {
    v["id"].as_str().unwrap_or_else(|| panic!("no id in {v}")).to_string()
}

async fn kz(app: &TestApp, token: &str, m: Method, path: &str, body: Option<Value>) -> Value {
    let mut rb = app.client.request(m.clone(), format!("{}{path}", app.base)).header("accessToken", token);
    if let Some(b) = &body {
        rb = rb.json(b);
    }
    let r = rb.send().await.unwrap();
    let status = r.status().as_u16();
    let text = r.text().await.unwrap();
    assert_eq!(status, 200, "{m} {path}: {text}");
    serde_json::from_str(&text).unwrap_or(Value::Null)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn meltingspot_requests_read_one_shard() {
    let Some(url) = citus_url() else { return };
    let app = one_shard_app(&url).await;
    let m1 = id_of(&ok(&app, Method::POST, "/v1/spotMembers", Some(json!({"email": "one@example.com"}))).await);
    let m2 = id_of(&ok(&app, Method::POST, "/v1/spotMembers", Some(json!({"email": "two@example.com"}))).await);
    ok(&app, Method::GET, &format!("/v1/spotMembers/{m1}"), None).await;
    let list = ok(&app, Method::GET, "/v1/spotMembers?limit=10", None).await;
    assert_eq!(list["items"].as_array().unwrap().len(), 2, "{list}");
    let filtered = ok(&app, Method::GET, "/v1/spotMembers?email[in]=two@example.com", None).await;
    assert_eq!(filtered["items"].as_array().unwrap().len(), 1, "{filtered}");
    ok(&app, Method::PUT, &format!("/v1/spotMembers/{m1}"), Some(json!({"firstname": "Ada"}))).await;
    let role = id_of(&ok(&app, Method::POST, "/v1/spotMemberCustomRole", Some(json!({"label": "Mentor"}))).await);
    ok(&app, Method::PUT, &format!("/v1/spotMembers/{m2}"), Some(json!({"customRoleId": role}))).await;
    ok(&app, Method::GET, &format!("/v1/spotMembers?customRoleId[eq]={role}"), None).await;

    // Custom properties and their values, and a filter on one.
    ok(&app, Method::POST, "/v1/customProperties", Some(json!({"slug": "tier", "label": "Tier", "type": "Text"})))
        .await;
    ok(&app, Method::GET, "/v1/customProperties", None).await;
    ok(&app, Method::PUT, &format!("/v1/spotMembers/{m1}/customPropertiesValues/tier"), Some(json!({"value": "gold"})))
        .await;
    ok(&app, Method::GET, &format!("/v1/spotMembers/{m1}/customPropertiesValues"), None).await;

    // Groups: static with members, smart (computed in the background, one spot).
    let g = id_of(&ok(&app, Method::POST, "/v1/groups", Some(json!({"name": "Static"}))).await);
    ok(&app, Method::POST, &format!("/v1/groups/{g}/spotMembers~bulkAdd"), Some(json!({"spotMemberIds": [m1, m2]})))
        .await;
    let members = ok(&app, Method::GET, &format!("/v1/groups/{g}/spotMembers?limit=10"), None).await;
    assert_eq!(members["items"].as_array().unwrap().len(), 2, "{members}");
    ok(&app, Method::GET, "/v1/groups?limit=10", None).await;
    let rules = json!({"operator": "AND", "conditions": [
        {"operator": "AND", "triggers": [{"field": "status", "op": "eq", "value": "Invited"}]}
    ]});
    let smart = id_of(
        &ok(&app, Method::POST, "/v1/groups", Some(json!({"name": "Smart", "type": "Smart", "rules": rules}))).await,
    );
    let mut ready = false;
    for _ in 0..200 {
        if ok(&app, Method::GET, &format!("/v1/groups/{smart}"), None).await["ready"] == true {
            ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(ready, "the smart group is computed");
    ok(&app, Method::POST, &format!("/v1/groups/{smart}/blacklist~bulkAdd"), Some(json!({"spotMemberIds": [m2]})))
        .await;
    // A rule on a custom property (a subquery per member: it must name the spot).
    let rules = json!({"operator": "AND", "conditions": [
        {"operator": "AND", "triggers": [{"field": "customProperties.tier", "op": "eq", "value": "gold"}]}
    ]});
    let by_tier = id_of(
        &ok(&app, Method::POST, "/v1/groups", Some(json!({"name": "Gold", "type": "Smart", "rules": rules}))).await,
    );
    let mut members = Value::Null;
    for _ in 0..200 {
        if ok(&app, Method::GET, &format!("/v1/groups/{by_tier}"), None).await["ready"] == true {
            members = ok(&app, Method::GET, &format!("/v1/groups/{by_tier}/spotMembers?limit=10"), None).await;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(members["items"].as_array().map(Vec::len), Some(1), "{members}");

    // Courses: a linked group and an invitation.
    let course = id_of(&ok(&app, Method::POST, "/v1/courses", Some(json!({"title": "Course"}))).await);
    ok(&app, Method::POST, &format!("/v1/courses/{course}/groups~bulkAdd"), Some(json!({"groupIds": [g]}))).await;
    ok(&app, Method::GET, &format!("/v1/courses/{course}/participants?limit=10"), None).await;
    ok(&app, Method::GET, "/v1/courses?limit=10", None).await;

    // Webhooks: create and list (the endpoint is not called here).
    let hook = ok(
        &app,
        Method::POST,
        "/v1/webhooks",
        Some(json!({"url": "http://127.0.0.1:9/hook", "eventTypes": ["member.created"]})),
    )
    .await;
    ok(&app, Method::GET, "/v1/webhooks", None).await;
    ok(&app, Method::GET, &format!("/v1/webhooks/{}", id_of(&hook)), None).await;
    // With an endpoint, a new member queues its event with the member count's update.
    ok(&app, Method::POST, "/v1/spotMembers", Some(json!({"email": "three@example.com"}))).await;
    ok(&app, Method::POST, &format!("/v1/webhooks/{}~test", id_of(&hook)), Some(json!({}))).await;
    ok(&app, Method::GET, &format!("/v1/webhooks/{}/deliveries", id_of(&hook)), None).await;

    ok(&app, Method::POST, &format!("/v1/groups/{g}/spotMembers~bulkRemove"), Some(json!({"spotMemberIds": [m2]})))
        .await;
    ok(&app, Method::DELETE, &format!("/v1/groups/{g}"), None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kaizala_requests_read_one_shard() {
    let Some(url) = citus_url() else { return };
    let app = one_shard_app(&url).await;
    let number = "+911100000077";
    let (connector, secret) = openspot::domain::kaizala::create_connector(&app.db, app.spot_id, "c").await.unwrap();
    let app_id = connector.id.to_string();
    let (refresh, _) = openspot::domain::kaizala::create_user_token(&app.db, &app_id, number).await.unwrap();
    let r = app
        .client
        .get(format!("{}/kaizala/v1/accessToken", app.base))
        .header("applicationId", &app_id)
        .header("applicationSecret", &secret)
        .header("refreshToken", &refresh)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let token = r.json::<Value>().await.unwrap()["accessToken"].as_str().unwrap().to_string();
    // The caller becomes an Admin of the spot, then works with groups and members.
    let list = ok(&app, Method::GET, "/v1/spotMembers?limit=10", None).await;
    let caller = id_of(list["items"].as_array().unwrap().iter().find(|m| m["mobileNumber"] == number).unwrap());
    ok(&app, Method::PUT, &format!("/v1/spotMembers/{caller}"), Some(json!({"role": "Admin"}))).await;
    let created =
        kz(&app, &token, Method::POST, "/kaizala/v1/groups", Some(json!({"name": "Kz", "members": ["+911100000078"]})))
            .await;
    let gid = created["groupId"].as_str().unwrap().to_string();
    kz(&app, &token, Method::GET, "/kaizala/v1/groups", None).await;
    kz(&app, &token, Method::GET, &format!("/kaizala/v1/groups/{gid}/members"), None).await;
    kz(&app, &token, Method::POST, &format!("/kaizala/v1/groups/{gid}/messages"), Some(json!({"message": "hello"})))
        .await;
    kz(&app, &token, Method::POST, &format!("/kaizala/v1/groups/{gid}/subGroups"), Some(json!({"groupName": "Sub"})))
        .await;
}

/// The console's answer to a browser (no redirects followed): a GET, or a form POST.
async fn console_call(app: &TestApp, cookie: Option<&str>, path: &str, form: Option<&[(&str, &str)]>) -> Resp {
    let client = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let mut rb = match form {
        Some(f) => client.post(format!("{}{path}", app.base)).form(f),
        None => client.get(format!("{}{path}", app.base)),
    };
    if let Some(c) = cookie {
        rb = rb.header("cookie", format!("openspot_console={c}"));
    }
    let r = rb.send().await.unwrap();
    let (status, headers) = (r.status().as_u16(), r.headers().clone());
    let text = r.text().await.unwrap();
    Resp { status, body: Value::Null, text, headers }
}

async fn console_get(app: &TestApp, cookie: Option<&str>, path: &str) -> Resp {
    console_call(app, cookie, path, None).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_requests_read_one_shard() {
    let Some(url) = citus_url() else { return };
    let app = one_shard_app(&url).await;
    let email = format!("admin-{}@example.com", app.spot_id);
    let id = id_of(&ok(&app, Method::POST, "/v1/spotMembers", Some(json!({"email": email}))).await);
    ok(&app, Method::PUT, &format!("/v1/spotMembers/{id}"), Some(json!({"role": "Admin", "firstname": "Ada"}))).await;
    ok(&app, Method::POST, "/v1/customProperties", Some(json!({"slug": "age", "label": "Age", "type": "Number"})))
        .await;
    ok(&app, Method::PUT, &format!("/v1/spotMembers/{id}/customPropertiesValues/age"), Some(json!({"value": 40})))
        .await;
    assert_eq!(console_get(&app, None, "/console/login").await.status, 200, "the sign-in page");
    // A one-time link (the password form is the one sign-in that reads every shard).
    let token = openspot::domain::console::create_login_link(&app.db, app.spot_id, &email).await.unwrap();
    let client = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let r = client.post(format!("{}/console/link", app.base)).form(&[("token", &token)]).send().await.unwrap();
    assert_eq!(r.status(), 303);
    let set = r.headers()["set-cookie"].to_str().unwrap().to_string();
    let cookie = set.split(';').next().unwrap().split_once('=').unwrap().1.to_string();
    let member_page = format!("/console/members/{id}");
    for (path, expected) in [
        ("/console/", "<h1>Overview</h1>"),
        ("/console/members", "<h1>Members"),
        ("/console/members?q=adm", "<h1>Members"),
        ("/console/groups", "<h1>Groups"),
        ("/console/courses", "<h1>Courses"),
        ("/console/properties", "<h1>Custom properties"),
        ("/console/settings", "<h1>Settings</h1>"),
        ("/console/members?prop=age&op=gte&value=30", "<h1>Members"),
        (member_page.as_str(), "Ada"),
    ] {
        let p = console_get(&app, Some(&cookie), path).await;
        assert_eq!(p.status, 200, "{path}: {}", p.text);
        assert!(p.text.contains(expected), "{path}");
    }
    // A selection (keyed by the session, in the spot's shard), then signing out.
    let page = console_get(&app, Some(&cookie), "/console/members").await;
    let at = page.text.find(r#"name="_csrf" value=""#).expect("a CSRF field") + r#"name="_csrf" value=""#.len();
    let csrf = page.text[at..].split('"').next().unwrap().to_string();
    let form = [("on", "1"), ("_csrf", csrf.as_str())];
    let r = console_call(&app, Some(&cookie), &format!("/console/members/select?id={id}"), Some(&form)).await;
    assert_eq!(r.status, 303, "{}", r.text);
    assert!(console_get(&app, Some(&cookie), "/console/members").await.text.contains("1 selected"));
    let r = console_call(&app, Some(&cookie), "/console/logout", Some(&[("_csrf", csrf.as_str())])).await;
    assert_eq!(r.status, 303, "{}", r.text);
    assert_eq!(console_get(&app, Some(&cookie), "/console/").await.status, 303, "signed out");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_event_is_delivered_on_citus() {
    let Some(url) = citus_url() else { return };
    let db = Db::connect_and_migrate(&url).await.expect("migrate");
    let app = TestApp::spawn_on(db, url, None, None, |c| c.allow_private_targets = true).await;
    let rx = receiver::Receiver::start(receiver::Reply::Status(200)).await;
    ok(&app, Method::POST, "/v1/webhooks", Some(json!({"url": rx.url(), "eventTypes": ["member.created"]}))).await;
    let member = id_of(&ok(&app, Method::POST, "/v1/spotMembers", Some(json!({"email": "hooked@example.com"}))).await);
    let got = rx.wait_for(1, Duration::from_secs(20)).await;
    assert_eq!(got.len(), 1, "one delivery");
    let body = got[0].json();
    assert_eq!(body["type"], "member.created", "{body}");
    assert!(body.to_string().contains(&member), "{body}");
}

/// The two-phase commits Citus recorded (`pg_dist_transaction`, until its recovery
/// clears them, every minute) for transactions of the coordinator backends whose
/// `application_name` is `name`: a gid is `citus_<group>_<backend pid>_<number>_<connection>`.
async fn two_phase_commits(observer: &Db, name: &str) -> BTreeSet<String> {
    sqlx::query_scalar::<_, String>(
        "SELECT t.gid FROM pg_dist_transaction t JOIN pg_stat_activity a \
         ON split_part(t.gid, '_', 3) = a.pid::text WHERE a.application_name = $1",
    )
    .bind(name)
    .fetch_all(pool(observer))
    .await
    .unwrap()
    .into_iter()
    .collect()
}

/// Migration 0016: a new member (with or without an outbox row riding on the count's
/// update) writes its spot's counters row, distributed by `spot_id`, and no reference
/// table: it is one worker's transaction, not a two-phase commit on every node. The
/// member writes run on a pool of their own (tagged by `application_name`, and used by
/// nothing else: no dispatcher or housekeeping), whose Citus 2PC records are compared
/// before and after; a write to the reference table `spots` on the same pool shows
/// that the check sees a two-phase commit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_member_is_one_workers_transaction() {
    let Some(url) = citus_url() else { return };
    let db = Db::connect_and_migrate(&url).await.expect("migrate");
    let app = TestApp::spawn_on(db, url.clone(), None, None, |c| c.allow_private_targets = true).await;
    // An endpoint, so that a new member's event rides on the count's update.
    let rx = receiver::Receiver::start(receiver::Reply::Status(200)).await;
    ok(&app, Method::POST, "/v1/webhooks", Some(json!({"url": rx.url(), "eventTypes": ["member.created"]}))).await;
    let name = format!("openspot_2pc_{}", uuid::Uuid::new_v4().simple());
    let tagged = Db::connect(&with_setting(&url, "application_name", &name)).await.expect("connect");
    let spot = app.spot_id;

    let before = two_phase_commits(&app.db, &name).await;
    let (m, created) =
        openspot::domain::members::invite_member(&tagged, spot, "solo@example.com", false).await.unwrap();
    assert!(created, "{m:?}");
    let emails = ["b1@example.com".to_string(), "b2@example.com".to_string()];
    let (made, failed) = openspot::domain::members::bulk_invite(&tagged, spot, &emails, false).await.unwrap();
    assert_eq!((made.len(), failed.len()), (2, 0));
    let after = two_phase_commits(&app.db, &name).await;
    let new: Vec<&String> = after.difference(&before).collect();
    assert!(new.is_empty(), "member writes made two-phase commits: {new:?}");

    let list = ok(&app, Method::GET, "/v1/spotMembers?limit=1", None).await;
    assert_eq!(list["total"], 3, "the maintained count: {list}");
    assert_eq!(rx.wait_for(3, Duration::from_secs(20)).await.len(), 3, "the events were queued and delivered");

    // The check sees a write to the reference table `spots` from that pool.
    openspot::domain::spots::set_limits(&tagged, spot, Some(500), None).await.unwrap();
    let control = two_phase_commits(&app.db, &name).await;
    assert!(control.difference(&after).next().is_some(), "a write to spots is a two-phase commit");
    tagged.close().await;
}

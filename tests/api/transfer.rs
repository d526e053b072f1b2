//! `openspot spots export|import`: a spot populated through the HTTP API on one store,
//! exported, imported into a fresh database of the other store and served there,
//! answers every read identically by the same ids, with the same API key and the same
//! Kaizala connector secret. Also: the refusals (an existing spot, a file cut short,
//! an unknown kind) write nothing, and the export covers every spot-scoped table of the
//! live schema.

use std::collections::BTreeSet;

use openspot::domain::transfer::{self, KINDS, NOT_EXPORTED};
use openspot::http::AppState;
use openspot::store::{transfer::TABLES, Backend, Db};
use openspot::Config;
use reqwest::Method;
use serde_json::{json, Value};

use crate::both;
use crate::common::{test_client, test_database, wait_until_ready, TestApp};
use crate::kaizala::{call, setup, Kz};
use crate::receiver::{Receiver, Reply};

/// What [`populate`] made, for the reads compared afterwards.
struct Made {
    members: Vec<String>,
    groups: Vec<String>,
    course: String,
    webhook: String,
    kz: Kz,
    _receiver: Receiver,
}

fn id(r: &crate::common::Resp) -> String {
    assert!(r.status < 300, "{} {}", r.status, r.text);
    r.body["id"].as_str().unwrap_or_else(|| panic!("no id: {}", r.text)).to_string()
}

/// A spot with something in every exported table, made through the HTTP API (the
/// Kaizala connector through the domain, as `openspot kaizala connectors create` does).
async fn populate(app: &TestApp) -> Made {
    let role =
        id(&app.post("/v1/spotMemberCustomRole", json!({"label": "Moderator", "description": "keeps order"})).await);
    let r = app.post("/v1/customProperties", json!({"label": "Seats", "type": "Number"})).await;
    assert_eq!(r.status, 201, "{}", r.text);
    let r = app
        .post(
            "/v1/customProperties",
            json!({"label": "Topics", "type": "MultipleSelect", "possibleValues": ["rust", "go", "sql"]}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let mut members = Vec::new();
    for (i, name) in ["ada", "bob", "cyd", "dee", "eve"].iter().enumerate() {
        let m = app.invite(&format!("{name}@x.io")).await;
        let r = app
            .put(&format!("/v1/spotMembers/{m}"), json!({"firstname": name.to_uppercase(), "lastname": "Test"}))
            .await;
        assert_eq!(r.status, 200, "{}", r.text);
        let body = json!([{"customPropertySlug": "seats", "value": 1.5 + i as f64}, {"customPropertySlug": "topics", "value": ["rust", "sql"]}]);
        let r = app.post(&format!("/v1/spotMembers/{m}/customPropertiesValues~bulkUpsert"), body).await;
        assert!(r.status < 300, "{}", r.text);
        members.push(m);
    }
    let r = app.put(&format!("/v1/spotMembers/{}", members[0]), json!({"customRoleId": role})).await;
    assert_eq!(r.status, 200, "{}", r.text);
    // An Admin with a console password: the hash moves with the spot.
    let r = app.put(&format!("/v1/spotMembers/{}", members[1]), json!({"role": "Admin"})).await;
    assert_eq!(r.status, 200, "{}", r.text);
    openspot::domain::console::set_password(&app.db, app.spot_id, "bob@x.io", "a long enough password").await.unwrap();

    let static_group = id(&app.post("/v1/groups", json!({"name": "Founders", "emoji": "🚀"})).await);
    let r = app
        .post(&format!("/v1/groups/{static_group}/spotMembers~bulkAdd"), json!({"spotMemberIds": &members[..3]}))
        .await;
    assert!(r.status < 300, "{}", r.text);
    let rules = json!({"operator": "AND", "conditions": [
        {"operator": "OR", "triggers": [{"field": "firstname", "op": "eq", "value": "ADA"},
                                         {"field": "firstname", "op": "eq", "value": "EVE"}]}]});
    let smart = id(&app.post("/v1/groups", json!({"name": "A and E", "type": "Smart", "rules": rules})).await);
    wait_until_ready(app, &smart).await;
    let r = app.post(&format!("/v1/groups/{smart}/blacklist~bulkAdd"), json!({"spotMemberIds": [&members[4]]})).await;
    assert!(r.status < 300, "{}", r.text);

    let course = id(&app.post("/v1/courses", json!({"title": "Rust 101", "description": "basics"})).await);
    for m in &members[..2] {
        let r = app.post(&format!("/v1/courses/{course}/participants"), json!({"spotMemberId": m})).await;
        assert_eq!(r.status, 201, "{}", r.text);
    }
    let r = app.post(&format!("/v1/courses/{course}/groups~bulkAdd"), json!({"groupIds": [&static_group]})).await;
    assert!(r.status < 300, "{}", r.text);

    let receiver = Receiver::start(Reply::EchoValidationToken).await;
    let webhook = id(&app
        .post(
            "/v1/webhooks",
            json!({"url": format!("{}/openspot", receiver.url()), "eventTypes": ["course.participant.created"]}),
        )
        .await);

    // Kaizala: a connector, a user signed in, a group with a message and a subscription.
    let kz = setup(app, "+911199999999").await;
    let r = call(app, &kz, Method::POST, "/groups", Some(r#"{name:"Kz group", members:["+911199999998"]}"#)).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let kz_group = r.body["groupId"].as_str().unwrap().to_string();
    let r = call(app, &kz, Method::POST, &format!("/groups/{kz_group}/messages"), Some(r#"{message:"hello"}"#)).await;
    assert!(r.status < 300, "{}", r.text);
    let r = call(app, &kz, Method::POST, &format!("/groups/{kz_group}/subgroups"), Some("{groupName:'Child'}")).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let kz_child = r.body["groupId"].as_str().unwrap().to_string();
    let body = format!(
        "{{objectId:'{kz_group}', objectType:'Group', eventTypes:['MemberAdded'], callBackUrl:'{}'}}",
        receiver.url()
    );
    let r = call(app, &kz, Method::POST, "/webhook", Some(&body)).await;
    assert!(r.status < 300, "{}", r.text);
    Made { members, groups: vec![static_group, smart, kz_group, kz_child], course, webhook, kz, _receiver: receiver }
}

/// Every read the comparison makes, by path (MeltingSpot with the spot's key).
fn paths(made: &Made) -> Vec<String> {
    let mut p: Vec<String> = [
        "/v1/spotMembers?limit=100",
        "/v1/spotMemberCustomRole",
        "/v1/customProperties",
        "/v1/groups?limit=100",
        "/v1/courses",
        "/v1/webhooks",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    for m in &made.members {
        p.push(format!("/v1/spotMembers/{m}"));
        p.push(format!("/v1/spotMembers/{m}/customPropertiesValues"));
    }
    for g in &made.groups {
        p.push(format!("/v1/groups/{g}"));
        p.push(format!("/v1/groups/{g}/spotMembers?limit=100"));
    }
    p.push(format!("/v1/courses/{}", made.course));
    p.push(format!("/v1/courses/{}/participants", made.course));
    p.push(format!("/v1/webhooks/{}", made.webhook));
    p
}

/// The answers to [`paths`] and to the Kaizala reads of `kz`, from the server at `base`.
async fn answers(base: &str, key: &str, made: &Made, kz: &Kz) -> Vec<(String, u16, Value)> {
    let client = test_client();
    let mut out = Vec::new();
    for path in paths(made) {
        let r = client.get(format!("{base}{path}")).header("authorization", key).send().await.unwrap();
        let status = r.status().as_u16();
        // The server's own address (a member's default embed URL) is the one expected difference.
        let text = r.text().await.unwrap().replace(base, "BASE");
        out.push((path, status, serde_json::from_str::<Value>(&text).unwrap_or(Value::Null)));
    }
    let mut kz_paths = vec!["/groups".to_string(), "/webhook".to_string()];
    for g in &made.groups[2..] {
        kz_paths.push(format!("/groups/{g}/members"));
        kz_paths.push(format!("/groups/{g}"));
        kz_paths.push(format!("/groups/{g}/subGroups"));
    }
    for path in kz_paths {
        let r = client.get(format!("{base}/kaizala/v1{path}")).header("accessToken", &kz.token).send().await.unwrap();
        let status = r.status().as_u16();
        out.push((format!("kaizala {path}"), status, r.json::<Value>().await.unwrap_or(Value::Null)));
    }
    out
}

/// Signs `number` in through the connector `app_id`/`secret` on the server at `base`;
/// returns the access token.
async fn kz_sign_in(base: &str, db: &Db, app_id: &str, secret: &str, number: &str) -> String {
    let (refresh, _) = openspot::domain::kaizala::create_user_token(db, app_id, number).await.unwrap();
    let r = test_client()
        .get(format!("{base}/kaizala/v1/accessToken"))
        .header("applicationId", app_id)
        .header("applicationSecret", secret)
        .header("refreshToken", refresh)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    r.json::<Value>().await.unwrap()["accessToken"].as_str().unwrap().to_string()
}

/// A server on the database at `url` (migrated), as `openspot serve` runs it; its base URL.
async fn serve(url: &str) -> (String, Db) {
    let db = Db::connect_and_migrate(url).await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let mut config = Config::new(addr, None);
    config.default_limits = openspot::domain::auth::Limits { per_10s: 100_000, per_day: 10_000_000 };
    let state = AppState::new(db.clone(), config).unwrap();
    let serve_state = state.clone();
    tokio::spawn(async move {
        let _ = openspot::serve(serve_state, listener, std::future::pending()).await;
    });
    (format!("http://{addr}"), db)
}

fn openspot(url: &str, args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_openspot"))
        .arg("--database-url")
        .arg(url)
        .args(args)
        .env_remove("OPENSPOT_DATABASE_URL")
        .output()
        .unwrap()
}

/// Moves a populated spot from `from` to a fresh database of `to` and compares.
async fn round_trip(from: Backend, to: Backend, through_cli: bool) {
    let Some(app) = TestApp::spawn_with(from, |c| c.allow_private_targets = true).await else { return };
    let Some((target_url, _dir, _guard)) = test_database(to).await else { return };
    let made = populate(&app).await;
    let before = answers(&app.base, &app.key, &made, &made.kz).await;
    for (path, status, body) in &before {
        assert_eq!(*status, 200, "{path}: {body}");
    }

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("spot.jsonl");
    let spot = app.spot_id.to_string();
    if through_cli {
        let out = openspot(
            &app.database_url,
            &["spots", "export", "--spot", &spot, "--to", file.to_str().unwrap(), "--json"],
        );
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let report: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(report["byKind"]["member"], 7, "{report}"); // five invited, two by Kaizala
        let out = openspot(&target_url, &["spots", "import", "--from", file.to_str().unwrap(), "--json"]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let imported: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(imported["imported"], report["exported"]);
    } else {
        let mut bytes = Vec::new();
        transfer::export_spot(&app.db, app.spot_id, &mut bytes).await.unwrap();
        std::fs::write(&file, &bytes).unwrap();
        let target = Db::connect_and_migrate(&target_url).await.unwrap();
        let summary = transfer::import_spot(&target, &mut bytes.as_slice()).await.unwrap();
        assert_eq!(summary.spot, Some(app.spot_id));
        target.close().await;
    }
    let text = std::fs::read_to_string(&file).unwrap();
    let kinds: BTreeSet<String> = text
        .lines()
        .skip(1)
        .map(|l| serde_json::from_str::<Value>(l).unwrap()["kind"].as_str().unwrap().to_string())
        .collect();
    for (kind, _) in KINDS {
        assert!(kinds.contains(*kind), "the populated spot has no {kind} record");
    }

    let (target, db) = serve(&target_url).await;
    // The connector's secret still signs in (a fresh user token: tokens are not exported).
    let token = kz_sign_in(&target, &db, &made.kz.app_id, &made.kz.secret, "+911199999999").await;
    let kz = Kz { app_id: made.kz.app_id.clone(), secret: made.kz.secret.clone(), refresh: String::new(), token };
    let after = answers(&target, &app.key, &made, &kz).await;
    for (a, b) in before.iter().zip(&after) {
        assert_eq!(a, b, "{} answers differently after the move", a.0);
    }
    assert_eq!(before.len(), after.len());
    db.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spot_moves_from_sqlite_to_postgres_with_its_ids() {
    round_trip(Backend::Sqlite, Backend::Postgres, true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spot_moves_from_postgres_to_sqlite_with_its_ids() {
    round_trip(Backend::Postgres, Backend::Sqlite, false).await;
}

both!(refused_imports_write_nothing, |app| {
    app.invite("ada@x.io").await;
    let g = app.post("/v1/groups", json!({"name": "G"})).await;
    assert_eq!(g.status, 201);
    let mut bytes = Vec::new();
    transfer::export_spot(&app.db, app.spot_id, &mut bytes).await.unwrap();
    let text = String::from_utf8(bytes).unwrap();

    // The spot exists here already.
    let err = transfer::import_spot(&app.db, &mut text.as_bytes()).await.unwrap_err().to_string();
    assert!(err.contains("exists already"), "{err}");

    // Into a fresh database: cut short, an unknown kind, a line out of order.
    let (url, _dir, _guard) = test_database(app.db.backend()).await.unwrap();
    let fresh = Db::connect_and_migrate(&url).await.unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let cut = lines[..lines.len() - 1].join("\n");
    let err = transfer::import_spot(&fresh, &mut cut.as_bytes()).await.unwrap_err().to_string();
    assert!(err.contains("ends before its end line"), "{err}");
    let mut odd = lines.clone();
    odd.insert(2, r#"{"kind":"planet","data":{}}"#);
    let err = transfer::import_spot(&fresh, &mut odd.join("\n").as_bytes()).await.unwrap_err().to_string();
    assert!(err.starts_with("line 3: unknown kind \"planet\""), "{err}");
    let mut swapped = lines.clone();
    let last_row = swapped.len() - 2;
    swapped.swap(2, last_row);
    let err = transfer::import_spot(&fresh, &mut swapped.join("\n").as_bytes()).await.unwrap_err().to_string();
    assert!(err.contains("out of order") || err.contains("refused by the database"), "{err}");
    let too_long = format!("{}\n{}\n", lines[0], "x".repeat(transfer::MAX_LINE_BYTES + 1));
    let err = transfer::import_spot(&fresh, &mut too_long.as_bytes()).await.unwrap_err().to_string();
    assert!(err.starts_with("line 2: longer than"), "{err}");
    assert!(openspot::domain::spots::list_spots(&fresh).await.unwrap().is_empty(), "nothing was imported");
    // The whole file goes in.
    let summary = transfer::import_spot(&fresh, &mut text.as_bytes()).await.unwrap();
    assert_eq!(summary.records as usize, lines.len() - 2);
    assert_eq!(openspot::domain::spots::list_spots(&fresh).await.unwrap().len(), 1);
    fresh.close().await;
});

/// The spot-scoped tables of the live schema, with their columns (spot_id left out).
async fn schema(db: &Db) -> Vec<(String, BTreeSet<String>)> {
    let rows: Vec<(String, String)> = match db {
        Db::Sqlite(p, ..) => sqlx::query_as(
            "SELECT m.name, c.name FROM sqlite_master m, pragma_table_info(m.name) c \
             WHERE m.type = 'table' AND m.name NOT LIKE 'sqlite_%' AND m.name <> '_sqlx_migrations'",
        )
        .fetch_all(p)
        .await
        .unwrap(),
        Db::Postgres(p) => sqlx::query_as(
            "SELECT table_name::text, column_name::text FROM information_schema.columns \
             WHERE table_schema = 'public' AND table_name <> '_sqlx_migrations'",
        )
        .fetch_all(p)
        .await
        .unwrap(),
    };
    let mut tables: std::collections::BTreeMap<String, BTreeSet<String>> = Default::default();
    for (t, c) in rows {
        tables.entry(t).or_default().insert(c);
    }
    tables
        .into_iter()
        .filter(|(t, cols)| t == "spots" || cols.contains("spot_id"))
        .map(|(t, mut cols)| {
            cols.remove("spot_id");
            (t, cols)
        })
        .collect()
}

both!(the_export_covers_every_spot_scoped_table, |app| {
    for (table, columns) in schema(&app.db).await {
        if NOT_EXPORTED.contains(&table.as_str()) {
            continue;
        }
        let spec = TABLES.iter().find(|t| t.name == table);
        let spec = spec.unwrap_or_else(|| panic!("table {table} is neither exported nor listed as transient"));
        let exported: BTreeSet<String> = spec.columns.iter().map(|c| c.name.to_string()).collect();
        assert_eq!(exported, columns, "the columns of {table}");
    }
});

// An export written before migration 0016 (format version 1) carries the spot's member
// count on the spot record, and has no `spot_counter` record: it still imports, its
// count becoming the spot's counters row, which the next invitation then counts on.
both!(an_export_from_before_spot_counters_imports_with_its_count, |app| {
    for email in ["ada@x.io", "bob@x.io", "cy@x.io"] {
        app.invite(email).await;
    }
    let mut bytes = Vec::new();
    transfer::export_spot(&app.db, app.spot_id, &mut bytes).await.unwrap();
    let text = String::from_utf8(bytes).unwrap();
    // The same spot as version 1 wrote it.
    let mut old = Vec::new();
    let mut records = 0;
    for line in text.lines() {
        let mut v: Value = serde_json::from_str(line).unwrap();
        match v["kind"].as_str() {
            None => v["version"] = json!(1),
            Some("spot_counter") => {
                assert_eq!(v["data"], json!({"member_count": 3}), "{v}");
                continue;
            }
            Some("spot") => {
                v["data"]["member_count"] = json!(3);
                records += 1;
            }
            Some("end") => v["records"] = json!(records),
            Some(_) => records += 1,
        }
        old.push(v.to_string());
    }
    assert!(old[0].contains("\"version\":1"), "{}", old[0]);
    let old = old.join("\n");

    let (url, _dir, _guard) = test_database(app.db.backend()).await.unwrap();
    let fresh = Db::connect_and_migrate(&url).await.unwrap();
    // Without the count in either form, the spot would have no counters row: refused.
    let countless = old.replace("\"member_count\":3,", "");
    assert_ne!(countless, old);
    let err = transfer::import_spot(&fresh, &mut countless.as_bytes()).await.unwrap_err().to_string();
    assert!(err.contains("no spot_counter record"), "{err}");
    transfer::import_spot(&fresh, &mut old.as_bytes()).await.unwrap();
    let spots = openspot::domain::spots::list_spots_with_member_counts(&fresh).await.unwrap();
    assert_eq!(spots.iter().map(|(s, n)| (s.id, *n)).collect::<Vec<_>>(), vec![(app.spot_id, 3)]);
    let (_, created) = openspot::domain::members::invite_member(&fresh, app.spot_id, "dee@x.io", false).await.unwrap();
    assert!(created);
    let spots = openspot::domain::spots::list_spots_with_member_counts(&fresh).await.unwrap();
    assert_eq!(spots[0].1, 4, "the imported count is counted on");
    // A current export of it has the count as a record of its own, after the spot's.
    let mut again = Vec::new();
    transfer::export_spot(&fresh, app.spot_id, &mut again).await.unwrap();
    let lines: Vec<Value> =
        String::from_utf8(again).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines[0]["version"], 2);
    assert!(lines[1]["data"].get("member_count").is_none(), "{}", lines[1]);
    assert_eq!(lines[2], json!({"kind": "spot_counter", "data": {"member_count": 4}}));
    fresh.close().await;
});

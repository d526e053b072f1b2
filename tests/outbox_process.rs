//! `openspot outbox list|retry` through the real binary, on SQLite and PostgreSQL
//! (when `TEST_POSTGRES_URL` is set): each prints exactly one JSON object with `--json`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

use openspot::domain::vocab::{ChannelKind, OutboxState};
use openspot::store::outbox::{self, NewOutboxRow};
use openspot::store::Db;
use serde_json::Value;
use uuid::Uuid;

fn openspot(db: &str, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_openspot"))
        .arg("--database-url")
        .arg(db)
        .args(args)
        .env_remove("OPENSPOT_DATABASE_URL")
        .output()
        .expect("run openspot");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn one_object(stdout: &str) -> Value {
    let v: Value = serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("not one JSON value ({e}): {stdout}"));
    assert!(v.is_object(), "{stdout}");
    v
}

/// A fresh PostgreSQL database (dropped by the returned guard's owner at the end), or None.
async fn postgres_database() -> Option<(String, String, String)> {
    let Ok(admin) = std::env::var("TEST_POSTGRES_URL") else {
        eprintln!("skipped: PostgreSQL test (set TEST_POSTGRES_URL to run it)");
        return None;
    };
    let name = format!("openspot_t_{}", Uuid::new_v4().simple());
    let db = Db::connect(&admin).await.unwrap();
    if let Db::Postgres(p) = &db {
        sqlx::query(&format!("CREATE DATABASE \"{name}\"")).execute(p).await.unwrap();
    }
    db.close().await;
    let base = admin[..admin.rfind('/').unwrap()].to_string();
    Some((format!("{base}/{name}"), admin, name))
}

async fn drop_postgres(admin: &str, name: &str) {
    let db = Db::connect(admin).await.unwrap();
    if let Db::Postgres(p) = &db {
        let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)")).execute(p).await;
    }
    db.close().await;
}

async fn list_and_retry(url: &str) {
    let db = Db::connect_and_migrate(url).await.unwrap();
    let (spot, _) = openspot::domain::spots::create_spot(&db, "cli spot").await.unwrap();
    let skipped = NewOutboxRow {
        id: Uuid::now_v7(),
        event_id: Uuid::now_v7(),
        channel: ChannelKind::Email,
        target_id: None,
        event_type: "invitation.spot".into(),
        payload: "{}".into(),
        occurred_at: 1,
        state: OutboxState::Skipped,
        last_error: Some("OPENSPOT_SMTP_URL is not set".into()),
    };
    let pending = NewOutboxRow {
        id: Uuid::now_v7(),
        event_id: Uuid::now_v7(),
        channel: ChannelKind::Webhook,
        target_id: Some(Uuid::now_v7()),
        event_type: "member.created".into(),
        state: OutboxState::Pending,
        last_error: None,
        ..skipped.clone()
    };
    let mut tx = db.begin().await.unwrap();
    outbox::insert_many(tx.ex(), spot.id, &[skipped.clone(), pending.clone()], 1_000).await.unwrap();
    tx.commit().await.unwrap();
    db.close().await;

    let (code, out, err) = openspot(url, &["outbox", "list", "--json"]);
    assert_eq!(code, 0, "{err}");
    let items = one_object(&out)["items"].as_array().unwrap().clone();
    assert_eq!(items.len(), 2);
    assert_eq!(items[0]["id"], pending.id.to_string(), "newest first");
    let s = &items[1];
    assert_eq!(s["spotId"], spot.id.to_string());
    assert_eq!(s["eventId"], skipped.event_id.to_string());
    assert_eq!((s["channel"].as_str(), s["state"].as_str()), (Some("Email"), Some("Skipped")));
    assert_eq!(s["lastError"], "OPENSPOT_SMTP_URL is not set");
    assert_eq!((s["attempts"].as_i64(), s["targetId"].is_null()), (Some(0), true));
    for key in ["eventType", "nextAttemptAt", "lastStatus", "createdAt"] {
        assert!(s.get(key).is_some(), "{key}");
    }

    let (_, out, _) =
        openspot(url, &["outbox", "list", "--state", "Skipped", "--spot", &spot.id.to_string(), "--json"]);
    assert_eq!(one_object(&out)["items"].as_array().unwrap().len(), 1);
    let (code, _, err) = openspot(url, &["outbox", "list", "--state", "skipped"]);
    assert_ne!(code, 0);
    assert!(err.contains("Pending"), "names the words: {err}");

    let (code, _, err) = openspot(url, &["outbox", "retry", "--json"]);
    assert_ne!(code, 0, "retry needs to be told which rows");
    assert!(err.contains("--failed") || err.contains("required"), "{err}");
    let (code, out, _) = openspot(url, &["outbox", "retry", "--failed", "--json"]);
    assert_eq!((code, one_object(&out)["requeued"].as_i64()), (0, Some(0)));
    let (code, out, _) = openspot(url, &["outbox", "retry", "--skipped", "--json"]);
    assert_eq!((code, one_object(&out)["requeued"].as_i64()), (0, Some(1)));
    let (_, out, _) = openspot(url, &["outbox", "list", "--state", "Pending", "--json"]);
    assert_eq!(one_object(&out)["items"].as_array().unwrap().len(), 2);
    // A Pending row is never requeued (it may be in flight).
    let (_, out, _) = openspot(url, &["outbox", "retry", "--id", &pending.id.to_string(), "--json"]);
    assert_eq!(one_object(&out)["requeued"].as_i64(), Some(0));
    let (code, out, _) = openspot(url, &["outbox", "list"]);
    assert_eq!(code, 0);
    assert_eq!(out.lines().count(), 2, "{out}");
}

#[tokio::test]
async fn outbox_list_and_retry_print_one_json_object_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    list_and_retry(&format!("sqlite://{}", dir.path().join("outbox.db").display())).await;
}

#[tokio::test]
async fn outbox_list_and_retry_print_one_json_object_postgres() {
    let Some((url, admin, name)) = postgres_database().await else { return };
    list_and_retry(&url).await;
    drop_postgres(&admin, &name).await;
}

//! Backups: an online SQLite snapshot taken while members are being invited holds
//! together (every counter matches its rows), restoring it brings the data back in one
//! transaction under a running server, and PostgreSQL's documented `pg_dump` /
//! `pg_restore` round trip gives a server that answers as before.

use std::path::Path;

use openspot::config::Config;
use openspot::http::AppState;
use openspot::store::backup::{restore, snapshot};
use openspot::store::{Backend, Db};
use serde_json::json;

use crate::common::{test_client, test_database, TestApp};

/// Spots whose member count differs from their member rows in the SQLite database at
/// `url`, which must also pass SQLite's integrity check.
async fn torn_counters(url: &str) -> Vec<(i64, i64)> {
    let db = Db::connect(url).await.unwrap();
    let Db::Sqlite(pool, ..) = &db else { panic!("a SQLite snapshot") };
    let check: String = sqlx::query_scalar("PRAGMA integrity_check").fetch_one(pool).await.unwrap();
    assert_eq!(check, "ok");
    db.close().await;
    crate::faults::torn_counts(url).await
}

async fn member_total(app: &TestApp) -> i64 {
    let r = app.get("/v1/spotMembers?limit=1").await;
    assert_eq!(r.status, 200, "{}", r.body);
    r.body["total"].as_i64().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_taken_under_writes_holds_together_and_restores() {
    let app = TestApp::spawn(Backend::Sqlite).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    // A writer: 40 bulk invites of 20 members. After 10 it waits for the first snapshot
    // (so that one surely holds fewer members than the end); the others are taken while
    // it writes.
    let (halfway_tx, halfway_rx) = tokio::sync::oneshot::channel::<()>();
    let (taken_tx, taken_rx) = tokio::sync::oneshot::channel::<()>();
    let mut taken_tx = Some(taken_tx);
    let writer = {
        let (base, key, client) = (app.base.clone(), app.key.clone(), app.client.clone());
        tokio::spawn(async move {
            let (mut halfway_tx, mut taken_rx) = (Some(halfway_tx), Some(taken_rx));
            for batch in 0..40 {
                if batch == 10 {
                    halfway_tx.take().unwrap().send(()).unwrap();
                    taken_rx.take().unwrap().await.unwrap();
                }
                let emails: Vec<String> = (0..20).map(|i| format!("m{batch}-{i}@x.io")).collect();
                let r = client
                    .post(format!("{base}/v1/spotMembers~bulkInvite"))
                    .header("authorization", &key)
                    .json(&json!({"emails": emails}))
                    .send()
                    .await
                    .unwrap();
                assert!(r.status().is_success(), "{}", r.status());
            }
        })
    };
    halfway_rx.await.unwrap();
    let mut snapshots = Vec::new();
    for n in 0..4 {
        let file = dir.path().join(format!("backup-{n}.db"));
        let done = snapshot(&app.db, &file).await.unwrap();
        assert!(done.bytes > 0);
        snapshots.push(file);
        if n == 0 {
            taken_tx.take().unwrap().send(()).unwrap();
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    writer.await.unwrap();
    for file in &snapshots {
        let url = format!("sqlite://{}", file.display());
        assert_eq!(torn_counters(&url).await, vec![], "{} is consistent", file.display());
    }

    // The first snapshot holds fewer members than the live database now.
    let live = member_total(&app).await;
    assert_eq!(live, 800);
    let url = format!("sqlite://{}", snapshots[0].display());
    let held = {
        let db = Db::connect(&url).await.unwrap();
        let Db::Sqlite(pool, ..) = &db else { unreachable!() };
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM members").fetch_one(pool).await.unwrap();
        db.close().await;
        n
    };
    assert_eq!(held, 200, "the first snapshot was taken after 10 of 40 batches");
    // Restored under the running server: the API answers with the snapshot's data.
    let done = restore(&app.db, &snapshots[0]).await.unwrap();
    assert!(done.rows as i64 >= held && done.tables > 5, "{done:?}");
    assert_eq!(member_total(&app).await, held);
    assert_eq!(torn_counters(&app.database_url).await, vec![]);

    // Refusals: an existing file, a missing backup, a backup of another schema version.
    let err = snapshot(&app.db, &snapshots[1]).await.unwrap_err().to_string();
    assert!(err.contains("exists already"), "{err}");
    let err = restore(&app.db, &dir.path().join("missing.db")).await.unwrap_err().to_string();
    assert!(err.contains("is not a file"), "{err}");
    let old = dir.path().join("old.db");
    let db = Db::connect(&format!("sqlite://{}", old.display())).await.unwrap();
    if let Db::Sqlite(pool, ..) = &db {
        sqlx::query("CREATE TABLE _sqlx_migrations (version BIGINT PRIMARY KEY, success BOOLEAN NOT NULL)")
            .execute(pool)
            .await
            .unwrap();
        sqlx::query("INSERT INTO _sqlx_migrations VALUES (1, TRUE)").execute(pool).await.unwrap();
    }
    db.close().await;
    let err = restore(&app.db, &old).await.unwrap_err().to_string();
    assert!(err.contains("schema version 1"), "{err}");
    let junk = dir.path().join("junk.db");
    std::fs::write(&junk, b"not a database at all, just text").unwrap();
    assert!(restore(&app.db, &junk).await.is_err());
    // A backup whose rows do not hold together (members without their spot) is refused whole.
    let broken = dir.path().join("broken.db");
    std::fs::copy(&snapshots[2], &broken).unwrap();
    let db = Db::connect(&format!("sqlite://{}", broken.display())).await.unwrap();
    if let Db::Sqlite(pool, ..) = &db {
        let mut c = pool.acquire().await.unwrap();
        sqlx::query("PRAGMA foreign_keys = OFF").execute(&mut *c).await.unwrap();
        sqlx::query("DELETE FROM spots").execute(&mut *c).await.unwrap();
    }
    db.close().await;
    let err = restore(&app.db, &broken).await.unwrap_err().to_string();
    assert!(err.contains("do not hold together"), "{err}");
    // The failed restores changed nothing.
    assert_eq!(member_total(&app).await, held);
}

fn run(cmd: &str, args: &[&str]) -> bool {
    match std::process::Command::new(cmd).args(args).output() {
        Ok(out) => {
            assert!(out.status.success(), "{cmd} {args:?}: {}", String::from_utf8_lossy(&out.stderr));
            true
        }
        Err(e) => {
            eprintln!("skipped: {cmd} is not available ({e})");
            false
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_round_trips_through_pg_dump_and_pg_restore() {
    let Some(app) = TestApp::spawn(Backend::Postgres).await else { return };
    let err = snapshot(&app.db, Path::new("/tmp/never-written.db")).await.unwrap_err().to_string();
    assert!(err.contains("pg_dump"), "{err}");
    let mut ids = Vec::new();
    for i in 0..30 {
        ids.push(app.invite(&format!("pg{i}@x.io")).await);
    }
    let g = app.post("/v1/groups", json!({"name": "Founders"})).await;
    let gid = g.body["id"].as_str().unwrap().to_string();
    ids.truncate(5);
    let r = app.post(&format!("/v1/groups/{gid}/spotMembers~bulkAdd"), json!({"spotMemberIds": ids})).await;
    assert!(r.status < 300, "{}", r.body);

    let dir = tempfile::tempdir().unwrap();
    let dump = dir.path().join("spot.dump");
    if !run("pg_dump", &["-Fc", "-d", &app.database_url, "-f", dump.to_str().unwrap()]) {
        return;
    }
    let (restored_url, _, _guard) = test_database(Backend::Postgres).await.unwrap();
    run("pg_restore", &["--no-owner", "-d", &restored_url, dump.to_str().unwrap()]);

    // A server on the restored database answers the same key with the same data.
    let db = Db::connect_and_migrate(&restored_url).await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    // With the dumped server's limits: the dump holds its rate-limit windows, leases
    // included (a lease is 1 % of a large limit), which the defaults' 100 per 10 s
    // would read as spent when the restore lands in the same window.
    let mut config = Config::new(addr, None);
    config.default_limits = openspot::domain::auth::Limits { per_10s: 100_000, per_day: 10_000_000 };
    let state = AppState::new(db.clone(), config).unwrap();
    tokio::spawn(async move {
        let _ = openspot::serve(state, listener, std::future::pending()).await;
    });
    let client = test_client();
    let get = |path: String| {
        let (client, key) = (client.clone(), app.key.clone());
        async move {
            let r = client.get(format!("http://{addr}{path}")).header("authorization", key).send().await.unwrap();
            assert_eq!(r.status(), 200);
            r.json::<serde_json::Value>().await.unwrap()
        }
    };
    assert_eq!(get("/v1/spotMembers?limit=1".into()).await["total"], 30);
    let members = get(format!("/v1/groups/{gid}/spotMembers")).await;
    assert_eq!(members["total"], 5);
    db.close().await;
}

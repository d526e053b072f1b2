//! Faults: the real `openspot` process is SIGKILLed in the middle of writes, restarted,
//! and the database is checked, on SQLite and PostgreSQL.
//!
//! * Bulk invites are all-or-nothing: after the kill every batch of 200 is wholly there
//!   or wholly absent, every acknowledged batch is there, and each spot's member count
//!   equals its member rows.
//! * A member import killed mid-way leaves whole batches (counts matching rows, every
//!   imported member with its name), and re-running it finishes the job.

use std::collections::HashMap;
use std::process::Command;
use std::time::Duration;

use openspot::store::{Backend, Db};
use serde_json::json;

use crate::common::{test_client, test_database};
use crate::security::{cli_json, serve_logged, stop};

const BIN: &str = env!("CARGO_BIN_EXE_openspot");

/// Spots whose stored member count differs from their member rows.
pub(crate) async fn torn_counts(url: &str) -> Vec<(i64, i64)> {
    let db = Db::connect(url).await.unwrap();
    let sql = "SELECT s.member_count, (SELECT COUNT(*) FROM members m WHERE m.spot_id = s.spot_id) \
               FROM spot_counters s \
               WHERE s.member_count <> (SELECT COUNT(*) FROM members m WHERE m.spot_id = s.spot_id)";
    let torn = match &db {
        Db::Sqlite(p, ..) => sqlx::query_as::<_, (i64, i64)>(sql).fetch_all(p).await.unwrap(),
        Db::Postgres(p) => sqlx::query_as::<_, (i64, i64)>(sql).fetch_all(p).await.unwrap(),
    };
    db.close().await;
    torn
}

/// Every member's email and first name.
async fn members(url: &str) -> Vec<(String, String)> {
    let db = Db::connect(url).await.unwrap();
    let sql = "SELECT email, firstname FROM members";
    let rows = match &db {
        Db::Sqlite(p, ..) => sqlx::query_as::<_, (String, String)>(sql).fetch_all(p).await.unwrap(),
        Db::Postgres(p) => sqlx::query_as::<_, (String, String)>(sql).fetch_all(p).await.unwrap(),
    };
    db.close().await;
    rows
}

fn sigkill(mut child: std::process::Child) {
    child.kill().unwrap();
    child.wait().unwrap();
}

async fn bulk_invites_survive_a_kill(backend: Backend) {
    let Some((url, _dir, _pg)) = test_database(backend).await else { return };
    let (_, key) = crate::replicas::new_spot(&url);
    let (server, listen, _log) =
        serve_logged(Command::new(BIN).args(["--database-url", &url, "serve", "--listen", "127.0.0.1:0"])).await;

    // Four writers send batches of 200 until the server dies; each keeps the batches
    // the server acknowledged.
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let (client, key, base) = (test_client(), key.clone(), format!("http://{listen}"));
            tokio::spawn(async move {
                let mut acked = Vec::new();
                for b in 0.. {
                    let emails: Vec<String> = (0..200).map(|i| format!("w{w}b{b}i{i}@x.io")).collect();
                    let sent = client
                        .post(format!("{base}/v1/spotMembers~bulkInvite"))
                        .header("authorization", &key)
                        .json(&json!({"emails": emails}))
                        .send()
                        .await;
                    match sent {
                        Ok(r) if r.status().is_success() => acked.push(format!("w{w}b{b}")),
                        _ => break,
                    }
                }
                acked
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(700)).await;
    sigkill(server);
    let mut acked = Vec::new();
    for w in writers {
        acked.extend(w.await.unwrap());
    }
    assert!(!acked.is_empty(), "some batches were acknowledged before the kill");

    // A restarted server opens the same database, and the data holds together.
    let (server, _, _) =
        serve_logged(Command::new(BIN).args(["--database-url", &url, "serve", "--listen", "127.0.0.1:0"])).await;
    stop(server).await;
    assert_eq!(torn_counts(&url).await, vec![], "member counts match member rows");
    let mut per_batch: HashMap<String, usize> = HashMap::new();
    for (email, _) in members(&url).await {
        let batch = email.split('i').next().unwrap().to_string();
        *per_batch.entry(batch).or_default() += 1;
    }
    for (batch, n) in &per_batch {
        assert_eq!(*n, 200, "batch {batch} is whole ({n} of 200 members)");
    }
    for batch in &acked {
        assert!(per_batch.contains_key(batch), "acknowledged batch {batch} survived the kill");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bulk_invites_survive_a_kill_sqlite() {
    bulk_invites_survive_a_kill(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bulk_invites_survive_a_kill_postgres() {
    bulk_invites_survive_a_kill(Backend::Postgres).await;
}

async fn an_import_killed_midway_resumes_by_rerunning(backend: Backend) {
    let Some((url, dir, _pg)) = test_database(backend).await else { return };
    let spot = cli_json(&url, &["spots", "create", "--name", "faults", "--json"]);
    let spot_id = spot["spotId"].as_str().unwrap().to_string();
    let rows = 40_000;
    let tmp = tempfile::tempdir().unwrap();
    let base = dir.as_ref().map_or(tmp.path(), |d| d.path());
    let csv = base.join("members.csv");
    let mut text = String::from("email,firstname\n");
    for i in 0..rows {
        text.push_str(&format!("m{i}@x.io,Name{i}\n"));
    }
    std::fs::write(&csv, text).unwrap();
    let import = || {
        Command::new(BIN)
            .args(["--database-url", &url, "members", "import", "--spot", &spot_id, csv.to_str().unwrap(), "--json"])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap()
    };
    // Killed once some batches are in and before the last (the file takes seconds).
    let child = import();
    let mut waited = 0;
    loop {
        tokio::time::sleep(Duration::from_millis(50)).await;
        waited += 50;
        let n = members(&url).await.len();
        if n > 0 || waited > 20_000 {
            break;
        }
    }
    sigkill(child);
    let after_kill = members(&url).await;
    assert!(after_kill.len() < rows, "the kill came before the end ({} rows in)", after_kill.len());
    assert_eq!(torn_counts(&url).await, vec![]);
    for (email, firstname) in &after_kill {
        let i = email.trim_start_matches('m').split('@').next().unwrap();
        assert_eq!(firstname, &format!("Name{i}"), "imported members are whole rows");
    }
    // Re-running the import finishes it: every row, no duplicate.
    let out = import().wait_with_output().unwrap();
    assert!(out.status.success());
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["created"].as_u64().unwrap() as usize, rows - after_kill.len(), "{report}");
    assert_eq!(report["updated"].as_u64().unwrap() as usize, after_kill.len(), "{report}");
    assert_eq!(members(&url).await.len(), rows);
    assert_eq!(torn_counts(&url).await, vec![]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_import_killed_midway_resumes_by_rerunning_sqlite() {
    an_import_killed_midway_resumes_by_rerunning(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_import_killed_midway_resumes_by_rerunning_postgres() {
    an_import_killed_midway_resumes_by_rerunning(Backend::Postgres).await;
}

/// Webhook events committed before a SIGKILL (some of them in flight to a receiver that
/// hangs) are all delivered once the server is back, with their event ids.
async fn webhook_events_survive_a_kill(backend: Backend) {
    use crate::receiver::{Receiver, Reply};
    let Some((url, _dir, _pg)) = test_database(backend).await else { return };
    let spot = cli_json(&url, &["spots", "create", "--name", "faults", "--json"]);
    let key = spot["apiKey"].as_str().unwrap().to_string();
    let serve = || {
        let mut cmd = Command::new(BIN);
        cmd.args(["--database-url", &url, "serve", "--listen", "127.0.0.1:0"])
            .env("OPENSPOT_ALLOW_PRIVATE_TARGETS", "true")
            .env("OPENSPOT_WEBHOOK_TIMEOUT_MS", "1000")
            .env("OPENSPOT_OUTBOX_LEASE_MS", "3000")
            .env("OPENSPOT_WEBHOOK_RETRY_SCHEDULE", "200ms,200ms,200ms,200ms,200ms,200ms");
        cmd
    };
    let rx = Receiver::start(Reply::Hang).await;
    let (server, listen, _log) = serve_logged(&mut serve()).await;
    let (client, base) = (test_client(), format!("http://{listen}"));
    let r = client
        .post(format!("{base}/v1/webhooks"))
        .header("authorization", &key)
        .json(&json!({"url": rx.url(), "eventTypes": ["member.created"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let events = 20;
    for i in 0..events {
        let r = client
            .post(format!("{base}/v1/spotMembers"))
            .header("authorization", &key)
            .json(&json!({"email": format!("hook{i}@x.io")}))
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success());
    }
    // Deliveries are in flight (the receiver holds them) when the server dies.
    assert!(!rx.wait_for(1, Duration::from_secs(10)).await.is_empty());
    sigkill(server);

    rx.set_reply(Reply::Status(200));
    let switched = std::time::Instant::now();
    let (server, _, _) = serve_logged(&mut serve()).await;
    let mut ids = std::collections::BTreeSet::new();
    for _ in 0..300 {
        ids = rx
            .captured()
            .iter()
            .filter(|c| c.at >= switched)
            .filter_map(|c| c.header("webhook-id").map(str::to_string))
            .collect();
        if ids.len() == events {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop(server).await;
    assert_eq!(ids.len(), events, "every committed event is delivered after the restart");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_events_survive_a_kill_sqlite() {
    webhook_events_survive_a_kill(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_events_survive_a_kill_postgres() {
    webhook_events_survive_a_kill(Backend::Postgres).await;
}

/// Seeds `n` members below the API (multi-row statements in one transaction); every
/// second one is named "Even". Returns the ids of the "Even" ones.
async fn seed_members(url: &str, spot_id: &str, n: usize) -> std::collections::BTreeSet<uuid::Uuid> {
    let db = Db::connect(url).await.unwrap();
    let spot = uuid::Uuid::parse_str(spot_id).unwrap();
    let lit = |id: uuid::Uuid| match &db {
        Db::Sqlite(..) => format!("X'{}'", id.simple()),
        Db::Postgres(_) => format!("'{id}'"),
    };
    let mut statements = Vec::new();
    let mut even = std::collections::BTreeSet::new();
    for chunk in (0..n).collect::<Vec<_>>().chunks(1000) {
        let rows: Vec<String> = chunk
            .iter()
            .map(|k| {
                let id = uuid::Uuid::now_v7();
                let name = if k % 2 == 0 { "Even" } else { "Odd" };
                if k % 2 == 0 {
                    even.insert(id);
                }
                format!("({}, {}, 'k{k}@x.io', 'k{k}@x.io', '{name}', {k}, {k})", lit(spot), lit(id))
            })
            .collect();
        statements.push(format!(
            "INSERT INTO members (spot_id, id, email, email_norm, firstname, invited_at, updated_at) VALUES {}",
            rows.join(", ")
        ));
    }
    statements.push(format!("UPDATE spot_counters SET member_count = {n} WHERE spot_id = {}", lit(spot)));
    match &db {
        Db::Sqlite(p, ..) => {
            let mut tx = p.begin().await.unwrap();
            for s in &statements {
                sqlx::query(s).execute(&mut *tx).await.unwrap();
            }
            tx.commit().await.unwrap();
        }
        Db::Postgres(p) => {
            let mut tx = p.begin().await.unwrap();
            for s in &statements {
                sqlx::query(s).execute(&mut *tx).await.unwrap();
            }
            tx.commit().await.unwrap();
        }
    }
    db.close().await;
    even
}

/// A group's (ready, member count, lease end) and its membership rows.
async fn smart_group_state(db: &Db, group_id: uuid::Uuid) -> ((bool, i64, Option<i64>), Vec<uuid::Uuid>) {
    let state = "SELECT ready, member_count, compute_lease_until FROM spot_groups WHERE id = $1";
    let members = "SELECT member_id FROM group_members WHERE group_id = $1";
    match db {
        Db::Sqlite(p, ..) => (
            sqlx::query_as(state).bind(group_id).fetch_one(p).await.unwrap(),
            sqlx::query_scalar(members).bind(group_id).fetch_all(p).await.unwrap(),
        ),
        Db::Postgres(p) => (
            sqlx::query_as(state).bind(group_id).fetch_one(p).await.unwrap(),
            sqlx::query_scalar(members).bind(group_id).fetch_all(p).await.unwrap(),
        ),
    }
}

/// A smart-group computation SIGKILLed midway (some members in, the group not ready) is
/// taken over by the restarted server once its lease (1 s here) lapses, and ends exact:
/// the membership is the rule's matching set, the count matches it, the group is ready.
async fn a_smart_group_computation_killed_midway_is_taken_over(backend: Backend) {
    let Some((url, _dir, _pg)) = test_database(backend).await else { return };
    let spot = cli_json(&url, &["spots", "create", "--name", "faults", "--json"]);
    let (spot_id, key) = (spot["spotId"].as_str().unwrap(), spot["apiKey"].as_str().unwrap().to_string());
    let even = seed_members(&url, spot_id, 60_000).await;
    let serve = || {
        let mut cmd = Command::new(BIN);
        cmd.args(["--database-url", &url, "serve", "--listen", "127.0.0.1:0"])
            .env("OPENSPOT_SMART_GROUP_LEASE_MS", "1000");
        cmd
    };
    let (server, listen, _log) = serve_logged(&mut serve()).await;
    let rules = json!({"operator": "AND", "conditions": [{"operator": "AND", "triggers": [
        {"field": "firstname", "op": "eq", "value": "Even"}]}]});
    let r = test_client()
        .post(format!("http://{listen}/v1/groups"))
        .header("authorization", &key)
        .json(&json!({"name": "Even", "type": "Smart", "rules": rules}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let group_id: uuid::Uuid = r.json::<serde_json::Value>().await.unwrap()["id"].as_str().unwrap().parse().unwrap();

    // Killed as soon as some members are in and the computation is still running.
    let db = Db::connect(&url).await.unwrap();
    for _ in 0..20_000 {
        let ((ready, count, _), _) = smart_group_state(&db, group_id).await;
        assert!(!ready, "the computation was seen running before it ended");
        if count > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    sigkill(server);
    let ((ready, count, lease_until), rows) = smart_group_state(&db, group_id).await;
    assert!(!ready && count > 0 && (count as usize) < even.len(), "killed midway ({count} of {} in)", even.len());
    assert_eq!(rows.len() as i64, count, "the count matches the rows committed");

    // Restarted once the dead server's lease has lapsed: housekeeping's first round
    // (at start-up) takes the computation over.
    let lease_until = lease_until.expect("the dead server's lease is on the group");
    while openspot::domain::now_ms() <= lease_until {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (server, _, log) = serve_logged(&mut serve()).await;
    let mut state = smart_group_state(&db, group_id).await;
    for _ in 0..1200 {
        if state.0 .0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        state = smart_group_state(&db, group_id).await;
    }
    stop(server).await;
    let ((ready, count, _), rows) = smart_group_state(&db, group_id).await;
    db.close().await;
    assert!(ready, "the computation was taken over and finished; the server's log:\n{}", log.join().unwrap());
    let members: std::collections::BTreeSet<uuid::Uuid> = rows.into_iter().collect();
    assert_eq!(members.len(), even.len(), "no membership is missing or repeated");
    assert!(members == even, "the membership is exactly the rule's matching set");
    assert_eq!(count, even.len() as i64, "the member count matches the membership");
    assert_eq!(torn_counts(&url).await, vec![]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_smart_group_computation_killed_midway_is_taken_over_sqlite() {
    a_smart_group_computation_killed_midway_is_taken_over(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_smart_group_computation_killed_midway_is_taken_over_postgres() {
    a_smart_group_computation_killed_midway_is_taken_over(Backend::Postgres).await;
}

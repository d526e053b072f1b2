//! Three real `openspot serve` processes on one PostgreSQL database, driven round-robin:
//! a spot's rate limit holds across them, concurrent invites of one email make one
//! member, a smart group stays exact under writes from all three, and killing one
//! replica mid-stream loses no write it acknowledged.

use std::collections::BTreeSet;
use std::process::Command;
use std::time::Duration;

use openspot::store::Backend;
use serde_json::{json, Value};

use crate::common::{test_client, test_database};
use crate::security::{cli_json, serve_logged, stop};

const BIN: &str = env!("CARGO_BIN_EXE_openspot");

struct Cluster {
    bases: Vec<String>,
    servers: Vec<Option<std::process::Child>>,
    client: reqwest::Client,
}

impl Cluster {
    async fn start(url: &str, n: usize) -> Cluster {
        let mut bases = Vec::new();
        let mut servers = Vec::new();
        for _ in 0..n {
            let (child, listen, _log) =
                serve_logged(Command::new(BIN).args(["--database-url", url, "serve", "--listen", "127.0.0.1:0"])).await;
            bases.push(format!("http://{listen}"));
            servers.push(Some(child));
        }
        Cluster { bases, servers, client: test_client() }
    }

    /// Sends `method path` with `key` to replica `i % n`; None when the replica is gone.
    async fn send(
        &self,
        i: usize,
        method: reqwest::Method,
        path: &str,
        key: &str,
        body: Option<Value>,
    ) -> Option<(u16, Value)> {
        let base = &self.bases[i % self.bases.len()];
        let mut req = self.client.request(method, format!("{base}{path}")).header("authorization", key);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let r = req.send().await.ok()?;
        let status = r.status().as_u16();
        Some((status, r.json().await.unwrap_or(Value::Null)))
    }

    async fn stop_all(mut self) {
        for s in self.servers.iter_mut() {
            if let Some(child) = s.take() {
                stop(child).await;
            }
        }
    }
}

/// `n` replicas allowed to call loopback targets (the tests' receivers): their base
/// URLs and processes.
async fn replicas_calling_loopback(url: &str, n: usize) -> (Vec<String>, Vec<std::process::Child>) {
    let mut bases = Vec::new();
    let mut servers = Vec::new();
    for _ in 0..n {
        let (child, listen, _log) = serve_logged(
            Command::new(BIN)
                .args(["--database-url", url, "serve", "--listen", "127.0.0.1:0"])
                .env("OPENSPOT_ALLOW_PRIVATE_TARGETS", "true"),
        )
        .await;
        bases.push(format!("http://{listen}"));
        servers.push(child);
    }
    (bases, servers)
}

/// Creates, through the replica at `base`, an endpoint listening to `member.created`
/// at `url`; returns its id.
async fn member_created_endpoint(client: &reqwest::Client, base: &str, key: &str, url: &str) -> String {
    let r = client
        .post(format!("{base}/v1/webhooks"))
        .header("authorization", key)
        .json(&json!({"url": url, "eventTypes": ["member.created"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    r.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_string()
}

/// A spot made through the CLI, with limits no test reaches: (id, API key).
pub(crate) fn new_spot(url: &str) -> (String, String) {
    let spot = cli_json(url, &["spots", "create", "--name", "replicas", "--json"]);
    let id = spot["spotId"].as_str().unwrap().to_string();
    cli_json(url, &["spots", "set-limits", &id, "--per-10s", "1000000", "--per-day", "100000000", "--json"]);
    (id, spot["apiKey"].as_str().unwrap().to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_replicas_on_one_postgres_database() {
    let Some((url, _dir, _pg)) = test_database(Backend::Postgres).await else { return };
    let (_, key) = new_spot(&url);
    let (limited_id, limited_key) = new_spot(&url);
    cli_json(&url, &["spots", "set-limits", &limited_id, "--per-day", "40", "--json"]);
    let mut cluster = Cluster::start(&url, 3).await;
    use reqwest::Method;

    // 1. A daily limit of 40 holds across the three: exactly 40 of 90 requests pass.
    let mut passed = 0;
    for i in 0..90 {
        let (status, _) = cluster.send(i, Method::GET, "/v1/spotMembers?limit=1", &limited_key, None).await.unwrap();
        assert!(status == 200 || status == 429, "{status}");
        passed += usize::from(status == 200);
    }
    assert_eq!(passed, 40, "the spot's daily limit is shared by every replica");

    // 2. Thirty concurrent invites of one email, spread over the three: one member.
    let invites: Vec<_> = (0..30)
        .map(|i| {
            let (client, base, key) = (cluster.client.clone(), cluster.bases[i % 3].clone(), key.clone());
            tokio::spawn(async move {
                let r = client
                    .post(format!("{base}/v1/spotMembers"))
                    .header("authorization", &key)
                    .json(&json!({"email": "Same.Person@x.io"}))
                    .send()
                    .await
                    .unwrap();
                assert!(r.status().is_success(), "{}", r.status());
                r.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_string()
            })
        })
        .collect();
    let mut ids = BTreeSet::new();
    for t in invites {
        ids.insert(t.await.unwrap());
    }
    assert_eq!(ids.len(), 1, "every replica answered with the one member");
    let (_, page) =
        cluster.send(0, Method::GET, "/v1/spotMembers?email[in]=same.person@x.io", &key, None).await.unwrap();
    assert_eq!(page["total"], 1, "{page}");

    // 3. A smart group stays exact while all three rename members concurrently.
    let mut members = Vec::new();
    for i in 0..40 {
        let (s, m) = cluster
            .send(i, Method::POST, "/v1/spotMembers", &key, Some(json!({"email": format!("s{i}@x.io")})))
            .await
            .unwrap();
        assert!(s < 300);
        members.push(m["id"].as_str().unwrap().to_string());
    }
    let rules = json!({"operator": "AND", "conditions": [
        {"operator": "AND", "triggers": [{"field": "firstname", "op": "eq", "value": "Hot"}]}]});
    let (s, g) = cluster
        .send(1, Method::POST, "/v1/groups", &key, Some(json!({"name": "Hot", "type": "Smart", "rules": rules})))
        .await
        .unwrap();
    assert_eq!(s, 201, "{g}");
    let gid = g["id"].as_str().unwrap().to_string();
    let writers: Vec<_> = members
        .iter()
        .enumerate()
        .map(|(i, id)| {
            let (client, key, id) = (cluster.client.clone(), key.clone(), id.clone());
            let bases = cluster.bases.clone();
            tokio::spawn(async move {
                // Three renames each, through three replicas; the last one sticks.
                for round in 0..3 {
                    let name = if (i + round) % 2 == 0 { "Hot" } else { "Cold" };
                    let r = client
                        .put(format!("{}/v1/spotMembers/{id}", bases[(i + round) % 3]))
                        .header("authorization", &key)
                        .json(&json!({"firstname": name}))
                        .send()
                        .await
                        .unwrap();
                    assert_eq!(r.status(), 200);
                }
            })
        })
        .collect();
    for w in writers {
        w.await.unwrap();
    }
    let expected: BTreeSet<String> =
        members.iter().enumerate().filter(|(i, _)| (i + 2) % 2 == 0).map(|(_, id)| id.clone()).collect();
    let mut actual = BTreeSet::new();
    for _ in 0..100 {
        let (_, page) =
            cluster.send(2, Method::GET, &format!("/v1/groups/{gid}/spotMembers?limit=100"), &key, None).await.unwrap();
        actual = page["items"].as_array().unwrap().iter().map(|m| m["id"].as_str().unwrap().to_string()).collect();
        if actual == expected {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(actual, expected, "the smart group holds exactly the members named Hot");

    // 4. One replica is killed while writes stream to all three: every acknowledged
    // invite is there afterwards.
    let streams: Vec<_> = (0..3)
        .map(|r| {
            let (client, base, key) = (cluster.client.clone(), cluster.bases[r].clone(), key.clone());
            tokio::spawn(async move {
                let mut acked = Vec::new();
                for n in 0..150 {
                    let email = format!("k{r}-{n}@x.io");
                    let sent = client
                        .post(format!("{base}/v1/spotMembers"))
                        .header("authorization", &key)
                        .json(&json!({"email": email}))
                        .send()
                        .await;
                    match sent {
                        Ok(resp) if resp.status().is_success() => acked.push(email),
                        Ok(resp) => panic!("replica {r} answered {}", resp.status()),
                        Err(_) => break,
                    }
                }
                acked
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut victim = cluster.servers[1].take().unwrap();
    victim.kill().unwrap();
    victim.wait().unwrap();
    let mut acked = Vec::new();
    for s in streams {
        acked.extend(s.await.unwrap());
    }
    assert!(acked.iter().any(|e| e.starts_with("k1-")), "the killed replica acknowledged writes first");
    for email in &acked {
        let (status, page) =
            cluster.send(0, Method::GET, &format!("/v1/spotMembers?email[in]={email}"), &key, None).await.unwrap();
        assert_eq!((status, page["total"].clone()), (200, json!(1)), "{email} was acknowledged and must exist");
    }
    cluster.stop_all().await;
}

/// A webhook endpoint created through one replica is heard by the others at once: they
/// drop their cached "nobody listens" when the change is announced (PostgreSQL NOTIFY),
/// instead of using it for up to the cache's 10 seconds.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_new_endpoint_is_heard_by_every_replica_at_once() {
    use crate::receiver::{Receiver, Reply};
    let Some((url, _dir, _pg)) = test_database(Backend::Postgres).await else { return };
    let (_, key) = new_spot(&url);
    let (bases, servers) = replicas_calling_loopback(&url, 2).await;
    let client = test_client();
    let invite = |base: &str, email: &str| {
        client
            .post(format!("{base}/v1/spotMembers"))
            .header("authorization", &key)
            .json(&json!({"email": email}))
            .send()
    };
    // Replica 0 learns that nobody listens in this spot (and caches it).
    assert!(invite(&bases[0], "before@x.io").await.unwrap().status().is_success());
    // An endpoint is created through replica 1; replica 0's next write is heard.
    let rx = Receiver::start(Reply::Status(200)).await;
    member_created_endpoint(&client, &bases[1], &key, &rx.url()).await;
    tokio::time::sleep(Duration::from_millis(300)).await; // the notification's trip
    assert!(invite(&bases[0], "after@x.io").await.unwrap().status().is_success());
    let got = rx.wait_for(1, Duration::from_secs(5)).await;
    assert_eq!(got.len(), 1, "replica 0 wrote the event of a write made 0.3 s after the endpoint appeared");
    assert_eq!(got[0].json()["member"]["email"], "after@x.io");
    for s in servers {
        stop(s).await;
    }
}

/// Two `openspot serve` processes on one PostgreSQL database and a burst of 1,000 events
/// written through both (five concurrent bulk invites of 200): the receiver gets each
/// event id exactly once, both replicas delivered part of them, and the delivery log has
/// one successful attempt per event.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_replica_processes_deliver_a_burst_of_1000_events_exactly_once() {
    use crate::receiver::{Receiver, Reply};
    let Some((url, _dir, _pg)) = test_database(Backend::Postgres).await else { return };
    let (_, key) = new_spot(&url);
    let (bases, servers) = replicas_calling_loopback(&url, 2).await;
    let client = test_client();
    let rx = Receiver::start(Reply::Status(200)).await;
    let endpoint = member_created_endpoint(&client, &bases[0], &key, &rx.url()).await;
    tokio::time::sleep(Duration::from_millis(300)).await; // replica 1 hears of the endpoint

    let bursts: Vec<_> = (0..5)
        .map(|b| {
            let (client, base, key) = (client.clone(), bases[b % 2].clone(), key.clone());
            tokio::spawn(async move {
                let emails: Vec<String> = (0..200).map(|i| format!("burst{b}-{i}@x.io")).collect();
                let r = client
                    .post(format!("{base}/v1/spotMembers~bulkInvite"))
                    .header("authorization", &key)
                    .json(&json!({"emails": emails}))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), 201);
                let body: Value = r.json().await.unwrap();
                assert_eq!(body["created"].as_array().unwrap().len(), 200, "{body}");
            })
        })
        .collect();
    for b in bursts {
        b.await.unwrap();
    }
    let got = rx.wait_for(1_000, Duration::from_secs(60)).await;
    assert_eq!(got.len(), 1_000, "every event arrived");
    // Anything delivered twice would arrive shortly after the first copy: wait, then count.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let got = rx.captured();
    let ids: BTreeSet<String> = got.iter().map(|c| c.header("webhook-id").unwrap().to_string()).collect();
    let emails: BTreeSet<String> =
        got.iter().map(|c| c.json()["member"]["email"].as_str().unwrap().to_string()).collect();
    assert_eq!((got.len(), ids.len(), emails.len()), (1_000, 1_000, 1_000), "each event exactly once");

    // The delivery log: one successful attempt per event, from both replicas.
    let pool = sqlx::PgPool::connect(&url).await.unwrap();
    let (attempts, events, replicas): (i64, i64, i64) = sqlx::query_as(
        "SELECT COUNT(*), COUNT(DISTINCT event_id), COUNT(DISTINCT replica_id) FROM outbox_attempts \
         WHERE target_id = $1::uuid",
    )
    .bind(&endpoint)
    .fetch_one(&pool)
    .await
    .unwrap();
    pool.close().await;
    assert_eq!((attempts, events), (1_000, 1_000), "one attempt per event");
    assert_eq!(replicas, 2, "both replicas took part in the delivery");
    for s in servers {
        stop(s).await;
    }
}

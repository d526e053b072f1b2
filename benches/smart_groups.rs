//! On-demand benchmark of smart groups (not part of `cargo test`):
//!
//! ```sh
//! cargo bench --bench smart_groups                                   # SQLite, 1,000,000 members
//! OPENSPOT_BENCH_MEMBERS=100000 cargo bench --bench smart_groups
//! OPENSPOT_BENCH_DATABASE_URL=postgres://postgres@127.0.0.1/bench cargo bench --bench smart_groups
//! ```
//!
//! It seeds N members (and a Number custom property on half of them) below the API, in
//! multi-row statements inside one transaction, then times:
//!
//! * the first computation of one smart group over the whole spot, for a rule on member
//!   fields only and for one that also reads the custom property (the time from the call
//!   to `compute_smart_group` to its return, i.e. to `ready`), with the members it added;
//! * the write path: one member change (`update_member`, a status flip) without smart
//!   groups and with 10 smart groups in the spot, per change (sequential, averaged).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Instant;

use openspot::domain::groups::{self, NewGroup};
use openspot::domain::ids::{GroupId, MemberId, SpotId};
use openspot::domain::members::{self, MemberPatch};
use openspot::store::Db;
use serde_json::{json, Value};
use uuid::Uuid;

#[path = "common/seed.rs"]
mod seed;
use seed::seed;

/// Creates a smart group without starting its computation.
async fn smart_group(db: &Db, spot_id: SpotId, name: &str, rules: Value) -> GroupId {
    let mut tx = db.begin().await.unwrap();
    let g = groups::create_in(
        &mut tx,
        spot_id,
        NewGroup { name: Some(name.into()), kind: Some("Smart".into()), rules: Some(rules), ..Default::default() },
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    g.id
}

/// Times the first computation of a smart group with `rules` (in SQL, or member by
/// member in Rust as before); returns (seconds, members).
async fn time_computation(db: &Db, spot_id: SpotId, name: &str, rules: Value, in_rust: bool) -> (f64, i64) {
    let gid = smart_group(db, spot_id, name, rules).await;
    let t = Instant::now();
    if in_rust {
        groups::compute_smart_group_in_rust(db, spot_id, gid).await.unwrap();
    } else {
        groups::compute_smart_group(db, spot_id, gid).await.unwrap();
    }
    let secs = t.elapsed().as_secs_f64();
    let g = groups::get_group(db, spot_id, gid).await.unwrap();
    assert!(g.ready, "the computation ends with the group ready");
    (secs, g.member_count)
}

/// Mean microseconds per member change over `changes` sequential status flips.
async fn time_changes(db: &Db, spot_id: SpotId, ids: &[Uuid], changes: usize, offset: usize) -> f64 {
    let t = Instant::now();
    for i in 0..changes {
        let id = MemberId::from(ids[((i + offset) * 104_729) % ids.len()]);
        let status = if i % 2 == 0 { "Accepted" } else { "Deactivated" };
        let patch = MemberPatch { status: Some(status.into()), ..Default::default() };
        members::update_member(db, spot_id, id, patch).await.unwrap();
    }
    t.elapsed().as_secs_f64() * 1e6 / changes as f64
}

#[tokio::main]
async fn main() {
    let n: usize = std::env::var("OPENSPOT_BENCH_MEMBERS").ok().and_then(|v| v.parse().ok()).unwrap_or(1_000_000);
    let changes: usize = std::env::var("OPENSPOT_BENCH_CHANGES").ok().and_then(|v| v.parse().ok()).unwrap_or(2000);
    let dir = tempfile::tempdir().unwrap();
    let url = std::env::var("OPENSPOT_BENCH_DATABASE_URL")
        .unwrap_or_else(|_| format!("sqlite://{}", dir.path().join("bench.db").display()));
    let db = Db::connect_and_migrate(&url).await.unwrap();
    let (spot, _key) = openspot::domain::spots::create_spot(&db, "bench").await.unwrap();
    let score = seed::property(&db, spot.id, "score", "Score", "Number").await;
    eprintln!("openspot smart-group benchmark: {n} members, {}", db.backend_name());
    let t = Instant::now();
    let ids = seed(&db, spot.id.into(), score.id.uuid(), n).await;
    eprintln!("  seeded {n} members (and {} property values) in {:.1}s", n.div_ceil(2), t.elapsed().as_secs_f64());
    db.optimize().await.unwrap();
    if let Db::Sqlite(p, ..) = &db {
        sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)").execute(p).await.unwrap();
    }

    eprintln!("first computation of one smart group (to ready):");
    let fields = json!({"operator": "AND", "conditions": [
        {"operator": "OR", "triggers": [
            {"field": "status", "op": "eq", "value": "Accepted"},
            {"field": "firstname", "op": "in", "value": ["First1", "First2", "First3"]}]},
        {"operator": "OR", "triggers": [
            {"field": "role", "op": "neq", "value": "Admin"},
            {"field": "email", "op": "contains", "value": "7@"}]}]});
    let (secs, added) = time_computation(&db, spot.id, "fields", fields.clone(), false).await;
    eprintln!("  member fields only:        {secs:6.2}s ({added} members, {:.0} members/s)", n as f64 / secs);
    let with_property = json!({"operator": "OR", "conditions": [
        {"operator": "AND", "triggers": [
            {"field": "customProperties.score", "op": "gte", "value": 50},
            {"field": "status", "op": "neq", "value": "Deactivated"}]},
        {"operator": "AND", "triggers": [
            {"field": "lastname", "op": "eq", "value": "Last7"}]}]});
    let (secs, added) = time_computation(&db, spot.id, "property", with_property.clone(), false).await;
    eprintln!("  with a custom property:    {secs:6.2}s ({added} members, {:.0} members/s)", n as f64 / secs);
    if std::env::var("OPENSPOT_BENCH_SKIP_RUST").is_err() {
        // The same computations as before rules compiled to SQL (member by member in Rust).
        for (name, rules) in [("member fields only", fields), ("with a custom property", with_property)] {
            let (secs, added) = time_computation(&db, spot.id, name, rules, true).await;
            eprintln!("  {name:<26} {secs:6.2}s in Rust, as before ({added} members)");
        }
    }

    eprintln!("write path: one member change (update_member, status flip), sequential:");
    // Groups of the spot so far are smart: drop them to measure the baseline.
    for g in groups::list_groups(&db, spot.id, &Default::default()).await.unwrap().0 {
        groups::delete_group(&db, spot.id, g.id).await.unwrap();
    }
    if let Db::Sqlite(p, ..) = &db {
        sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)").execute(p).await.unwrap();
    }
    let plain = time_changes(&db, spot.id, &ids, changes, 0).await;
    eprintln!("  no smart group:            {plain:8.0} µs per change");
    for k in 0..10 {
        let rules = json!({"operator": "AND", "conditions": [{"operator": "OR", "triggers": [
            {"field": "status", "op": "eq", "value": "Accepted"},
            {"field": "firstname", "op": "eq", "value": format!("First{k}")},
            {"field": "customProperties.score", "op": "gt", "value": 90 + k}]}]});
        smart_group(&db, spot.id, &format!("smart {k}"), rules).await;
    }
    let smart = time_changes(&db, spot.id, &ids, changes, changes).await;
    eprintln!("  with 10 smart groups:      {smart:8.0} µs per change (+{:.0} µs)", smart - plain);
    db.close().await;
}

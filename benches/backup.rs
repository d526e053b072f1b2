//! On-demand backup benchmark (not part of `cargo test`):
//!
//! ```sh
//! cargo bench --bench backup                                  # 1,000,000 members, SQLite
//! OPENSPOT_BENCH_MEMBERS=100000 cargo bench --bench backup
//! OPENSPOT_BENCH_POSTGRES_URL=postgres://postgres@127.0.0.1:5432/postgres cargo bench --bench backup
//! ```
//!
//! Seeds one spot with N members (multi-row inserts, below the API, as `benches/load.rs`
//! does), then times on SQLite what `openspot backup --to` and `openspot restore --from`
//! run (`store::backup::snapshot` / `restore`, under no other load), and the spot's
//! `spots export` / `spots import` into a fresh database. With a PostgreSQL admin URL it
//! seeds the same members in a scratch database (dropped afterwards) and times
//! `pg_dump -Fc` and `pg_restore` into another scratch database. Prints each time and
//! file size.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use openspot::domain::ids::SpotId;
use openspot::store::backup::{restore, snapshot};
use openspot::store::Db;
use uuid::Uuid;

async fn exec(db: &Db, sql: &str) {
    match db {
        Db::Sqlite(p, ..) => {
            sqlx::query(sql).execute(p).await.unwrap();
        }
        Db::Postgres(p) => {
            sqlx::query(sql).execute(p).await.unwrap();
        }
    }
}

/// Inserts `n` members into `spot` with multi-row statements.
async fn seed_members(db: &Db, spot: Uuid, n: usize) {
    let now = openspot::domain::now_ms();
    let chunk = 500;
    let mut i = 0;
    while i < n {
        let m = chunk.min(n - i);
        let mut sql = String::from(
            "INSERT INTO members (spot_id, id, email, email_norm, firstname, lastname, status, invited_at, registered_at, updated_at) VALUES ",
        );
        for j in 0..m {
            let id = Uuid::now_v7();
            let k = i + j;
            let (spot_lit, id_lit) = match db {
                Db::Sqlite(..) => (format!("X'{}'", spot.simple()), format!("X'{}'", id.simple())),
                Db::Postgres(_) => (format!("'{spot}'"), format!("'{id}'")),
            };
            let status = if k % 3 == 0 { "Accepted" } else { "Invited" };
            let reg = if k % 3 == 0 { (now - 1000).to_string() } else { "NULL".into() };
            if j > 0 {
                sql.push(',');
            }
            sql.push_str(&format!(
                "({spot_lit}, {id_lit}, 'm{k}@bench.io', 'm{k}@bench.io', 'First{}', 'Last{}', '{status}', {}, {reg}, {now})",
                k % 1000,
                k % 997,
                now - (n - k) as i64
            ));
        }
        exec(db, &sql).await;
        i += m;
    }
    let lit = match db {
        Db::Sqlite(..) => format!("X'{}'", spot.simple()),
        Db::Postgres(_) => format!("'{spot}'"),
    };
    exec(db, &format!("UPDATE spot_counters SET member_count = {n} WHERE spot_id = {lit}")).await;
}

fn mb(bytes: u64) -> String {
    format!("{:.1} MB", bytes as f64 / 1e6)
}

fn size(path: &Path) -> u64 {
    std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

async fn seeded(url: &str, n: usize) -> (Db, SpotId) {
    let db = Db::connect_and_migrate(url).await.unwrap();
    let (spot, _) = openspot::domain::spots::create_spot(&db, "bench").await.unwrap();
    let began = Instant::now();
    seed_members(&db, spot.id.uuid(), n).await;
    eprintln!("  seeded {n} members in {:.1} s", began.elapsed().as_secs_f64());
    db.analyze_after_bulk_write().await.unwrap();
    (db, spot.id)
}

async fn sqlite(n: usize, dir: &Path) {
    eprintln!("SQLite, {n} members");
    let live = dir.join("live.db");
    let (db, spot) = seeded(&format!("sqlite://{}", live.display()), n).await;
    exec(&db, "PRAGMA wal_checkpoint(TRUNCATE)").await;
    eprintln!("  live database: {}", mb(size(&live)));

    let file = dir.join("backup.db");
    let done = snapshot(&db, &file).await.unwrap();
    eprintln!("  backup --to:   {:.2} s, {}", done.took.as_secs_f64(), mb(done.bytes));
    let done = restore(&db, &file).await.unwrap();
    eprintln!("  restore:       {:.2} s ({} rows in {} tables)", done.took.as_secs_f64(), done.rows, done.tables);

    let export = dir.join("spot.jsonl");
    let began = Instant::now();
    {
        let mut out = std::io::BufWriter::new(std::fs::File::create(&export).unwrap());
        openspot::domain::transfer::export_spot(&db, spot, &mut out).await.unwrap();
    }
    eprintln!("  spots export:  {:.2} s, {}", began.elapsed().as_secs_f64(), mb(size(&export)));
    db.close().await;
    let target = Db::connect_and_migrate(&format!("sqlite://{}", dir.join("imported.db").display())).await.unwrap();
    let began = Instant::now();
    let mut input = std::io::BufReader::new(std::fs::File::open(&export).unwrap());
    let summary = openspot::domain::transfer::import_spot(&target, &mut input).await.unwrap();
    eprintln!("  spots import:  {:.2} s ({} records)", began.elapsed().as_secs_f64(), summary.records);
    target.close().await;
}

/// Creates a scratch database next to `admin`'s; returns its URL.
async fn scratch(admin: &Db, admin_url: &str, name: &str) -> String {
    if let Db::Postgres(p) = admin {
        sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).execute(p).await.unwrap();
        sqlx::query(&format!("CREATE DATABASE {name}")).execute(p).await.unwrap();
    }
    let base = &admin_url[..admin_url.rfind('/').unwrap()];
    format!("{base}/{name}")
}

async fn postgres(n: usize, admin_url: &str, dir: &Path) {
    eprintln!("PostgreSQL, {n} members");
    let admin = Db::connect(admin_url).await.unwrap();
    let url = scratch(&admin, admin_url, "openspot_bench_backup").await;
    let (db, _) = seeded(&url, n).await;
    db.close().await;
    let dump = dir.join("openspot.dump");
    let began = Instant::now();
    let out = Command::new("pg_dump").args(["-Fc", "-d", &url, "-f"]).arg(&dump).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    eprintln!("  pg_dump -Fc:   {:.2} s, {}", began.elapsed().as_secs_f64(), mb(size(&dump)));
    let restored = scratch(&admin, admin_url, "openspot_bench_restored").await;
    let began = Instant::now();
    let out = Command::new("pg_restore").args(["--no-owner", "-d", &restored]).arg(&dump).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    eprintln!("  pg_restore:    {:.2} s", began.elapsed().as_secs_f64());
    if let Db::Postgres(p) = &admin {
        for name in ["openspot_bench_backup", "openspot_bench_restored"] {
            sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).execute(p).await.unwrap();
        }
    }
    admin.close().await;
}

#[tokio::main]
async fn main() {
    let n: usize = std::env::var("OPENSPOT_BENCH_MEMBERS").ok().and_then(|v| v.parse().ok()).unwrap_or(1_000_000);
    let dir = tempfile::tempdir().unwrap();
    if std::env::var("OPENSPOT_BENCH_SKIP_SQLITE").is_err() {
        sqlite(n, dir.path()).await;
    }
    if let Ok(admin_url) = std::env::var("OPENSPOT_BENCH_POSTGRES_URL") {
        postgres(n, &admin_url, dir.path()).await;
    }
}

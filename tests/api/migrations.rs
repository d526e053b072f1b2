//! Migrations that move data: run on a database at the migration before, with rows in
//! it, they keep what those rows said.

use std::borrow::Cow;

use openspot::store::Backend;
use openspot::Db;

use crate::common::test_database;

/// The store's migrator holding only the migrations up to `version`.
fn migrator_until(backend: Backend, version: i64) -> sqlx::migrate::Migrator {
    let mut m = match backend {
        Backend::Sqlite => sqlx::migrate!("./migrations/sqlite"),
        Backend::Postgres => sqlx::migrate!("./migrations/postgres"),
    };
    m.migrations = Cow::Owned(m.migrations.iter().filter(|x| x.version <= version).cloned().collect());
    m
}

/// Migration 0016 moves every spot's member count from `spots.member_count` to its row of
/// `spot_counters`, and drops the column.
async fn spot_counts_move_to_spot_counters(backend: Backend) {
    let Some((url, _dir, _guard)) = test_database(backend).await else { return };
    let db = Db::connect(&url).await.unwrap();
    let spots = [(uuid::Uuid::now_v7(), 7_i64), (uuid::Uuid::now_v7(), 0)];
    macro_rules! at_0015 {
        ($p:expr) => {{
            migrator_until(backend, 15).run($p).await.unwrap();
            for (i, (id, n)) in spots.iter().enumerate() {
                sqlx::query(
                    "INSERT INTO spots (id, name, api_key_hash, member_count, created_at) VALUES ($1, $2, $3, $4, 0)",
                )
                .bind(id)
                .bind(format!("spot {i}"))
                .bind(vec![i as u8; 32])
                .bind(n)
                .execute($p)
                .await
                .unwrap();
            }
        }};
    }
    match &db {
        Db::Sqlite(p, ..) => at_0015!(p),
        Db::Postgres(p) => at_0015!(p),
    }
    db.migrate().await.unwrap();
    let mut got: Vec<(openspot::domain::ids::SpotId, i64)> =
        openspot::domain::spots::list_spots_with_member_counts(&db)
            .await
            .unwrap()
            .into_iter()
            .map(|(s, n)| (s.id, n))
            .collect();
    got.sort();
    let mut want: Vec<_> = spots.iter().map(|(id, n)| (openspot::domain::ids::SpotId(*id), *n)).collect();
    want.sort();
    assert_eq!(got, want);
    let column = "SELECT COUNT(*) FROM spots WHERE member_count = 0";
    let dropped = match &db {
        Db::Sqlite(p, ..) => sqlx::query(column).execute(p).await.is_err(),
        Db::Postgres(p) => sqlx::query(column).execute(p).await.is_err(),
    };
    assert!(dropped, "spots.member_count is gone");
    db.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spot_counts_move_to_spot_counters_sqlite() {
    spot_counts_move_to_spot_counters(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spot_counts_move_to_spot_counters_postgres() {
    spot_counts_move_to_spot_counters(Backend::Postgres).await;
}

/// Migration 0017 (SQLite) drops `rate_limit_windows` from the main file: before it
/// runs, `Db::migrate` copies the windows of the last two days into the companion
/// database (`<file>-limits`), so an upgrade hands no spot a fresh budget. PostgreSQL's
/// 0017 changes nothing (its windows stay in their table).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limit_windows_move_to_the_companion_sqlite() {
    let Some((url, Some(dir), _)) = test_database(Backend::Sqlite).await else { panic!("a SQLite test database") };
    let db = Db::connect(&url).await.unwrap();
    let Db::Sqlite(p, ..) = &db else { unreachable!() };
    migrator_until(Backend::Sqlite, 16).run(p).await.unwrap();
    let spot = uuid::Uuid::now_v7();
    let now = openspot::domain::now_ms();
    let day = openspot::domain::rate_limit::DAY_MS;
    let today = now - now.rem_euclid(day);
    for (scope, start, used) in [("v1:day", today, 4_321_i64), ("v1:day", today - 3 * day, 99)] {
        sqlx::query("INSERT INTO rate_limit_windows (spot_id, scope, window_start, used) VALUES ($1, $2, $3, $4)")
            .bind(spot)
            .bind(scope)
            .bind(start)
            .bind(used)
            .execute(p)
            .await
            .unwrap();
    }
    db.migrate().await.unwrap();
    let in_main: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM sqlite_master WHERE name = 'rate_limit_windows'")
        .fetch_one(p)
        .await
        .unwrap();
    assert_eq!(in_main, 0, "the main file has no windows table any more");
    let spot = openspot::domain::ids::SpotId(spot);
    let mut c = db.limits_conn().await.unwrap();
    assert_eq!(
        openspot::store::rate_limits::used(c.ex(), spot, "v1:day", today).await.unwrap(),
        4_321,
        "today's window kept its count"
    );
    assert_eq!(
        openspot::store::rate_limits::used(c.ex(), spot, "v1:day", today - 3 * day).await.unwrap(),
        0,
        "a window older than two days is not carried"
    );
    drop(c);
    // Migrating again (every start does) leaves the companion's windows as they are.
    db.migrate().await.unwrap();
    let mut c = db.limits_conn().await.unwrap();
    assert_eq!(openspot::store::rate_limits::used(c.ex(), spot, "v1:day", today).await.unwrap(), 4_321);
    drop(c);
    assert!(dir.path().join("openspot.db-limits").exists(), "the companion sits beside the database");
    db.close().await;
}

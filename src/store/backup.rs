//! Backups of the embedded store (`openspot backup` / `openspot restore`), taken and
//! restored while the server runs.
//!
//! A snapshot is `VACUUM INTO`: SQLite writes a compacted copy of the database as one
//! read transaction sees it, so it is consistent (every counter matches its rows) while
//! writers carry on in WAL mode. A restore attaches the backup and, in one write
//! transaction, replaces every table's rows with the backup's, so a running server sees
//! either the old data or the restored data, never a mix; writes wait for it like for
//! any other writer. Only a backup at the live database's schema version is restored
//! (column order and tables then match by construction).
//!
//! PostgreSQL is backed up with its own tools (`pg_dump` / `pg_restore`, see
//! `docs/operations.md`): these functions refuse it with that hint.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use sqlx::{Connection, SqliteConnection};

use super::Db;

/// What a PostgreSQL operator does instead.
pub const POSTGRES_HINT: &str = "PostgreSQL is backed up with its own tools: `pg_dump -Fc -d URL -f FILE`, \
     restored with `pg_restore --clean --if-exists -d URL FILE` (docs/operations.md)";

/// A snapshot written.
#[derive(Debug)]
pub struct Snapshot {
    pub bytes: u64,
    pub took: Duration,
}

/// A restore done.
#[derive(Debug)]
pub struct Restored {
    pub tables: usize,
    pub rows: u64,
    pub took: Duration,
}

/// Writes a consistent copy of the live database to `to`, which must not exist.
pub async fn snapshot(db: &Db, to: &Path) -> anyhow::Result<Snapshot> {
    let Db::Sqlite(pool, ..) = db else { bail!(POSTGRES_HINT) };
    if to.exists() {
        bail!("{} exists already: a backup never overwrites a file", to.display());
    }
    let path = to.to_str().context("the backup path must be valid UTF-8")?;
    let began = Instant::now();
    sqlx::query("VACUUM INTO ?").bind(path).execute(pool).await.context("writing the snapshot")?;
    let bytes = std::fs::metadata(to).context("reading the snapshot's size")?.len();
    Ok(Snapshot { bytes, took: began.elapsed() })
}

/// Replaces the live database's rows with those of the backup at `from`.
pub async fn restore(db: &Db, from: &Path) -> anyhow::Result<Restored> {
    let Db::Sqlite(pool, ..) = db else { bail!(POSTGRES_HINT) };
    // ATTACH would create a missing file: check first.
    if !from.is_file() {
        bail!("{} is not a file", from.display());
    }
    let path = from.to_str().context("the backup path must be valid UTF-8")?;
    let mut conn = pool.acquire().await?;
    // Rows are copied table by table, children before parents at times, and deleting
    // must not cascade: the keys are checked once, on the restored whole, before commit.
    // (Deferred checks miscount across the deletes and re-inserts of a whole database.)
    sqlx::query("PRAGMA foreign_keys = OFF").execute(&mut *conn).await?;
    let result = match sqlx::query("ATTACH DATABASE ? AS backup").bind(path).execute(&mut *conn).await {
        Ok(_) => {
            let result = restore_attached(&mut conn).await;
            sqlx::query("DETACH DATABASE backup")
                .execute(&mut *conn)
                .await
                .map(|_| result)
                .context("closing the backup")
        }
        Err(e) => Err(anyhow::Error::new(e).context("opening the backup")),
    };
    // The pooled connection goes back as it came, whatever happened.
    let on = sqlx::query("PRAGMA foreign_keys = ON").execute(&mut *conn).await;
    if on.is_err() {
        conn.detach();
    }
    result?
}

/// The newest migration applied in `schema` (`main` or `backup`).
async fn schema_version(conn: &mut SqliteConnection, schema: &'static str) -> anyhow::Result<i64> {
    let sql = format!("SELECT MAX(version) FROM {schema}._sqlx_migrations WHERE success");
    let version: Option<i64> = sqlx::query_scalar(&sql)
        .fetch_one(&mut *conn)
        .await
        .with_context(|| format!("the {schema} database is not an openspot database"))?;
    version.with_context(|| format!("the {schema} database has no migration applied"))
}

async fn restore_attached(conn: &mut SqliteConnection) -> anyhow::Result<Restored> {
    let check: String = sqlx::query_scalar("PRAGMA backup.integrity_check(1)")
        .fetch_one(&mut *conn)
        .await
        .context("the backup is not a SQLite database")?;
    if check != "ok" {
        bail!("the backup is damaged: {check}");
    }
    let (live, backup) = (schema_version(conn, "main").await?, schema_version(conn, "backup").await?);
    if live != backup {
        bail!(
            "the backup is at schema version {backup} and this database at {live}: migrate a copy of the \
             backup first (`openspot --database-url sqlite://COPY migrate`), then restore the copy"
        );
    }
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT name FROM main.sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' \
         AND name <> '_sqlx_migrations' ORDER BY name",
    )
    .fetch_all(&mut *conn)
    .await?;
    let began = Instant::now();
    let mut tx = conn.begin_with("BEGIN IMMEDIATE").await?;
    for t in &tables {
        // Table names come from the database's own catalogue, quoted as identifiers.
        sqlx::query(&format!("DELETE FROM main.\"{}\"", t.replace('"', "\"\""))).execute(&mut *tx).await?;
    }
    let mut rows = 0;
    for t in &tables {
        let quoted = t.replace('"', "\"\"");
        rows += sqlx::query(&format!("INSERT INTO main.\"{quoted}\" SELECT * FROM backup.\"{quoted}\""))
            .execute(&mut *tx)
            .await
            .with_context(|| format!("restoring table {t}"))?
            .rows_affected();
    }
    let broken: Vec<(String, Option<i64>, String, i64)> =
        sqlx::query_as("PRAGMA main.foreign_key_check").fetch_all(&mut *tx).await?;
    if let Some((table, _, parent, _)) = broken.first() {
        bail!("the backup's rows do not hold together: a row of {table} has no {parent} (nothing was restored)");
    }
    tx.commit().await.context("committing the restore")?;
    Ok(Restored { tables: tables.len(), rows, took: began.elapsed() })
}

//! The operator console in a real browser: `tests/e2e/console.py` (Playwright for
//! Python, the system's Chromium) against `openspot serve --demo`, once over SQLite and
//! once over a fresh PostgreSQL database, driving every step an operator takes (sign
//! in, filter, bulk-add to a group, a two-condition smart group, a course linked to a
//! group, a CSV import with bad rows, the API key's rotation, sign out) and checking
//! the results through the API with the demo's key. The SQLite run saves screenshots to
//! `docs/console/`.
//!
//! Skipped with a notice when the interpreter (`OPENSPOT_TEST_PYTHON`), its
//! `playwright` package or Chromium is missing, unless `TEST_REQUIRE_BROWSER=1` makes
//! that a failure; the PostgreSQL run is skipped when `TEST_POSTGRES_URL` is unset or
//! unreachable, unless `TEST_REQUIRE_POSTGRES=1`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::ffi::OsString;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use openspot::Db;

fn skip_browser(why: &str) {
    if std::env::var("TEST_REQUIRE_BROWSER").is_ok_and(|v| v == "1") {
        panic!("TEST_REQUIRE_BROWSER=1 but {why}");
    }
    eprintln!("skipped: console e2e ({why})");
}

fn skip_postgres(why: &str) {
    if std::env::var("TEST_REQUIRE_POSTGRES").is_ok_and(|v| v == "1") {
        panic!("TEST_REQUIRE_POSTGRES=1 but {why}");
    }
    eprintln!("skipped: console e2e on PostgreSQL ({why})");
}

/// The Python interpreter and Chromium to drive, or None (after a skip notice).
fn browser() -> Option<(OsString, String)> {
    let Some(python) = std::env::var_os("OPENSPOT_TEST_PYTHON").filter(|p| !p.is_empty()) else {
        skip_browser("OPENSPOT_TEST_PYTHON is not set");
        return None;
    };
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    if !PathBuf::from(&chromium).exists() {
        skip_browser(&format!("no Chromium at {chromium}"));
        return None;
    }
    let has_playwright = Command::new(&python).args(["-c", "import playwright"]).status().is_ok_and(|s| s.success());
    if !has_playwright {
        skip_browser("the Python interpreter has no playwright package");
        return None;
    }
    Some((python, chromium))
}

/// Kills the server when the run ends, passed or not.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `serve --demo` on `database_url`, runs the script against it (screenshots
/// into `shots` when given) and fails with the script's output when a step fails.
fn run_console_script(python: &OsString, chromium: &str, database_url: &str, shots: Option<PathBuf>) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_openspot"))
        .args(["--database-url", database_url, "serve", "--demo", "--listen", "127.0.0.1:0"])
        .env_remove("OPENSPOT_DATABASE_URL")
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let server = Server(child);
    let (mut link, mut key, mut listen) = (None, None, None);
    let mut line = String::new();
    while listen.is_none() {
        line.clear();
        assert!(stderr.read_line(&mut line).unwrap() > 0, "serve ended early");
        let text = line.trim();
        if text.starts_with("console (") {
            link = text.rsplit(' ').next().map(str::to_string);
        }
        if let Some(k) = text.strip_prefix("demo API key: ") {
            key = Some(k.to_string());
        }
        listen = text.strip_prefix("listening on ").map(str::to_string);
    }
    std::thread::spawn(move || for _ in stderr.lines() {});
    let mut script = Command::new(python);
    script
        .arg(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/e2e/console.py"))
        .env("BASE_URL", format!("http://{}", listen.unwrap()))
        .env("LINK", link.expect("the demo prints a console link"))
        .env("API_KEY", key.expect("the demo prints its API key"))
        .env("CHROMIUM", chromium)
        .env_remove("SHOTS");
    if let Some(shots) = shots {
        std::fs::create_dir_all(&shots).unwrap();
        script.env("SHOTS", shots);
    }
    let out = script.output().unwrap();
    drop(server);
    let stdout = String::from_utf8_lossy(&out.stdout);
    eprint!("{stdout}");
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn the_console_works_in_a_browser_on_sqlite() {
    let Some((python, chromium)) = browser() else { return };
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("e2e.db").display());
    let shots = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("docs/console");
    run_console_script(&python, &chromium, &db, Some(shots));
}

/// A database created for one run on the `TEST_POSTGRES_URL` server, dropped (forced)
/// when the guard goes, whether the run passed or panicked.
struct PgDatabase {
    runtime: tokio::runtime::Runtime,
    admin_url: String,
    name: String,
    url: String,
}

impl PgDatabase {
    /// Creates it, or explains why it could not.
    fn create(admin_url: &str) -> Result<PgDatabase, String> {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let name = format!("openspot_e2e_{}", uuid::Uuid::new_v4().simple());
        runtime.block_on(async {
            let admin = Db::connect(admin_url).await.map_err(|e| format!("cannot reach TEST_POSTGRES_URL: {e}"))?;
            let Db::Postgres(p) = &admin else {
                return Err("TEST_POSTGRES_URL is not a postgres:// URL".to_string());
            };
            let created = sqlx::query(&format!("CREATE DATABASE \"{name}\"")).execute(p).await;
            admin.close().await;
            created.map(|_| ()).map_err(|e| format!("cannot create a database: {e}"))
        })?;
        let base = match admin_url.rfind('/') {
            Some(i) if i > "postgres://".len() => &admin_url[..i],
            _ => admin_url.trim_end_matches('/'),
        };
        let url = format!("{base}/{name}");
        Ok(PgDatabase { runtime, admin_url: admin_url.to_string(), name, url })
    }
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        if std::env::var("TEST_KEEP_DB").is_ok_and(|v| v == "1") {
            eprintln!("keeping test database {}", self.name);
            return;
        }
        let (admin_url, name) = (&self.admin_url, &self.name);
        self.runtime.block_on(async {
            if let Ok(db) = Db::connect(admin_url).await {
                if let Db::Postgres(p) = &db {
                    let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)")).execute(p).await;
                }
                db.close().await;
            }
        });
    }
}

#[test]
fn the_console_works_in_a_browser_on_postgres() {
    let Some((python, chromium)) = browser() else { return };
    let Some(admin_url) = std::env::var("TEST_POSTGRES_URL").ok().filter(|u| !u.is_empty()) else {
        return skip_postgres("TEST_POSTGRES_URL is not set");
    };
    let db = match PgDatabase::create(&admin_url) {
        Ok(db) => db,
        Err(why) => return skip_postgres(&why),
    };
    run_console_script(&python, &chromium, &db.url, None);
}

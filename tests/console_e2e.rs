//! The operator console in a real browser: `tests/e2e/console.py` (Playwright for
//! Python, the system's Chromium) against `openspot serve --demo`, saving screenshots
//! to `docs/console/`. Skipped with a notice when the interpreter
//! (`OPENSPOT_TEST_PYTHON`), its `playwright` package or Chromium is missing, unless
//! `TEST_REQUIRE_BROWSER=1` makes that a failure.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};

fn skip(why: &str) {
    if std::env::var("TEST_REQUIRE_BROWSER").is_ok_and(|v| v == "1") {
        panic!("TEST_REQUIRE_BROWSER=1 but {why}");
    }
    eprintln!("skipped: console e2e ({why})");
}

#[test]
fn the_console_works_in_a_browser() {
    let Some(python) = std::env::var_os("OPENSPOT_TEST_PYTHON").filter(|p| !p.is_empty()) else {
        return skip("OPENSPOT_TEST_PYTHON is not set");
    };
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    if !PathBuf::from(&chromium).exists() {
        return skip(&format!("no Chromium at {chromium}"));
    }
    let has_playwright = Command::new(&python).args(["-c", "import playwright"]).status().is_ok_and(|s| s.success());
    if !has_playwright {
        return skip("the Python interpreter has no playwright package");
    }
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("e2e.db").display());
    let mut child = Command::new(env!("CARGO_BIN_EXE_openspot"))
        .args(["--database-url", &db, "serve", "--demo", "--listen", "127.0.0.1:0"])
        .env_remove("OPENSPOT_DATABASE_URL")
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let (mut link, mut listen) = (None, None);
    let mut line = String::new();
    while listen.is_none() {
        line.clear();
        assert!(stderr.read_line(&mut line).unwrap() > 0, "serve ended early");
        if line.starts_with("console (") {
            link = line.trim().rsplit(' ').next().map(str::to_string);
        }
        listen = line.trim().strip_prefix("listening on ").map(str::to_string);
    }
    std::thread::spawn(move || for _ in stderr.lines() {});
    let shots = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("docs/console");
    std::fs::create_dir_all(&shots).unwrap();
    let out = Command::new(&python)
        .arg(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/e2e/console.py"))
        .env("BASE_URL", format!("http://{}", listen.unwrap()))
        .env("LINK", link.expect("the demo prints a console link"))
        .env("SHOTS", &shots)
        .env("CHROMIUM", &chromium)
        .output()
        .unwrap();
    let _ = child.kill();
    let _ = child.wait();
    assert!(out.status.success(), "{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
}

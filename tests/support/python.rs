//! Third-party verifiers in Python (PyPI packages installed by `.ci/run` into a venv):
//! the interpreter comes from `OPENSPOT_TEST_PYTHON`. Without it the checks are skipped
//! with a notice, unless `TEST_REQUIRE_PYTHON=1` (CI) turns the skip into a failure.
//! Test binaries include this file with `#[path]`, beside `receiver.rs`.

#![allow(dead_code)]

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use base64::Engine;

use super::receiver::Captured;

/// The Python interpreter of the test venv (the webhook verifier and the SMTP sink),
/// or None (after a skip notice).
pub fn python() -> Option<PathBuf> {
    match std::env::var_os("OPENSPOT_TEST_PYTHON") {
        Some(p) if !p.is_empty() => Some(PathBuf::from(p)),
        _ => {
            if std::env::var("TEST_REQUIRE_PYTHON").is_ok_and(|v| v == "1") {
                panic!("TEST_REQUIRE_PYTHON=1 but OPENSPOT_TEST_PYTHON is not set");
            }
            eprintln!("skipped: Python check (set OPENSPOT_TEST_PYTHON to a venv with standardwebhooks, aiosmtpd and schemathesis: see .ci/run)");
            None
        }
    }
}

fn script(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/support/py").join(name)
}

/// Verifies every request with the `standardwebhooks` package, once with its
/// `webhook-*` headers and once with its `svix-*` values: Ok(number verified), or the
/// verifier's complaint. Panics when no interpreter is configured but one is required;
/// call [`python`] first to skip.
pub fn verify_standard_webhooks(secret: &str, reqs: &[Captured]) -> Result<usize, String> {
    let python = python().ok_or("no Python interpreter")?;
    let input: Vec<serde_json::Value> = reqs
        .iter()
        .map(|r| {
            let headers: serde_json::Map<String, serde_json::Value> =
                r.headers.iter().map(|(k, v)| (k.clone(), serde_json::Value::from(v.as_str()))).collect();
            serde_json::json!({
                "headers": headers,
                "body_b64": base64::engine::general_purpose::STANDARD.encode(&r.body),
            })
        })
        .collect();
    let mut child = Command::new(&python)
        .arg(script("verify_webhooks.py"))
        .arg(secret)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run {}: {e}", python.display()))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(serde_json::Value::from(input).to_string().as_bytes()).map_err(|e| e.to_string())?;
    }
    let out = child.wait_with_output().map_err(|e| e.to_string())?;
    if !out.status.success() {
        return Err(format!(
            "verifier failed: {}{}",
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&out.stdout)
        ));
    }
    String::from_utf8_lossy(&out.stdout).trim().parse().map_err(|e| format!("verifier output: {e}"))
}

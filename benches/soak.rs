//! Soak run (on demand, not part of `cargo test`): the real `openspot serve` binary on a
//! fresh SQLite database (or `OPENSPOT_BENCH_DATABASE_URL`), driven on loopback for
//! `SOAK_SECS` seconds (default 300) by a mix of reads and writes at twice the spot's
//! rate limit.
//!
//! ```sh
//! cargo bench --bench soak                 # 5 minutes on SQLite
//! SOAK_SECS=60 cargo bench --bench soak
//! ```
//!
//! It checks, and prints per 30-second window:
//! * **Exact 429s.** Per 10 s window, exactly the limit passes and everything beyond it
//!   is refused.
//! * **No 5xx, no transport error.**
//! * **Flat memory.** The server's RSS is sampled every second. The growth over the second
//!   half of the run must stay under 10 %, so the first half is a warm-up.
//! * **Stable latency.** The p50 and p99 of each window are printed, and the last window's
//!   p99 is compared with the first's.
//!
//! It exits non-zero when a check fails.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::BufRead;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

const BIN: &str = env!("CARGO_BIN_EXE_openspot");
/// The spot's limit per 10 s; the load offers twice as much.
const LIMIT_PER_10S: u64 = 400;

fn cli(url: &str, args: &[&str]) -> Value {
    let out = Command::new(BIN).args(["--database-url", url]).args(args).output().unwrap();
    assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn unix_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

#[derive(Default)]
struct Window {
    ok: u64,
    refused: u64,
    server_errors: u64,
    transport_errors: u64,
    latencies_ms: Vec<f64>,
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let secs: u64 = std::env::var("SOAK_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(300);
    let dir = tempfile::tempdir().unwrap();
    let url = std::env::var("OPENSPOT_BENCH_DATABASE_URL")
        .unwrap_or_else(|_| format!("sqlite://{}", dir.path().join("soak.db").display()));
    let spot = cli(&url, &["spots", "create", "--name", "soak", "--json"]);
    let (key, spot_id) = (spot["apiKey"].as_str().unwrap().to_string(), spot["spotId"].as_str().unwrap().to_string());
    let per_10s = LIMIT_PER_10S.to_string();
    cli(&url, &["spots", "set-limits", &spot_id, "--per-10s", &per_10s, "--per-day", "100000000", "--json"]);

    let mut server = Command::new(BIN)
        .args(["--database-url", &url, "serve", "--listen", "127.0.0.1:0"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = server.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(addr) = line.strip_prefix("listening on ") {
                let _ = tx.send(addr.to_string());
            }
        }
    });
    let base = format!("http://{}", rx.recv_timeout(Duration::from_secs(30)).unwrap());
    let pid = server.id();
    let client = reqwest::Client::builder().pool_idle_timeout(Duration::from_secs(4)).build().unwrap();

    // Offered load: twice the limit, spread evenly (one request every 12.5 ms at 400/10 s).
    let interval = Duration::from_secs_f64(10.0 / (2 * LIMIT_PER_10S) as f64);
    let started = Instant::now();
    let windows: Arc<Mutex<Vec<Window>>> = Arc::default();
    // Requests that passed, per wall-clock 10 s window of the limiter (windows start at
    // multiples of 10 s since the epoch): (surely in it, possibly in it: sent in one
    // window and answered in the next, so the server's clock put them in either).
    let per_10s_ok: Arc<Mutex<std::collections::BTreeMap<u64, (u64, u64)>>> = Arc::default();
    let seq = Arc::new(AtomicU64::new(0));
    let mut rss: Vec<(f64, u64)> = Vec::new();
    let mut tick = tokio::time::interval(interval);
    let mut next_sample = Instant::now();
    let mut inflight = tokio::task::JoinSet::new();
    while started.elapsed() < Duration::from_secs(secs) {
        tick.tick().await;
        if Instant::now() >= next_sample {
            rss.push((started.elapsed().as_secs_f64(), rss_kib(pid)));
            next_sample += Duration::from_secs(1);
        }
        let n = seq.fetch_add(1, Ordering::Relaxed);
        let (client, base, key, windows, per_10s_ok) =
            (client.clone(), base.clone(), key.clone(), windows.clone(), per_10s_ok.clone());
        let sent_at = started.elapsed();
        inflight.spawn(async move {
            let t = Instant::now();
            let sent_window = unix_ms() / 10_000;
            // One write in four: an invite; otherwise a filtered read.
            let req = if n % 4 == 0 {
                client.post(format!("{base}/v1/spotMembers")).json(&json!({"email": format!("soak{n}@x.io")}))
            } else {
                client.get(format!("{base}/v1/spotMembers?limit=20&status[in]=Invited"))
            };
            let result = req.header("authorization", &key).send().await;
            let ms = t.elapsed().as_secs_f64() * 1000.0;
            let answered_window = unix_ms() / 10_000;
            let w = (sent_at.as_secs() / 30) as usize;
            let mut windows = windows.lock().unwrap();
            while windows.len() <= w {
                windows.push(Window::default());
            }
            let win = &mut windows[w];
            match result {
                Ok(r) => {
                    let s = r.status().as_u16();
                    if s == 429 {
                        win.refused += 1;
                    } else if s >= 500 {
                        win.server_errors += 1;
                    } else {
                        win.ok += 1;
                        let mut counts = per_10s_ok.lock().unwrap();
                        if sent_window == answered_window {
                            counts.entry(sent_window).or_default().0 += 1;
                        } else {
                            counts.entry(sent_window).or_default().1 += 1;
                            counts.entry(answered_window).or_default().1 += 1;
                        }
                    }
                    win.latencies_ms.push(ms);
                }
                Err(_) => win.transport_errors += 1,
            }
        });
        while inflight.try_join_next().is_some() {}
    }
    while inflight.join_next().await.is_some() {}
    let _ = Command::new("kill").args(["-TERM", &pid.to_string()]).status();
    let _ = server.wait();

    let mut failures = Vec::new();
    println!("soak: {secs} s, offered {} req/10 s against a limit of {LIMIT_PER_10S}", 2 * LIMIT_PER_10S);
    println!("window   ok  429  5xx  err   p50 ms   p99 ms");
    let mut windows = std::mem::take(&mut *windows.lock().unwrap());
    // p99 of each full window (the last, a few requests sent as the run ends, is left out).
    let mut p99s = Vec::new();
    for (i, w) in windows.iter_mut().enumerate() {
        w.latencies_ms.sort_by(|a, b| a.total_cmp(b));
        let (p50, p99) = (percentile(&w.latencies_ms, 0.5), percentile(&w.latencies_ms, 0.99));
        if w.latencies_ms.len() >= 100 {
            p99s.push(p99);
        }
        println!(
            "{:>4}s {:>5} {:>4} {:>4} {:>4} {:>8.2} {:>8.2}",
            i * 30,
            w.ok,
            w.refused,
            w.server_errors,
            w.transport_errors,
            p50,
            p99
        );
        if w.server_errors + w.transport_errors > 0 {
            failures.push(format!("window {i}: {} 5xx, {} transport errors", w.server_errors, w.transport_errors));
        }
    }
    // Exact 429s: in every full 10 s window (the first and last, partial, left out) the
    // requests that passed are exactly the limit, up to the ones whose window only the
    // server's clock knew: sure ≤ limit ≤ sure + unsure.
    let counts = per_10s_ok.lock().unwrap().clone();
    let full: Vec<_> = counts.iter().skip(1).take(counts.len().saturating_sub(2)).collect();
    let unsure_total: u64 = full.iter().map(|(_, (_, unsure))| unsure).sum();
    for (window, (sure, unsure)) in &full {
        if *sure > LIMIT_PER_10S || sure + unsure < LIMIT_PER_10S {
            failures.push(format!(
                "10 s window {window}: {sure} (+{unsure} at its edges) passed, the limit is {LIMIT_PER_10S}"
            ));
        }
    }
    println!("rate limit: {} full 10 s windows each passed exactly {LIMIT_PER_10S} ({unsure_total} answers straddled an edge)", full.len());
    // Memory: growth over the second half.
    let half = rss.len() / 2;
    let (mid, end) = (rss.get(half).map_or(0, |r| r.1), rss.last().map_or(0, |r| r.1));
    let growth = if mid > 0 { (end as f64 - mid as f64) / mid as f64 * 100.0 } else { 0.0 };
    println!(
        "rss: start {} KiB, half-way {mid} KiB, end {end} KiB ({growth:+.1} % over the second half)",
        rss.first().map_or(0, |r| r.1)
    );
    if growth > 10.0 {
        failures.push(format!("memory grew {growth:.1} % over the second half"));
    }
    if let (Some(first), Some(last)) = (p99s.first(), p99s.last()) {
        println!("latency: first full window p99 {first:.2} ms, last full window p99 {last:.2} ms");
    }
    let total: u64 = windows.iter().map(|w| w.ok + w.refused + w.server_errors + w.transport_errors).sum();
    println!("requests: {total}");
    if failures.is_empty() {
        println!("soak: all checks passed");
    } else {
        for f in &failures {
            println!("soak: FAILED: {f}");
        }
        std::process::exit(1);
    }
}

//! Invitation emails (issue 14), on both stores: `withEmailNotification` on member
//! invite, bulk invite, course invite, course bulk invite and the import sends mail
//! through a real SMTP server on loopback (`tests/support/py/smtp_sink.py`, Python
//! `aiosmtpd`, run by the interpreter named in `OPENSPOT_TEST_PYTHON`), delivered by
//! the server's own outbox dispatcher. Without a relay the emails are recorded Skipped;
//! a relay that is down is retried and the email then fails; a 5xx refusal fails at once.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use openspot::domain::email::{NO_ADDRESS, NO_RELAY, SMTP_TIMEOUT};
use openspot::domain::outbox::{self, Filter, OutboxItem};
use openspot::domain::vocab::{ChannelKind, OutboxState};
use openspot::store::Backend;
use reqwest::multipart::{Form, Part};
use serde_json::{json, Value};

use crate::common::TestApp;
use crate::{both, both_with};

/// A running `smtp_sink.py`: killed when dropped.
struct Sink {
    child: Child,
    port: u16,
    out: PathBuf,
    _dir: tempfile::TempDir,
}

impl Sink {
    fn start() -> Option<Sink> {
        let python = crate::python::python()?;
        let dir = tempfile::tempdir().expect("temp dir");
        let out = dir.path().join("mail.jsonl");
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/support/py/smtp_sink.py");
        let mut child = Command::new(python)
            .arg(script)
            .arg(&out)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start smtp_sink.py");
        let stdout = child.stdout.take().expect("sink stdout");
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).expect("sink ready line");
        let port = line.trim().strip_prefix("ready ").and_then(|p| p.parse().ok()).unwrap_or_else(|| {
            let _ = child.kill();
            panic!("smtp_sink.py did not start (is aiosmtpd installed?): {line:?}")
        });
        Some(Sink { child, port, out, _dir: dir })
    }

    fn url(&self) -> String {
        format!("smtp://127.0.0.1:{}", self.port)
    }

    fn messages(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.out)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).expect("sink JSON line"))
            .collect()
    }

    /// Waits (bounded) until `n` messages have arrived; returns them all.
    async fn wait_for(&self, n: usize) -> Vec<Value> {
        let until = Instant::now() + Duration::from_secs(15);
        loop {
            let got = self.messages();
            if got.len() >= n || Instant::now() > until {
                return got;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A server whose emails go to `sink`, with a short retry schedule.
async fn app_with_sink(backend: Backend, sink: &Sink) -> Option<TestApp> {
    let url = sink.url();
    TestApp::spawn_with(backend, move |c| {
        c.email.smtp_url = Some(url);
        c.outbox.retry_schedule = vec![Duration::from_millis(50), Duration::from_millis(100)];
    })
    .await
}

/// Generates `sqlite` and `postgres` tests of a server sending to a fresh sink.
macro_rules! both_smtp {
    ($name:ident, |$app:ident, $sink:ident| $body:block) => {
        mod $name {
            use super::*;
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                let Some($sink) = Sink::start() else { return };
                let Some($app) = app_with_sink(Backend::Sqlite, &$sink).await else { return };
                $body
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                let Some($sink) = Sink::start() else { return };
                let Some($app) = app_with_sink(Backend::Postgres, &$sink).await else { return };
                $body
            }
        }
    };
}

/// The spot's Email rows.
async fn email_rows(app: &TestApp) -> Vec<OutboxItem> {
    let f = Filter { spot_id: Some(app.spot_id), channel: Some(ChannelKind::Email), ..Filter::default() };
    outbox::list(&app.db, &f, 1_000).await.expect("outbox list")
}

/// Waits (bounded) until every Email row of the spot is in a final state; returns them.
async fn settled_email_rows(app: &TestApp, n: usize) -> Vec<OutboxItem> {
    let until = Instant::now() + Duration::from_secs(15) + SMTP_TIMEOUT;
    loop {
        let rows = email_rows(app).await;
        let done = rows.len() >= n && rows.iter().all(|r| r.state.is_final());
        if done || Instant::now() > until {
            return rows;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn to_of(m: &Value) -> String {
    m["rcpt_tos"][0].as_str().unwrap_or_default().to_string()
}

fn by_recipient<'a>(msgs: &'a [Value], to: &str) -> &'a Value {
    msgs.iter().find(|m| to_of(m) == to).unwrap_or_else(|| panic!("no mail to {to}: {msgs:#?}"))
}

/// Both parts name the spot, the invitation, the link and the ignore line.
fn assert_invitation(m: &Value, what: &str, link: &str) {
    let text = m["text"].as_str().expect("a text/plain part");
    let html = m["html"].as_str().expect("a text/html part");
    assert_eq!(m["content_type"], "multipart/alternative", "{m:#}");
    for body in [text, html] {
        assert!(body.contains("test spot"), "spot name missing: {body}");
        assert!(body.contains(what), "{what} missing: {body}");
        assert!(body.contains(link), "link {link} missing: {body}");
        assert!(body.contains("If you did not expect this invitation, you can ignore this email."), "{body}");
    }
    assert!(html.contains(&format!("href=\"{link}\"")), "{html}");
}

both_smtp!(every_invitation_path_sends_mail_with_both_parts, |app, sink| {
    openspot::domain::email::set_sender_name(&app.db, app.spot_id, Some("Acme Community")).await.unwrap();
    // Member invite, with and without the flag, and an existing member (no new mail).
    let r = app.post("/v1/spotMembers", json!({"email": "ann@example.com", "withEmailNotification": true})).await;
    assert_eq!(r.status, 201, "{}", r.text);
    let ann = r.body["id"].as_str().unwrap().to_string();
    let silent = app.invite("silent@example.com").await;
    let r = app.post("/v1/spotMembers", json!({"email": "ann@example.com", "withEmailNotification": true})).await;
    assert_eq!(r.status, 200, "{}", r.text);
    // Bulk invite: two new members are mailed, the existing one is not.
    let r = app
        .post(
            "/v1/spotMembers~bulkInvite",
            json!({"emails": ["bob@example.com", "silent@example.com", "cy@example.com"], "withEmailNotification": true}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    // Course invite and course bulk invite.
    let r = app.post("/v1/courses", json!({"title": "Rust <101>"})).await;
    assert_eq!(r.status, 201, "{}", r.text);
    let course = r.body["id"].as_str().unwrap().to_string();
    let r = app
        .post(
            &format!("/v1/courses/{course}/participants"),
            json!({"spotMemberId": silent, "withEmailNotification": true}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let r = app
        .post(
            &format!("/v1/courses/{course}/participants~bulkInvite"),
            json!({"spotMemberIds": [ann, silent], "withEmailNotification": true}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(r.body.as_array().unwrap().len(), 1, "only ann is new: {}", r.text);
    // Import: the created row is mailed, the updated one is not; a dry run sends nothing.
    let csv = b"email,firstname,lastname\ndee@example.com,Dee,Ray\nbob@example.com,Bob,Stone\n".to_vec();
    let form = |dry: &str| {
        Form::new()
            .part("file", Part::bytes(csv.clone()).file_name("m.csv"))
            .text("withEmailNotification", "true")
            .text("dryRun", dry.to_string())
    };
    let r = crate::ms_import::upload(&app, form("true")).await;
    assert_eq!((r.status, r.body["created"].as_u64()), (200, Some(1)), "{}", r.text);
    let r = crate::ms_import::upload(&app, form("false")).await;
    assert_eq!(
        (r.status, r.body["created"].as_u64(), r.body["updated"].as_u64()),
        (200, Some(1), Some(1)),
        "{}",
        r.text
    );

    let msgs = sink.wait_for(6).await;
    let mut to: Vec<String> = msgs.iter().map(to_of).collect();
    to.sort();
    let expected = [
        "ann@example.com",
        "ann@example.com",
        "bob@example.com",
        "cy@example.com",
        "dee@example.com",
        "silent@example.com",
    ];
    assert_eq!(to, expected, "{msgs:#?}");
    for m in &msgs {
        let from = m["from"].as_str().unwrap();
        assert_eq!(Some(m["mail_from"].as_str().unwrap()), from.rsplit('<').next().map(|a| a.trim_end_matches('>')));
        assert!(m["from"].as_str().unwrap().starts_with("Acme Community <"), "{m:#}");
        assert!(m["message_id"].as_str().unwrap().starts_with('<'), "{m:#}");
    }
    let spot = app.spot_id;
    let dee_id =
        app.get("/v1/spotMembers?email[in]=dee@example.com").await.body["items"][0]["id"].as_str().unwrap().to_string();
    let link = format!("{}/invitations/{dee_id}", app.base);
    let dee = by_recipient(&msgs, "dee@example.com");
    assert_eq!(dee["subject"], "You're invited to join test spot");
    assert!(dee["to"].as_str().unwrap().contains("Dee Ray"), "{dee:#}");
    assert_invitation(dee, "join test spot", &link);
    assert!(dee["text"].as_str().unwrap().contains("Hello Dee,"));
    let course_mails: Vec<&Value> =
        msgs.iter().filter(|m| m["subject"] == "You're invited to Rust <101> on test spot").collect();
    assert_eq!(course_mails.len(), 2, "{msgs:#?}");
    for m in course_mails {
        let html = m["html"].as_str().unwrap();
        assert!(html.contains("Rust &lt;101&gt;") && !html.contains("Rust <101>"), "{html}");
        assert!(m["text"].as_str().unwrap().contains("the course \"Rust <101>\" on test spot"));
        let member = if to_of(m) == "ann@example.com" { &ann } else { &silent };
        assert_invitation(m, "Rust", &format!("{}/invitations/{member}", app.base));
    }
    // The outbox shows each of them Delivered with the relay's code; nothing else queued.
    let rows = settled_email_rows(&app, 6).await;
    assert_eq!(rows.len(), 6, "{rows:#?}");
    for r in &rows {
        assert_eq!((r.state, r.last_status, r.attempts), (OutboxState::Delivered, Some(250), 1), "{r:#?}");
        assert_eq!(r.spot_id, spot);
    }
    assert_eq!(rows.iter().filter(|r| r.event_type == "invitation.course").count(), 2);
});

both!(without_a_relay_emails_are_recorded_skipped, |app| {
    let r = app.post("/v1/spotMembers", json!({"email": "ann@example.com", "withEmailNotification": true})).await;
    assert_eq!(r.status, 201, "{}", r.text);
    app.invite("quiet@example.com").await;
    let rows = settled_email_rows(&app, 1).await;
    assert_eq!(rows.len(), 1, "one email, none for the invite without the flag: {rows:#?}");
    assert_eq!(rows[0].state, OutboxState::Skipped, "{rows:#?}");
    assert_eq!(rows[0].last_error.as_deref(), Some(NO_RELAY));
    assert_eq!(rows[0].event_type, "invitation.spot");
});

both_with!(
    a_relay_that_is_down_is_retried_then_the_email_fails,
    |config| {
        // A port nothing listens on: bound, then released.
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        config.email.smtp_url = Some(format!("smtp://127.0.0.1:{port}"));
        config.outbox.retry_schedule = vec![Duration::from_millis(50), Duration::from_millis(100)];
    },
    |app| {
        let r = app.post("/v1/spotMembers", json!({"email": "ann@example.com", "withEmailNotification": true})).await;
        assert_eq!(r.status, 201, "{}", r.text);
        let rows = settled_email_rows(&app, 1).await;
        assert_eq!(rows.len(), 1, "{rows:#?}");
        assert_eq!((rows[0].state, rows[0].attempts), (OutboxState::Failed, 3), "1 + 2 retries: {rows:#?}");
        assert!(rows[0].last_error.as_deref().unwrap_or_default().contains("SMTP"), "{rows:#?}");
    }
);

both_smtp!(a_refused_recipient_fails_at_once, |app, sink| {
    let r = app.post("/v1/spotMembers", json!({"email": "reject@example.com", "withEmailNotification": true})).await;
    assert_eq!(r.status, 201, "{}", r.text);
    let r = app.post("/v1/spotMembers", json!({"email": "ok@example.com", "withEmailNotification": true})).await;
    assert_eq!(r.status, 201, "{}", r.text);
    let msgs = sink.wait_for(1).await;
    assert_eq!(msgs.len(), 1);
    assert_eq!(to_of(&msgs[0]), "ok@example.com");
    let rows = settled_email_rows(&app, 2).await;
    let failed: Vec<&OutboxItem> = rows.iter().filter(|r| r.state == OutboxState::Failed).collect();
    assert_eq!(failed.len(), 1, "{rows:#?}");
    assert_eq!((failed[0].attempts, failed[0].last_status), (1, Some(550)), "no retry after a 5xx: {rows:#?}");
});

/// Runs the openspot binary on the test's database; returns its stdout as JSON.
fn cli(app: &TestApp, args: &[&str]) -> Value {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_openspot"))
        .arg("--database-url")
        .arg(&app.database_url)
        .args(args)
        .env_remove("OPENSPOT_SMTP_URL")
        .output()
        .expect("run openspot");
    assert!(out.status.success(), "openspot {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("openspot {args:?}: not one JSON object ({e})"))
}

both!(cli_import_notify_queues_emails_the_server_records_and_outbox_list_shows, |app| {
    let spot = app.spot_id.to_string();
    let set = cli(&app, &["spots", "set-sender", &spot, "--name", "Team Acme", "--json"]);
    assert_eq!(set, json!({"spotId": spot, "emailSenderName": "Team Acme"}));
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("members.csv");
    std::fs::write(&file, "email,firstname\nann@example.com,Ann\nbob@example.com,Bob\n").unwrap();
    let file = file.to_str().unwrap();
    let dry = cli(&app, &["members", "import", "--spot", &spot, file, "--notify", "--dry-run", "--json"]);
    assert_eq!(dry["created"], 2);
    assert!(email_rows(&app).await.is_empty(), "a dry run queues nothing");
    let done = cli(&app, &["members", "import", "--spot", &spot, file, "--notify", "--json"]);
    assert_eq!(done["created"], 2, "{done}");
    // The CLI only queues; the running server's dispatcher records them (no relay: Skipped).
    let rows = settled_email_rows(&app, 2).await;
    assert_eq!(rows.len(), 2, "{rows:#?}");
    assert!(rows.iter().all(|r| r.state == OutboxState::Skipped), "{rows:#?}");
    let listed = cli(&app, &["outbox", "list", "--spot", &spot, "--channel", "Email", "--json"]);
    let items = listed["items"].as_array().expect("items");
    assert_eq!(items.len(), 2, "{listed:#}");
    for i in items {
        assert_eq!(
            (&i["state"], &i["lastError"], &i["eventType"]),
            (&json!("Skipped"), &json!(NO_RELAY), &json!("invitation.spot"))
        );
    }
    // The payload carries the spot's sender name.
    let mut c = app.db.conn().await.unwrap();
    let filter = openspot::store::outbox::OutboxFilter {
        spot_id: Some(app.spot_id),
        channel: Some(ChannelKind::Email),
        ..Default::default()
    };
    let stored = openspot::store::outbox::list(c.ex(), &filter, 10).await.unwrap();
    for r in stored {
        let p: Value = serde_json::from_str(&r.payload).unwrap();
        assert_eq!(p["senderName"], "Team Acme");
        assert_eq!(p["spot"]["name"], "test spot");
    }
});

both!(a_member_without_an_email_address_is_recorded_skipped, |app| {
    let (connector, _) = openspot::domain::kaizala::create_connector(&app.db, app.spot_id, "app").await.unwrap();
    openspot::domain::kaizala::create_user_token(&app.db, &connector.id.to_string(), "+911199999999").await.unwrap();
    let listed = app.get("/v1/spotMembers").await;
    let member = listed.body["items"][0]["id"].as_str().expect("the Kaizala member").to_string();
    let r = app.post("/v1/courses", json!({"title": "Rust 101"})).await;
    let course = r.body["id"].as_str().unwrap().to_string();
    let r = app
        .post(
            &format!("/v1/courses/{course}/participants"),
            json!({"spotMemberId": member, "withEmailNotification": true}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let rows = settled_email_rows(&app, 1).await;
    assert_eq!(rows.len(), 1, "{rows:#?}");
    assert_eq!(rows[0].event_type, "invitation.course");
    assert_eq!((rows[0].state, rows[0].last_error.as_deref()), (OutboxState::Skipped, Some(NO_ADDRESS)));
});

/// The SMTP relay counts as one target: with a per-target cap of 2 and ten invitations
/// queued, a relay that never answers holds exactly two connections (lettre's pool
/// would open ten, as many as the dispatcher started).
async fn the_relay_gets_at_most_the_per_target_cap(backend: Backend) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let accepted = Arc::new(AtomicUsize::new(0));
    let counter = accepted.clone();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            counter.fetch_add(1, Ordering::SeqCst);
            held.push(socket); // silent: no greeting, ever
        }
    });
    let Some(app) = TestApp::spawn_with(backend, move |c| {
        c.email.smtp_url = Some(format!("smtp://127.0.0.1:{port}"));
        c.outbox.max_in_flight_per_target = 2;
    })
    .await
    else {
        return;
    };
    let emails: Vec<String> = (0..10).map(|i| format!("cap{i}@example.com")).collect();
    let r = app.post("/v1/spotMembers~bulkInvite", json!({"emails": emails, "withEmailNotification": true})).await;
    assert_eq!(r.status, 201, "{}", r.text);
    let start = Instant::now();
    while accepted.load(Ordering::SeqCst) < 2 && start.elapsed() < Duration::from_secs(10) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Room for more connections to show up if nothing held them back.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    assert_eq!(accepted.load(Ordering::SeqCst), 2, "connections to the relay");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_relay_gets_at_most_the_per_target_cap_sqlite() {
    the_relay_gets_at_most_the_per_target_cap(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_relay_gets_at_most_the_per_target_cap_postgres() {
    the_relay_gets_at_most_the_per_target_cap(Backend::Postgres).await;
}

//! `/v1/webhooks` (contract §4, §5): endpoint management, validation, isolation, and
//! signed deliveries to a real receiver on loopback.

use std::time::Duration;

use serde_json::{json, Value};

use crate::common::{assert_ms_error, TestApp};
use crate::receiver::{Captured, Receiver, Reply};
use crate::{both, both_with};

/// A public-looking URL (`check_target` resolves nothing for an IP literal; this one is public).
const PUBLIC_URL: &str = "https://93.184.215.14/hooks/openspot";

async fn create(app: &TestApp, body: Value) -> Value {
    let r = app.post("/v1/webhooks", body).await;
    assert_eq!(r.status, 201, "{}", r.text);
    r.body
}

fn iso_ms(v: &Value) -> i64 {
    let s = v.as_str().unwrap_or_else(|| panic!("not a date: {v}"));
    let t = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).unwrap();
    (t.unix_timestamp_nanos() / 1_000_000) as i64
}

both!(endpoints_are_created_read_listed_updated_and_deleted, |app| {
    let e = create(
        &app,
        json!({"url": PUBLIC_URL, "eventTypes": ["member.created", "group.member.added", "member.created"],
               "description": "CRM sync"}),
    )
    .await;
    let id = e["id"].as_str().unwrap().to_string();
    assert_eq!(e["url"], PUBLIC_URL);
    assert_eq!(e["eventTypes"], json!(["member.created", "group.member.added"]));
    assert_eq!(e["description"], "CRM sync");
    assert_eq!(e["enabled"], true);
    assert_eq!(e["disabledReason"], Value::Null);
    assert_eq!(e["previousSecretExpiresAt"], Value::Null);
    let secret = e["secret"].as_str().unwrap();
    assert!(secret.starts_with("whsec_") && secret.len() > 40, "{secret}");
    assert!(iso_ms(&e["createdAt"]) > 0);
    assert_eq!(e["createdAt"], e["updatedAt"]);

    let got = app.get(&format!("/v1/webhooks/{id}")).await;
    assert_eq!(got.status, 200, "{}", got.text);
    assert_eq!(got.body, e);

    // A given secret is kept; a created-disabled endpoint says why.
    let given = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    let e2 = create(
        &app,
        json!({"url": "http://93.184.215.14/other", "eventTypes": ["course.participant.created"],
               "secret": given, "enabled": false}),
    )
    .await;
    assert_eq!(e2["secret"], given);
    assert_eq!(e2["enabled"], false);
    assert_eq!(e2["disabledReason"], "Disabled through the API");
    assert_eq!(e2["description"], "");

    let list = app.get("/v1/webhooks").await;
    assert_eq!(list.status, 200, "{}", list.text);
    assert_eq!(list.body["total"], 2);
    assert_eq!(list.body["items"][0]["id"], e["id"]);
    assert_eq!(list.body["items"][1]["id"], e2["id"]);
    let page2 = app.get("/v1/webhooks?page=2&limit=1").await;
    assert_eq!(page2.body["total"], 2);
    assert_eq!(page2.body["items"].as_array().unwrap().len(), 1);
    assert_eq!(page2.body["items"][0]["id"], e2["id"]);
    let filtered = app.get("/v1/webhooks?url[eq]=x").await;
    assert!(assert_ms_error(&filtered, 400).contains("url[eq]"), "{}", filtered.text);

    // Partial update: absent fields stay.
    let up = app.put(&format!("/v1/webhooks/{id}"), json!({"eventTypes": ["member.updated"]})).await;
    assert_eq!(up.status, 200, "{}", up.text);
    assert_eq!(up.body["eventTypes"], json!(["member.updated"]));
    assert_eq!(up.body["url"], PUBLIC_URL);
    assert_eq!(up.body["description"], "CRM sync");
    assert_eq!(up.body["secret"], e["secret"]);
    let up = app.put(&format!("/v1/webhooks/{id}"), json!({"enabled": false, "description": ""})).await;
    assert_eq!(up.body["enabled"], false);
    assert_eq!(up.body["disabledReason"], "Disabled through the API");
    assert_eq!(up.body["description"], "");
    let up = app.put(&format!("/v1/webhooks/{id}"), json!({"enabled": true})).await;
    assert_eq!(up.body["enabled"], true);
    assert_eq!(up.body["disabledReason"], Value::Null);
    assert!(iso_ms(&up.body["updatedAt"]) >= iso_ms(&up.body["createdAt"]));

    let del = app.delete(&format!("/v1/webhooks/{id}")).await;
    assert_eq!(del.status, 204, "{}", del.text);
    let gone = app.get(&format!("/v1/webhooks/{id}")).await;
    assert_eq!(assert_ms_error(&gone, 404), "Webhook not found");
    assert_eq!(assert_ms_error(&app.delete(&format!("/v1/webhooks/{id}")).await, 404), "Webhook not found");
    assert_eq!(app.get("/v1/webhooks").await.body["total"], 1);
});

both!(bad_bodies_are_refused_naming_the_field, |app| {
    let cases: Vec<(Value, &str)> = vec![
        (json!({"eventTypes": ["member.created"]}), "url"),
        (json!({"url": "", "eventTypes": ["member.created"]}), "url"),
        (json!({"url": "ftp://93.184.215.14/x", "eventTypes": ["member.created"]}), "url"),
        (json!({"url": "not a url", "eventTypes": ["member.created"]}), "url"),
        (
            json!({"url": format!("https://93.184.215.14/{}", "a".repeat(2100)), "eventTypes": ["member.created"]}),
            "url",
        ),
        // A private target is refused unless the operator allows them.
        (json!({"url": "http://127.0.0.1:9/hook", "eventTypes": ["member.created"]}), "url"),
        (json!({"url": "http://10.1.2.3/hook", "eventTypes": ["member.created"]}), "url"),
        (json!({"url": PUBLIC_URL}), "eventTypes"),
        (json!({"url": PUBLIC_URL, "eventTypes": []}), "eventTypes"),
        (json!({"url": PUBLIC_URL, "eventTypes": ["member.created", "member.deleted"]}), "eventTypes[1]"),
        (json!({"url": PUBLIC_URL, "eventTypes": "member.created"}), "eventTypes"),
        (json!({"url": 7, "eventTypes": ["member.created"]}), "url"),
        (json!({"url": PUBLIC_URL, "eventTypes": ["member.created"], "secret": "abc"}), "secret"),
        (json!({"url": PUBLIC_URL, "eventTypes": ["member.created"], "secret": "whsec_c2hvcnQ="}), "secret"),
        (json!({"url": PUBLIC_URL, "eventTypes": ["member.created"], "enabled": "yes"}), "enabled"),
        (json!({"url": PUBLIC_URL, "eventTypes": ["member.created"], "description": "x".repeat(4097)}), "description"),
        (json!("a string"), "body"),
    ];
    for (body, field) in cases {
        let r = app.post("/v1/webhooks", body.clone()).await;
        let msg = assert_ms_error(&r, 400);
        assert!(msg.starts_with(field), "{body}: expected '{field}' in: {msg}");
    }
    let r = app.post_raw("/v1/webhooks", b"{\"url\":".to_vec(), "application/json").await;
    assert!(assert_ms_error(&r, 400).starts_with("body"), "{}", r.text);
    let r = app.post_raw("/v1/webhooks", Vec::new(), "application/json").await;
    assert!(assert_ms_error(&r, 400).starts_with("body"), "{}", r.text);
    assert_eq!(app.get("/v1/webhooks").await.body["total"], 0);

    // Updates are checked the same way; the secret is not writable there.
    let id = create(&app, json!({"url": PUBLIC_URL, "eventTypes": ["member.created"]})).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    for (body, field) in [
        (json!({"url": "gopher://93.184.215.14/"}), "url"),
        (json!({"eventTypes": ["nope"]}), "eventTypes[0]"),
        (json!({"eventTypes": []}), "eventTypes"),
        (json!({"secret": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"}), "secret"),
        (json!({"enabled": 1}), "enabled"),
    ] {
        let r = app.put(&format!("/v1/webhooks/{id}"), body.clone()).await;
        let msg = assert_ms_error(&r, 400);
        assert!(msg.starts_with(field), "{body}: expected '{field}' in: {msg}");
    }
    let r = app.post(&format!("/v1/webhooks/{id}~rotateSecret"), json!({"secret": "whsec_!"})).await;
    assert!(assert_ms_error(&r, 400).starts_with("secret"), "{}", r.text);
    let r = app.post(&format!("/v1/webhooks/{id}~explode"), json!({})).await;
    assert_eq!(assert_ms_error(&r, 404), format!("Cannot POST /v1/webhooks/{id}~explode"));
    let r = app.post(&format!("/v1/webhooks/{id}"), json!({})).await;
    assert_eq!(assert_ms_error(&r, 404), format!("Cannot POST /v1/webhooks/{id}"));
    let r = app.post("/v1/webhooks/not-a-uuid~rotateSecret", json!({})).await;
    assert_eq!(assert_ms_error(&r, 404), "Webhook not found");
});

both!(a_spot_has_at_most_twenty_endpoints, |app| {
    for i in 0..20 {
        create(&app, json!({"url": format!("{PUBLIC_URL}/{i}"), "eventTypes": ["member.created"]})).await;
    }
    let r = app.post("/v1/webhooks", json!({"url": PUBLIC_URL, "eventTypes": ["member.created"]})).await;
    assert_eq!(assert_ms_error(&r, 400), "a spot has at most 20 webhook endpoints");
    // Another spot has its own allowance.
    let (_, other_key) = app.other_spot().await;
    let r = app
        .send(
            reqwest::Method::POST,
            "/v1/webhooks",
            Some(&other_key),
            Some(json!({"url": PUBLIC_URL, "eventTypes": ["member.created"]})),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
});

both!(another_spots_endpoint_is_not_found, |app| {
    let e = create(&app, json!({"url": PUBLIC_URL, "eventTypes": ["member.created"]})).await;
    let id = e["id"].as_str().unwrap();
    let (_, other) = app.other_spot().await;
    let call = |m: reqwest::Method, path: String, body: Option<Value>| {
        let other = other.clone();
        let app = &app;
        async move { app.send(m, &path, Some(&other), body).await }
    };
    let r = call(reqwest::Method::GET, format!("/v1/webhooks/{id}"), None).await;
    assert_eq!(assert_ms_error(&r, 404), "Webhook not found");
    let r = call(reqwest::Method::PUT, format!("/v1/webhooks/{id}"), Some(json!({"enabled": false}))).await;
    assert_eq!(assert_ms_error(&r, 404), "Webhook not found");
    let r = call(reqwest::Method::POST, format!("/v1/webhooks/{id}~rotateSecret"), None).await;
    assert_eq!(assert_ms_error(&r, 404), "Webhook not found");
    let r = call(reqwest::Method::DELETE, format!("/v1/webhooks/{id}"), None).await;
    assert_eq!(assert_ms_error(&r, 404), "Webhook not found");
    let r = call(reqwest::Method::GET, "/v1/webhooks".into(), None).await;
    assert_eq!(r.body["total"], 0, "{}", r.text);
    // Untouched.
    assert_eq!(app.get(&format!("/v1/webhooks/{id}")).await.body, e);
});

both!(rotating_a_secret_keeps_the_old_one_for_a_day, |app| {
    let e = create(&app, json!({"url": PUBLIC_URL, "eventTypes": ["member.created"]})).await;
    let id = e["id"].as_str().unwrap();
    let r = app.send(reqwest::Method::POST, &format!("/v1/webhooks/{id}~rotateSecret"), Some(&app.key), None).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_ne!(r.body["secret"], e["secret"]);
    assert!(r.body["secret"].as_str().unwrap().starts_with("whsec_"));
    let day = iso_ms(&r.body["previousSecretExpiresAt"]) - iso_ms(&r.body["updatedAt"]);
    assert_eq!(day, 24 * 3600 * 1000);
    let given = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    let r = app.post(&format!("/v1/webhooks/{id}~rotateSecret"), json!({"secret": given})).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["secret"], given);
    assert_eq!(app.get(&format!("/v1/webhooks/{id}")).await.body["secret"], given);
});

/// The spot's outbox rows, newest first.
async fn outbox_rows(app: &TestApp) -> Vec<openspot::store::outbox::OutboxRow> {
    let f = openspot::store::outbox::OutboxFilter { spot_id: Some(app.spot_id), ..Default::default() };
    let mut c = app.db.conn().await.unwrap();
    openspot::store::outbox::list(c.ex(), &f, 1000).await.unwrap()
}

// The receiver never answers and attempts outlast the test: rows are queued (and claimed),
// nothing is logged.
both_with!(test_sends_redeliveries_and_recovery_are_queued_per_endpoint, |c| { hanging(c) }, |app| {
    let rx = Receiver::start(Reply::Hang).await;
    let e = create(&app, json!({"url": rx.url(), "eventTypes": ["group.member.added", "member.created"]})).await;
    let id = e["id"].as_str().unwrap();
    let other = create(&app, json!({"url": rx.url(), "eventTypes": ["member.created"]})).await;

    // Default type: the endpoint's first; the body may be omitted.
    let r = app.send(reqwest::Method::POST, &format!("/v1/webhooks/{id}~test"), Some(&app.key), None).await;
    assert_eq!(r.status, 202, "{}", r.text);
    assert_eq!(r.body["eventType"], "group.member.added");
    let event_id = r.body["eventId"].as_str().unwrap().to_string();
    let rows = outbox_rows(&app).await;
    assert_eq!(rows.len(), 1, "for this endpoint only");
    let row = &rows[0];
    assert_eq!(row.event_id.to_string(), event_id);
    assert_eq!(row.target_id.map(|t| t.to_string()).as_deref(), Some(id));
    assert_eq!(row.state.as_str(), "Pending");
    assert_eq!(row.event_type, "group.member.added");
    let body: Value = serde_json::from_str(&row.payload).unwrap();
    assert_eq!(body["type"], "group.member.added");
    assert_eq!(body["test"], true);
    assert_eq!(body["spot"], json!({"id": app.spot_id, "name": "test spot"}));
    assert_eq!(body["member"]["id"], "00000000-0000-0000-0000-000000000000");
    assert_eq!(body["member"]["email"], "jane.doe@example.com");
    assert_eq!(body["group"]["name"], "Sample group");
    assert_eq!(body["occurredAt"], body["occurredAtMs"].as_i64().unwrap() / 1000);

    let r =
        app.post(&format!("/v1/webhooks/{id}~test"), json!({"eventType": "course.participant.status.updated"})).await;
    assert_eq!(r.status, 202, "{}", r.text);
    assert_eq!(r.body["eventType"], "course.participant.status.updated");
    let r = app.post(&format!("/v1/webhooks/{id}~test"), json!({"eventType": "live.updated"})).await;
    assert!(assert_ms_error(&r, 400).starts_with("eventType"), "{}", r.text);

    // Nothing was attempted yet: the log is empty, and filters are checked.
    let log = app.get(&format!("/v1/webhooks/{id}/deliveries")).await;
    assert_eq!(log.status, 200, "{}", log.text);
    assert_eq!(log.body, json!({"items": [], "total": 0}));
    let log =
        app.get(&format!("/v1/webhooks/{id}/deliveries?eventId[eq]={event_id}&eventType[eq]=member.created")).await;
    assert_eq!(log.body, json!({"items": [], "total": 0}), "{}", log.text);
    let bad = app.get(&format!("/v1/webhooks/{id}/deliveries?eventType[eq]=nope")).await;
    assert!(assert_ms_error(&bad, 400).contains("eventType"), "{}", bad.text);
    let bad = app.get(&format!("/v1/webhooks/{id}/deliveries?status[eq]=200")).await;
    assert_ms_error(&bad, 400);

    // Redelivery: the endpoint's own event; another endpoint's or an unknown one is 404.
    let r = app
        .send(
            reqwest::Method::POST,
            &format!("/v1/webhooks/{id}/deliveries/{event_id}~redeliver"),
            Some(&app.key),
            None,
        )
        .await;
    assert_eq!(r.status, 202, "{}", r.text);
    assert_eq!(r.body, json!({"eventId": event_id}));
    let other_id = other["id"].as_str().unwrap();
    let r = app.post(&format!("/v1/webhooks/{other_id}/deliveries/{event_id}~redeliver"), json!({})).await;
    assert_eq!(assert_ms_error(&r, 404), "Webhook event not found");
    let r = app.post(&format!("/v1/webhooks/{id}/deliveries/{}~redeliver", uuid::Uuid::new_v4()), json!({})).await;
    assert_eq!(assert_ms_error(&r, 404), "Webhook event not found");
    let r = app.post(&format!("/v1/webhooks/{id}/deliveries/{event_id}~resend"), json!({})).await;
    assert_eq!(assert_ms_error(&r, 404), format!("Cannot POST /v1/webhooks/{id}/deliveries/{event_id}~resend"));

    // Recovery: `since` is required, a time, not in the future.
    let now_s = time::OffsetDateTime::now_utc().unix_timestamp();
    for since in [json!(null), json!("yesterday"), json!(-5), json!(true), json!(now_s + 3600)] {
        let r = app.post(&format!("/v1/webhooks/{id}~recover"), json!({ "since": since })).await;
        assert!(assert_ms_error(&r, 400).starts_with("since"), "{since}: {}", r.text);
    }
    let r = app.send(reqwest::Method::POST, &format!("/v1/webhooks/{id}~recover"), Some(&app.key), None).await;
    assert!(assert_ms_error(&r, 400).starts_with("body"), "{}", r.text);
    for since in [json!(now_s - 60), json!((now_s - 60) * 1000), json!("2025-01-01T00:00:00Z")] {
        let r = app.post(&format!("/v1/webhooks/{id}~recover"), json!({ "since": since })).await;
        assert_eq!(r.status, 202, "{since}: {}", r.text);
        assert_eq!(r.body, json!({"requeued": 0}), "nothing failed");
    }

    // A disabled endpoint refuses all three; its held row is paused, and resumed on enable.
    let r = app.put(&format!("/v1/webhooks/{id}"), json!({"enabled": false})).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(outbox_rows(&app).await.iter().all(|r| r.state.as_str() == "Paused"));
    for (path, body) in [
        (format!("/v1/webhooks/{id}~test"), json!({})),
        (format!("/v1/webhooks/{id}/deliveries/{event_id}~redeliver"), json!({})),
        (format!("/v1/webhooks/{id}~recover"), json!({"since": 0})),
    ] {
        let r = app.post(&path, body).await;
        assert!(assert_ms_error(&r, 409).contains("disabled"), "{path}: {}", r.text);
    }
    let r = app.put(&format!("/v1/webhooks/{id}"), json!({"enabled": true})).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(outbox_rows(&app).await.iter().all(|r| r.state.as_str() == "Pending"));

    // Deleting the endpoint deletes its rows.
    assert_eq!(app.delete(&format!("/v1/webhooks/{id}")).await.status, 204);
    assert!(outbox_rows(&app).await.is_empty());
    let r = app.get(&format!("/v1/webhooks/{id}/deliveries")).await;
    assert_eq!(assert_ms_error(&r, 404), "Webhook not found");
});

// ---- Deliveries to a real receiver on loopback ------------------------------------

/// Loopback targets allowed, a short retry schedule and attempt timeout.
fn fast(c: &mut openspot::Config) {
    c.allow_private_targets = true;
    c.outbox.retry_schedule = vec![Duration::from_millis(50), Duration::from_millis(100)];
    c.outbox.attempt_timeout = Duration::from_secs(1);
    c.outbox.lease = Duration::from_secs(3);
}

const WAIT: Duration = Duration::from_secs(10);

/// Loopback targets allowed; an attempt takes up to 30 s (longer than any test).
fn hanging(c: &mut openspot::Config) {
    c.allow_private_targets = true;
    c.outbox.attempt_timeout = Duration::from_secs(30);
    c.outbox.lease = Duration::from_secs(40);
}

/// Checks one delivery's headers and signature against `secrets` (every one must have
/// signed it) with openspot's verifier, and with the `standardwebhooks` package when
/// a Python venv is configured. Returns the body.
fn check_signed(req: &Captured, secrets: &[&str]) -> Value {
    assert_eq!(req.method, "POST");
    assert_eq!(req.path_and_query, "/hook");
    assert_eq!(req.header("content-type"), Some("application/json"));
    assert!(req.header("user-agent").unwrap_or_default().starts_with("openspot/"), "{:?}", req.headers);
    let id = req.header("webhook-id").expect("webhook-id");
    let ts = req.header("webhook-timestamp").expect("webhook-timestamp");
    let sig = req.header("webhook-signature").expect("webhook-signature");
    assert_eq!(req.header("svix-id"), Some(id));
    assert_eq!(req.header("svix-timestamp"), Some(ts));
    assert_eq!(req.header("svix-signature"), Some(sig));
    assert!(uuid::Uuid::parse_str(id).is_ok(), "{id}");
    let ts: i64 = ts.parse().unwrap();
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    assert!((now - ts).abs() < 60, "timestamp {ts} vs now {now}");
    assert_eq!(sig.split(' ').count(), secrets.len(), "{sig}");
    for secret in secrets {
        let key = openspot::domain::webhooks::parse_secret("secret", secret).unwrap();
        assert!(openspot::domain::webhooks::verify(&key, id, ts, &req.body, sig), "{secret} did not sign {sig}");
        if crate::python::python().is_some() {
            let n = crate::python::verify_standard_webhooks(secret, std::slice::from_ref(req)).unwrap();
            assert_eq!(n, 1);
        }
    }
    serde_json::from_slice(&req.body).unwrap()
}

/// The endpoint's delivery log, once it has `n` attempts (bounded wait).
async fn deliveries(app: &TestApp, id: &str, n: usize) -> Vec<Value> {
    for _ in 0..200 {
        let r = app.get(&format!("/v1/webhooks/{id}/deliveries?limit=100")).await;
        assert_eq!(r.status, 200, "{}", r.text);
        let items = r.body["items"].as_array().unwrap().clone();
        if items.len() >= n {
            assert_eq!(r.body["total"], items.len());
            return items;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{id}: fewer than {n} attempts logged");
}

/// Waits until the endpoint's `enabled` is `want`, and returns it.
async fn endpoint_when(app: &TestApp, id: &str, want: bool) -> Value {
    for _ in 0..200 {
        let e = app.get(&format!("/v1/webhooks/{id}")).await.body;
        if e["enabled"] == want {
            return e;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{id}: enabled never became {want}");
}

both_with!(a_test_send_arrives_signed_and_is_logged, |c| { fast(c) }, |app| {
    let rx = Receiver::start(Reply::Status(200)).await;
    let e = create(&app, json!({"url": rx.url(), "eventTypes": ["member.created"]})).await;
    let (id, secret) = (e["id"].as_str().unwrap(), e["secret"].as_str().unwrap());
    let r = app.post(&format!("/v1/webhooks/{id}~test"), json!({})).await;
    assert_eq!(r.status, 202, "{}", r.text);
    let got = rx.wait_for(1, WAIT).await;
    assert_eq!(got.len(), 1);
    let body = check_signed(&got[0], &[secret]);
    assert_eq!(got[0].header("webhook-id"), r.body["eventId"].as_str());
    assert_eq!(body["type"], "member.created");
    assert_eq!(body["test"], true);
    assert_eq!(body["member"]["email"], "jane.doe@example.com");
    assert_eq!(body["spot"]["id"], json!(app.spot_id));

    let log = deliveries(&app, id, 1).await;
    assert_eq!(log[0]["eventId"], r.body["eventId"]);
    assert_eq!(log[0]["eventType"], "member.created");
    assert_eq!(log[0]["attempt"], 1);
    assert_eq!(log[0]["statusCode"], 200);
    assert_eq!(log[0]["error"], Value::Null);
    assert_eq!(log[0]["responseBody"], "status 200");
    assert!(log[0]["durationMs"].as_i64().unwrap() >= 0);
    assert!(iso_ms(&log[0]["createdAt"]) > 0);

    // A redelivery sends the same event id (and body) again.
    let r = app
        .post(&format!("/v1/webhooks/{id}/deliveries/{}~redeliver", log[0]["eventId"].as_str().unwrap()), json!({}))
        .await;
    assert_eq!(r.status, 202, "{}", r.text);
    let got = rx.wait_for(2, WAIT).await;
    assert_eq!(got.len(), 2);
    check_signed(&got[1], &[secret]);
    assert_eq!(got[1].header("webhook-id"), got[0].header("webhook-id"));
    assert_eq!(got[1].body, got[0].body);
    let log = deliveries(&app, id, 2).await;
    assert_eq!(log[1]["attempt"], 2);
});

both_with!(failures_are_retried_with_the_same_event_id, |c| { fast(c) }, |app| {
    let rx = Receiver::start(Reply::Sequence(vec![500, 503, 200])).await;
    let e = create(&app, json!({"url": rx.url(), "eventTypes": ["group.member.added"]})).await;
    let (id, secret) = (e["id"].as_str().unwrap(), e["secret"].as_str().unwrap());
    let r = app.post(&format!("/v1/webhooks/{id}~test"), json!({})).await;
    assert_eq!(r.status, 202, "{}", r.text);
    let got = rx.wait_for(3, WAIT).await;
    assert_eq!(got.len(), 3);
    for req in &got {
        check_signed(req, &[secret]);
        assert_eq!(req.header("webhook-id"), r.body["eventId"].as_str());
        assert_eq!(req.body, got[0].body);
    }
    let log = deliveries(&app, id, 3).await;
    let codes: Vec<i64> = log.iter().map(|d| d["statusCode"].as_i64().unwrap()).collect();
    assert_eq!(codes, vec![500, 503, 200]);
    let attempts: Vec<i64> = log.iter().map(|d| d["attempt"].as_i64().unwrap()).collect();
    assert_eq!(attempts, vec![1, 2, 3]);
    assert_eq!(log[1]["responseBody"], "status 503");
    assert_eq!(endpoint_when(&app, id, true).await["disabledReason"], Value::Null);
    // Filters of the log.
    let one =
        app.get(&format!("/v1/webhooks/{id}/deliveries?eventId[eq]={}", r.body["eventId"].as_str().unwrap())).await;
    assert_eq!(one.body["total"], 3);
    let none = app.get(&format!("/v1/webhooks/{id}/deliveries?eventType[eq]=member.created")).await;
    assert_eq!(none.body, json!({"items": [], "total": 0}));
    let page = app.get(&format!("/v1/webhooks/{id}/deliveries?page=2&limit=2")).await;
    assert_eq!(page.body["total"], 3);
    assert_eq!(page.body["items"][0]["attempt"], 3);
});

both_with!(gone_disables_at_once_and_enabling_resumes, |c| { fast(c) }, |app| {
    let rx = Receiver::start(Reply::Status(410)).await;
    let e = create(&app, json!({"url": rx.url(), "eventTypes": ["member.created"]})).await;
    let id = e["id"].as_str().unwrap();
    let first = app.post(&format!("/v1/webhooks/{id}~test"), json!({})).await;
    assert_eq!(first.status, 202, "{}", first.text);
    let disabled = endpoint_when(&app, id, false).await;
    assert!(disabled["disabledReason"].as_str().unwrap().contains("410"), "{disabled}");
    assert_eq!(rx.captured().len(), 1, "no retry after 410");
    let r = app.post(&format!("/v1/webhooks/{id}~test"), json!({})).await;
    assert_eq!(assert_ms_error(&r, 409), "the webhook endpoint is disabled: enable it first");

    // An event of the disabled endpoint (the invite's member.created) is written, and held.
    app.invite("late@example.com").await;
    let held: Vec<String> = outbox_rows(&app).await.iter().map(|r| r.state.as_str().to_string()).collect();
    assert_eq!(held, vec!["Paused", "Paused"]);

    // Re-enabled, both go out: the test event again (same id) and the held one.
    rx.set_reply(Reply::Status(204));
    let r = app.put(&format!("/v1/webhooks/{id}"), json!({"enabled": true})).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["disabledReason"], Value::Null);
    let got = rx.wait_for(3, WAIT).await;
    assert_eq!(got.len(), 3);
    let ids: Vec<&str> = got[1..].iter().map(|g| g.header("webhook-id").unwrap()).collect();
    assert!(ids.contains(&first.body["eventId"].as_str().unwrap()), "{ids:?}");
    let types: Vec<String> = got[1..].iter().map(|g| g.json()["type"].as_str().unwrap().to_string()).collect();
    assert!(types.contains(&"member.created".to_string()), "{types:?}");
    let log = deliveries(&app, id, 3).await;
    let codes: Vec<i64> = log.iter().map(|d| d["statusCode"].as_i64().unwrap()).collect();
    assert_eq!(codes, vec![410, 204, 204]);
});

both_with!(exhausted_retries_disable_and_recover_resends, |c| { fast(c) }, |app| {
    let rx = Receiver::start(Reply::Status(503)).await;
    let e = create(&app, json!({"url": rx.url(), "eventTypes": ["member.created"]})).await;
    let id = e["id"].as_str().unwrap();
    let since = time::OffsetDateTime::now_utc().unix_timestamp() - 5;
    let r = app.post(&format!("/v1/webhooks/{id}~test"), json!({})).await;
    assert_eq!(r.status, 202, "{}", r.text);
    let disabled = endpoint_when(&app, id, false).await;
    assert_eq!(disabled["disabledReason"], "3 attempts failed in a row; last: HTTP 503", "{disabled}");
    assert_eq!(rx.captured().len(), 3, "one attempt and two retries");

    rx.set_reply(Reply::Status(200));
    let r = app.put(&format!("/v1/webhooks/{id}"), json!({"enabled": true})).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let r = app.post(&format!("/v1/webhooks/{id}~recover"), json!({ "since": since })).await;
    assert_eq!(r.status, 202, "{}", r.text);
    assert_eq!(r.body, json!({"requeued": 1}));
    let got = rx.wait_for(4, WAIT).await;
    assert_eq!(got.len(), 4);
    assert_eq!(got[3].header("webhook-id"), got[0].header("webhook-id"));
    let log = deliveries(&app, id, 4).await;
    assert_eq!(log[3]["statusCode"], 200);
    assert_eq!(log[3]["attempt"], 4);
});

both_with!(a_redirect_is_a_failure_and_is_not_followed, |c| { fast(c) }, |app| {
    let rx = Receiver::start(Reply::Redirect).await;
    let e = create(&app, json!({"url": rx.url(), "eventTypes": ["member.created"]})).await;
    let id = e["id"].as_str().unwrap();
    assert_eq!(app.post(&format!("/v1/webhooks/{id}~test"), json!({})).await.status, 202);
    let log = deliveries(&app, id, 1).await;
    assert_eq!(log[0]["statusCode"], 302);
    assert!(log[0]["error"].as_str().unwrap().contains("redirect"), "{}", log[0]);
    endpoint_when(&app, id, false).await;
    let got = rx.captured();
    assert!(got.iter().all(|r| r.path_and_query == "/hook"), "the Location was fetched: {got:?}");
});

both_with!(a_rotated_secret_signs_beside_the_new_one, |c| { fast(c) }, |app| {
    let rx = Receiver::start(Reply::Status(200)).await;
    let e = create(&app, json!({"url": rx.url(), "eventTypes": ["member.updated"]})).await;
    let (id, old) = (e["id"].as_str().unwrap(), e["secret"].as_str().unwrap());
    let r = app.post(&format!("/v1/webhooks/{id}~rotateSecret"), json!({})).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let new = r.body["secret"].as_str().unwrap();
    assert_eq!(app.post(&format!("/v1/webhooks/{id}~test"), json!({})).await.status, 202);
    let got = rx.wait_for(1, WAIT).await;
    // Both signatures, the new one first; each secret verifies the delivery.
    check_signed(&got[0], &[new, old]);
    let sig = got[0].header("webhook-signature").unwrap();
    let (ts, msg) =
        (got[0].header("webhook-timestamp").unwrap().parse().unwrap(), got[0].header("webhook-id").unwrap());
    let new_key = openspot::domain::webhooks::parse_secret("s", new).unwrap();
    assert_eq!(
        sig.split(' ').next().unwrap(),
        format!("v1,{}", openspot::domain::webhooks::sign(&new_key, msg, ts, &got[0].body))
    );
});

both_with!(a_private_target_is_refused_when_not_allowed, |c| { c.allow_private_targets = false }, |app| {
    let rx = Receiver::start(Reply::Status(200)).await;
    let r = app.post("/v1/webhooks", json!({"url": rx.url(), "eventTypes": ["member.created"]})).await;
    let msg = assert_ms_error(&r, 400);
    assert!(msg.starts_with("url") && msg.contains("private"), "{msg}");
    assert!(!msg.contains(&rx.url()), "the URL is not echoed: {msg}");
});

both_with!(emit_queues_payloads_for_listening_endpoints_only, |c| { fast(c) }, |app| {
    use openspot::domain::events::{emit, Event};
    use openspot::domain::vocab::GroupRole;
    use openspot::domain::{courses, members};

    let member_id: openspot::domain::ids::MemberId = app.invite("ann@example.com").await.parse().unwrap();
    let r = app.put(&format!("/v1/spotMembers/{member_id}"), json!({"firstname": "Ann", "lastname": "Lee"})).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let member = members::get_member(&app.db, app.spot_id, member_id).await.unwrap();

    // No endpoint: nothing is written.
    let mut tx = app.db.begin().await.unwrap();
    emit(&mut tx, app.spot_id, Event::MemberCreated(std::slice::from_ref(&member))).await.unwrap();
    assert!(!tx.wrote_outbox());
    tx.commit().await.unwrap();
    assert!(outbox_rows(&app).await.is_empty());

    // The group and the course participant exist before any endpoint (their own events
    // then go nowhere).
    let group: openspot::domain::ids::GroupId =
        app.post("/v1/groups", json!({"name": "Readers"})).await.body["id"].as_str().unwrap().parse().unwrap();
    let course: openspot::domain::ids::CourseId =
        app.post("/v1/courses", json!({"title": "Rust 101"})).await.body["id"].as_str().unwrap().parse().unwrap();
    let invited = app.post(&format!("/v1/courses/{course}/participants"), json!({"spotMemberId": member_id})).await;
    assert!(invited.status == 201 || invited.status == 200, "{}", invited.text);
    let participant_id = invited.body["id"].as_str().unwrap().parse().unwrap();
    let participant = courses::get_participant(&app.db, app.spot_id, course, participant_id).await.unwrap();
    // One endpoint for member.created, one for groups and courses, one disabled.
    let rx = Receiver::start(Reply::Status(200)).await;
    let created = create(&app, json!({"url": rx.url(), "eventTypes": ["member.created"]})).await;
    let others = create(
        &app,
        json!({"url": rx.url(), "eventTypes": ["group.member.added", "course.participant.created",
               "course.participant.status.updated", "member.updated"]}),
    )
    .await;
    let off = create(&app, json!({"url": rx.url(), "eventTypes": ["member.created"], "enabled": false})).await;

    let before = outbox_rows(&app).await.len();
    let mut tx = app.db.begin().await.unwrap();
    emit(&mut tx, app.spot_id, Event::MemberCreated(std::slice::from_ref(&member))).await.unwrap();
    emit(&mut tx, app.spot_id, Event::MemberUpdated(&[])).await.unwrap();
    emit(&mut tx, app.spot_id, Event::GroupMembersAdded { group_id: group, members: &[(member_id, GroupRole::Admin)] })
        .await
        .unwrap();
    emit(&mut tx, app.spot_id, Event::ParticipantsCreated { course_id: course, member_ids: &[member_id] })
        .await
        .unwrap();
    emit(
        &mut tx,
        app.spot_id,
        Event::ParticipantStatusUpdated { course_id: course, participants: std::slice::from_ref(&participant) },
    )
    .await
    .unwrap();
    // Nobody listens to group.member.removed.
    emit(
        &mut tx,
        app.spot_id,
        Event::GroupMembersRemoved { group_id: group, members: &[(member_id, GroupRole::Member)] },
    )
    .await
    .unwrap();
    assert!(tx.wrote_outbox());
    tx.commit().await.unwrap();

    let rows = outbox_rows(&app).await;
    let new: Vec<_> = rows.iter().take(rows.len() - before).collect();
    assert_eq!(new.len(), 5, "member.created ×2 (one Paused), group, participant created, status updated");
    let off_id = off["id"].as_str().unwrap();
    // The disabled endpoint's row is held (the others may be delivered already).
    let held: Vec<_> = new.iter().filter(|r| r.target_id.unwrap().to_string() == off_id).collect();
    assert_eq!(held.len(), 1);
    assert_eq!(held[0].state.as_str(), "Paused");
    let created_rows: Vec<_> = new.iter().filter(|r| r.event_type == "member.created").collect();
    assert_eq!(created_rows.len(), 2);
    assert_eq!(created_rows[0].event_id, created_rows[1].event_id, "one event id for every endpoint");
    assert_eq!(created_rows[0].payload, created_rows[1].payload);

    // Four deliveries arrive (the disabled endpoint's waits); each is signed.
    let got = rx.wait_for(4, WAIT).await;
    assert_eq!(got.len(), 4);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(rx.captured().len(), 4, "nothing for the disabled endpoint");
    let secret_of = |id: &str| {
        if id == created["id"].as_str().unwrap() {
            created["secret"].as_str().unwrap().to_string()
        } else {
            others["secret"].as_str().unwrap().to_string()
        }
    };
    let mut by_type = std::collections::BTreeMap::new();
    for req in &got {
        let row = new
            .iter()
            .find(|r| {
                r.event_id.to_string() == req.header("webhook-id").unwrap()
                    && r.target_id.unwrap().to_string() != off_id
            })
            .unwrap();
        let body = check_signed(req, &[&secret_of(&row.target_id.unwrap().to_string())]);
        assert_eq!(body["test"], false);
        assert_eq!(body["spot"], json!({"id": app.spot_id, "name": "test spot"}));
        assert_eq!(body["occurredAt"], body["occurredAtMs"].as_i64().unwrap() / 1000);
        assert_eq!(body["member"]["id"], json!(member_id));
        assert_eq!(body["member"]["email"], "ann@example.com");
        assert_eq!(body["member"]["firstname"], "Ann");
        assert_eq!(body["member"]["lastname"], "Lee");
        assert_eq!(body["member"]["status"], "Invited");
        assert_eq!(body["member"]["title"], Value::Null);
        assert_eq!(body["member"]["updatedAt"], member.updated_at);
        by_type.insert(body["type"].as_str().unwrap().to_string(), body);
    }
    assert_eq!(
        by_type.keys().cloned().collect::<Vec<_>>(),
        ["course.participant.created", "course.participant.status.updated", "group.member.added", "member.created"]
    );
    let g = &by_type["group.member.added"];
    assert_eq!(g["group"], json!({"id": group, "name": "Readers"}));
    assert_eq!(g["groupRole"], "Admin");
    let p = &by_type["course.participant.created"];
    assert_eq!(p["course"], json!({"id": course, "name": "Rust 101"}));
    assert_eq!(p["courseParticipant"]["id"], invited.body["id"]);
    assert_eq!(p["courseParticipant"]["status"], "Invited");
    assert_eq!(p["courseParticipant"]["completionRate"], 0);
    assert!(iso_ms(&p["courseParticipant"]["invitedAt"]) > 0);
    assert_eq!(p["courseParticipant"]["startedAt"], Value::Null);
    assert_eq!(by_type["course.participant.status.updated"]["courseParticipant"], p["courseParticipant"]);
    assert_eq!(by_type["member.created"].as_object().unwrap().len(), 6, "{}", by_type["member.created"]);
});

// A burst to an endpoint that never answers: with a cap of 2 attempts in flight per
// endpoint, exactly two requests reach it, although one claim takes the whole burst.
both_with!(
    a_burst_keeps_to_the_per_endpoint_cap,
    |c| {
        hanging(c);
        c.outbox.max_in_flight_per_target = 2;
    },
    |app| {
        let rx = Receiver::start(Reply::Hang).await;
        create(&app, json!({"url": rx.url(), "eventTypes": ["member.created"]})).await;
        let emails: Vec<String> = (0..10).map(|i| format!("burst{i}@x.io")).collect();
        let r = app.post("/v1/spotMembers~bulkInvite", json!({"emails": emails})).await;
        assert_eq!(r.status, 201, "{}", r.text);
        let got = rx.wait_for(2, WAIT).await;
        assert_eq!(got.len(), 2, "two attempts started");
        // Room for more requests to arrive if nothing held them back.
        tokio::time::sleep(Duration::from_millis(1_500)).await;
        assert_eq!(rx.captured().len(), 2, "requests in flight to the endpoint");
        let pending = outbox_rows(&app).await.iter().filter(|r| r.claim_token.is_none()).count();
        assert_eq!(pending, 8, "the rest wait unclaimed, due for the next slot");
    }
);

// A member invite writes its outbox rows together with the spot's member count (one
// round trip): each endpoint listening to `member.created` gets one row per new member,
// sharing the event id; a member found again queues nothing and is not counted twice.
both_with!(an_invite_queues_one_row_per_listener_and_counts_the_member_once, |c| { hanging(c) }, |app| {
    let rx = Receiver::start(Reply::Hang).await;
    let a = create(&app, json!({"url": rx.url(), "eventTypes": ["member.created"]})).await;
    let b = create(&app, json!({"url": rx.url(), "eventTypes": ["member.created", "member.updated"]})).await;
    create(&app, json!({"url": rx.url(), "eventTypes": ["group.member.added"]})).await;
    let before = member_total(&app).await;
    for email in ["one@x.io", "two@x.io", "one@x.io"] {
        let r = app.post("/v1/spotMembers", json!({"email": email})).await;
        assert!(r.status == 200 || r.status == 201, "{}", r.text);
    }
    assert_eq!(member_total(&app).await, before + 2);
    let rows: Vec<_> = outbox_rows(&app).await.into_iter().filter(|r| r.event_type == "member.created").collect();
    assert_eq!(rows.len(), 4, "two members × two listening endpoints");
    let mut by_event: std::collections::HashMap<String, Vec<String>> = Default::default();
    for r in &rows {
        by_event.entry(r.event_id.to_string()).or_default().push(r.target_id.unwrap().to_string());
    }
    assert_eq!(by_event.len(), 2, "one event per new member");
    for targets in by_event.values_mut() {
        targets.sort();
        let mut want = vec![a["id"].as_str().unwrap().to_string(), b["id"].as_str().unwrap().to_string()];
        want.sort();
        assert_eq!(*targets, want);
    }
    let emails: std::collections::HashSet<String> = rows
        .iter()
        .map(|r| serde_json::from_str::<Value>(&r.payload).unwrap()["member"]["email"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(emails, ["one@x.io", "two@x.io"].into_iter().map(String::from).collect());
});

async fn member_total(app: &TestApp) -> i64 {
    let r = app.get("/v1/spotMembers?limit=1").await;
    r.body["total"].as_i64().unwrap_or_else(|| panic!("{}", r.text))
}

//! `/v1/webhooks` (contract §4, §5): endpoint management, validation, isolation, and
//! signed deliveries to a real receiver on loopback.

use serde_json::{json, Value};

use crate::both;
use crate::common::{assert_ms_error, TestApp};

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

both!(test_sends_redeliveries_and_recovery_are_queued_per_endpoint, |app| {
    let e = create(&app, json!({"url": PUBLIC_URL, "eventTypes": ["group.member.added", "member.created"]})).await;
    let id = e["id"].as_str().unwrap();
    let other = create(&app, json!({"url": PUBLIC_URL, "eventTypes": ["member.created"]})).await;

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

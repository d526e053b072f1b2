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

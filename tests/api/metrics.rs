//! `GET /metrics`: request durations by route template (never by path, so no tenant
//! data in labels), 429s, pool gauges, import rows and smart-group computations, and the
//! optional bearer token. The registry is process-wide and tests run in parallel, so
//! counters are compared as "grew by at least".

use reqwest::multipart::{Form, Part};
use serde_json::json;

use crate::both;
use crate::common::{wait_until_ready, TestApp};

/// The scrape's text (200 asserted).
async fn scrape(app: &TestApp) -> String {
    let r = app.client.get(format!("{}/metrics", app.base)).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let kind = r.headers()["content-type"].to_str().unwrap().to_string();
    assert!(kind.starts_with("application/openmetrics-text"), "{kind}");
    r.text().await.unwrap()
}

/// The value of the first series that starts with `prefix` (0 when absent).
fn value(text: &str, prefix: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

both!(requests_are_timed_by_route_and_counted, |app| {
    let before = scrape(&app).await;
    let route_count = "http_server_request_duration_seconds_count{http_request_method=\"GET\",http_route=\"/v1/groups/{groupId}\",http_response_status_code=\"404\"}";
    let ghost = uuid::Uuid::new_v4();
    for _ in 0..3 {
        assert_eq!(app.get(&format!("/v1/groups/{ghost}")).await.status, 404);
    }
    let secret_path = format!("/no-such-page-{ghost}");
    assert_eq!(app.get(&secret_path).await.status, 404);
    // A method HTTP does not define is one series for all of them, not one per name.
    let invented = reqwest::Method::from_bytes(b"BREWCOFFEE").unwrap();
    let r = app.client.request(invented, format!("{}/v1/groups", app.base)).send().await.unwrap();
    assert_eq!(r.status(), 405);
    let after = scrape(&app).await;
    assert!(after.contains("http_request_method=\"_OTHER\""), "{after}");
    assert!(!after.contains("BREWCOFFEE"), "a client's method name never reaches a label");
    assert!(value(&after, route_count) >= value(&before, route_count) + 3.0, "{after}");
    assert!(after.contains("http_route=\"unmatched\""), "unknown paths share one series");
    assert!(!after.contains(&ghost.to_string()), "no id or path reaches a label");
    assert!(after.contains("db_client_connection_count{state=\"Idle\"}"), "{after}");
    assert!(after.contains("# TYPE openspot_smart_group_computation_duration_seconds histogram"));
});

both!(refusals_imports_and_computations_are_counted, |app| {
    let before = scrape(&app).await;
    // 429s.
    let (spot, key) = app.other_spot().await;
    openspot::domain::spots::set_limits(&app.db, spot, Some(2), None).await.unwrap();
    let mut refused = 0;
    for _ in 0..5 {
        let r =
            app.client.get(format!("{}/v1/spotMembers", app.base)).header("authorization", &key).send().await.unwrap();
        refused += u32::from(r.status() == 429);
    }
    assert!(refused >= 1);
    // An import of two good rows and one bad.
    let csv = b"email,firstname\na@x.io,Ada\nnot-an-email,Bo\nb@x.io,Bea\n".to_vec();
    let form = Form::new().part("file", Part::bytes(csv).file_name("m.csv"));
    let r = crate::ms_import::upload(&app, form).await;
    assert_eq!(r.status, 200, "{}", r.text);
    // A smart-group computation.
    let g = app
        .post(
            "/v1/groups",
            json!({"name": "Ada", "type": "Smart", "rules": {"operator": "AND", "conditions": [
                {"operator": "AND", "triggers": [{"field": "firstname", "op": "eq", "value": "Ada"}]}]}}),
        )
        .await;
    assert_eq!(g.status, 201, "{}", g.text);
    wait_until_ready(&app, g.body["id"].as_str().unwrap()).await;
    let after = scrape(&app).await;
    let grew = |series: &str, by: f64| {
        assert!(value(&after, series) >= value(&before, series) + by, "{series} did not grow by {by}:\n{after}");
    };
    grew("openspot_rate_limited_requests_total", f64::from(refused));
    grew("openspot_import_rows_total{outcome=\"Created\"}", 2.0);
    grew("openspot_import_rows_total{outcome=\"Failed\"}", 1.0);
    grew("openspot_smart_group_computation_duration_seconds_count", 1.0);
});

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_metrics_token_is_required_when_configured() {
    use sha2::Digest;
    let token = "scrape-me-7f3a";
    let hash: [u8; 32] = sha2::Sha256::digest(token.as_bytes()).into();
    let app =
        TestApp::spawn_with(openspot::store::Backend::Sqlite, |c| c.metrics_token_hash = Some(hash)).await.unwrap();
    let url = format!("{}/metrics", app.base);
    assert_eq!(app.client.get(&url).send().await.unwrap().status(), 401);
    let wrong = app.client.get(&url).header("authorization", "Bearer scrape-me-7f3b").send().await.unwrap();
    assert_eq!(wrong.status(), 401);
    let spot_key = app.client.get(&url).header("authorization", &app.key).send().await.unwrap();
    assert_eq!(spot_key.status(), 401, "a spot's API key does not open the metrics");
    let right = app.client.get(&url).header("authorization", format!("Bearer {token}")).send().await.unwrap();
    assert_eq!(right.status(), 200);
    assert!(right.text().await.unwrap().ends_with("# EOF\n"));
}

crate::both_with!(outbox_backlog_and_deliveries_are_shown, |c| { c.allow_private_targets = true }, |app| {
    use crate::receiver::{Receiver, Reply};
    let before = scrape(&app).await;
    let rx = Receiver::start(Reply::Status(200)).await;
    let hook = app.post("/v1/webhooks", json!({"url": rx.url(), "eventTypes": ["member.created"]})).await;
    assert_eq!(hook.status, 201, "{}", hook.text);
    app.invite("metrics@x.io").await;
    assert_eq!(rx.wait_for(1, std::time::Duration::from_secs(10)).await.len(), 1);
    let series = "openspot_outbox_deliveries_total{outcome=\"Delivered\"}";
    let mut after = scrape(&app).await;
    for _ in 0..50 {
        if value(&after, series) > value(&before, series) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        after = scrape(&app).await;
    }
    assert!(value(&after, series) >= value(&before, series) + 1.0, "{after}");
    assert!(after.contains("# TYPE openspot_outbox_pending gauge"), "{after}");
    assert!(after.contains("openspot_outbox_oldest_due_age_seconds"), "{after}");
});

both!(pool_waits_are_timed, |app| {
    let count = "db_client_connection_wait_time_seconds_count";
    let before = scrape(&app).await;
    assert!(before.contains("# TYPE db_client_connection_wait_time_seconds histogram"), "{before}");
    // Every read takes a connection (auth, then the list) and every write a transaction.
    for i in 0..3 {
        app.invite(&format!("wait{i}@x.io")).await;
        assert_eq!(app.get("/v1/spotMembers?limit=1").await.status, 200);
    }
    let after = scrape(&app).await;
    assert!(value(&after, count) >= value(&before, count) + 6.0, "{after}");
    assert!(after.contains("db_client_connection_wait_time_seconds_bucket{le=\"30.0\"}"), "{after}");
});

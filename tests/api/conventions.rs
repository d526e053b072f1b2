//! Conventions shared by every `/v1` endpoint: auth, error bodies, size caps, routes,
//! probes, the OpenAPI document, and rate limits (also across replicas).

use reqwest::Method;
use serde_json::{json, Value};

use crate::both;
use crate::common::{assert_ms_error, TestApp};

both!(auth_raw_and_bearer, |app| {
    let r = app.send(Method::GET, "/v1/spotMembers", None, None).await;
    assert_eq!(assert_ms_error(&r, 401), "Unauthorized");
    assert_eq!(r.body["error"], "Unauthorized");
    assert_ms_error(&app.send(Method::GET, "/v1/spotMembers", Some("os_wrong"), None).await, 401);
    assert_ms_error(&app.send(Method::GET, "/v1/spotMembers", Some("Bearer "), None).await, 401);
    assert_eq!(app.send(Method::GET, "/v1/spotMembers", Some(&app.key), None).await.status, 200);
    assert_eq!(app.send(Method::GET, "/v1/spotMembers", Some(&format!("Bearer {}", app.key)), None).await.status, 200);
    // A rotated key stops working (at once on this fresh process's next lookup).
    let (spot, key) = app.other_spot().await;
    let new_key = openspot::domain::spots::rotate_key(&app.db, spot).await.unwrap();
    assert_ms_error(&app.send(Method::GET, "/v1/spotMembers", Some(&key), None).await, 401);
    assert_eq!(app.send(Method::GET, "/v1/spotMembers", Some(&new_key), None).await.status, 200);
});

both!(error_shapes_routes_and_caps, |app| {
    let r = app.get("/v1/whatever").await;
    assert_eq!(assert_ms_error(&r, 404), "Cannot GET /v1/whatever");
    let r = app.send(Method::DELETE, "/v1/spotMembers", Some(&app.key.clone()), None).await;
    assert_eq!(r.body["error"], "Method Not Allowed");
    assert_ms_error(&r, 405);
    let big = format!("{{\"email\": \"{}\"}}", "a".repeat(1_100_000));
    let r = app.post_raw("/v1/spotMembers", big.into_bytes(), "application/json").await;
    assert_eq!(assert_ms_error(&r, 413), "Payload is too large");
    assert_eq!(r.body["error"], "Payload Too Large");
    let r = app.post_raw("/v1/spotMembers", b"{\"email\": ".to_vec(), "application/json").await;
    assert!(assert_ms_error(&r, 400).starts_with("body"));
    let r = app.post_raw("/v1/spotMembers", b"[1]".to_vec(), "application/json").await;
    assert_ms_error(&r, 400);
    assert_eq!(app.get("/healthz").await.status, 200);
    assert_eq!(app.get("/readyz").await.status, 200);
    let docs = app.client.get(format!("{}/docs/", app.base)).send().await.unwrap();
    assert_eq!(docs.status().as_u16(), 200);
    assert!(docs.text().await.unwrap().to_lowercase().contains("<html"));
    let r = app.get("/v1/spotMembers").await;
    for h in ["ratelimit-limit", "ratelimit-remaining", "ratelimit-reset", "x-request-id"] {
        assert!(r.header(h).is_some(), "{h}");
    }
    let r = app.client.get(format!("{}/healthz", app.base)).header("x-request-id", "trace-me").send().await.unwrap();
    assert_eq!(r.headers()["x-request-id"], "trace-me");
});

both!(openapi_describes_both_dialects, |app| {
    let doc = app.client.get(format!("{}/openapi.json", app.base)).send().await.unwrap().json::<Value>().await.unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"));
    let paths = doc["paths"].as_object().unwrap();
    for p in [
        "/v1/spotMembers",
        "/v1/spotMembers/{spotMemberId}",
        "/v1/spotMembers~bulkInvite",
        "/v1/spotMembers~import",
        "/v1/spotMemberCustomRole",
        "/v1/spotMemberCustomRole/{customRoleId}",
        "/v1/groups",
        "/v1/groups~bulkCreate",
        "/v1/groups/{groupId}",
        "/v1/groups/{groupId}/spotMembers",
        "/v1/groups/{groupId}/spotMembers~bulkAdd",
        "/v1/groups/{groupId}/spotMembers~bulkRemove",
        "/v1/groups/{groupId}/blacklist~bulkAdd",
        "/v1/courses",
        "/v1/courses/{courseId}",
        "/v1/courses/{courseId}/participants",
        "/v1/courses/{courseId}/groups~bulkAdd",
        "/v1/customProperties",
        "/v1/customProperties/{slug}",
        "/v1/spotMembers/{spotMemberId}/customPropertiesValues",
        "/kaizala/v1/accessToken",
        "/kaizala/v1/generatePin",
        "/kaizala/v1/loginWithPinAndApplicationId",
        "/kaizala/v1/groups",
        "/kaizala/v1/groups/{groupId}/members",
        "/kaizala/v1/groups/{groupId}/subGroups",
    ] {
        assert!(paths.contains_key(p), "missing {p}");
    }
    assert_eq!(doc["paths"]["/v1/courses"]["post"]["x-openspot"], true);
    assert_eq!(doc["paths"]["/v1/groups/{groupId}/blacklist~bulkAdd"]["post"]["x-openspot"], true);
    assert!(doc["paths"]["/v1/spotMembers"]["get"]["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .any(|p| p["name"] == "email[in]"));
    assert!(doc["components"]["schemas"]["ErrorBody"].is_object());
});

both!(spots_are_isolated, |app| {
    let member = app.invite("ada@x.io").await;
    let role =
        app.post("/v1/spotMemberCustomRole", json!({"label": "Mod"})).await.body["id"].as_str().unwrap().to_string();
    let (_, other) = app.other_spot().await;
    let o = |m: Method, p: String, b: Option<Value>| {
        let (app, other) = (&app, other.clone());
        async move { app.send(m, &p, Some(&other), b).await }
    };
    assert_eq!(
        assert_ms_error(&o(Method::GET, format!("/v1/spotMembers/{member}"), None).await, 404),
        "Spot member not found"
    );
    assert_ms_error(&o(Method::PUT, format!("/v1/spotMembers/{member}"), Some(json!({"firstname": "x"}))).await, 404);
    assert_eq!(
        assert_ms_error(&o(Method::GET, format!("/v1/spotMemberCustomRole/{role}"), None).await, 404),
        "Custom role not found"
    );
    assert_ms_error(&o(Method::DELETE, format!("/v1/spotMemberCustomRole/{role}"), None).await, 404);
    assert_eq!(o(Method::GET, "/v1/spotMembers".into(), None).await.body["total"], 0);
    let theirs = o(Method::POST, "/v1/spotMembers".into(), Some(json!({"email": "ada@x.io"}))).await;
    assert_eq!(theirs.status, 201, "the same email is a new member in another spot");
    let theirs = theirs.body["id"].as_str().unwrap().to_string();
    let r = o(Method::PUT, format!("/v1/spotMembers/{theirs}"), Some(json!({"customRoleId": role}))).await;
    assert!(assert_ms_error(&r, 400).starts_with("customRoleId"));
    assert_eq!(app.get(&format!("/v1/spotMembers/{member}")).await.body["firstname"], "");
});

both!(custom_roles, |app| {
    let r = app
        .post(
            "/v1/spotMemberCustomRole",
            json!({"label": "Moderator", "description": "mods", "permissions": ["moderation.*", "live.full.*"]}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(r.body["permissions"], json!(["moderation.*", "live.full.*"]));
    let id = r.body["id"].as_str().unwrap().to_string();
    app.post("/v1/spotMemberCustomRole", json!({"label": "Course author", "permissions": ["course.full.*"]})).await;
    assert!(assert_ms_error(&app.post("/v1/spotMemberCustomRole", json!({"permissions": []})).await, 400)
        .starts_with("label"));
    let msg = assert_ms_error(
        &app.post("/v1/spotMemberCustomRole", json!({"label": "x", "permissions": ["moderation.*", "root"]})).await,
        400,
    );
    assert!(msg.starts_with("permissions[1]"), "{msg}");
    assert_eq!(app.get("/v1/spotMemberCustomRole").await.body["total"], 2);
    assert_eq!(app.get("/v1/spotMemberCustomRole?label[eq]=Moderator").await.body["total"], 1);
    assert_eq!(
        app.get("/v1/spotMemberCustomRole?label[contains]=AUTHOR").await.body["items"][0]["label"],
        "Course author"
    );
    assert_eq!(app.get("/v1/spotMemberCustomRole?label[in]=Moderator,Course%20author").await.body["total"], 2);
    let r = app.put(&format!("/v1/spotMemberCustomRole/{id}"), json!({"description": null})).await;
    assert_eq!((r.body["label"].clone(), r.body["description"].clone()), (json!("Moderator"), Value::Null));
    let m = app.invite("a@x.io").await;
    app.put(&format!("/v1/spotMembers/{m}"), json!({"customRoleId": id})).await;
    assert_eq!(app.delete(&format!("/v1/spotMemberCustomRole/{id}")).await.status, 204);
    assert_eq!(
        assert_ms_error(&app.get(&format!("/v1/spotMemberCustomRole/{id}")).await, 404),
        "Custom role not found"
    );
    assert_eq!(app.get(&format!("/v1/spotMembers/{m}")).await.body["customRoleId"], Value::Null);
});

both!(rate_limits, |app| {
    let (spot, key) = app.other_spot().await;
    openspot::domain::spots::set_limits(&app.db, spot, Some(5), None).await.unwrap();
    for expected in (0..5).rev() {
        let r = app.send(Method::GET, "/v1/spotMembers", Some(&key), None).await;
        assert_eq!(r.status, 200);
        assert_eq!(r.header("ratelimit-limit").as_deref(), Some("5"));
        assert_eq!(r.header("ratelimit-remaining"), Some(expected.to_string()));
    }
    let r = app.send(Method::GET, "/v1/spotMembers", Some(&key), None).await;
    assert_ms_error(&r, 429);
    assert!(r.header("retry-after").and_then(|v| v.parse::<u64>().ok()).is_some_and(|s| (1..=10).contains(&s)));
    assert_eq!(r.header("ratelimit-remaining").as_deref(), Some("0"));
    assert_eq!(app.get("/v1/spotMembers").await.status, 200, "other spots are unaffected");

    let (daily, daily_key) = app.other_spot().await;
    openspot::domain::spots::set_limits(&app.db, daily, None, Some(3)).await.unwrap();
    for _ in 0..3 {
        assert_eq!(app.send(Method::GET, "/v1/spotMembers", Some(&daily_key), None).await.status, 200);
    }
    assert_ms_error(&app.send(Method::GET, "/v1/spotMembers", Some(&daily_key), None).await, 429);
});

both!(rate_limit_holds_across_replicas, |app| {
    let (spot, key) = app.other_spot().await;
    openspot::domain::spots::set_limits(&app.db, spot, Some(6), None).await.unwrap();
    // A second replica over the same database.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let mut config = openspot::Config::new(addr, None);
    config.default_limits = app.state.config.default_limits;
    let state = openspot::AppState::new(app.db.clone(), config).unwrap();
    tokio::spawn(openspot::serve(state, listener, std::future::pending()));
    let second = format!("http://{addr}");
    let mut ok = 0;
    for i in 0..12 {
        let base = if i % 2 == 0 { app.base.clone() } else { second.clone() };
        let r = app.client.get(format!("{base}/v1/spotMembers")).header("authorization", &key).send().await.unwrap();
        ok += usize::from(r.status().as_u16() == 200);
    }
    assert_eq!(ok, 6);
});

#[tokio::test]
async fn postgres_tests_report_when_skipped() {
    // The harness prints a visible notice instead of failing when PostgreSQL is not configured.
    if std::env::var("TEST_POSTGRES_URL").is_err() && std::env::var("TEST_REQUIRE_POSTGRES").is_err() {
        assert!(TestApp::spawn(openspot::store::Backend::Postgres).await.is_none());
    }
}

// Typed ids (`domain::ids`) are documented as the inline UUID strings they are on the
// wire: no component of their own, the same schema as any other id.
both!(openapi_documents_typed_ids_as_uuid_strings, |app| {
    let doc: Value = app.client.get(format!("{}/openapi.json", app.base)).send().await.unwrap().json().await.unwrap();
    let schemas = doc["components"]["schemas"].as_object().unwrap();
    for name in ["SpotId", "MemberId", "GroupId", "CourseId", "ParticipantId", "PropertyId", "RoleId", "ConnectorId"] {
        assert!(!schemas.contains_key(name), "{name} has a component of its own");
    }
    let uuid = json!({"type": "string", "format": "uuid"});
    for (schema, field) in [
        ("CourseDto", "id"),
        ("CourseParticipantDto", "id"),
        ("CourseParticipantDto", "courseId"),
        ("GroupDto", "id"),
        ("KzGroupDetail", "groupId"),
        ("KzSubGroup", "groupId"),
        ("SpotMemberDto", "id"),
        ("SpotMemberDto", "spotId"),
        ("CustomRoleDto", "id"),
        ("CustomPropertyDto", "id"),
        ("CustomPropertyValueDto", "customPropertyId"),
        ("CourseParticipantDto", "spotMemberId"),
        ("KzMember", "id"),
    ] {
        assert_eq!(schemas[schema]["properties"][field], uuid, "{schema}.{field}");
    }
    assert_eq!(schemas["BlacklistResult"]["properties"]["blacklistedSpotMemberIds"]["items"], uuid);
});

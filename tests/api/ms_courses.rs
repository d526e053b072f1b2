//! `/v1/courses`: courses, participants, learner progress and group links.

use std::time::Duration;

use serde_json::{json, Value};

use crate::both;
use crate::common::{assert_ms_error, TestApp};

async fn course(app: &TestApp) -> String {
    let r = app.post("/v1/courses", json!({"title": "Rust 101"})).await;
    assert_eq!(r.status, 201, "{}", r.text);
    r.body["id"].as_str().unwrap().to_string()
}

async fn invite(app: &TestApp, cid: &str, mid: &str) -> Value {
    let r = app.post(&format!("/v1/courses/{cid}/participants"), json!({"spotMemberId": mid})).await;
    assert!(r.status == 201 || r.status == 200, "{}", r.text);
    r.body
}

async fn participant_emails(app: &TestApp, cid: &str, query: &str) -> Vec<String> {
    let r = app.get(&format!("/v1/courses/{cid}/participants?limit=100{query}")).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let mut v: Vec<String> = r.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["spotMemberEmail"].as_str().unwrap().to_string())
        .collect();
    v.sort();
    assert_eq!(r.body["total"].as_u64().unwrap() as usize, v.len());
    v
}

both!(course_crud, |app| {
    let r = app.post("/v1/courses", json!({"title": "Rust 101", "description": "basics"})).await;
    assert_eq!(r.status, 201);
    assert_eq!(
        (r.body["status"].clone(), r.body["privacy"].clone(), r.body["navigationMode"].clone()),
        (json!("Draft"), json!("Secret"), json!("Flexible"))
    );
    let id = r.body["id"].as_str().unwrap().to_string();
    assert!(assert_ms_error(&app.post("/v1/courses", json!({"description": "x"})).await, 400).starts_with("title"));
    assert!(assert_ms_error(&app.post("/v1/courses", json!({"title": "x", "privacy": "Hidden"})).await, 400)
        .starts_with("privacy"));
    app.post(
        "/v1/courses",
        json!({"title": "Go", "status": "Published", "privacy": "Public", "navigationMode": "Sequential"}),
    )
    .await;
    assert_eq!(app.get("/v1/courses").await.body["total"], 2);
    assert_eq!(app.get("/v1/courses?status[eq]=Published").await.body["items"][0]["title"], "Go");
    assert_eq!(app.get("/v1/courses?privacy[eq]=Secret").await.body["total"], 1);
    assert_ms_error(&app.get("/v1/courses?status[eq]=Nope").await, 400);
    let r = app.put(&format!("/v1/courses/{id}"), json!({"status": "Published", "description": null})).await;
    assert_eq!(
        (r.body["status"].clone(), r.body["description"].clone(), r.body["title"].clone()),
        (json!("Published"), Value::Null, json!("Rust 101"))
    );
    assert!(assert_ms_error(&app.put(&format!("/v1/courses/{id}"), json!({"navigationMode": "Random"})).await, 400)
        .starts_with("navigationMode"));
    assert_eq!(app.get(&format!("/v1/courses/{id}")).await.body["status"], "Published");
    assert_eq!(app.delete(&format!("/v1/courses/{id}")).await.status, 204);
    assert_eq!(assert_ms_error(&app.get(&format!("/v1/courses/{id}")).await, 404), "Course not found");
    assert_eq!(assert_ms_error(&app.get(&format!("/v1/courses/{id}/participants")).await, 404), "Course not found");
});

both!(participants_and_invitations, |app| {
    let cid = course(&app).await;
    let m = app.invite("ada@x.io").await;
    let r = app.post(&format!("/v1/courses/{cid}/participants"), json!({"spotMemberId": m})).await;
    assert_eq!(r.status, 201, "{}", r.text);
    for field in ["id", "courseId", "spotMemberId", "spotMemberEmail", "status", "invitedAt", "completionRate"] {
        assert!(!r.body[field].is_null(), "{field}");
    }
    for field in
        ["spotMemberFirstname", "spotMemberLastname", "startedAt", "completedAt", "unenrolledAt", "lastActivityAt"]
    {
        assert!(r.body.get(field).is_some_and(Value::is_null), "{field}");
    }
    assert_eq!(r.body["status"], "Invited");
    assert!(r.body["invitedAt"].as_str().unwrap().ends_with('Z'));
    let pid = r.body["id"].as_str().unwrap().to_string();
    let again = app.post(&format!("/v1/courses/{cid}/participants"), json!({"spotMemberId": m})).await;
    assert_eq!((again.status, again.body["id"].as_str().unwrap()), (200, pid.as_str()));
    assert_eq!(
        assert_ms_error(
            &app.post(
                &format!("/v1/courses/{cid}/participants"),
                json!({"spotMemberId": "01930000-0000-7000-8000-000000000000"})
            )
            .await,
            404
        ),
        "Spot member not found"
    );
    assert!(assert_ms_error(&app.post(&format!("/v1/courses/{cid}/participants"), json!({})).await, 400)
        .starts_with("spotMemberId"));
    assert!(assert_ms_error(
        &app.post(
            &format!("/v1/courses/{cid}/participants"),
            json!({"spotMemberId": m, "invitedBySpotMemberId": "01930000-0000-7000-8000-000000000000"})
        )
        .await,
        400
    )
    .starts_with("invitedBySpotMemberId"));
    app.put(&format!("/v1/spotMembers/{m}"), json!({"firstname": "Ada"})).await;
    let got = app.get(&format!("/v1/courses/{cid}/participants/{pid}")).await;
    assert_eq!(got.body["spotMemberFirstname"], "Ada");
    assert_eq!(
        assert_ms_error(
            &app.get(&format!("/v1/courses/{cid}/participants/01930000-0000-7000-8000-000000000000")).await,
            404
        ),
        "Course participant not found"
    );

    // Bulk invitations: new ones 201, all known 200, unknown ids 400 with nothing written.
    let b = app.invite("bob@x.io").await;
    let c = app.invite("cy@x.io").await;
    let r = app.post(&format!("/v1/courses/{cid}/participants~bulkInvite"), json!({"spotMemberIds": [m, b]})).await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(r.body.as_array().unwrap().len(), 1);
    assert_eq!(r.body[0]["spotMemberEmail"], "bob@x.io");
    let r = app.post(&format!("/v1/courses/{cid}/participants~bulkInvite"), json!({"spotMemberIds": [m, b]})).await;
    assert_eq!(r.status, 200);
    let (_, other) = app.other_spot().await;
    let foreign =
        app.send(reqwest::Method::POST, "/v1/spotMembers", Some(&other), Some(json!({"email": "z@x.io"}))).await;
    let foreign = foreign.body["id"].as_str().unwrap().to_string();
    let msg = assert_ms_error(
        &app.post(&format!("/v1/courses/{cid}/participants~bulkInvite"), json!({"spotMemberIds": [c, foreign]})).await,
        400,
    );
    assert!(msg.contains(&foreign), "{msg}");
    assert_eq!(participant_emails(&app, &cid, "").await, vec!["ada@x.io", "bob@x.io"], "nothing written");
    assert_ms_error(
        &app.post(&format!("/v1/courses/{cid}/participants~bulkInvite"), json!({"spotMemberIds": []})).await,
        400,
    );
    let many: Vec<String> = (0..201).map(|_| c.clone()).collect();
    assert_ms_error(
        &app.post(&format!("/v1/courses/{cid}/participants~bulkInvite"), json!({"spotMemberIds": many})).await,
        413,
    );

    // Filters.
    assert_eq!(participant_emails(&app, &cid, "&firstname[in]=Ada").await, vec!["ada@x.io"]);
    assert_eq!(participant_emails(&app, &cid, "&email[in]=BOB@x.io").await, vec!["bob@x.io"]);
    assert_eq!(participant_emails(&app, &cid, "&status[eq]=Invited").await.len(), 2);
    assert_eq!(participant_emails(&app, &cid, "&status[in]=Started,Completed").await.len(), 0);
    assert_ms_error(&app.get(&format!("/v1/courses/{cid}/participants?status[eq]=Done")).await, 400);
});

both!(progress_moves, |app| {
    let cid = course(&app).await;
    let m = app.invite("ada@x.io").await;
    let pid = invite(&app, &cid, &m).await["id"].as_str().unwrap().to_string();
    let url = format!("/v1/courses/{cid}/participants/{pid}");
    let msg = assert_ms_error(&app.put(&url, json!({"status": "Completed"})).await, 409);
    assert!(msg.contains("Invited") && msg.contains("Completed"), "{msg}");
    assert_ms_error(&app.put(&url, json!({"completionRate": 10})).await, 409);
    assert_ms_error(&app.put(&url, json!({})).await, 400);
    let r = app.put(&url, json!({"status": "Started", "startedAt": "1999-01-01T00:00:00Z"})).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["status"], "Started");
    assert!(r.body["startedAt"].as_str().unwrap() > "2020", "server-set: {}", r.body["startedAt"]);
    assert!(r.body["lastActivityAt"].is_string());
    assert_eq!(app.put(&url, json!({"completionRate": 40})).await.body["completionRate"], 40);
    assert!(assert_ms_error(&app.put(&url, json!({"completionRate": 101})).await, 400).starts_with("completionRate"));
    assert!(assert_ms_error(&app.put(&url, json!({"completionRate": -1})).await, 400).starts_with("completionRate"));
    let r = app.put(&url, json!({"status": "Completed"})).await;
    assert_eq!((r.body["status"].clone(), r.body["completionRate"].clone()), (json!("Completed"), json!(100)));
    assert!(r.body["completedAt"].is_string());
    let msg = assert_ms_error(&app.put(&url, json!({"status": "Started"})).await, 409);
    assert!(msg.contains("Completed") && msg.contains("Started"), "{msg}");
    let r = app.put(&url, json!({"status": "Unenrolled"})).await;
    assert!(r.body["unenrolledAt"].is_string());
    assert_ms_error(&app.put(&url, json!({"status": "Unenrolled"})).await, 409);
    assert_ms_error(&app.put(&url, json!({"status": "Started"})).await, 409);
    assert!(assert_ms_error(&app.put(&url, json!({"status": "Invited"})).await, 400).starts_with("status"));
    // Re-inviting an Unenrolled member makes them Invited again.
    let r = app.post(&format!("/v1/courses/{cid}/participants"), json!({"spotMemberId": m})).await;
    assert_eq!((r.status, r.body["status"].clone()), (201, json!("Invited")));
});

both!(group_links_invite_current_and_future_members, |app| {
    let cid = course(&app).await;
    let gid = app.post("/v1/groups", json!({"name": "G"})).await.body["id"].as_str().unwrap().to_string();
    let a = app.invite("a@x.io").await;
    let b = app.invite("b@x.io").await;
    app.post(&format!("/v1/groups/{gid}/spotMembers"), json!({"spotMemberId": a})).await;
    // An Unenrolled participant stays Unenrolled when their group is linked.
    let pb = invite(&app, &cid, &b).await["id"].as_str().unwrap().to_string();
    app.put(&format!("/v1/courses/{cid}/participants/{pb}"), json!({"status": "Unenrolled"})).await;
    app.post(&format!("/v1/groups/{gid}/spotMembers"), json!({"spotMemberId": b})).await;
    let r = app.post(&format!("/v1/courses/{cid}/groups~bulkAdd"), json!({"groupIds": [gid]})).await;
    assert_eq!(r.status, 204, "{}", r.text);
    assert_eq!(participant_emails(&app, &cid, "&status[eq]=Invited").await, vec!["a@x.io"]);
    assert_eq!(participant_emails(&app, &cid, "&status[eq]=Unenrolled").await, vec!["b@x.io"]);
    // A later joiner is invited at once.
    let c = app.invite("c@x.io").await;
    app.post(&format!("/v1/groups/{gid}/spotMembers~bulkAdd"), json!({"spotMemberIds": [c]})).await;
    assert_eq!(participant_emails(&app, &cid, "&status[eq]=Invited").await, vec!["a@x.io", "c@x.io"]);
    // A smart group's joiners too.
    let rules = json!({"operator": "AND", "conditions": [{"operator": "AND", "triggers": [{"field": "status", "op": "eq", "value": "Accepted"}]}]});
    let smart = app.post("/v1/groups", json!({"name": "S", "type": "Smart", "rules": rules})).await.body["id"]
        .as_str()
        .unwrap()
        .to_string();
    for _ in 0..400 {
        if app.get(&format!("/v1/groups/{smart}")).await.body["ready"] == true {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(app.post(&format!("/v1/courses/{cid}/groups~bulkAdd"), json!({"groupIds": [smart]})).await.status, 204);
    let d = app.invite("d@x.io").await;
    app.put(&format!("/v1/spotMembers/{d}"), json!({"status": "Accepted"})).await;
    assert!(participant_emails(&app, &cid, "").await.contains(&"d@x.io".to_string()));
    // Unlinking stops future invitations; existing participants stay.
    assert_eq!(app.post(&format!("/v1/courses/{cid}/groups~bulkRemove"), json!({"groupIds": [gid]})).await.status, 204);
    let e = app.invite("e@x.io").await;
    app.post(&format!("/v1/groups/{gid}/spotMembers"), json!({"spotMemberId": e})).await;
    let emails = participant_emails(&app, &cid, "").await;
    assert!(!emails.contains(&"e@x.io".to_string()) && emails.contains(&"c@x.io".to_string()), "{emails:?}");
    // Unknown and foreign group ids.
    let msg = assert_ms_error(
        &app.post(
            &format!("/v1/courses/{cid}/groups~bulkAdd"),
            json!({"groupIds": ["01930000-0000-7000-8000-000000000000"]}),
        )
        .await,
        400,
    );
    assert!(msg.contains("01930000-0000-7000-8000-000000000000"), "{msg}");
    let (_, other) = app.other_spot().await;
    let foreign = app.send(reqwest::Method::POST, "/v1/groups", Some(&other), Some(json!({"name": "F"}))).await;
    let foreign = foreign.body["id"].as_str().unwrap().to_string();
    assert_ms_error(&app.post(&format!("/v1/courses/{cid}/groups~bulkAdd"), json!({"groupIds": [foreign]})).await, 400);
    let r = app.send(reqwest::Method::GET, &format!("/v1/courses/{cid}"), Some(&other), None).await;
    assert_eq!(assert_ms_error(&r, 404), "Course not found");
});

both!(linking_a_large_group, |app| {
    let cid = course(&app).await;
    let gid = app.post("/v1/groups", json!({"name": "big"})).await.body["id"].as_str().unwrap().to_string();
    for chunk in 0..10 {
        let emails: Vec<String> = (0..200).map(|i| format!("m{chunk}-{i}@x.io")).collect();
        let r = app.post("/v1/spotMembers~bulkInvite", json!({"emails": emails})).await;
        let ids: Vec<Value> = r.body["created"].as_array().unwrap().iter().map(|m| m["id"].clone()).collect();
        app.post(&format!("/v1/groups/{gid}/spotMembers~bulkAdd"), json!({"spotMemberIds": ids})).await;
    }
    assert_eq!(app.post(&format!("/v1/courses/{cid}/groups~bulkAdd"), json!({"groupIds": [gid]})).await.status, 204);
    assert_eq!(app.get(&format!("/v1/courses/{cid}/participants")).await.body["total"], 2000);
});

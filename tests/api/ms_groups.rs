//! `/v1/groups`: CRUD, bulk create, membership, smart groups and the blacklist.

use std::time::Duration;

use serde_json::{json, Value};

use crate::both;
use crate::common::{assert_ms_error, TestApp};

async fn group(app: &TestApp, body: Value) -> String {
    let r = app.post("/v1/groups", body).await;
    assert_eq!(r.status, 201, "{}", r.text);
    r.body["id"].as_str().unwrap().to_string()
}

async fn member_emails(app: &TestApp, gid: &str) -> Vec<String> {
    let r = app.get(&format!("/v1/groups/{gid}/spotMembers?limit=100")).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let mut v: Vec<String> =
        r.body["items"].as_array().unwrap().iter().map(|m| m["email"].as_str().unwrap().to_string()).collect();
    v.sort();
    assert_eq!(r.body["total"].as_u64().unwrap() as usize, v.len(), "total matches the list");
    v
}

/// Polls until the smart group reports `ready` (bounded; no fixed sleep).
async fn wait_ready(app: &TestApp, gid: &str) {
    for _ in 0..400 {
        if app.get(&format!("/v1/groups/{gid}")).await.body["ready"] == true {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("smart group {gid} never became ready");
}

both!(crud_and_filters, |app| {
    let r = app.post("/v1/groups", json!({"name": "Pioneers", "description": "first", "emoji": "🚀"})).await;
    assert_eq!(r.status, 201);
    assert_eq!(r.body["type"], "Static");
    assert_eq!(r.body["rules"], Value::Null);
    assert_eq!(r.body["icon"], Value::Null);
    let id = r.body["id"].as_str().unwrap().to_string();
    group(&app, json!({"name": "Builders"})).await;
    assert!(assert_ms_error(&app.post("/v1/groups", json!({"description": "x"})).await, 400).starts_with("name"));
    assert_eq!(app.get("/v1/groups").await.body["total"], 2);
    assert_eq!(app.get("/v1/groups?name[eq]=Pioneers").await.body["total"], 1);
    assert_eq!(app.get("/v1/groups?name[contains]=BUILD").await.body["items"][0]["name"], "Builders");
    assert_eq!(app.get("/v1/groups?limit=1&page=2").await.body["items"][0]["name"], "Builders");
    let r = app.put(&format!("/v1/groups/{id}"), json!({"description": null, "emoji": "⭐"})).await;
    assert_eq!(
        (r.body["description"].clone(), r.body["emoji"].clone(), r.body["name"].clone()),
        (Value::Null, json!("⭐"), json!("Pioneers"))
    );
    assert_ms_error(&app.put(&format!("/v1/groups/{id}"), json!({"rules": {}})).await, 409);
    assert_ms_error(&app.put(&format!("/v1/groups/{id}"), json!({"type": "Smart"})).await, 409);
    let m = app.invite("ada@x.io").await;
    assert_eq!(app.post(&format!("/v1/groups/{id}/spotMembers"), json!({"spotMemberId": m})).await.status, 204);
    assert_eq!(app.delete(&format!("/v1/groups/{id}")).await.status, 204);
    assert_eq!(assert_ms_error(&app.get(&format!("/v1/groups/{id}")).await, 404), "Group not found");
    assert_eq!(app.get(&format!("/v1/spotMembers/{m}")).await.status, 200, "members stay");
});

both!(bulk_create, |app| {
    let items =
        json!([{"name": "A"}, {"description": "no name"}, {"name": 5}, "not an object", {"name": "B", "emoji": "x"}]);
    let r = app.post("/v1/groups~bulkCreate", items).await;
    assert_eq!(r.status, 201, "{}", r.text);
    let names: Vec<&str> = r.body["created"].as_array().unwrap().iter().map(|g| g["name"].as_str().unwrap()).collect();
    assert_eq!(names, vec!["A", "B"]);
    assert_eq!(r.body["failed"], json!([{"description": "no name"}, {"name": 5}, "not an object"]));
    assert_ms_error(&app.post("/v1/groups~bulkCreate", json!([])).await, 400);
    assert_ms_error(&app.post("/v1/groups~bulkCreate", json!({"name": "x"})).await, 400);
    let many: Vec<Value> = (0..201).map(|i| json!({"name": format!("g{i}")})).collect();
    assert_eq!(assert_ms_error(&app.post("/v1/groups~bulkCreate", json!(many)).await, 413), "Payload is too large");
});

both!(membership, |app| {
    let gid = group(&app, json!({"name": "G"})).await;
    let a = app.invite("a@x.io").await;
    let b = app.invite("b@x.io").await;
    let c = app.invite("c@x.io").await;
    for _ in 0..2 {
        assert_eq!(app.post(&format!("/v1/groups/{gid}/spotMembers"), json!({"spotMemberId": a})).await.status, 204);
    }
    assert_eq!(member_emails(&app, &gid).await, vec!["a@x.io"]);
    let r = app
        .post(&format!("/v1/groups/{gid}/spotMembers"), json!({"spotMemberId": "01930000-0000-7000-8000-000000000000"}))
        .await;
    assert_eq!(assert_ms_error(&r, 404), "Spot member not found");
    let r = app.post("/v1/groups/01930000-0000-7000-8000-000000000000/spotMembers", json!({"spotMemberId": a})).await;
    assert_eq!(assert_ms_error(&r, 404), "Group not found");

    let (_, other_key) = app.other_spot().await;
    let foreign =
        app.send(reqwest::Method::POST, "/v1/spotMembers", Some(&other_key), Some(json!({"email": "z@x.io"}))).await;
    let foreign = foreign.body["id"].as_str().unwrap().to_string();
    let ids = json!({"spotMemberIds": [a, b, "01930000-0000-7000-8000-000000000000", "nope", foreign]});
    let r = app.post(&format!("/v1/groups/{gid}/spotMembers~bulkAdd"), ids).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["addedSpotMemberIds"], json!([a, b]));
    assert_eq!(r.body["failedSpotMemberIds"], json!(["nope", "01930000-0000-7000-8000-000000000000", foreign]));
    assert_eq!(member_emails(&app, &gid).await, vec!["a@x.io", "b@x.io"]);
    assert_ms_error(
        &app.post(&format!("/v1/groups/{gid}/spotMembers~bulkAdd"), json!({"spotMemberIds": []})).await,
        400,
    );
    let many: Vec<String> = (0..201).map(|_| a.clone()).collect();
    assert_ms_error(
        &app.post(&format!("/v1/groups/{gid}/spotMembers~bulkAdd"), json!({"spotMemberIds": many})).await,
        413,
    );

    // Filters on the group's members.
    app.put(&format!("/v1/spotMembers/{b}"), json!({"firstname": "Bea", "status": "Accepted"})).await;
    assert_eq!(app.get(&format!("/v1/groups/{gid}/spotMembers?firstname[in]=Bea")).await.body["total"], 1);
    assert_eq!(app.get(&format!("/v1/groups/{gid}/spotMembers?email[in]=A@X.IO")).await.body["total"], 1);
    assert_eq!(
        app.get(&format!("/v1/groups/{gid}/spotMembers?registrationDate[after]=1000000000")).await.body["total"],
        1
    );
    assert_ms_error(&app.get(&format!("/v1/groups/{gid}/spotMembers?customRoleId[eq]=x")).await, 400);

    let r = app
        .post(&format!("/v1/groups/{gid}/spotMembers~bulkRemove"), json!({"spotMemberIds": [a, a, c, "nope"]}))
        .await;
    assert_eq!(r.body["removedSpotMembersCount"], 1, "{}", r.text);
    assert_eq!(member_emails(&app, &gid).await, vec!["b@x.io"]);
});

both!(concurrent_bulk_adds_do_not_duplicate, |app| {
    let gid = group(&app, json!({"name": "G"})).await;
    let emails: Vec<String> = (0..30).map(|i| format!("m{i}@x.io")).collect();
    let r = app.post("/v1/spotMembers~bulkInvite", json!({"emails": emails})).await;
    let ids: Vec<String> =
        r.body["created"].as_array().unwrap().iter().map(|m| m["id"].as_str().unwrap().to_string()).collect();
    let mut tasks = Vec::new();
    for k in 0..10 {
        let subset: Vec<String> = ids.iter().skip(k * 2).take(12).cloned().collect();
        let (client, url, key) =
            (app.client.clone(), format!("{}/v1/groups/{gid}/spotMembers~bulkAdd", app.base), app.key.clone());
        tasks.push(tokio::spawn(async move {
            client
                .post(url)
                .header("authorization", key)
                .json(&json!({"spotMemberIds": subset}))
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), 200);
    }
    let union = 30; // subsets [2k, 2k + 12) for k in 0..10 cover all 30 members
    assert_eq!(member_emails(&app, &gid).await.len(), union);
    assert_eq!(app.get(&format!("/v1/groups/{gid}")).await.body["membersCount"], union);
});

both!(smart_group_follows_members, |app| {
    let a = app.invite("a@x.io").await;
    let b = app.invite("b@x.io").await;
    app.put(&format!("/v1/spotMembers/{a}"), json!({"status": "Accepted"})).await;
    let rules = json!({"operator": "AND", "conditions": [{"operator": "OR", "triggers": [{"field": "status", "op": "eq", "value": "Accepted"}]}]});
    let r = app.post("/v1/groups", json!({"name": "Active", "type": "Smart", "rules": rules})).await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(r.body["type"], "Smart");
    assert_eq!(r.body["rules"], rules);
    let gid = r.body["id"].as_str().unwrap().to_string();
    wait_ready(&app, &gid).await;
    assert_eq!(member_emails(&app, &gid).await, vec!["a@x.io"]);
    // Membership is current when the member write returns.
    app.put(&format!("/v1/spotMembers/{b}"), json!({"status": "Accepted"})).await;
    assert_eq!(member_emails(&app, &gid).await, vec!["a@x.io", "b@x.io"]);
    app.put(&format!("/v1/spotMembers/{a}"), json!({"status": "Deactivated"})).await;
    assert_eq!(member_emails(&app, &gid).await, vec!["b@x.io"]);
    let c = app.invite("c@x.io").await;
    app.put(&format!("/v1/spotMembers/{c}"), json!({"status": "Accepted"})).await;
    assert_eq!(member_emails(&app, &gid).await, vec!["b@x.io", "c@x.io"]);

    // Blacklist: out, and stays out on later updates; back in when removed.
    let r = app.post(&format!("/v1/groups/{gid}/blacklist~bulkAdd"), json!({"spotMemberIds": [c]})).await;
    assert_eq!(r.body["blacklistedSpotMemberIds"], json!([c]), "{}", r.text);
    assert_eq!(member_emails(&app, &gid).await, vec!["b@x.io"]);
    app.put(&format!("/v1/spotMembers/{c}"), json!({"firstname": "Cy", "status": "Accepted"})).await;
    assert_eq!(member_emails(&app, &gid).await, vec!["b@x.io"]);
    let r = app.post(&format!("/v1/groups/{gid}/blacklist~bulkRemove"), json!({"spotMemberIds": [c]})).await;
    assert_eq!(r.body["blacklistedSpotMemberIds"], json!([]));
    assert_eq!(member_emails(&app, &gid).await, vec!["b@x.io", "c@x.io"]);

    // Manual membership changes are refused on a smart group.
    assert_ms_error(&app.post(&format!("/v1/groups/{gid}/spotMembers"), json!({"spotMemberId": a})).await, 409);
    let r = app.post(&format!("/v1/groups/{gid}/spotMembers~bulkAdd"), json!({"spotMemberIds": [a]})).await;
    assert_eq!((r.body["addedSpotMemberIds"].clone(), r.body["failedSpotMemberIds"].clone()), (json!([]), json!([a])));
    assert_ms_error(
        &app.post(&format!("/v1/groups/{gid}/spotMembers~bulkRemove"), json!({"spotMemberIds": [b]})).await,
        409,
    );
    let st = group(&app, json!({"name": "static"})).await;
    assert_ms_error(&app.post(&format!("/v1/groups/{st}/blacklist~bulkAdd"), json!({"spotMemberIds": [b]})).await, 409);
});

both!(smart_group_on_text_and_dates, |app| {
    app.invite("ann@corp.io").await;
    app.invite("bob@home.io").await;
    let rules = json!({"operator": "OR", "conditions": [{"operator": "AND", "triggers": [{"field": "email", "op": "contains", "value": "@CORP"}]}]});
    let gid = group(&app, json!({"name": "corp", "type": "Smart", "rules": rules})).await;
    wait_ready(&app, &gid).await;
    assert_eq!(member_emails(&app, &gid).await, vec!["ann@corp.io"]);
    let rules = json!({"operator": "AND", "conditions": [{"operator": "AND", "triggers": [{"field": "invitationDate", "op": "after", "value": 1_000_000_000}]}]});
    let all = group(&app, json!({"name": "recent", "type": "Smart", "rules": rules})).await;
    wait_ready(&app, &all).await;
    assert_eq!(member_emails(&app, &all).await.len(), 2);
    app.invite("cy@corp.io").await;
    assert_eq!(
        member_emails(&app, &gid).await,
        vec!["ann@corp.io", "cy@corp.io"],
        "new members are evaluated on creation"
    );
});

both!(rule_errors_name_the_path, |app| {
    let with = |t: Value| {
        json!({"name": "s", "type": "Smart", "rules": {"operator": "AND", "conditions": [
        {"operator": "AND", "triggers": [{"field": "status", "op": "eq", "value": "Accepted"}]},
        {"operator": "OR", "triggers": [t]}]}})
    };
    for (t, path) in [
        (json!({"field": "shoe", "op": "eq", "value": "x"}), "rules.conditions[1].triggers[0].field"),
        (json!({"field": "status", "op": "gt", "value": "x"}), "rules.conditions[1].triggers[0].op"),
        (json!({"field": "status", "op": "eq", "value": "Sleeping"}), "rules.conditions[1].triggers[0].value"),
        (json!({"field": "role", "op": "in", "value": "Admin"}), "rules.conditions[1].triggers[0].value"),
        (json!({"field": "customProperties.nope", "op": "eq", "value": "x"}), "rules.conditions[1].triggers[0].field"),
    ] {
        let msg = assert_ms_error(&app.post("/v1/groups", with(t)).await, 400);
        assert!(msg.starts_with(path), "{msg}");
    }
    let msg = assert_ms_error(&app.post("/v1/groups", json!({"name": "s", "type": "Smart"})).await, 400);
    assert!(msg.starts_with("rules"), "{msg}");
    let msg = assert_ms_error(
        &app.post("/v1/groups", json!({"name": "s", "rules": {"operator": "AND", "conditions": []}})).await,
        400,
    );
    assert!(msg.starts_with("rules"), "{msg}");
    let msg = assert_ms_error(
        &app.post("/v1/groups", json!({"name": "s", "type": "Smart", "rules": {"operator": "XOR", "conditions": []}}))
            .await,
        400,
    );
    assert!(msg.starts_with("rules.operator"), "{msg}");
    assert_eq!(app.get("/v1/groups").await.body["total"], 0);
});

both!(groups_are_scoped_to_the_spot, |app| {
    let gid = group(&app, json!({"name": "G"})).await;
    let (_, other) = app.other_spot().await;
    for (method, path) in [
        (reqwest::Method::GET, format!("/v1/groups/{gid}")),
        (reqwest::Method::DELETE, format!("/v1/groups/{gid}")),
        (reqwest::Method::GET, format!("/v1/groups/{gid}/spotMembers")),
    ] {
        let r = app.send(method, &path, Some(&other), None).await;
        assert_eq!(assert_ms_error(&r, 404), "Group not found");
    }
    let r =
        app.send(reqwest::Method::PUT, &format!("/v1/groups/{gid}"), Some(&other), Some(json!({"name": "x"}))).await;
    assert_eq!(assert_ms_error(&r, 404), "Group not found");
    assert_eq!(app.send(reqwest::Method::GET, "/v1/groups", Some(&other), None).await.body["total"], 0);
});

//! Custom properties: definitions (`/v1/customProperties`), member values and filters.

use serde_json::{json, Value};

use crate::both;
use crate::common::{assert_ms_error, smart_members, wait_until_ready, TestApp};

async fn set(app: &TestApp, m: &str, body: Value) -> crate::common::Resp {
    app.post(&format!("/v1/spotMembers/{m}/customPropertiesValues~bulkUpsert"), body).await
}

/// Emails of the members matching query `q`, sorted; checks `total` against them.
async fn emails(app: &TestApp, q: &str) -> Vec<String> {
    let r = app.get(&format!("/v1/spotMembers?{q}")).await;
    assert_eq!(r.status, 200, "{q}: {}", r.text);
    let mut v: Vec<String> =
        r.body["items"].as_array().unwrap().iter().map(|m| m["email"].as_str().unwrap().to_string()).collect();
    v.sort();
    assert_eq!(r.body["total"].as_u64().unwrap() as usize, v.len());
    v
}

async fn define(app: &TestApp, body: Value) -> Value {
    let r = app.post("/v1/customProperties", body).await;
    assert_eq!(r.status, 201, "{}", r.text);
    r.body
}

both!(definitions_crud, |app| {
    let plan = define(&app, json!({"label": "Plan", "type": "SingleSelect", "possibleValues": ["free", "pro"]})).await;
    assert_eq!(plan["slug"], "plan");
    assert_eq!(plan["type"], "SingleSelect");
    let again = define(&app, json!({"label": "Plan", "type": "Text"})).await;
    assert_eq!(again["slug"], "plan-2", "a derived slug is made unique");
    let r = app.post("/v1/customProperties", json!({"slug": "plan", "label": "X", "type": "Text"})).await;
    assert_ms_error(&r, 409);
    let r = app.post("/v1/customProperties", json!({"slug": "Bad Slug", "label": "X", "type": "Text"})).await;
    assert!(assert_ms_error(&r, 400).starts_with("slug"));
    let r = app.post("/v1/customProperties", json!({"label": "X", "type": "Colour"})).await;
    assert!(assert_ms_error(&r, 400).starts_with("type"));
    let r = app.post("/v1/customProperties", json!({"label": "X", "type": "SingleSelect"})).await;
    assert!(assert_ms_error(&r, 400).starts_with("possibleValues"));
    let r = app.post("/v1/customProperties", json!({"type": "Text"})).await;
    assert!(assert_ms_error(&r, 400).starts_with("label"));

    let list = app.get("/v1/customProperties").await;
    assert_eq!(list.body["total"], 2);
    assert_eq!(app.get("/v1/customProperties/plan").await.body["label"], "Plan");
    let r = app.put("/v1/customProperties/plan", json!({"slug": "other"})).await;
    assert!(assert_ms_error(&r, 400).starts_with("slug"));
    let r = app.put("/v1/customProperties/plan", json!({"type": "Text"})).await;
    assert!(assert_ms_error(&r, 400).starts_with("type"));
    let r = app.put("/v1/customProperties/plan", json!({"label": "Pricing plan", "description": "tier"})).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["label"], "Pricing plan");
    assert_eq!(app.delete("/v1/customProperties/plan-2").await.status, 204);
    let r = app.get("/v1/customProperties/plan-2").await;
    assert_eq!(assert_ms_error(&r, 404), "Custom property not found");
});

both!(values_by_type, |app| {
    let m = app.invite("ada@example.com").await;
    for (label, kind, options) in [
        ("Company", "Text", json!(null)),
        ("Seats", "Number", json!(null)),
        ("Consent", "Boolean", json!(null)),
        ("Joined", "Date", json!(null)),
        ("Plan", "SingleSelect", json!(["free", "pro"])),
        ("Topics", "MultipleSelect", json!(["rust", "go", "sql"])),
    ] {
        let mut body = json!({"label": label, "type": kind});
        if !options.is_null() {
            body["possibleValues"] = options;
        }
        define(&app, body).await;
    }
    let path = |slug: &str| format!("/v1/spotMembers/{m}/customPropertiesValues/{slug}");
    for (slug, good, bad) in [
        ("company", json!("Acme"), json!(5)),
        ("seats", json!(12), json!("12")),
        ("consent", json!(true), json!("yes")),
        ("joined", json!("2024-02-29"), json!("2023-02-29")),
        ("plan", json!("pro"), json!("gold")),
        ("topics", json!(["rust", "sql"]), json!(["cobol"])),
    ] {
        let r = app.put(&path(slug), json!({"value": good})).await;
        assert_eq!(r.status, 200, "{slug}: {}", r.text);
        assert_eq!(r.body["value"], good, "{slug}");
        assert_eq!(r.body["customPropertySlug"], slug);
        let r = app.put(&path(slug), json!({"value": bad})).await;
        assert!(assert_ms_error(&r, 400).starts_with("value"), "{slug}");
    }
    let r = app.put(&path("nope"), json!({"value": "x"})).await;
    assert_eq!(assert_ms_error(&r, 404), "Custom property not found");
    let list = app.get(&format!("/v1/spotMembers/{m}/customPropertiesValues")).await;
    assert_eq!(list.body["total"], 6);
    let items = list.body["items"].as_array().unwrap();
    assert_eq!(items[0]["value"], "Acme");
    assert_eq!(items[5]["value"], json!(["rust", "sql"]));
    // null clears a value; an unset property lists null.
    assert_eq!(app.put(&path("company"), json!({"value": null})).await.body["value"], Value::Null);
    let list = app.get(&format!("/v1/spotMembers/{m}/customPropertiesValues?limit=1")).await;
    assert_eq!(list.body["items"][0]["value"], Value::Null);
    assert_eq!(list.body["items"].as_array().unwrap().len(), 1);
});

both!(bulk_upsert_is_all_or_nothing, |app| {
    let m = app.invite("ada@example.com").await;
    define(&app, json!({"label": "Seats", "type": "Number"})).await;
    define(&app, json!({"label": "Plan", "type": "SingleSelect", "possibleValues": ["free", "pro"]})).await;
    let url = format!("/v1/spotMembers/{m}/customPropertiesValues~bulkUpsert");
    let r = app
        .post(
            &url,
            json!([{"customPropertySlug": "seats", "value": 3}, {"customPropertySlug": "plan", "value": "gold"}]),
        )
        .await;
    assert!(assert_ms_error(&r, 400).starts_with("[1].value"), "{}", r.text);
    let list = app.get(&format!("/v1/spotMembers/{m}/customPropertiesValues")).await;
    assert_eq!(list.body["items"][0]["value"], Value::Null, "nothing was written");
    let r = app
        .post(
            &url,
            json!([{"customPropertySlug": "seats", "value": 3}, {"customPropertySlug": "plan", "value": "pro"}]),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body.as_array().unwrap().len(), 2);
    let r = app.post(&url, json!([{"customPropertySlug": "ghost", "value": 1}])).await;
    assert_eq!(assert_ms_error(&r, 404), "Custom property not found");
});

both!(filters_per_type, |app| {
    define(&app, json!({"label": "Seats", "type": "Number"})).await;
    define(&app, json!({"label": "Plan", "type": "SingleSelect", "possibleValues": ["free", "pro"]})).await;
    define(&app, json!({"label": "Topics", "type": "MultipleSelect", "possibleValues": ["rust", "go"]})).await;
    define(&app, json!({"label": "Joined", "type": "Date"})).await;
    define(&app, json!({"label": "Company", "type": "Text"})).await;
    let a = app.invite("a@x.io").await;
    let b = app.invite("b@x.io").await;
    app.invite("c@x.io").await;
    let r = set(&app, &a, json!([{"customPropertySlug": "seats", "value": 5}, {"customPropertySlug": "plan", "value": "pro"},
        {"customPropertySlug": "topics", "value": ["rust", "go"]}, {"customPropertySlug": "joined", "value": "2024-01-10"},
        {"customPropertySlug": "company", "value": "Acme Corp"}])).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let r = set(
        &app,
        &b,
        json!([{"customPropertySlug": "seats", "value": 50}, {"customPropertySlug": "plan", "value": "free"},
        {"customPropertySlug": "topics", "value": ["go"]}, {"customPropertySlug": "joined", "value": "2025-06-01"}]),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(emails(&app, "customProperties.seats[gt]=10").await, vec!["b@x.io"]);
    assert_eq!(emails(&app, "customProperties.seats%5Blte%5D=5").await, vec!["a@x.io"]);
    assert_eq!(emails(&app, "customProperties.plan[eq]=pro").await, vec!["a@x.io"]);
    assert_eq!(emails(&app, "customProperties.plan[in]=pro,free").await, vec!["a@x.io", "b@x.io"]);
    assert_eq!(emails(&app, "customProperties.plan[neq]=pro").await, vec!["b@x.io"]);
    assert_eq!(emails(&app, "customProperties.topics[contains]=rust").await, vec!["a@x.io"]);
    assert_eq!(emails(&app, "customProperties.topics[in]=go").await, vec!["a@x.io", "b@x.io"]);
    assert_eq!(emails(&app, "customProperties.joined[before]=2025-01-01").await, vec!["a@x.io"]);
    assert_eq!(emails(&app, "customProperties.company[contains]=acme").await, vec!["a@x.io"]);
    assert_eq!(emails(&app, "customProperties.seats[gt]=1&email[in]=b@x.io").await, vec!["b@x.io"]);
    for bad in [
        "customProperties.seats[contains]=1",
        "customProperties.ghost[eq]=1",
        "customProperties.plan[eq]=gold",
        "customProperties.seats[gt]=many",
        "customProperties.joined[after]=yesterday",
    ] {
        let r = app.get(&format!("/v1/spotMembers?{bad}")).await;
        let msg = assert_ms_error(&r, 400);
        assert!(msg.starts_with("customProperties."), "{bad}: {msg}");
    }
});

both!(removing_options_and_properties_removes_values, |app| {
    let m = app.invite("a@x.io").await;
    define(&app, json!({"label": "Plan", "type": "SingleSelect", "possibleValues": ["free", "pro", "team"]})).await;
    define(&app, json!({"label": "Topics", "type": "MultipleSelect", "possibleValues": ["rust", "go"]})).await;
    let url = format!("/v1/spotMembers/{m}/customPropertiesValues~bulkUpsert");
    app.post(&url, json!([{"customPropertySlug": "plan", "value": "pro"}, {"customPropertySlug": "topics", "value": ["rust", "go"]}])).await;
    // Rename an option: the stored value follows.
    let r = app.put("/v1/customProperties/plan", json!({"renamedValues": {"pro": "business"}})).await;
    assert_eq!(r.body["possibleValues"], json!(["free", "business", "team"]), "{}", r.text);
    let values = app.get(&format!("/v1/spotMembers/{m}/customPropertiesValues")).await;
    assert_eq!(values.body["items"][0]["value"], "business");
    // Drop an option: its stored values go.
    let r = app.put("/v1/customProperties/topics", json!({"possibleValues": ["go"]})).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let values = app.get(&format!("/v1/spotMembers/{m}/customPropertiesValues")).await;
    assert_eq!(values.body["items"][1]["value"], json!(["go"]));
    // Delete the property, then re-create it: no stale value comes back.
    assert_eq!(app.delete("/v1/customProperties/plan").await.status, 204);
    define(&app, json!({"label": "Plan", "type": "SingleSelect", "possibleValues": ["business"]})).await;
    let r = app.get("/v1/spotMembers?customProperties.plan[eq]=business").await;
    assert_eq!(r.body["total"], 0, "{}", r.text);
});

both!(properties_are_scoped_to_the_spot, |app| {
    define(&app, json!({"label": "Plan", "type": "Text"})).await;
    let (_, other_key) = app.other_spot().await;
    let r = app.send(reqwest::Method::GET, "/v1/customProperties/plan", Some(&other_key), None).await;
    assert_eq!(assert_ms_error(&r, 404), "Custom property not found");
    let m = app.invite("a@x.io").await;
    let r = app
        .send(reqwest::Method::GET, &format!("/v1/spotMembers/{m}/customPropertiesValues"), Some(&other_key), None)
        .await;
    assert_eq!(assert_ms_error(&r, 404), "Spot member not found");
});

both!(smart_groups_follow_property_values, |app| {
    define(&app, json!({"label": "Plan", "type": "SingleSelect", "possibleValues": ["free", "pro"]})).await;
    define(&app, json!({"label": "Seats", "type": "Number"})).await;
    define(&app, json!({"label": "Topics", "type": "MultipleSelect", "possibleValues": ["rust", "go"]})).await;
    let a = app.invite("a@x.io").await;
    let b = app.invite("b@x.io").await;
    set(
        &app,
        &a,
        json!([{"customPropertySlug": "plan", "value": "pro"}, {"customPropertySlug": "seats", "value": 10}]),
    )
    .await;
    let rules = json!({"operator": "OR", "conditions": [
        {"operator": "AND", "triggers": [
            {"field": "customProperties.plan", "op": "eq", "value": "pro"},
            {"field": "customProperties.seats", "op": "gte", "value": 5}]},
        {"operator": "AND", "triggers": [{"field": "customProperties.topics", "op": "contains", "value": "go"}]}]});
    let r = app.post("/v1/groups", json!({"name": "Big pro", "type": "Smart", "rules": rules})).await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(r.body["rules"], rules);
    let gid = r.body["id"].as_str().unwrap().to_string();
    let members_of = |gid: String| {
        let app = &app;
        async move {
            for _ in 0..400 {
                if app.get(&format!("/v1/groups/{gid}")).await.body["ready"] == true {
                    break;
                }
                tokio::time::sleep(std::time::Duration::from_millis(25)).await;
            }
            let r = app.get(&format!("/v1/groups/{gid}/spotMembers")).await;
            let mut v: Vec<String> =
                r.body["items"].as_array().unwrap().iter().map(|m| m["email"].as_str().unwrap().to_string()).collect();
            v.sort();
            v
        }
    };
    assert_eq!(members_of(gid.clone()).await, vec!["a@x.io"]);
    // Value changes move members in and out at once.
    set(&app, &b, json!([{"customPropertySlug": "topics", "value": ["go"]}])).await;
    assert_eq!(members_of(gid.clone()).await, vec!["a@x.io", "b@x.io"]);
    app.put(&format!("/v1/spotMembers/{a}/customPropertiesValues/seats"), json!({"value": 2})).await;
    assert_eq!(members_of(gid.clone()).await, vec!["b@x.io"]);
    app.put(&format!("/v1/spotMembers/{b}/customPropertiesValues/topics"), json!({"value": null})).await;
    assert_eq!(members_of(gid.clone()).await, Vec::<String>::new());
    // A property read by smart-group rules cannot be deleted.
    let r = app.delete("/v1/customProperties/seats").await;
    assert!(assert_ms_error(&r, 409).contains(&gid));
    // Rule validation knows the property's type.
    for (t, path) in [
        (json!({"field": "customProperties.seats", "op": "contains", "value": 1}), "op"),
        (json!({"field": "customProperties.seats", "op": "gt", "value": "five"}), "value"),
        (json!({"field": "customProperties.plan", "op": "eq", "value": "gold"}), "value"),
        (json!({"field": "customProperties.ghost", "op": "eq", "value": "x"}), "field"),
    ] {
        let body = json!({"name": "x", "type": "Smart", "rules": {"operator": "AND", "conditions": [{"operator": "AND", "triggers": [t]}]}});
        let msg = assert_ms_error(&app.post("/v1/groups", body).await, 400);
        assert!(msg.starts_with(&format!("rules.conditions[0].triggers[0].{path}")), "{msg}");
    }
});

/// Value rows stored for the spot, read straight from the database.
async fn stored_values(app: &TestApp) -> i64 {
    let sql = "SELECT COUNT(*) FROM member_property_values WHERE spot_id = $1";
    match &app.db {
        openspot::Db::Sqlite(p, ..) => sqlx::query_scalar(sql).bind(app.spot_id).fetch_one(p).await,
        openspot::Db::Postgres(p) => sqlx::query_scalar(sql).bind(app.spot_id).fetch_one(p).await,
    }
    .expect("count values")
}

both!(deleting_a_property_while_values_are_written_leaves_none_behind, |app| {
    let app = std::sync::Arc::new(app);
    let mut members = Vec::new();
    for i in 0..8 {
        members.push(app.invite(&format!("m{i}@x.io")).await);
    }
    for round in 0..4 {
        define(&app, json!({"label": "Plan", "type": "SingleSelect", "possibleValues": ["free", "pro"]})).await;
        let mut tasks = tokio::task::JoinSet::new();
        for m in &members {
            let (app, m) = (app.clone(), m.clone());
            tasks.spawn(async move {
                let r =
                    app.put(&format!("/v1/spotMembers/{m}/customPropertiesValues/plan"), json!({"value": "pro"})).await;
                assert!(r.status == 200 || r.status == 404, "{}", r.text);
            });
        }
        let app2 = app.clone();
        tasks.spawn(async move {
            assert_eq!(app2.delete("/v1/customProperties/plan").await.status, 204);
        });
        while let Some(r) = tasks.join_next().await {
            r.unwrap();
        }
        assert_eq!(stored_values(&app).await, 0, "round {round}: a value outlived its property");
    }
});

async fn smart_group(app: &TestApp, triggers: Value) -> String {
    let body = json!({"name": "Smart", "type": "Smart", "rules": {"operator": "AND", "conditions": [
        {"operator": "AND", "triggers": triggers}]}});
    let r = app.post("/v1/groups", body).await;
    assert_eq!(r.status, 201, "{}", r.text);
    r.body["id"].as_str().unwrap().to_string()
}

async fn value_of(app: &TestApp, m: &str, slug: &str) -> Value {
    let r = app.get(&format!("/v1/spotMembers/{m}/customPropertiesValues?limit=100")).await;
    assert_eq!(r.status, 200, "{}", r.text);
    r.body["items"].as_array().unwrap().iter().find(|i| i["customPropertySlug"] == slug).unwrap()["value"].clone()
}

both!(renamed_values_swap_and_never_merge, |app| {
    define(&app, json!({"label": "Plan", "type": "SingleSelect", "possibleValues": ["free", "pro", "team"]})).await;
    define(&app, json!({"label": "Tags", "type": "MultipleSelect", "possibleValues": ["x", "y", "z"]})).await;
    let a = app.invite("a@x.io").await;
    let b = app.invite("b@x.io").await;
    set(
        &app,
        &a,
        json!([{"customPropertySlug": "plan", "value": "free"}, {"customPropertySlug": "tags", "value": ["x", "y"]}]),
    )
    .await;
    set(&app, &b, json!([{"customPropertySlug": "plan", "value": "pro"}])).await;

    // A swap swaps the stored values (and the options), it does not merge them.
    let r = app.put("/v1/customProperties/plan", json!({"renamedValues": {"free": "pro", "pro": "free"}})).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["possibleValues"], json!(["pro", "free", "team"]));
    assert_eq!((value_of(&app, &a, "plan").await, value_of(&app, &b, "plan").await), (json!("pro"), json!("free")));
    let r = app.put("/v1/customProperties/tags", json!({"renamedValues": {"x": "y", "y": "x"}})).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(value_of(&app, &a, "tags").await, json!(["y", "x"]), "both rows kept, each renamed once");
    // A rotation onto options that are themselves renamed away is fine too.
    let r = app.put("/v1/customProperties/plan", json!({"renamedValues": {"pro": "team", "team": "gold"}})).await;
    assert_eq!(r.body["possibleValues"], json!(["team", "free", "gold"]), "{}", r.text);
    assert_eq!(value_of(&app, &a, "plan").await, json!("team"));

    // Refused, nothing changed: a rename onto an option that stays, two onto one, an
    // unknown source, an empty target.
    for (renames, needle) in [
        (json!({"free": "team"}), "already a possible value"),
        (json!({"free": "vip", "gold": "vip"}), "both renamed to 'vip'"),
        (json!({"platinum": "vip"}), "'platinum' is not a possible value"),
        (json!({"free": " "}), "empty"),
    ] {
        let r = app.put("/v1/customProperties/plan", json!({ "renamedValues": renames })).await;
        let msg = assert_ms_error(&r, 400);
        assert!(msg.starts_with("renamedValues") && msg.contains(needle), "{renames}: {msg}");
    }
    assert_eq!(app.get("/v1/customProperties/plan").await.body["possibleValues"], json!(["team", "free", "gold"]));
    assert_eq!((value_of(&app, &a, "plan").await, value_of(&app, &b, "plan").await), (json!("team"), json!("free")));
    // Renaming an option to itself changes nothing.
    let r = app.put("/v1/customProperties/plan", json!({"renamedValues": {"free": "free"}})).await;
    assert_eq!(r.body["possibleValues"], json!(["team", "free", "gold"]), "{}", r.text);
});

both!(renaming_or_removing_options_reevaluates_smart_groups, |app| {
    define(&app, json!({"label": "Plan", "type": "SingleSelect", "possibleValues": ["free", "pro", "team"]})).await;
    define(&app, json!({"label": "Tags", "type": "MultipleSelect", "possibleValues": ["x", "y"]})).await;
    let a = app.invite("a@x.io").await;
    let b = app.invite("b@x.io").await;
    set(
        &app,
        &a,
        json!([{"customPropertySlug": "plan", "value": "free"}, {"customPropertySlug": "tags", "value": ["x"]}]),
    )
    .await;
    set(
        &app,
        &b,
        json!([{"customPropertySlug": "plan", "value": "pro"}, {"customPropertySlug": "tags", "value": ["y"]}]),
    )
    .await;
    let pro = smart_group(&app, json!([{"field": "customProperties.plan", "op": "eq", "value": "pro"}])).await;
    let tagged = smart_group(&app, json!([{"field": "customProperties.tags", "op": "in", "value": ["x", "y"]}])).await;
    assert_eq!(smart_members(&app, &pro).await, vec!["b@x.io"]);
    assert_eq!(smart_members(&app, &tagged).await, vec!["a@x.io", "b@x.io"]);

    // Swap: a now holds "pro", b "free"; the group follows at once.
    let r = app.put("/v1/customProperties/plan", json!({"renamedValues": {"free": "pro", "pro": "free"}})).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(smart_members(&app, &pro).await, vec!["a@x.io"]);
    // Rename away: nobody holds "pro" any more.
    let r = app.put("/v1/customProperties/plan", json!({"renamedValues": {"pro": "business"}})).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(smart_members(&app, &pro).await, Vec::<String>::new());
    // Removing an option removes its values and the members it kept in.
    let r = app.put("/v1/customProperties/tags", json!({"possibleValues": ["y"]})).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(smart_members(&app, &tagged).await, vec!["b@x.io"]);
    assert_eq!(app.get(&format!("/v1/groups/{tagged}")).await.body["membersCount"], 1);
});

both!(a_value_put_without_value_is_refused, |app| {
    let m = app.invite("a@x.io").await;
    define(&app, json!({"label": "Company", "type": "Text"})).await;
    let path = format!("/v1/spotMembers/{m}/customPropertiesValues/company");
    assert_eq!(app.put(&path, json!({"value": "Acme"})).await.status, 200);
    // No `value`: 400 naming it, and the stored value stays.
    for body in [json!({}), json!({"valeu": null})] {
        let msg = assert_ms_error(&app.put(&path, body).await, 400);
        assert!(msg.starts_with("value"), "{msg}");
    }
    assert_eq!(value_of(&app, &m, "company").await, json!("Acme"));
    let r =
        set(&app, &m, json!([{"customPropertySlug": "company", "value": "Beta"}, {"customPropertySlug": "company"}]))
            .await;
    assert!(assert_ms_error(&r, 400).starts_with("[1].value"), "{}", r.text);
    assert_eq!(value_of(&app, &m, "company").await, json!("Acme"), "all or nothing");
    // An explicit null clears it.
    let r = app.put(&path, json!({"value": null})).await;
    assert_eq!((r.status, &r.body["value"]), (200, &Value::Null), "{}", r.text);
    assert_eq!(value_of(&app, &m, "company").await, Value::Null);
});

both!(concurrent_value_writes_of_one_member_lose_nothing, |app| {
    let app = std::sync::Arc::new(app);
    define(&app, json!({"label": "Plan", "type": "Text"})).await;
    define(&app, json!({"label": "Seats", "type": "Number"})).await;
    let gid = smart_group(
        &app,
        json!([{"field": "customProperties.plan", "op": "eq", "value": "pro"},
               {"field": "customProperties.seats", "op": "gte", "value": 5}]),
    )
    .await;
    assert_eq!(smart_members(&app, &gid).await, Vec::<String>::new());
    let mut members = Vec::new();
    for i in 0..12 {
        members.push(app.invite(&format!("m{i:02}@x.io")).await);
    }
    // Per member, at once: one property, another property, and a member field.
    let mut tasks = tokio::task::JoinSet::new();
    for (i, m) in members.iter().enumerate() {
        for req in 0..3 {
            let (app, m) = (app.clone(), m.clone());
            tasks.spawn(async move {
                let r = match req {
                    0 => {
                        app.put(&format!("/v1/spotMembers/{m}/customPropertiesValues/plan"), json!({"value": "pro"}))
                            .await
                    }
                    1 => {
                        let body = json!([{"customPropertySlug": "seats", "value": 10}]);
                        app.post(&format!("/v1/spotMembers/{m}/customPropertiesValues~bulkUpsert"), body).await
                    }
                    _ => app.put(&format!("/v1/spotMembers/{m}"), json!({"firstname": format!("F{i}")})).await,
                };
                assert_eq!(r.status, 200, "{}", r.text);
            });
        }
    }
    while let Some(r) = tasks.join_next().await {
        r.unwrap();
    }
    for (i, m) in members.iter().enumerate() {
        assert_eq!((value_of(&app, m, "plan").await, value_of(&app, m, "seats").await), (json!("pro"), json!(10)));
        let r = app.get(&format!("/v1/spotMembers/{m}")).await;
        assert_eq!(r.body["firstname"], format!("F{i}"), "a value write put back a stale member row");
    }
    // Each write re-evaluated the member with the other write's value in sight.
    let expected: Vec<String> = (0..12).map(|i| format!("m{i:02}@x.io")).collect();
    assert_eq!(smart_members(&app, &gid).await, expected);
});

/// Ready, then the group's `total` (bounded wait).
async fn ready_total(app: &TestApp, gid: &str) -> i64 {
    wait_until_ready(app, gid).await;
    app.get(&format!("/v1/groups/{gid}/spotMembers?limit=1")).await.body["total"].as_i64().unwrap()
}

// A rename that touches more members than one transaction should re-evaluate marks the
// groups reading the property not ready and recomputes them in slices; they end exact.
both!(renaming_an_option_held_by_many_recomputes_the_readers, |app| {
    define(&app, json!({"label": "Plan", "type": "SingleSelect", "possibleValues": ["free", "pro"]})).await;
    let mut csv = String::from("email,plan\n");
    for i in 0..700 {
        csv.push_str(&format!("m{i}@x.io,{}\n", if i < 600 { "free" } else { "pro" }));
    }
    let form = reqwest::multipart::Form::new().part("file", crate::ms_import::file_part(csv.into_bytes(), "m.csv"));
    let r = crate::ms_import::upload(&app, form).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let pro = smart_group(&app, json!([{"field": "customProperties.plan", "op": "eq", "value": "pro"}])).await;
    assert_eq!(ready_total(&app, &pro).await, 100);
    // 600 holders of "free" become "pro" and 100 holders of "pro" become "free".
    let r = app.put("/v1/customProperties/plan", json!({"renamedValues": {"free": "pro", "pro": "free"}})).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(ready_total(&app, &pro).await, 600);
    assert_eq!(app.get("/v1/spotMembers?customProperties.plan[eq]=pro&limit=1").await.body["total"], 600);
});

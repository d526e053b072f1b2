//! `/v1/groups` (`meltingspot-api.md` §3.4, contract §4 "Smart groups", §8 "Groups"):
//! CRUD, bulk create, static membership (single, bulk, concurrent), smart groups and
//! their blacklist, rule validation, and spot isolation. Every test runs on SQLite and
//! on PostgreSQL through `both!`.

use std::time::Duration;

use reqwest::Method;
use serde_json::{json, Value};

use crate::both;
use crate::common::{assert_ms_error, Resp, TestApp};

/// A well-formed UUID that names nothing.
const UNKNOWN: &str = "01930000-0000-7000-8000-000000000000";

/// Polling bounds for background work: up to 10 s in 50 ms steps.
const POLL_STEP: Duration = Duration::from_millis(50);
const POLL_TRIES: usize = 200;

fn accepted_rules() -> Value {
    json!({"operator": "AND", "conditions": [
        {"operator": "OR", "triggers": [{"field": "status", "op": "eq", "value": "Accepted"}]}
    ]})
}

/// A smart-group body with one condition holding one trigger.
fn smart(name: &str, trigger: Value) -> Value {
    json!({"name": name, "type": "Smart", "rules": {"operator": "AND", "conditions": [
        {"operator": "AND", "triggers": [trigger]}
    ]}})
}

/// Creates a group; returns its id.
async fn create_group(app: &TestApp, body: Value) -> String {
    let r = app.post("/v1/groups", body).await;
    assert_eq!(r.status, 201, "{}", r.text);
    r.body["id"].as_str().expect("group id").to_string()
}

/// Creates a smart group and waits until its membership has been computed.
async fn create_smart_group(app: &TestApp, body: Value) -> String {
    let id = create_group(app, body).await;
    wait_ready(app, &id).await;
    id
}

/// Invites `email` and sets its status; returns the member id.
async fn member_with_status(app: &TestApp, email: &str, status: &str) -> String {
    let id = app.invite(email).await;
    set_status(app, &id, status).await;
    id
}

async fn set_status(app: &TestApp, id: &str, status: &str) {
    let r = app.put(&format!("/v1/spotMembers/{id}"), json!({ "status": status })).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["status"], status);
}

/// Every member of a group (all pages), emails in list order; checks that `total`
/// counts exactly the listed members.
async fn group_emails(app: &TestApp, gid: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut total = 0;
    for page in 1..=100 {
        let r = app.get(&format!("/v1/groups/{gid}/spotMembers?limit=100&page={page}")).await;
        assert_eq!(r.status, 200, "{}", r.text);
        total = r.body["total"].as_u64().expect("total") as usize;
        let items = r.body["items"].as_array().expect("items");
        out.extend(items.iter().map(|m| m["email"].as_str().expect("email").to_string()));
        if items.len() < 100 {
            break;
        }
    }
    assert_eq!(total, out.len(), "total counts the group's members: {out:?}");
    out
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

fn strings(v: &[&str]) -> Vec<String> {
    sorted(v.iter().map(|s| s.to_string()).collect())
}

/// Polls (bounded) until the group's members are exactly `expected` (any order), then
/// checks the group's `membersCount` too. Fails with the last membership seen.
async fn wait_members(app: &TestApp, gid: &str, expected: &[&str]) {
    let expected = strings(expected);
    let mut seen = Vec::new();
    for _ in 0..POLL_TRIES {
        seen = sorted(group_emails(app, gid).await);
        if seen == expected {
            let g = app.get(&format!("/v1/groups/{gid}")).await;
            assert_eq!(g.body["membersCount"], expected.len(), "{}", g.text);
            return;
        }
        tokio::time::sleep(POLL_STEP).await;
    }
    let missing: Vec<&String> = expected.iter().filter(|e| !seen.contains(e)).collect();
    let extra: Vec<&String> = seen.iter().filter(|e| !expected.contains(e)).collect();
    panic!("group {gid}: {} members instead of {}; missing {missing:?}; extra {extra:?}", seen.len(), expected.len());
}

/// Polls (bounded) until a smart group reports `ready: true`; returns the group.
async fn wait_ready(app: &TestApp, gid: &str) -> Value {
    for _ in 0..POLL_TRIES {
        let r = app.get(&format!("/v1/groups/{gid}")).await;
        assert_eq!(r.status, 200, "{}", r.text);
        if r.body["ready"] == true {
            return r.body;
        }
        tokio::time::sleep(POLL_STEP).await;
    }
    panic!("smart group {gid} never became ready");
}

fn ids_of(r: &Resp, key: &str) -> Vec<String> {
    r.body[key]
        .as_array()
        .unwrap_or_else(|| panic!("{key} in {}", r.text))
        .iter()
        .map(|v| v.as_str().expect("id string").to_string())
        .collect()
}

fn now_s() -> i64 {
    openspot::domain::now_ms() / 1000
}

// ---------------------------------------------------------------------------------
// CRUD
// ---------------------------------------------------------------------------------

both!(create_get_update_delete, |app| {
    let r = app.post("/v1/groups", json!({"name": "Pioneers", "description": "The first ones", "emoji": "🚀"})).await;
    assert_eq!(r.status, 201, "{}", r.text);
    let id = r.body["id"].as_str().unwrap().to_string();
    assert!(uuid::Uuid::parse_str(&id).is_ok(), "{id}");
    for (key, want) in [
        ("name", json!("Pioneers")),
        ("description", json!("The first ones")),
        ("emoji", json!("🚀")),
        ("icon", Value::Null),
        ("type", json!("Static")),
        ("rules", Value::Null),
    ] {
        assert!(r.body.get(key).is_some(), "{key} missing: {}", r.text);
        assert_eq!(r.body[key], want, "{key}: {}", r.text);
    }
    let url = format!("/v1/groups/{id}");
    let got = app.get(&url).await;
    assert_eq!(got.status, 200);
    assert_eq!(got.body, r.body, "GET returns the group as created");

    // Optional fields default to null.
    let r = app.post("/v1/groups", json!({"name": "Bare"})).await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(
        (&r.body["description"], &r.body["emoji"], &r.body["type"]),
        (&Value::Null, &Value::Null, &json!("Static"))
    );

    // `name` is required and must be a non-blank string; other types are checked too.
    for body in [
        json!({}),
        json!({"description": "no name"}),
        json!({"name": ""}),
        json!({"name": "   "}),
        json!({"name": null}),
        json!({"name": 5}),
    ] {
        let msg = assert_ms_error(&app.post("/v1/groups", body.clone()).await, 400);
        assert!(msg.starts_with("name"), "{body} → {msg}");
    }
    let msg = assert_ms_error(&app.post("/v1/groups", json!({"name": "x", "description": 5})).await, 400);
    assert!(msg.starts_with("description"), "{msg}");
    let msg = assert_ms_error(&app.post("/v1/groups", json!({"name": "x", "type": "Dynamic"})).await, 400);
    assert!(msg.starts_with("type"), "{msg}");
    assert_ms_error(&app.post_raw("/v1/groups", b"{\"name\": ".to_vec(), "application/json").await, 400);
    assert_eq!(app.get("/v1/groups").await.body["total"], 2, "refused bodies create nothing");

    // PUT is partial; null clears description and emoji.
    let r = app.put(&url, json!({"name": "Trailblazers"})).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(
        (&r.body["id"], &r.body["name"], &r.body["description"], &r.body["emoji"]),
        (&json!(id), &json!("Trailblazers"), &json!("The first ones"), &json!("🚀"))
    );
    let r = app.put(&url, json!({"description": null})).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!((&r.body["description"], &r.body["emoji"]), (&Value::Null, &json!("🚀")));
    let r = app.put(&url, json!({"emoji": null, "description": "Back again"})).await;
    assert_eq!((&r.body["description"], &r.body["emoji"]), (&json!("Back again"), &Value::Null));
    let r = app.put(&url, json!({})).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["name"], "Trailblazers");
    let got = app.get(&url).await.body;
    assert_eq!(
        (&got["name"], &got["description"], &got["emoji"], &got["type"]),
        (&json!("Trailblazers"), &json!("Back again"), &Value::Null, &json!("Static"))
    );
    assert!(assert_ms_error(&app.put(&url, json!({"name": ""})).await, 400).starts_with("name"));
    assert!(assert_ms_error(&app.put(&url, json!({"name": 7})).await, 400).starts_with("name"));

    // Type and rules are fixed after creation; the refused PUT changes nothing.
    assert_ms_error(&app.put(&url, json!({"rules": accepted_rules()})).await, 409);
    assert_ms_error(&app.put(&url, json!({"type": "Smart"})).await, 409);
    assert_ms_error(&app.put(&url, json!({"name": "Renamed", "type": "Smart", "rules": accepted_rules()})).await, 409);
    assert_eq!(app.get(&url).await.body["name"], "Trailblazers");
    let r = app.put(&url, json!({"type": "Static", "emoji": "⭐"})).await;
    assert_eq!(r.status, 200, "an unchanged type is accepted: {}", r.text);
    assert_eq!(r.body["emoji"], "⭐");

    let r = app.put(&format!("/v1/groups/{UNKNOWN}"), json!({"name": "x"})).await;
    assert_eq!(assert_ms_error(&r, 404), "Group not found");

    // DELETE.
    let r = app.delete(&url).await;
    assert_eq!(r.status, 204, "{}", r.text);
    assert!(r.text.is_empty(), "204 has no body: {}", r.text);
    assert_eq!(assert_ms_error(&app.get(&url).await, 404), "Group not found");
    assert_eq!(assert_ms_error(&app.delete(&url).await, 404), "Group not found");
    assert_eq!(assert_ms_error(&app.put(&url, json!({"name": "x"})).await, 404), "Group not found");
    assert_eq!(assert_ms_error(&app.get("/v1/groups/not-a-uuid").await, 404), "Group not found");
    let list = app.get("/v1/groups").await;
    assert_eq!(list.body["total"], 1);
    assert_eq!(list.body["items"][0]["name"], "Bare");
});

both!(list_pagination_and_filters, |app| {
    let names = ["Alpha Team", "beta testers", "Gamma", "Alphabet Soup", "50% off", "Delta"];
    let mut ids = Vec::new();
    for n in names {
        ids.push(create_group(&app, json!({ "name": n })).await);
    }
    let names_of = |r: &Resp| -> Vec<String> {
        r.body["items"].as_array().unwrap().iter().map(|g| g["name"].as_str().unwrap().to_string()).collect()
    };
    let r = app.get("/v1/groups").await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["total"], 6);
    assert_eq!(names_of(&r), names, "creation order");
    let r = app.get("/v1/groups?limit=2").await;
    assert_eq!((names_of(&r), &r.body["total"]), (vec!["Alpha Team".to_string(), "beta testers".into()], &json!(6)));
    let r = app.get("/v1/groups?limit=4&page=2").await;
    assert_eq!((names_of(&r), &r.body["total"]), (vec!["50% off".to_string(), "Delta".into()], &json!(6)));
    let r = app.get("/v1/groups?limit=2&page=4").await;
    assert_eq!((r.body["items"].clone(), r.body["total"].clone()), (json!([]), json!(6)));

    let r = app.get("/v1/groups?name[eq]=Gamma").await;
    assert_eq!((&r.body["total"], &r.body["items"][0]["id"]), (&json!(1), &json!(ids[2])));
    let r = app.get("/v1/groups?name[eq]=Alpha%20Team").await;
    assert_eq!(names_of(&r), vec!["Alpha Team"]);
    assert_eq!(app.get("/v1/groups?name[eq]=Gam").await.body["total"], 0, "eq is not a substring match");

    let r = app.get("/v1/groups?name[contains]=ALPHA").await;
    assert_eq!((names_of(&r), &r.body["total"]), (vec!["Alpha Team".to_string(), "Alphabet Soup".into()], &json!(2)));
    assert_eq!(names_of(&app.get("/v1/groups?name[contains]=TeSt").await), vec!["beta testers"]);
    let r = app.get("/v1/groups?name[contains]=alpha&limit=1&page=2").await;
    assert_eq!((names_of(&r), &r.body["total"]), (vec!["Alphabet Soup".to_string()], &json!(2)));
    assert_eq!(names_of(&app.get("/v1/groups?name%5Bcontains%5D=gam").await), vec!["Gamma"]);
    // LIKE wildcards are matched literally.
    assert_eq!(names_of(&app.get("/v1/groups?name[contains]=%25").await), vec!["50% off"]);
    assert_eq!(app.get("/v1/groups?name[contains]=_").await.body["total"], 0);
    let r = app.get("/v1/groups?name[contains]=zzz").await;
    assert_eq!((r.body["items"].clone(), r.body["total"].clone()), (json!([]), json!(0)));
    let r = app.get("/v1/groups?name[contains]=a&name[eq]=Delta").await;
    assert_eq!(names_of(&r), vec!["Delta"], "filters combine");

    for (q, param) in [
        ("page=0", "page"),
        ("limit=0", "limit"),
        ("limit=101", "limit"),
        ("page=x", "page"),
        ("name[in]=Gamma", "name[in]"),
        ("name[like]=Gamma", "name[like]"),
        ("description[eq]=x", "description[eq]"),
        ("type[eq]=Smart", "type[eq]"),
    ] {
        let msg = assert_ms_error(&app.get(&format!("/v1/groups?{q}")).await, 400);
        assert!(msg.starts_with(param), "{q} → {msg}");
    }
    assert_eq!(app.send(Method::GET, "/v1/groups", None, None).await.status, 401);
});

both!(deleting_a_group_keeps_its_members, |app| {
    let a = app.invite("a@x.io").await;
    let b = app.invite("b@x.io").await;
    let gid = create_group(&app, json!({"name": "Doomed"})).await;
    let keep = create_group(&app, json!({"name": "Kept"})).await;
    for g in [&gid, &keep] {
        let r = app.post(&format!("/v1/groups/{g}/spotMembers~bulkAdd"), json!({"spotMemberIds": [a, b]})).await;
        assert_eq!(r.status, 200, "{}", r.text);
    }
    assert_eq!(app.delete(&format!("/v1/groups/{gid}")).await.status, 204);
    assert_eq!(assert_ms_error(&app.get(&format!("/v1/groups/{gid}/spotMembers")).await, 404), "Group not found");
    let members = app.get("/v1/spotMembers").await;
    assert_eq!(members.body["total"], 2, "{}", members.text);
    for m in [&a, &b] {
        assert_eq!(app.get(&format!("/v1/spotMembers/{m}")).await.status, 200);
    }
    assert_eq!(group_emails(&app, &keep).await, vec!["a@x.io", "b@x.io"], "other groups are untouched");
    // A new group of the same name starts empty.
    let again = create_group(&app, json!({"name": "Doomed"})).await;
    assert_eq!(group_emails(&app, &again).await, Vec::<String>::new());
    assert_eq!(app.get(&format!("/v1/groups/{again}")).await.body["membersCount"], 0);
});

// ---------------------------------------------------------------------------------
// bulkCreate
// ---------------------------------------------------------------------------------

both!(bulk_create, |app| {
    let accepted = member_with_status(&app, "on@x.io", "Accepted").await;
    let items = json!([
        {"name": "A", "description": "first", "emoji": "🅰️"},
        {"description": "no name"},
        {"name": 5},
        "not an object",
        {"name": "B"},
        {"name": "   "},
        {"name": "Smart without rules", "type": "Smart"},
        null,
        [{"name": "nested"}],
        {"name": "Active", "type": "Smart", "rules": accepted_rules()},
        {"name": "Static with rules", "rules": accepted_rules()}
    ]);
    let r = app.post("/v1/groups~bulkCreate", items).await;
    assert_eq!(r.status, 201, "{}", r.text);
    let created = r.body["created"].as_array().unwrap();
    let names: Vec<&str> = created.iter().map(|g| g["name"].as_str().unwrap()).collect();
    assert_eq!(names, vec!["A", "B", "Active"]);
    assert_eq!(
        (
            &created[0]["description"],
            &created[0]["emoji"],
            &created[0]["icon"],
            &created[0]["type"],
            &created[0]["rules"]
        ),
        (&json!("first"), &json!("🅰️"), &Value::Null, &json!("Static"), &Value::Null)
    );
    assert_eq!((&created[1]["description"], &created[1]["emoji"]), (&Value::Null, &Value::Null));
    assert_eq!((&created[2]["type"], &created[2]["rules"]), (&json!("Smart"), &accepted_rules()));
    assert_eq!(
        r.body["failed"],
        json!([
            {"description": "no name"},
            {"name": 5},
            "not an object",
            {"name": "   "},
            {"name": "Smart without rules", "type": "Smart"},
            null,
            [{"name": "nested"}],
            {"name": "Static with rules", "rules": accepted_rules()}
        ]),
        "failed items echo their input exactly"
    );
    let list = app.get("/v1/groups").await;
    assert_eq!(list.body["total"], 3);
    for g in created {
        let got = app.get(&format!("/v1/groups/{}", g["id"].as_str().unwrap())).await;
        assert_eq!((&got.body["name"], &got.body["type"]), (&g["name"], &g["type"]));
    }
    // The smart group created in bulk is computed like any other.
    let smart_id = created[2]["id"].as_str().unwrap().to_string();
    wait_ready(&app, &smart_id).await;
    wait_members(&app, &smart_id, &["on@x.io"]).await;
    assert_eq!(app.get(&format!("/v1/spotMembers/{accepted}")).await.status, 200);

    // Only invalid items: still 201, nothing created.
    let r = app.post("/v1/groups~bulkCreate", json!([{"nope": 1}])).await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!((r.body["created"].clone(), r.body["failed"].clone()), (json!([]), json!([{"nope": 1}])));

    // Not a non-empty array → 400; over 200 items → 413; nothing written.
    for body in [json!([]), json!({"name": "x"}), json!("x"), json!(null)] {
        assert_ms_error(&app.post("/v1/groups~bulkCreate", body).await, 400);
    }
    let many: Vec<Value> = (0..201).map(|i| json!({"name": format!("g{i}")})).collect();
    assert_eq!(assert_ms_error(&app.post("/v1/groups~bulkCreate", json!(many)).await, 413), "Payload is too large");
    assert_eq!(app.get("/v1/groups").await.body["total"], 3);

    // Exactly 200 is accepted.
    let max: Vec<Value> = (0..200).map(|i| json!({"name": format!("g{i}")})).collect();
    let r = app.post("/v1/groups~bulkCreate", json!(max)).await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(r.body["created"].as_array().unwrap().len(), 200);
    assert_eq!(r.body["failed"], json!([]));
    assert_eq!(app.get("/v1/groups").await.body["total"], 203);
});

// ---------------------------------------------------------------------------------
// Static membership
// ---------------------------------------------------------------------------------

both!(add_member_is_idempotent_and_checked, |app| {
    let gid = create_group(&app, json!({"name": "G"})).await;
    let a = app.invite("a@x.io").await;
    let url = format!("/v1/groups/{gid}/spotMembers");
    for _ in 0..2 {
        let r = app.post(&url, json!({ "spotMemberId": a })).await;
        assert_eq!(r.status, 204, "{}", r.text);
        assert!(r.text.is_empty(), "204 has no body: {}", r.text);
    }
    assert_eq!(group_emails(&app, &gid).await, vec!["a@x.io"]);
    assert_eq!(app.get(&format!("/v1/groups/{gid}")).await.body["membersCount"], 1);

    for bad in [UNKNOWN, "not-a-uuid"] {
        let r = app.post(&url, json!({ "spotMemberId": bad })).await;
        assert_eq!(assert_ms_error(&r, 404), "Spot member not found", "{bad}");
    }
    let (_, other_key) = app.other_spot().await;
    let foreign = app.send(Method::POST, "/v1/spotMembers", Some(&other_key), Some(json!({"email": "z@x.io"}))).await;
    assert_eq!(foreign.status, 201, "{}", foreign.text);
    let r = app.post(&url, json!({"spotMemberId": foreign.body["id"]})).await;
    assert_eq!(assert_ms_error(&r, 404), "Spot member not found", "another spot's member is unknown here");

    for group in [UNKNOWN, "not-a-uuid"] {
        let r = app.post(&format!("/v1/groups/{group}/spotMembers"), json!({ "spotMemberId": a })).await;
        assert_eq!(assert_ms_error(&r, 404), "Group not found", "{group}");
    }
    let r = app.post(&format!("/v1/groups/{UNKNOWN}/spotMembers"), json!({ "spotMemberId": UNKNOWN })).await;
    assert_eq!(assert_ms_error(&r, 404), "Group not found", "the group is checked first");
    assert!(assert_ms_error(&app.post(&url, json!({})).await, 400).starts_with("spotMemberId"));
    assert!(assert_ms_error(&app.post(&url, json!({"spotMemberId": 5})).await, 400).starts_with("spotMemberId"));
    assert_eq!(group_emails(&app, &gid).await, vec!["a@x.io"], "failed adds change nothing");

    // Concurrent adds of one member: one membership, count 1.
    let b = app.invite("b@x.io").await;
    let mut tasks = Vec::new();
    for _ in 0..10 {
        let (client, full, key) = (app.client.clone(), format!("{}{url}", app.base), app.key.clone());
        let body = json!({ "spotMemberId": b });
        tasks.push(tokio::spawn(async move {
            client.post(full).header("authorization", key).json(&body).send().await.unwrap().status().as_u16()
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), 204);
    }
    wait_members(&app, &gid, &["a@x.io", "b@x.io"]).await;
});

both!(group_member_list_and_filters, |app| {
    let people = [
        ("ada@x.io", "Ada", "Lovelace"),
        ("alan@x.io", "Alan", "Turing"),
        ("grace@x.io", "Grace", "Hopper"),
        ("outsider@x.io", "Ada", "Outsider"),
    ];
    let mut ids = Vec::new();
    for (email, first, last) in people {
        let id = app.invite(email).await;
        let r = app.put(&format!("/v1/spotMembers/{id}"), json!({"firstname": first, "lastname": last})).await;
        assert_eq!(r.status, 200, "{}", r.text);
        ids.push(id);
    }
    let gid = create_group(&app, json!({"name": "Pioneers"})).await;
    let r = app.post(&format!("/v1/groups/{gid}/spotMembers~bulkAdd"), json!({"spotMemberIds": ids[..3]})).await;
    assert_eq!(r.status, 200, "{}", r.text);
    set_status(&app, &ids[1], "Accepted").await;

    let base = format!("/v1/groups/{gid}/spotMembers");
    let emails_of = |r: &Resp| -> Vec<String> {
        assert_eq!(r.status, 200, "{}", r.text);
        r.body["items"].as_array().unwrap().iter().map(|m| m["email"].as_str().unwrap().to_string()).collect()
    };
    let r = app.get(&base).await;
    assert_eq!(emails_of(&r), vec!["ada@x.io", "alan@x.io", "grace@x.io"], "creation order");
    assert_eq!(r.body["total"], 3);
    // Items are full SpotMember objects, as GET /v1/spotMembers/{id} shows them.
    for (i, item) in r.body["items"].as_array().unwrap().iter().enumerate() {
        assert_eq!(item, &app.get(&format!("/v1/spotMembers/{}", ids[i])).await.body);
    }
    let r = app.get(&format!("{base}?limit=2")).await;
    assert_eq!((emails_of(&r), &r.body["total"]), (vec!["ada@x.io".to_string(), "alan@x.io".into()], &json!(3)));
    let r = app.get(&format!("{base}?limit=2&page=2")).await;
    assert_eq!((emails_of(&r), &r.body["total"]), (vec!["grace@x.io".to_string()], &json!(3)));

    let cases: Vec<(String, Vec<&str>)> = vec![
        ("email[in]=ADA@X.IO,grace@x.io".into(), vec!["ada@x.io", "grace@x.io"]),
        ("email[in]=ada@x.io&email[in]=alan@x.io".into(), vec!["ada@x.io", "alan@x.io"]),
        ("email%5Bin%5D=alan@x.io".into(), vec!["alan@x.io"]),
        ("email[in]=outsider@x.io".into(), vec![]),
        ("firstname[in]=Ada".into(), vec!["ada@x.io"]),
        ("firstname[in]=Alan,Grace".into(), vec!["alan@x.io", "grace@x.io"]),
        ("lastname[in]=Turing&lastname[in]=Hopper".into(), vec!["alan@x.io", "grace@x.io"]),
        ("firstname[in]=Ada&lastname[in]=Turing".into(), vec![]),
        (format!("registrationDate[after]={}", now_s() - 3600), vec!["alan@x.io"]),
        (format!("registrationDate[after]={}", (now_s() - 3600) * 1000), vec!["alan@x.io"]),
        (format!("registrationDate[before]={}", now_s() + 3600), vec!["alan@x.io"]),
        (format!("registrationDate[before]={}", now_s() - 3600), vec![]),
        (format!("registrationDate[after]={}", now_s() + 3600), vec![]),
        (format!("registrationDate[after]={}&email[in]=ada@x.io", now_s() - 3600), vec![]),
    ];
    for (q, want) in cases {
        let r = app.get(&format!("{base}?{q}")).await;
        assert_eq!(emails_of(&r), want, "{q}");
        assert_eq!(r.body["total"], want.len(), "{q}");
    }

    for (q, param) in [
        ("customRoleId[eq]=x", "customRoleId[eq]"),
        ("invitationDate[after]=1", "invitationDate[after]"),
        ("email[eq]=ada@x.io", "email[eq]"),
        ("status[eq]=Accepted", "status[eq]"),
        ("registrationDate[after]=soon", "registrationDate[after]"),
        ("registrationDate[eq]=1", "registrationDate[eq]"),
        ("limit=101", "limit"),
        ("page=0", "page"),
    ] {
        let msg = assert_ms_error(&app.get(&format!("{base}?{q}")).await, 400);
        assert!(msg.starts_with(param), "{q} → {msg}");
    }
    let r = app.get(&format!("/v1/groups/{UNKNOWN}/spotMembers")).await;
    assert_eq!(assert_ms_error(&r, 404), "Group not found");
});

both!(bulk_add_reports_exact_lists, |app| {
    let a = app.invite("a@x.io").await;
    let b = app.invite("b@x.io").await;
    let c = app.invite("c@x.io").await;
    let gid = create_group(&app, json!({"name": "G"})).await;
    assert_eq!(app.post(&format!("/v1/groups/{gid}/spotMembers"), json!({ "spotMemberId": a })).await.status, 204);

    let (_, other_key) = app.other_spot().await;
    let foreign = app.send(Method::POST, "/v1/spotMembers", Some(&other_key), Some(json!({"email": "z@x.io"}))).await;
    assert_eq!(foreign.status, 201, "{}", foreign.text);
    let foreign = foreign.body["id"].as_str().unwrap().to_string();

    let url = format!("/v1/groups/{gid}/spotMembers~bulkAdd");
    let r = app.post(&url, json!({"spotMemberIds": [b, a, UNKNOWN, "not-a-uuid", foreign, c]})).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(
        ids_of(&r, "addedSpotMemberIds"),
        vec![b.clone(), a.clone(), c.clone()],
        "a member already there counts as added"
    );
    assert_eq!(
        ids_of(&r, "failedSpotMemberIds"),
        vec![UNKNOWN.to_string(), "not-a-uuid".into(), foreign.clone()],
        "unknown, malformed and foreign ids fail, in request order"
    );
    wait_members(&app, &gid, &["a@x.io", "b@x.io", "c@x.io"]).await;
    // The foreign member is not in the group, and its own spot still has it alone.
    let other_members = app.send(Method::GET, "/v1/spotMembers", Some(&other_key), None).await;
    assert_eq!(other_members.body["total"], 1, "{}", other_members.text);
    assert_eq!(other_members.body["items"][0]["id"], foreign.as_str());

    // A repeated id is added once.
    let d = app.invite("d@x.io").await;
    let r = app.post(&url, json!({"spotMemberIds": [d, d]})).await;
    assert_eq!((ids_of(&r, "addedSpotMemberIds"), ids_of(&r, "failedSpotMemberIds")), (vec![d.clone()], vec![]));
    wait_members(&app, &gid, &["a@x.io", "b@x.io", "c@x.io", "d@x.io"]).await;

    // Bad bodies: 400; more than 200 ids: 413 with nothing added.
    for body in [json!({"spotMemberIds": []}), json!({}), json!({"spotMemberIds": "x"}), json!({"spotMemberIds": [1]})]
    {
        let msg = assert_ms_error(&app.post(&url, body.clone()).await, 400);
        assert!(msg.starts_with("spotMemberIds"), "{body} → {msg}");
    }
    let e = app.invite("e@x.io").await;
    let many: Vec<&str> = (0..201).map(|_| e.as_str()).collect();
    assert_eq!(assert_ms_error(&app.post(&url, json!({ "spotMemberIds": many })).await, 413), "Payload is too large");
    let many: Vec<&str> = (0..200).map(|_| e.as_str()).collect();
    let r = app.post(&url, json!({ "spotMemberIds": many })).await;
    assert_eq!(r.status, 200, "200 ids are accepted: {}", r.text);
    assert_eq!(ids_of(&r, "addedSpotMemberIds"), vec![e.clone()]);
    wait_members(&app, &gid, &["a@x.io", "b@x.io", "c@x.io", "d@x.io", "e@x.io"]).await;

    let r = app.post(&format!("/v1/groups/{UNKNOWN}/spotMembers~bulkAdd"), json!({ "spotMemberIds": [a] })).await;
    assert_eq!(assert_ms_error(&r, 404), "Group not found");
});

both!(concurrent_bulk_adds_make_the_union, |app| {
    let gid = create_group(&app, json!({"name": "G"})).await;
    let emails: Vec<String> = (0..30).map(|i| format!("m{i:02}@x.io")).collect();
    let r = app.post("/v1/spotMembers~bulkInvite", json!({ "emails": emails })).await;
    assert_eq!(r.status, 201, "{}", r.text);
    let ids: Vec<String> =
        r.body["created"].as_array().unwrap().iter().map(|m| m["id"].as_str().unwrap().to_string()).collect();
    assert_eq!(ids.len(), 30);
    // Ten overlapping windows of 12 members (starting every 3rd member, wrapping): together all 30.
    let subsets: Vec<Vec<String>> = (0..10).map(|k| (0..12).map(|j| ids[(3 * k + j) % 30].clone()).collect()).collect();
    let mut tasks = Vec::new();
    for subset in subsets.clone() {
        let (client, url, key) =
            (app.client.clone(), format!("{}/v1/groups/{gid}/spotMembers~bulkAdd", app.base), app.key.clone());
        tasks.push(tokio::spawn(async move {
            let r =
                client.post(url).header("authorization", key).json(&json!({ "spotMemberIds": subset })).send().await;
            let r = r.unwrap();
            (r.status().as_u16(), r.json::<Value>().await.unwrap())
        }));
    }
    for (t, subset) in tasks.into_iter().zip(subsets) {
        let (status, body) = t.await.unwrap();
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["addedSpotMemberIds"], json!(subset), "every id of the window counts as added");
        assert_eq!(body["failedSpotMemberIds"], json!([]));
    }
    let listed = group_emails(&app, &gid).await;
    assert_eq!(listed, emails, "exactly the union, once each, in creation order");
    assert_eq!(app.get(&format!("/v1/groups/{gid}")).await.body["membersCount"], 30);
    let r = app.get(&format!("/v1/groups/{gid}/spotMembers?limit=5")).await;
    assert_eq!(r.body["total"], 30);
});

both!(bulk_remove_counts_actual_removals, |app| {
    let a = app.invite("a@x.io").await;
    let b = app.invite("b@x.io").await;
    let c = app.invite("c@x.io").await;
    let d = app.invite("d@x.io").await;
    let gid = create_group(&app, json!({"name": "G"})).await;
    let r = app.post(&format!("/v1/groups/{gid}/spotMembers~bulkAdd"), json!({"spotMemberIds": [a, b, c]})).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let url = format!("/v1/groups/{gid}/spotMembers~bulkRemove");

    let r = app.post(&url, json!({"spotMemberIds": [a, a, d, UNKNOWN, "not-a-uuid"]})).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body, json!({"removedSpotMembersCount": 1}), "a repeated id and non-members do not count");
    wait_members(&app, &gid, &["b@x.io", "c@x.io"]).await;
    let r = app.post(&url, json!({ "spotMemberIds": [a] })).await;
    assert_eq!(r.body, json!({"removedSpotMembersCount": 0}), "already removed");
    let r = app.post(&url, json!({"spotMemberIds": [c, b]})).await;
    assert_eq!(r.body, json!({"removedSpotMembersCount": 2}));
    wait_members(&app, &gid, &[]).await;
    assert_eq!(app.get("/v1/spotMembers").await.body["total"], 4, "members stay in the spot");

    for body in [json!({"spotMemberIds": []}), json!({}), json!({"spotMemberIds": [true]})] {
        let msg = assert_ms_error(&app.post(&url, body.clone()).await, 400);
        assert!(msg.starts_with("spotMemberIds"), "{body} → {msg}");
    }
    let many: Vec<&str> = (0..201).map(|_| a.as_str()).collect();
    assert_eq!(assert_ms_error(&app.post(&url, json!({ "spotMemberIds": many })).await, 413), "Payload is too large");
    let r = app.post(&format!("/v1/groups/{UNKNOWN}/spotMembers~bulkRemove"), json!({ "spotMemberIds": [a] })).await;
    assert_eq!(assert_ms_error(&r, 404), "Group not found");
});

// ---------------------------------------------------------------------------------
// Smart groups
// ---------------------------------------------------------------------------------

both!(smart_group_follows_member_changes, |app| {
    let a = member_with_status(&app, "a@x.io", "Accepted").await;
    let b = app.invite("b@x.io").await;
    app.invite("c@x.io").await;
    let rules = accepted_rules();
    let r = app.post("/v1/groups", json!({"name": "Active", "type": "Smart", "rules": rules})).await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!((&r.body["type"], &r.body["rules"], &r.body["name"]), (&json!("Smart"), &rules, &json!("Active")));
    assert_eq!((&r.body["description"], &r.body["emoji"], &r.body["icon"]), (&Value::Null, &Value::Null, &Value::Null));
    let gid = r.body["id"].as_str().unwrap().to_string();
    let g = wait_ready(&app, &gid).await;
    assert_eq!((&g["type"], &g["rules"]), (&json!("Smart"), &rules));
    assert_eq!(group_emails(&app, &gid).await, vec!["a@x.io"], "existing matching members are in");

    set_status(&app, &b, "Accepted").await;
    wait_members(&app, &gid, &["a@x.io", "b@x.io"]).await;
    set_status(&app, &a, "Deactivated").await;
    wait_members(&app, &gid, &["b@x.io"]).await;
    let d = app.invite("d@x.io").await;
    wait_members(&app, &gid, &["b@x.io"]).await;
    set_status(&app, &d, "Accepted").await;
    wait_members(&app, &gid, &["b@x.io", "d@x.io"]).await;
    set_status(&app, &a, "Accepted").await;
    wait_members(&app, &gid, &["a@x.io", "b@x.io", "d@x.io"]).await;
    set_status(&app, &b, "Rejected").await;
    wait_members(&app, &gid, &["a@x.io", "d@x.io"]).await;

    // The list shows the smart group with its rules.
    let list = app.get("/v1/groups").await;
    assert_eq!((&list.body["items"][0]["type"], &list.body["items"][0]["rules"]), (&json!("Smart"), &rules));

    // Name, description and emoji can be edited; type and rules cannot.
    let url = format!("/v1/groups/{gid}");
    let r = app.put(&url, json!({"name": "Actives", "emoji": "✅"})).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!((&r.body["name"], &r.body["type"], &r.body["rules"]), (&json!("Actives"), &json!("Smart"), &rules));
    assert_ms_error(&app.put(&url, json!({"type": "Static"})).await, 409);
    assert_ms_error(&app.put(&url, json!({ "rules": rules })).await, 409);
    wait_members(&app, &gid, &["a@x.io", "d@x.io"]).await;

    // Once deleted, member writes no longer touch it.
    assert_eq!(app.delete(&url).await.status, 204);
    set_status(&app, &b, "Accepted").await;
    assert_eq!(assert_ms_error(&app.get(&url).await, 404), "Group not found");
});

both!(smart_group_blacklist, |app| {
    let a = member_with_status(&app, "a@x.io", "Accepted").await;
    let b = member_with_status(&app, "b@x.io", "Accepted").await;
    let c = member_with_status(&app, "c@x.io", "Accepted").await;
    let d = app.invite("d@x.io").await;
    let gid = create_smart_group(&app, json!({"name": "Active", "type": "Smart", "rules": accepted_rules()})).await;
    wait_members(&app, &gid, &["a@x.io", "b@x.io", "c@x.io"]).await;
    let add = format!("/v1/groups/{gid}/blacklist~bulkAdd");
    let remove = format!("/v1/groups/{gid}/blacklist~bulkRemove");

    let r = app.post(&add, json!({ "spotMemberIds": [c] })).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body, json!({"blacklistedSpotMemberIds": [c]}));
    wait_members(&app, &gid, &["a@x.io", "b@x.io"]).await;
    // A blacklisted member does not rejoin on later updates.
    let r = app.put(&format!("/v1/spotMembers/{c}"), json!({"firstname": "Cy", "status": "Accepted"})).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(sorted(group_emails(&app, &gid).await), strings(&["a@x.io", "b@x.io"]));
    set_status(&app, &c, "Deactivated").await;
    set_status(&app, &c, "Accepted").await;
    assert_eq!(sorted(group_emails(&app, &gid).await), strings(&["a@x.io", "b@x.io"]));

    // Unknown, malformed and foreign ids are ignored; a non-matching member can be listed too.
    let (_, other_key) = app.other_spot().await;
    let foreign = app.send(Method::POST, "/v1/spotMembers", Some(&other_key), Some(json!({"email": "z@x.io"}))).await;
    let foreign = foreign.body["id"].as_str().unwrap().to_string();
    let r = app.post(&add, json!({"spotMemberIds": [b, UNKNOWN, "not-a-uuid", foreign, d, c]})).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body, json!({"blacklistedSpotMemberIds": [b, c, d]}), "the whole list, in creation order");
    wait_members(&app, &gid, &["a@x.io"]).await;
    set_status(&app, &d, "Accepted").await;
    assert_eq!(group_emails(&app, &gid).await, vec!["a@x.io"], "blacklisted before matching: stays out");

    // Removing from the blacklist puts a matching member back at once.
    let r = app.post(&remove, json!({ "spotMemberIds": [c, UNKNOWN] })).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body, json!({"blacklistedSpotMemberIds": [b, d]}));
    wait_members(&app, &gid, &["a@x.io", "c@x.io"]).await;
    // A member that no longer matches is not put back, but joins when it matches again.
    set_status(&app, &b, "Deactivated").await;
    let r = app.post(&remove, json!({"spotMemberIds": [b, d]})).await;
    assert_eq!(r.body, json!({"blacklistedSpotMemberIds": []}), "{}", r.text);
    wait_members(&app, &gid, &["a@x.io", "c@x.io", "d@x.io"]).await;
    set_status(&app, &b, "Accepted").await;
    wait_members(&app, &gid, &["a@x.io", "b@x.io", "c@x.io", "d@x.io"]).await;

    // Errors: static group → 409; bad bodies → 400; over 200 → 413; unknown group → 404.
    let st = create_group(&app, json!({"name": "Static"})).await;
    for verb in ["bulkAdd", "bulkRemove"] {
        let r = app.post(&format!("/v1/groups/{st}/blacklist~{verb}"), json!({ "spotMemberIds": [a] })).await;
        assert_ms_error(&r, 409);
        let r = app.post(&format!("/v1/groups/{UNKNOWN}/blacklist~{verb}"), json!({ "spotMemberIds": [a] })).await;
        assert_eq!(assert_ms_error(&r, 404), "Group not found");
        let url = format!("/v1/groups/{gid}/blacklist~{verb}");
        assert!(assert_ms_error(&app.post(&url, json!({"spotMemberIds": []})).await, 400).starts_with("spotMemberIds"));
        let many: Vec<&str> = (0..201).map(|_| a.as_str()).collect();
        assert_eq!(
            assert_ms_error(&app.post(&url, json!({ "spotMemberIds": many })).await, 413),
            "Payload is too large"
        );
    }
    wait_members(&app, &gid, &["a@x.io", "b@x.io", "c@x.io", "d@x.io"]).await;
});

both!(smart_group_refuses_manual_changes, |app| {
    let a = member_with_status(&app, "a@x.io", "Accepted").await;
    let b = app.invite("b@x.io").await;
    let gid = create_smart_group(&app, json!({"name": "Active", "type": "Smart", "rules": accepted_rules()})).await;
    wait_members(&app, &gid, &["a@x.io"]).await;

    for m in [&a, &b] {
        let r = app.post(&format!("/v1/groups/{gid}/spotMembers"), json!({ "spotMemberId": m })).await;
        assert_ms_error(&r, 409);
    }
    let r = app
        .post(&format!("/v1/groups/{gid}/spotMembers~bulkAdd"), json!({"spotMemberIds": [b, a, "not-a-uuid"]}))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body, json!({"addedSpotMemberIds": [], "failedSpotMemberIds": [b, a, "not-a-uuid"]}));
    let r = app.post(&format!("/v1/groups/{gid}/spotMembers~bulkRemove"), json!({ "spotMemberIds": [a] })).await;
    assert_ms_error(&r, 409);
    wait_members(&app, &gid, &["a@x.io"]).await;
});

both!(smart_groups_on_email_and_registration_date, |app| {
    let ann = app.invite("ann@corp.io").await;
    let bob = app.invite("bob@home.io").await;
    app.invite("Cy@CORP.io").await;
    let corp =
        create_smart_group(&app, smart("corp", json!({"field": "email", "op": "contains", "value": "@Corp."}))).await;
    wait_members(&app, &corp, &["Cy@CORP.io", "ann@corp.io"]).await;
    app.invite("dan@corp.io").await;
    app.invite("eve@corporate.io").await;
    wait_members(&app, &corp, &["Cy@CORP.io", "ann@corp.io", "dan@corp.io"]).await;

    let since = now_s() - 3600;
    let trigger = json!({"field": "registrationDate", "op": "after", "value": since});
    let r = app.post("/v1/groups", smart("recent", trigger.clone())).await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(r.body["rules"]["conditions"][0]["triggers"][0], trigger, "dates are shown in Unix seconds");
    let recent = r.body["id"].as_str().unwrap().to_string();
    wait_ready(&app, &recent).await;
    wait_members(&app, &recent, &[]).await;
    let old =
        create_smart_group(&app, smart("old", json!({"field": "registrationDate", "op": "before", "value": since})))
            .await;
    set_status(&app, &bob, "Accepted").await;
    wait_members(&app, &recent, &["bob@home.io"]).await;
    set_status(&app, &ann, "Accepted").await;
    wait_members(&app, &recent, &["ann@corp.io", "bob@home.io"]).await;
    // Registration is kept when the status moves on.
    set_status(&app, &ann, "Deactivated").await;
    wait_members(&app, &recent, &["ann@corp.io", "bob@home.io"]).await;
    wait_members(&app, &old, &[]).await;
    wait_members(&app, &corp, &["Cy@CORP.io", "ann@corp.io", "dan@corp.io"]).await;
});

both!(smart_group_and_or_tree, |app| {
    let ann = app.invite("ann@corp.io").await;
    let bob = app.invite("bob@home.io").await;
    app.invite("cy@corp.io").await;
    let r = app.put(&format!("/v1/spotMembers/{bob}"), json!({"firstname": "Bob"})).await;
    assert_eq!(r.status, 200, "{}", r.text);
    // (corp AND Accepted) OR (firstname is Bob AND role Admin)
    let rules = json!({"operator": "OR", "conditions": [
        {"operator": "AND", "triggers": [
            {"field": "email", "op": "contains", "value": "@corp.io"},
            {"field": "status", "op": "in", "value": ["Accepted"]}]},
        {"operator": "AND", "triggers": [
            {"field": "firstname", "op": "eq", "value": "Bob"},
            {"field": "role", "op": "eq", "value": "Admin"}]}
    ]});
    let gid = create_smart_group(&app, json!({"name": "tree", "type": "Smart", "rules": rules})).await;
    wait_members(&app, &gid, &[]).await;
    set_status(&app, &ann, "Accepted").await;
    wait_members(&app, &gid, &["ann@corp.io"]).await;
    let r = app.put(&format!("/v1/spotMembers/{bob}"), json!({"role": "Admin"})).await;
    assert_eq!(r.status, 200, "{}", r.text);
    wait_members(&app, &gid, &["ann@corp.io", "bob@home.io"]).await;
    let r = app.put(&format!("/v1/spotMembers/{bob}"), json!({"firstname": "Robert"})).await;
    assert_eq!(r.status, 200, "{}", r.text);
    wait_members(&app, &gid, &["ann@corp.io"]).await;
});

// A smart group created while another request is inviting members must end up with
// every matching member, whichever transaction commits first.
both!(smart_group_computation_races_invitations, |app| {
    for round in 0..8 {
        let emails: Vec<String> = (0..150).map(|i| format!("r{round}m{i:03}@race{round}.io")).collect();
        let (client, url, key) =
            (app.client.clone(), format!("{}/v1/spotMembers~bulkInvite", app.base), app.key.clone());
        let body = json!({ "emails": emails });
        let invite = tokio::spawn(async move {
            let r = client.post(url).header("authorization", key).json(&body).send().await.unwrap();
            (r.status().as_u16(), r.json::<Value>().await.unwrap())
        });
        let trigger = json!({"field": "email", "op": "contains", "value": format!("@race{round}.")});
        let gid = create_group(&app, smart(&format!("race {round}"), trigger)).await;
        let (status, body) = invite.await.unwrap();
        assert_eq!(status, 201, "{body}");
        assert_eq!(body["created"].as_array().unwrap().len(), 150);
        wait_ready(&app, &gid).await;
        let refs: Vec<&str> = emails.iter().map(String::as_str).collect();
        wait_members(&app, &gid, &refs).await;
    }
});

// ---------------------------------------------------------------------------------
// Rule validation
// ---------------------------------------------------------------------------------

both!(rule_errors_name_the_path, |app| {
    let with = |t: Value| {
        json!({"name": "s", "type": "Smart", "rules": {"operator": "AND", "conditions": [
            {"operator": "AND", "triggers": [{"field": "status", "op": "eq", "value": "Accepted"}]},
            {"operator": "OR", "triggers": [t]}]}})
    };
    let t0 = "rules.conditions[1].triggers[0]";
    for (t, suffix) in [
        (json!({"field": "shoeSize", "op": "eq", "value": "x"}), "field"),
        (json!({"op": "eq", "value": "x"}), "field"),
        (json!({"field": "customProperties.nope", "op": "eq", "value": "x"}), "field"),
        (json!({"field": "status", "op": "gt", "value": "Accepted"}), "op"),
        (json!({"field": "status", "op": "before", "value": 1}), "op"),
        (json!({"field": "registrationDate", "op": "eq", "value": 1}), "op"),
        (json!({"field": "email", "op": "after", "value": 1}), "op"),
        (json!({"field": "email", "op": "like", "value": "x"}), "op"),
        (json!({"field": "email", "value": "x"}), "op"),
        (json!({"field": "status", "op": "eq", "value": "Sleeping"}), "value"),
        (json!({"field": "status", "op": "in", "value": "Accepted"}), "value"),
        (json!({"field": "status", "op": "in", "value": ["Accepted", "Sleeping"]}), "value"),
        (json!({"field": "role", "op": "in", "value": []}), "value"),
        (json!({"field": "role", "op": "eq", "value": "Owner"}), "value"),
        (json!({"field": "email", "op": "eq", "value": 5}), "value"),
        (json!({"field": "email", "op": "eq"}), "value"),
        (json!({"field": "registrationDate", "op": "after", "value": "yesterday"}), "value"),
        (json!({"field": "customRoleId", "op": "eq", "value": "not-a-uuid"}), "value"),
    ] {
        let body = with(t.clone());
        let msg = assert_ms_error(&app.post("/v1/groups", body).await, 400);
        assert!(msg.starts_with(&format!("{t0}.{suffix}")), "{t} → {msg}");
    }

    // A trigger on a custom property: the property must exist and the value fit it.
    let r = app
        .post(
            "/v1/customProperties",
            json!({"slug": "plan", "label": "Plan", "type": "SingleSelect", "possibleValues": ["free", "pro"]}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    for (t, suffix) in [
        (json!({"field": "customProperties.plan", "op": "eq", "value": "gold"}), "value"),
        (json!({"field": "customProperties.plan", "op": "gt", "value": "pro"}), "op"),
        (json!({"field": "customProperties.plans", "op": "eq", "value": "pro"}), "field"),
    ] {
        let msg = assert_ms_error(&app.post("/v1/groups", with(t.clone())).await, 400);
        assert!(msg.starts_with(&format!("{t0}.{suffix}")), "{t} → {msg}");
    }

    let rules_of = |v: Value| json!({"name": "s", "type": "Smart", "rules": v});
    let trig = json!({"field": "status", "op": "eq", "value": "Accepted"});
    for (body, path) in [
        (json!({"name": "s", "type": "Smart"}), "rules"),
        (json!({"name": "s", "type": "Smart", "rules": null}), "rules"),
        (json!({"name": "s", "type": "Static", "rules": accepted_rules()}), "rules"),
        (json!({"name": "s", "rules": accepted_rules()}), "rules"),
        (json!({"name": "s", "type": "smart", "rules": accepted_rules()}), "type"),
        (rules_of(json!("status = Accepted")), "rules"),
        (
            rules_of(json!({"operator": "XOR", "conditions": [{"operator": "AND", "triggers": [trig]}]})),
            "rules.operator",
        ),
        (rules_of(json!({"conditions": [{"operator": "AND", "triggers": [trig]}]})), "rules.operator"),
        (rules_of(json!({"operator": "AND", "conditions": []})), "rules.conditions"),
        (rules_of(json!({"operator": "AND"})), "rules.conditions"),
        (
            rules_of(json!({"operator": "AND", "conditions": [{"operator": "NAND", "triggers": [trig]}]})),
            "rules.conditions[0].operator",
        ),
        (
            rules_of(json!({"operator": "AND", "conditions": [{"operator": "OR", "triggers": []}]})),
            "rules.conditions[0].triggers",
        ),
        (rules_of(json!({"operator": "AND", "conditions": ["x"]})), "rules.conditions[0]"),
        (
            rules_of(json!({"operator": "AND", "conditions": [{"operator": "OR", "triggers": [trig, "x"]}]})),
            "rules.conditions[0].triggers[1]",
        ),
    ] {
        let msg = assert_ms_error(&app.post("/v1/groups", body.clone()).await, 400);
        assert!(msg.starts_with(path), "{body} → {msg}");
    }
    assert_eq!(app.get("/v1/groups").await.body["total"], 0, "no refused group was created");

    // The same document with a valid property value is accepted.
    let ok = with(json!({"field": "customProperties.plan", "op": "eq", "value": "pro"}));
    assert_eq!(app.post("/v1/groups", ok).await.status, 201);
});

// ---------------------------------------------------------------------------------
// Spot isolation
// ---------------------------------------------------------------------------------

both!(groups_are_scoped_to_the_spot, |app| {
    let a = member_with_status(&app, "a@x.io", "Accepted").await;
    let gid = create_group(&app, json!({"name": "Ours"})).await;
    assert_eq!(app.post(&format!("/v1/groups/{gid}/spotMembers"), json!({ "spotMemberId": a })).await.status, 204);
    let sid =
        create_smart_group(&app, json!({"name": "Our actives", "type": "Smart", "rules": accepted_rules()})).await;

    let (_, other) = app.other_spot().await;
    let theirs = app.send(Method::POST, "/v1/spotMembers", Some(&other), Some(json!({"email": "z@x.io"}))).await;
    let theirs = theirs.body["id"].as_str().unwrap().to_string();
    let ids = json!({ "spotMemberIds": [theirs] });
    for g in [&gid, &sid] {
        let requests: Vec<(Method, String, Option<Value>)> = vec![
            (Method::GET, format!("/v1/groups/{g}"), None),
            (Method::PUT, format!("/v1/groups/{g}"), Some(json!({"name": "Hijacked"}))),
            (Method::DELETE, format!("/v1/groups/{g}"), None),
            (Method::GET, format!("/v1/groups/{g}/spotMembers"), None),
            (Method::POST, format!("/v1/groups/{g}/spotMembers"), Some(json!({ "spotMemberId": theirs }))),
            (Method::POST, format!("/v1/groups/{g}/spotMembers~bulkAdd"), Some(ids.clone())),
            (Method::POST, format!("/v1/groups/{g}/spotMembers~bulkRemove"), Some(json!({ "spotMemberIds": [a] }))),
            (Method::POST, format!("/v1/groups/{g}/blacklist~bulkAdd"), Some(json!({ "spotMemberIds": [a] }))),
            (Method::POST, format!("/v1/groups/{g}/blacklist~bulkRemove"), Some(json!({ "spotMemberIds": [a] }))),
        ];
        for (method, path, body) in requests {
            let r = app.send(method.clone(), &path, Some(&other), body).await;
            assert_eq!(assert_ms_error(&r, 404), "Group not found", "{method} {path}");
        }
    }
    let r = app.send(Method::GET, "/v1/groups", Some(&other), None).await;
    assert_eq!((r.body["items"].clone(), r.body["total"].clone()), (json!([]), json!(0)));
    let r = app.send(Method::GET, "/v1/groups?name[eq]=Ours", Some(&other), None).await;
    assert_eq!(r.body["total"], 0);

    // Nothing changed on our side.
    let g = app.get(&format!("/v1/groups/{gid}")).await;
    assert_eq!((&g.body["name"], &g.body["membersCount"]), (&json!("Ours"), &json!(1)));
    assert_eq!(group_emails(&app, &gid).await, vec!["a@x.io"]);
    wait_members(&app, &sid, &["a@x.io"]).await;
    let r = app.post(&format!("/v1/groups/{sid}/blacklist~bulkAdd"), json!({ "spotMemberIds": [theirs] })).await;
    assert_eq!(r.body, json!({"blacklistedSpotMemberIds": []}), "{}", r.text);

    // The other spot's accepted members never join our smart group.
    let r = app
        .send(Method::PUT, &format!("/v1/spotMembers/{theirs}"), Some(&other), Some(json!({"status": "Accepted"})))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    wait_members(&app, &sid, &["a@x.io"]).await;
    // And their groups are invisible to us.
    let r = app.send(Method::POST, "/v1/groups", Some(&other), Some(json!({"name": "Theirs"}))).await;
    assert_eq!(r.status, 201, "{}", r.text);
    let their_group = r.body["id"].as_str().unwrap().to_string();
    assert_eq!(assert_ms_error(&app.get(&format!("/v1/groups/{their_group}")).await, 404), "Group not found");
    let r = app.post(&format!("/v1/groups/{their_group}/spotMembers"), json!({ "spotMemberId": a })).await;
    assert_eq!(assert_ms_error(&r, 404), "Group not found");
    assert_eq!(app.get("/v1/groups").await.body["total"], 2);
});

// A blacklist change racing an update of the same member must leave the member where
// the rules and the blacklist, both applied, put it.
both!(blacklist_races_member_updates, |app| {
    let emails: Vec<String> = (0..40).map(|i| format!("b{i:02}@x.io")).collect();
    let r = app.post("/v1/spotMembers~bulkInvite", json!({ "emails": emails })).await;
    assert_eq!(r.status, 201, "{}", r.text);
    let ids: Vec<String> =
        r.body["created"].as_array().unwrap().iter().map(|m| m["id"].as_str().unwrap().to_string()).collect();
    let gid = create_smart_group(&app, json!({"name": "Active", "type": "Smart", "rules": accepted_rules()})).await;
    wait_members(&app, &gid, &[]).await;

    let fire = |method: Method, path: String, body: Value| {
        let (client, url, key) = (app.client.clone(), format!("{}{path}", app.base), app.key.clone());
        tokio::spawn(async move {
            let r = client.request(method, url).header("authorization", key).json(&body).send().await.unwrap();
            r.status().as_u16()
        })
    };
    // Blacklisting while the member becomes Accepted: it must stay out.
    let mut tasks = Vec::new();
    for id in &ids {
        tasks.push(fire(Method::POST, format!("/v1/groups/{gid}/blacklist~bulkAdd"), json!({"spotMemberIds": [id]})));
        tasks.push(fire(Method::PUT, format!("/v1/spotMembers/{id}"), json!({"status": "Accepted"})));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), 200);
    }
    wait_members(&app, &gid, &[]).await;

    // Un-blacklisting while the member is deactivated: it must stay out too.
    let mut tasks = Vec::new();
    for id in &ids {
        tasks.push(fire(
            Method::POST,
            format!("/v1/groups/{gid}/blacklist~bulkRemove"),
            json!({"spotMemberIds": [id]}),
        ));
        tasks.push(fire(Method::PUT, format!("/v1/spotMembers/{id}"), json!({"status": "Deactivated"})));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), 200);
    }
    wait_members(&app, &gid, &[]).await;
    let g = app.get(&format!("/v1/groups/{gid}")).await;
    assert_eq!(g.body["membersCount"], 0);
});

// A blacklist written while a new smart group is still being computed holds: the
// computation never puts a blacklisted member in.
both!(blacklist_during_computation, |app| {
    for round in 0..3 {
        let emails: Vec<String> = (0..150).map(|i| format!("c{round}m{i:03}@comp{round}.io")).collect();
        let r = app.post("/v1/spotMembers~bulkInvite", json!({ "emails": emails })).await;
        assert_eq!(r.status, 201, "{}", r.text);
        let ids: Vec<String> =
            r.body["created"].as_array().unwrap().iter().map(|m| m["id"].as_str().unwrap().to_string()).collect();
        let trigger = json!({"field": "email", "op": "contains", "value": format!("@comp{round}.")});
        let gid = create_group(&app, smart(&format!("comp {round}"), trigger)).await;
        let r = app.post(&format!("/v1/groups/{gid}/blacklist~bulkAdd"), json!({ "spotMemberIds": ids[..100] })).await;
        assert_eq!(r.status, 200, "{}", r.text);
        assert_eq!(r.body["blacklistedSpotMemberIds"].as_array().unwrap().len(), 100);
        wait_ready(&app, &gid).await;
        let rest: Vec<&str> = emails[100..].iter().map(String::as_str).collect();
        wait_members(&app, &gid, &rest).await;
    }
});

both!(smart_rules_bound_lists_and_dates, |app| {
    let hundred: Vec<String> = (0..100).map(|i| format!("n{i}")).collect();
    let mut twice = hundred.clone();
    twice.extend(hundred.clone());
    let r = app.post("/v1/groups", smart("Names", json!({"field": "firstname", "op": "in", "value": twice}))).await;
    assert_eq!(r.status, 201, "{}", r.text);
    let stored = r.body["rules"]["conditions"][0]["triggers"][0]["value"].as_array().unwrap().len();
    assert_eq!(stored, 100, "repeats are folded");
    let mut over = hundred.clone();
    over.push("one more".into());
    for op in ["in", "notin"] {
        let r = app.post("/v1/groups", smart("Names", json!({"field": "firstname", "op": op, "value": over}))).await;
        let msg = assert_ms_error(&r, 400);
        assert!(msg.starts_with("rules.conditions[0].triggers[0].value") && msg.contains("100"), "{msg}");
    }
    for v in [json!(i64::MIN), json!(i64::MAX), json!(-9_223_372_036_854_775_807_i64), json!(999_999_999_999_i64)] {
        for field in ["registrationDate", "invitationDate"] {
            let r = app.post("/v1/groups", smart("Dates", json!({"field": field, "op": "before", "value": v}))).await;
            let msg = assert_ms_error(&r, 400);
            assert!(msg.starts_with("rules.conditions[0].triggers[0].value") && msg.contains("range"), "{v}: {msg}");
        }
    }
    let r = app
        .post(
            "/v1/groups",
            json!({"name": "Bulk", "type": "Smart", "rules": {"operator": "AND", "conditions": [
        {"operator": "AND", "triggers": [{"field": "registrationDate", "op": "after", "value": i64::MIN}]}]}}),
        )
        .await;
    assert_ms_error(&r, 400);
    assert_eq!(app.get("/v1/groups").await.body["total"], 1, "only the valid group was created");
});

// Smart-group computations run through a bounded queue (`COMPUTE_QUEUE` admitted at
// once, `COMPUTE_WORKERS` running): a burst of more smart groups than that loses none;
// those not admitted are started by housekeeping (`resume_computations`, here called
// directly instead of waiting for its 30-second tick).
both!(a_burst_of_smart_groups_beyond_the_queue_is_computed, |app| {
    use openspot::domain::groups::{resume_computations, COMPUTE_QUEUE};
    member_with_status(&app, "burst@x.io", "Accepted").await;
    let n = COMPUTE_QUEUE + 36;
    let items: Vec<Value> =
        (0..n).map(|i| json!({"name": format!("S{i}"), "type": "Smart", "rules": accepted_rules()})).collect();
    let r = app.post("/v1/groups~bulkCreate", json!(items)).await;
    assert_eq!(r.status, 201, "{}", r.text);
    let created = r.body["created"].as_array().unwrap().clone();
    assert_eq!(created.len(), n);
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    loop {
        resume_computations(&app.db).await.unwrap();
        let mut pending = 0;
        for g in &created {
            let g = app.get(&format!("/v1/groups/{}", g["id"].as_str().unwrap())).await.body;
            if g["ready"] != true {
                pending += 1;
            } else {
                assert_eq!(g["membersCount"], 1, "{g}");
            }
        }
        if pending == 0 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{pending} smart groups never computed");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
});

//! Webhook events from every write path (issue 14, design §4), on both stores: each
//! cause of `member.created`, `member.updated`, `group.member.added|removed` and
//! `course.participant.created|status.updated` reaches a real receiver on loopback
//! (`tests/support/receiver.rs`) through the server's dispatcher, with the member,
//! group, course and role it is about; changes that change nothing emit nothing.

use std::time::Duration;

use reqwest::multipart::{Form, Part};
use serde_json::{json, Value};

use crate::both_with;
use crate::common::TestApp;
use crate::receiver::{Receiver, Reply};

const WAIT: Duration = Duration::from_secs(10);
const ALL: [&str; 6] = [
    "member.created",
    "member.updated",
    "course.participant.created",
    "course.participant.status.updated",
    "group.member.added",
    "group.member.removed",
];

fn fast(c: &mut openspot::Config) {
    c.allow_private_targets = true;
    c.outbox.retry_schedule = vec![Duration::from_millis(50), Duration::from_millis(100)];
    c.outbox.attempt_timeout = Duration::from_secs(1);
    c.outbox.lease = Duration::from_secs(3);
}

/// A receiver subscribed to every event type of the spot.
async fn listen(app: &TestApp) -> Receiver {
    let rx = Receiver::start(Reply::Status(200)).await;
    let r = app.post("/v1/webhooks", json!({"url": rx.url(), "eventTypes": ALL})).await;
    assert_eq!(r.status, 201, "{}", r.text);
    rx
}

/// Waits until `n` events arrived, then a little longer to see that no more come;
/// returns their bodies in arrival order.
async fn events(rx: &Receiver, n: usize) -> Vec<Value> {
    rx.wait_for(n, WAIT).await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    rx.captured().iter().map(|c| c.json()).collect()
}

/// `(type, member email)` of each event, sorted.
fn summary(evs: &[Value]) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = evs
        .iter()
        .map(|e| (e["type"].as_str().unwrap().to_string(), e["member"]["email"].as_str().unwrap_or("").to_string()))
        .collect();
    v.sort();
    v
}

fn pairs(items: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = items.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect();
    v.sort();
    v
}

both_with!(member_events_come_from_every_cause, |c| { fast(c) }, |app| {
    let rx = listen(&app).await;
    let r = app.post("/v1/customProperties", json!({"label": "Seats", "type": "Number"})).await;
    assert_eq!(r.status, 201, "{}", r.text);
    // Created: invite, bulk invite (new ones only), import (new rows only).
    let a = app.invite("a@x.io").await;
    app.invite("a@x.io").await;
    let r = app.post("/v1/spotMembers~bulkInvite", json!({"emails": ["b@x.io", "a@x.io", "c@x.io"]})).await;
    assert_eq!(r.status, 201, "{}", r.text);
    let b = r.body["created"][0]["id"].as_str().unwrap().to_string();
    // Updated: PUT with a change (a PUT changing nothing emits nothing), a property value.
    let r = app.put(&format!("/v1/spotMembers/{a}"), json!({"firstname": "Ann"})).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let r = app.put(&format!("/v1/spotMembers/{a}"), json!({"firstname": "Ann"})).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let r = app.put(&format!("/v1/spotMembers/{b}/customPropertiesValues/seats"), json!({"value": 3})).await;
    assert_eq!(r.status, 200, "{}", r.text);
    // Import: d is created, c updated, a unchanged (same first name).
    let csv = b"email,firstname\nd@x.io,Dee\nc@x.io,Cy\na@x.io,Ann\n".to_vec();
    let form = Form::new().part("file", Part::bytes(csv).file_name("m.csv"));
    let r = crate::ms_import::upload(&app, form).await;
    assert_eq!(
        (r.status, r.body["created"].as_u64(), r.body["updated"].as_u64()),
        (200, Some(1), Some(2)),
        "{}",
        r.text
    );

    let evs = events(&rx, 7).await;
    assert_eq!(
        summary(&evs),
        pairs(&[
            ("member.created", "a@x.io"),
            ("member.created", "b@x.io"),
            ("member.created", "c@x.io"),
            ("member.created", "d@x.io"),
            ("member.updated", "a@x.io"),
            ("member.updated", "b@x.io"),
            ("member.updated", "c@x.io"),
        ]),
        "{evs:#?}"
    );
    for e in &evs {
        assert_eq!(e["spot"]["id"], json!(app.spot_id), "{e:#}");
        assert_eq!(e["test"], false);
        assert!(
            e["occurredAt"].as_i64().unwrap() > 1_700_000_000
                && e["occurredAtMs"].as_i64().unwrap() > 1_700_000_000_000
        );
    }
    let ann = evs.iter().find(|e| e["type"] == "member.updated" && e["member"]["email"] == "a@x.io").unwrap();
    assert_eq!(ann["member"]["firstname"], "Ann");
    assert_eq!(ann["member"]["id"], a.as_str());
    let dee = evs.iter().find(|e| e["type"] == "member.created" && e["member"]["email"] == "d@x.io").unwrap();
    assert_eq!((&dee["member"]["firstname"], &dee["member"]["status"]), (&json!("Dee"), &json!("Invited")));
    // Each event its own id.
    let ids: std::collections::HashSet<String> =
        rx.captured().iter().map(|c| c.header("webhook-id").unwrap().to_string()).collect();
    assert_eq!(ids.len(), evs.len());
});

both_with!(group_membership_events_come_from_v1_and_from_smart_rules, |c| { fast(c) }, |app| {
    let a = app.invite("a@x.io").await;
    let b = app.invite("b@x.io").await;
    let r = app.post("/v1/groups", json!({"name": "Static"})).await;
    assert_eq!(r.status, 201, "{}", r.text);
    let g = r.body["id"].as_str().unwrap().to_string();
    let rules = json!({"operator": "AND", "conditions": [
        {"operator": "OR", "triggers": [{"field": "status", "op": "eq", "value": "Accepted"}]}]});
    let r = app.post("/v1/groups", json!({"name": "Accepted", "type": "Smart", "rules": rules})).await;
    assert_eq!(r.status, 201, "{}", r.text);
    let smart = r.body["id"].as_str().unwrap().to_string();
    crate::common::wait_until_ready(&app, &smart).await;
    let rx = listen(&app).await;

    // /v1: single add, bulk add (a again is no event), bulk remove.
    let r = app.post(&format!("/v1/groups/{g}/spotMembers"), json!({"spotMemberId": a})).await;
    assert!(r.status < 300, "{} {}", r.status, r.text);
    let r = app.post(&format!("/v1/groups/{g}/spotMembers~bulkAdd"), json!({"spotMemberIds": [a, b]})).await;
    assert!(r.status < 300, "{} {}", r.status, r.text);
    let r = app.post(&format!("/v1/groups/{g}/spotMembers~bulkRemove"), json!({"spotMemberIds": [a]})).await;
    assert!(r.status < 300, "{} {}", r.status, r.text);
    let evs = events(&rx, 3).await;
    assert_eq!(
        summary(&evs),
        pairs(&[
            ("group.member.added", "a@x.io"),
            ("group.member.added", "b@x.io"),
            ("group.member.removed", "a@x.io")
        ]),
        "{evs:#?}"
    );
    for e in &evs {
        assert_eq!((&e["group"]["id"], &e["group"]["name"]), (&json!(g), &json!("Static")), "{e:#}");
        assert_eq!(e["groupRole"], "Member", "{e:#}");
    }

    // A smart rule: b becomes Accepted → joins; Deactivated → leaves.
    let r = app.put(&format!("/v1/spotMembers/{b}"), json!({"status": "Accepted"})).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let r = app.put(&format!("/v1/spotMembers/{b}"), json!({"status": "Deactivated"})).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let evs = events(&rx, 7).await;
    // Delivery order is not promised (concurrent attempts): a receiver orders by
    // `occurredAtMs`, which follows the commits.
    let mut later: Vec<&Value> = evs[3..].iter().collect();
    later.sort_by_key(|e| e["occurredAtMs"].as_i64().unwrap());
    let smart_events: Vec<(String, String)> = later
        .iter()
        .filter(|e| e["type"] != "member.updated")
        .map(|e| (e["type"].as_str().unwrap().to_string(), e["group"]["id"].as_str().unwrap().to_string()))
        .collect();
    assert_eq!(
        smart_events,
        vec![("group.member.added".to_string(), smart.clone()), ("group.member.removed".to_string(), smart.clone())],
        "{evs:#?}"
    );
    assert_eq!(evs[3..].iter().filter(|e| e["type"] == "member.updated").count(), 2, "{evs:#?}");
});

both_with!(course_participant_events_come_from_invites_links_and_progress, |c| { fast(c) }, |app| {
    let a = app.invite("a@x.io").await;
    let b = app.invite("b@x.io").await;
    let j = app.invite("j@x.io").await;
    let r = app.post("/v1/courses", json!({"title": "Rust 101"})).await;
    assert_eq!(r.status, 201, "{}", r.text);
    let course = r.body["id"].as_str().unwrap().to_string();
    let r = app.post("/v1/groups", json!({"name": "Cohort"})).await;
    let g = r.body["id"].as_str().unwrap().to_string();
    let rx = Receiver::start(Reply::Status(200)).await;
    let types = ["course.participant.created", "course.participant.status.updated"];
    let r = app.post("/v1/webhooks", json!({"url": rx.url(), "eventTypes": types})).await;
    assert_eq!(r.status, 201, "{}", r.text);

    // Created: invite, bulk invite (a again is no event), group link, a joiner.
    let r = app.post(&format!("/v1/courses/{course}/participants"), json!({"spotMemberId": a})).await;
    assert_eq!(r.status, 201, "{}", r.text);
    let pa = r.body["id"].as_str().unwrap().to_string();
    let r = app.post(&format!("/v1/courses/{course}/participants~bulkInvite"), json!({"spotMemberIds": [a, b]})).await;
    assert_eq!(r.status, 201, "{}", r.text);
    let r = app.post(&format!("/v1/groups/{g}/spotMembers"), json!({"spotMemberId": j})).await;
    assert!(r.status < 300, "{}", r.text);
    let r = app.post(&format!("/v1/courses/{course}/groups~bulkAdd"), json!({"groupIds": [g]})).await;
    assert_eq!(r.status, 204, "{}", r.text);
    let k = app.invite("k@x.io").await;
    let r = app.post(&format!("/v1/groups/{g}/spotMembers"), json!({"spotMemberId": k})).await;
    assert!(r.status < 300, "{}", r.text);
    // Status updates: Started, a rate change (no event), Unenrolled, re-invited.
    let progress = format!("/v1/courses/{course}/participants/{pa}");
    for body in [json!({"status": "Started"}), json!({"completionRate": 40}), json!({"status": "Unenrolled"})] {
        let r = app.put(&progress, body).await;
        assert_eq!(r.status, 200, "{}", r.text);
    }
    let r = app.post(&format!("/v1/courses/{course}/participants"), json!({"spotMemberId": a})).await;
    assert_eq!(r.status, 201, "re-invited: {}", r.text);

    let evs = events(&rx, 7).await;
    let got: Vec<(String, String, String)> = {
        let mut v: Vec<_> = evs
            .iter()
            .map(|e| {
                (
                    e["type"].as_str().unwrap().to_string(),
                    e["member"]["email"].as_str().unwrap().to_string(),
                    e["courseParticipant"]["status"].as_str().unwrap().to_string(),
                )
            })
            .collect();
        v.sort();
        v
    };
    let want: Vec<(String, String, String)> = {
        let mut v: Vec<_> = [
            ("course.participant.created", "a@x.io", "Invited"),
            ("course.participant.created", "b@x.io", "Invited"),
            ("course.participant.created", "j@x.io", "Invited"),
            ("course.participant.created", "k@x.io", "Invited"),
            ("course.participant.status.updated", "a@x.io", "Started"),
            ("course.participant.status.updated", "a@x.io", "Unenrolled"),
            ("course.participant.status.updated", "a@x.io", "Invited"),
        ]
        .iter()
        .map(|(a, b, c)| (a.to_string(), b.to_string(), c.to_string()))
        .collect();
        v.sort();
        v
    };
    assert_eq!(got, want, "{evs:#?}");
    for e in &evs {
        assert_eq!((&e["course"]["id"], &e["course"]["name"]), (&json!(course), &json!("Rust 101")), "{e:#}");
    }
});

/// `(type, member mobile number, group id or "")` of each event, sorted.
fn by_number(evs: &[Value]) -> Vec<(String, String, String)> {
    let mut v: Vec<(String, String, String)> = evs
        .iter()
        .map(|e| {
            (
                e["type"].as_str().unwrap().to_string(),
                e["member"]["mobileNumber"].as_str().unwrap_or("").to_string(),
                e["group"]["id"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    v.sort();
    v
}

both_with!(kaizala_changes_emit_member_and_group_events, |c| { fast(c) }, |app| {
    use crate::kaizala::{call, setup};
    use reqwest::Method;
    let rx = listen(&app).await;
    // A token minted for a new number creates the member; signing in accepts it.
    let admin = setup(&app, "+911199999999").await;
    let r = call(&app, &admin, Method::POST, "/groups", Some("{name:'Team', members:['+911199999990']}")).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let gid = r.body["groupId"].as_str().unwrap().to_string();
    let r =
        call(&app, &admin, Method::PUT, &format!("/groups/{gid}/members"), Some("{members:['+911199999991']}")).await;
    assert_eq!(r.body, json!({"result": true}), "{}", r.text);
    let listed = call(&app, &admin, Method::GET, &format!("/groups/{gid}/members"), None).await;
    let gone =
        listed.body["members"].as_array().unwrap().iter().find(|m| m["mobileNumber"] == "+911199999991").unwrap()["id"]
            .as_str()
            .unwrap()
            .to_string();
    let r = call(&app, &admin, Method::DELETE, &format!("/groups/{gid}/members/{gone}"), None).await;
    assert_eq!(r.status, 200, "{}", r.text);

    let evs = events(&rx, 8).await;
    let got: Vec<_> = by_number(&evs).into_iter().filter(|(t, _, _)| t != "member.updated").collect();
    let want: Vec<(String, String, String)> = {
        let mut v: Vec<_> = [
            ("member.created", "+911199999999", ""),
            ("member.created", "+911199999990", ""),
            ("member.created", "+911199999991", ""),
            ("group.member.added", "+911199999999", gid.as_str()),
            ("group.member.added", "+911199999990", gid.as_str()),
            ("group.member.added", "+911199999991", gid.as_str()),
            ("group.member.removed", "+911199999991", gid.as_str()),
        ]
        .iter()
        .map(|(a, b, c)| (a.to_string(), b.to_string(), c.to_string()))
        .collect();
        v.sort();
        v
    };
    assert_eq!(got, want, "{evs:#?}");
    let creator = evs
        .iter()
        .find(|e| e["type"] == "group.member.added" && e["member"]["mobileNumber"] == "+911199999999")
        .unwrap();
    assert_eq!(creator["groupRole"], "Admin", "{creator:#}");
    assert!(
        evs.iter().any(|e| e["type"] == "member.updated"
            && e["member"]["mobileNumber"] == "+911199999999"
            && e["member"]["status"] == "Accepted"),
        "signing in accepts the member: {evs:#?}"
    );
});

both_with!(blacklists_and_import_groups_emit_group_events, |c| { fast(c) }, |app| {
    let a = app.invite("a@x.io").await;
    let r = app.put(&format!("/v1/spotMembers/{a}"), json!({"status": "Accepted"})).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let rules = json!({"operator": "AND", "conditions": [
        {"operator": "OR", "triggers": [{"field": "status", "op": "eq", "value": "Accepted"}]}]});
    let smart = app.post("/v1/groups", json!({"name": "Accepted", "type": "Smart", "rules": rules})).await.body["id"]
        .as_str()
        .unwrap()
        .to_string();
    crate::common::wait_until_ready(&app, &smart).await;
    let g = app.post("/v1/groups", json!({"name": "Imported"})).await.body["id"].as_str().unwrap().to_string();
    let rx = listen(&app).await;
    // The blacklist takes a out of the smart group; lifting it puts a back.
    let r = app.post(&format!("/v1/groups/{smart}/blacklist~bulkAdd"), json!({"spotMemberIds": [a]})).await;
    assert!(r.status < 300, "{}", r.text);
    let r = app.post(&format!("/v1/groups/{smart}/blacklist~bulkRemove"), json!({"spotMemberIds": [a]})).await;
    assert!(r.status < 300, "{}", r.text);
    // An import with a group adds every row's member (a new one is created too).
    let csv = b"email\na@x.io\nb@x.io\n".to_vec();
    let form = Form::new().part("file", Part::bytes(csv).file_name("m.csv")).text("groupId", g.clone());
    let r = crate::ms_import::upload(&app, form).await;
    assert_eq!(r.status, 200, "{}", r.text);

    let evs = events(&rx, 5).await;
    let got: Vec<(String, String, String)> = {
        let mut v: Vec<_> = evs
            .iter()
            .map(|e| {
                (
                    e["type"].as_str().unwrap().to_string(),
                    e["member"]["email"].as_str().unwrap().to_string(),
                    e["group"]["id"].as_str().unwrap_or("").to_string(),
                )
            })
            .collect();
        v.sort();
        v
    };
    let mut want: Vec<(String, String, String)> = [
        ("group.member.removed", "a@x.io", smart.as_str()),
        ("group.member.added", "a@x.io", smart.as_str()),
        ("member.created", "b@x.io", ""),
        ("group.member.added", "a@x.io", g.as_str()),
        ("group.member.added", "b@x.io", g.as_str()),
    ]
    .iter()
    .map(|(a, b, c)| (a.to_string(), b.to_string(), c.to_string()))
    .collect();
    want.sort();
    assert_eq!(got, want, "{evs:#?}");
});

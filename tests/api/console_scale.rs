//! The console's member list at scale: the text search is a prefix of a name, an email
//! or a phone number (each an index range, not a scan of every member), and a filtered
//! total stops counting at `COUNT_CAP` while a bulk action's confirmation still names
//! the exact count. Both stores.

use serde_json::json;

use crate::both;
use crate::common::TestApp;
use crate::console::{exec, signed_in, Browser};

async fn named(app: &TestApp, email: &str, first: &str, last: &str) {
    let id = app.invite(email).await;
    let r = app.put(&format!("/v1/spotMembers/{id}"), json!({"firstname": first, "lastname": last})).await;
    assert_eq!(r.status, 200, "{}", r.text);
}

async fn shown(b: &mut Browser<'_>, q: &str) -> usize {
    let path = format!("/console/members?q={}", form_urlencoded::byte_serialize(q.as_bytes()).collect::<String>());
    let page = b.get(&path).await;
    assert_eq!(page.status, 200, "{q}: {}", page.text);
    assert!(!page.text.contains("role=\"alert\""), "{q}: {}", page.text);
    page.text.matches("class=\"pick\"").count()
}

both!(the_search_is_a_prefix_of_a_name_an_email_or_a_phone, |app| {
    let (mut b, _) = signed_in(&app).await;
    named(&app, "grace.h@example.com", "Grace", "Hopper").await;
    named(&app, "ezola@example.com", "Émile", "Zola").await;
    named(&app, "countess@example.com", "Ada", "Lovelace").await;
    exec(&app, "UPDATE members SET mobile_number = '+33612345678' WHERE email_norm = 'countess@example.com'").await;
    for (q, want) in [
        ("grace", 1),
        ("GRA", 1),
        ("hop", 1),
        ("Grace Hop", 1),
        ("grace.h@", 1),
        ("ezol", 1),
        ("Émile", 1),
        ("zola", 1),
        ("+3361", 1),
        ("lovelace", 1),
        ("ada lov", 1),
        // A prefix, not a substring: "race" is inside "Grace" but starts nothing.
        ("race", 0),
        ("opper", 0),
        ("zola émile", 0),
        // LIKE and GLOB wildcards are plain characters.
        ("%", 0),
        ("_race", 0),
        ("*", 0),
    ] {
        assert_eq!(shown(&mut b, q).await, want, "search {q:?}");
    }
});

both!(a_filtered_total_stops_counting_at_the_cap_and_a_bulk_confirmation_is_exact, |app| {
    let (mut b, admin) = signed_in(&app).await;
    let admin_invited = app.get(&format!("/v1/spotMembers/{admin}")).await.body["status"] == "Invited";
    let cap = openspot::domain::console::COUNT_CAP as usize;
    let n = cap + 2;
    let emails: Vec<String> = (0..n).map(|i| format!("bulk{i}@example.com")).collect();
    for chunk in emails.chunks(openspot::domain::members::MAX_BULK_INVITE) {
        openspot::domain::members::bulk_invite(&app.db, app.spot_id, chunk, false).await.unwrap();
    }
    let page = b.get("/console/members?status=Invited").await;
    assert_eq!(page.status, 200, "{}", page.text);
    assert!(page.text.contains(&format!("<span class=\"count\">{cap}+</span>")), "{}", page.text);
    // Below the cap the count is exact.
    let few = b.get("/console/members?q=bulk1000").await;
    assert!(few.text.contains("<span class=\"count\">3</span>"), "bulk1000, bulk10000, bulk10001: {}", few.text);
    // Unfiltered, the spot's maintained count: exact at any size (the admin included).
    let all = b.get("/console/members").await;
    assert!(all.text.contains(&format!("<span class=\"count\">{}</span>", n + 1)), "{}", all.text);
    // The confirmation of "all that match" names the exact number.
    let confirm = b
        .post(
            "/console/members/bulk",
            &[("scope", "all"), ("query", "status=Invited"), ("action", "set_status"), ("target", "Deactivated")],
        )
        .await;
    assert_eq!(confirm.status, 200, "{}", confirm.text);
    let invited = n + usize::from(admin_invited);
    assert!(confirm.text.contains(&format!("apply to {invited} members")), "{}", confirm.text);

    // A property filter matching more values than the store lists (SQLite then probes
    // member by member, in the page's order) gives what the list gives.
    let r = app.post("/v1/customProperties", json!({"label": "Score", "slug": "score", "type": "Number"})).await;
    assert!(r.status == 201 || r.status == 200, "{}", r.text);
    exec(
        &app,
        "INSERT INTO member_property_values (spot_id, member_id, property_id, ord, value_num) \
         SELECT m.spot_id, m.id, p.id, 0, CASE WHEN m.email_norm = 'bulk1000@example.com' THEN 2 ELSE 1 END \
         FROM members m JOIN custom_properties p ON p.spot_id = m.spot_id AND p.slug = 'score' \
         WHERE m.email_norm LIKE 'bulk%'",
    )
    .await;
    let dense = b.get("/console/members?prop=score&op=eq&value=1").await;
    assert_eq!(dense.status, 200, "{}", dense.text);
    assert!(dense.text.contains(&format!("<span class=\"count\">{cap}+</span>")), "{}", dense.text);
    assert_eq!(dense.text.matches("class=\"pick\"").count(), 50, "a full page");
    // bulk100, bulk1001…bulk1009, bulk10000, bulk10001: not bulk1000 (score 2).
    let both = b.get("/console/members?prop=score&op=eq&value=1&q=bulk100").await;
    assert!(both.text.contains("<span class=\"count\">12</span>"), "{}", both.text);
    assert!(!both.text.contains("bulk1000@example.com"), "{}", both.text);
    let sparse = b.get("/console/members?prop=score&op=gt&value=1").await;
    assert!(sparse.text.contains("<span class=\"count\">1</span>"), "{}", sparse.text);
    assert!(sparse.text.contains("bulk1000@example.com"), "{}", sparse.text);
});

// A bulk action's chunk is one transaction: a member it cannot apply to (here one that
// does not exist) is counted as failed and the others in the chunk are still applied.
both!(a_bulk_chunk_applies_to_the_others_when_one_member_is_refused, |app| {
    let (b, _) = signed_in(&app).await;
    let session = openspot::domain::console::authenticate(&app.db, b.cookie.as_deref().unwrap()).await.unwrap();
    let a = app.invite("a@example.com").await;
    let c = app.invite("c@example.com").await;
    let gone = openspot::domain::ids::MemberId::from(uuid::Uuid::now_v7());
    let targets = vec![a.parse().unwrap(), gone, c.parse().unwrap()];
    for (action, check) in [
        (
            openspot::domain::console::BulkAction::SetStatus(openspot::domain::vocab::MemberStatus::Deactivated),
            "status",
        ),
        (openspot::domain::console::BulkAction::SetProperty { slug: "team".into(), value: "Blue".into() }, "team"),
    ] {
        if check == "team" {
            let r = app.post("/v1/customProperties", json!({"label": "Team", "slug": "team", "type": "Text"})).await;
            assert!(r.status == 201 || r.status == 200, "{}", r.text);
        }
        let job =
            openspot::domain::console::start_bulk(&app.db, &session, action, "bulk", targets.clone()).await.unwrap();
        let progress = loop {
            let j = openspot::domain::console::job(&app.db, app.spot_id, job).await.unwrap().expect("the job");
            if j.finished {
                break j;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        };
        assert_eq!((progress.done, progress.failed, progress.error.clone()), (3, 1, None), "{check}");
        for id in [&a, &c] {
            let m = app.get(&format!("/v1/spotMembers/{id}")).await;
            if check == "status" {
                assert_eq!(m.body["status"], "Deactivated", "{}", m.text);
            } else {
                let v = app.get(&format!("/v1/spotMembers/{id}/customPropertiesValues")).await;
                assert!(v.text.contains("Blue"), "{}", v.text);
            }
        }
    }
});

/// Runs a bulk action over `targets` to its end and returns its progress.
async fn run_bulk(
    app: &TestApp,
    session: &openspot::domain::console::ConsoleSession,
    action: openspot::domain::console::BulkAction,
    targets: &[&str],
) -> openspot::domain::console::JobProgress {
    let targets = targets.iter().map(|id| id.parse().unwrap()).collect();
    let job = openspot::domain::console::start_bulk(&app.db, session, action, "bulk", targets).await.unwrap();
    for _ in 0..500 {
        let j = openspot::domain::console::job(&app.db, app.spot_id, job).await.unwrap().expect("the job");
        if j.finished {
            return j;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    panic!("the bulk action never finished");
}

/// The emails of a smart group's members once it is ready, sorted.
async fn smart_members(app: &TestApp, gid: &str) -> Vec<String> {
    for _ in 0..500 {
        if app.get(&format!("/v1/groups/{gid}")).await.body["ready"] == true {
            let r = app.get(&format!("/v1/groups/{gid}/spotMembers?limit=100")).await;
            let mut emails: Vec<String> =
                r.body["items"].as_array().unwrap().iter().map(|m| m["email"].as_str().unwrap().to_string()).collect();
            emails.sort();
            return emails;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    panic!("smart group {gid} never became ready");
}

/// `member.updated` rows queued per member id.
async fn updates_per_member(app: &TestApp) -> std::collections::HashMap<String, usize> {
    let f = openspot::store::outbox::OutboxFilter { spot_id: Some(app.spot_id), ..Default::default() };
    let mut c = app.db.conn().await.unwrap();
    let rows = openspot::store::outbox::list(c.ex(), &f, 1000).await.unwrap();
    let mut out = std::collections::HashMap::new();
    for r in rows.iter().filter(|r| r.event_type == "member.updated") {
        let payload: serde_json::Value = serde_json::from_str(&r.payload).unwrap();
        *out.entry(payload["member"]["id"].as_str().unwrap().to_string()).or_default() += 1;
    }
    out
}

fn smart(field: &str, value: &str) -> serde_json::Value {
    let trigger = json!({"field": field, "op": "eq", "value": value});
    json!({"operator": "AND", "conditions": [{"operator": "AND", "triggers": [trigger]}]})
}

// A bulk change writes a chunk at once, and still does for each member what the API's
// update does: a first acceptance gives the member its own user id, every member whose
// status or value changes gets one `member.updated` event (one already in the status
// none), and smart groups follow each member.
crate::both_with!(
    a_bulk_change_does_for_each_member_what_an_update_does,
    |c| {
        c.allow_private_targets = true;
        c.outbox.attempt_timeout = std::time::Duration::from_secs(30);
        c.outbox.lease = std::time::Duration::from_secs(40);
    },
    |app| {
        use openspot::domain::console::BulkAction;
        use openspot::domain::vocab::MemberStatus;
        let (b, _) = signed_in(&app).await;
        let session = openspot::domain::console::authenticate(&app.db, b.cookie.as_deref().unwrap()).await.unwrap();
        let rx = crate::receiver::Receiver::start(crate::receiver::Reply::Hang).await;
        let r = app.post("/v1/webhooks", json!({"url": rx.url(), "eventTypes": ["member.updated"]})).await;
        assert_eq!(r.status, 201, "{}", r.text);
        let r = app.post("/v1/customProperties", json!({"label": "Team", "slug": "team", "type": "Text"})).await;
        assert!(r.status == 201 || r.status == 200, "{}", r.text);
        let accepted = app
            .post("/v1/groups", json!({"name": "accepted", "type": "Smart", "rules": smart("status", "Accepted")}))
            .await;
        assert_eq!(accepted.status, 201, "{}", accepted.text);
        let accepted = accepted.body["id"].as_str().unwrap().to_string();
        let blue = app
            .post(
                "/v1/groups",
                json!({"name": "blue", "type": "Smart", "rules": smart("customProperties.team", "Blue")}),
            )
            .await;
        assert_eq!(blue.status, 201, "{}", blue.text);
        let blue = blue.body["id"].as_str().unwrap().to_string();

        let a = app.invite("a@example.com").await;
        let bb = app.invite("b@example.com").await;
        let c = app.invite("c@example.com").await;
        let r = app.put(&format!("/v1/spotMembers/{c}"), json!({"status": "Accepted"})).await;
        assert_eq!(r.status, 200, "{}", r.text);
        let c_user = r.body["userId"].clone();
        assert!(c_user.is_string(), "{}", r.text);
        let before = updates_per_member(&app).await;
        assert_eq!(before.get(&c), Some(&1));

        let p = run_bulk(&app, &session, BulkAction::SetStatus(MemberStatus::Accepted), &[&a, &bb, &c]).await;
        assert_eq!((p.done, p.failed, p.error.clone()), (3, 0, None));
        let users: Vec<serde_json::Value> = {
            let mut v = Vec::new();
            for id in [&a, &bb, &c] {
                let m = app.get(&format!("/v1/spotMembers/{id}")).await;
                assert_eq!(m.body["status"], "Accepted", "{}", m.text);
                v.push(m.body["userId"].clone());
            }
            v
        };
        assert!(users[0].is_string() && users[1].is_string() && users[0] != users[1], "{users:?}");
        assert_eq!(users[2], c_user, "an accepted member keeps its user id");
        let updates = updates_per_member(&app).await;
        assert_eq!((updates.get(&a), updates.get(&bb), updates.get(&c)), (Some(&1), Some(&1), Some(&1)), "{updates:?}");
        assert_eq!(smart_members(&app, &accepted).await, ["a@example.com", "b@example.com", "c@example.com"]);

        let set_blue = BulkAction::SetProperty { slug: "team".into(), value: "Blue".into() };
        let p = run_bulk(&app, &session, set_blue, &[&a, &bb]).await;
        assert_eq!((p.done, p.failed, p.error.clone()), (2, 0, None));
        assert_eq!(smart_members(&app, &blue).await, ["a@example.com", "b@example.com"]);
        let updates = updates_per_member(&app).await;
        assert_eq!((updates.get(&a), updates.get(&c)), (Some(&2), Some(&1)), "{updates:?}");
        let v = app.get(&format!("/v1/spotMembers/{bb}/customPropertiesValues")).await;
        assert!(v.text.contains("Blue"), "{}", v.text);

        let p = run_bulk(&app, &session, BulkAction::SetStatus(MemberStatus::Deactivated), &[&a]).await;
        assert_eq!((p.done, p.failed), (1, 0));
        assert_eq!(smart_members(&app, &accepted).await, ["b@example.com", "c@example.com"]);
        assert_eq!(smart_members(&app, &blue).await, ["a@example.com", "b@example.com"], "a is still Blue");
    }
);

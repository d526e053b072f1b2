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

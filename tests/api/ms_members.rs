//! `/v1/spotMembers`.

use serde_json::{json, Value};

use crate::both;
use crate::common::assert_ms_error;

both!(invite_get_and_list, |app| {
    let r = app.post("/v1/spotMembers", json!({"email": " Ada@Example.com "})).await;
    assert_eq!(r.status, 201, "{}", r.text);
    let id = r.body["id"].as_str().unwrap().to_string();
    assert_eq!(r.body["email"], "Ada@Example.com");
    assert_eq!(r.body["status"], "Invited");
    assert_eq!(r.body["role"], "Member");
    assert_eq!(r.body["lang"], "en");
    assert_eq!(r.body["warnings"], 0);
    assert_eq!(r.body["spotId"], app.spot_id.to_string());
    assert!(r.body["updatedAt"].as_i64().unwrap() > 1_000_000_000_000);
    assert_eq!(r.body["embedBaseUrls"]["default"], app.base);

    let again = app.post("/v1/spotMembers", json!({"email": "ada@example.COM"})).await;
    assert_eq!(again.status, 200);
    assert_eq!(again.body["id"], id.as_str());

    let got = app.get(&format!("/v1/spotMembers/{id}")).await;
    assert_eq!(got.status, 200);
    assert_eq!(got.body, r.body);

    let list = app.get("/v1/spotMembers").await;
    assert_eq!(list.status, 200);
    assert_eq!(list.body["total"], 1);
    assert_eq!(list.body["items"][0]["id"], id.as_str());
});

both!(unknown_member_is_404, |app| {
    let r = app.get("/v1/spotMembers/01930000-0000-7000-8000-000000000000").await;
    assert_eq!(assert_ms_error(&r, 404), "Spot member not found");
    let r = app.get("/v1/spotMembers/not-a-uuid").await;
    assert_eq!(assert_ms_error(&r, 404), "Spot member not found");
});

both!(list_filters_and_pagination, |app| {
    let mut ids = Vec::new();
    for (i, (first, last)) in
        [("Ada", "Lovelace"), ("Alan", "Turing"), ("Grace", "Hopper"), ("Ada", "Byron")].iter().enumerate()
    {
        let id = app.invite(&format!("u{i}@Example.com")).await;
        app.put(&format!("/v1/spotMembers/{id}"), json!({"firstname": first, "lastname": last})).await;
        ids.push(id);
    }
    let r = app.get("/v1/spotMembers?limit=3").await;
    assert_eq!((r.body["total"].clone(), r.body["items"].as_array().unwrap().len()), (json!(4), 3));
    assert_eq!(r.body["items"][0]["id"], ids[0].as_str(), "creation order");
    let r = app.get("/v1/spotMembers?limit=3&page=2").await;
    assert_eq!(r.body["items"].as_array().unwrap().len(), 1);
    assert_eq!(r.body["items"][0]["id"], ids[3].as_str());
    assert_eq!(app.get("/v1/spotMembers?page=9").await.body["items"], json!([]));
    assert_eq!(app.get("/v1/spotMembers?email[in]=U0@EXAMPLE.COM,u2@example.com").await.body["total"], 2);
    assert_eq!(app.get("/v1/spotMembers?email[in]=u0@example.com&email[in]=u1@example.com").await.body["total"], 2);
    assert_eq!(app.get("/v1/spotMembers?email%5Bin%5D=u3@example.com").await.body["items"][0]["lastname"], "Byron");
    assert_eq!(app.get("/v1/spotMembers?firstname[in]=Ada").await.body["total"], 2);
    assert_eq!(app.get("/v1/spotMembers?lastname[in]=Hopper,Turing").await.body["total"], 2);
    let now_s = openspot::domain::now_ms() / 1000;
    let after = format!("invitationDate[after]={}", now_s - 3600);
    assert_eq!(app.get(&format!("/v1/spotMembers?{after}")).await.body["total"], 4);
    let before_ms = format!("invitationDate[before]={}", (now_s - 3600) * 1000);
    assert_eq!(app.get(&format!("/v1/spotMembers?{before_ms}")).await.body["total"], 0);
    app.put(&format!("/v1/spotMembers/{}", ids[1]), json!({"status": "Accepted"})).await;
    assert_eq!(app.get(&format!("/v1/spotMembers?registrationDate[after]={}", now_s - 60)).await.body["total"], 1);
    assert_eq!(app.get(&format!("/v1/spotMembers?registrationDate[before]={}", now_s + 60)).await.body["total"], 1);
    for (q, name) in [
        ("nickname[in]=x", "nickname[in]"),
        ("email[eq]=x", "email[eq]"),
        ("email[like]=x", "email[like]"),
        ("page=0", "page"),
        ("limit=0", "limit"),
        ("limit=101", "limit"),
        ("page=abc", "page"),
        ("invitationDate[after]=soon", "invitationDate[after]"),
        ("customRoleId[eq]=nope", "customRoleId[eq]"),
    ] {
        let msg = assert_ms_error(&app.get(&format!("/v1/spotMembers?{q}")).await, 400);
        assert!(msg.starts_with(name), "{q} → {msg}");
    }
});

both!(update_semantics, |app| {
    let id = app.invite("ada@x.io").await;
    let url = format!("/v1/spotMembers/{id}");
    let before = app.get(&url).await.body;
    let r = app
        .put(&url, json!({"firstname": "Ada", "title": "Countess", "avatarUrl": "https://x.io/a.png", "embedBaseUrls": {"default": "https://c.io", "app": "https://app.c.io"}}))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(
        (r.body["firstname"].clone(), r.body["lastname"].clone(), r.body["title"].clone()),
        (json!("Ada"), json!(""), json!("Countess"))
    );
    assert_eq!(r.body["embedBaseUrls"]["app"], "https://app.c.io");
    assert!(r.body["updatedAt"].as_i64().unwrap() >= before["updatedAt"].as_i64().unwrap());
    assert_eq!(app.put(&url, json!({"title": null})).await.body["title"], Value::Null);
    assert!(assert_ms_error(&app.put(&url, json!({"role": "Owner"})).await, 400).starts_with("role"));
    assert_eq!(app.put(&url, json!({"role": "Admin"})).await.body["role"], "Admin");
    for bad in ["Invited", "Left", "bogus"] {
        assert!(assert_ms_error(&app.put(&url, json!({"status": bad})).await, 400).starts_with("status"), "{bad}");
    }
    assert!(assert_ms_error(&app.put(&url, json!({"firstname": 5})).await, 400).starts_with("firstname"));
    // POST is not a method of this route.
    assert_ms_error(&app.post_raw(&url, b"{}".to_vec(), "application/json").await, 405);
    let r = app
        .client
        .put(format!("{}{url}", app.base))
        .header("authorization", &app.key)
        .header("content-type", "application/json")
        .body("{oops")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);

    // Registration: set on the first Accepted, kept through later moves.
    let r = app.put(&url, json!({"status": "Accepted"})).await;
    assert!(r.body["userId"].is_string());
    let now_s = openspot::domain::now_ms() / 1000;
    let q = format!("/v1/spotMembers?registrationDate[after]={}", now_s - 60);
    assert_eq!(app.get(&q).await.body["total"], 1);
    app.put(&url, json!({"status": "Deactivated"})).await;
    let user = app.put(&url, json!({"status": "Accepted"})).await.body["userId"].clone();
    assert_eq!(user, r.body["userId"], "registration (and user) kept");

    // Custom roles.
    let role =
        app.post("/v1/spotMemberCustomRole", json!({"label": "Mod", "permissions": ["moderation.*"]})).await.body["id"]
            .clone();
    assert_eq!(app.put(&url, json!({"customRoleId": role})).await.body["customRoleId"], role);
    assert_eq!(app.get(&format!("/v1/spotMembers?customRoleId[eq]={}", role.as_str().unwrap())).await.body["total"], 1);
    let msg =
        assert_ms_error(&app.put(&url, json!({"customRoleId": "01930000-0000-7000-8000-000000000000"})).await, 400);
    assert!(msg.starts_with("customRoleId"), "{msg}");
    assert_eq!(app.put(&url, json!({"customRoleId": null})).await.body["customRoleId"], Value::Null);
    let r = app.put("/v1/spotMembers/01930000-0000-7000-8000-000000000000", json!({"firstname": "x"})).await;
    assert_eq!(assert_ms_error(&r, 404), "Spot member not found");
});

both!(invitations, |app| {
    assert!(assert_ms_error(&app.post("/v1/spotMembers", json!({})).await, 400).starts_with("email"));
    assert!(
        assert_ms_error(&app.post("/v1/spotMembers", json!({"email": "not-an-email"})).await, 400).starts_with("email")
    );
    // 20 concurrent invitations of one email: one member, exactly one 201.
    let mut tasks = Vec::new();
    for i in 0..20 {
        let (client, url, key) = (app.client.clone(), format!("{}/v1/spotMembers", app.base), app.key.clone());
        let email = if i % 2 == 0 { "Race@x.io" } else { "race@X.io" };
        tasks.push(tokio::spawn(async move {
            let r = client.post(url).header("authorization", key).json(&json!({"email": email})).send().await.unwrap();
            let status = r.status().as_u16();
            (status, r.json::<Value>().await.unwrap()["id"].clone())
        }));
    }
    let mut created = 0;
    let mut ids = std::collections::HashSet::new();
    for t in tasks {
        let (status, id) = t.await.unwrap();
        assert!(status == 200 || status == 201, "{status}");
        created += usize::from(status == 201);
        ids.insert(id.to_string());
    }
    assert_eq!((created, ids.len()), (1, 1));
    assert_eq!(app.get("/v1/spotMembers").await.body["total"], 1);

    // Bulk: valid, invalid, repeated (other case), already a member.
    let r = app.post("/v1/spotMembers~bulkInvite", json!({"emails": ["new@x.io", "bad", "NEW@x.io", "race@x.io", " spaced@x.io "], "withEmailNotification": false})).await;
    assert_eq!(r.status, 201, "{}", r.text);
    // The existing member keeps the casing of whichever concurrent invitation won.
    let created: Vec<String> =
        r.body["created"].as_array().unwrap().iter().map(|m| m["email"].as_str().unwrap().to_lowercase()).collect();
    assert_eq!(created, vec!["new@x.io", "race@x.io", "spaced@x.io"]);
    let failed = r.body["failed"].as_array().unwrap();
    assert_eq!(failed.len(), 2);
    assert_eq!(failed[0]["email"], "bad");
    assert_eq!(failed[1]["email"], "NEW@x.io");
    for key in ["email", "firstname", "lastname", "title", "role", "avatarUrl", "lang", "theme", "timezone"] {
        assert!(failed[0].get(key).is_some(), "{key}");
    }
    assert_eq!(app.get("/v1/spotMembers").await.body["total"], 3);
    assert_ms_error(&app.post("/v1/spotMembers~bulkInvite", json!({"emails": []})).await, 400);
    assert_ms_error(&app.post("/v1/spotMembers~bulkInvite", json!({})).await, 400);
    let many: Vec<String> = (0..201).map(|i| format!("m{i}@x.io")).collect();
    assert_eq!(
        assert_ms_error(&app.post("/v1/spotMembers~bulkInvite", json!({"emails": many})).await, 413),
        "Payload is too large"
    );
    assert!(assert_ms_error(&app.post("/v1/spotMembers~bulkInvite", json!({"emails": [1, 2]})).await, 400)
        .starts_with("emails[0]"));
});

both!(hostile_list_queries_are_400_naming_the_parameter, |app| {
    let a = app.invite("a@x.io").await;
    // `in` lists: repeats are folded, more than 100 distinct values refused.
    let r = app.get("/v1/spotMembers?email[in]=a@x.io,A@x.io,a@x.io&email[in]=a@x.io").await;
    assert_eq!((r.status, &r.body["total"]), (200, &json!(1)), "{}", r.text);
    let many: Vec<String> = (0..101).map(|i| format!("m{i}@x.io")).collect();
    let r = app.get(&format!("/v1/spotMembers?email[in]={}", many.join(","))).await;
    assert!(assert_ms_error(&r, 400).starts_with("email[in]"), "{}", r.text);
    let r = app.get(&format!("/v1/spotMembers?email[in]={}&email[in]=a@x.io", many[..100].join(","))).await;
    assert!(assert_ms_error(&r, 400).starts_with("email[in]"), "{}", r.text);
    let r = app.get(&format!("/v1/spotMembers?email[in]={}", many[..100].join(","))).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let r = app.get(&format!("/v1/spotMembers?customRoleId[eq]={a}&firstname[notin]={}", many.join(","))).await;
    assert!(assert_ms_error(&r, 400).starts_with("firstname[notin]"), "{}", r.text);

    // `page` deep enough to make the database skip more than 10^7 rows, or to
    // overflow the offset, is refused.
    for q in ["page=100002&limit=100", "page=4294967295&limit=100", "page=9223372036854775807"] {
        let r = app.get(&format!("/v1/spotMembers?{q}")).await;
        assert!(assert_ms_error(&r, 400).starts_with("page"), "{q}: {}", r.text);
        let r = app.get(&format!("/v1/groups?{q}")).await;
        assert!(assert_ms_error(&r, 400).starts_with("page"), "{q}: {}", r.text);
    }
    let r = app.get("/v1/spotMembers?page=100001&limit=100").await;
    assert_eq!((r.status, &r.body["items"]), (200, &json!([])), "{}", r.text);

    // Extreme timestamps: a 400 naming the filter, never a 500.
    for v in ["-9223372036854775808", "9223372036854775807", "-9223372036854775807", "999999999999"] {
        for f in ["registrationDate[after]", "invitationDate[before]"] {
            let r = app.get(&format!("/v1/spotMembers?{f}={v}")).await;
            let msg = assert_ms_error(&r, 400);
            assert!(msg.starts_with(f) && msg.contains("range"), "{f}={v}: {msg}");
        }
    }
    let r = app.get("/v1/spotMembers?invitationDate[before]=253402300799").await;
    assert_eq!((r.status, &r.body["total"]), (200, &json!(1)), "{}", r.text);
});

both!(deleting_a_custom_role_reevaluates_smart_groups, |app| {
    let role = app.post("/v1/spotMemberCustomRole", json!({"label": "Mod"})).await.body["id"].clone();
    let other = app.post("/v1/spotMemberCustomRole", json!({"label": "Host"})).await.body["id"].clone();
    let a = app.invite("a@x.io").await;
    let b = app.invite("b@x.io").await;
    app.invite("c@x.io").await;
    assert_eq!(app.put(&format!("/v1/spotMembers/{a}"), json!({"customRoleId": role})).await.status, 200);
    assert_eq!(app.put(&format!("/v1/spotMembers/{b}"), json!({"customRoleId": other})).await.status, 200);
    let group = |name: &str, trigger: Value| {
        json!({"name": name, "type": "Smart", "rules": {"operator": "AND", "conditions": [
            {"operator": "AND", "triggers": [trigger]}]}})
    };
    let holders =
        app.post("/v1/groups", group("Mods", json!({"field": "customRoleId", "op": "eq", "value": role}))).await;
    let holders = holders.body["id"].as_str().unwrap().to_string();
    let others = app
        .post("/v1/groups", group("Not mods", json!({"field": "customRoleId", "op": "notin", "value": [role]})))
        .await;
    let others = others.body["id"].as_str().unwrap().to_string();
    assert_eq!(crate::common::smart_members(&app, &holders).await, vec!["a@x.io"]);
    assert_eq!(crate::common::smart_members(&app, &others).await, vec!["b@x.io", "c@x.io"]);

    assert_eq!(app.delete(&format!("/v1/spotMemberCustomRole/{}", role.as_str().unwrap())).await.status, 204);
    assert_eq!(app.get(&format!("/v1/spotMembers/{a}")).await.body["customRoleId"], Value::Null);
    assert_eq!(crate::common::smart_members(&app, &holders).await, Vec::<String>::new());
    assert_eq!(crate::common::smart_members(&app, &others).await, vec!["a@x.io", "b@x.io", "c@x.io"]);
    assert_eq!(app.get(&format!("/v1/groups/{holders}")).await.body["membersCount"], 0);
    assert_eq!(app.get(&format!("/v1/groups/{others}")).await.body["membersCount"], 3);
});

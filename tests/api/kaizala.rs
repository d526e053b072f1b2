//! The Kaizala dialect: auth flow, lenient bodies, groups, sub-groups, members,
//! permissions, messages, throttling, and visibility across dialects.

use reqwest::Method;
use serde_json::{json, Value};

use crate::both;
use crate::common::{outlive_auth_cache, Resp, TestApp};

/// A connector of the test spot with a token for one number.
#[derive(Clone)]
pub struct Kz {
    pub app_id: String,
    pub secret: String,
    pub refresh: String,
    pub token: String,
}

pub async fn raw(app: &TestApp, method: Method, path: &str, headers: &[(&str, &str)], body: Option<&[u8]>) -> Resp {
    let mut rb = app.client.request(method, format!("{}{}", app.base, path));
    for (k, v) in headers {
        rb = rb.header(*k, *v);
    }
    if let Some(b) = body {
        rb = rb.header("content-type", "application/json").body(b.to_vec());
    }
    let r = rb.send().await.expect("request");
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    let text = r.text().await.unwrap_or_default();
    let body = serde_json::from_str(&text).unwrap_or(Value::Null);
    Resp { status, body, text, headers }
}

pub async fn access(app: &TestApp, app_id: &str, secret: &str, refresh: &str) -> Resp {
    raw(
        app,
        Method::GET,
        "/kaizala/v1/accessToken",
        &[("APPLICATIONID", app_id), ("applicationsecret", secret), ("RefreshToken", refresh)],
        None,
    )
    .await
}

pub async fn setup(app: &TestApp, number: &str) -> Kz {
    let (c, secret) = openspot::domain::kaizala::create_connector(&app.db, app.spot_id, "c").await.unwrap();
    let app_id = c.id.to_string();
    user(app, &app_id, &secret, number).await
}

pub async fn user(app: &TestApp, app_id: &str, secret: &str, number: &str) -> Kz {
    let (refresh, _) = openspot::domain::kaizala::create_user_token(&app.db, app_id, number).await.unwrap();
    let r = access(app, app_id, secret, &refresh).await;
    assert_eq!(r.status, 200, "{}", r.text);
    Kz { app_id: app_id.into(), secret: secret.into(), refresh, token: r.body["accessToken"].as_str().unwrap().into() }
}

pub async fn call(app: &TestApp, kz: &Kz, method: Method, path: &str, body: Option<&str>) -> Resp {
    raw(app, method, &format!("/kaizala/v1{path}"), &[("accessToken", &kz.token)], body.map(str::as_bytes)).await
}

pub fn assert_kz_error(r: &Resp, status: u16, code: &str) -> String {
    assert_eq!(r.status, status, "{}", r.text);
    assert_eq!(r.body["errorCode"], code, "{}", r.text);
    assert!(r.body["errorCategoryKey"].is_string());
    r.body["message"].as_str().unwrap().to_string()
}

async fn create_group(app: &TestApp, kz: &Kz, body: &str) -> String {
    let r = call(app, kz, Method::POST, "/groups", Some(body)).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["membersAdded"], true);
    assert!(r.body.get("message").is_none());
    r.body["groupId"].as_str().unwrap().to_string()
}

async fn members(app: &TestApp, kz: &Kz, gid: &str) -> Vec<Value> {
    let r = call(app, kz, Method::GET, &format!("/groups/{gid}/members"), None).await;
    assert_eq!(r.status, 200, "{}", r.text);
    r.body["members"].as_array().unwrap().clone()
}

fn numbers(ms: &[Value]) -> Vec<String> {
    let mut v: Vec<String> = ms.iter().map(|m| m["mobileNumber"].as_str().unwrap_or("-").to_string()).collect();
    v.sort();
    v
}

both!(auth_flow, |app| {
    let kz = setup(&app, "+91 11 9999 9999").await;
    let r = access(&app, &kz.app_id, &kz.secret, &kz.refresh).await;
    assert_eq!(r.body["endpointUrl"], format!("{}/kaizala", app.base));
    assert_eq!(r.body["refreshToken"], "");
    assert_eq!(r.body["scope"], "token.write");
    let expiry = r.body["accessTokenExpiry"].as_i64().unwrap();
    let now = openspot::domain::now_ms();
    assert!((expiry - now - 86_400_000).abs() < 60_000, "24 h in ms");
    // The number is a registered spot member.
    let m = app.get("/v1/spotMembers").await;
    assert_eq!(m.body["items"][0]["mobileNumber"], "+911199999999");
    assert_eq!(m.body["items"][0]["status"], "Accepted");
    assert_eq!(m.body["items"][0]["email"], Value::Null);
    assert_eq!(app.get("/v1/spotMembers?registrationDate[after]=1000000000").await.body["total"], 1);

    let msg = assert_kz_error(&access(&app, &kz.app_id, "WRONG", &kz.refresh).await, 401, "Unauthenticated");
    assert_eq!(msg, "Dont have correct applicationId and secret in header!");
    assert_kz_error(&access(&app, &kz.app_id, &kz.secret, "garbage").await, 401, "InvalidToken");
    // A new refresh token for the pair replaces the old one.
    let (newer, _) = openspot::domain::kaizala::create_user_token(&app.db, &kz.app_id, "+911199999999").await.unwrap();
    assert_kz_error(&access(&app, &kz.app_id, &kz.secret, &kz.refresh).await, 401, "InvalidToken");
    let r = access(&app, &kz.app_id, &kz.secret, &newer).await;
    assert_eq!(r.status, 200);
    // ...and revokes the access tokens the old one issued.
    assert_kz_error(&call(&app, &kz, Method::GET, "/groups", None).await, 401, "InvalidToken");
    let kz = Kz { refresh: newer.clone(), token: r.body["accessToken"].as_str().unwrap().to_string(), ..kz };

    // Resource auth: header in any case, Bearer, legacy applicationId ignored.
    let msg = assert_kz_error(&raw(&app, Method::GET, "/kaizala/v1/groups", &[], None).await, 401, "InvalidToken");
    assert_eq!(msg, "Token missing. Header should have token as value of ACCESSTOKEN");
    assert_kz_error(
        &raw(&app, Method::GET, "/kaizala/v1/groups", &[("accesstoken", "nope")], None).await,
        401,
        "InvalidToken",
    );
    let bearer = format!("Bearer {}", kz.token);
    assert_eq!(raw(&app, Method::GET, "/kaizala/v1/groups", &[("Authorization", &bearer)], None).await.status, 200);
    let r = raw(
        &app,
        Method::GET,
        "/kaizala/v1/groups",
        &[("ACCESSTOKEN", &kz.token), ("applicationId", "legacy")],
        Some(b""),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);

    // Deleting the connector ends its tokens.
    openspot::domain::kaizala::delete_connector(&app.db, kz.app_id.parse().unwrap()).await.unwrap();
    assert_kz_error(&access(&app, &kz.app_id, &kz.secret, &newer).await, 401, "Unauthenticated");
    outlive_auth_cache(&app).await;
    assert_eq!(
        call(&app, &kz, Method::GET, "/groups", None).await.status,
        401,
        "access token still accepted after the auth cache lifetime"
    );
});

both!(refresh_token_renewal_and_expiry, |app| {
    let kz = setup(&app, "+911199999999").await;
    let now = openspot::domain::now_ms();
    let day = 86_400_000i64;
    let sql = "UPDATE kz_refresh_tokens SET issued_at = $1, expires_at = $2";
    match &app.db {
        openspot::Db::Sqlite(p, ..) => {
            sqlx::query(sql).bind(now - 340 * day).bind(now + 25 * day).execute(p).await.map(|_| ())
        }
        openspot::Db::Postgres(p) => {
            sqlx::query(sql).bind(now - 340 * day).bind(now + 25 * day).execute(p).await.map(|_| ())
        }
    }
    .unwrap();
    let r = access(&app, &kz.app_id, &kz.secret, &kz.refresh).await;
    let renewed = r.body["refreshToken"].as_str().unwrap().to_string();
    assert!(!renewed.is_empty(), "a new refresh token in the last 10 %: {}", r.text);
    assert_eq!(access(&app, &kz.app_id, &kz.secret, &renewed).await.body["refreshToken"], "");
    assert_kz_error(&access(&app, &kz.app_id, &kz.secret, &kz.refresh).await, 401, "InvalidToken");
    // An expired access token (never used, so not cached) is refused.
    let fresh = access(&app, &kz.app_id, &kz.secret, &renewed).await.body["accessToken"].as_str().unwrap().to_string();
    let sql = "UPDATE kz_access_tokens SET expires_at = $1";
    match &app.db {
        openspot::Db::Sqlite(p, ..) => sqlx::query(sql).bind(now - 1).execute(p).await.map(|_| ()),
        openspot::Db::Postgres(p) => sqlx::query(sql).bind(now - 1).execute(p).await.map(|_| ()),
    }
    .unwrap();
    assert_kz_error(
        &raw(&app, Method::GET, "/kaizala/v1/groups", &[("accessToken", &fresh)], None).await,
        401,
        "InvalidToken",
    );
});

both!(groups_with_real_client_bodies, |app| {
    let kz = setup(&app, "+911199999999").await;
    let g1 = create_group(&app, &kz, "{name:\"Kaizala Test group\", welcomeMessage:\"Welcome\", members:[\"+911199999990\"], groupType:\"Group\"}\r\n").await;
    let g2 = create_group(&app, &kz, "{'name': 'Py group', 'members': ['+91 11 9999 9991']}").await;
    let g3 =
        create_group(&app, &kz, r#"{"Name":"Net group","WelcomeMessage":"y","Members":[],"GroupType":"ConnectGroup"}"#)
            .await;
    let ms = members(&app, &kz, &g1).await;
    assert_eq!(numbers(&ms), vec!["+911199999990", "+911199999999"]);
    let me = ms.iter().find(|m| m["mobileNumber"] == "+911199999999").unwrap();
    assert_eq!((me["role"].clone(), me["isProvisioned"].clone()), (json!("Admin"), json!(true)));
    let other = ms.iter().find(|m| m["mobileNumber"] == "+911199999990").unwrap();
    assert_eq!((other["role"].clone(), other["isProvisioned"].clone()), (json!("Member"), json!(false)));
    assert_eq!(numbers(&members(&app, &kz, &g2).await), vec!["+911199999991", "+911199999999"]);

    let list = call(&app, &kz, Method::GET, "/groups", None).await;
    let groups = list.body["groups"].as_array().unwrap();
    assert_eq!(groups.len(), 3);
    let mut keys: Vec<&String> = groups[0].as_object().unwrap().keys().collect();
    keys.sort();
    assert_eq!(keys, vec!["callerRole", "groupId", "groupImageUrl", "groupName", "groupType"]);
    assert!(groups.iter().any(|g| g["groupId"] == g3.as_str() && g["groupType"] == "ConnectGroup"));
    for flag in ["showDetails=true", "showDetail=true"] {
        let d = call(&app, &kz, Method::GET, &format!("/groups?{flag}"), None).await;
        let g = d.body["groups"].as_array().unwrap().iter().find(|g| g["groupId"] == g1.as_str()).unwrap().clone();
        assert_eq!(
            (g["currentLevelUserCount"].clone(), g["currentLevelUnProvisionedUserCount"].clone()),
            (json!(2), json!(1))
        );
        for k in [
            "hasSubGroups",
            "hasParentGroups",
            "currentLevelSubGroupCount",
            "userCount",
            "uniqueUserCount",
            "unProvisionedUserCount",
            "isMappedToTenant",
            "isDuplicate",
            "isEditable",
            "isDetailsReadable",
        ] {
            assert!(g.get(k).is_some(), "{flag}: {k}");
        }
    }
    let one = call(&app, &kz, Method::GET, &format!("/groups/{g1}@1"), Some("")).await;
    assert_eq!(one.body["groups"][0]["groupName"], "Kaizala Test group", "{}", one.text);
    let doubled = raw(&app, Method::GET, "/kaizala//v1/groups", &[("accessToken", &kz.token)], None).await;
    assert_eq!(doubled.status, 200, "{}", doubled.text);

    // Bad input: InvalidParameters, nothing created.
    let many: Vec<String> = (0..101).map(|i| format!("+9111999{i:05}")).collect();
    let body = json!({"name": "big", "members": many}).to_string();
    assert_kz_error(&call(&app, &kz, Method::POST, "/groups", Some(&body)).await, 400, "InvalidParameters");
    let msg = assert_kz_error(
        &call(&app, &kz, Method::POST, "/groups", Some("{name:'x', members:['911199999990']}")).await,
        400,
        "InvalidParameters",
    );
    assert!(msg.starts_with("members[0]"), "{msg}");
    assert_kz_error(&call(&app, &kz, Method::POST, "/groups", Some("{name:")).await, 400, "InvalidParameters");
    assert_eq!(app.get("/v1/groups").await.body["total"], 3);
});

both!(sub_groups, |app| {
    let kz = setup(&app, "+911199999999").await;
    let parent = create_group(&app, &kz, "{name:'Parent'}").await;
    let r = call(
        &app,
        &kz,
        Method::POST,
        &format!("/groups/{parent}/subgroups"),
        Some("{groupName:'Child', members:['+911199999990']}"),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let child = r.body["groupId"].as_str().unwrap().to_string();
    let other = create_group(&app, &kz, "{name:'Other'}").await;
    let r = call(
        &app,
        &kz,
        Method::PUT,
        &format!("/groups/{parent}/SubGroups"),
        Some(&format!("{{subGroups:['{other}@1']}}")),
    )
    .await;
    assert_eq!(r.body, json!({"result": true}), "{}", r.text);
    let r = call(&app, &kz, Method::GET, &format!("/groups/{parent}/subGroups"), None).await;
    let mut subs: Vec<String> =
        r.body["subGroups"].as_array().unwrap().iter().map(|g| g["groupName"].as_str().unwrap().to_string()).collect();
    subs.sort();
    assert_eq!(subs, vec!["Child", "Other"]);
    assert_eq!(r.body["hasSubGroups"], true);
    // Cycles are refused.
    let r = call(
        &app,
        &kz,
        Method::PUT,
        &format!("/groups/{child}/subGroups"),
        Some(&format!("{{subGroups:['{parent}']}}")),
    )
    .await;
    assert_kz_error(&r, 400, "InvalidParameters");
    let d = call(&app, &kz, Method::GET, "/groups?showDetails=true", None).await;
    let p = d.body["groups"].as_array().unwrap().iter().find(|g| g["groupId"] == parent.as_str()).unwrap().clone();
    assert_eq!(
        (p["currentLevelSubGroupCount"].clone(), p["userCount"].clone(), p["uniqueUserCount"].clone()),
        (json!(2), json!(4), json!(2))
    );
    let r = call(&app, &kz, Method::DELETE, &format!("/groups/{parent}/subGroups/{other}"), None).await;
    assert_eq!(r.body, json!({"result": true}));
    let r = call(&app, &kz, Method::GET, &format!("/groups/{parent}/subGroups"), None).await;
    assert_eq!(r.body["subGroups"].as_array().unwrap().len(), 1);
});

both!(members_roles_and_permissions, |app| {
    let admin = setup(&app, "+911199999999").await;
    let gid = create_group(&app, &admin, "{name:'Team', members:['+911199999990']}").await;
    let r = call(
        &app,
        &admin,
        Method::PUT,
        &format!("/groups/{gid}/members"),
        Some("{members:['+911199999991', '+911199999990']}"),
    )
    .await;
    assert_eq!(r.body, json!({"result": true}), "{}", r.text);
    let ms = members(&app, &admin, &gid).await;
    assert_eq!(numbers(&ms), vec!["+911199999990", "+911199999991", "+911199999999"], "no duplicate");
    // A member added via /v1 (email only) shows with a null number.
    let e = app.invite("mail@x.io").await;
    assert_eq!(app.post(&format!("/v1/groups/{gid}/spotMembers"), json!({"spotMemberId": e})).await.status, 204);
    let ms = members(&app, &admin, &gid).await;
    assert!(ms.iter().any(|m| m["id"] == e.as_str() && m["mobileNumber"].is_null()));
    // And the group and its phone members show through /v1.
    let v1 = app.get(&format!("/v1/groups/{gid}/spotMembers")).await;
    assert_eq!(v1.body["total"], 4);
    assert!(v1.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .any(|m| m["mobileNumber"] == "+911199999991" && m["email"].is_null()));

    let me = ms.iter().find(|m| m["mobileNumber"] == "+911199999999").unwrap()["id"].as_str().unwrap().to_string();
    let plain = ms.iter().find(|m| m["mobileNumber"] == "+911199999990").unwrap()["id"].as_str().unwrap().to_string();
    let msg = assert_kz_error(
        &call(&app, &admin, Method::PUT, &format!("/groups/{gid}/members/{me}"), Some("{role:'Member'}")).await,
        400,
        "InvalidParameters",
    );
    assert!(msg.contains("last Admin"), "{msg}");
    assert_kz_error(
        &call(&app, &admin, Method::DELETE, &format!("/groups/{gid}/members/{me}"), None).await,
        400,
        "InvalidParameters",
    );
    let r =
        call(&app, &admin, Method::PUT, &format!("/groups/{gid}/members/{plain}"), Some(r#"{"role":"Admin"}"#)).await;
    assert_eq!(r.body, json!({"result": true}), "{}", r.text);
    let r = call(&app, &admin, Method::PUT, &format!("/groups/{gid}/members/{plain}"), Some("{role:'member'}")).await;
    assert_eq!(r.body, json!({"result": true}), "{}", r.text);

    // A plain member can read but not change the group.
    let member = user(&app, &admin.app_id, &admin.secret, "+911199999990").await;
    assert_eq!(members(&app, &member, &gid).await.len(), 4);
    assert_kz_error(
        &call(&app, &member, Method::PUT, &format!("/groups/{gid}/members"), Some("{members:['+911199999992']}")).await,
        403,
        "AccessDenied",
    );
    assert_kz_error(
        &call(&app, &member, Method::PUT, &format!("/groups/{gid}/members/{me}"), Some("{role:'Member'}")).await,
        403,
        "AccessDenied",
    );
    assert_kz_error(
        &call(&app, &member, Method::DELETE, &format!("/groups/{gid}/members/{me}"), None).await,
        403,
        "AccessDenied",
    );
    // Someone outside the group cannot read it.
    let outsider = user(&app, &admin.app_id, &admin.secret, "+911199999993").await;
    assert_kz_error(
        &call(&app, &outsider, Method::GET, &format!("/groups/{gid}/members"), None).await,
        403,
        "AccessDenied",
    );
    assert_kz_error(
        &call(&app, &admin, Method::GET, "/groups/01930000-0000-7000-8000-000000000000/members", None).await,
        404,
        "GroupNotFound",
    );

    let r = call(&app, &admin, Method::DELETE, &format!("/groups/{gid}/members/{plain}"), Some("")).await;
    assert_eq!(r.body, json!({"result": true}), "{}", r.text);
    assert_eq!(members(&app, &admin, &gid).await.len(), 3);
    assert_kz_error(
        &call(&app, &admin, Method::DELETE, &format!("/groups/{gid}/members/{plain}"), None).await,
        404,
        "MemberNotFound",
    );

    // Another spot's connector sees nothing of it.
    let (other_spot, _) = app.other_spot().await;
    let (c2, s2) = openspot::domain::kaizala::create_connector(&app.db, other_spot, "c2").await.unwrap();
    let stranger = user(&app, &c2.id.to_string(), &s2, "+911199999999").await;
    let r = call(&app, &stranger, Method::GET, &format!("/groups/{gid}/members"), None).await;
    assert_kz_error(&r, 404, "GroupNotFound");
    assert_eq!(call(&app, &stranger, Method::GET, "/groups", None).await.body["groups"], json!([]));
});

both!(messages_and_throttling, |app| {
    let kz = setup(&app, "+911199999999").await;
    let gid = create_group(&app, &kz, "{name:'Chat'}").await;
    let r = call(
        &app,
        &kz,
        Method::POST,
        &format!("/groups/{gid}/messages"),
        Some("{message:\"Test message via API\"}\r\n"),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(r.body["referenceId"].is_string());
    let long = json!({"message": "x".repeat(4001)}).to_string();
    assert_kz_error(
        &call(&app, &kz, Method::POST, &format!("/groups/{gid}/messages"), Some(&long)).await,
        400,
        "InvalidParameters",
    );
    // 100 calls a minute per connector (two calls above).
    let mut last = None;
    for _ in 0..100 {
        let r = call(&app, &kz, Method::GET, "/groups", None).await;
        if r.status != 200 {
            last = Some(r);
            break;
        }
    }
    let r = last.expect("the limit was never reached");
    assert_kz_error(&r, 429, "Throttled");
    assert!(r.header("retry-after").and_then(|v| v.parse::<u64>().ok()).is_some_and(|s| s >= 1));
});

/// A real SMS relay: an HTTP server on a loopback port recording every posted body.
pub async fn sms_receiver() -> (String, std::sync::Arc<std::sync::Mutex<Vec<Value>>>) {
    slow_sms_receiver(std::time::Duration::ZERO).await
}

/// An SMS relay that takes `delay` to answer each post.
pub async fn slow_sms_receiver(delay: std::time::Duration) -> (String, std::sync::Arc<std::sync::Mutex<Vec<Value>>>) {
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let store = seen.clone();
    let app = axum::Router::new().route(
        "/sms",
        axum::routing::post(move |axum::Json(body): axum::Json<Value>| {
            let store = store.clone();
            async move {
                tokio::time::sleep(delay).await;
                store.lock().unwrap().push(body);
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/sms", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, seen)
}

/// The relay's bodies once it has received `n` (PINs are relayed in the background).
pub async fn relayed(seen: &std::sync::Arc<std::sync::Mutex<Vec<Value>>>, n: usize) -> Vec<Value> {
    for _ in 0..200 {
        let posted = seen.lock().unwrap().clone();
        if posted.len() >= n {
            return posted;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    seen.lock().unwrap().clone()
}

async fn pin_login_flow(backend: openspot::store::Backend) {
    let (url, seen) = sms_receiver().await;
    let Some(app) = TestApp::spawn_with(backend, |c| {
        c.sms_webhook_url = Some(url.clone());
        c.allow_private_targets = true;
    })
    .await
    else {
        return;
    };
    let kz = setup(&app, "+911199999999").await;
    let gen = |number: &str| format!("{{\"mobileNumber\":\"{number}\", applicationId:\"{}\"}}", kz.app_id);
    // A number that is not a member: {} and nothing sent.
    let r = raw(&app, Method::POST, "/kaizala/v1/generatePin", &[], Some(gen("+911199999990").as_bytes())).await;
    assert_eq!((r.status, r.body.clone()), (200, json!({})), "{}", r.text);
    let r = raw(&app, Method::POST, "/kaizala/v1/generatePin", &[], Some(gen("+911199999999").as_bytes())).await;
    assert_eq!((r.status, r.body.clone()), (200, json!({})));
    // The relay is called in the background; the non-member's PIN never comes.
    let posted = relayed(&seen, 1).await;
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let posted = if posted.len() == 1 { seen.lock().unwrap().clone() } else { posted };
    assert_eq!(posted.len(), 1, "only the member's PIN is sent: {posted:?}");
    assert_eq!(posted[0]["mobileNumber"], "+911199999999");
    let pin: u32 = posted[0]["pin"].as_str().unwrap().parse().unwrap();
    assert!((1000..=9999).contains(&pin));
    let login = |pin: Value, secret: Option<&str>| {
        let mut body = json!({"mobileNumber": "+911199999999", "applicationId": kz.app_id, "pin": pin});
        if let Some(s) = secret {
            body["applicationSecret"] = json!(s);
        }
        body.to_string()
    };
    let r = raw(
        &app,
        Method::POST,
        "/kaizala/v1/loginWithPinAndApplicationId",
        &[],
        Some(login(json!(pin), Some("WRONG")).as_bytes()),
    )
    .await;
    assert_kz_error(&r, 401, "Unauthenticated");
    let r = raw(
        &app,
        Method::POST,
        "/kaizala/v1/loginWithPinAndApplicationId",
        &[],
        Some(login(json!(pin), Some(&kz.secret)).as_bytes()),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let refresh = r.body["refreshToken"].as_str().unwrap().to_string();
    assert!(r.body["grantedScope"].is_string() && r.body["refreshTokenExpiry"].is_i64());
    assert_eq!(access(&app, &kz.app_id, &kz.secret, &refresh).await.status, 200);
    // The PIN is spent; a new one as a string; five wrong tries exhaust it.
    assert_kz_error(
        &raw(
            &app,
            Method::POST,
            "/kaizala/v1/loginWithPinAndApplicationId",
            &[],
            Some(login(json!(pin), None).as_bytes()),
        )
        .await,
        401,
        "Unauthenticated",
    );
    raw(&app, Method::POST, "/kaizala/v1/generatePin", &[], Some(gen("+911199999999").as_bytes())).await;
    let pin2 = relayed(&seen, 2).await[1]["pin"].as_str().unwrap().to_string();
    let r = raw(
        &app,
        Method::POST,
        "/kaizala/v1/loginWithPinAndApplicationId",
        &[],
        Some(login(json!(pin2), None).as_bytes()),
    )
    .await;
    assert_eq!(r.status, 200, "pin as a string: {}", r.text);
    raw(&app, Method::POST, "/kaizala/v1/generatePin", &[], Some(gen("+911199999999").as_bytes())).await;
    let pin3 = relayed(&seen, 3).await[2]["pin"].as_str().unwrap().to_string();
    let wrong = if pin3 == "1000" { "1001" } else { "1000" };
    for _ in 0..5 {
        raw(
            &app,
            Method::POST,
            "/kaizala/v1/loginWithPinAndApplicationId",
            &[],
            Some(login(json!(wrong), None).as_bytes()),
        )
        .await;
    }
    let r = raw(
        &app,
        Method::POST,
        "/kaizala/v1/loginWithPinAndApplicationId",
        &[],
        Some(login(json!(pin3), None).as_bytes()),
    )
    .await;
    assert_kz_error(&r, 401, "Unauthenticated");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pin_login_sqlite() {
    pin_login_flow(openspot::store::Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pin_login_postgres() {
    pin_login_flow(openspot::store::Backend::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pin_relay_to_private_targets_is_refused_by_default() {
    let (url, seen) = sms_receiver().await;
    let Some(app) =
        TestApp::spawn_with(openspot::store::Backend::Sqlite, |c| c.sms_webhook_url = Some(url.clone())).await
    else {
        return;
    };
    let kz = setup(&app, "+911199999999").await;
    let body = format!("{{mobileNumber:'+911199999999', applicationId:'{}'}}", kz.app_id);
    let r = raw(&app, Method::POST, "/kaizala/v1/generatePin", &[], Some(body.as_bytes())).await;
    assert_eq!((r.status, r.body.clone()), (200, json!({})));
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(seen.lock().unwrap().is_empty(), "a loopback relay is refused without OPENSPOT_ALLOW_PRIVATE_TARGETS");
}

both!(attaching_a_sub_group_needs_admin_of_both_groups, |app| {
    let alice = setup(&app, "+911199999999").await;
    let bob = user(&app, &alice.app_id, &alice.secret, "+911199999990").await;
    let parent = create_group(&app, &alice, "{name:'Alice parent'}").await;
    // Bob is a plain member of Alice's group and Admin of his own.
    let r = call(&app, &alice, Method::PUT, &format!("/groups/{parent}/members"), Some("{members:['+911199999990']}"))
        .await;
    assert_eq!(r.body, json!({"result": true}), "{}", r.text);
    let bobs = create_group(&app, &bob, "{name:'Bob group'}").await;
    let foreign = create_group(&app, &bob, "{name:'Bob other'}").await;

    // Admin of the parent only: refused, nothing linked.
    let body = format!("{{subGroups:['{bobs}']}}");
    let r = call(&app, &alice, Method::PUT, &format!("/groups/{parent}/subGroups"), Some(&body)).await;
    assert_kz_error(&r, 403, "AccessDenied");
    // Admin of the child only: refused too.
    let body = format!("{{subGroups:['{bobs}']}}");
    let r = call(&app, &bob, Method::PUT, &format!("/groups/{parent}/subGroups"), Some(&body)).await;
    assert_kz_error(&r, 403, "AccessDenied");
    let r = call(&app, &alice, Method::GET, &format!("/groups/{parent}/subGroups"), None).await;
    assert_eq!(r.body["subGroups"], json!([]), "{}", r.text);

    // Once Alice is Admin of Bob's group as well, she can attach it; one child she does
    // not administer refuses the whole call.
    let r =
        call(&app, &bob, Method::PUT, &format!("/groups/{bobs}/members"), Some("{members:['+911199999999']}")).await;
    assert_eq!(r.body, json!({"result": true}), "{}", r.text);
    let bob_members = members(&app, &bob, &bobs).await;
    let alice_id = bob_members.iter().find(|m| m["mobileNumber"] == "+911199999999").unwrap()["id"].as_str().unwrap();
    let r = call(&app, &bob, Method::PUT, &format!("/groups/{bobs}/members/{alice_id}"), Some("{role:'Admin'}")).await;
    assert_eq!(r.body, json!({"result": true}), "{}", r.text);
    let body = format!("{{subGroups:['{bobs}', '{foreign}']}}");
    let r = call(&app, &alice, Method::PUT, &format!("/groups/{parent}/subGroups"), Some(&body)).await;
    assert_kz_error(&r, 403, "AccessDenied");
    let body = format!("{{subGroups:['{bobs}']}}");
    let r = call(&app, &alice, Method::PUT, &format!("/groups/{parent}/subGroups"), Some(&body)).await;
    assert_eq!(r.body, json!({"result": true}), "{}", r.text);
    let r = call(&app, &alice, Method::GET, &format!("/groups/{parent}/subGroups"), None).await;
    assert_eq!(r.body["subGroups"][0]["groupId"], bobs.as_str(), "{}", r.text);

    // A spot Admin is Admin everywhere.
    let admin_id = {
        let r = app.get("/v1/spotMembers?limit=100").await;
        r.body["items"].as_array().unwrap().iter().find(|m| m["mobileNumber"] == "+911199999999").unwrap()["id"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert_eq!(app.put(&format!("/v1/spotMembers/{admin_id}"), json!({"role": "Admin"})).await.status, 200);
    let body = format!("{{subGroups:['{foreign}']}}");
    let r = call(&app, &alice, Method::PUT, &format!("/groups/{parent}/subGroups"), Some(&body)).await;
    assert_eq!(r.body, json!({"result": true}), "{}", r.text);
});

both!(oversized_bodies_are_413_and_close_the_connection_in_both_dialects, |app| {
    let kz = setup(&app, "+33612345678").await;
    let big = format!("{{\"groupName\": \"{}\"}}", "a".repeat(1_100_000));
    let r = call(&app, &kz, Method::POST, "/groups", Some(&big)).await;
    assert_eq!(assert_kz_error(&r, 413, "InvalidParameters"), "Payload is too large");
    assert_eq!(r.header("connection").as_deref(), Some("close"));
    let big = format!("{{\"email\": \"{}\"}}", "a".repeat(1_100_000));
    let r = app.post_raw("/v1/spotMembers", big.into_bytes(), "application/json").await;
    assert_eq!(r.status, 413, "{}", r.text);
    assert_eq!(r.header("connection").as_deref(), Some("close"));
});

/// The spot part of a routed token (`kza_<spot>.<random>`), base64url.
fn spot_part(id: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(uuid::Uuid::parse_str(id).unwrap().as_bytes())
}

// Tokens name their spot, so a lookup reads one spot's rows (one shard on Citus); a
// token whose spot part names another spot matches nothing (its hash covers the whole
// token); tokens minted before tokens named their spot are still found by hash alone.
both!(tokens_name_their_spot_and_older_ones_still_work, |app| {
    let kz = setup(&app, "+91 11 9999 9999").await;
    let ours = spot_part(&app.spot_id.to_string());
    for token in [&kz.token, &kz.refresh] {
        let (head, _) = token.split_once('.').expect("a routed token");
        assert!(head.ends_with(&ours), "{token} names spot {}", app.spot_id);
    }
    assert_eq!(call(&app, &kz, Method::GET, "/groups", None).await.status, 200);

    let (other, _) = app.other_spot().await;
    let moved = kz.token.replacen(&ours, &spot_part(&other.to_string()), 1);
    let r = call(&app, &Kz { token: moved, ..kz.clone() }, Method::GET, "/groups", None).await;
    assert_eq!(r.status, 401, "{}", r.text);

    // An access token of the old form (no spot part), stored by its hash as before.
    let legacy = "kza_OLDFORMATtokenOLDFORMATtokenOLDFORMATtok";
    let hash: [u8; 32] = <sha2::Sha256 as sha2::Digest>::digest(legacy.as_bytes()).into();
    let hex: String = hash.iter().map(|b| format!("{b:02x}")).collect();
    let literal =
        if app.database_url.starts_with("sqlite") { format!("x'{hex}'") } else { format!("'\\x{hex}'::bytea") };
    crate::console::exec(
        &app,
        &format!(
            "INSERT INTO kz_access_tokens (spot_id, token_hash, connector_id, member_id, expires_at) \
             SELECT spot_id, {literal}, connector_id, member_id, expires_at FROM kz_access_tokens LIMIT 1"
        ),
    )
    .await;
    let r = call(&app, &Kz { token: legacy.into(), ..kz.clone() }, Method::GET, "/groups", None).await;
    assert_eq!(r.status, 200, "{}", r.text);
});

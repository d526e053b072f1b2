//! The operator console (`/console/`): sign-in by password and by one-time link,
//! sessions (CSRF, idle expiry, sign-out, role loss), throttling, isolation between
//! spots, and every page rendering, on both stores.

use openspot::domain::console;
use openspot::domain::ids::SpotId;
use openspot::Db;
use reqwest::header::{HeaderMap, LOCATION, SET_COOKIE};
use serde_json::json;

use crate::both;
use crate::both_with;
use crate::common::TestApp;

pub const PASSWORD: &str = "correct horse battery staple";

/// One answer of the console.
#[derive(Debug)]
pub struct Page {
    pub status: u16,
    pub text: String,
    pub headers: HeaderMap,
}

impl Page {
    pub fn location(&self) -> Option<&str> {
        self.headers.get(LOCATION).and_then(|v| v.to_str().ok())
    }
    pub fn set_cookie(&self) -> Option<&str> {
        self.headers.get(SET_COOKIE).and_then(|v| v.to_str().ok())
    }
    /// The CSRF token written in the page's forms.
    pub fn csrf(&self) -> String {
        let at = self.text.find(r#"name="_csrf" value=""#).expect("a CSRF field") + r#"name="_csrf" value=""#.len();
        self.text[at..].split('"').next().unwrap().to_string()
    }
    pub fn assert_redirected_to_login(&self) {
        assert_eq!(self.status, 303, "{}", self.text);
        assert_eq!(self.location(), Some("/console/login"));
    }
}

/// A browser on the console: follows no redirect, keeps the session cookie.
pub struct Browser<'a> {
    pub app: &'a TestApp,
    /// The server it talks to: the app's, or another replica on the same database.
    pub base: String,
    pub client: reqwest::Client,
    pub cookie: Option<String>,
    pub csrf: String,
}

impl<'a> Browser<'a> {
    pub fn new(app: &'a TestApp) -> Self {
        let client = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
        Browser { app, base: app.base.clone(), client, cookie: None, csrf: String::new() }
    }

    /// The same signed-in browser (cookie and CSRF token) talking to the server at `base`.
    pub fn on(&self, base: &str) -> Browser<'a> {
        Browser {
            app: self.app,
            base: base.to_string(),
            client: self.client.clone(),
            cookie: self.cookie.clone(),
            csrf: self.csrf.clone(),
        }
    }

    async fn finish(&mut self, rb: reqwest::RequestBuilder) -> Page {
        let rb = match &self.cookie {
            Some(c) => rb.header("cookie", format!("{}={c}", "openspot_console")),
            None => rb,
        };
        let r = rb.send().await.unwrap();
        let status = r.status().as_u16();
        let headers = r.headers().clone();
        let text = r.text().await.unwrap();
        let page = Page { status, text, headers };
        if let Some(set) = page.set_cookie() {
            let value = set.split(';').next().unwrap().split_once('=').unwrap().1.to_string();
            self.cookie = (!value.is_empty()).then_some(value);
        }
        page
    }

    pub async fn get(&mut self, path: &str) -> Page {
        let rb = self.client.get(format!("{}{path}", self.base));
        let page = self.finish(rb).await;
        if page.status == 200 && page.text.contains(r#"name="_csrf""#) {
            self.csrf = page.csrf();
        }
        page
    }

    /// A form POST without adding the CSRF token.
    pub async fn post_raw(&mut self, path: &str, form: &[(&str, &str)]) -> Page {
        let rb = self.client.post(format!("{}{path}", self.base)).form(form);
        self.finish(rb).await
    }

    /// A form POST with the session's CSRF token (read from the last page).
    pub async fn post(&mut self, path: &str, form: &[(&str, &str)]) -> Page {
        let csrf = self.csrf.clone();
        let mut fields = form.to_vec();
        fields.push(("_csrf", &csrf));
        self.post_raw(path, &fields).await
    }

    pub async fn sign_in(&mut self, email: &str, password: &str) -> Page {
        let page = self.post_raw("/console/login", &[("email", email), ("password", password)]).await;
        if page.status == 303 {
            let home = self.get("/console/").await;
            assert_eq!(home.status, 200, "{}", home.text);
        }
        page
    }
}

/// Invites `email` into the app's spot as an Admin with the console password; returns its id.
pub async fn admin(app: &TestApp, email: &str) -> String {
    let id = app.invite(email).await;
    let r = app.put(&format!("/v1/spotMembers/{id}"), json!({"role": "Admin", "firstname": "Ada"})).await;
    assert_eq!(r.status, 200, "{}", r.text);
    console::set_password(&app.db, app.spot_id, email, PASSWORD).await.unwrap();
    id
}

/// A browser signed in as a new Admin of the app's spot.
pub async fn signed_in(app: &TestApp) -> (Browser<'_>, String) {
    let id = admin(app, "admin@example.com").await;
    let mut b = Browser::new(app);
    let r = b.sign_in("admin@example.com", PASSWORD).await;
    assert_eq!(r.status, 303, "{}", r.text);
    (b, id)
}

/// Runs one statement on the test database (to age a session or a link).
pub async fn exec(app: &TestApp, sql: &str) {
    match &app.db {
        Db::Sqlite(p, ..) => sqlx::query(sql).execute(p).await.map(|_| ()).unwrap(),
        Db::Postgres(p) => sqlx::query(sql).execute(p).await.map(|_| ()).unwrap(),
    }
}

both!(password_sign_in_overview_and_sign_out, |app| {
    admin(&app, "admin@example.com").await;
    app.invite("someone@example.com").await;
    let mut b = Browser::new(&app);
    // Not signed in: every page sends to the sign-in page, which renders.
    b.get("/console/").await.assert_redirected_to_login();
    let login = b.get("/console/login").await;
    assert_eq!(login.status, 200);
    assert!(login.text.contains(r#"<label for="email">"#) && login.text.contains(r#"<label for="password">"#));

    let wrong = b.post_raw("/console/login", &[("email", "admin@example.com"), ("password", "not it at all")]).await;
    assert_eq!(wrong.status, 401);
    assert!(wrong.text.contains("Wrong email or password"), "{}", wrong.text);
    assert!(b.cookie.is_none());
    let nobody = b.post_raw("/console/login", &[("email", "nobody@example.com"), ("password", PASSWORD)]).await;
    assert_eq!(nobody.status, 401);

    let ok = b.post_raw("/console/login", &[("email", "ADMIN@example.com"), ("password", PASSWORD)]).await;
    assert_eq!(ok.status, 303, "{}", ok.text);
    assert_eq!(ok.location(), Some("/console/"));
    let cookie = ok.set_cookie().unwrap().to_string();
    assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Lax") && cookie.contains("Path=/console"));
    assert!(!cookie.contains("Secure"), "{cookie}");

    let home = b.get("/console/").await;
    assert_eq!(home.status, 200, "{}", home.text);
    assert!(home.text.contains("<h1>Overview</h1>"));
    assert!(home.text.contains("test spot"));
    assert!(home.text.contains("someone@example.com"), "recent joins list the new member");
    assert!(home.text.contains("Invited"), "counts by status");
    assert_eq!(home.headers.get("cache-control").unwrap(), "no-store");

    let out = b.post("/console/logout", &[]).await;
    assert_eq!(out.status, 303);
    assert_eq!(out.location(), Some("/console/login"));
    assert!(out.set_cookie().unwrap().contains("Max-Age=0"));
    // The old cookie value no longer works either.
    let old = cookie.split(';').next().unwrap().split_once('=').unwrap().1.to_string();
    b.cookie = Some(old);
    b.get("/console/").await.assert_redirected_to_login();
});

both_with!(
    the_cookie_is_secure_behind_https,
    |config| {
        config.public_url = "https://console.example".into();
    },
    |app| {
        admin(&app, "admin@example.com").await;
        let mut b = Browser::new(&app);
        let ok = b.post_raw("/console/login", &[("email", "admin@example.com"), ("password", PASSWORD)]).await;
        assert_eq!(ok.status, 303);
        assert!(ok.set_cookie().unwrap().contains("; Secure"));
    }
);

both!(a_link_signs_in_once_and_expires, |app| {
    admin(&app, "admin@example.com").await;
    let token = console::create_login_link(&app.db, app.spot_id, "admin@example.com").await.unwrap();
    let mut b = Browser::new(&app);
    // Opening the link does not spend it (mail scanners fetch links).
    let shown = b.get(&console::link_path(&token)).await;
    assert_eq!(shown.status, 200);
    assert!(shown.text.contains(&token));
    let ok = b.post_raw("/console/link", &[("token", &token)]).await;
    assert_eq!(ok.status, 303, "{}", ok.text);
    assert!(b.get("/console/").await.text.contains("<h1>Overview</h1>"));

    let mut other = Browser::new(&app);
    let again = other.post_raw("/console/link", &[("token", &token)]).await;
    assert_eq!(again.status, 401, "a link works once");
    assert!(again.text.contains("expired or was already used"));

    let late = console::create_login_link(&app.db, app.spot_id, "admin@example.com").await.unwrap();
    exec(&app, "UPDATE console_login_links SET expires_at = 1 WHERE used_at IS NULL").await;
    assert_eq!(other.post_raw("/console/link", &[("token", &late)]).await.status, 401, "an expired link");
    assert_eq!(other.post_raw("/console/link", &[("token", "made-up")]).await.status, 401);

    // Only Admins get links.
    app.invite("member@example.com").await;
    let e = console::create_login_link(&app.db, app.spot_id, "member@example.com").await.unwrap_err();
    assert!(e.to_string().contains("not an Admin"), "{e}");
});

both!(state_changes_without_the_csrf_token_are_refused, |app| {
    let (mut b, _) = signed_in(&app).await;
    let none = b.post_raw("/console/logout", &[]).await;
    assert_eq!(none.status, 403, "{}", none.text);
    let wrong = b.post_raw("/console/logout", &[("_csrf", "forged")]).await;
    assert_eq!(wrong.status, 403);
    // A JSON body cannot carry it either; the header can.
    let csrf = b.csrf.clone();
    let cookie = b.cookie.clone().unwrap();
    let client = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let json_post = client
        .post(format!("{}/console/logout", app.base))
        .header("cookie", format!("openspot_console={cookie}"))
        .json(&json!({"_csrf": csrf}))
        .send()
        .await
        .unwrap();
    assert_eq!(json_post.status(), 403);
    // Still signed in after the refusals.
    assert_eq!(b.get("/console/").await.status, 200);
    let by_header = client
        .post(format!("{}/console/logout", app.base))
        .header("cookie", format!("openspot_console={cookie}"))
        .header("x-csrf-token", csrf)
        .send()
        .await
        .unwrap();
    assert_eq!(by_header.status(), 303);
    b.get("/console/").await.assert_redirected_to_login();
});

both!(an_idle_session_expires, |app| {
    let (mut b, _) = signed_in(&app).await;
    assert_eq!(b.get("/console/").await.status, 200);
    let idle = console::SESSION_IDLE_MS + 1_000;
    exec(&app, &format!("UPDATE console_sessions SET last_seen_at = last_seen_at - {idle}")).await;
    b.get("/console/").await.assert_redirected_to_login();
});

both!(a_demoted_admin_loses_access_at_the_next_request, |app| {
    let (mut b, id) = signed_in(&app).await;
    assert_eq!(b.get("/console/").await.status, 200);
    let r = app.put(&format!("/v1/spotMembers/{id}"), json!({"role": "Member"})).await;
    assert_eq!(r.status, 200, "{}", r.text);
    b.get("/console/").await.assert_redirected_to_login();
    // Promoted again, the ended session stays ended; a new sign-in works.
    app.put(&format!("/v1/spotMembers/{id}"), json!({"role": "Admin"})).await;
    b.get("/console/").await.assert_redirected_to_login();
    assert_eq!(b.sign_in("admin@example.com", PASSWORD).await.status, 303);
    // A deactivated Admin is out too; htmx requests are told where to go.
    app.put(&format!("/v1/spotMembers/{id}"), json!({"status": "Deactivated"})).await;
    let client = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let r = client
        .get(format!("{}/console/", app.base))
        .header("cookie", format!("openspot_console={}", b.cookie.clone().unwrap()))
        .header("hx-request", "true")
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers().get("hx-redirect").unwrap(), "/console/login");
});

both!(sign_in_is_throttled_per_account_and_per_address, |app| {
    admin(&app, "admin@example.com").await;
    let mut b = Browser::new(&app);
    for _ in 0..console::FAILURES_PER_ACCOUNT {
        let r = b.post_raw("/console/login", &[("email", "admin@example.com"), ("password", "wrong password!")]).await;
        assert_eq!(r.status, 401);
    }
    // Spent: even the right password waits for the window.
    let r = b.post_raw("/console/login", &[("email", "admin@example.com"), ("password", PASSWORD)]).await;
    assert_eq!(r.status, 429, "{}", r.text);
    assert!(r.headers.get("retry-after").is_some());
    // Another account from the same address is still allowed, until the address's
    // budget is spent (one failure each for many accounts).
    for i in 0..(console::FAILURES_PER_ADDRESS - console::FAILURES_PER_ACCOUNT - 1) {
        let email = format!("guess{i}@example.com");
        let r = b.post_raw("/console/login", &[("email", &email), ("password", "wrong password!")]).await;
        assert_eq!(r.status, 401, "attempt {i}");
    }
    let r = b.post_raw("/console/login", &[("email", "fresh@example.com"), ("password", "wrong password!")]).await;
    assert_eq!(r.status, 429, "{}", r.text);
});

both!(an_admin_of_several_spots_picks_one, |app| {
    admin(&app, "admin@example.com").await;
    let (other, other_key) = app.other_spot().await;
    let r = app
        .send(reqwest::Method::POST, "/v1/spotMembers", Some(&other_key), Some(json!({"email": "admin@example.com"})))
        .await;
    let id = r.body["id"].as_str().unwrap().to_string();
    app.send(reqwest::Method::PUT, &format!("/v1/spotMembers/{id}"), Some(&other_key), Some(json!({"role": "Admin"})))
        .await;
    console::set_password(&app.db, other, "admin@example.com", PASSWORD).await.unwrap();
    let mut b = Browser::new(&app);
    let pick = b.post_raw("/console/login", &[("email", "admin@example.com"), ("password", PASSWORD)]).await;
    assert_eq!(pick.status, 200, "{}", pick.text);
    assert!(pick.text.contains("test spot") && pick.text.contains("other spot"));
    // Each choice is a one-time token for that spot.
    let at = pick.text.find("other spot").unwrap();
    let before = &pick.text[..at];
    let token_at = before.rfind(r#"name="token" value=""#).unwrap() + r#"name="token" value=""#.len();
    let token = before[token_at..].split('"').next().unwrap().to_string();
    assert_eq!(b.post_raw("/console/link", &[("token", &token)]).await.status, 303);
    let home = b.get("/console/").await;
    assert!(home.text.contains("other spot"), "{}", home.text);
    let _: SpotId = other;
});

both!(passwords_are_checked_when_set, |app| {
    app.invite("member@example.com").await;
    let short = console::set_password(&app.db, app.spot_id, "member@example.com", "short").await.unwrap_err();
    assert!(short.to_string().contains("at least"), "{short}");
    let not_admin = console::set_password(&app.db, app.spot_id, "member@example.com", PASSWORD).await.unwrap_err();
    assert!(not_admin.to_string().contains("not an Admin"), "{not_admin}");
});

both!(assets_are_served_from_the_binary, |app| {
    let mut b = Browser::new(&app);
    let js = b.get("/console/assets/htmx.min.js").await;
    assert_eq!(js.status, 200);
    assert!(js.text.contains("htmx"));
    let css = b.get("/console/assets/console.css").await;
    assert_eq!(css.status, 200);
    assert!(css.headers.get("content-type").unwrap().to_str().unwrap().starts_with("text/css"));
});

/// Invites `n` members `user00@example.com`… with names; returns their ids in order.
pub async fn many_members(app: &TestApp, n: usize) -> Vec<String> {
    let mut ids = Vec::new();
    for i in 0..n {
        let id = app.invite(&format!("user{i:02}@example.com")).await;
        let r = app
            .put(
                &format!("/v1/spotMembers/{id}"),
                json!({"firstname": format!("First{i:02}"), "lastname": format!("Last{:02}", n - i)}),
            )
            .await;
        assert_eq!(r.status, 200);
        ids.push(id);
    }
    ids
}

/// The `after` cursor of the page's "Next page" link.
fn next_link(page: &Page) -> Option<String> {
    let at = page.text.find(r#"rel="next""#)?;
    let before = &page.text[..at];
    let href = before.rfind("href=\"")? + 6;
    // As a browser reads the attribute: the template escapes `&` as `&#38;` or `&amp;`.
    Some(before[href..].split('"').next()?.replace("&amp;", "&").replace("&#38;", "&"))
}

/// Waits (bounded) for a bulk job's page to say it finished; returns the page.
pub async fn finished_job(b: &mut Browser<'_>, path: &str) -> Page {
    for _ in 0..400 {
        let p = b.get(path).await;
        if p.text.contains("Finished.") || p.text.contains("Stopped:") {
            return p;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    panic!("job {path} did not finish");
}

both!(members_are_searched_filtered_sorted_and_paged, |app| {
    let (mut b, _) = signed_in(&app).await;
    many_members(&app, 60).await;
    let first = b.get("/console/members").await;
    assert_eq!(first.status, 200, "{}", first.text);
    assert!(first.text.contains("<h1>Members <span class=\"count\">61</span></h1>"), "60 + the admin");
    for label in ["f-q", "f-status", "f-role", "f-crole", "f-group", "f-prop", "f-op", "f-value", "f-sort"] {
        assert!(first.text.contains(&format!(r#"<label for="{label}">"#)), "a label for {label}");
    }
    let rows = |p: &Page| p.text.matches("class=\"pick\"").count();
    assert_eq!(rows(&first), 50);
    // Newest first by default: the last invited is on the first page.
    assert!(first.text.contains("user59@example.com"));
    let next = next_link(&first).expect("a next page");
    let second = b.get(&next).await;
    assert_eq!(rows(&second), 11);
    assert!(second.text.contains("user00@example.com") && second.text.contains("admin@example.com"));
    assert!(next_link(&second).is_none());

    // Search by email, by name, case-insensitively.
    let found = b.get("/console/members?q=USER07").await;
    assert_eq!(rows(&found), 1, "{}", found.text);
    assert!(found.text.contains("<span class=\"count\">1</span>"));
    assert_eq!(rows(&b.get("/console/members?q=first1").await), 10);
    // Filters: role, status.
    assert_eq!(rows(&b.get("/console/members?role=Admin").await), 1);
    assert_eq!(rows(&b.get("/console/members?status=Accepted").await), 0);
    // Sorted by last name, ascending: Last01 (user59) first.
    let by_name = b.get("/console/members?sort=lastname&dir=asc&q=user").await;
    let p59 = by_name.text.find("user59@").unwrap();
    let p00 = by_name.text.find("user10@").unwrap();
    assert!(p59 < p00);
    // A wrong filter value is said, not a 500.
    let bad = b.get("/console/members?status=Nope").await;
    assert_eq!(bad.status, 200);
    assert!(bad.text.contains("role=\"alert\""), "{}", bad.text);
});

both!(a_custom_property_filter_uses_its_types_operators, |app| {
    let (mut b, _) = signed_in(&app).await;
    let r = app.post("/v1/customProperties", json!({"label": "Age", "type": "Number"})).await;
    assert!(r.status == 201 || r.status == 200, "{}", r.text);
    let ids = many_members(&app, 3).await;
    for (i, id) in ids.iter().enumerate() {
        let r =
            app.put(&format!("/v1/spotMembers/{id}/customPropertiesValues/age"), json!({"value": 20 + i * 10})).await;
        assert!(r.status == 200 || r.status == 201, "{}", r.text);
    }
    let page = b.get("/console/members?prop=age&op=gte&value=30").await;
    assert_eq!(page.text.matches("class=\"pick\"").count(), 2, "{}", page.text);
    let bad = b.get("/console/members?prop=age&op=contains&value=3").await;
    assert!(bad.text.contains("role=\"alert\""));
});

both!(a_selection_survives_paging_and_bulk_actions_apply_with_a_confirmation, |app| {
    let (mut b, _) = signed_in(&app).await;
    let ids = many_members(&app, 55).await;
    let g = app.post("/v1/groups", json!({"name": "Picked"})).await;
    let gid = g.body["id"].as_str().unwrap().to_string();
    b.get("/console/members").await;
    // One on the first page (newest), one on the second (oldest).
    let r = b.post(&format!("/console/members/select?id={}", ids[54]), &[("on", "1")]).await;
    assert_eq!(r.status, 303);
    let page1 = b.get("/console/members").await;
    let next = next_link(&page1).unwrap();
    b.post(&format!("/console/members/select?id={}", ids[0]), &[("on", "1")]).await;
    b.post(&format!("/console/members/select?id={}", ids[1]), &[("on", "1")]).await;
    b.post(&format!("/console/members/select?id={}", ids[1]), &[]).await; // unselected again
    let page2 = b.get(&next).await;
    assert!(page2.text.contains("2 selected"), "{}", page2.text);
    let page1 = b.get("/console/members").await;
    assert!(page1.text.contains("2 selected"));
    assert!(page1.text.contains(" checked>"), "the selected row is checked");

    let form =
        [("scope", "selection"), ("action", "add_to_group"), ("target", gid.as_str()), ("value", ""), ("query", "")];
    let confirm = b.post("/console/members/bulk", &form).await;
    assert_eq!(confirm.status, 200, "{}", confirm.text);
    assert!(confirm.text.contains("<strong>2 members</strong>"), "{}", confirm.text);
    // The group by its name, which the operator can check, not by its id.
    assert!(confirm.text.contains("add to group “Picked”"), "{}", confirm.text);
    let mut go = form.to_vec();
    go.push(("confirm", "1"));
    let started = b.post("/console/members/bulk", &go).await;
    assert_eq!(started.status, 303, "{}", started.text);
    let job = started.location().unwrap().to_string();
    let done = finished_job(&mut b, &job).await;
    assert!(done.text.contains("2 of 2 done"), "{}", done.text);
    let members = app.get(&format!("/v1/groups/{gid}/spotMembers?limit=100")).await;
    assert_eq!(members.body["total"], 2, "{}", members.text);

    // "All that match": every member whose email has user1 (10), status change.
    let form =
        [("scope", "all"), ("action", "set_status"), ("target", "Deactivated"), ("value", ""), ("query", "q=user1")];
    let confirm = b.post("/console/members/bulk", &form).await;
    assert!(confirm.text.contains("<strong>10 members</strong>"), "{}", confirm.text);
    let mut go = form.to_vec();
    go.push(("confirm", "1"));
    let job = b.post("/console/members/bulk", &go).await.location().unwrap().to_string();
    let done = finished_job(&mut b, &job).await;
    assert!(done.text.contains("10 of 10 done"), "{}", done.text);
    let page = b.get("/console/members?status=Deactivated").await;
    assert_eq!(page.text.matches("class=\"pick\"").count(), 10);
    // The progress fragment htmx polls.
    let frag = b
        .client
        .get(format!("{}{job}", app.base))
        .header("cookie", format!("openspot_console={}", b.cookie.clone().unwrap()))
        .header("hx-request", "true")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(frag.trim_start().starts_with("<div id=\"job\""), "{frag}");

    // A target of another spot is not found.
    let (_, other_key) = app.other_spot().await;
    let og = app.send(reqwest::Method::POST, "/v1/groups", Some(&other_key), Some(json!({"name": "Theirs"}))).await;
    let form = [
        ("scope", "selection"),
        ("action", "add_to_group"),
        ("target", og.body["id"].as_str().unwrap()),
        ("value", ""),
        ("query", ""),
    ];
    assert_eq!(b.post("/console/members/bulk", &form).await.status, 404);
});

both!(the_current_filter_exports_as_csv, |app| {
    let (mut b, _) = signed_in(&app).await;
    many_members(&app, 12).await;
    let csv = b.get("/console/members.csv?q=user0").await;
    assert_eq!(csv.status, 200);
    assert!(csv.headers.get("content-type").unwrap().to_str().unwrap().starts_with("text/csv"));
    let lines: Vec<&str> = csv.text.lines().collect();
    assert_eq!(lines[0], "id,email,firstname,lastname,mobileNumber,status,role,invitedAt,registeredAt");
    assert_eq!(lines.len(), 11, "header + user00..user09");
    assert!(lines.iter().any(|l| l.contains("user05@example.com,First05")));
});

both!(the_member_page_shows_and_edits_a_member, |app| {
    let (mut b, _) = signed_in(&app).await;
    app.post(
        "/v1/customProperties",
        json!({"label": "Level", "type": "SingleSelect", "possibleValues": ["Gold", "Silver"]}),
    )
    .await;
    app.post("/v1/customProperties", json!({"label": "Age", "type": "Number"})).await;
    let id = app.invite("ann@example.com").await;
    let g = app.post("/v1/groups", json!({"name": "Readers"})).await;
    let gid = g.body["id"].as_str().unwrap().to_string();
    app.post(&format!("/v1/groups/{gid}/spotMembers~bulkAdd"), json!({"spotMemberIds": [id]})).await;
    let c = app.post("/v1/courses", json!({"title": "Rust 101"})).await;
    let cid = c.body["id"].as_str().unwrap().to_string();
    let r = app.post(&format!("/v1/courses/{cid}/participants"), json!({"spotMemberId": id})).await;
    assert!(r.status == 201 || r.status == 200, "{}", r.text);

    let page = b.get(&format!("/console/members/{id}")).await;
    assert_eq!(page.status, 200, "{}", page.text);
    for expected in
        ["ann@example.com", "Readers", "Rust 101", "<progress", "Level", r#"<option>Gold</option>"#, r#"type="number""#]
    {
        assert!(page.text.contains(expected), "{expected} in {}", page.text);
    }
    let saved = b
        .post(
            &format!("/console/members/{id}"),
            &[
                ("firstname", "Ann"),
                ("lastname", "Lee"),
                ("title", ""),
                ("status", "Accepted"),
                ("custom_role", ""),
                ("prop.level", "Gold"),
                ("prop.age", "41"),
            ],
        )
        .await;
    assert_eq!(saved.status, 303, "{}", saved.text);
    let m = app.get(&format!("/v1/spotMembers/{id}")).await;
    assert_eq!(m.body["firstname"], "Ann");
    assert_eq!(m.body["status"], "Accepted");
    let v = app.get(&format!("/v1/spotMembers/{id}/customPropertiesValues")).await;
    assert!(v.text.contains("Gold"), "{}", v.text);
    // A value the type refuses is said beside its field.
    let bad = b
        .post(&format!("/console/members/{id}"), &[("firstname", "Ann"), ("lastname", "Lee"), ("prop.level", "Bronze")])
        .await;
    assert_eq!(bad.status, 400, "{}", bad.text);
    let field = bad.text.find(r#"id="p-level""#).unwrap();
    let err = bad.text.find(r#"<span class="error">"#).unwrap();
    assert!(err > field, "the error follows its field");
});

both!(another_spots_ids_are_not_found, |app| {
    let (mut b, _) = signed_in(&app).await;
    let (_, other_key) = app.other_spot().await;
    let theirs = app
        .send(reqwest::Method::POST, "/v1/spotMembers", Some(&other_key), Some(json!({"email": "x@example.com"})))
        .await;
    let mid = theirs.body["id"].as_str().unwrap().to_string();
    assert_eq!(b.get(&format!("/console/members/{mid}")).await.status, 404);
    let r = b.post(&format!("/console/members/{mid}"), &[("firstname", "Hacked")]).await;
    assert_eq!(r.status, 404);
    assert_eq!(b.get("/console/members/not-an-id").await.status, 404);
    // Selecting their member does nothing.
    b.get("/console/members").await;
    b.post(&format!("/console/members/select?id={mid}"), &[("on", "1")]).await;
    assert!(b.get("/console/members").await.text.contains("0 selected"));
    let export = b.get("/console/members.csv").await;
    assert!(!export.text.contains("x@example.com"));
});

both!(static_groups_are_created_and_members_added_by_search_and_removed, |app| {
    let (mut b, _) = signed_in(&app).await;
    let ids = many_members(&app, 5).await;
    let page = b.get("/console/groups").await;
    assert_eq!(page.status, 200, "{}", page.text);
    let bad = b.post("/console/groups", &[("name", " ")]).await;
    assert_eq!(bad.status, 400);
    assert!(bad.text.contains(r#"id="g-name-e""#), "the error beside its field: {}", bad.text);
    let made = b.post("/console/groups", &[("name", "Readers"), ("description", "Book club")]).await;
    assert_eq!(made.status, 303, "{}", made.text);
    let path = made.location().unwrap().to_string();
    let found = b.get(&format!("{path}?q=user03")).await;
    assert!(found.text.contains("user03@example.com"), "{}", found.text);
    let added = b.post(&format!("{path}/add"), &[("member", &ids[3]), ("member", &ids[4])]).await;
    assert_eq!(added.status, 303);
    let shown = b.get(&path).await;
    assert!(shown.text.contains("2 members") && shown.text.contains("user04@example.com"), "{}", shown.text);
    b.post(&format!("{path}/remove"), &[("member", &ids[3])]).await;
    let shown = b.get(&path).await;
    assert!(shown.text.contains("1 members") && !shown.text.contains("user03@example.com"));
    let list = b.get("/console/groups").await;
    assert!(list.text.contains("Readers") && list.text.contains("Static"));

    // Another spot's group is not found, for reading or writing.
    let (_, other_key) = app.other_spot().await;
    let og = app.send(reqwest::Method::POST, "/v1/groups", Some(&other_key), Some(json!({"name": "Theirs"}))).await;
    let ogid = og.body["id"].as_str().unwrap();
    assert_eq!(b.get(&format!("/console/groups/{ogid}")).await.status, 404);
    assert_eq!(b.post(&format!("/console/groups/{ogid}/add"), &[("member", &ids[0])]).await.status, 404);
    assert_eq!(b.post(&format!("/console/groups/{ogid}/delete"), &[]).await.status, 404);
});

both!(smart_groups_are_built_with_a_live_count_and_a_blacklist, |app| {
    let (mut b, _) = signed_in(&app).await;
    let ids = many_members(&app, 6).await;
    for id in &ids[..4] {
        app.put(&format!("/v1/spotMembers/{id}"), json!({"status": "Accepted"})).await;
    }
    let builder = b.get("/console/groups/new-smart").await;
    assert_eq!(builder.status, 200, "{}", builder.text);
    assert!(builder.text.contains("hx-post=\"/console/groups/preview\""));
    assert!(builder.text.contains("<option>invitationDate</option>"));
    let rules = [
        ("name", "Active"),
        ("operator", "AND"),
        ("c0.operator", "OR"),
        ("c0.t0.field", "status"),
        ("c0.t0.op", "eq"),
        ("c0.t0.value", "Accepted"),
        ("c1.operator", "AND"),
        ("c1.t0.field", "email"),
        ("c1.t0.op", "notin"),
        ("c1.t0.value", "user00@example.com, user01@example.com"),
        ("c1.t1.field", "invitationDate"),
        ("c1.t1.op", "after"),
        ("c1.t1.value", "2001-01-01"),
    ];
    let count = b.post("/console/groups/preview", &rules).await;
    assert_eq!(count.status, 200, "{}", count.text);
    assert_eq!(count.text, "<span class=\"ok\">2 members match now</span>");
    let mut wrong = rules.to_vec();
    wrong[4] = ("c0.t0.op", "before");
    let said = b.post("/console/groups/preview", &wrong).await;
    assert!(
        said.text.contains("class=\"error\"") && said.text.contains("rules.conditions[0].triggers[0]"),
        "{}",
        said.text
    );

    let mut create = rules.to_vec();
    create.push(("kind", "smart"));
    let made = b.post("/console/groups", &create).await;
    assert_eq!(made.status, 303, "{}", made.text);
    let path = made.location().unwrap().to_string();
    let gid = path.rsplit('/').next().unwrap().to_string();
    crate::common::wait_until_ready(&app, &gid).await;
    let shown = b.get(&path).await;
    assert!(shown.text.contains("Smart group") && shown.text.contains("ready"), "{}", shown.text);
    assert!(shown.text.contains("2 members"));
    b.post(&format!("{path}/blacklist"), &[("member", &ids[2]), ("on", "1")]).await;
    let shown = b.get(&path).await;
    assert!(shown.text.contains("1 members"), "{}", shown.text);
    let black = shown.text.find("<h2>Blacklist</h2>").unwrap();
    assert!(shown.text[black..].contains("user02@example.com"));
    b.post(&format!("{path}/blacklist"), &[("member", &ids[2]), ("on", "0")]).await;
    assert!(b.get(&path).await.text.contains("2 members"));
    // A smart group made invalid in the builder says why and keeps the rows.
    let mut invalid = wrong.clone();
    invalid.push(("kind", "smart"));
    let refused = b.post("/console/groups", &invalid).await;
    assert_eq!(refused.status, 400);
    assert!(refused.text.contains("value=\"Accepted\""), "rows kept");
});

both!(courses_are_created_edited_and_members_invited_or_groups_linked, |app| {
    let (mut b, _) = signed_in(&app).await;
    let ids = many_members(&app, 3).await;
    assert_eq!(b.get("/console/courses").await.status, 200);
    let bad = b.post("/console/courses", &[("title", "  ")]).await;
    assert_eq!(bad.status, 400);
    assert!(bad.text.contains(r#"id="c-title-e""#), "{}", bad.text);
    let made = b.post("/console/courses", &[("title", "Rust 101"), ("description", "Ownership")]).await;
    assert_eq!(made.status, 303, "{}", made.text);
    let path = made.location().unwrap().to_string();
    let edited = b
        .post(
            &path,
            &[
                ("title", "Rust 102"),
                ("description", ""),
                ("status", "Published"),
                ("privacy", "Public"),
                ("navigation_mode", "Sequential"),
            ],
        )
        .await;
    assert_eq!(edited.status, 303, "{}", edited.text);
    let found = b.get(&format!("{path}?q=user01")).await;
    assert!(found.text.contains("user01@example.com"));
    b.post(&format!("{path}/invite"), &[("member", &ids[1])]).await;
    let g = app.post("/v1/groups", json!({"name": "Cohort"})).await;
    let gid = g.body["id"].as_str().unwrap().to_string();
    app.post(&format!("/v1/groups/{gid}/spotMembers~bulkAdd"), json!({"spotMemberIds": [ids[2]]})).await;
    let linked = b.post(&format!("{path}/link"), &[("group", &gid)]).await;
    assert_eq!(linked.status, 303, "{}", linked.text);
    let shown = b.get(&path).await;
    assert!(
        shown.text.contains("Rust 102") && shown.text.contains("<option selected>Published</option>"),
        "{}",
        shown.text
    );
    assert!(shown.text.contains("2 participants"), "{}", shown.text);
    assert!(shown.text.contains("user01@example.com") && shown.text.contains("user02@example.com"));
    assert!(shown.text.contains("<progress") && shown.text.contains("Cohort"));
    assert!(!shown.text.contains("id=\"link-progress\""), "the link is done: {}", shown.text);
    // While a link's invitations run in the background, the page says so.
    exec(&app, "UPDATE course_groups SET ready = false").await;
    assert!(b.get(&path).await.text.contains("id=\"link-progress\""));
    exec(&app, "UPDATE course_groups SET ready = true").await;
    // Another spot's course is not found.
    let (_, other_key) = app.other_spot().await;
    let oc = app.send(reqwest::Method::POST, "/v1/courses", Some(&other_key), Some(json!({"title": "Theirs"}))).await;
    let ocid = oc.body["id"].as_str().unwrap();
    assert_eq!(b.get(&format!("/console/courses/{ocid}")).await.status, 404);
    assert_eq!(b.post(&format!("/console/courses/{ocid}/invite"), &[("member", &ids[0])]).await.status, 404);
});

both!(custom_properties_are_defined_renamed_and_their_uses_shown, |app| {
    let (mut b, _) = signed_in(&app).await;
    assert_eq!(b.get("/console/properties").await.status, 200);
    let made = b
        .post("/console/properties", &[("label", "Level"), ("type", "SingleSelect"), ("options", "Gold, Silver")])
        .await;
    assert_eq!(made.status, 303, "{}", made.text);
    let bad = b.post("/console/properties", &[("label", "Oops"), ("type", "Colour"), ("options", "")]).await;
    assert_eq!(bad.status, 400);
    assert!(bad.text.contains("<span class=\"error\">"), "{}", bad.text);
    let id = app.invite("ann@example.com").await;
    app.put(&format!("/v1/spotMembers/{id}/customPropertiesValues/level"), json!({"value": "Gold"})).await;
    let rules = json!({"operator": "AND", "conditions": [{"operator": "AND", "triggers": [
        {"field": "customProperties.level", "op": "eq", "value": "Gold"}]}]});
    app.post("/v1/groups", json!({"name": "Golden", "type": "Smart", "rules": rules})).await;
    let page = b.get("/console/properties").await;
    assert!(page.text.contains("Used by smart groups: Golden"), "{}", page.text);
    let renamed = b
        .post(
            "/console/properties/level",
            &[("label", "Tier"), ("options", "Platinum, Silver"), ("renames", "Gold=Platinum")],
        )
        .await;
    assert_eq!(renamed.status, 303, "{}", renamed.text);
    let v = app.get(&format!("/v1/spotMembers/{id}/customPropertiesValues")).await;
    assert!(v.text.contains("Platinum"), "the stored value follows the rename: {}", v.text);
    let page = b.get("/console/properties").await;
    assert!(page.text.contains("Tier"));
});

both!(every_page_renders, |app| {
    let (mut b, _) = signed_in(&app).await;
    for (path, expected) in [
        ("/console/", "<h1>Overview</h1>"),
        ("/console/members", "<h1>Members"),
        ("/console/groups", "<h1>Groups"),
        ("/console/groups/new-smart", "<h1>New smart group</h1>"),
        ("/console/courses", "<h1>Courses"),
        ("/console/properties", "<h1>Custom properties"),
        ("/console/import", "<h1>Import members</h1>"),
        ("/console/settings", "<h1>Settings</h1>"),
    ] {
        let p = b.get(path).await;
        assert_eq!(p.status, 200, "{path}: {}", p.text);
        assert!(p.text.contains(expected), "{path}");
        assert!(p.text.contains(r#"<meta name="viewport""#) && p.text.contains("Skip to content"), "{path}");
        // Every form control is labelled.
        for id in p.text.split(" id=\"").skip(1).map(|s| s.split('"').next().unwrap()) {
            let tag_start = p.text.find(&format!(" id=\"{id}\"")).unwrap();
            let tag = &p.text[p.text[..tag_start].rfind('<').unwrap()..tag_start];
            if tag.starts_with("<input") && !tag.contains("type=\"hidden\"")
                || tag.starts_with("<select")
                || tag.starts_with("<textarea")
            {
                assert!(p.text.contains(&format!("<label for=\"{id}\"")), "{path}: #{id} has no label");
            }
        }
    }
});

/// The secret a settings page shows once.
fn shown_secret(page: &Page) -> String {
    let at = page.text.find(r#"<code id="secret">"#).expect("a secret shown") + r#"<code id="secret">"#.len();
    page.text[at..].split('<').next().unwrap().to_string()
}

both_with!(
    settings_rotate_the_key_set_limits_and_manage_connectors_and_webhooks,
    |config| {
        config.allow_private_targets = true;
    },
    |app| {
        let (mut b, _) = signed_in(&app).await;
        let page = b.get("/console/settings").await;
        assert_eq!(page.status, 200, "{}", page.text);
        assert!(!page.text.contains(r#"<code id="secret">"#));

        let form_field = r#"name="key" value=""#;
        let at = page.text.find(form_field).expect("the rotation form names the key") + form_field.len();
        let fingerprint = page.text[at..].split('"').next().unwrap().to_string();
        let rotated = b.post("/console/settings/rotate-key", &[("key", &fingerprint)]).await;
        assert_eq!(rotated.status, 200);
        let key = shown_secret(&rotated);
        assert!(key.starts_with("os_"));
        assert_eq!(app.send(reqwest::Method::GET, "/v1/spotMembers", Some(&key), None).await.status, 200);
        crate::common::outlive_auth_cache(&app).await;
        assert_eq!(app.get("/v1/spotMembers").await.status, 401, "the old key stops working");
        assert!(!b.get("/console/settings").await.text.contains(&key), "shown once");
        // The same form again (a reload of the answer re-posts it): nothing changes.
        let again = b.post("/console/settings/rotate-key", &[("key", &fingerprint)]).await;
        assert_eq!(again.status, 409, "{}", again.text);
        assert!(again.text.contains("already replaced") && !again.text.contains(r#"<code id="secret">"#));
        crate::common::outlive_auth_cache(&app).await;
        assert_eq!(
            app.send(reqwest::Method::GET, "/v1/spotMembers", Some(&key), None).await.status,
            200,
            "still the key"
        );
        let stale = b.post("/console/settings/rotate-key", &[]).await;
        assert_eq!(stale.status, 409, "a form that names no key rotates nothing");

        let bad = b.post("/console/settings/limits", &[("per-10s", "0"), ("per-day", "")]).await;
        assert_eq!(bad.status, 400);
        let ok = b.post("/console/settings/limits", &[("per-10s", "50"), ("per-day", "5000")]).await;
        assert_eq!(ok.status, 303);
        assert!(b.get("/console/settings").await.text.contains(r#"value="5000""#));

        let made = b.post("/console/settings/connectors", &[("name", "Portal")]).await;
        assert_eq!(made.status, 200, "{}", made.text);
        let secret = shown_secret(&made);
        assert!(!secret.is_empty());
        let listed = b.get("/console/settings").await;
        assert!(listed.text.contains("Portal") && !listed.text.contains(&secret));
        let conn_at =
            listed.text.find("/console/settings/connectors/").unwrap() + "/console/settings/connectors/".len();
        let conn_id = listed.text[conn_at..].split('/').next().unwrap().to_string();
        // Another spot's admin cannot delete it.
        let (other, _) = app.other_spot().await;
        let (their_conn, _) =
            openspot::domain::kaizala::auth::create_connector(&app.db, other, "Theirs").await.unwrap();
        assert_eq!(b.post(&format!("/console/settings/connectors/{}/delete", their_conn.id), &[]).await.status, 404);
        assert_eq!(b.post(&format!("/console/settings/connectors/{conn_id}/delete"), &[]).await.status, 303);
        assert!(!b.get("/console/settings").await.text.contains("Portal"));

        let hook = b
            .post(
                "/console/settings/webhooks",
                &[("url", "http://127.0.0.1:9/hook"), ("description", "test"), ("event", "member.created")],
            )
            .await;
        assert_eq!(hook.status, 200, "{}", hook.text);
        assert!(shown_secret(&hook).starts_with("whsec_"));
        let settings = b.get("/console/settings").await;
        let at = settings.text.find("/console/settings/webhooks/").unwrap();
        let path = settings.text[at..].split('"').next().unwrap().to_string();
        let detail = b.get(&path).await;
        assert_eq!(detail.status, 200, "{}", detail.text);
        assert!(detail.text.contains("Deliveries") && detail.text.contains("member.created"));
        let no_events = b.post("/console/settings/webhooks", &[("url", "http://127.0.0.1:9/x")]).await;
        assert_eq!(no_events.status, 400);
    }
);

both!(an_import_is_previewed_then_run_with_progress_and_an_error_csv, |app| {
    let (mut b, _) = signed_in(&app).await;
    assert_eq!(b.get("/console/import").await.status, 200);
    let csv = "email,firstname,lastname\nnew@example.com,New,One\nnot-an-email,Bad,Row\nadmin@example.com,Ada,Admin\n";
    let upload = |csrf: Option<String>| {
        let form = reqwest::multipart::Form::new()
            .part("file", reqwest::multipart::Part::bytes(csv.as_bytes().to_vec()).file_name("members.csv"))
            .text("group", "");
        let url = match csrf {
            Some(t) => format!("{}/console/import?_csrf={t}", app.base),
            None => format!("{}/console/import", app.base),
        };
        b.client.post(url).header("cookie", format!("openspot_console={}", b.cookie.clone().unwrap())).multipart(form)
    };
    let refused = upload(None).send().await.unwrap();
    assert_eq!(refused.status(), 403, "an upload without the CSRF token");
    let preview = upload(Some(b.csrf.clone())).send().await.unwrap();
    assert_eq!(preview.status(), 200);
    let text = preview.text().await.unwrap();
    assert!(
        text.contains("create <strong>1</strong>")
            && text.contains("update\n<strong>1</strong>")
            && text.contains("fail <strong>1</strong>"),
        "{text}"
    );
    assert!(text.contains("not-an-email"));
    assert_eq!(app.get("/v1/spotMembers?email[in]=new@example.com").await.body["total"], 0, "a dry run writes nothing");
    let at = text.find("/console/import/").unwrap();
    let run = text[at..].split('"').next().unwrap().to_string();
    let started = b.post(&run, &[]).await;
    assert_eq!(started.status, 303, "{}", started.text);
    let job = started.location().unwrap().to_string();
    let done = finished_job(&mut b, &job).await;
    assert!(done.text.contains("1 created, 1 updated, 1 failed"), "{}", done.text);
    // An import's progress page belongs to Import and leads back there.
    assert!(done.text.contains("<a href=\"/console/import\" aria-current=\"page\">"), "{}", done.text);
    assert!(done.text.contains("<a href=\"/console/import\">Import another file</a>"), "{}", done.text);
    assert_eq!(app.get("/v1/spotMembers?email[in]=new@example.com").await.body["total"], 1);
    let link_at = done.text.find("/console/import/").unwrap();
    let errors = done.text[link_at..].split('"').next().unwrap().to_string();
    let csv = b.get(&errors).await;
    assert_eq!(csv.status, 200);
    assert!(csv.text.contains("not-an-email"), "{}", csv.text);
    // Run once only.
    assert_eq!(b.post(&run, &[]).await.status, 409);
});

both!(keyset_pages_cover_every_member_once_across_ties, |app| {
    let (mut b, _) = signed_in(&app).await;
    let ids = many_members(&app, 55).await;
    for id in &ids {
        app.put(&format!("/v1/spotMembers/{id}"), json!({"lastname": "Same"})).await;
    }
    // Unfiltered (a walk of the sort order), then searched: few matches, which
    // PostgreSQL reads as the matches, sorted.
    for (filter, want) in [("", 56), ("&q=user", 55)] {
        for sort in ["sort=lastname&dir=asc", "sort=lastname&dir=desc", "sort=invited&dir=asc", "sort=firstname"] {
            let mut seen = std::collections::HashSet::new();
            let mut page = b.get(&format!("/console/members?{sort}{filter}")).await;
            let mut order = Vec::new();
            loop {
                for part in page.text.split("href=\"/console/members/").skip(1) {
                    let id = part.split('"').next().unwrap().to_string();
                    if seen.insert(id.clone()) {
                        order.push(id);
                    }
                }
                match next_link(&page) {
                    Some(next) => page = b.get(&next).await,
                    None => break,
                }
            }
            assert_eq!(seen.len(), want, "{sort}{filter}: every member once");
            if sort == "sort=firstname" {
                let firsts: Vec<String> =
                    order.iter().filter_map(|id| ids.iter().position(|i| i == id)).map(|i| format!("{i:02}")).collect();
                let mut sorted = firsts.clone();
                sorted.sort();
                assert_eq!(firsts, sorted, "{sort}{filter}: in first-name order");
            }
        }
    }
});

//! `/v1/courses` (`meltingspot-api.md` §3.10, §5.8; contract §4 "Courses", "Learner
//! progress", "Course ↔ group links", §8 "Courses"): course CRUD and list filters,
//! participants (single and bulk invitations, list filters), learner progress moves,
//! group links (static and smart groups, later joiners, unlinking), spot isolation,
//! concurrent writers, and large links worked by a background job (answered at once,
//! `groupsReady`, resumed from its cursor after a replica died, stopped by an unlink).
//! Every test runs on SQLite and on PostgreSQL through `both!`.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::common::{assert_ms_error, Resp, TestApp};
use crate::receiver::{Receiver, Reply};
use crate::{both, both_with};

/// A well-formed UUID that names nothing.
const UNKNOWN: &str = "01930000-0000-7000-8000-000000000000";

/// Polling bounds for work the contract lets lag (smart groups: "within 2 seconds"):
/// up to 10 s in 25 ms steps.
const POLL_STEP: Duration = Duration::from_millis(25);
const POLL_TRIES: usize = 400;

/// The bound on a link job in these tests (a debug build on a loaded machine).
const LINK_JOB_WAIT: Duration = Duration::from_secs(300);

/// Every field of a CourseParticipant (`meltingspot-api.md` §3.10).
const PARTICIPANT_FIELDS: [&str; 13] = [
    "id",
    "courseId",
    "spotMemberId",
    "spotMemberEmail",
    "spotMemberFirstname",
    "spotMemberLastname",
    "status",
    "invitedAt",
    "startedAt",
    "completedAt",
    "unenrolledAt",
    "lastActivityAt",
    "completionRate",
];

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

fn id_of(r: &Resp) -> String {
    r.body["id"].as_str().unwrap_or_else(|| panic!("no id in {}", r.text)).to_string()
}

fn keys(v: &Value) -> BTreeSet<String> {
    v.as_object().unwrap_or_else(|| panic!("not an object: {v}")).keys().cloned().collect()
}

/// Creates a course; returns its id.
async fn create_course(app: &TestApp, body: Value) -> String {
    let r = app.post("/v1/courses", body).await;
    assert_eq!(r.status, 201, "{}", r.text);
    id_of(&r)
}

async fn course(app: &TestApp) -> String {
    create_course(app, json!({"title": "Rust 101"})).await
}

async fn create_group(app: &TestApp, body: Value) -> String {
    let r = app.post("/v1/groups", body).await;
    assert_eq!(r.status, 201, "{}", r.text);
    id_of(&r)
}

fn accepted_rules() -> Value {
    json!({"operator": "AND", "conditions": [
        {"operator": "AND", "triggers": [{"field": "status", "op": "eq", "value": "Accepted"}]}
    ]})
}

/// Bounded wait until a smart group's first computation is done.
async fn wait_ready(app: &TestApp, gid: &str) {
    for _ in 0..POLL_TRIES {
        let r = app.get(&format!("/v1/groups/{gid}")).await;
        assert_eq!(r.status, 200, "{}", r.text);
        if r.body["ready"] == true {
            return;
        }
        tokio::time::sleep(POLL_STEP).await;
    }
    panic!("smart group {gid} never became ready");
}

fn participants_url(cid: &str) -> String {
    format!("/v1/courses/{cid}/participants")
}

fn participant_url(cid: &str, pid: &str) -> String {
    format!("/v1/courses/{cid}/participants/{pid}")
}

fn bulk_invite_url(cid: &str) -> String {
    format!("/v1/courses/{cid}/participants~bulkInvite")
}

/// `POST …/participants`; asserts `expected` status and returns the participant.
async fn invite(app: &TestApp, cid: &str, mid: &str, expected: u16) -> Value {
    let r = app.post(&participants_url(cid), json!({"spotMemberId": mid})).await;
    assert_eq!(r.status, expected, "{}", r.text);
    r.body
}

/// Invites a new spot member to the course; returns (member id, participant id).
async fn new_participant(app: &TestApp, cid: &str, email: &str) -> (String, String) {
    let mid = app.invite(email).await;
    let p = invite(app, cid, &mid, 201).await;
    (mid, p["id"].as_str().unwrap().to_string())
}

/// `PUT …/participants/{pid}` expecting 200; returns the participant.
async fn progress(app: &TestApp, cid: &str, pid: &str, body: Value) -> Value {
    let r = app.put(&participant_url(cid, pid), body.clone()).await;
    assert_eq!(r.status, 200, "{body} → {}", r.text);
    r.body
}

async fn get_participant(app: &TestApp, cid: &str, pid: &str) -> Value {
    let r = app.get(&participant_url(cid, pid)).await;
    assert_eq!(r.status, 200, "{}", r.text);
    r.body
}

/// Every participant of a course matching `query` (all pages); checks that `total`
/// counts exactly the listed participants and that `items` never exceeds the limit.
async fn all_participants(app: &TestApp, cid: &str, query: &str) -> Vec<Value> {
    let mut out = Vec::new();
    for page in 1..=100 {
        let r = app.get(&format!("{}?limit=100&page={page}{query}", participants_url(cid))).await;
        assert_eq!(r.status, 200, "{query}: {}", r.text);
        let items = r.body["items"].as_array().expect("items").clone();
        assert!(items.len() <= 100);
        let n = items.len();
        out.extend(items);
        if n < 100 {
            let total = r.body["total"].as_u64().expect("total") as usize;
            assert_eq!(total, out.len(), "total counts the matching participants ({query})");
            return out;
        }
    }
    panic!("too many participants");
}

/// The sorted emails of the participants matching `query`.
async fn emails(app: &TestApp, cid: &str, query: &str) -> Vec<String> {
    let mut v: Vec<String> = all_participants(app, cid, query)
        .await
        .iter()
        .map(|p| p["spotMemberEmail"].as_str().unwrap().to_string())
        .collect();
    v.sort();
    v
}

/// (email, status) of every participant, sorted by email.
async fn statuses(app: &TestApp, cid: &str) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = all_participants(app, cid, "")
        .await
        .iter()
        .map(|p| (p["spotMemberEmail"].as_str().unwrap().to_string(), p["status"].as_str().unwrap().to_string()))
        .collect();
    v.sort();
    v
}

async fn total(app: &TestApp, cid: &str) -> u64 {
    let r = app.get(&participants_url(cid)).await;
    assert_eq!(r.status, 200, "{}", r.text);
    r.body["total"].as_u64().expect("total")
}

/// Bounded poll until the course has a participant with this email.
async fn wait_for_participant(app: &TestApp, cid: &str, email: &str) {
    for _ in 0..POLL_TRIES {
        if emails(app, cid, &format!("&email[in]={email}")).await == [email] {
            return;
        }
        tokio::time::sleep(POLL_STEP).await;
    }
    panic!("{email} was never invited to course {cid}");
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

/// An ISO-8601 participant date as ms since the epoch; panics unless it is a UTC
/// RFC 3339 string ending in `Z`.
fn iso_ms(v: &Value) -> i64 {
    let s = v.as_str().unwrap_or_else(|| panic!("not a date string: {v}"));
    assert!(s.ends_with('Z'), "{s}");
    let t = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|e| panic!("{s}: {e}"));
    (t.unix_timestamp_nanos() / 1_000_000) as i64
}

/// Asserts a server-set date lies within [before, after] (ms, same machine clock).
fn assert_set_between(p: &Value, field: &str, before: i64, after: i64) {
    let ms = iso_ms(&p[field]);
    assert!(before <= ms && ms <= after, "{field} = {} not in [{before}, {after}]", p[field]);
}

/// Creates a member in another spot (through that spot's key); returns its id.
async fn foreign_member(app: &TestApp, key: &str, email: &str) -> String {
    let r = app.send(Method::POST, "/v1/spotMembers", Some(key), Some(json!({"email": email}))).await;
    assert_eq!(r.status, 201, "{}", r.text);
    id_of(&r)
}

/// Rows of a table belonging to a course, read straight from the database.
async fn rows_of_course(app: &TestApp, table: &str, cid: &str) -> i64 {
    let sql = format!("SELECT COUNT(*) FROM {table} WHERE spot_id = $1 AND course_id = $2");
    let cid = Uuid::parse_str(cid).unwrap();
    match &app.db {
        openspot::Db::Sqlite(p, ..) => {
            sqlx::query_scalar::<_, i64>(&sql).bind(app.spot_id).bind(cid).fetch_one(p).await.unwrap()
        }
        openspot::Db::Postgres(p) => {
            sqlx::query_scalar::<_, i64>(&sql).bind(app.spot_id).bind(cid).fetch_one(p).await.unwrap()
        }
    }
}

/// A value bound to a statement of [`exec`] and [`scalar`].
#[derive(Clone, Copy)]
enum Arg {
    Id(Uuid),
    Int(i64),
}

macro_rules! bind_args {
    ($q:expr, $args:expr) => {{
        let mut q = $q;
        for a in $args {
            q = match *a {
                Arg::Id(v) => q.bind(v),
                Arg::Int(v) => q.bind(v),
            };
        }
        q
    }};
}

/// Runs one statement straight on the test's database; returns the rows it touched.
async fn exec(app: &TestApp, sql: &str, args: &[Arg]) -> u64 {
    match &app.db {
        openspot::Db::Sqlite(p, ..) => bind_args!(sqlx::query(sql), args).execute(p).await.unwrap().rows_affected(),
        openspot::Db::Postgres(p) => bind_args!(sqlx::query(sql), args).execute(p).await.unwrap().rows_affected(),
    }
}

/// One number read straight from the test's database.
async fn scalar(app: &TestApp, sql: &str, args: &[Arg]) -> i64 {
    match &app.db {
        openspot::Db::Sqlite(p, ..) => bind_args!(sqlx::query_scalar(sql), args).fetch_one(p).await.unwrap(),
        openspot::Db::Postgres(p) => bind_args!(sqlx::query_scalar(sql), args).fetch_one(p).await.unwrap(),
    }
}

/// Puts `n` new members (`bulk<i>@bulk.io`) into the group straight in SQL, counters
/// kept: seconds instead of minutes through the API.
async fn seed_group(app: &TestApp, gid: &str, n: i64) {
    let spot = Arg::Id(app.spot_id.uuid());
    let members = match &app.db {
        openspot::Db::Sqlite(..) => {
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < $2) \
             INSERT INTO members (spot_id, id, email, email_norm, status, invited_at, updated_at) \
             SELECT $1, randomblob(16), 'bulk' || i || '@bulk.io', 'bulk' || i || '@bulk.io', 'Invited', 0, 0 FROM n"
        }
        openspot::Db::Postgres(_) => {
            "INSERT INTO members (spot_id, id, email, email_norm, status, invited_at, updated_at) \
             SELECT $1, gen_random_uuid(), 'bulk' || i || '@bulk.io', 'bulk' || i || '@bulk.io', 'Invited', 0, 0 \
             FROM generate_series(1, $2) AS n(i)"
        }
    };
    assert_eq!(exec(app, members, &[spot, Arg::Int(n)]).await, n as u64);
    let group = Arg::Id(Uuid::parse_str(gid).unwrap());
    let joined = "INSERT INTO group_members (spot_id, group_id, member_id, group_role, added_at) \
                  SELECT spot_id, $2, id, 'Member', 0 FROM members WHERE spot_id = $1 AND email_norm LIKE 'bulk%'";
    assert_eq!(exec(app, joined, &[spot, group]).await, n as u64);
    let counted = "UPDATE spot_groups SET member_count = member_count + $3 WHERE spot_id = $1 AND id = $2";
    exec(app, counted, &[spot, group, Arg::Int(n)]).await;
    exec(app, "UPDATE spot_counters SET member_count = member_count + $2 WHERE spot_id = $1", &[spot, Arg::Int(n)])
        .await;
}

/// The group's member ids in id order (the order a link job invites them in).
async fn group_member_ids(app: &TestApp, gid: &str) -> Vec<Uuid> {
    let sql = "SELECT member_id FROM group_members WHERE spot_id = $1 AND group_id = $2 ORDER BY member_id";
    let gid = Uuid::parse_str(gid).unwrap();
    match &app.db {
        openspot::Db::Sqlite(p, ..) => sqlx::query_scalar(sql).bind(app.spot_id).bind(gid).fetch_all(p).await.unwrap(),
        openspot::Db::Postgres(p) => sqlx::query_scalar(sql).bind(app.spot_id).bind(gid).fetch_all(p).await.unwrap(),
    }
}

/// Bounded wait until none of the course's group links is still inviting; returns the course.
async fn wait_groups_ready(app: &TestApp, cid: &str) -> Value {
    let deadline = Instant::now() + LINK_JOB_WAIT;
    loop {
        let r = app.get(&format!("/v1/courses/{cid}")).await;
        assert_eq!(r.status, 200, "{}", r.text);
        if r.body["groupsReady"] == true {
            return r.body;
        }
        assert!(Instant::now() < deadline, "course {cid}: its group links never became ready");
        tokio::time::sleep(POLL_STEP).await;
    }
}

/// (participant rows, distinct members among them) of a course, from the database.
async fn participant_rows(app: &TestApp, cid: &str) -> (i64, i64) {
    let args = [Arg::Id(app.spot_id.uuid()), Arg::Id(Uuid::parse_str(cid).unwrap())];
    let rows = "SELECT COUNT(*) FROM course_participants WHERE spot_id = $1 AND course_id = $2";
    let distinct = "SELECT COUNT(DISTINCT member_id) FROM course_participants WHERE spot_id = $1 AND course_id = $2";
    (scalar(app, rows, &args).await, scalar(app, distinct, &args).await)
}

// ---------------------------------------------------------------------------
// Courses
// ---------------------------------------------------------------------------

both!(course_create_defaults_and_validation, |app| {
    let r = app.post("/v1/courses", json!({"title": "Rust 101"})).await;
    assert_eq!(r.status, 201, "{}", r.text);
    let id = id_of(&r);
    assert!(Uuid::parse_str(&id).is_ok(), "{id}");
    assert_eq!(
        r.body,
        json!({"id": id, "title": "Rust 101", "description": null, "privacy": "Secret", "status": "Draft",
               "navigationMode": "Flexible", "groupsReady": true})
    );

    let r = app
        .post(
            "/v1/courses",
            json!({"title": "Go", "description": "basics", "status": "Published", "privacy": "Public",
                   "navigationMode": "Sequential"}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(
        (&r.body["title"], &r.body["description"], &r.body["status"], &r.body["privacy"], &r.body["navigationMode"]),
        (&json!("Go"), &json!("basics"), &json!("Published"), &json!("Public"), &json!("Sequential"))
    );

    // Title is required and must not be blank.
    for body in [json!({}), json!({"description": "x"}), json!({"title": ""}), json!({"title": "   "})] {
        let msg = assert_ms_error(&app.post("/v1/courses", body.clone()).await, 400);
        assert!(msg.starts_with("title"), "{body} → {msg}");
    }
    // Bad enums name their field.
    for (field, bad) in [("status", "Archived"), ("privacy", "Hidden"), ("navigationMode", "Random")] {
        let msg = assert_ms_error(&app.post("/v1/courses", json!({"title": "x", field: bad})).await, 400);
        assert!(msg.starts_with(field), "{field}={bad} → {msg}");
    }
    // Wrong types and malformed JSON.
    assert_ms_error(&app.post("/v1/courses", json!({"title": 5})).await, 400);
    assert_ms_error(&app.post("/v1/courses", json!({"title": "x", "status": true})).await, 400);
    assert_ms_error(&app.post_raw("/v1/courses", b"{oops".to_vec(), "application/json").await, 400);
    // Nothing was written by the refused requests.
    assert_eq!(app.get("/v1/courses").await.body["total"], 2);
});

both!(course_list_filters_and_pagination, |app| {
    let specs = [
        ("A", "Draft", "Secret"),
        ("B", "Published", "Public"),
        ("C", "Published", "Secret"),
        ("D", "Draft", "Public"),
        ("E", "Published", "Public"),
    ];
    let mut ids = Vec::new();
    for (title, status, privacy) in specs {
        ids.push(create_course(&app, json!({"title": title, "status": status, "privacy": privacy})).await);
    }
    let titles = |r: &Resp| -> Vec<String> {
        r.body["items"].as_array().unwrap().iter().map(|c| c["title"].as_str().unwrap().to_string()).collect()
    };
    let r = app.get("/v1/courses").await;
    assert_eq!(r.status, 200);
    assert_eq!((titles(&r), r.body["total"].clone()), (strings(&["A", "B", "C", "D", "E"]), json!(5)));
    assert_eq!(r.body["items"][0]["id"], ids[0].as_str(), "creation order");

    // Pages: total always counts everything that matches.
    let r = app.get("/v1/courses?limit=2&page=2").await;
    assert_eq!((titles(&r), r.body["total"].clone()), (strings(&["C", "D"]), json!(5)));
    let r = app.get("/v1/courses?limit=2&page=3").await;
    assert_eq!((titles(&r), r.body["total"].clone()), (strings(&["E"]), json!(5)));
    let r = app.get("/v1/courses?limit=2&page=4").await;
    assert_eq!((r.body["items"].clone(), r.body["total"].clone()), (json!([]), json!(5)));

    // Filters.
    let r = app.get("/v1/courses?status[eq]=Published").await;
    assert_eq!((titles(&r), r.body["total"].clone()), (strings(&["B", "C", "E"]), json!(3)));
    let r = app.get("/v1/courses?privacy[eq]=Secret").await;
    assert_eq!((titles(&r), r.body["total"].clone()), (strings(&["A", "C"]), json!(2)));
    let r = app.get("/v1/courses?status%5Beq%5D=Draft&privacy%5Beq%5D=Public").await;
    assert_eq!((titles(&r), r.body["total"].clone()), (strings(&["D"]), json!(1)));
    let r = app.get("/v1/courses?status[eq]=Published&limit=1&page=2").await;
    assert_eq!((titles(&r), r.body["total"].clone()), (strings(&["C"]), json!(3)));

    // Bad parameters name themselves.
    for (q, param) in [
        ("status[eq]=Nope", "status[eq]"),
        ("privacy[eq]=Private", "privacy[eq]"),
        ("status[in]=Draft", "status[in]"),
        ("title[eq]=A", "title[eq]"),
        ("page=0", "page"),
        ("limit=0", "limit"),
        ("limit=101", "limit"),
    ] {
        let msg = assert_ms_error(&app.get(&format!("/v1/courses?{q}")).await, 400);
        assert!(msg.starts_with(param), "{q} → {msg}");
    }
});

both!(course_get_update_delete, |app| {
    let r = app.post("/v1/courses", json!({"title": "Rust 101", "description": "basics"})).await;
    let id = id_of(&r);
    let url = format!("/v1/courses/{id}");
    let got = app.get(&url).await;
    assert_eq!((got.status, &got.body), (200, &r.body));

    // Partial updates touch only what is sent.
    let u = app.put(&url, json!({"status": "Published"})).await;
    assert_eq!(u.status, 200, "{}", u.text);
    assert_eq!(
        u.body,
        json!({"id": id, "title": "Rust 101", "description": "basics", "privacy": "Secret", "status": "Published",
               "navigationMode": "Flexible", "groupsReady": true})
    );
    let u = app.put(&url, json!({"title": "Rust 102", "description": null, "navigationMode": "Sequential"})).await;
    assert_eq!(
        (&u.body["title"], &u.body["description"], &u.body["navigationMode"], &u.body["status"]),
        (&json!("Rust 102"), &Value::Null, &json!("Sequential"), &json!("Published"))
    );
    assert_eq!(app.put(&url, json!({})).await.body, u.body, "an empty update changes nothing");
    assert_eq!(app.get(&url).await.body, u.body);

    // Validation on update; the course stays as it was.
    for (field, bad) in
        [("status", json!("Archived")), ("privacy", json!("Hidden")), ("navigationMode", json!("Random"))]
    {
        let msg = assert_ms_error(&app.put(&url, json!({field: bad})).await, 400);
        assert!(msg.starts_with(field), "{field} → {msg}");
    }
    assert!(assert_ms_error(&app.put(&url, json!({"title": " "})).await, 400).starts_with("title"));
    assert_ms_error(&app.put(&url, json!({"privacy": 3})).await, 400);
    assert_eq!(app.get(&url).await.body, u.body);

    // Unknown ids.
    for path in [format!("/v1/courses/{UNKNOWN}"), "/v1/courses/not-a-uuid".to_string()] {
        assert_eq!(assert_ms_error(&app.get(&path).await, 404), "Course not found");
        assert_eq!(assert_ms_error(&app.put(&path, json!({"title": "x"})).await, 404), "Course not found");
        assert_eq!(assert_ms_error(&app.delete(&path).await, 404), "Course not found");
    }

    // Delete: 204, then everything under the course is 404 "Course not found".
    let other = course(&app).await;
    let (_, pid) = new_participant(&app, &id, "ada@x.io").await;
    let gid = create_group(&app, json!({"name": "G"})).await;
    let r = app.post(&format!("{url}/groups~bulkAdd"), json!({"groupIds": [gid]})).await;
    assert_eq!(r.status, 204, "{}", r.text);
    assert_eq!(
        (rows_of_course(&app, "course_participants", &id).await, rows_of_course(&app, "course_groups", &id).await),
        (1, 1)
    );
    let r = app.delete(&url).await;
    assert_eq!((r.status, r.text.as_str()), (204, ""));
    assert_eq!(assert_ms_error(&app.get(&url).await, 404), "Course not found");
    assert_eq!(assert_ms_error(&app.delete(&url).await, 404), "Course not found");
    let b = app.invite("bob@x.io").await;
    for r in [
        app.get(&participants_url(&id)).await,
        app.get(&participant_url(&id, &pid)).await,
        app.put(&participant_url(&id, &pid), json!({"status": "Started"})).await,
        app.post(&participants_url(&id), json!({"spotMemberId": b})).await,
        app.post(&bulk_invite_url(&id), json!({"spotMemberIds": [b]})).await,
        app.post(&format!("{url}/groups~bulkAdd"), json!({"groupIds": [gid]})).await,
        app.post(&format!("{url}/groups~bulkRemove"), json!({"groupIds": [gid]})).await,
    ] {
        assert_eq!(assert_ms_error(&r, 404), "Course not found");
    }
    // Participants and group links went with the course.
    assert_eq!(
        (rows_of_course(&app, "course_participants", &id).await, rows_of_course(&app, "course_groups", &id).await),
        (0, 0)
    );
    // The group that was linked still takes members (no dangling link), and the other
    // course is untouched.
    let r = app.post(&format!("/v1/groups/{gid}/spotMembers"), json!({"spotMemberId": b})).await;
    assert_eq!(r.status, 204, "{}", r.text);
    let list = app.get("/v1/courses").await;
    assert_eq!((list.body["total"].clone(), list.body["items"][0]["id"].clone()), (json!(1), json!(other)));
    assert_eq!(total(&app, &other).await, 0);
});

// ---------------------------------------------------------------------------
// Participants
// ---------------------------------------------------------------------------

both!(participant_invite_shape_and_errors, |app| {
    let cid = course(&app).await;
    let m = app.invite("ada@x.io").await;
    let before = openspot::domain::now_ms();
    let r = app.post(&participants_url(&cid), json!({"spotMemberId": m})).await;
    let after = openspot::domain::now_ms();
    assert_eq!(r.status, 201, "{}", r.text);
    let p = r.body.clone();
    assert_eq!(keys(&p), PARTICIPANT_FIELDS.iter().map(|s| s.to_string()).collect(), "{p}");
    let pid = p["id"].as_str().unwrap().to_string();
    assert!(Uuid::parse_str(&pid).is_ok());
    assert_eq!(
        (&p["courseId"], &p["spotMemberId"], &p["spotMemberEmail"], &p["status"], &p["completionRate"]),
        (&json!(cid), &json!(m), &json!("ada@x.io"), &json!("Invited"), &json!(0))
    );
    assert_set_between(&p, "invitedAt", before, after);
    for field in
        ["spotMemberFirstname", "spotMemberLastname", "startedAt", "completedAt", "unenrolledAt", "lastActivityAt"]
    {
        assert_eq!(p[field], Value::Null, "{field}");
    }

    // GET one returns the same object; inviting again answers 200 with it.
    assert_eq!(get_participant(&app, &cid, &pid).await, p);
    let again = app.post(&participants_url(&cid), json!({"spotMemberId": m})).await;
    assert_eq!((again.status, &again.body), (200, &p));
    assert_eq!(total(&app, &cid).await, 1);

    // Names are strings when set, null when empty.
    let r = app.put(&format!("/v1/spotMembers/{m}"), json!({"firstname": "Ada"})).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let got = get_participant(&app, &cid, &pid).await;
    assert_eq!((&got["spotMemberFirstname"], &got["spotMemberLastname"]), (&json!("Ada"), &Value::Null));
    app.put(&format!("/v1/spotMembers/{m}"), json!({"lastname": "Lovelace"})).await;
    let got = get_participant(&app, &cid, &pid).await;
    assert_eq!((&got["spotMemberFirstname"], &got["spotMemberLastname"]), (&json!("Ada"), &json!("Lovelace")));
    let listed = all_participants(&app, &cid, "").await;
    assert_eq!(listed, vec![got.clone()], "list items are the same objects");
    app.put(&format!("/v1/spotMembers/{m}"), json!({"firstname": ""})).await;
    assert_eq!(get_participant(&app, &cid, &pid).await["spotMemberFirstname"], Value::Null);

    // Errors; none of them writes anything.
    let (_, other_key) = app.other_spot().await;
    let foreign = foreign_member(&app, &other_key, "zed@x.io").await;
    for id in [UNKNOWN, foreign.as_str()] {
        let r = app.post(&participants_url(&cid), json!({"spotMemberId": id})).await;
        assert_eq!(assert_ms_error(&r, 404), "Spot member not found", "{id}");
    }
    for body in [json!({}), json!({"spotMemberId": null}), json!({"spotMemberId": 7})] {
        assert_ms_error(&app.post(&participants_url(&cid), body.clone()).await, 400);
    }
    let msg = assert_ms_error(&app.post(&participants_url(&cid), json!({})).await, 400);
    assert!(msg.starts_with("spotMemberId"), "{msg}");
    let b = app.invite("bob@x.io").await;
    for by in [UNKNOWN, foreign.as_str(), "not-a-uuid"] {
        let r = app.post(&participants_url(&cid), json!({"spotMemberId": b, "invitedBySpotMemberId": by})).await;
        let msg = assert_ms_error(&r, 400);
        assert!(msg.starts_with("invitedBySpotMemberId"), "{by} → {msg}");
    }
    let r = app.post(&participants_url(UNKNOWN), json!({"spotMemberId": b})).await;
    assert_eq!(assert_ms_error(&r, 404), "Course not found");
    assert_eq!(emails(&app, &cid, "").await, ["ada@x.io"], "refused invitations wrote nothing");

    // A known inviter is accepted.
    let r = app
        .post(
            &participants_url(&cid),
            json!({"spotMemberId": b, "invitedBySpotMemberId": m, "withEmailNotification": false}),
        )
        .await;
    assert_eq!((r.status, &r.body["spotMemberEmail"]), (201, &json!("bob@x.io")), "{}", r.text);

    // Participant lookups.
    for path in [participant_url(&cid, UNKNOWN), participant_url(&cid, "nope")] {
        assert_eq!(assert_ms_error(&app.get(&path).await, 404), "Course participant not found");
    }
    let second = course(&app).await;
    let r = app.get(&participant_url(&second, &pid)).await;
    assert_eq!(assert_ms_error(&r, 404), "Course participant not found", "a participant of another course");
    assert_eq!(assert_ms_error(&app.get(&participant_url(UNKNOWN, &pid)).await, 404), "Course not found");
});

both!(participant_list_filters, |app| {
    let cid = course(&app).await;
    let people = [
        ("ada@x.io", "Ada", "Lovelace"),
        ("alan@x.io", "Alan", "Turing"),
        ("grace@x.io", "Grace", "Hopper"),
        ("byron@x.io", "Ada", "Byron"),
        ("anon@x.io", "", ""),
    ];
    let mut pids = Vec::new();
    for (email, first, last) in people {
        let mid = app.invite(email).await;
        if !first.is_empty() {
            app.put(&format!("/v1/spotMembers/{mid}"), json!({"firstname": first, "lastname": last})).await;
        }
        pids.push(invite(&app, &cid, &mid, 201).await["id"].as_str().unwrap().to_string());
    }
    // ada Started, alan Completed, grace Unenrolled, byron and anon Invited.
    progress(&app, &cid, &pids[0], json!({"status": "Started"})).await;
    progress(&app, &cid, &pids[1], json!({"status": "Started"})).await;
    progress(&app, &cid, &pids[1], json!({"status": "Completed"})).await;
    progress(&app, &cid, &pids[2], json!({"status": "Unenrolled"})).await;

    // Unfiltered, in invitation order, with pages.
    let all = all_participants(&app, &cid, "").await;
    let ids: Vec<&str> = all.iter().map(|p| p["id"].as_str().unwrap()).collect();
    assert_eq!(ids, pids.iter().map(String::as_str).collect::<Vec<_>>(), "invitation order");
    let r = app.get(&format!("{}?limit=2&page=3", participants_url(&cid))).await;
    assert_eq!((r.body["items"].as_array().unwrap().len(), r.body["total"].clone()), (1, json!(5)));
    assert_eq!(r.body["items"][0]["id"], pids[4].as_str());
    let r = app.get(&participants_url(&cid)).await;
    assert_eq!((r.body["items"].as_array().unwrap().len(), r.body["total"].clone()), (5, json!(5)));

    for (q, want) in [
        ("&firstname[in]=Ada", vec!["ada@x.io", "byron@x.io"]),
        ("&firstname[in]=Ada,Grace", vec!["ada@x.io", "byron@x.io", "grace@x.io"]),
        ("&firstname[in]=Alan&firstname[in]=Grace", vec!["alan@x.io", "grace@x.io"]),
        ("&firstname[in]=Nobody", vec![]),
        ("&lastname[in]=Turing", vec!["alan@x.io"]),
        ("&lastname[in]=Hopper,Byron", vec!["byron@x.io", "grace@x.io"]),
        ("&email[in]=ADA@X.IO", vec!["ada@x.io"]),
        ("&email[in]=alan@x.io,Anon@x.io", vec!["alan@x.io", "anon@x.io"]),
        ("&email%5Bin%5D=grace@x.io", vec!["grace@x.io"]),
        ("&status[eq]=Invited", vec!["anon@x.io", "byron@x.io"]),
        ("&status[eq]=Started", vec!["ada@x.io"]),
        ("&status[eq]=Completed", vec!["alan@x.io"]),
        ("&status[eq]=Unenrolled", vec!["grace@x.io"]),
        ("&status[in]=Started,Completed", vec!["ada@x.io", "alan@x.io"]),
        ("&status[in]=Unenrolled&status[in]=Invited", vec!["anon@x.io", "byron@x.io", "grace@x.io"]),
        ("&firstname[in]=Ada&status[eq]=Invited", vec!["byron@x.io"]),
        ("&firstname[in]=Ada&lastname[in]=Lovelace&email[in]=ada@x.io&status[in]=Started", vec!["ada@x.io"]),
    ] {
        assert_eq!(emails(&app, &cid, q).await, want, "{q}");
    }
    // A filtered page: total counts every match, items only the page.
    let r = app.get(&format!("{}?status[in]=Invited,Started&limit=1&page=2", participants_url(&cid))).await;
    assert_eq!((r.body["items"].as_array().unwrap().len(), r.body["total"].clone()), (1, json!(3)));
    assert_eq!(r.body["items"][0]["id"], pids[3].as_str());

    for (q, param) in [
        ("status[eq]=Done", "status[eq]"),
        ("status[in]=Invited,Nope", "status[in]"),
        ("status[neq]=Invited", "status[neq]"),
        ("firstname[eq]=Ada", "firstname[eq]"),
        ("email[contains]=x", "email[contains]"),
        ("nickname[in]=x", "nickname[in]"),
        ("limit=101", "limit"),
        ("page=0", "page"),
    ] {
        let msg = assert_ms_error(&app.get(&format!("{}?{q}", participants_url(&cid))).await, 400);
        assert!(msg.starts_with(param), "{q} → {msg}");
    }
    let empty = course(&app).await;
    let r = app.get(&participants_url(&empty)).await;
    assert_eq!((r.status, r.body.clone()), (200, json!({"items": [], "total": 0})));
    assert_eq!(assert_ms_error(&app.get(&participants_url(UNKNOWN)).await, 404), "Course not found");
});

both!(bulk_invite_participants, |app| {
    let cid = course(&app).await;
    let url = bulk_invite_url(&cid);
    let a = app.invite("a@x.io").await;
    let b = app.invite("b@x.io").await;
    let c = app.invite("c@x.io").await;
    let d = app.invite("d@x.io").await;

    // All new → 201 with every new participant (a repeated id counts once).
    let r = app.post(&url, json!({"spotMemberIds": [a, b, a], "withEmailNotification": false})).await;
    assert_eq!(r.status, 201, "{}", r.text);
    let got: BTreeSet<&str> = r.body.as_array().unwrap().iter().map(|p| p["spotMemberId"].as_str().unwrap()).collect();
    assert_eq!(got, BTreeSet::from([a.as_str(), b.as_str()]));
    for p in r.body.as_array().unwrap() {
        assert_eq!(keys(p).len(), PARTICIPANT_FIELDS.len(), "{p}");
        assert_eq!((&p["status"], &p["courseId"], &p["completionRate"]), (&json!("Invited"), &json!(cid), &json!(0)));
        iso_ms(&p["invitedAt"]);
        assert_eq!(get_participant(&app, &cid, p["id"].as_str().unwrap()).await, *p);
    }
    assert_eq!(total(&app, &cid).await, 2);

    // A mix of new and already invited → 201 with the new ones only.
    let r = app.post(&url, json!({"spotMemberIds": [a, c, b]})).await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(r.body.as_array().unwrap().len(), 1, "{}", r.text);
    assert_eq!((&r.body[0]["spotMemberId"], &r.body[0]["spotMemberEmail"]), (&json!(c), &json!("c@x.io")));
    assert_eq!(total(&app, &cid).await, 3);

    // All already invited → 200; the participants keep their ids.
    let before = all_participants(&app, &cid, "").await;
    let r = app.post(&url, json!({"spotMemberIds": [b, a]})).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let listed: BTreeSet<&str> = r.body.as_array().unwrap().iter().map(|p| p["id"].as_str().unwrap()).collect();
    let expected: BTreeSet<&str> = before[..2].iter().map(|p| p["id"].as_str().unwrap()).collect();
    assert_eq!(listed, expected);
    assert_eq!(all_participants(&app, &cid, "").await, before, "nothing changed");

    // Any unknown, foreign or malformed id → 400 naming it, nothing written.
    let (_, other_key) = app.other_spot().await;
    let foreign = foreign_member(&app, &other_key, "z@x.io").await;
    for bad in [UNKNOWN, foreign.as_str(), "not-a-uuid"] {
        let msg = assert_ms_error(&app.post(&url, json!({"spotMemberIds": [d, bad]})).await, 400);
        assert!(msg.starts_with("spotMemberIds") && msg.contains(bad), "{bad} → {msg}");
    }
    let msg = assert_ms_error(&app.post(&url, json!({"spotMemberIds": [UNKNOWN, d, foreign]})).await, 400);
    assert!(msg.contains(UNKNOWN) && msg.contains(&foreign) && !msg.contains(&d), "names every bad id: {msg}");
    let r = app.post(&url, json!({"spotMemberIds": [d], "invitedBySpotMemberId": UNKNOWN})).await;
    assert!(assert_ms_error(&r, 400).starts_with("invitedBySpotMemberId"));
    assert_eq!(all_participants(&app, &cid, "").await, before, "nothing written");
    assert_eq!(emails(&app, &cid, "").await, ["a@x.io", "b@x.io", "c@x.io"]);

    // Empty, missing or oversized lists.
    for body in [json!({"spotMemberIds": []}), json!({})] {
        let msg = assert_ms_error(&app.post(&url, body).await, 400);
        assert!(msg.starts_with("spotMemberIds"), "{msg}");
    }
    assert_ms_error(&app.post(&url, json!({"spotMemberIds": "a"})).await, 400);
    let too_many: Vec<String> = (0..201).map(|_| d.clone()).collect();
    let r = app.post(&url, json!({"spotMemberIds": too_many})).await;
    assert_eq!(assert_ms_error(&r, 413), "Payload is too large");
    assert_eq!(total(&app, &cid).await, 3);
    let r = app.post(&bulk_invite_url(UNKNOWN), json!({"spotMemberIds": [d]})).await;
    assert_eq!(assert_ms_error(&r, 404), "Course not found");

    // Exactly 200 ids is accepted; a valid inviter is accepted.
    let emails200: Vec<String> = (0..200).map(|i| format!("bulk{i}@x.io")).collect();
    let r = app.post("/v1/spotMembers~bulkInvite", json!({"emails": emails200})).await;
    let ids: Vec<Value> = r.body["created"].as_array().unwrap().iter().map(|m| m["id"].clone()).collect();
    assert_eq!(ids.len(), 200);
    let r = app.post(&url, json!({"spotMemberIds": ids, "invitedBySpotMemberId": a})).await;
    assert_eq!((r.status, r.body.as_array().map(Vec::len)), (201, Some(200)), "{}", r.text);
    assert_eq!(total(&app, &cid).await, 203);
    assert_eq!(all_participants(&app, &cid, "&status[eq]=Invited").await.len(), 203);

    // An Unenrolled member in a bulk invitation is invited again and reported as new.
    let pc = all_participants(&app, &cid, "&email[in]=c@x.io").await[0]["id"].as_str().unwrap().to_string();
    progress(&app, &cid, &pc, json!({"status": "Unenrolled"})).await;
    let r = app.post(&url, json!({"spotMemberIds": [a, c]})).await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(r.body.as_array().unwrap().len(), 1);
    assert_eq!(
        (&r.body[0]["id"], &r.body[0]["status"], &r.body[0]["unenrolledAt"]),
        (&json!(pc), &json!("Invited"), &Value::Null)
    );
    assert_eq!(total(&app, &cid).await, 203);
});

// ---------------------------------------------------------------------------
// Learner progress
// ---------------------------------------------------------------------------

both!(progress_allowed_moves, |app| {
    let cid = course(&app).await;
    let (_, pid) = new_participant(&app, &cid, "ada@x.io").await;
    let invited = get_participant(&app, &cid, &pid).await;

    // Invited → Started sets startedAt and lastActivityAt (server-set: a client value is ignored).
    let before = openspot::domain::now_ms();
    let p = progress(
        &app,
        &cid,
        &pid,
        json!({"status": "Started", "startedAt": "1999-01-01T00:00:00Z", "completedAt": "1999-01-02T00:00:00Z",
               "lastActivityAt": "1999-01-03T00:00:00Z"}),
    )
    .await;
    let after = openspot::domain::now_ms();
    assert_eq!((&p["status"], &p["completionRate"]), (&json!("Started"), &json!(0)));
    assert_set_between(&p, "startedAt", before, after);
    assert_set_between(&p, "lastActivityAt", before, after);
    assert_eq!((&p["completedAt"], &p["unenrolledAt"]), (&Value::Null, &Value::Null));
    assert_eq!(
        (&p["id"], &p["invitedAt"], &p["spotMemberEmail"]),
        (&invited["id"], &invited["invitedAt"], &invited["spotMemberEmail"])
    );
    assert_eq!(get_participant(&app, &cid, &pid).await, p, "stored as answered");
    let started_at = p["startedAt"].clone();

    // completionRate 0..100 while Started.
    for rate in [0, 1, 55, 99, 100, 40] {
        let before = openspot::domain::now_ms();
        let p = progress(&app, &cid, &pid, json!({"completionRate": rate})).await;
        assert_eq!(
            (&p["completionRate"], &p["startedAt"], &p["completedAt"]),
            (&json!(rate), &started_at, &Value::Null)
        );
        assert_set_between(&p, "lastActivityAt", before, openspot::domain::now_ms());
    }
    assert_eq!(get_participant(&app, &cid, &pid).await["completionRate"], 40);

    // Started → Completed sets completedAt and completionRate 100.
    let before = openspot::domain::now_ms();
    let p = progress(&app, &cid, &pid, json!({"status": "Completed", "completedAt": "1999-01-01T00:00:00Z"})).await;
    let after = openspot::domain::now_ms();
    assert_eq!((&p["status"], &p["completionRate"], &p["startedAt"]), (&json!("Completed"), &json!(100), &started_at));
    assert_set_between(&p, "completedAt", before, after);
    assert_eq!(p["unenrolledAt"], Value::Null);
    let completed_at = p["completedAt"].clone();

    // Completed → Unenrolled sets unenrolledAt and keeps the history.
    let before = openspot::domain::now_ms();
    let p = progress(&app, &cid, &pid, json!({"status": "Unenrolled"})).await;
    assert_set_between(&p, "unenrolledAt", before, openspot::domain::now_ms());
    assert_eq!(
        (&p["status"], &p["startedAt"], &p["completedAt"], &p["completionRate"]),
        (&json!("Unenrolled"), &started_at, &completed_at, &json!(100))
    );

    // Invited → Unenrolled and Started → Unenrolled.
    let (_, p2) = new_participant(&app, &cid, "bob@x.io").await;
    let p = progress(&app, &cid, &p2, json!({"status": "Unenrolled"})).await;
    assert_eq!((&p["status"], &p["startedAt"]), (&json!("Unenrolled"), &Value::Null));
    iso_ms(&p["unenrolledAt"]);
    let (_, p3) = new_participant(&app, &cid, "cy@x.io").await;
    progress(&app, &cid, &p3, json!({"status": "Started", "completionRate": 30})).await;
    let p = progress(&app, &cid, &p3, json!({"status": "Unenrolled"})).await;
    assert_eq!((&p["status"], &p["completionRate"]), (&json!("Unenrolled"), &json!(30)));
    iso_ms(&p["startedAt"]);
    iso_ms(&p["unenrolledAt"]);

    // Status and rate in one request (Invited → Started at 25 %).
    let (_, p4) = new_participant(&app, &cid, "dee@x.io").await;
    let p = progress(&app, &cid, &p4, json!({"status": "Started", "completionRate": 25})).await;
    assert_eq!((&p["status"], &p["completionRate"]), (&json!("Started"), &json!(25)));

    assert_eq!(emails(&app, &cid, "&status[eq]=Unenrolled").await, ["ada@x.io", "bob@x.io", "cy@x.io"]);
    assert_eq!(emails(&app, &cid, "&status[eq]=Started").await, ["dee@x.io"]);
});

both!(progress_refused_moves_and_validation, |app| {
    let cid = course(&app).await;
    let (_, pid) = new_participant(&app, &cid, "ada@x.io").await;
    let url = participant_url(&cid, &pid);

    /// A refused move: 409 naming both statuses, and the participant unchanged.
    async fn refused(app: &TestApp, cid: &str, pid: &str, from: &str, to: &str) {
        let before = get_participant(app, cid, pid).await;
        assert_eq!(before["status"], from);
        let msg = assert_ms_error(&app.put(&participant_url(cid, pid), json!({"status": to})).await, 409);
        assert!(msg.contains(from) && msg.contains(to), "{from} → {to}: {msg}");
        assert_eq!(get_participant(app, cid, pid).await, before, "{from} → {to} changed nothing");
    }

    // Invited: cannot complete, cannot take a rate.
    refused(&app, &cid, &pid, "Invited", "Completed").await;
    let before = get_participant(&app, &cid, &pid).await;
    assert_ms_error(&app.put(&url, json!({"completionRate": 10})).await, 409);
    assert_eq!(get_participant(&app, &cid, &pid).await, before);

    // Validation (400) before any state check; nothing changes.
    for (body, field) in [
        (json!({"completionRate": 101}), "completionRate"),
        (json!({"completionRate": -1}), "completionRate"),
        (json!({"status": "Started", "completionRate": 101}), "completionRate"),
        (json!({"status": "Invited"}), "status"),
        (json!({"status": "Done"}), "status"),
    ] {
        let msg = assert_ms_error(&app.put(&url, body.clone()).await, 400);
        assert!(msg.starts_with(field), "{body} → {msg}");
    }
    for body in [json!({}), json!({"completionRate": 50.5}), json!({"completionRate": "50"}), json!({"status": 1})] {
        assert_ms_error(&app.put(&url, body.clone()).await, 400);
    }
    assert_ms_error(&app.send(Method::PUT, &url, Some(&app.key), None).await, 400);
    assert_eq!(get_participant(&app, &cid, &pid).await, before);

    // Completed: cannot restart; a rate other than 100 is refused.
    progress(&app, &cid, &pid, json!({"status": "Started"})).await;
    progress(&app, &cid, &pid, json!({"status": "Completed"})).await;
    refused(&app, &cid, &pid, "Completed", "Started").await;
    let msg = assert_ms_error(&app.put(&url, json!({"completionRate": 50})).await, 409);
    assert!(msg.contains("completionRate"), "{msg}");

    // Unenrolled: cannot start, complete or unenroll again, nor take a rate.
    progress(&app, &cid, &pid, json!({"status": "Unenrolled"})).await;
    refused(&app, &cid, &pid, "Unenrolled", "Started").await;
    refused(&app, &cid, &pid, "Unenrolled", "Completed").await;
    refused(&app, &cid, &pid, "Unenrolled", "Unenrolled").await;
    assert_ms_error(&app.put(&url, json!({"completionRate": 10})).await, 409);

    // Unknown participant / course.
    let r = app.put(&participant_url(&cid, UNKNOWN), json!({"status": "Started"})).await;
    assert_eq!(assert_ms_error(&r, 404), "Course participant not found");
    let r = app.put(&participant_url(UNKNOWN, &pid), json!({"status": "Started"})).await;
    assert_eq!(assert_ms_error(&r, 404), "Course not found");
    let other = course(&app).await;
    let r = app.put(&participant_url(&other, &pid), json!({"status": "Started"})).await;
    assert_eq!(assert_ms_error(&r, 404), "Course participant not found");
});

both!(reinviting_an_unenrolled_member, |app| {
    let cid = course(&app).await;
    let (mid, pid) = new_participant(&app, &cid, "ada@x.io").await;
    progress(&app, &cid, &pid, json!({"status": "Started", "completionRate": 60})).await;
    progress(&app, &cid, &pid, json!({"status": "Unenrolled"})).await;
    let before = openspot::domain::now_ms();
    let p = invite(&app, &cid, &mid, 201).await;
    let after = openspot::domain::now_ms();
    assert_eq!(
        (&p["id"], &p["status"], &p["completionRate"], &p["startedAt"], &p["completedAt"], &p["unenrolledAt"]),
        (&json!(pid), &json!("Invited"), &json!(0), &Value::Null, &Value::Null, &Value::Null)
    );
    assert_set_between(&p, "invitedAt", before, after);
    assert_eq!(get_participant(&app, &cid, &pid).await, p);
    assert_eq!(total(&app, &cid).await, 1, "the same participant, not a second one");
    // Inviting again now is a no-op (200), and the learner can start over.
    assert_eq!(invite(&app, &cid, &mid, 200).await, p);
    let p = progress(&app, &cid, &pid, json!({"status": "Started"})).await;
    assert_eq!(p["status"], "Started");
    // Re-inviting a Started or Completed learner leaves them where they are.
    assert_eq!(invite(&app, &cid, &mid, 200).await["status"], "Started");
    progress(&app, &cid, &pid, json!({"status": "Completed"})).await;
    let p = invite(&app, &cid, &mid, 200).await;
    assert_eq!((&p["status"], &p["completionRate"]), (&json!("Completed"), &json!(100)));
});

// ---------------------------------------------------------------------------
// Course ↔ group links
// ---------------------------------------------------------------------------

both!(static_group_links, |app| {
    let cid = course(&app).await;
    let links = format!("/v1/courses/{cid}/groups~bulkAdd");
    let unlinks = format!("/v1/courses/{cid}/groups~bulkRemove");
    let gid = create_group(&app, json!({"name": "G"})).await;
    let a = app.invite("a@x.io").await;
    let b = app.invite("b@x.io").await;
    let s = app.invite("s@x.io").await;
    for m in [&a, &b, &s] {
        let r = app.post(&format!("/v1/groups/{gid}/spotMembers"), json!({"spotMemberId": m})).await;
        assert_eq!(r.status, 204, "{}", r.text);
    }
    // b is already Unenrolled and s already Started: linking leaves them as they are.
    let pb = invite(&app, &cid, &b, 201).await["id"].as_str().unwrap().to_string();
    progress(&app, &cid, &pb, json!({"status": "Unenrolled"})).await;
    let ps = invite(&app, &cid, &s, 201).await["id"].as_str().unwrap().to_string();
    let started = progress(&app, &cid, &ps, json!({"status": "Started", "completionRate": 20})).await;
    app.invite("out@x.io").await;

    let r = app.post(&links, json!({"groupIds": [gid], "withEmailNotification": false})).await;
    assert_eq!((r.status, r.text.as_str()), (204, ""));
    assert_eq!(
        statuses(&app, &cid).await,
        [("a@x.io", "Invited"), ("b@x.io", "Unenrolled"), ("s@x.io", "Started")]
            .map(|(e, s)| (e.to_string(), s.to_string()))
    );
    assert_eq!(get_participant(&app, &cid, &ps).await, started, "a Started participant is untouched");
    // Linking again is harmless.
    assert_eq!(app.post(&links, json!({"groupIds": [gid, gid]})).await.status, 204);
    assert_eq!(total(&app, &cid).await, 3);

    // Later joiners are invited at once: single add and bulk add.
    let c = app.invite("c@x.io").await;
    let r = app.post(&format!("/v1/groups/{gid}/spotMembers"), json!({"spotMemberId": c})).await;
    assert_eq!(r.status, 204, "{}", r.text);
    assert_eq!(emails(&app, &cid, "&status[eq]=Invited").await, ["a@x.io", "c@x.io"]);
    let d = app.invite("d@x.io").await;
    let e = app.invite("e@x.io").await;
    let r = app.post(&format!("/v1/groups/{gid}/spotMembers~bulkAdd"), json!({"spotMemberIds": [d, e]})).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(emails(&app, &cid, "&status[eq]=Invited").await, ["a@x.io", "c@x.io", "d@x.io", "e@x.io"]);
    assert_eq!(emails(&app, &cid, "&email[in]=out@x.io").await, Vec::<String>::new(), "non-members are not invited");

    // An Unenrolled member who leaves and rejoins the linked group stays Unenrolled.
    let r = app.post(&format!("/v1/groups/{gid}/spotMembers~bulkRemove"), json!({"spotMemberIds": [b]})).await;
    assert_eq!(r.status, 200, "{}", r.text);
    app.post(&format!("/v1/groups/{gid}/spotMembers"), json!({"spotMemberId": b})).await;
    assert_eq!(get_participant(&app, &cid, &pb).await["status"], "Unenrolled");

    // A second course linked to the same group also invites the joiners.
    let cid2 = course(&app).await;
    assert_eq!(app.post(&format!("/v1/courses/{cid2}/groups~bulkAdd"), json!({"groupIds": [gid]})).await.status, 204);
    assert_eq!(total(&app, &cid2).await, 6);
    let f = app.invite("f@x.io").await;
    app.post(&format!("/v1/groups/{gid}/spotMembers"), json!({"spotMemberId": f})).await;
    assert!(emails(&app, &cid, "").await.contains(&"f@x.io".to_string()));
    assert!(emails(&app, &cid2, "").await.contains(&"f@x.io".to_string()));

    // Unlinking: 204; later joiners are not invited; existing participants stay.
    let before = all_participants(&app, &cid, "").await;
    let r = app.post(&unlinks, json!({"groupIds": [gid]})).await;
    assert_eq!((r.status, r.text.as_str()), (204, ""));
    let g = app.invite("g@x.io").await;
    app.post(&format!("/v1/groups/{gid}/spotMembers"), json!({"spotMemberId": g})).await;
    let h = app.invite("h@x.io").await;
    app.post(&format!("/v1/groups/{gid}/spotMembers~bulkAdd"), json!({"spotMemberIds": [h]})).await;
    assert_eq!(all_participants(&app, &cid, "").await, before, "participants stay; nobody new");
    assert!(emails(&app, &cid2, "").await.contains(&"h@x.io".to_string()), "the other course is still linked");
    // Unlinking an unlinked group is harmless.
    assert_eq!(app.post(&unlinks, json!({"groupIds": [gid]})).await.status, 204);
});

both!(smart_group_links, |app| {
    let cid = course(&app).await;
    let early = app.invite("early@x.io").await;
    app.put(&format!("/v1/spotMembers/{early}"), json!({"status": "Accepted"})).await;
    app.invite("invited-only@x.io").await;
    let smart = create_group(&app, json!({"name": "S", "type": "Smart", "rules": accepted_rules()})).await;
    wait_ready(&app, &smart).await;
    let r = app.post(&format!("/v1/courses/{cid}/groups~bulkAdd"), json!({"groupIds": [smart]})).await;
    assert_eq!(r.status, 204, "{}", r.text);
    assert_eq!(emails(&app, &cid, "").await, ["early@x.io"], "current members of the smart group");

    // A member who becomes Accepted joins the smart group and is invited.
    let d = app.invite("d@x.io").await;
    assert_eq!(emails(&app, &cid, "&email[in]=d@x.io").await, Vec::<String>::new());
    let r = app.put(&format!("/v1/spotMembers/{d}"), json!({"status": "Accepted"})).await;
    assert_eq!(r.status, 200, "{}", r.text);
    wait_for_participant(&app, &cid, "d@x.io").await;
    assert_eq!(emails(&app, &cid, "&status[eq]=Invited").await, ["d@x.io", "early@x.io"]);

    // Leaving the smart group (Deactivated) does not remove the participant.
    app.put(&format!("/v1/spotMembers/{d}"), json!({"status": "Deactivated"})).await;
    assert_eq!(emails(&app, &cid, "").await, ["d@x.io", "early@x.io"]);

    // After unlinking, a newly Accepted member is not invited.
    let r = app.post(&format!("/v1/courses/{cid}/groups~bulkRemove"), json!({"groupIds": [smart]})).await;
    assert_eq!(r.status, 204, "{}", r.text);
    let late = app.invite("late@x.io").await;
    app.put(&format!("/v1/spotMembers/{late}"), json!({"status": "Accepted"})).await;
    // The member is in the smart group (so the course would have seen it) …
    let mut in_group = false;
    for _ in 0..POLL_TRIES {
        let r = app.get(&format!("/v1/groups/{smart}/spotMembers?email[in]=late@x.io")).await;
        if r.body["total"] == 1 {
            in_group = true;
            break;
        }
        tokio::time::sleep(POLL_STEP).await;
    }
    assert!(in_group, "late@x.io never joined the smart group");
    // … but not a participant.
    assert_eq!(emails(&app, &cid, "").await, ["d@x.io", "early@x.io"]);
});

both!(group_link_errors, |app| {
    let cid = course(&app).await;
    let links = format!("/v1/courses/{cid}/groups~bulkAdd");
    let unlinks = format!("/v1/courses/{cid}/groups~bulkRemove");
    let gid = create_group(&app, json!({"name": "G"})).await;
    let a = app.invite("a@x.io").await;
    app.post(&format!("/v1/groups/{gid}/spotMembers"), json!({"spotMemberId": a})).await;
    let (_, other_key) = app.other_spot().await;
    let r = app.send(Method::POST, "/v1/groups", Some(&other_key), Some(json!({"name": "F"}))).await;
    let foreign = id_of(&r);

    for path in [&links, &unlinks] {
        for bad in [UNKNOWN, foreign.as_str(), "not-a-uuid"] {
            // With a valid group in the same request: nothing is linked.
            let msg = assert_ms_error(&app.post(path, json!({"groupIds": [gid, bad]})).await, 400);
            assert!(msg.starts_with("groupIds") && msg.contains(bad), "{path} {bad} → {msg}");
        }
        for body in [json!({"groupIds": []}), json!({})] {
            let msg = assert_ms_error(&app.post(path, body).await, 400);
            assert!(msg.starts_with("groupIds"), "{msg}");
        }
        let too_many: Vec<String> = (0..201).map(|_| gid.clone()).collect();
        assert_eq!(assert_ms_error(&app.post(path, json!({"groupIds": too_many})).await, 413), "Payload is too large");
        assert_eq!(
            assert_ms_error(
                &app.post(&format!("/v1/courses/{UNKNOWN}/groups~bulkAdd"), json!({"groupIds": [gid]})).await,
                404
            ),
            "Course not found"
        );
    }
    assert_eq!(total(&app, &cid).await, 0, "the refused link invited no one");
    let b = app.invite("b@x.io").await;
    app.post(&format!("/v1/groups/{gid}/spotMembers"), json!({"spotMemberId": b})).await;
    assert_eq!(total(&app, &cid).await, 0, "and linked nothing");

    // A deleted group's link goes with it.
    assert_eq!(app.post(&links, json!({"groupIds": [gid]})).await.status, 204);
    assert_eq!(total(&app, &cid).await, 2);
    assert_eq!(app.delete(&format!("/v1/groups/{gid}")).await.status, 204);
    assert_eq!(rows_of_course(&app, "course_groups", &cid).await, 0);
    assert_eq!(total(&app, &cid).await, 2, "participants stay");
});

// ---------------------------------------------------------------------------
// Spot isolation
// ---------------------------------------------------------------------------

both!(another_spot_sees_nothing, |app| {
    let cid = course(&app).await;
    let (mid, pid) = new_participant(&app, &cid, "ada@x.io").await;
    let gid = create_group(&app, json!({"name": "G"})).await;
    let (_, other) = app.other_spot().await;
    let their_member = foreign_member(&app, &other, "zed@x.io").await;
    let r = app.send(Method::POST, "/v1/groups", Some(&other), Some(json!({"name": "F"}))).await;
    let their_group = id_of(&r);
    let cases = [
        (Method::GET, format!("/v1/courses/{cid}"), None),
        (Method::PUT, format!("/v1/courses/{cid}"), Some(json!({"title": "stolen"}))),
        (Method::DELETE, format!("/v1/courses/{cid}"), None),
        (Method::GET, participants_url(&cid), None),
        (Method::GET, participant_url(&cid, &pid), None),
        (Method::PUT, participant_url(&cid, &pid), Some(json!({"status": "Unenrolled"}))),
        (Method::POST, participants_url(&cid), Some(json!({"spotMemberId": their_member}))),
        (Method::POST, bulk_invite_url(&cid), Some(json!({"spotMemberIds": [their_member]}))),
        (Method::POST, format!("/v1/courses/{cid}/groups~bulkAdd"), Some(json!({"groupIds": [their_group]}))),
        (Method::POST, format!("/v1/courses/{cid}/groups~bulkRemove"), Some(json!({"groupIds": [their_group]}))),
    ];
    for (m, path, body) in cases {
        let r = app.send(m.clone(), &path, Some(&other), body).await;
        assert_eq!(assert_ms_error(&r, 404), "Course not found", "{m} {path}");
    }
    let r = app.send(Method::GET, "/v1/courses", Some(&other), None).await;
    assert_eq!(r.body, json!({"items": [], "total": 0}));
    // Their course cannot reach our members or groups either.
    let r = app.send(Method::POST, "/v1/courses", Some(&other), Some(json!({"title": "Theirs"}))).await;
    let theirs = id_of(&r);
    let r = app.send(Method::POST, &participants_url(&theirs), Some(&other), Some(json!({"spotMemberId": mid}))).await;
    assert_eq!(assert_ms_error(&r, 404), "Spot member not found");
    let path = format!("/v1/courses/{theirs}/groups~bulkAdd");
    let r = app.send(Method::POST, &path, Some(&other), Some(json!({"groupIds": [gid]}))).await;
    assert!(assert_ms_error(&r, 400).contains(&gid));
    let r = app.send(Method::GET, &participant_url(&theirs, &pid), Some(&other), None).await;
    assert_eq!(assert_ms_error(&r, 404), "Course participant not found");
    // Ours is intact.
    let ours = app.get(&format!("/v1/courses/{cid}")).await;
    assert_eq!((ours.status, &ours.body["title"]), (200, &json!("Rust 101")));
    assert_eq!(get_participant(&app, &cid, &pid).await["status"], "Invited");
});

// ---------------------------------------------------------------------------
// Concurrent writers
// ---------------------------------------------------------------------------

both!(concurrent_invitations_of_one_member, |app| {
    let app = Arc::new(app);
    let cid = course(&app).await;
    for round in 0..5 {
        let mid = app.invite(&format!("m{round}@x.io")).await;
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..8 {
            let (app, cid, mid) = (app.clone(), cid.clone(), mid.clone());
            tasks.spawn(async move { app.post(&participants_url(&cid), json!({"spotMemberId": mid})).await });
        }
        let mut created = 0;
        let mut ids = BTreeSet::new();
        while let Some(r) = tasks.join_next().await {
            let r = r.unwrap();
            assert!(r.status == 201 || r.status == 200, "{}", r.text);
            created += usize::from(r.status == 201);
            ids.insert(r.body["id"].as_str().unwrap().to_string());
        }
        assert_eq!((created, ids.len()), (1, 1), "one invitation is new; all answer the same participant");
    }
    assert_eq!(total(&app, &cid).await, 5);
    assert_eq!(all_participants(&app, &cid, "&status[eq]=Invited").await.len(), 5);
});

both!(concurrent_progress_moves, |app| {
    let app = Arc::new(app);
    let cid = course(&app).await;
    let mut pids = Vec::new();
    for i in 0..12 {
        let (_, pid) = new_participant(&app, &cid, &format!("m{i}@x.io")).await;
        progress(&app, &cid, &pid, json!({"status": "Started"})).await;
        pids.push(pid);
    }
    // Complete and unenroll at once: whichever runs first, the learner ends Unenrolled
    // (Unenrolled → Completed is refused), never Completed with an unenrolledAt.
    let mut tasks = tokio::task::JoinSet::new();
    for pid in &pids {
        for status in ["Completed", "Unenrolled"] {
            let (app, url) = (app.clone(), participant_url(&cid, pid));
            tasks.spawn(async move { app.put(&url, json!({"status": status})).await });
        }
    }
    while let Some(r) = tasks.join_next().await {
        let r = r.unwrap();
        assert!(r.status == 200 || r.status == 409, "{}", r.text);
    }
    for pid in &pids {
        let p = get_participant(&app, &cid, pid).await;
        assert_eq!(p["status"], "Unenrolled", "{p}");
        iso_ms(&p["unenrolledAt"]);
    }
});

both!(concurrent_course_updates_keep_every_field, |app| {
    let app = Arc::new(app);
    let mut ids = Vec::new();
    for i in 0..10 {
        ids.push(create_course(&app, json!({"title": format!("c{i}")})).await);
    }
    let mut tasks = tokio::task::JoinSet::new();
    for id in &ids {
        for body in [json!({"title": "renamed"}), json!({"status": "Published"}), json!({"privacy": "Public"})] {
            let (app, url) = (app.clone(), format!("/v1/courses/{id}"));
            tasks.spawn(async move { app.put(&url, body).await });
        }
    }
    while let Some(r) = tasks.join_next().await {
        let r = r.unwrap();
        assert_eq!(r.status, 200, "{}", r.text);
    }
    for id in &ids {
        let c = app.get(&format!("/v1/courses/{id}")).await.body;
        assert_eq!(
            (&c["title"], &c["status"], &c["privacy"]),
            (&json!("renamed"), &json!("Published"), &json!("Public"))
        );
    }
});

both!(members_joining_while_a_group_is_linked, |app| {
    let app = Arc::new(app);
    let gid = create_group(&app, json!({"name": "G"})).await;
    let gid_uuid: openspot::domain::ids::GroupId = gid.parse().unwrap();
    // A group big enough for each link to take a while.
    let base: Vec<String> = (0..200).map(|i| format!("base{i}@x.io")).collect();
    let (base, _) = openspot::domain::members::bulk_invite(&app.db, app.spot_id, &base, false).await.unwrap();
    let base_ids: Vec<String> = base.iter().map(|m| m.id.to_string()).collect();
    openspot::domain::groups::bulk_add(&app.db, app.spot_id, gid_uuid, &base_ids).await.unwrap();
    let joiners: Vec<String> = (0..60).map(|i| format!("join{i}@x.io")).collect();
    let (joiners, _) = openspot::domain::members::bulk_invite(&app.db, app.spot_id, &joiners, false).await.unwrap();
    let mut courses = Vec::new();
    for _ in 0..3 {
        courses.push(course(&app).await);
    }
    // Members join one by one while three courses are linked one after the other.
    let mut tasks = tokio::task::JoinSet::new();
    for j in joiners {
        let (app, path) = (app.clone(), format!("/v1/groups/{gid}/spotMembers"));
        tasks.spawn(async move { app.post(&path, json!({"spotMemberId": j.id})).await });
    }
    for cid in &courses {
        let link = app.post(&format!("/v1/courses/{cid}/groups~bulkAdd"), json!({"groupIds": [gid]})).await;
        assert_eq!(link.status, 204, "{}", link.text);
    }
    while let Some(r) = tasks.join_next().await {
        let r = r.unwrap();
        assert_eq!(r.status, 204, "{}", r.text);
    }
    // Whatever the interleaving, every member of the linked group is a participant.
    assert_eq!(app.get(&format!("/v1/groups/{gid}")).await.body["membersCount"], 260);
    for cid in &courses {
        assert_eq!(total(&app, cid).await, 260, "course {cid}");
        assert_eq!(all_participants(&app, cid, "").await.len(), 260);
    }
});

// ---------------------------------------------------------------------------
// Scale
// ---------------------------------------------------------------------------

both!(linking_a_group_of_2000_members, |app| {
    let cid = course(&app).await;
    let gid = create_group(&app, json!({"name": "big"})).await;
    let gid_uuid: openspot::domain::ids::GroupId = gid.parse().unwrap();
    for chunk in 0..10 {
        let emails_: Vec<String> = (0..200).map(|i| format!("m{chunk}-{i}@x.io")).collect();
        let (created, failed) =
            openspot::domain::members::bulk_invite(&app.db, app.spot_id, &emails_, false).await.unwrap();
        assert_eq!((created.len(), failed.len()), (200, 0));
        let ids: Vec<String> = created.iter().map(|m| m.id.to_string()).collect();
        let (added, failed) = openspot::domain::groups::bulk_add(&app.db, app.spot_id, gid_uuid, &ids).await.unwrap();
        assert_eq!((added.len(), failed.len()), (200, 0));
    }
    let r = app.post(&format!("/v1/courses/{cid}/groups~bulkAdd"), json!({"groupIds": [gid]})).await;
    assert_eq!(r.status, 204, "{}", r.text);
    // Over `LINK_INLINE_MAX`: invited by a link job.
    wait_groups_ready(&app, &cid).await;
    assert_eq!(total(&app, &cid).await, 2000);
    let r = app.get(&format!("{}?status[eq]=Invited&limit=100&page=20", participants_url(&cid))).await;
    assert_eq!((r.body["items"].as_array().unwrap().len(), r.body["total"].clone()), (100, json!(2000)));
    let r = app.get(&format!("{}?email[in]=m9-199@x.io,m0-0@x.io", participants_url(&cid))).await;
    assert_eq!(r.body["total"], 2);
    // Every member once: all pages hold 2,000 distinct members.
    let all = all_participants(&app, &cid, "").await;
    let distinct: BTreeSet<&str> = all.iter().map(|p| p["spotMemberId"].as_str().unwrap()).collect();
    assert_eq!(distinct.len(), 2000);
    // Linking again adds no one; a later joiner is the 2,001st.
    assert_eq!(app.post(&format!("/v1/courses/{cid}/groups~bulkAdd"), json!({"groupIds": [gid]})).await.status, 204);
    wait_groups_ready(&app, &cid).await;
    assert_eq!(total(&app, &cid).await, 2000);
    let late = app.invite("late@x.io").await;
    app.post(&format!("/v1/groups/{gid}/spotMembers"), json!({"spotMemberId": late})).await;
    assert_eq!(total(&app, &cid).await, 2001);
});

// A link interrupted part-way before its job's state was durable (links were worked in
// their request before migration 0012) leaves its link and the participants invited
// so far; sending the call again invites the rest, each member once.
both!(an_interrupted_link_is_completed_by_sending_it_again, |app| {
    let cid = course(&app).await;
    let gid = create_group(&app, json!({"name": "resumable"})).await;
    let gid_uuid: openspot::domain::ids::GroupId = gid.parse().unwrap();
    for chunk in 0..3 {
        let emails_: Vec<String> = (0..200).map(|i| format!("r{chunk}-{i}@x.io")).collect();
        let (created, _) = openspot::domain::members::bulk_invite(&app.db, app.spot_id, &emails_, false).await.unwrap();
        let ids: Vec<String> = created.iter().map(|m| m.id.to_string()).collect();
        openspot::domain::groups::bulk_add(&app.db, app.spot_id, gid_uuid, &ids).await.unwrap();
    }
    let link = format!("/v1/courses/{cid}/groups~bulkAdd");
    assert_eq!(app.post(&link, json!({"groupIds": [gid]})).await.status, 204);
    assert_eq!(total(&app, &cid).await, 600);
    // The state a crash after the first slices leaves: the link, a part of the group.
    let cid_uuid = Uuid::parse_str(&cid).unwrap();
    let cut = "DELETE FROM course_participants WHERE spot_id = $1 AND course_id = $2 AND member_id IN \
               (SELECT id FROM members WHERE spot_id = $1 AND email_norm LIKE 'r2-%')";
    let recount = "UPDATE courses SET participant_count = 400 WHERE spot_id = $1 AND id = $2";
    for sql in [cut, recount] {
        match &app.db {
            openspot::Db::Sqlite(p, ..) => sqlx::query(sql).bind(app.spot_id).bind(cid_uuid).execute(p).await.unwrap(),
            openspot::Db::Postgres(p) => {
                sqlx::query(sql).bind(app.spot_id).bind(cid_uuid).execute(p).await.map(|_| ()).unwrap();
                continue;
            }
        };
    }
    assert_eq!(total(&app, &cid).await, 400);
    // A joiner is invited through the link row alone.
    let late = app.invite("late@x.io").await;
    app.post(&format!("/v1/groups/{gid}/spotMembers"), json!({"spotMemberId": late})).await;
    assert_eq!(total(&app, &cid).await, 401);
    // Sending the call again invites the rest, no one twice.
    assert_eq!(app.post(&link, json!({"groupIds": [gid]})).await.status, 204);
    assert_eq!(total(&app, &cid).await, 601);
    assert_eq!(rows_of_course(&app, "course_participants", &cid).await, 601);
    let all = all_participants(&app, &cid, "").await;
    let distinct: BTreeSet<&str> = all.iter().map(|p| p["spotMemberId"].as_str().unwrap()).collect();
    assert_eq!(distinct.len(), 601);
});

// ---------------------------------------------------------------------------
// Large links: a background job per link
// ---------------------------------------------------------------------------

/// Members of the group linked in the job tests: far over `LINK_INLINE_MAX`, and more
/// than a link job invites between its 204 and the next request.
const BIG_LINK: i64 = 20_000;

both!(a_large_link_answers_at_once_and_invites_in_the_background, |app| {
    let cid = course(&app).await;
    let gid = create_group(&app, json!({"name": "big"})).await;
    seed_group(&app, &gid, BIG_LINK).await;
    let link = format!("/v1/courses/{cid}/groups~bulkAdd");
    let t = Instant::now();
    let r = app.post(&link, json!({"groupIds": [gid]})).await;
    let answered = t.elapsed();
    assert_eq!((r.status, r.text.as_str()), (204, ""));
    // The 204 came before the invitations were done, and the course says so.
    let c = app.get(&format!("/v1/courses/{cid}")).await;
    assert_eq!(c.body["groupsReady"], false, "{}", c.text);
    assert_eq!(app.get("/v1/courses").await.body["items"][0]["groupsReady"], false);
    let first = total(&app, &cid).await;
    assert!(first < BIG_LINK as u64, "{first} participants at once: the link was not left to a job");
    // Linking it again meanwhile starts no second job; a member who joins meanwhile is
    // invited by the join, once.
    assert_eq!(app.post(&link, json!({"groupIds": [gid]})).await.status, 204);
    let late = app.invite("late@x.io").await;
    let r = app.post(&format!("/v1/groups/{gid}/spotMembers"), json!({"spotMemberId": late})).await;
    assert_eq!(r.status, 204, "{}", r.text);

    let t = Instant::now();
    let c = wait_groups_ready(&app, &cid).await;
    eprintln!("{BIG_LINK}-member link: 204 in {answered:?}, ready {:?} later", t.elapsed());
    assert_eq!(c["groupsReady"], true);
    assert_eq!(total(&app, &cid).await, BIG_LINK as u64 + 1, "every member, and the joiner");
    assert_eq!(participant_rows(&app, &cid).await, (BIG_LINK + 1, BIG_LINK + 1));
    assert_eq!(emails(&app, &cid, "&email[in]=late@x.io,bulk1@bulk.io").await, ["bulk1@bulk.io", "late@x.io"]);
    // The finished link keeps no lease and no cursor; later joiners are still invited.
    let args = [Arg::Id(app.spot_id.uuid()), Arg::Id(Uuid::parse_str(&cid).unwrap())];
    let done = "SELECT COUNT(*) FROM course_groups WHERE spot_id = $1 AND course_id = $2 AND ready \
                AND invited_through IS NULL AND lease_until IS NULL AND leased_by IS NULL";
    assert_eq!(scalar(&app, done, &args).await, 1);
    let later = app.invite("later@x.io").await;
    app.post(&format!("/v1/groups/{gid}/spotMembers"), json!({"spotMemberId": later})).await;
    assert_eq!(total(&app, &cid).await, BIG_LINK as u64 + 2);
});

both_with!(
    a_link_job_left_by_a_dead_replica_is_resumed_from_its_cursor,
    |c| {
        c.allow_private_targets = true;
    },
    |app| {
        const N: usize = 3000;
        let rx = Receiver::start(Reply::Status(200)).await;
        let r = app.post("/v1/webhooks", json!({"url": rx.url(), "eventTypes": ["course.participant.created"]})).await;
        assert_eq!(r.status, 201, "{}", r.text);
        let cid = course(&app).await;
        let gid = create_group(&app, json!({"name": "big"})).await;
        seed_group(&app, &gid, N as i64).await;
        assert_eq!(
            app.post(&format!("/v1/courses/{cid}/groups~bulkAdd"), json!({"groupIds": [gid]})).await.status,
            204
        );
        wait_groups_ready(&app, &cid).await;
        assert_eq!(total(&app, &cid).await, N as u64);

        // The state a replica leaves when it dies in the middle of the job: its lease, the
        // cursor after member 1,500 (in id order), the members after it not invited. One
        // member before the cursor is missing too: a job that started over would invite it.
        let members = group_member_ids(&app, &gid).await;
        let (cursor, skipped) = (members[N / 2], members[10]);
        let (spot, course_id) = (Arg::Id(app.spot_id.uuid()), Arg::Id(Uuid::parse_str(&cid).unwrap()));
        let dead = Arg::Id(Uuid::now_v7());
        let cut = "DELETE FROM course_participants WHERE spot_id = $1 AND course_id = $2 \
               AND (member_id > $3 OR member_id = $4)";
        exec(&app, cut, &[spot, course_id, Arg::Id(cursor), Arg::Id(skipped)]).await;
        let recount = "UPDATE courses SET participant_count = (SELECT COUNT(*) FROM course_participants \
                   WHERE spot_id = $1 AND course_id = $2) WHERE spot_id = $1 AND id = $2";
        exec(&app, recount, &[spot, course_id]).await;
        let lease = "UPDATE course_groups SET ready = (1 = 0), invited_through = $3, leased_by = $4, lease_until = $5 \
                 WHERE spot_id = $1 AND course_id = $2";
        let now = openspot::domain::now_ms();
        assert_eq!(exec(&app, lease, &[spot, course_id, Arg::Id(cursor), dead, Arg::Int(now + 60_000)]).await, 1);
        assert_eq!(app.get(&format!("/v1/courses/{cid}")).await.body["groupsReady"], false);
        assert_eq!(total(&app, &cid).await, (N / 2) as u64);
        let events = "SELECT COUNT(*) FROM outbox WHERE spot_id = $1 AND event_type = 'course.participant.created'";
        let events_before = scalar(&app, events, &[spot]).await;
        assert_eq!(events_before, N as i64);

        // While the dead replica's lease lasts, nobody takes the link over.
        assert_eq!(openspot::domain::courses::resume_link_jobs(&app.db).await.unwrap(), 0);
        tokio::time::sleep(Duration::from_millis(300)).await;
        let held = "SELECT COUNT(*) FROM course_groups WHERE spot_id = $1 AND course_id = $2 AND leased_by = $3";
        assert_eq!(scalar(&app, held, &[spot, course_id, dead]).await, 1);
        assert_eq!(total(&app, &cid).await, (N / 2) as u64);

        // Once it has lapsed, housekeeping (on any replica) takes it over and invites the
        // rest from the cursor on, each member once.
        let lapse = "UPDATE course_groups SET lease_until = $3 WHERE spot_id = $1 AND course_id = $2";
        exec(&app, lapse, &[spot, course_id, Arg::Int(now - 1)]).await;
        assert_eq!(openspot::domain::courses::resume_link_jobs(&app.db).await.unwrap(), 1);
        wait_groups_ready(&app, &cid).await;
        assert_eq!(total(&app, &cid).await, (N - 1) as u64, "all but the member before the cursor");
        assert_eq!(participant_rows(&app, &cid).await, ((N - 1) as i64, (N - 1) as i64));
        let invited =
            "SELECT COUNT(*) FROM course_participants WHERE spot_id = $1 AND course_id = $2 AND member_id > $3";
        assert_eq!(scalar(&app, invited, &[spot, course_id, Arg::Id(cursor)]).await, (N - N / 2 - 1) as i64);
        let events_after = scalar(&app, events, &[spot]).await;
        assert_eq!(events_after - events_before, (N - N / 2 - 1) as i64, "one course.participant.created per member");
    }
);

both!(unlinking_or_deleting_the_course_stops_a_link_job, |app| {
    let gid = create_group(&app, json!({"name": "big"})).await;
    seed_group(&app, &gid, BIG_LINK).await;
    let cid = course(&app).await;
    assert_eq!(app.post(&format!("/v1/courses/{cid}/groups~bulkAdd"), json!({"groupIds": [gid]})).await.status, 204);
    let r = app.post(&format!("/v1/courses/{cid}/groups~bulkRemove"), json!({"groupIds": [gid]})).await;
    assert_eq!((r.status, r.text.as_str()), (204, ""));
    // No link is inviting any more, and the job stops at its next slice: the
    // participants invited so far stay, and no more come.
    assert_eq!(app.get(&format!("/v1/courses/{cid}")).await.body["groupsReady"], true);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let stopped = participant_rows(&app, &cid).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(participant_rows(&app, &cid).await, stopped);
    assert!(stopped.0 < BIG_LINK, "{stopped:?}: the job did not stop");
    assert_eq!(total(&app, &cid).await, stopped.0 as u64);
    assert_eq!(rows_of_course(&app, "course_groups", &cid).await, 0);

    // Deleting the course stops it too (its link and participants go with it).
    let other = course(&app).await;
    assert_eq!(app.post(&format!("/v1/courses/{other}/groups~bulkAdd"), json!({"groupIds": [gid]})).await.status, 204);
    assert_eq!(app.delete(&format!("/v1/courses/{other}")).await.status, 204);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(participant_rows(&app, &other).await, (0, 0));
    assert_eq!(rows_of_course(&app, "course_groups", &other).await, 0);
    // The group still takes members.
    let m = app.invite("after@x.io").await;
    assert_eq!(app.post(&format!("/v1/groups/{gid}/spotMembers"), json!({"spotMemberId": m})).await.status, 204);
});

//! Cross-spot isolation, checked from outside and kept so. Spot A's credentials (its
//! API key; Kaizala tokens of A's connectors) are used with spot B's real ids on every
//! operation of `/openapi.json`.
//!
//! * Operations with ids in their path ([`path_ops`]): each non-empty set of path ids
//!   is swapped for B's (every B id of that kind: an email and a phone-only member, a
//!   static, smart and Kaizala group, …). The answer must be the dialect's 404 for the
//!   leftmost foreign id, and **exactly** the answer for ids that exist nowhere (a
//!   "ghost" spot of random ids), so a foreign id cannot be told from a missing one.
//!   Bodies that carry ids (bulk adds, invitations, links, custom roles, slugs,
//!   sub-groups) are sent with B's ids too, with the same two checks. None of these
//!   calls writes anything to A's rows. The same call with A's own ids must then
//!   succeed, so the body is valid and the 404 comes from the id.
//! * Operations without path ids ([`NO_PATH_OPS`]): A's lists and filters never show or
//!   count B's items; creates that name B's emails, labels, slugs or numbers make A's own
//!   items; Kaizala logins never mix one spot's connector with the other's tokens.
//! * No answer to A contains anything of B's (ids, emails, names, slugs, numbers) that
//!   A's request did not carry itself.
//! * B is unchanged: its state read through its own key and Kaizala token, and every
//!   row of every table that carries B's `spot_id` (rate-limit windows aside), are the
//!   same before and after.
//!
//! Both tables must cover `/openapi.json` exactly: a new operation fails this test until
//! it joins the matrix.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use reqwest::Method;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::both_with;
use crate::common::{Resp, TestApp};
use crate::receiver::{Receiver, Reply};

/// A number that is a member of both spots (one person in two communities).
const SHARED_NUMBER: &str = "+911100000001";
/// A's plain Kaizala caller (a Member of A's Kaizala group).
const A_PLAIN_NUMBER: &str = "+911100000009";
/// A's other Kaizala group member (the one the role and removal calls act on).
const A_OTHER_NUMBER: &str = "+911100000008";
/// B's phone-only member (added by B's Kaizala group creation).
const B_ONLY_NUMBER: &str = "+911100000003";
const SHARED_EMAIL: &str = "shared@example.com";
/// Tables the outbox dispatcher writes on its own, after the call that queued a
/// delivery has returned: A's rows there may change while a later operation of the
/// matrix runs. B's are compared too (B's deliveries are done before the matrix starts).
const ASYNC_TABLES: &[&str] = &["outbox", "outbox_attempts", "outbox_target_stats"];
/// A's Kaizala connectors: calls rotate over them to stay under 100 calls/min each.
const A_CONNECTORS: usize = 3;

/// The kinds of id an operation takes in its path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Id {
    Member,
    /// A `/v1` group id where a static group is expected.
    Group,
    /// A `/v1` group id where a smart group is expected (blacklists).
    Smart,
    Course,
    Participant,
    Slug,
    Role,
    KzGroup,
    KzSub,
    KzMember,
    Webhook,
    WebhookEvent,
    /// A Kaizala webhook subscription.
    KzWebhook,
}

/// One spot's ids (or a ghost's: random ids that exist in no spot).
#[derive(Clone, Debug, Default)]
struct Side {
    member: String,
    phone_member: String,
    group: String,
    smart: String,
    course: String,
    participant: String,
    slug: String,
    slug2: String,
    role: String,
    kz_group: String,
    kz_sub: String,
    kz_member: String,
    webhook: String,
    webhook_event: String,
    kz_webhook: String,
}

impl Side {
    fn ghost() -> Side {
        let id = || Uuid::new_v4().to_string();
        let slug = || format!("ghost-{}", &Uuid::new_v4().simple().to_string()[..12]);
        Side {
            member: id(),
            phone_member: id(),
            group: id(),
            smart: id(),
            course: id(),
            participant: id(),
            slug: slug(),
            slug2: slug(),
            role: id(),
            kz_group: id(),
            kz_sub: id(),
            kz_member: id(),
            webhook: id(),
            webhook_event: id(),
            kz_webhook: id(),
        }
    }

    /// The ids of kind `k`: A's calls use the first; B's every one in turn.
    fn ids(&self, k: Id) -> Vec<&str> {
        match k {
            Id::Member => vec![&self.member, &self.phone_member],
            Id::Group => vec![&self.group, &self.smart, &self.kz_group],
            Id::Smart => vec![&self.smart, &self.group],
            Id::Course => vec![&self.course],
            Id::Participant => vec![&self.participant],
            Id::Slug => vec![&self.slug, &self.slug2],
            Id::Role => vec![&self.role],
            Id::KzGroup => vec![&self.kz_group, &self.group],
            Id::KzSub => vec![&self.kz_sub],
            Id::KzMember => vec![&self.kz_member, &self.member],
            Id::Webhook => vec![&self.webhook],
            Id::WebhookEvent => vec![&self.webhook_event],
            Id::KzWebhook => vec![&self.kz_webhook],
        }
    }

    fn fields(&self) -> [&str; 15] {
        [
            &self.member,
            &self.phone_member,
            &self.group,
            &self.smart,
            &self.course,
            &self.participant,
            &self.slug,
            &self.slug2,
            &self.role,
            &self.kz_group,
            &self.kz_sub,
            &self.kz_member,
            &self.webhook,
            &self.webhook_event,
            &self.kz_webhook,
        ]
    }
}

/// What a call carrying B's ids in its body must answer (besides the ghost's answer).
#[derive(Clone, Copy, Debug)]
enum Answer {
    /// MeltingSpot error: status and a fragment of the message (the field it names).
    Ms(u16, &'static str),
    /// Kaizala error: status and `errorCode`.
    Kz(u16, &'static str),
    /// 200 with exactly this body (built from the ids sent).
    Exactly(fn(&Side) -> Value),
    /// 200; the answer is checked against the ghost's only.
    Ok,
}

type BodyOf = fn(&Side) -> Value;
type ForeignBody = fn(&Side, &Side) -> Value;

/// One row of the matrix: an operation with ids in its path.
struct PathOp {
    method: &'static str,
    path: &'static str,
    /// The kind of each path id, in path order.
    params: &'static [Id],
    /// A valid body built from A's ids.
    body: Option<BodyOf>,
    /// The status of the call with A's own ids (run after B's).
    control: u16,
    /// Bodies carrying B's ids `(A, B)`, sent to A's own path, and their answers.
    foreign: Vec<(ForeignBody, Answer)>,
}

fn op(method: &'static str, path: &'static str, params: &'static [Id], body: Option<BodyOf>, control: u16) -> PathOp {
    PathOp { method, path, params, body, control, foreign: Vec::new() }
}

fn body(f: BodyOf) -> Option<BodyOf> {
    Some(f)
}

impl PathOp {
    fn foreign(mut self, f: ForeignBody, a: Answer) -> Self {
        self.foreign.push((f, a));
        self
    }
}

/// Every operation of `/openapi.json` with ids in its path, in the order they run
/// (deletions last). `control` is what A's own call answers.
fn path_ops() -> Vec<PathOp> {
    use Id::*;
    vec![
        op("GET", "/v1/spotMembers/{spotMemberId}", &[Member], None, 200),
        op("PUT", "/v1/spotMembers/{spotMemberId}", &[Member], body(|_| json!({"firstname": "Ann"})), 200)
            .foreign(|_, x| json!({"customRoleId": x.role}), Answer::Ms(400, "customRoleId")),
        op("GET", "/v1/spotMembers/{spotMemberId}/customPropertiesValues", &[Member], None, 200),
        op(
            "PUT",
            "/v1/spotMembers/{spotMemberId}/customPropertiesValues/{customPropertySlug}",
            &[Member, Slug],
            body(|_| json!({"value": "gold"})),
            200,
        ),
        op(
            "POST",
            "/v1/spotMembers/{spotMemberId}/customPropertiesValues~bulkUpsert",
            &[Member],
            body(|a| json!([{"customPropertySlug": a.slug, "value": "silver"}])),
            200,
        )
        .foreign(|_, x| json!([{"customPropertySlug": x.slug, "value": "v"}]), Answer::Ms(404, "Custom property"))
        .foreign(
            |a, x| json!([{"customPropertySlug": a.slug, "value": "v"}, {"customPropertySlug": x.slug2, "value": "pro"}]),
            Answer::Ms(404, "Custom property"),
        ),
        op("GET", "/v1/spotMemberCustomRole/{customRoleId}", &[Role], None, 200),
        op("PUT", "/v1/spotMemberCustomRole/{customRoleId}", &[Role], body(|_| json!({"label": "A role renamed"})), 200),
        op("GET", "/v1/customProperties/{slug}", &[Slug], None, 200),
        op("PUT", "/v1/customProperties/{slug}", &[Slug], body(|_| json!({"label": "A tier renamed"})), 200),
        op("GET", "/v1/groups/{groupId}", &[Group], None, 200),
        op("PUT", "/v1/groups/{groupId}", &[Group], body(|_| json!({"name": "A static renamed"})), 200),
        op("GET", "/v1/groups/{groupId}/spotMembers", &[Group], None, 200),
        op("POST", "/v1/groups/{groupId}/spotMembers", &[Group], body(|a| json!({"spotMemberId": a.member})), 204)
            .foreign(|_, x| json!({"spotMemberId": x.member}), Answer::Ms(404, "Spot member not found"))
            .foreign(|_, x| json!({"spotMemberId": x.phone_member}), Answer::Ms(404, "Spot member not found")),
        op(
            "POST",
            "/v1/groups/{groupId}/spotMembers~bulkAdd",
            &[Group],
            body(|a| json!({"spotMemberIds": [a.member]})),
            200,
        )
        .foreign(
            |_, x| json!({"spotMemberIds": [x.member, x.phone_member]}),
            Answer::Exactly(|x| json!({"addedSpotMemberIds": [], "failedSpotMemberIds": [x.member, x.phone_member]})),
        ),
        op(
            "POST",
            "/v1/groups/{groupId}/spotMembers~bulkRemove",
            &[Group],
            body(|a| json!({"spotMemberIds": [a.phone_member]})),
            200,
        )
        .foreign(
            |_, x| json!({"spotMemberIds": [x.member, x.phone_member]}),
            Answer::Exactly(|_| json!({"removedSpotMembersCount": 0})),
        ),
        op(
            "POST",
            "/v1/groups/{groupId}/blacklist~bulkAdd",
            &[Smart],
            body(|a| json!({"spotMemberIds": [a.member]})),
            200,
        )
        .foreign(
            |_, x| json!({"spotMemberIds": [x.member, x.phone_member]}),
            Answer::Exactly(|_| json!({"blacklistedSpotMemberIds": []})),
        ),
        op(
            "POST",
            "/v1/groups/{groupId}/blacklist~bulkRemove",
            &[Smart],
            body(|a| json!({"spotMemberIds": [a.member]})),
            200,
        )
        .foreign(|_, x| json!({"spotMemberIds": [x.member, x.phone_member]}), Answer::Ok),
        op("GET", "/v1/courses/{courseId}", &[Course], None, 200),
        op("PUT", "/v1/courses/{courseId}", &[Course], body(|_| json!({"title": "A course renamed"})), 200),
        op("POST", "/v1/courses/{courseId}/groups~bulkAdd", &[Course], body(|a| json!({"groupIds": [a.group]})), 204)
            .foreign(|_, x| json!({"groupIds": [x.group, x.smart, x.kz_group]}), Answer::Ms(400, "groupIds")),
        op("POST", "/v1/courses/{courseId}/groups~bulkRemove", &[Course], body(|a| json!({"groupIds": [a.group]})), 204)
            .foreign(|_, x| json!({"groupIds": [x.group]}), Answer::Ms(400, "groupIds")),
        op("GET", "/v1/courses/{courseId}/participants", &[Course], None, 200),
        op("POST", "/v1/courses/{courseId}/participants", &[Course], body(|a| json!({"spotMemberId": a.member})), 200)
            .foreign(|_, x| json!({"spotMemberId": x.member}), Answer::Ms(404, "Spot member not found"))
            .foreign(
                |a, x| json!({"spotMemberId": a.member, "invitedBySpotMemberId": x.member}),
                Answer::Ms(400, "invitedBySpotMemberId"),
            ),
        op(
            "POST",
            "/v1/courses/{courseId}/participants~bulkInvite",
            &[Course],
            body(|a| json!({"spotMemberIds": [a.member]})),
            200,
        )
        .foreign(|_, x| json!({"spotMemberIds": [x.member, x.phone_member]}), Answer::Ms(400, "spotMemberIds"))
        .foreign(
            |a, x| json!({"spotMemberIds": [a.member, x.member]}),
            Answer::Ms(400, "spotMemberIds"),
        )
        .foreign(
            |a, x| json!({"spotMemberIds": [a.member], "invitedBySpotMemberId": x.member}),
            Answer::Ms(400, "invitedBySpotMemberId"),
        ),
        op("GET", "/v1/courses/{courseId}/participants/{courseParticipantId}", &[Course, Participant], None, 200),
        op(
            "PUT",
            "/v1/courses/{courseId}/participants/{courseParticipantId}",
            &[Course, Participant],
            body(|_| json!({"status": "Started"})),
            200,
        ),
        op("GET", "/kaizala/v1/groups/{groupId}", &[KzGroup], None, 200),
        op("GET", "/kaizala/v1/groups/{groupId}/members", &[KzGroup], None, 200),
        op("PUT", "/kaizala/v1/groups/{groupId}/members", &[KzGroup], body(|_| json!({"members": [A_OTHER_NUMBER]})), 200),
        op(
            "PUT",
            "/kaizala/v1/groups/{groupId}/members/{memberId}",
            &[KzGroup, KzMember],
            body(|_| json!({"role": "Member"})),
            200,
        ),
        op("POST", "/kaizala/v1/groups/{groupId}/messages", &[KzGroup], body(|_| json!({"message": "hello"})), 200),
        op("GET", "/kaizala/v1/groups/{groupId}/subGroups", &[KzGroup], None, 200),
        op("PUT", "/kaizala/v1/groups/{groupId}/subGroups", &[KzGroup], body(|a| json!({"subGroups": [a.kz_sub]})), 200)
            .foreign(|_, x| json!({"subGroups": [x.kz_group]}), Answer::Kz(400, "InvalidParameters"))
            .foreign(|_, x| json!({"subGroups": [x.kz_sub, x.group]}), Answer::Kz(400, "InvalidParameters")),
        op(
            "POST",
            "/kaizala/v1/groups/{groupId}/subGroups",
            &[KzGroup],
            body(|_| json!({"groupName": "A child 2"})),
            200,
        ),
        op("DELETE", "/kaizala/v1/groups/{groupId}/subGroups/{subGroupId}", &[KzGroup, KzSub], None, 200),
        op("DELETE", "/kaizala/v1/groups/{groupId}/members/{memberId}", &[KzGroup, KzMember], None, 200),
        op("PUT", "/kaizala/v1/webhook/{webhookId}", &[KzWebhook], body(|_| json!({"Active": true})), 200),
        op("DELETE", "/kaizala/v1/webhook/{webhookId}", &[KzWebhook], None, 200),
        op("DELETE", "/v1/spotMemberCustomRole/{customRoleId}", &[Role], None, 204),
        op("DELETE", "/v1/customProperties/{slug}", &[Slug], None, 204),
        op("DELETE", "/v1/courses/{courseId}", &[Course], None, 204),
        op("GET", "/v1/webhooks/{webhookId}", &[Webhook], None, 200),
        op("GET", "/v1/webhooks/{webhookId}/deliveries", &[Webhook], None, 200),
        op("POST", "/v1/webhooks/{webhookId}~test", &[Webhook], body(|_| json!({"eventType": "member.updated"})), 202),
        op("POST", "/v1/webhooks/{webhookId}~recover", &[Webhook], body(|_| json!({"since": 0})), 202),
        op("POST", "/v1/webhooks/{webhookId}/deliveries/{eventId}~redeliver", &[Webhook, WebhookEvent], None, 202),
        op("PUT", "/v1/webhooks/{webhookId}", &[Webhook], body(|_| json!({"description": "A hook", "enabled": false})), 200),
        op("POST", "/v1/webhooks/{webhookId}~rotateSecret", &[Webhook], None, 200),
        op("DELETE", "/v1/webhooks/{webhookId}", &[Webhook], None, 204),
        op("DELETE", "/v1/groups/{groupId}", &[Group], None, 204),
    ]
}

/// When a check of an operation without path ids runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum When {
    /// Before the matrix and again after it (lists, refusals).
    Twice,
    /// After the matrix: it makes items of A under B's names, slugs or numbers.
    Last,
}

/// Every operation of `/openapi.json` without ids in its path, in the order they run,
/// with what its check proves.
const NO_PATH_OPS: &[(&str, &str, When, &str)] = &[
    (
        "GET",
        "/v1/spotMembers",
        When::Twice,
        "A's list and filters (email, name, customRoleId, customProperties) show and count only A's",
    ),
    ("GET", "/v1/spotMemberCustomRole", When::Twice, "A's roles only; label[eq] of B's label finds none"),
    ("GET", "/v1/customProperties", When::Twice, "A's properties only"),
    ("GET", "/v1/groups", When::Twice, "A's groups only; name filters on B's names find none"),
    ("GET", "/v1/courses", When::Twice, "A's courses only"),
    ("GET", "/v1/webhooks", When::Twice, "A's webhook endpoints only"),
    ("GET", "/kaizala/v1/webhook", When::Twice, "A's Kaizala subscriptions only"),
    (
        "GET",
        "/kaizala/v1/groups",
        When::Twice,
        "A's groups only, for A's spot Admin and a plain member, with details and fetchAllGroups",
    ),
    (
        "POST",
        "/v1/groups",
        When::Twice,
        "rules on B's properties → 400 as a ghost's; on B's custom role → a group that matches no one",
    ),
    ("POST", "/v1/groups~bulkCreate", When::Twice, "an item with rules on B's property fails as a ghost's"),
    (
        "GET",
        "/kaizala/v1/accessToken",
        When::Twice,
        "B's refresh token on A's connector, or B's connector with A's secret → 401 as a ghost's",
    ),
    (
        "POST",
        "/kaizala/v1/generatePin",
        When::Twice,
        "a connector and a number of different spots → {} and no PIN is stored",
    ),
    (
        "POST",
        "/kaizala/v1/loginWithPinAndApplicationId",
        When::Twice,
        "A's connector never reaches B's members; B's with A's secret → 401",
    ),
    (
        "POST",
        "/v1/spotMembers~import",
        When::Last,
        "B's group ids or B's property columns → 400 as a ghost's; B's email → a new member of A",
    ),
    ("POST", "/v1/spotMembers", When::Last, "B's email → 201, a new member of A"),
    ("POST", "/v1/spotMembers~bulkInvite", When::Last, "B's emails → A's own members (new, or A's existing one)"),
    ("POST", "/v1/spotMemberCustomRole", When::Last, "B's label → a new role of A"),
    ("POST", "/v1/courses", When::Last, "B's title → a new course of A"),
    ("POST", "/v1/webhooks", When::Last, "B's URL and description → a new endpoint of A, with its own secret"),
    ("POST", "/kaizala/v1/groups", When::Last, "B's phone-only number → a new member of A"),
    ("POST", "/kaizala/v1/webhook", When::Last, "a subscription to B's group → GroupNotFound as a ghost's"),
    ("POST", "/v1/customProperties", When::Last, "B's slug → 201, a new property of A (the slug is free in A)"),
];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Caller {
    /// A's API key.
    Key,
    /// A Kaizala token of A's spot Admin.
    KzAdmin,
    /// A Kaizala token of a plain member of A's Kaizala group.
    KzPlain,
}

struct Ctx<'a> {
    app: &'a TestApp,
    a: Side,
    b: Side,
    ghost: Side,
    b_key: String,
    b_token: String,
    a_connectors: Vec<(String, String)>,
    b_connector: (String, String),
    b_refresh: String,
    kz_admin: Vec<String>,
    kz_plain: Vec<String>,
    /// A's own member with the shared email.
    a_shared: String,
    /// Everything of B's that A must never see unless it sent it.
    secrets: Vec<String>,
    /// The loopback receiver of both spots' webhook endpoints.
    hook_url: String,
    next_token: AtomicUsize,
    requests: AtomicUsize,
}

/// Kaizala throttles A's calls at 100 a minute per connector and 300 per spot: the
/// matrix rotates over [`A_CONNECTORS`] connectors and must stay under the spot's budget.
const A_KAIZALA_BUDGET: usize = 300;

fn method(m: &str) -> Method {
    Method::from_bytes(m.as_bytes()).expect("method")
}

async fn read(r: reqwest::Response) -> Resp {
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    let text = r.text().await.unwrap_or_default();
    let body = serde_json::from_str(&text).unwrap_or(Value::Null);
    Resp { status, body, text, headers }
}

async fn kz_call(app: &TestApp, token: &str, m: &str, path: &str, body: Option<&Value>) -> Resp {
    let mut rb = app.client.request(method(m), format!("{}{}", app.base, path)).header("accessToken", token);
    if let Some(b) = body {
        rb = rb.json(b);
    }
    read(rb.send().await.expect("request")).await
}

async fn access_token(app: &TestApp, app_id: &str, secret: &str, refresh: &str) -> Resp {
    let rb = app
        .client
        .get(format!("{}/kaizala/v1/accessToken", app.base))
        .header("applicationId", app_id)
        .header("applicationSecret", secret)
        .header("refreshToken", refresh);
    read(rb.send().await.expect("request")).await
}

/// A refresh token and an access token for `number` on a connector.
async fn kz_token(app: &TestApp, (app_id, secret): &(String, String), number: &str) -> (String, String) {
    let (refresh, _) = openspot::domain::kaizala::create_user_token(&app.db, app_id, number).await.unwrap();
    let r = access_token(app, app_id, secret, &refresh).await;
    assert_eq!(r.status, 200, "{}", r.text);
    (refresh, r.body["accessToken"].as_str().unwrap().to_string())
}

async fn connector(app: &TestApp, spot: openspot::domain::ids::SpotId, name: &str) -> (String, String) {
    let (c, secret) = openspot::domain::kaizala::create_connector(&app.db, spot, name).await.unwrap();
    (c.id.to_string(), secret)
}

/// A call with `key` that must succeed; returns the body.
async fn ok(app: &TestApp, key: &str, m: &str, path: &str, body: Option<Value>) -> Value {
    let r = app.send(method(m), path, Some(key), body).await;
    assert!((200..300).contains(&r.status), "{m} {path}: {} {}", r.status, r.text);
    r.body
}

async fn kz_ok(app: &TestApp, token: &str, m: &str, path: &str, body: Option<Value>) -> Value {
    let r = kz_call(app, token, m, path, body.as_ref()).await;
    assert_eq!(r.status, 200, "{m} {path}: {}", r.text);
    r.body
}

fn id_of(v: &Value) -> String {
    v["id"].as_str().unwrap_or_else(|| panic!("no id in {v}")).to_string()
}

fn rules(field: &str, op: &str, value: Value) -> Value {
    json!({"operator": "AND", "conditions": [
        {"operator": "AND", "triggers": [{"field": field, "op": op, "value": value}]}
    ]})
}

/// Polls (bounded: 10 s) until a smart group is computed; returns it.
async fn wait_ready(app: &TestApp, key: &str, gid: &str) -> Value {
    for _ in 0..200 {
        let g = ok(app, key, "GET", &format!("/v1/groups/{gid}"), None).await;
        if g["ready"] == true {
            return g;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("smart group {gid} never became ready");
}

/// The id of the group member with `number`, read through Kaizala.
async fn kz_member_id(app: &TestApp, token: &str, gid: &str, number: &str) -> String {
    let ms = kz_ok(app, token, "GET", &format!("/kaizala/v1/groups/{gid}/members"), None).await;
    let m = ms["members"].as_array().unwrap().iter().find(|m| m["mobileNumber"] == number).cloned();
    id_of(&m.unwrap_or_else(|| panic!("{number} is not in group {gid}: {ms}")))
}

async fn member_by_number(app: &TestApp, key: &str, number: &str) -> String {
    let list = ok(app, key, "GET", "/v1/spotMembers?limit=100", None).await;
    let m = list["items"].as_array().unwrap().iter().find(|m| m["mobileNumber"] == number).cloned();
    id_of(&m.unwrap_or_else(|| panic!("no member {number}")))
}

/// Spot B, populated through its own key and Kaizala connector with one of everything.
/// Returns (its ids, every id it has, its connector, its refresh token, its access token).
async fn populate_b(
    app: &TestApp,
    spot: openspot::domain::ids::SpotId,
    key: &str,
    hook_url: &str,
) -> (Side, Vec<String>, (String, String), String, String) {
    let mut all = vec![spot.to_string()];
    let invite = |email: &'static str| async move {
        id_of(&ok(app, key, "POST", "/v1/spotMembers", Some(json!({"email": email}))).await)
    };
    let m1 = invite("b-secret-1@example.com").await;
    let m2 = invite("b-secret-2@example.com").await;
    let m3 = invite("b-secret-3@example.com").await;
    let shared = invite(SHARED_EMAIL).await;
    let role = id_of(&ok(app, key, "POST", "/v1/spotMemberCustomRole", Some(json!({"label": "B-secret-role"}))).await);
    ok(
        app,
        key,
        "PUT",
        &format!("/v1/spotMembers/{m1}"),
        Some(json!({"customRoleId": role, "firstname": "B-secret-first"})),
    )
    .await;
    let p1 = ok(
        app,
        key,
        "POST",
        "/v1/customProperties",
        Some(json!({"slug": "bslug-tier", "label": "B-secret-tier", "type": "Text"})),
    )
    .await;
    let p2 = ok(
        app,
        key,
        "POST",
        "/v1/customProperties",
        Some(json!({"slug": "bslug-plan", "label": "B-secret-plan", "type": "SingleSelect", "possibleValues": ["free", "pro"]})),
    )
    .await;
    ok(
        app,
        key,
        "PUT",
        &format!("/v1/spotMembers/{m1}/customPropertiesValues/bslug-tier"),
        Some(json!({"value": "B-secret-value"})),
    )
    .await;
    ok(
        app,
        key,
        "POST",
        &format!("/v1/spotMembers/{m2}/customPropertiesValues~bulkUpsert"),
        Some(json!([{"customPropertySlug": "bslug-plan", "value": "pro"}])),
    )
    .await;

    // Kaizala: a connector, B's spot Admin by the shared number, a group with a
    // phone-only member, a sub-group, a message, and a pending PIN.
    let conn = connector(app, spot, "b").await;
    let (refresh, token) = kz_token(app, &conn, SHARED_NUMBER).await;
    let caller = member_by_number(app, key, SHARED_NUMBER).await;
    ok(app, key, "PUT", &format!("/v1/spotMembers/{caller}"), Some(json!({"role": "Admin"}))).await;
    let kz_group = kz_ok(
        app,
        &token,
        "POST",
        "/kaizala/v1/groups",
        Some(json!({"name": "B-secret-kz", "members": [B_ONLY_NUMBER]})),
    )
    .await["groupId"]
        .as_str()
        .unwrap()
        .to_string();
    let kz_sub = kz_ok(
        app,
        &token,
        "POST",
        &format!("/kaizala/v1/groups/{kz_group}/subGroups"),
        Some(json!({"groupName": "B-secret-kz-sub"})),
    )
    .await["groupId"]
        .as_str()
        .unwrap()
        .to_string();
    kz_ok(
        app,
        &token,
        "POST",
        &format!("/kaizala/v1/groups/{kz_group}/messages"),
        Some(json!({"message": "B-secret-message"})),
    )
    .await;
    let phone = kz_member_id(app, &token, &kz_group, B_ONLY_NUMBER).await;
    let pin = app
        .client
        .post(format!("{}/kaizala/v1/generatePin", app.base))
        .json(&json!({"mobileNumber": SHARED_NUMBER, "applicationId": conn.0}))
        .send()
        .await
        .unwrap();
    assert_eq!(pin.status(), 200);

    // Groups: static with members, smart (with a blacklist), and a course linked to one.
    let group = id_of(&ok(app, key, "POST", "/v1/groups", Some(json!({"name": "B-secret-static"}))).await);
    ok(
        app,
        key,
        "POST",
        &format!("/v1/groups/{group}/spotMembers~bulkAdd"),
        Some(json!({"spotMemberIds": [m1, m2, phone]})),
    )
    .await;
    let smart = id_of(
        &ok(
            app,
            key,
            "POST",
            "/v1/groups",
            Some(json!({"name": "B-secret-smart", "type": "Smart", "rules": rules("status", "eq", json!("Invited"))})),
        )
        .await,
    );
    wait_ready(app, key, &smart).await;
    ok(app, key, "POST", &format!("/v1/groups/{smart}/blacklist~bulkAdd"), Some(json!({"spotMemberIds": [m3]}))).await;
    let course = id_of(&ok(app, key, "POST", "/v1/courses", Some(json!({"title": "B-secret-course"}))).await);
    ok(app, key, "POST", &format!("/v1/courses/{course}/groups~bulkAdd"), Some(json!({"groupIds": [group]}))).await;
    ok(
        app,
        key,
        "POST",
        &format!("/v1/courses/{course}/participants~bulkInvite"),
        Some(json!({"spotMemberIds": [m3]})),
    )
    .await;
    let parts = ok(app, key, "GET", &format!("/v1/courses/{course}/participants?limit=100"), None).await;
    let parts: Vec<String> = parts["items"].as_array().unwrap().iter().map(id_of).collect();
    assert_eq!(parts.len(), 4, "three by the linked group, one invited");
    ok(app, key, "PUT", &format!("/v1/courses/{course}/participants/{}", parts[0]), Some(json!({"status": "Started"})))
        .await;

    let hook = ok(
        app,
        key,
        "POST",
        "/v1/webhooks",
        Some(json!({"url": hook_url, "eventTypes": ["member.created"], "description": "B-secret-hook"})),
    )
    .await;
    let webhook = id_of(&hook);
    all.push(hook["secret"].as_str().unwrap().to_string());
    let test = ok(app, key, "POST", &format!("/v1/webhooks/{webhook}~test"), Some(json!({}))).await;
    let webhook_event = test["eventId"].as_str().unwrap().to_string();
    all.push(webhook_event.clone());
    all.extend(
        [&m1, &m2, &m3, &shared, &role, &caller, &kz_group, &kz_sub, &phone, &group, &smart, &course, &webhook]
            .map(|s| s.to_string()),
    );
    all.extend([id_of(&p1), id_of(&p2), conn.0.clone()]);
    all.extend(parts.iter().cloned());
    let side = Side {
        member: m1,
        phone_member: phone.clone(),
        group,
        smart,
        course,
        participant: parts[0].clone(),
        slug: "bslug-tier".into(),
        slug2: "bslug-plan".into(),
        role,
        kz_group,
        kz_sub,
        kz_member: phone,
        webhook,
        webhook_event,
        kz_webhook: String::new(),
    };
    (side, all, conn, refresh, token)
}

/// Spot A: the same kinds of thing under other names, and Kaizala callers on several
/// connectors. Returns (its ids, connectors, admin tokens, plain tokens, shared member).
async fn populate_a(app: &TestApp, hook_url: &str) -> (Side, Vec<(String, String)>, Vec<String>, Vec<String>, String) {
    let key = app.key.clone();
    let key = key.as_str();
    let m1 = app.invite("a-1@example.com").await;
    let m2 = app.invite("a-2@example.com").await;
    let shared = app.invite(SHARED_EMAIL).await;
    let role = id_of(&ok(app, key, "POST", "/v1/spotMemberCustomRole", Some(json!({"label": "A role"}))).await);
    for body in [
        json!({"slug": "aslug-tier", "label": "A tier", "type": "Text"}),
        json!({"slug": "aslug-plan", "label": "A plan", "type": "SingleSelect", "possibleValues": ["free", "pro"]}),
    ] {
        ok(app, key, "POST", "/v1/customProperties", Some(body)).await;
    }
    let mut connectors = Vec::new();
    let mut admin = Vec::new();
    let mut plain = Vec::new();
    for i in 0..A_CONNECTORS {
        let c = connector(app, app.spot_id, &format!("a{i}")).await;
        admin.push(kz_token(app, &c, SHARED_NUMBER).await.1);
        connectors.push(c);
    }
    let caller = member_by_number(app, key, SHARED_NUMBER).await;
    ok(app, key, "PUT", &format!("/v1/spotMembers/{caller}"), Some(json!({"role": "Admin"}))).await;
    let kz_group = kz_ok(
        app,
        &admin[0],
        "POST",
        "/kaizala/v1/groups",
        Some(json!({"name": "A kz", "members": [A_PLAIN_NUMBER, A_OTHER_NUMBER]})),
    )
    .await["groupId"]
        .as_str()
        .unwrap()
        .to_string();
    let kz_sub = kz_ok(
        app,
        &admin[0],
        "POST",
        &format!("/kaizala/v1/groups/{kz_group}/subGroups"),
        Some(json!({"groupName": "A kz sub"})),
    )
    .await["groupId"]
        .as_str()
        .unwrap()
        .to_string();
    for c in &connectors {
        plain.push(kz_token(app, c, A_PLAIN_NUMBER).await.1);
    }
    let other = kz_member_id(app, &admin[0], &kz_group, A_OTHER_NUMBER).await;
    let group = id_of(&ok(app, key, "POST", "/v1/groups", Some(json!({"name": "A static"}))).await);
    ok(
        app,
        key,
        "POST",
        &format!("/v1/groups/{group}/spotMembers~bulkAdd"),
        Some(json!({"spotMemberIds": [m1, m2, other]})),
    )
    .await;
    let smart = id_of(
        &ok(
            app,
            key,
            "POST",
            "/v1/groups",
            Some(json!({"name": "A smart", "type": "Smart", "rules": rules("status", "eq", json!("Accepted"))})),
        )
        .await,
    );
    wait_ready(app, key, &smart).await;
    let course = id_of(&ok(app, key, "POST", "/v1/courses", Some(json!({"title": "A course"}))).await);
    let invited = ok(
        app,
        key,
        "POST",
        &format!("/v1/courses/{course}/participants~bulkInvite"),
        Some(json!({"spotMemberIds": [m1]})),
    )
    .await;
    let webhook = id_of(
        &ok(app, key, "POST", "/v1/webhooks", Some(json!({"url": hook_url, "eventTypes": ["member.updated"]}))).await,
    );
    let test = ok(app, key, "POST", &format!("/v1/webhooks/{webhook}~test"), Some(json!({}))).await;
    let webhook_event = test["eventId"].as_str().unwrap().to_string();
    let side = Side {
        member: m1,
        phone_member: other.clone(),
        group,
        smart,
        course,
        participant: id_of(&invited[0]),
        slug: "aslug-tier".into(),
        slug2: "aslug-plan".into(),
        role,
        kz_group,
        kz_sub,
        kz_member: other,
        webhook,
        webhook_event,
        kz_webhook: String::new(),
    };
    (side, connectors, admin, plain, shared)
}

/// Replaces each `{name}` of `template` with the next of `values`.
fn fill(template: &str, values: &[&str]) -> String {
    let mut out = String::new();
    let mut rest = template;
    let mut values = values.iter();
    while let Some(start) = rest.find('{') {
        let end = rest[start..].find('}').expect("closing brace") + start;
        out.push_str(&rest[..start]);
        out.push_str(values.next().expect("a value for every path id"));
        rest = &rest[end + 1..];
    }
    assert!(values.next().is_none(), "{template}: more ids than placeholders");
    out.push_str(rest);
    out
}

fn placeholders(template: &str) -> Vec<String> {
    template.split('{').skip(1).map(|s| s.split('}').next().unwrap_or_default().to_string()).collect()
}

/// Every choice of foreign ids: for each param, `None` (A's own id) or `Some(i)` (B's i-th
/// id of that kind), with at least one foreign.
fn foreign_choices(params: &[Id], b: &Side) -> Vec<Vec<Option<usize>>> {
    let mut out: Vec<Vec<Option<usize>>> = vec![Vec::new()];
    for p in params {
        let n = b.ids(*p).len();
        out = out
            .into_iter()
            .flat_map(|prefix| {
                (0..=n).map(move |i| {
                    let mut v = prefix.clone();
                    v.push(if i == 0 { None } else { Some(i - 1) });
                    v
                })
            })
            .collect();
    }
    out.retain(|c| c.iter().any(Option::is_some));
    out
}

fn ms_entity(k: Id) -> &'static str {
    match k {
        Id::Member => "Spot member",
        Id::Group | Id::Smart => "Group",
        Id::Course => "Course",
        Id::Participant => "Course participant",
        Id::Slug => "Custom property",
        Id::Role => "Custom role",
        Id::Webhook => "Webhook",
        Id::WebhookEvent => "Webhook event",
        Id::KzGroup | Id::KzSub | Id::KzMember | Id::KzWebhook => unreachable!("a Kaizala id"),
    }
}

impl Ctx<'_> {
    fn token(&self, caller: Caller) -> &str {
        let i = self.next_token.fetch_add(1, Ordering::Relaxed);
        assert!(
            i < A_KAIZALA_BUDGET - 20,
            "the matrix outgrew the Kaizala throttle: make fewer calls or split the Kaizala rows into a second test"
        );
        let pool = if caller == Caller::KzPlain { &self.kz_plain } else { &self.kz_admin };
        &pool[i % pool.len()]
    }

    /// A call as spot A; fails if the answer shows anything of B's that the request did not carry.
    async fn call(&self, caller: Caller, m: &str, path: &str, body: Option<&Value>) -> Resp {
        let r = match caller {
            Caller::Key => self.app.send(method(m), path, Some(&self.app.key), body.cloned()).await,
            _ => kz_call(self.app, self.token(caller), m, path, body).await,
        };
        let sent = format!("{path} {}", body.map(Value::to_string).unwrap_or_default());
        self.no_leak(&sent, &r.text, &format!("{caller:?} {m} {path}"));
        r
    }

    fn no_leak(&self, sent: &str, answer: &str, what: &str) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        for s in &self.secrets {
            assert!(
                !answer.contains(s.as_str()) || sent.contains(s.as_str()),
                "LEAK: {what} answered with spot B's '{s}':\nrequest: {sent}\nanswer: {answer}"
            );
        }
    }

    /// B's answer must be the ghost's, ids aside.
    fn same_as_ghost(&self, b: &Resp, ghost: &Resp, what: &str) {
        let mut text = ghost.text.clone();
        for (g, real) in self.ghost.fields().iter().zip(self.b.fields()) {
            text = text.replace(g, real);
        }
        let as_b: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        assert_eq!(
            (b.status, &b.body),
            (ghost.status, &as_b),
            "{what}: spot B's ids are answered unlike ids that exist nowhere\nB's: {}\nghost's: {}",
            b.text,
            ghost.text
        );
    }

    async fn run_path_op(&self, op: &PathOp) {
        let kaizala = op.path.starts_with("/kaizala/");
        let callers: &[Caller] = if kaizala { &[Caller::KzAdmin, Caller::KzPlain] } else { &[Caller::Key] };
        let body = op.body.map(|f| f(&self.a));
        let a_before = spot_rows(self.app, self.app.spot_id, ASYNC_TABLES).await;
        for &caller in callers {
            for choice in foreign_choices(op.params, &self.b) {
                // A plain Kaizala member is refused A's admin calls (403) before any member
                // id is read: it is checked on foreign groups only.
                if caller == Caller::KzPlain && choice[0].is_none() {
                    continue;
                }
                let ids = |x: &Side| -> String {
                    let values: Vec<&str> = op
                        .params
                        .iter()
                        .zip(&choice)
                        .map(|(k, c)| match c {
                            None => self.a.ids(*k)[0],
                            Some(i) => x.ids(*k)[*i],
                        })
                        .collect();
                    fill(op.path, &values)
                };
                let (path_b, path_g) = (ids(&self.b), ids(&self.ghost));
                let what = format!("{caller:?} {} {path_b}", op.method);
                let rb = self.call(caller, op.method, &path_b, body.as_ref()).await;
                let rg = self.call(caller, op.method, &path_g, body.as_ref()).await;
                self.same_as_ghost(&rb, &rg, &what);
                let first = op.params.iter().zip(&choice).find(|(_, c)| c.is_some()).map(|(k, _)| *k).unwrap();
                match first {
                    Id::KzGroup | Id::KzSub | Id::KzMember | Id::KzWebhook => {
                        let code = match first {
                            Id::KzMember => "MemberNotFound",
                            Id::KzWebhook => "ResourceNotFound",
                            _ => "GroupNotFound",
                        };
                        assert_eq!(rb.status, 404, "{what}: {}", rb.text);
                        assert_eq!(rb.body["errorCode"], code, "{what}: {}", rb.text);
                        assert_eq!(rb.body["errorCategoryKey"], "ClientException", "{what}: {}", rb.text);
                        assert!(rb.body["message"].is_string(), "{what}: {}", rb.text);
                    }
                    k => {
                        let expected = json!({"statusCode": 404, "error": "Not Found", "message": format!("{} not found", ms_entity(k))});
                        assert_eq!(rb.body, expected, "{what}: {}", rb.text);
                        assert_eq!(rb.status, 404, "{what}");
                    }
                }
            }
        }
        let own_ids: Vec<&str> = op.params.iter().map(|k| self.a.ids(*k)[0]).collect();
        let own_path = fill(op.path, &own_ids);
        let caller = if kaizala { Caller::KzAdmin } else { Caller::Key };
        for (f, answer) in &op.foreign {
            let (body_b, body_g) = (f(&self.a, &self.b), f(&self.a, &self.ghost));
            let what = format!("{} {own_path} {body_b}", op.method);
            let rb = self.call(caller, op.method, &own_path, Some(&body_b)).await;
            let rg = self.call(caller, op.method, &own_path, Some(&body_g)).await;
            self.same_as_ghost(&rb, &rg, &what);
            match answer {
                Answer::Ms(status, fragment) => {
                    assert_eq!((rb.status, &rb.body["statusCode"]), (*status, &json!(status)), "{what}: {}", rb.text);
                    let msg = rb.body["message"].as_str().unwrap_or_default();
                    assert!(msg.contains(fragment), "{what}: '{msg}' should name {fragment}");
                }
                Answer::Kz(status, code) => {
                    assert_eq!((rb.status, &rb.body["errorCode"]), (*status, &json!(code)), "{what}: {}", rb.text);
                }
                Answer::Exactly(expected) => {
                    assert_eq!((rb.status, &rb.body), (200, &expected(&self.b)), "{what}: {}", rb.text);
                }
                Answer::Ok => assert_eq!(rb.status, 200, "{what}: {}", rb.text),
            }
        }
        // Nothing of A was written either (B's calls and the ghost's alike).
        let what = format!("{} {}: calls with B's ids", op.method, op.path);
        assert_same(&a_before, &spot_rows(self.app, self.app.spot_id, ASYNC_TABLES).await, &what);
        let r = self.call(caller, op.method, &own_path, body.as_ref()).await;
        assert_eq!(r.status, op.control, "A's own call {} {own_path} (the body must be valid): {}", op.method, r.text);
    }

    /// A's list at `path` (200): its items' ids.
    async fn list_ids(&self, path: &str) -> Vec<String> {
        let r = self.call(Caller::Key, "GET", path, None).await;
        assert_eq!(r.status, 200, "{path}: {}", r.text);
        let items = r.body["items"].as_array().unwrap();
        assert_eq!(r.body["total"], items.len(), "{path}: total counts only what A has: {}", r.text);
        items.iter().map(id_of).collect()
    }

    async fn upload(&self, form: reqwest::multipart::Form, sent: &str) -> Resp {
        let r = self
            .app
            .client
            .post(format!("{}/v1/spotMembers~import", self.app.base))
            .header("authorization", &self.app.key)
            .multipart(form)
            .send()
            .await
            .unwrap();
        let r = read(r).await;
        self.no_leak(sent, &r.text, "POST /v1/spotMembers~import");
        r
    }

    async fn run_no_path_op(&self, m: &str, path: &str) {
        let (a, b, ghost) = (&self.a, &self.b, &self.ghost);
        match (m, path) {
            ("GET", "/v1/spotMembers") => {
                let ids = self.list_ids("/v1/spotMembers?limit=100").await;
                assert!(ids.contains(&self.a_shared) && ids.contains(&a.member), "{ids:?}");
                for q in ["email[in]=b-secret-1@example.com", "firstname[in]=B-secret-first"] {
                    assert!(self.list_ids(&format!("/v1/spotMembers?{q}")).await.is_empty(), "{q}");
                }
                let found = self.list_ids(&format!("/v1/spotMembers?email[in]={SHARED_EMAIL}")).await;
                assert_eq!(found, vec![self.a_shared.clone()], "the shared email is A's own member");
                let rb = self.call(Caller::Key, m, &format!("/v1/spotMembers?customRoleId[eq]={}", b.role), None).await;
                let rg =
                    self.call(Caller::Key, m, &format!("/v1/spotMembers?customRoleId[eq]={}", ghost.role), None).await;
                self.same_as_ghost(&rb, &rg, "customRoleId[eq]");
                assert_eq!((rb.status, &rb.body["total"]), (200, &json!(0)), "{}", rb.text);
                for (bs, gs) in [(&b.slug, &ghost.slug), (&b.slug2, &ghost.slug2)] {
                    let q = |s: &str| format!("/v1/spotMembers?customProperties.{s}[eq]=pro");
                    let rb = self.call(Caller::Key, m, &q(bs), None).await;
                    let rg = self.call(Caller::Key, m, &q(gs), None).await;
                    self.same_as_ghost(&rb, &rg, "customProperties filter");
                    assert_eq!(rb.status, 400, "{}", rb.text);
                }
            }
            ("GET", "/v1/spotMemberCustomRole") => {
                self.list_ids("/v1/spotMemberCustomRole?limit=100").await;
                assert!(self.list_ids("/v1/spotMemberCustomRole?label[eq]=B-secret-role").await.is_empty());
            }
            ("GET", "/v1/customProperties") => {
                let r = self.call(Caller::Key, m, "/v1/customProperties?limit=100", None).await;
                let slugs: Vec<&str> =
                    r.body["items"].as_array().unwrap().iter().map(|p| p["slug"].as_str().unwrap()).collect();
                assert!(!slugs.is_empty() && slugs.iter().all(|s| s.starts_with("aslug-")), "{}", r.text);
            }
            ("GET", "/v1/groups") => {
                let ids = self.list_ids("/v1/groups?limit=100").await;
                assert!(ids.contains(&a.smart) && ids.contains(&a.kz_group), "{ids:?}");
                for q in ["name[eq]=B-secret-static", "name[contains]=secret"] {
                    assert!(self.list_ids(&format!("/v1/groups?{q}")).await.is_empty(), "{q}");
                }
            }
            ("GET", "/v1/courses") => {
                self.list_ids("/v1/courses?limit=100").await;
            }
            ("GET", "/v1/webhooks") => {
                let ids = self.list_ids("/v1/webhooks?limit=100").await;
                assert!(!ids.contains(&b.webhook), "{ids:?}");
            }
            ("GET", "/kaizala/v1/groups") => {
                for caller in [Caller::KzAdmin, Caller::KzPlain] {
                    for q in ["", "?showDetails=true", "?fetchAllGroups=true&showDetails=true"] {
                        let r = self.call(caller, m, &format!("{path}{q}"), None).await;
                        assert_eq!(r.status, 200, "{}", r.text);
                        assert!(!r.body["groups"].as_array().unwrap().is_empty(), "{caller:?}: {}", r.text);
                    }
                }
            }
            ("POST", "/v1/groups") => {
                for (bs, gs) in [(&b.slug, &ghost.slug), (&b.slug2, &ghost.slug2)] {
                    let smart = |s: &str| json!({"name": "x", "type": "Smart", "rules": rules(&format!("customProperties.{s}"), "eq", json!("pro"))});
                    let rb = self.call(Caller::Key, m, path, Some(&smart(bs))).await;
                    let rg = self.call(Caller::Key, m, path, Some(&smart(gs))).await;
                    self.same_as_ghost(&rb, &rg, "smart rules on B's property");
                    assert_eq!(rb.status, 400, "{}", rb.text);
                }
                let body = json!({"name": "A by B's role", "type": "Smart", "rules": rules("customRoleId", "eq", json!(b.role))});
                let r = self.call(Caller::Key, m, path, Some(&body)).await;
                assert_eq!(r.status, 201, "{}", r.text);
                let gid = id_of(&r.body);
                let g = wait_ready(self.app, &self.app.key, &gid).await;
                assert_eq!(g["membersCount"], 0, "a rule naming B's role matches none of B's members: {g}");
                // The rule holds the id A sent; later lists must not echo it as if it leaked.
                assert_eq!(self.call(Caller::Key, "DELETE", &format!("/v1/groups/{gid}"), None).await.status, 204);
            }
            ("POST", "/v1/groups~bulkCreate") => {
                let item = |s: &str| json!([{"name": "x", "type": "Smart", "rules": rules(&format!("customProperties.{s}"), "eq", json!("pro"))}]);
                let rb = self.call(Caller::Key, m, path, Some(&item(&b.slug2))).await;
                let rg = self.call(Caller::Key, m, path, Some(&item(&ghost.slug2))).await;
                self.same_as_ghost(&rb, &rg, "bulkCreate with rules on B's property");
                assert_eq!((rb.status, &rb.body["created"]), (201, &json!([])), "{}", rb.text);
            }
            ("POST", "/v1/spotMembers~import") => {
                use reqwest::multipart::{Form, Part};
                let csv = |text: String| Part::bytes(text.into_bytes()).file_name("members.csv");
                for (bs, gs) in [(&b.slug, &ghost.slug), (&b.slug2, &ghost.slug2)] {
                    let file = |s: &str| format!("email,{s}\nimported@example.com,pro\n");
                    let rb = self.upload(Form::new().part("file", csv(file(bs))), &file(bs)).await;
                    let rg = self.upload(Form::new().part("file", csv(file(gs))), &file(gs)).await;
                    self.same_as_ghost(&rb, &rg, "import with B's property column");
                    assert_eq!(rb.status, 400, "{}", rb.text);
                }
                let file = "email\nimported@example.com\n".to_string();
                for group in [&b.group, &b.smart, &b.kz_group] {
                    let form = |g: &str| Form::new().part("file", csv(file.clone())).text("groupId", g.to_string());
                    let rb = self.upload(form(group), group).await;
                    let rg = self.upload(form(&ghost.group), &ghost.group).await;
                    let rg_text = rg.text.replace(&ghost.group, group);
                    assert_eq!((rb.status, rb.text.clone()), (rg.status, rg_text), "import into B's group");
                    assert_eq!(rb.status, 400, "{}", rb.text);
                }
                let file = "email\nb-secret-1@example.com\n";
                let r = self.upload(Form::new().part("file", csv(file.into())), file).await;
                assert_eq!(r.body, json!({"created": 1, "updated": 0, "failed": []}), "B's email is a new member of A");
            }
            ("GET", "/kaizala/v1/accessToken") => {
                let (a_id, a_secret) = &self.a_connectors[0];
                let ghost_refresh = format!("kzr_{}", Uuid::new_v4().simple());
                let rb = access_token(self.app, a_id, a_secret, &self.b_refresh).await;
                self.no_leak(&self.b_refresh, &rb.text, path);
                let rg = access_token(self.app, a_id, a_secret, &ghost_refresh).await;
                assert_eq!((rb.status, &rb.body), (rg.status, &rg.body), "B's refresh token on A's connector");
                assert_eq!((rb.status, &rb.body["errorCode"]), (401, &json!("InvalidToken")), "{}", rb.text);
                let rb = access_token(self.app, &self.b_connector.0, a_secret, &self.b_refresh).await;
                self.no_leak(&format!("{} {}", self.b_connector.0, self.b_refresh), &rb.text, path);
                let rg = access_token(self.app, &Uuid::new_v4().to_string(), a_secret, &self.b_refresh).await;
                assert_eq!((rb.status, &rb.body), (rg.status, &rg.body), "B's connector with A's secret");
                assert_eq!((rb.status, &rb.body["errorCode"]), (401, &json!("Unauthenticated")), "{}", rb.text);
            }
            ("POST", "/kaizala/v1/generatePin") => {
                let before = count_rows(self.app, "kz_pins").await;
                for (number, app_id) in
                    [(B_ONLY_NUMBER, &self.a_connectors[0].0), (A_PLAIN_NUMBER, &self.b_connector.0)]
                {
                    let body = json!({"mobileNumber": number, "applicationId": app_id});
                    let r = self.app.client.post(format!("{}{path}", self.app.base)).json(&body).send().await.unwrap();
                    let r = read(r).await;
                    self.no_leak(&body.to_string(), &r.text, path);
                    assert_eq!((r.status, &r.body), (200, &json!({})), "{body}");
                }
                assert_eq!(count_rows(self.app, "kz_pins").await, before, "no PIN for a number of another spot");
            }
            ("POST", "/kaizala/v1/loginWithPinAndApplicationId") => {
                let (a_id, a_secret) = &self.a_connectors[0];
                let ghost_id = Uuid::new_v4().to_string();
                for body in [
                    json!({"mobileNumber": SHARED_NUMBER, "applicationId": a_id, "pin": "1234"}),
                    json!({"mobileNumber": B_ONLY_NUMBER, "applicationId": a_id, "applicationSecret": a_secret, "pin": 1234}),
                    json!({"mobileNumber": SHARED_NUMBER, "applicationId": self.b_connector.0, "applicationSecret": a_secret, "pin": "1234"}),
                    json!({"mobileNumber": SHARED_NUMBER, "applicationId": ghost_id, "pin": "1234"}),
                ] {
                    let r = self.app.client.post(format!("{}{path}", self.app.base)).json(&body).send().await.unwrap();
                    let r = read(r).await;
                    self.no_leak(&body.to_string(), &r.text, path);
                    assert_eq!(
                        (r.status, &r.body["errorCode"]),
                        (401, &json!("Unauthenticated")),
                        "{body}: {}",
                        r.text
                    );
                }
            }
            ("POST", "/v1/spotMembers") => {
                let r = self.call(Caller::Key, m, path, Some(&json!({"email": "b-secret-2@example.com"}))).await;
                assert_eq!((r.status, &r.body["spotId"]), (201, &json!(self.app.spot_id)), "{}", r.text);
            }
            ("POST", "/v1/spotMembers~bulkInvite") => {
                let body = json!({"emails": ["b-secret-3@example.com", SHARED_EMAIL]});
                let r = self.call(Caller::Key, m, path, Some(&body)).await;
                assert_eq!(r.status, 201, "{}", r.text);
                let created = r.body["created"].as_array().unwrap();
                assert_eq!(created.len(), 2, "{}", r.text);
                assert_eq!(id_of(&created[1]), self.a_shared, "the shared email is A's own member");
                assert!(created.iter().all(|c| c["spotId"] == json!(self.app.spot_id)), "{}", r.text);
            }
            ("POST", "/v1/spotMemberCustomRole") => {
                let r = self.call(Caller::Key, m, path, Some(&json!({"label": "B-secret-role"}))).await;
                assert_eq!(r.status, 201, "{}", r.text);
            }
            ("POST", "/v1/courses") => {
                let r = self.call(Caller::Key, m, path, Some(&json!({"title": "B-secret-course"}))).await;
                assert_eq!(r.status, 201, "{}", r.text);
            }
            ("POST", "/v1/webhooks") => {
                let body =
                    json!({"url": self.hook_url, "eventTypes": ["member.created"], "description": "B-secret-hook"});
                let r = self.call(Caller::Key, m, path, Some(&body)).await;
                assert_eq!(r.status, 201, "{}", r.text);
                assert_ne!(r.body["id"], json!(b.webhook));
            }
            ("POST", "/kaizala/v1/groups") => {
                let body = json!({"name": "A with B's number", "members": [B_ONLY_NUMBER]});
                let r = self.call(Caller::KzAdmin, m, path, Some(&body)).await;
                assert_eq!(r.status, 200, "{}", r.text);
                let gid = r.body["groupId"].as_str().unwrap().to_string();
                // The number is now A's own member's: read without the leak check.
                let r =
                    kz_call(self.app, self.token(Caller::KzAdmin), "GET", &format!("{path}/{gid}/members"), None).await;
                let ids: Vec<&str> =
                    r.body["members"].as_array().unwrap().iter().map(|m| m["id"].as_str().unwrap()).collect();
                assert!(!ids.contains(&b.phone_member.as_str()), "B's member joined A's group: {}", r.text);
                assert!(
                    r.body["members"].as_array().unwrap().iter().any(|m| m["mobileNumber"] == B_ONLY_NUMBER),
                    "{}",
                    r.text
                );
            }
            ("GET", "/kaizala/v1/webhook") => {
                let r = self.call(Caller::KzAdmin, m, path, None).await;
                assert_eq!(r.status, 200, "{}", r.text);
                let ids: Vec<&str> =
                    r.body["webhooks"].as_array().unwrap().iter().filter_map(|w| w["id"].as_str()).collect();
                // A's own subscription is deleted by its path operation, between the two runs.
                assert!(!ids.contains(&b.kz_webhook.as_str()), "{ids:?} {}", r.text);
            }
            ("POST", "/kaizala/v1/webhook") => {
                let body = |g: &str| json!({"objectId": g, "objectType": "Group", "eventTypes": ["MemberAdded"], "callBackUrl": self.hook_url});
                let rb = self.call(Caller::KzAdmin, m, path, Some(&body(&b.kz_group))).await;
                let rg = self.call(Caller::KzAdmin, m, path, Some(&body(&ghost.kz_group))).await;
                self.same_as_ghost(&rb, &rg, "a subscription to B's group");
                assert_eq!((rb.status, &rb.body["errorCode"]), (404, &json!("GroupNotFound")), "{}", rb.text);
            }
            ("POST", "/v1/customProperties") => {
                let body = json!({"slug": b.slug, "label": "A's own", "type": "Text"});
                let r = self.call(Caller::Key, m, path, Some(&body)).await;
                assert_eq!(r.status, 201, "B's slug is free in A: {}", r.text);
            }
            _ => panic!("no isolation check for {m} {path}: add one to run_no_path_op"),
        }
    }
}

async fn count_rows(app: &TestApp, table: &str) -> i64 {
    let sql = format!("SELECT COUNT(*) FROM {table}");
    match &app.db {
        openspot::Db::Sqlite(p, ..) => sqlx::query_scalar(&sql).fetch_one(p).await.unwrap(),
        openspot::Db::Postgres(p) => sqlx::query_scalar(&sql).fetch_one(p).await.unwrap(),
    }
}

/// Every row of every table that carries `spot`'s id (and its `spots` row), as text,
/// read in one query. Rate-limit windows are left out: every call spends the budget.
async fn spot_rows(app: &TestApp, spot: openspot::domain::ids::SpotId, skip: &[&str]) -> BTreeMap<String, Vec<String>> {
    let rows: Vec<(String, String)> = match &app.db {
        openspot::Db::Sqlite(p, ..) => {
            let tables: Vec<String> = sqlx::query_scalar::<_, String>(
                "SELECT m.name FROM sqlite_master m WHERE m.type = 'table' \
                 AND EXISTS (SELECT 1 FROM pragma_table_info(m.name) c WHERE c.name = 'spot_id') ORDER BY 1",
            )
            .fetch_all(p)
            .await
            .unwrap();
            let mut parts = Vec::new();
            for t in tables
                .iter()
                .filter(|t| *t != "rate_limit_windows" && !skip.contains(&t.as_str()))
                .chain([&"spots".to_string()])
            {
                let cols: Vec<String> =
                    sqlx::query_scalar::<_, String>(&format!("SELECT name FROM pragma_table_info('{t}')"))
                        .fetch_all(p)
                        .await
                        .unwrap();
                let row = cols.iter().map(|c| format!("quote(\"{c}\")")).collect::<Vec<_>>().join(" || '|' || ");
                let key = if t == "spots" { "id" } else { "spot_id" };
                parts.push(format!("SELECT '{t}', {row} FROM \"{t}\" WHERE \"{key}\" = ?1"));
            }
            let sql = format!("{} ORDER BY 1, 2", parts.join(" UNION ALL "));
            sqlx::query_as(&sql).bind(spot).fetch_all(p).await.unwrap()
        }
        openspot::Db::Postgres(p) => {
            let tables: Vec<String> = sqlx::query_scalar::<_, String>(
                "SELECT table_name::text FROM information_schema.columns \
                 WHERE table_schema = current_schema() AND column_name = 'spot_id' ORDER BY 1",
            )
            .fetch_all(p)
            .await
            .unwrap();
            let mut parts: Vec<String> = tables
                .iter()
                .filter(|t| *t != "rate_limit_windows" && !skip.contains(&t.as_str()))
                .map(|t| format!("SELECT '{t}', x::text FROM \"{t}\" x WHERE spot_id = $1"))
                .collect();
            parts.push("SELECT 'spots', x::text FROM spots x WHERE id = $1".into());
            let sql = format!("{} ORDER BY 1, 2", parts.join(" UNION ALL "));
            sqlx::query_as(&sql).bind(spot).fetch_all(p).await.unwrap()
        }
    };
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (table, row) in rows {
        out.entry(table).or_default().push(row);
    }
    out
}

/// B's state as B reads it: through its own key and its Kaizala token.
async fn api_snapshot(app: &TestApp, key: &str, token: &str) -> BTreeMap<String, Value> {
    let mut out = BTreeMap::new();
    let mut paths = vec![
        "/v1/spotMembers?limit=100".to_string(),
        "/v1/groups?limit=100".into(),
        "/v1/courses?limit=100".into(),
        "/v1/customProperties?limit=100".into(),
        "/v1/spotMemberCustomRole?limit=100".into(),
        "/v1/webhooks?limit=100".into(),
    ];
    for list in paths.clone() {
        let v = ok(app, key, "GET", &list, None).await;
        for item in v["items"].as_array().unwrap() {
            let id = item["id"].as_str().unwrap();
            match list.split('?').next().unwrap() {
                "/v1/spotMembers" => {
                    paths.push(format!("/v1/spotMembers/{id}"));
                    paths.push(format!("/v1/spotMembers/{id}/customPropertiesValues?limit=100"));
                }
                "/v1/groups" => paths.push(format!("/v1/groups/{id}/spotMembers?limit=100")),
                "/v1/courses" => paths.push(format!("/v1/courses/{id}/participants?limit=100")),
                "/v1/webhooks" => paths.push(format!("/v1/webhooks/{id}")),
                _ => {}
            }
        }
    }
    for p in paths {
        let v = ok(app, key, "GET", &p, None).await;
        out.insert(p, v);
    }
    let groups = kz_ok(app, token, "GET", "/kaizala/v1/groups?showDetails=true&fetchAllGroups=true", None).await;
    for g in groups["groups"].as_array().unwrap() {
        let id = g["groupId"].as_str().unwrap();
        for p in [
            format!("/kaizala/v1/groups/{id}/members"),
            format!("/kaizala/v1/groups/{id}/subGroups?fetchAllGroups=true"),
        ] {
            out.insert(p.clone(), kz_ok(app, token, "GET", &p, None).await);
        }
    }
    out.insert("/kaizala/v1/groups".into(), groups);
    out
}

/// `what` changed nothing: the same entries before and after.
fn assert_same<T: PartialEq + std::fmt::Debug>(before: &BTreeMap<String, T>, after: &BTreeMap<String, T>, what: &str) {
    let keys: BTreeSet<&String> = before.keys().chain(after.keys()).collect();
    for k in keys {
        assert_eq!(before.get(k), after.get(k), "a spot changed ({what}) at {k}");
    }
}

/// The operations of an OpenAPI document: (METHOD, path) → names of its path parameters.
fn operations(doc: &Value) -> BTreeMap<(String, String), Vec<String>> {
    let mut out = BTreeMap::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (m, op) in item.as_object().unwrap() {
            if !["get", "put", "post", "delete", "patch", "head", "options", "trace"].contains(&m.as_str()) {
                continue;
            }
            let names: Vec<String> = op["parameters"]
                .as_array()
                .map(|ps| {
                    ps.iter().filter(|p| p["in"] == "path").map(|p| p["name"].as_str().unwrap().to_string()).collect()
                })
                .unwrap_or_default();
            out.insert((m.to_uppercase(), path.clone()), names);
        }
    }
    out
}

both_with!(isolation_matrix, |c| { c.allow_private_targets = true }, |app| {
    let started = std::time::Instant::now();
    let doc = app.client.get(format!("{}/openapi.json", app.base)).send().await.unwrap().json::<Value>().await.unwrap();
    let ops = operations(&doc);
    let table = path_ops();

    // The tables cover /openapi.json exactly.
    let with_ids: BTreeSet<(String, String)> =
        ops.iter().filter(|(k, names)| !names.is_empty() || k.1.contains('{')).map(|(k, _)| k.clone()).collect();
    let without_ids: BTreeSet<(String, String)> = ops.keys().filter(|k| !with_ids.contains(*k)).cloned().collect();
    let in_table: BTreeSet<(String, String)> =
        table.iter().map(|o| (o.method.to_string(), o.path.to_string())).collect();
    let in_no_path: BTreeSet<(String, String)> =
        NO_PATH_OPS.iter().map(|(m, p, _, _)| (m.to_string(), p.to_string())).collect();
    assert_eq!(in_table.len(), table.len(), "an operation is listed twice in path_ops()");
    assert_eq!(in_no_path.len(), NO_PATH_OPS.len(), "an operation is listed twice in NO_PATH_OPS");
    let missing: Vec<_> = with_ids.difference(&in_table).collect();
    assert!(missing.is_empty(), "operations with path ids missing from the isolation matrix (path_ops): {missing:?}");
    let stale: Vec<_> = in_table.difference(&with_ids).collect();
    assert!(stale.is_empty(), "path_ops() lists operations /openapi.json does not have: {stale:?}");
    let missing: Vec<_> = without_ids.difference(&in_no_path).collect();
    assert!(missing.is_empty(), "operations missing from the isolation checks (NO_PATH_OPS): {missing:?}");
    let stale: Vec<_> = in_no_path.difference(&without_ids).collect();
    assert!(stale.is_empty(), "NO_PATH_OPS lists operations /openapi.json does not have: {stale:?}");
    for o in &table {
        let names = &ops[&(o.method.to_string(), o.path.to_string())];
        assert_eq!(&placeholders(o.path), names, "{} {}: path parameters", o.method, o.path);
        assert_eq!(o.params.len(), names.len(), "{} {}: a kind for every path id", o.method, o.path);
    }

    // Both spots' webhook endpoints deliver to one loopback receiver; the test events of
    // populate_* are delivered and logged before the matrix starts.
    let hooks = Receiver::start(Reply::Status(200)).await;
    let hook_url = hooks.url();
    let (b_spot, b_key) = app.other_spot().await;
    let (mut b, mut b_ids, b_connector, b_refresh, b_token) = populate_b(&app, b_spot, &b_key, &hook_url).await;
    let (mut a, a_connectors, kz_admin, kz_plain, a_shared) = populate_a(&app, &hook_url).await;
    // Each spot's Kaizala group has a webhook subscription (validated by a receiver of
    // its own, which also takes the messages the matrix posts).
    let kz_hooks = Receiver::start(Reply::EchoValidationToken).await;
    for (side, token) in [(&mut b, &b_token), (&mut a, &kz_admin[0])] {
        let body = json!({"objectId": side.kz_group, "objectType": "Group", "eventTypes": ["TextMessageCreated"],
                          "callBackUrl": kz_hooks.url()});
        let sub = kz_ok(&app, token, "POST", "/kaizala/v1/webhook", Some(body)).await;
        side.kz_webhook = sub["webhookId"].as_str().unwrap().to_string();
    }
    b_ids.push(b.kz_webhook.clone());
    assert_eq!(hooks.wait_for(2, Duration::from_secs(10)).await.len(), 2);
    for (key, hook) in [(&b_key, &b.webhook), (&app.key, &a.webhook)] {
        let path = format!("/v1/webhooks/{hook}/deliveries");
        for _ in 0..200 {
            if ok(&app, key, "GET", &path, None).await["total"] == 1 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        assert_eq!(ok(&app, key, "GET", &path, None).await["total"], 1, "{path}");
    }
    let mut secrets = b_ids;
    secrets.extend(["B-secret", "b-secret", "bslug", B_ONLY_NUMBER].map(String::from));
    let cx = Ctx {
        app: &app,
        a,
        b,
        ghost: Side::ghost(),
        b_key,
        b_token,
        a_connectors,
        b_connector,
        b_refresh,
        kz_admin,
        kz_plain,
        a_shared,
        secrets,
        hook_url,
        next_token: AtomicUsize::new(0),
        requests: AtomicUsize::new(0),
    };
    let api_before = api_snapshot(&app, &cx.b_key, &cx.b_token).await;
    let rows_before = spot_rows(&app, b_spot, &[]).await;
    for table in ["members", "spot_groups", "group_members", "courses", "course_participants", "kz_messages"] {
        assert!(rows_before.get(table).is_some_and(|r| !r.is_empty()), "B has rows in {table}: {rows_before:?}");
    }

    for (m, p, _, _) in NO_PATH_OPS.iter().filter(|o| o.2 == When::Twice) {
        cx.run_no_path_op(m, p).await;
    }
    for o in &table {
        cx.run_path_op(o).await;
    }
    for (m, p, _, _) in NO_PATH_OPS {
        cx.run_no_path_op(m, p).await;
    }

    assert_same(&api_before, &api_snapshot(&app, &cx.b_key, &cx.b_token).await, "spot B as B reads it");
    assert_same(&rows_before, &spot_rows(&app, b_spot, &[]).await, "rows carrying spot B's id");
    eprintln!(
        "isolation matrix: {} operations ({} with path ids, {} without), {} requests as spot A ({} Kaizala), {:?}",
        ops.len(),
        with_ids.len(),
        without_ids.len(),
        cx.requests.load(Ordering::Relaxed),
        cx.next_token.load(Ordering::Relaxed),
        started.elapsed()
    );
});

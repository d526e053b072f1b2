//! Kaizala webhook subscriptions (`kaizala-api.md` §6): registration with the
//! validation handshake against a real loopback receiver, lenient bodies, listing,
//! partial updates, deletion, spot isolation, and the delivery channel (envelope,
//! `kz-callback-token`, outcomes, disabling).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::Request;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use reqwest::Method;
use serde_json::{json, Value};

use crate::common::TestApp;
use crate::kaizala::{assert_kz_error, call, setup, user, Kz};
use crate::{both, both_with};
use openspot::domain::ids::{GroupId, SubscriptionId};
use openspot::domain::kaizala::webhooks::{envelope, member_data, text_data, KzChannel, VALIDATION_TIMEOUT};
use openspot::domain::outbox::{Channel, Outcome};
use openspot::domain::vocab::{ChannelKind, GroupRole, KzEventType, OutboxState};
use openspot::outbound::Outbound;
use openspot::store::outbox::{OutboxFilter, OutboxRow};

/// How the receiver answers.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Mode {
    /// GET: the `validationToken` as the body; POST: 200.
    Echo,
    /// GET: 200 with another body.
    WrongEcho,
    /// Every request: this status.
    Status(u16),
    /// Never answers (within the test's patience).
    Hang,
}

/// One request the receiver got.
#[derive(Clone, Debug)]
struct Seen {
    method: String,
    query: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Seen {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    fn token(&self) -> Option<String> {
        form_urlencoded::parse(self.query.as_bytes()).find(|(k, _)| k == "validationToken").map(|(_, v)| v.into_owned())
    }
}

/// A callback receiver on a loopback port.
#[derive(Clone)]
struct Receiver {
    url: String,
    mode: Arc<Mutex<Mode>>,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Receiver {
    async fn start(mode: Mode) -> Receiver {
        let r =
            Receiver { url: String::new(), mode: Arc::new(Mutex::new(mode)), seen: Arc::new(Mutex::new(Vec::new())) };
        let (mode, seen) = (r.mode.clone(), r.seen.clone());
        let app = axum::Router::new().fallback(move |req: Request| {
            let (mode, seen) = (mode.clone(), seen.clone());
            let mode = *mode.lock().unwrap();
            async move { answer(req, mode, seen).await }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/kz/callback?app=1", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Receiver { url, ..r }
    }

    fn set(&self, mode: Mode) {
        *self.mode.lock().unwrap() = mode;
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

async fn answer(req: Request, mode: Mode, seen: Arc<Mutex<Vec<Seen>>>) -> Response {
    let (parts, body) = req.into_parts();
    let body = axum::body::to_bytes(body, 1 << 20).await.unwrap().to_vec();
    let s = Seen {
        method: parts.method.to_string(),
        query: parts.uri.query().unwrap_or("").to_string(),
        headers: parts.headers.iter().map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_string())).collect(),
        body,
    };
    let token = s.token();
    seen.lock().unwrap().push(s);
    match mode {
        Mode::Echo => token.unwrap_or_else(|| "ok".into()).into_response(),
        Mode::WrongEcho => "not the token".into_response(),
        Mode::Status(code) => StatusCode::from_u16(code).unwrap().into_response(),
        Mode::Hang => {
            tokio::time::sleep(Duration::from_secs(60)).await;
            "late".into_response()
        }
    }
}

async fn create_group(app: &TestApp, kz: &Kz) -> String {
    let r = call(app, kz, Method::POST, "/groups", Some(r#"{name:"Webhooks", members:["+911199999998"]}"#)).await;
    assert_eq!(r.status, 200, "{}", r.text);
    r.body["groupId"].as_str().unwrap().to_string()
}

async fn subscribe(app: &TestApp, kz: &Kz, body: &str) -> crate::common::Resp {
    call(app, kz, Method::POST, "/webhook", Some(body)).await
}

async fn list(app: &TestApp, kz: &Kz, query: &str) -> Vec<Value> {
    let r = call(app, kz, Method::GET, &format!("/webhook{query}"), None).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(r.body.get("message").is_none());
    r.body["webhooks"].as_array().unwrap().clone()
}

fn allow_private(c: &mut openspot::Config) {
    c.allow_private_targets = true;
}

both_with!(subscribe_with_lenient_bodies, |c| { allow_private(c) }, |app| {
    let rx = Receiver::start(Mode::Echo).await;
    let kz = setup(&app, "+911199999999").await;
    let gid = create_group(&app, &kz).await;
    // As real Kaizala scripts write it: unquoted keys, `callBackUrl`, a string boolean,
    // the `@1` suffix, event types in any case.
    let body = format!(
        "{{objectId:'{gid}@1', objectType:'group', eventTypes:['MemberAdded','memberremoved'], \
         callBackUrl:'{}', callBackToken:'s3cret', callBackContext:'ctx-1', Active:\"true\"}}\r\n",
        rx.url
    );
    let r = subscribe(&app, &kz, &body).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(r.body.get("message").is_none());
    let id = r.body["webhookId"].as_str().unwrap().to_string();
    // The handshake: one GET carrying a 32-hex token beside the URL's own query.
    let seen = rx.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].method, "GET");
    assert!(seen[0].query.starts_with("app=1&validationToken="), "{}", seen[0].query);
    let token = seen[0].token().unwrap();
    assert_eq!(token.len(), 32);
    assert!(token.chars().all(|c| c.is_ascii_hexdigit()));

    // Listed with the response spellings, filtered by object (query keys in any case).
    let items = list(&app, &kz, &format!("?objectid={gid}%401&OBJECTTYPE=Group")).await;
    assert_eq!(items.len(), 1);
    let w = &items[0];
    assert_eq!(w["id"], id.as_str());
    assert_eq!(w["objectId"], gid.as_str());
    assert_eq!(w["objectType"], "Group");
    assert_eq!(w["events"], json!(["MemberAdded", "MemberRemoved"]));
    assert_eq!(w["filters"], json!([]));
    assert_eq!(w["callbackUrl"], rx.url.as_str());
    assert_eq!(w["callbackToken"], "s3cret");
    assert_eq!(w["callbackContext"], "ctx-1");
    assert_eq!(w["active"], true);
    assert!(w.get("callBackUrl").is_none());
    let (ts, validity) = (w["ts"].as_i64().unwrap(), w["validity"].as_i64().unwrap());
    assert!((ts - openspot::domain::now_ms()).abs() < 60_000, "ts in ms");
    assert_eq!(validity - ts, 730 * 86_400_000);
    assert_eq!(list(&app, &kz, "").await.len(), 1);
    assert!(list(&app, &kz, "?objectType=Action").await.is_empty());
    assert!(list(&app, &kz, "?objectId=df91cb37-97bf-4ccd-a8c2-b2a3ba5eac62").await.is_empty());
    assert_kz_error(&call(&app, &kz, Method::GET, "/webhook?objectType=Spot", None).await, 400, "InvalidParameters");

    // PUT: partial; `Active` as a string or a boolean; quoted and unquoted keys.
    let put = |body: String| {
        let (app, kz, id) = (&app, &kz, id.clone());
        async move { call(app, kz, Method::PUT, &format!("/webhook/{id}"), Some(&body)).await }
    };
    let r = put(r#"{"Active": "false"}"#.into()).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body, json!({"result": true}));
    let w = list(&app, &kz, "").await[0].clone();
    assert_eq!(w["active"], false);
    assert_eq!(w["disabledReason"], "Disabled through the API");
    assert_eq!(w["events"], json!(["MemberAdded", "MemberRemoved"]));
    let r = put("{active: true, eventTypes: 'TextMessageCreated', validity: 1900000000}".into()).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let w = list(&app, &kz, "").await[0].clone();
    assert_eq!(w["active"], true);
    assert_eq!(w["disabledReason"], Value::Null);
    assert_eq!(w["events"], json!(["TextMessageCreated"]));
    assert_eq!(w["validity"], 1_900_000_000_000_i64, "seconds become ms");
    assert_eq!(w["callbackToken"], "s3cret", "fields not given are kept");
    assert_eq!(rx.seen().len(), 1, "no new handshake without a new URL");
    assert_kz_error(&put("{Active: 'maybe'}".into()).await, 400, "InvalidParameters");
    let msg = assert_kz_error(&put("{eventTypes: ['MemberAdded', 'Nope']}".into()).await, 400, "InvalidParameters");
    assert!(msg.contains("Nope"), "{msg}");
    // A new URL is validated again.
    let other = Receiver::start(Mode::Echo).await;
    let r = put(format!("{{callBackUrl: '{}'}}", other.url)).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(other.seen().len(), 1);
    assert_eq!(list(&app, &kz, "").await[0]["callbackUrl"], other.url.as_str());

    // Every documented event type is accepted, including the Postman-only ones.
    let r = subscribe(
        &app,
        &kz,
        &format!(
            r#"{{"ObjectId": "{gid}", "ObjectType": "Group", "EventTypes": ["PollCreated", "LetsMeetResponse", "Announcement"], "CallbackUrl": "{}"}}"#,
            rx.url
        ),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(list(&app, &kz, "").await.len(), 2);

    // DELETE, then it is gone.
    let r = call(&app, &kz, Method::DELETE, &format!("/webhook/{id}"), None).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body, json!({"result": true}));
    assert_eq!(list(&app, &kz, "").await.len(), 1);
    assert_kz_error(&call(&app, &kz, Method::DELETE, &format!("/webhook/{id}"), None).await, 404, "ResourceNotFound");
    assert_kz_error(&put("{active: true}".into()).await, 404, "ResourceNotFound");
    assert_kz_error(&call(&app, &kz, Method::PUT, "/webhook/nope", Some("{}")).await, 404, "ResourceNotFound");
});

both_with!(handshake_refusals_store_nothing, |c| { allow_private(c) }, |app| {
    let rx = Receiver::start(Mode::WrongEcho).await;
    let kz = setup(&app, "+911199999999").await;
    let gid = create_group(&app, &kz).await;
    let body = |url: &str| {
        format!("{{objectId:'{gid}', objectType:'Group', eventTypes:['MemberAdded'], callBackUrl:'{url}'}}")
    };

    let msg = assert_kz_error(&subscribe(&app, &kz, &body(&rx.url)).await, 400, "InvalidParameters");
    assert!(
        msg.starts_with("Webhook validation failed: the callback did not echo validationToken within 5 s"),
        "{msg}"
    );
    rx.set(Mode::Status(404));
    let msg = assert_kz_error(&subscribe(&app, &kz, &body(&rx.url)).await, 400, "InvalidParameters");
    assert!(msg.contains("HTTP 404"), "{msg}");
    assert!(!msg.contains("127.0.0.1"), "the URL is not repeated: {msg}");
    // A redirect is an answer, not followed.
    rx.set(Mode::Status(302));
    assert_kz_error(&subscribe(&app, &kz, &body(&rx.url)).await, 400, "InvalidParameters");
    // Nobody listening.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}/", l.local_addr().unwrap())
    };
    assert_kz_error(&subscribe(&app, &kz, &body(&closed)).await, 400, "InvalidParameters");
    // A receiver that never answers: refused once the validation timeout has passed.
    rx.set(Mode::Hang);
    let started = std::time::Instant::now();
    let msg = assert_kz_error(&subscribe(&app, &kz, &body(&rx.url)).await, 400, "InvalidParameters");
    let took = started.elapsed();
    assert!(took >= VALIDATION_TIMEOUT && took < VALIDATION_TIMEOUT + Duration::from_secs(3), "{took:?}");
    assert!(msg.contains("timed out"), "{msg}");
    assert!(list(&app, &kz, "").await.is_empty(), "nothing stored");

    // Fields, before any outbound call.
    let before = rx.seen().len();
    let cases = [
        (format!("{{objectId:'{gid}', objectType:'Group', eventTypes:['MemberAdded'], callBackUrl:'ftp://x/'}}"), "callBackUrl"),
        (format!("{{objectId:'{gid}', objectType:'Group', eventTypes:['MemberAdded']}}"), "callBackUrl"),
        (format!("{{objectId:'{gid}', objectType:'Group', eventTypes:[], callBackUrl:'{}'}}", rx.url), "eventTypes"),
        (format!("{{objectId:'{gid}', objectType:'Group', eventTypes:['Bogus'], callBackUrl:'{}'}}", rx.url), "eventTypes[0]"),
        (format!("{{objectId:'{gid}', objectType:'Spot', eventTypes:['MemberAdded'], callBackUrl:'{}'}}", rx.url), "objectType"),
        (format!("{{objectType:'Group', eventTypes:['MemberAdded'], callBackUrl:'{}'}}", rx.url), "objectId"),
        (
            format!("{{objectId:'{gid}', objectType:'Group', eventTypes:['MemberAdded'], callBackUrl:'{}', validity: 1000}}", rx.url),
            "validity",
        ),
    ];
    for (b, field) in cases {
        let msg = assert_kz_error(&subscribe(&app, &kz, &b).await, 400, "InvalidParameters");
        assert!(msg.starts_with(field), "{b}: {msg}");
    }
    assert_kz_error(&subscribe(&app, &kz, "{objectId:").await, 400, "InvalidParameters");
    // Unknown group; a member who is not the group's Admin.
    let unknown = format!(
        "{{objectId:'df91cb37-97bf-4ccd-a8c2-b2a3ba5eac62@1', objectType:'Group', eventTypes:['MemberAdded'], callBackUrl:'{}'}}",
        rx.url
    );
    assert_kz_error(&subscribe(&app, &kz, &unknown).await, 404, "GroupNotFound");
    let member = user(&app, &kz.app_id, &kz.secret, "+911199999998").await;
    rx.set(Mode::Echo);
    assert_kz_error(&subscribe(&app, &member, &body(&rx.url)).await, 403, "AccessDenied");
    assert_eq!(rx.seen().len(), before, "refused requests make no outbound call");

    // A good subscription, then a new URL that fails validation: refused, unchanged.
    let r = subscribe(&app, &kz, &body(&rx.url)).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let id = r.body["webhookId"].as_str().unwrap().to_string();
    let bad = Receiver::start(Mode::Status(500)).await;
    let r =
        call(&app, &kz, Method::PUT, &format!("/webhook/{id}"), Some(&format!("{{callBackUrl:'{}'}}", bad.url))).await;
    assert_kz_error(&r, 400, "InvalidParameters");
    assert_eq!(list(&app, &kz, "").await[0]["callbackUrl"], rx.url.as_str());
    // The member neither sees nor changes it.
    assert!(list(&app, &member, "").await.is_empty());
    let r = call(&app, &member, Method::DELETE, &format!("/webhook/{id}"), None).await;
    assert_kz_error(&r, 403, "AccessDenied");
});

both!(private_callbacks_are_refused_unless_allowed, |app| {
    let rx = Receiver::start(Mode::Echo).await;
    let kz = setup(&app, "+911199999999").await;
    let gid = create_group(&app, &kz).await;
    let body =
        format!("{{objectId:'{gid}', objectType:'Group', eventTypes:['MemberAdded'], callBackUrl:'{}'}}", rx.url);
    let msg = assert_kz_error(&subscribe(&app, &kz, &body).await, 400, "InvalidParameters");
    assert!(msg.starts_with("callBackUrl"), "{msg}");
    assert!(rx.seen().is_empty());
});

both_with!(subscriptions_are_per_spot, |c| { allow_private(c) }, |app| {
    let rx = Receiver::start(Mode::Echo).await;
    let kz = setup(&app, "+911199999999").await;
    let gid = create_group(&app, &kz).await;
    let body =
        format!("{{objectId:'{gid}', objectType:'Group', eventTypes:['MemberAdded'], callBackUrl:'{}'}}", rx.url);
    let r = subscribe(&app, &kz, &body).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let id = r.body["webhookId"].as_str().unwrap().to_string();

    // The same number, signed in through a connector of another spot (where it is Admin
    // of its own group).
    let (other_spot, _) = app.other_spot().await;
    let (c, secret) = openspot::domain::kaizala::create_connector(&app.db, other_spot, "c").await.unwrap();
    let outsider = user(&app, &c.id.to_string(), &secret, "+911199999999").await;
    let own = create_group(&app, &outsider).await;
    assert!(list(&app, &outsider, "").await.is_empty());
    assert!(list(&app, &outsider, &format!("?objectId={gid}")).await.is_empty());
    for (m, b) in [(Method::PUT, Some("{Active: false}")), (Method::DELETE, None)] {
        assert_kz_error(&call(&app, &outsider, m, &format!("/webhook/{id}"), b).await, 404, "ResourceNotFound");
    }
    // Its own spot's group only: our group is unknown there.
    let theirs =
        format!("{{objectId:'{gid}', objectType:'Group', eventTypes:['MemberAdded'], callBackUrl:'{}'}}", rx.url);
    assert_kz_error(&subscribe(&app, &outsider, &theirs).await, 404, "GroupNotFound");
    let mine =
        format!("{{objectId:'{own}', objectType:'Group', eventTypes:['MemberAdded'], callBackUrl:'{}'}}", rx.url);
    assert_eq!(subscribe(&app, &outsider, &mine).await.status, 200);
    assert_eq!(list(&app, &outsider, "").await.len(), 1);
    let ours = list(&app, &kz, "").await;
    assert_eq!(ours.len(), 1);
    assert_eq!(ours[0]["id"], id.as_str());
    assert_eq!(ours[0]["active"], true);
});

fn outbox_row(spot: openspot::domain::ids::SpotId, target: uuid::Uuid, payload: &Value) -> OutboxRow {
    let now = openspot::domain::now_ms();
    OutboxRow {
        spot_id: spot,
        id: openspot::domain::new_id(),
        event_id: openspot::domain::new_id(),
        channel: ChannelKind::Kaizala,
        target_id: Some(target),
        event_type: "MemberAdded".into(),
        payload: payload.to_string(),
        occurred_at: now,
        state: OutboxState::Pending,
        attempts: 0,
        failures: 0,
        next_attempt_at: now,
        claimed_by: None,
        claim_token: None,
        last_status: None,
        last_error: None,
        created_at: now,
        updated_at: now,
    }
}

both_with!(channel_posts_the_envelope, |c| { allow_private(c) }, |app| {
    let rx = Receiver::start(Mode::Echo).await;
    let kz = setup(&app, "+911199999999").await;
    let gid = create_group(&app, &kz).await;
    let body = format!(
        "{{objectId:'{gid}', objectType:'Group', eventTypes:['MemberAdded'], callBackUrl:'{}', callBackToken:'tok-1', callBackContext:'my context'}}",
        rx.url
    );
    let r = subscribe(&app, &kz, &body).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let sid: SubscriptionId = r.body["webhookId"].as_str().unwrap().parse().unwrap();

    // The §6.6 envelope of a member added by a Kaizala caller.
    let mut ms = Vec::new();
    for item in app.get("/v1/spotMembers").await.body["items"].as_array().unwrap() {
        let id = item["id"].as_str().unwrap().parse().unwrap();
        ms.push(openspot::domain::members::get_member(&app.db, app.spot_id, id).await.unwrap());
    }
    let caller = ms.iter().find(|m| m.mobile_number.as_deref() == Some("+911199999999")).unwrap();
    let added = ms.iter().find(|m| m.mobile_number.as_deref() == Some("+911199999998")).unwrap();
    let group: GroupId = gid.parse().unwrap();
    let event_id = openspot::domain::new_id();
    let env = envelope(
        group,
        KzEventType::MemberAdded,
        event_id,
        member_data(added, GroupRole::Member),
        Some("my context"),
        Some(caller),
    );
    assert_eq!(
        env,
        json!({
            "objectId": gid, "objectType": "Group", "eventType": "MemberAdded", "eventId": event_id.to_string(),
            "data": {"member": "+911199999998", "memberId": added.id.to_string(), "memberName": "",
                     "memberProfilePic": "", "type": "Member"},
            "context": "my context", "fromUser": "+911199999999", "fromUserId": caller.id.to_string(),
            "fromUserName": "", "fromUserProfilePic": "",
        })
    );
    // Without an actor (a `/v1` change, a rule, an import): empty sender, null id.
    let anon = envelope(group, KzEventType::TextMessageCreated, event_id, text_data("hi"), None, None);
    assert_eq!(anon["data"], json!({"text": "hi"}));
    assert_eq!((anon["fromUser"].clone(), anon["fromUserId"].clone()), (json!(""), Value::Null));
    assert_eq!(anon["context"], Value::Null);

    let channel = KzChannel::new(Outbound::new(true, Duration::from_secs(2)).unwrap());
    let row = outbox_row(app.spot_id, sid.uuid(), &env);
    match channel.attempt(&app.db, &row).await {
        Outcome::Delivered(a) => {
            assert_eq!(a.status, Some(200));
            assert_eq!(a.response.as_deref(), Some("ok"));
        }
        other => panic!("{other:?}"),
    }
    let posted = rx.seen().into_iter().filter(|s| s.method == "POST").collect::<Vec<_>>();
    assert_eq!(posted.len(), 1);
    assert_eq!(posted[0].header("kz-callback-token"), Some("tok-1"));
    assert_eq!(posted[0].header("content-type"), Some("application/json"));
    assert_eq!(posted[0].body, row.payload.as_bytes(), "the stored body, byte for byte");

    rx.set(Mode::Status(503));
    match channel.attempt(&app.db, &row).await {
        Outcome::Retry(a) => {
            assert_eq!(a.status, Some(503));
            assert_eq!(a.error.as_deref(), Some("HTTP 503"));
        }
        other => panic!("{other:?}"),
    }
    rx.set(Mode::Status(307));
    assert!(matches!(channel.attempt(&app.db, &row).await, Outcome::Retry(a) if a.status == Some(307)));
    rx.set(Mode::Status(410));
    assert!(matches!(channel.attempt(&app.db, &row).await, Outcome::Gone(a) if a.status == Some(410)));
    rx.set(Mode::Hang);
    match channel.attempt(&app.db, &row).await {
        Outcome::Retry(a) => {
            assert_eq!(a.status, None);
            assert!(a.error.as_deref().unwrap_or("").contains("timed out"), "{a:?}");
            assert!(!a.error.as_deref().unwrap_or("").contains("127.0.0.1"), "{a:?}");
        }
        other => panic!("{other:?}"),
    }

    // The dispatcher disables it once the schedule is exhausted; PUT Active resumes it.
    let mut tx = app.db.begin().await.unwrap();
    channel.disable(&mut tx, app.spot_id, sid.uuid(), "7 attempts failed in a row; last: HTTP 503").await.unwrap();
    tx.commit().await.unwrap();
    let w = list(&app, &kz, "").await[0].clone();
    assert_eq!(w["active"], false);
    assert_eq!(w["disabledReason"], "7 attempts failed in a row; last: HTTP 503");
    let r = call(&app, &kz, Method::PUT, &format!("/webhook/{sid}"), Some(r#"{"Active": "true"}"#)).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let w = list(&app, &kz, "").await[0].clone();
    assert_eq!((w["active"].clone(), w["disabledReason"].clone()), (json!(true), Value::Null));

    // Deleted since: the row is dropped.
    assert_eq!(call(&app, &kz, Method::DELETE, &format!("/webhook/{sid}"), None).await.status, 200);
    assert_eq!(channel.attempt(&app.db, &row).await, Outcome::TargetMissing);
    // A private target is refused when not allowed, at send time too.
    let strict = KzChannel::new(Outbound::new(false, Duration::from_secs(2)).unwrap());
    rx.set(Mode::Echo);
    let r = subscribe(&app, &kz, &body).await;
    let sid: SubscriptionId = r.body["webhookId"].as_str().unwrap().parse().unwrap();
    let before = rx.seen().len();
    match strict.attempt(&app.db, &outbox_row(app.spot_id, sid.uuid(), &env)).await {
        Outcome::Retry(a) => assert!(a.error.as_deref().unwrap_or("").contains("private"), "{a:?}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(rx.seen().len(), before);
});

/// Loopback callbacks allowed, and the server's own dispatcher on a short schedule.
fn fast(c: &mut openspot::Config) {
    c.allow_private_targets = true;
    c.outbox.retry_schedule = vec![Duration::from_millis(50), Duration::from_millis(100)];
    c.outbox.attempt_timeout = Duration::from_secs(1);
    c.outbox.lease = Duration::from_secs(3);
}

/// The receiver's POSTs once there are `n` (bounded wait).
async fn posts(rx: &Receiver, n: usize) -> Vec<Seen> {
    for _ in 0..250 {
        let p: Vec<Seen> = rx.seen().into_iter().filter(|s| s.method == "POST").collect();
        if p.len() >= n {
            return p;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    rx.seen().into_iter().filter(|s| s.method == "POST").collect()
}

async fn kz_rows(app: &TestApp) -> Vec<OutboxRow> {
    let f = OutboxFilter { spot_id: Some(app.spot_id), channel: Some(ChannelKind::Kaizala), ..Default::default() };
    let mut conn = app.db.conn().await.unwrap();
    openspot::store::outbox::list(conn.ex(), &f, 100).await.unwrap()
}

both_with!(events_reach_the_subscriber, |c| { fast(c) }, |app| {
    let rx = Receiver::start(Mode::Echo).await;
    let kz = setup(&app, "+911199999999").await;
    let gid = create_group(&app, &kz).await;
    // Nothing is queued while nobody listens.
    let r = call(&app, &kz, Method::POST, &format!("/groups/{gid}/messages"), Some("{message:'before'}")).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(kz_rows(&app).await.is_empty());

    let body = format!(
        "{{objectId:'{gid}@1', objectType:'Group', eventTypes:['TextMessageCreated','MemberAdded'], \
         callBackUrl:'{}', callBackToken:'tok-9', callBackContext:'ctx-9'}}",
        rx.url
    );
    let r = subscribe(&app, &kz, &body).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let sid = r.body["webhookId"].as_str().unwrap().to_string();

    // A message through Kaizala: TextMessageCreated from the caller.
    let r = call(&app, &kz, Method::POST, &format!("/groups/{gid}/messages"), Some("{message:'hello'}")).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let got = posts(&rx, 1).await;
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].header("kz-callback-token"), Some("tok-9"));
    let env: Value = serde_json::from_slice(&got[0].body).unwrap();
    let me = app.get("/v1/spotMembers").await;
    let me_id = me.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["mobileNumber"] == "+911199999999")
        .map(|m| m["id"].as_str().unwrap().to_string())
        .unwrap();
    assert_eq!(env["objectId"], gid.as_str());
    assert_eq!(env["objectType"], "Group");
    assert_eq!(env["eventType"], "TextMessageCreated");
    assert_eq!(env["data"], json!({"text": "hello"}));
    assert_eq!(env["context"], "ctx-9");
    assert_eq!(env["fromUser"], "+911199999999");
    assert_eq!(env["fromUserId"], me_id.as_str());
    let event_id = env["eventId"].as_str().unwrap().to_string();
    let rows = kz_rows(&app).await;
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].event_id.to_string(), event_id);
    assert_eq!(rows[0].event_type, "TextMessageCreated");

    // MemberAdded as the membership paths queue it (inside their transaction, the
    // Kaizala caller as actor).
    let added: openspot::domain::ids::MemberId =
        openspot::domain::members::invite_member(&app.db, app.spot_id, "ann@x.io", false).await.unwrap().0.id;
    let group: GroupId = gid.parse().unwrap();
    let mut tx = app.db.begin().await.unwrap();
    tx.set_actor(me_id.parse().unwrap());
    let n = openspot::domain::kaizala::webhooks::queue_members(
        &mut tx,
        app.spot_id,
        group,
        KzEventType::MemberAdded,
        &[(added, GroupRole::Member)],
    )
    .await
    .unwrap();
    assert_eq!(n, 1);
    // Not subscribed to MemberRemoved: nothing.
    let none = openspot::domain::kaizala::webhooks::queue_members(
        &mut tx,
        app.spot_id,
        group,
        KzEventType::MemberRemoved,
        &[(added, GroupRole::Member)],
    )
    .await
    .unwrap();
    assert_eq!(none, 0);
    tx.commit().await.unwrap();
    let got = posts(&rx, 2).await;
    let env: Value = serde_json::from_slice(&got[1].body).unwrap();
    assert_eq!(env["eventType"], "MemberAdded");
    assert_eq!(env["data"]["memberId"], added.to_string());
    assert_eq!(env["data"]["member"], "", "an email-only member has no number");
    assert_eq!(env["data"]["type"], "Member");
    assert_eq!(env["fromUserId"], me_id.as_str());

    // A failing receiver: 1 + 2 attempts with one event id, then the subscription is
    // inactive and says why.
    rx.set(Mode::Status(500));
    let r = call(&app, &kz, Method::POST, &format!("/groups/{gid}/messages"), Some("{message:'lost?'}")).await;
    assert_eq!(r.status, 200);
    let got = posts(&rx, 5).await;
    assert_eq!(got.len(), 5);
    let ids: Vec<String> = got[2..]
        .iter()
        .map(|s| serde_json::from_slice::<Value>(&s.body).unwrap()["eventId"].as_str().unwrap().to_string())
        .collect();
    assert!(ids.iter().all(|i| *i == ids[0]), "{ids:?}");
    let mut w = Value::Null;
    for _ in 0..100 {
        w = list(&app, &kz, "").await[0].clone();
        if w["active"] == false {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(w["active"], false, "{w}");
    assert!(w["disabledReason"].as_str().unwrap_or("").contains("500"), "{w}");

    // While inactive, events are kept (Paused) and not sent.
    let r = call(&app, &kz, Method::POST, &format!("/groups/{gid}/messages"), Some("{message:'held'}")).await;
    assert_eq!(r.status, 200);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(posts(&rx, 5).await.len(), 5);
    assert!(kz_rows(&app).await.iter().any(|r| r.state == OutboxState::Paused));
    // `Active: "true"` resumes: the held event arrives.
    rx.set(Mode::Echo);
    let r = call(&app, &kz, Method::PUT, &format!("/webhook/{sid}"), Some(r#"{"Active": "true"}"#)).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let got = posts(&rx, 6).await;
    assert_eq!(got.len(), 6);
    let env: Value = serde_json::from_slice(&got[5].body).unwrap();
    assert_eq!(env["data"]["text"], "held");
    assert_eq!(list(&app, &kz, "").await[0]["active"], true);

    // Deleting the subscription drops its rows.
    assert_eq!(call(&app, &kz, Method::DELETE, &format!("/webhook/{sid}"), None).await.status, 200);
    assert!(kz_rows(&app).await.is_empty());
    let r = call(&app, &kz, Method::POST, &format!("/groups/{gid}/messages"), Some("{message:'after'}")).await;
    assert_eq!(r.status, 200);
    assert!(kz_rows(&app).await.is_empty());
});

// Membership changes reach the group's Kaizala subscribers from either dialect: a
// `/v1` bulk add is a MemberAdded (no Kaizala actor), a Kaizala removal a MemberRemoved
// (from the caller); a group without a subscription queues nothing.
both_with!(membership_changes_from_both_dialects_reach_the_subscriber, |c| { fast(c) }, |app| {
    let rx = Receiver::start(Mode::Echo).await;
    let kz = setup(&app, "+911199999999").await;
    let gid = create_group(&app, &kz).await;
    let body = format!(
        "{{objectId:'{gid}', objectType:'Group', eventTypes:['MemberAdded','MemberRemoved'], callBackUrl:'{}'}}",
        rx.url
    );
    let r = subscribe(&app, &kz, &body).await;
    assert_eq!(r.status, 200, "{}", r.text);

    // Through /v1: two members added to the group.
    let a = app.invite("a@x.io").await;
    let b = app.invite("b@x.io").await;
    let r = app.post(&format!("/v1/groups/{gid}/spotMembers~bulkAdd"), json!({"spotMemberIds": [a, b]})).await;
    assert!(r.status < 300, "{}", r.text);
    let got = posts(&rx, 2).await;
    assert_eq!(got.len(), 2);
    let mut added: Vec<String> = got
        .iter()
        .map(|s| serde_json::from_slice::<Value>(&s.body).unwrap())
        .map(|env| {
            assert_eq!(env["eventType"], "MemberAdded");
            assert_eq!(env["objectId"], gid.as_str());
            assert_eq!(env["fromUserId"], Value::Null, "a /v1 change has no Kaizala actor");
            env["data"]["memberId"].as_str().unwrap().to_string()
        })
        .collect();
    added.sort();
    let mut expected = vec![a.clone(), b.clone()];
    expected.sort();
    assert_eq!(added, expected);

    // Through Kaizala: the group's original member is removed by its admin.
    let ms = app.get("/v1/spotMembers?limit=100").await;
    let original = ms.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["mobileNumber"] == "+911199999998")
        .map(|m| m["id"].as_str().unwrap().to_string())
        .unwrap();
    let r = call(&app, &kz, Method::DELETE, &format!("/groups/{gid}/members/{original}"), None).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let got = posts(&rx, 3).await;
    assert_eq!(got.len(), 3);
    let env: Value = serde_json::from_slice(&got[2].body).unwrap();
    assert_eq!(env["eventType"], "MemberRemoved");
    assert_eq!(env["data"]["member"], "+911199999998");
    assert_eq!(env["fromUser"], "+911199999999");

    // Another group, without a subscription: nothing is queued for it.
    let other = app.post("/v1/groups", json!({"name": "Quiet"})).await.body["id"].as_str().unwrap().to_string();
    let before = kz_rows(&app).await.len();
    let r = app.post(&format!("/v1/groups/{other}/spotMembers~bulkAdd"), json!({"spotMemberIds": [a]})).await;
    assert!(r.status < 300, "{}", r.text);
    assert_eq!(kz_rows(&app).await.len(), before);
});

//! Kaizala webhook subscriptions (`kaizala-api.md` §6): a callback URL receiving the
//! events of one object (a group of the caller's spot; `Action` and `ActionPackage`
//! objects are stored but nothing fires for them).
//!
//! Registering, or changing the callback URL, first proves the receiver wants the
//! events: `GET <callBackUrl>?validationToken=<32 hex>` must answer 2xx with the token
//! as its body within the validation timeout (5 s), else nothing is stored. Deliveries
//! go through the outbox: [`envelope`] and [`member_data`] build the §6 body when an
//! event is emitted, and [`KzChannel`] POSTs it with the `kz-callback-token` header,
//! retried on the outbox schedule; once the schedule is exhausted (or on `410 Gone`)
//! the subscription turns inactive, and `PUT … {"Active": true}` resumes it.
//!
//! Every outbound call goes through [`Outbound`]: http(s) only, redirects are answers
//! (never followed), no proxy, and private, loopback and link-local targets refused
//! (on the addresses actually connected to) unless the operator allows them. Error
//! texts never contain the callback URL.

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use uuid::Uuid;

use super::groups::require_admin;
use super::KzCaller;
use crate::domain::events;
use crate::domain::ids::{GroupId, MemberId, SpotId, SubscriptionId};
use crate::domain::members::{self, Member};
use crate::domain::outbox::{Attempted, BoxFuture, Channel, Outcome};
use crate::domain::vocab::{ChannelKind, GroupRole, KzEventType, KzObjectType, MemberRole, OutboxState};
use crate::domain::{new_id, now_ms};
use crate::error::{Entity, Error, Result};
use crate::outbound::Outbound;
use crate::store::kz_subscriptions::{self as rows, SubscriptionRow};
use crate::store::outbox::{self, NewOutboxRow, OutboxRow};
use crate::store::sql::IN_LIST_MAX;
use crate::store::{self as st, Db, Tx};

/// How long the callback has to echo `validationToken` (`kaizala-api.md` §6.1).
pub const VALIDATION_TIMEOUT: Duration = Duration::from_secs(5);
/// Subscriptions a spot may hold.
pub const MAX_SUBSCRIPTIONS_PER_SPOT: i64 = 100;
/// Default lifetime of a subscription: 730 days, as the real service answered.
pub const DEFAULT_VALIDITY_MS: i64 = 730 * 86_400_000;
pub const MAX_URL_CHARS: usize = 2048;
/// Longest token, context or opaque object id kept.
pub const MAX_FIELD_CHARS: usize = 1024;
/// The event types openspot produces; the others are accepted and stored.
pub const FIRING: &[KzEventType] =
    &[KzEventType::MemberAdded, KzEventType::MemberRemoved, KzEventType::TextMessageCreated];
/// The reason stored when a subscription is turned off through `PUT`.
pub const DISABLED_THROUGH_API: &str = "Disabled through the API";

/// A subscription as the domain sees it.
#[derive(Clone, Debug, PartialEq)]
pub struct Subscription {
    pub spot_id: SpotId,
    pub id: SubscriptionId,
    pub connector_id: Option<crate::domain::ids::ConnectorId>,
    /// A group id (hyphenated, no `@n` suffix) for `Group`; opaque otherwise.
    pub object_id: String,
    pub object_type: KzObjectType,
    pub event_types: Vec<KzEventType>,
    pub callback_url: String,
    pub callback_token: Option<String>,
    pub callback_context: Option<String>,
    /// Epoch ms.
    pub validity: i64,
    pub active: bool,
    pub disabled_reason: Option<String>,
    /// Creation time, epoch ms (`ts` on the wire).
    pub created_at: i64,
    pub updated_at: i64,
}

impl TryFrom<SubscriptionRow> for Subscription {
    type Error = Error;

    fn try_from(r: SubscriptionRow) -> Result<Self> {
        let words: Vec<String> = serde_json::from_str(&r.event_types)
            .map_err(|e| anyhow::anyhow!("kz_subscriptions.event_types of {} is not a JSON array: {e}", r.id))?;
        let event_types = words
            .iter()
            .map(|w| w.parse::<KzEventType>())
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| anyhow::anyhow!("kz_subscriptions.event_types of {}: {e}", r.id))?;
        Ok(Subscription {
            spot_id: r.spot_id,
            id: r.id,
            connector_id: r.connector_id,
            object_id: r.object_id,
            object_type: r.object_type,
            event_types,
            callback_url: r.callback_url,
            callback_token: r.callback_token,
            callback_context: r.callback_context,
            validity: r.validity,
            active: r.active,
            disabled_reason: r.disabled_reason,
            created_at: r.created_at,
            updated_at: r.updated_at,
        })
    }
}

impl From<&Subscription> for SubscriptionRow {
    fn from(s: &Subscription) -> Self {
        let words: Vec<&str> = s.event_types.iter().map(|t| t.as_str()).collect();
        SubscriptionRow {
            spot_id: s.spot_id,
            id: s.id,
            connector_id: s.connector_id,
            object_id: s.object_id.clone(),
            object_type: s.object_type,
            event_types: Value::from(words).to_string(),
            callback_url: s.callback_url.clone(),
            callback_token: s.callback_token.clone(),
            callback_context: s.callback_context.clone(),
            validity: s.validity,
            active: s.active,
            disabled_reason: s.disabled_reason.clone(),
            created_at: s.created_at,
            updated_at: s.updated_at,
        }
    }
}

impl Subscription {
    /// Whether this subscription receives `event_type` now.
    pub fn wants(&self, event_type: KzEventType, now: i64) -> bool {
        self.validity > now && self.event_types.contains(&event_type)
    }
}

/// The fields of a subscription as a request gives them (all optional: `POST` checks
/// that the required ones are there, `PUT` changes those given).
#[derive(Clone, Debug, Default)]
pub struct SubscriptionInput {
    pub object_id: Option<String>,
    pub object_type: Option<String>,
    pub event_types: Option<Vec<String>>,
    pub callback_url: Option<String>,
    pub callback_token: Option<String>,
    pub callback_context: Option<String>,
    /// Epoch ms, or seconds when below 10^12.
    pub validity: Option<i64>,
    pub active: Option<bool>,
}

/// A word of `T` in any case, or a 400 naming `field` and the word.
fn word<T: Copy + std::fmt::Display>(all: &[T], field: &str, raw: &str) -> Result<T> {
    let raw = raw.trim();
    all.iter().copied().find(|w| w.to_string().eq_ignore_ascii_case(raw)).ok_or_else(|| {
        let names: Vec<String> = all.iter().map(T::to_string).collect();
        Error::invalid(field, format!("'{raw}' is not one of {}", names.join(", ")))
    })
}

pub fn parse_object_type(raw: &str) -> Result<KzObjectType> {
    word(KzObjectType::ALL, "objectType", raw)
}

fn parse_event_types(raw: &[String]) -> Result<Vec<KzEventType>> {
    if raw.is_empty() {
        return Err(Error::invalid("eventTypes", "must list at least one event type"));
    }
    let mut out = Vec::new();
    for (i, w) in raw.iter().enumerate() {
        let t = word(KzEventType::ALL, &format!("eventTypes[{i}]"), w)?;
        if !out.contains(&t) {
            out.push(t);
        }
    }
    Ok(out)
}

/// A group id as clients write it: a UUID, optionally with an `@<n>` suffix.
pub fn parse_group_object(raw: &str) -> Result<GroupId> {
    let base = raw.trim().split('@').next().unwrap_or_default();
    base.parse().map_err(|_| Error::NotFound(Entity::Group))
}

/// The stored form of an object id: a group's canonical id, or the trimmed text.
fn object_id_of(object_type: KzObjectType, raw: &str) -> Result<String> {
    match object_type {
        KzObjectType::Group => Ok(parse_group_object(raw)?.to_string()),
        KzObjectType::Action | KzObjectType::ActionPackage => {
            let id = raw.trim();
            if id.is_empty() {
                return Err(Error::invalid("objectId", "must not be empty"));
            }
            bounded("objectId", id).map(str::to_string)
        }
    }
}

fn bounded<'a>(field: &str, v: &'a str) -> Result<&'a str> {
    if v.chars().count() > MAX_FIELD_CHARS {
        return Err(Error::invalid(field, format!("at most {MAX_FIELD_CHARS} characters")));
    }
    Ok(v)
}

/// Epoch ms from ms or seconds (below 10^12); must lie in the future.
fn validity_of(raw: i64, now: i64) -> Result<i64> {
    let ms = if raw.abs() < 1_000_000_000_000 { raw.saturating_mul(1000) } else { raw };
    if ms <= now {
        return Err(Error::invalid("validity", "must lie in the future (epoch milliseconds or seconds)"));
    }
    Ok(ms)
}

/// An optional text field: empty means none.
fn opt_text(field: &str, v: Option<String>) -> Result<Option<String>> {
    match v {
        Some(s) if !s.is_empty() => Ok(Some(bounded(field, &s)?.to_string())),
        _ => Ok(None),
    }
}

/// Whether `caller` may see and change subscriptions to the object: a group's Admins
/// (a spot Admin is Admin everywhere); for other objects the spot's Admins and the
/// connector that created it.
async fn authorize(tx: &mut Tx, caller: &KzCaller, sub: &Subscription) -> Result<()> {
    match sub.object_type {
        KzObjectType::Group => {
            let group_id = parse_group_object(&sub.object_id)?;
            match require_admin(tx, caller, group_id).await {
                // A subscription outliving its group: the spot's Admins may remove it.
                Err(Error::NotFound(Entity::Group)) => require_spot_admin(tx, caller).await,
                other => other.map(|_| ()),
            }
        }
        KzObjectType::Action | KzObjectType::ActionPackage => {
            if sub.connector_id == Some(caller.connector_id) {
                return Ok(());
            }
            require_spot_admin(tx, caller).await
        }
    }
}

async fn require_spot_admin(tx: &mut Tx, caller: &KzCaller) -> Result<()> {
    let me = members::get_in(tx.ex(), caller.spot_id, caller.member_id).await?;
    if me.role != MemberRole::Admin {
        return Err(Error::Forbidden("Only an Admin can manage this subscription".into()));
    }
    Ok(())
}

/// Whether a subscription is visible to `caller` (see [`authorize`]), without failing.
async fn visible(tx: &mut Tx, caller: &KzCaller, sub: &Subscription) -> Result<bool> {
    match authorize(tx, caller, sub).await {
        Ok(()) => Ok(true),
        Err(Error::Forbidden(_)) | Err(Error::NotFound(_)) => Ok(false),
        Err(e) => Err(e),
    }
}

/// Subscribes `input.callback_url` to events of an object, after the validation
/// handshake. The caller must be an Admin of the group (`Group` objects).
pub async fn create(
    db: &Db,
    outbound: &Outbound,
    validation_timeout: Duration,
    caller: &KzCaller,
    input: SubscriptionInput,
) -> Result<Subscription> {
    let now = now_ms();
    let object_type = parse_object_type(input.object_type.as_deref().unwrap_or_default())?;
    let object_id = object_id_of(
        object_type,
        input.object_id.as_deref().ok_or_else(|| Error::invalid("objectId", "is required"))?,
    )?;
    let event_types = parse_event_types(input.event_types.as_deref().unwrap_or_default())?;
    let callback_url = input.callback_url.as_deref().map(str::trim).unwrap_or_default().to_string();
    if callback_url.is_empty() {
        return Err(Error::invalid("callBackUrl", "is required"));
    }
    check_url(outbound, "callBackUrl", &callback_url).await?;
    let validity = match input.validity {
        Some(v) => validity_of(v, now)?,
        None => now + DEFAULT_VALIDITY_MS,
    };
    let mut sub = Subscription {
        spot_id: caller.spot_id,
        id: SubscriptionId(new_id()),
        connector_id: Some(caller.connector_id),
        object_id,
        object_type,
        event_types,
        callback_url,
        callback_token: opt_text("callBackToken", input.callback_token)?,
        callback_context: opt_text("callBackContext", input.callback_context)?,
        validity,
        active: input.active.unwrap_or(true),
        disabled_reason: None,
        created_at: now,
        updated_at: now,
    };
    if !sub.active {
        sub.disabled_reason = Some(DISABLED_THROUGH_API.into());
    }
    // Permission and room first, so that a refused caller makes no outbound call.
    let mut tx = db.begin_read().await?;
    check_new(&mut tx, caller, &sub).await?;
    tx.commit().await?;
    validate_callback(outbound, &sub.callback_url, validation_timeout).await?;
    let mut tx = db.begin().await?;
    check_new(&mut tx, caller, &sub).await?;
    rows::insert(tx.ex(), &SubscriptionRow::from(&sub)).await?;
    events::targets_changing(&mut tx, caller.spot_id).await?;
    tx.commit().await?;
    events::invalidate(caller.spot_id);
    Ok(sub)
}

async fn check_new(tx: &mut Tx, caller: &KzCaller, sub: &Subscription) -> Result<()> {
    if sub.object_type == KzObjectType::Group {
        require_admin(tx, caller, parse_group_object(&sub.object_id)?).await?;
    }
    if rows::count(tx.ex(), caller.spot_id).await? >= MAX_SUBSCRIPTIONS_PER_SPOT {
        return Err(Error::BadRequest(format!(
            "a spot has at most {MAX_SUBSCRIPTIONS_PER_SPOT} webhook subscriptions"
        )));
    }
    Ok(())
}

/// The spot's subscriptions the caller may manage, optionally of one object type
/// and object id (a group id may carry its `@n` suffix).
pub async fn list(
    db: &Db,
    caller: &KzCaller,
    object_type: Option<&str>,
    object_id: Option<&str>,
) -> Result<Vec<Subscription>> {
    let object_type = object_type.map(str::trim).filter(|t| !t.is_empty()).map(parse_object_type).transpose()?;
    let object_id = object_id.map(str::trim).filter(|t| !t.is_empty()).map(|raw| match object_type {
        Some(KzObjectType::Action | KzObjectType::ActionPackage) => raw.to_string(),
        // A group id in any accepted form, else the text as given.
        _ => parse_group_object(raw).map(|g| g.to_string()).unwrap_or_else(|_| raw.to_string()),
    });
    let mut tx = db.begin_read().await?;
    let found = rows::list(tx.ex(), caller.spot_id, object_type, object_id.as_deref()).await?;
    let mut out = Vec::with_capacity(found.len());
    for r in found {
        let sub = Subscription::try_from(r)?;
        if visible(&mut tx, caller, &sub).await? {
            out.push(sub);
        }
    }
    tx.commit().await?;
    Ok(out)
}

async fn load(tx: &mut Tx, spot_id: SpotId, id: SubscriptionId) -> Result<Subscription> {
    rows::get(tx.ex(), spot_id, id).await?.ok_or(Error::NotFound(Entity::Webhook)).and_then(Subscription::try_from)
}

/// The subscription `id` of the caller's spot, if the caller may manage it.
pub async fn get(db: &Db, caller: &KzCaller, id: SubscriptionId) -> Result<Subscription> {
    let mut tx = db.begin_read().await?;
    let sub = load(&mut tx, caller.spot_id, id).await?;
    authorize(&mut tx, caller, &sub).await?;
    tx.commit().await?;
    Ok(sub)
}

/// Applies the fields of `input` to `sub` (pure: checked again in the write).
fn apply(sub: &mut Subscription, input: &SubscriptionInput, now: i64) -> Result<()> {
    if let Some(t) = &input.object_type {
        sub.object_type = parse_object_type(t)?;
    }
    if let Some(o) = &input.object_id {
        sub.object_id = object_id_of(sub.object_type, o)?;
    } else if input.object_type.is_some() {
        // The kept id must suit the new type.
        sub.object_id = object_id_of(sub.object_type, &sub.object_id)?;
    }
    if let Some(e) = &input.event_types {
        sub.event_types = parse_event_types(e)?;
    }
    if let Some(u) = &input.callback_url {
        let u = u.trim();
        if u.is_empty() {
            return Err(Error::invalid("callBackUrl", "must not be empty"));
        }
        sub.callback_url = u.to_string();
    }
    if input.callback_token.is_some() {
        sub.callback_token = opt_text("callBackToken", input.callback_token.clone())?;
    }
    if input.callback_context.is_some() {
        sub.callback_context = opt_text("callBackContext", input.callback_context.clone())?;
    }
    if let Some(v) = input.validity {
        sub.validity = validity_of(v, now)?;
    }
    match input.active {
        Some(true) => {
            sub.active = true;
            sub.disabled_reason = None;
        }
        Some(false) if sub.active => {
            sub.active = false;
            sub.disabled_reason = Some(DISABLED_THROUGH_API.into());
        }
        _ => {}
    }
    sub.updated_at = now;
    Ok(())
}

/// Changes the fields given. A new callback URL is validated again (handshake);
/// `Active: true` clears the reason it was turned off.
pub async fn update(
    db: &Db,
    outbound: &Outbound,
    validation_timeout: Duration,
    caller: &KzCaller,
    id: SubscriptionId,
    input: SubscriptionInput,
) -> Result<Subscription> {
    let now = now_ms();
    let mut tx = db.begin_read().await?;
    let current = load(&mut tx, caller.spot_id, id).await?;
    authorize(&mut tx, caller, &current).await?;
    let mut preview = current.clone();
    apply(&mut preview, &input, now)?;
    authorize(&mut tx, caller, &preview).await?;
    tx.commit().await?;
    if preview.callback_url != current.callback_url {
        check_url(outbound, "callBackUrl", &preview.callback_url).await?;
        validate_callback(outbound, &preview.callback_url, validation_timeout).await?;
    }
    let mut tx = db.begin().await?;
    let mut sub = load(&mut tx, caller.spot_id, id).await?;
    apply(&mut sub, &input, now)?;
    authorize(&mut tx, caller, &sub).await?;
    if sub.callback_url != preview.callback_url {
        // Changed by someone else meanwhile: this request validated another URL.
        return Err(Error::Conflict("the subscription changed meanwhile; send the request again".into()));
    }
    rows::update(tx.ex(), &SubscriptionRow::from(&sub)).await?;
    let target = sub.id.uuid();
    // Turned off: what waits for it is held (and written Paused from now on).
    if input.active == Some(false) {
        outbox::pause_target(tx.ex(), caller.spot_id, target, now).await?;
    }
    // Turned on: what was held (after a 410, an exhausted schedule or a PUT) is due now.
    if input.active == Some(true) && outbox::resume_target(tx.ex(), caller.spot_id, target, now).await? > 0 {
        tx.note_outbox_write();
    }
    events::targets_changing(&mut tx, caller.spot_id).await?;
    tx.commit().await?;
    events::invalidate(caller.spot_id);
    Ok(sub)
}

/// Deletes a subscription with its queued rows and delivery log.
pub async fn delete(db: &Db, caller: &KzCaller, id: SubscriptionId) -> Result<()> {
    let mut tx = db.begin().await?;
    let sub = load(&mut tx, caller.spot_id, id).await?;
    authorize(&mut tx, caller, &sub).await?;
    rows::delete(tx.ex(), caller.spot_id, id).await?;
    outbox::delete_target(tx.ex(), caller.spot_id, id.uuid()).await?;
    events::targets_changing(&mut tx, caller.spot_id).await?;
    tx.commit().await?;
    events::invalidate(caller.spot_id);
    Ok(())
}

/// The subscriptions of `group_id` that receive `event_type` now (active or not:
/// an inactive one gets its rows Paused, delivered once it is resumed).
async fn listeners(
    tx: &mut Tx,
    spot_id: SpotId,
    group_id: GroupId,
    event_type: KzEventType,
) -> Result<Vec<Subscription>> {
    let now = now_ms();
    let found = rows::list(tx.ex(), spot_id, Some(KzObjectType::Group), Some(&group_id.to_string())).await?;
    let mut out = Vec::new();
    for r in found {
        let sub = Subscription::try_from(r)?;
        if sub.wants(event_type, now) {
            out.push(sub);
        }
    }
    Ok(out)
}

/// Inside the transaction of a change to `group_id`: one outbox row per (event,
/// subscription of the group that wants `event_type`), one event per item of `data`
/// (the same `eventId` for every subscription). The sender (`fromUser*`) is
/// [`Tx::actor`]. Returns the rows written.
pub async fn queue(
    tx: &mut Tx,
    spot_id: SpotId,
    group_id: GroupId,
    event_type: KzEventType,
    data: &[Value],
) -> Result<usize> {
    if data.is_empty() {
        return Ok(0);
    }
    let subs = listeners(tx, spot_id, group_id, event_type).await?;
    write_rows(tx, spot_id, group_id, event_type, &subs, data).await
}

/// [`queue`] for `MemberAdded` / `MemberRemoved`: loads the members (through `tx`, so
/// they show the change) and builds their [`member_data`].
pub async fn queue_members(
    tx: &mut Tx,
    spot_id: SpotId,
    group_id: GroupId,
    event_type: KzEventType,
    members: &[(MemberId, GroupRole)],
) -> Result<usize> {
    if members.is_empty() {
        return Ok(0);
    }
    let subs = listeners(tx, spot_id, group_id, event_type).await?;
    if subs.is_empty() {
        return Ok(0);
    }
    let mut data = Vec::with_capacity(members.len());
    for chunk in members.chunks(IN_LIST_MAX) {
        let ids: Vec<MemberId> = chunk.iter().map(|(id, _)| *id).collect();
        let found: Vec<Member> =
            st::members::get_many(tx.ex(), spot_id, &ids).await?.into_iter().map(Member::from).collect();
        for (id, role) in chunk {
            if let Some(m) = found.iter().find(|m| m.id == *id) {
                data.push(member_data(m, *role));
            }
        }
    }
    write_rows(tx, spot_id, group_id, event_type, &subs, &data).await
}

async fn write_rows(
    tx: &mut Tx,
    spot_id: SpotId,
    group_id: GroupId,
    event_type: KzEventType,
    subs: &[Subscription],
    data: &[Value],
) -> Result<usize> {
    if subs.is_empty() || data.is_empty() {
        return Ok(0);
    }
    let actor = match tx.actor() {
        Some(id) => st::members::get(tx.ex(), spot_id, id).await?.map(Member::from),
        None => None,
    };
    let now = now_ms();
    let mut out = Vec::with_capacity(data.len() * subs.len());
    for d in data {
        let event_id = new_id();
        for sub in subs {
            let body =
                envelope(group_id, event_type, event_id, d.clone(), sub.callback_context.as_deref(), actor.as_ref());
            out.push(NewOutboxRow {
                id: new_id(),
                event_id,
                channel: ChannelKind::Kaizala,
                target_id: Some(sub.id.uuid()),
                event_type: event_type.as_str().to_string(),
                payload: body.to_string(),
                occurred_at: now,
                state: if sub.active { OutboxState::Pending } else { OutboxState::Paused },
                last_error: None,
            });
        }
    }
    outbox::insert_many(tx.ex(), spot_id, &out, now).await?;
    tx.note_outbox_write();
    Ok(out.len())
}

/// The §6.6 envelope of one event for one subscription. `actor` is the member who
/// caused it (the Kaizala caller); without one (a `/v1` call, a smart-group rule, an
/// import) the `fromUser*` fields are empty and `fromUserId` is null.
pub fn envelope(
    group_id: GroupId,
    event_type: KzEventType,
    event_id: Uuid,
    data: Value,
    context: Option<&str>,
    actor: Option<&Member>,
) -> Value {
    json!({
        "objectId": group_id.to_string(),
        "objectType": KzObjectType::Group.as_str(),
        "eventType": event_type.as_str(),
        "eventId": event_id.to_string(),
        "data": data,
        "context": context,
        "fromUser": actor.and_then(|m| m.mobile_number.clone()).unwrap_or_default(),
        "fromUserId": actor.map(|m| m.id.to_string()),
        "fromUserName": actor.map(display_name).unwrap_or_default(),
        "fromUserProfilePic": actor.and_then(|m| m.avatar_url.clone()).unwrap_or_default(),
    })
}

/// `data` of `MemberAdded` / `MemberRemoved`: the member's number, name, picture and
/// group role (`type`), plus its id (a member of the other dialect may have no number).
pub fn member_data(m: &Member, role: GroupRole) -> Value {
    json!({
        "member": m.mobile_number.clone().unwrap_or_default(),
        "memberId": m.id.to_string(),
        "memberName": display_name(m),
        "memberProfilePic": m.avatar_url.clone().unwrap_or_default(),
        "type": role.as_str(),
    })
}

/// `data` of `TextMessageCreated`.
pub fn text_data(text: &str) -> Value {
    json!({ "text": text })
}

fn display_name(m: &Member) -> String {
    format!("{} {}", m.firstname.trim(), m.lastname.trim()).trim().to_string()
}

/// Refuses a URL that is not http(s), too long, or (unless allowed) resolves to a
/// private address: a 400 naming `field`.
async fn check_url(outbound: &Outbound, field: &str, url: &str) -> Result<()> {
    if url.chars().count() > MAX_URL_CHARS {
        return Err(Error::invalid(field, format!("at most {MAX_URL_CHARS} characters")));
    }
    outbound.check_target(url).await.map(|_| ()).map_err(|e| Error::invalid(field, format!("{e:#}")))
}

fn seconds(d: Duration) -> String {
    if d.as_millis() % 1000 == 0 {
        format!("{} s", d.as_secs())
    } else {
        format!("{} ms", d.as_millis())
    }
}

/// The validation handshake: `GET <url>[?&]validationToken=<32 hex>` must answer 2xx
/// with the token (surrounding whitespace and quotes ignored) within `timeout`.
pub async fn validate_callback(outbound: &Outbound, url: &str, timeout: Duration) -> Result<()> {
    let token = format!("{:032x}", rand::random::<u128>());
    let refused = |why: String| {
        Error::BadRequest(format!(
            "Webhook validation failed: the callback did not echo validationToken within {} ({why})",
            seconds(timeout)
        ))
    };
    let mut target = reqwest::Url::parse(url).map_err(|_| Error::invalid("callBackUrl", "invalid URL"))?;
    target.query_pairs_mut().append_pair("validationToken", &token);
    // The client's timeout covers the body too; this bounds everything else.
    match tokio::time::timeout(timeout, outbound.get_text(target.as_str(), timeout)).await {
        Ok(Ok(r)) if (200..300).contains(&r.status) => {
            let echoed = r.body_prefix.trim().trim_matches('"').trim();
            if echoed == token {
                Ok(())
            } else {
                Err(refused("it answered another body".into()))
            }
        }
        Ok(Ok(r)) => Err(refused(format!("it answered HTTP {}", r.status))),
        Ok(Err(e)) => Err(refused(format!("{e:#}"))),
        Err(_) => Err(refused("timed out".into())),
    }
}

/// Delivers Kaizala outbox rows: POSTs the stored envelope to the subscription's
/// callback with `kz-callback-token` (when it has one). 2xx delivered, 410 gone (the
/// subscription turns inactive at once), anything else retried on the outbox
/// schedule, after which the dispatcher turns it inactive through [`Channel::disable`].
#[derive(Clone, Debug)]
pub struct KzChannel {
    outbound: Outbound,
}

impl KzChannel {
    /// A channel posting through `outbound` (whose timeout bounds an attempt).
    pub fn new(outbound: Outbound) -> Self {
        KzChannel { outbound }
    }

    async fn deliver(&self, db: &Db, row: &OutboxRow) -> Outcome {
        let Some(target) = row.target_id else {
            return Outcome::TargetMissing;
        };
        let started = Instant::now();
        let elapsed = |started: Instant| i64::try_from(started.elapsed().as_millis()).unwrap_or(i64::MAX);
        let sub = match subscription_of(db, row.spot_id, SubscriptionId(target)).await {
            Ok(Some(s)) => s,
            Ok(None) => return Outcome::TargetMissing,
            Err(e) => {
                return Outcome::Retry(Attempted {
                    duration_ms: elapsed(started),
                    error: Some(format!("cannot read the subscription: {e}")),
                    ..Attempted::default()
                })
            }
        };
        let mut headers = vec![("content-type", "application/json".to_string())];
        if let Some(t) = sub.callback_token.filter(|t| !t.is_empty()) {
            headers.push(("kz-callback-token", t));
        }
        match self.outbound.post_bytes(&sub.callback_url, &headers, row.payload.clone().into_bytes()).await {
            Ok(reply) => {
                let status = reply.status;
                let mut a = Attempted {
                    status: Some(status),
                    duration_ms: elapsed(started),
                    response: Some(reply.body_prefix),
                    error: None,
                };
                match status {
                    200..=299 => Outcome::Delivered(a),
                    410 => {
                        a.error = Some("HTTP 410 Gone".into());
                        Outcome::Gone(a)
                    }
                    300..=399 => {
                        a.error = Some(format!("HTTP {status}: redirects are not followed"));
                        Outcome::Retry(a)
                    }
                    _ => {
                        a.error = Some(format!("HTTP {status}"));
                        Outcome::Retry(a)
                    }
                }
            }
            Err(e) => Outcome::Retry(Attempted {
                status: None,
                duration_ms: elapsed(started),
                response: None,
                error: Some(format!("{e:#}")),
            }),
        }
    }
}

async fn subscription_of(db: &Db, spot_id: SpotId, id: SubscriptionId) -> Result<Option<Subscription>> {
    let mut conn = db.conn().await?;
    rows::get(conn.ex(), spot_id, id).await?.map(Subscription::try_from).transpose()
}

impl Channel for KzChannel {
    fn attempt<'a>(&'a self, db: &'a Db, row: &'a OutboxRow) -> BoxFuture<'a, Outcome> {
        Box::pin(self.deliver(db, row))
    }

    fn disable<'a>(
        &'a self,
        tx: &'a mut Tx,
        spot_id: SpotId,
        target: Uuid,
        reason: &'a str,
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            rows::deactivate(tx.ex(), spot_id, SubscriptionId(target), reason, now_ms()).await?;
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_in_any_case() {
        assert_eq!(parse_object_type("group").ok(), Some(KzObjectType::Group));
        assert_eq!(parse_object_type(" ACTIONPACKAGE ").ok(), Some(KzObjectType::ActionPackage));
        let e = parse_object_type("Spot").err().map(|e| e.to_string()).unwrap_or_default();
        assert!(e.starts_with("objectType: 'Spot' is not one of Group"), "{e}");
        let t = parse_event_types(&["memberadded".into(), "MemberAdded".into(), "pollCreated".into()]);
        assert_eq!(t.ok(), Some(vec![KzEventType::MemberAdded, KzEventType::PollCreated]));
        let e = parse_event_types(&["MemberAdded".into(), "Nope".into()]).err().map(|e| e.to_string());
        assert!(e.unwrap_or_default().starts_with("eventTypes[1]: 'Nope'"));
        assert!(parse_event_types(&[]).is_err());
    }

    #[test]
    fn validity_in_seconds_or_ms() {
        let now = 1_764_000_000_000;
        assert_eq!(validity_of(1_900_000_000, now).ok(), Some(1_900_000_000_000));
        assert_eq!(validity_of(1_900_000_000_000, now).ok(), Some(1_900_000_000_000));
        assert!(validity_of(1_000, now).is_err());
    }

    #[test]
    fn group_objects_drop_their_suffix() {
        let g = "df91cb37-97bf-4ccd-a8c2-b2a3ba5eac62";
        assert_eq!(object_id_of(KzObjectType::Group, &format!("{g}@1")).ok().as_deref(), Some(g));
        assert!(matches!(object_id_of(KzObjectType::Group, "x"), Err(Error::NotFound(Entity::Group))));
        assert_eq!(object_id_of(KzObjectType::Action, " a@1 ").ok().as_deref(), Some("a@1"));
    }

    #[test]
    fn timeouts_read_naturally() {
        assert_eq!(seconds(Duration::from_secs(5)), "5 s");
        assert_eq!(seconds(Duration::from_millis(300)), "300 ms");
    }
}

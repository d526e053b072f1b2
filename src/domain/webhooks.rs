//! MeltingSpot webhook endpoints (contract §4, §5): their management (`/v1/webhooks`)
//! and signing the Standard Webhooks / Svix way.
//!
//! A delivery carries `svix-id`, `svix-timestamp` and `svix-signature` and the same three
//! values as `webhook-id`, `webhook-timestamp` and `webhook-signature`. The signature is
//! `v1,<base64 HMAC-SHA256("{id}.{timestamp}.{body}")>` keyed by the bytes the secret's
//! base64 (after `whsec_`) encodes; while a rotated-out secret still signs (24 h after
//! `~rotateSecret`), the header holds both signatures, space-separated, the current one
//! first. Secrets are stored readable: they sign, and `GET` returns them (contract §8).

use base64::engine::general_purpose::STANDARD;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use base64::Engine;
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;
use uuid::Uuid;

use super::events::{self, EventType};
use super::filter::{self, FieldSpec, Kind, ListQuery, Op};
use super::outbox::{Attempted, BoxFuture, Channel, Outcome};
use super::vocab::{ChannelKind, OutboxState};
use super::{new_id, now_ms};
use crate::domain::ids::{EventId, SpotId, WebhookId};
use crate::error::{Entity, Error, Result};
use crate::outbound::Outbound;
use crate::store::outbox::{NewOutboxRow, OutboxRow};
use crate::store::sql::Bind;
use crate::store::webhooks::WebhookEndpointRow;
use crate::store::{self, Db, Tx};

/// The prefix of every signing secret.
pub const SECRET_PREFIX: &str = "whsec_";
/// Random bytes in a generated secret.
pub const SECRET_BYTES: usize = 32;
/// The key sizes a given secret may decode to (Svix generates 24 bytes, openspot 32).
pub const SECRET_MIN_BYTES: usize = 24;
pub const SECRET_MAX_BYTES: usize = 64;

/// Standard base64, padding optional (a secret pasted without its `=` still decodes).
const LENIENT_BASE64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// A fresh secret: `whsec_` and the standard base64 of 32 random bytes.
pub fn new_secret() -> String {
    let mut key = [0u8; SECRET_BYTES];
    rand::thread_rng().fill_bytes(&mut key);
    format!("{SECRET_PREFIX}{}", STANDARD.encode(key))
}

/// The signing key of a secret `whsec_<base64>`; anything else is a 400 naming `field`.
pub fn parse_secret(field: &str, secret: &str) -> Result<Vec<u8>> {
    let Some(encoded) = secret.strip_prefix(SECRET_PREFIX) else {
        return Err(Error::invalid(field, format!("must start with '{SECRET_PREFIX}'")));
    };
    let key = LENIENT_BASE64
        .decode(encoded)
        .map_err(|_| Error::invalid(field, format!("must be '{SECRET_PREFIX}' followed by standard base64")))?;
    if !(SECRET_MIN_BYTES..=SECRET_MAX_BYTES).contains(&key.len()) {
        return Err(Error::invalid(
            field,
            format!("must encode {SECRET_MIN_BYTES} to {SECRET_MAX_BYTES} bytes (it encodes {})", key.len()),
        ));
    }
    Ok(key)
}

/// The base64 HMAC-SHA256 of `"{msg_id}.{ts}.{body}"` under `key` (no `v1,` prefix).
pub fn sign(key: &[u8], msg_id: &str, ts: i64, body: &[u8]) -> String {
    // HMAC accepts keys of any length: `new_from_slice` cannot fail for it.
    let mut mac = match Hmac::<Sha256>::new_from_slice(key) {
        Ok(m) => m,
        Err(_) => unreachable_key_length(),
    };
    mac.update(msg_id.as_bytes());
    mac.update(b".");
    mac.update(ts.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    STANDARD.encode(mac.finalize().into_bytes())
}

/// `hmac` reports `InvalidLength` only for fixed-size keys; SHA-256's HMAC takes any.
#[cold]
fn unreachable_key_length() -> ! {
    unreachable!("HMAC-SHA256 accepts keys of every length")
}

/// The signature header: `v1,<sig>` per key, space-separated, in the order given
/// (the current secret first).
pub fn signature_header(keys: &[&[u8]], msg_id: &str, ts: i64, body: &[u8]) -> String {
    keys.iter().map(|k| format!("v1,{}", sign(k, msg_id, ts, body))).collect::<Vec<_>>().join(" ")
}

/// Whether `header` (a signature header) holds a `v1` signature of the message under
/// `key`, compared in constant time: the verifier of the tests and of the docs' example.
pub fn verify(key: &[u8], msg_id: &str, ts: i64, body: &[u8], header: &str) -> bool {
    use subtle::ConstantTimeEq;
    let expected = sign(key, msg_id, ts, body);
    header
        .split(' ')
        .filter_map(|s| s.strip_prefix("v1,"))
        .any(|sig| bool::from(sig.as_bytes().ct_eq(expected.as_bytes())))
}

/// Endpoints a spot may have.
pub const MAX_ENDPOINTS: i64 = 20;
/// Longest accepted URL.
pub const MAX_URL_CHARS: usize = 2048;
/// Longest accepted description.
pub const MAX_DESCRIPTION_CHARS: usize = 4096;
/// How long a rotated-out secret keeps signing (ms).
pub const ROTATION_OVERLAP_MS: i64 = 24 * 3600 * 1000;
/// The `disabledReason` of an endpoint disabled through `PUT enabled: false`.
pub const DISABLED_BY_API: &str = "Disabled through the API";

/// A webhook endpoint of a spot.
#[derive(Clone, Debug, PartialEq)]
pub struct WebhookEndpoint {
    pub spot_id: SpotId,
    pub id: WebhookId,
    pub url: String,
    pub description: String,
    pub event_types: Vec<EventType>,
    pub enabled: bool,
    pub disabled_reason: Option<String>,
    pub secret: String,
    pub previous_secret: Option<String>,
    /// ms: the previous secret signs too until then.
    pub previous_secret_until: Option<i64>,
    pub created_at: i64,
    pub updated_at: i64,
}

impl WebhookEndpoint {
    /// The signing keys at `now_ms`: the current secret's, then the previous one's while
    /// it still signs. A secret that does not parse (never stored by this code) is left out.
    pub fn signing_keys(&self, now_ms: i64) -> Vec<Vec<u8>> {
        let mut keys: Vec<Vec<u8>> = parse_secret("secret", &self.secret).into_iter().collect();
        if let (Some(old), Some(until)) = (&self.previous_secret, self.previous_secret_until) {
            if until > now_ms {
                keys.extend(parse_secret("secret", old));
            }
        }
        keys
    }

    /// Until when the previous secret signs, if it still does at `now_ms`.
    pub fn previous_secret_expires_at(&self, now_ms: i64) -> Option<i64> {
        self.previous_secret_until.filter(|until| *until > now_ms)
    }
}

impl TryFrom<WebhookEndpointRow> for WebhookEndpoint {
    type Error = Error;
    /// Fails only on a corrupt `event_types` column (500).
    fn try_from(r: WebhookEndpointRow) -> Result<Self> {
        let names: Vec<String> = serde_json::from_str(&r.event_types).map_err(anyhow::Error::new)?;
        // A name this version does not know (written by a newer one) is left out.
        let event_types = names.iter().filter_map(|n| n.parse::<EventType>().ok()).collect();
        Ok(WebhookEndpoint {
            spot_id: r.spot_id,
            id: r.id,
            url: r.url,
            description: r.description,
            event_types,
            enabled: r.enabled,
            disabled_reason: r.disabled_reason,
            secret: r.secret,
            previous_secret: r.previous_secret,
            previous_secret_until: r.previous_secret_until,
            created_at: r.created_at,
            updated_at: r.updated_at,
        })
    }
}

impl From<&WebhookEndpoint> for WebhookEndpointRow {
    fn from(e: &WebhookEndpoint) -> Self {
        WebhookEndpointRow {
            spot_id: e.spot_id,
            id: e.id,
            url: e.url.clone(),
            description: e.description.clone(),
            event_types: event_types_json(&e.event_types),
            enabled: e.enabled,
            disabled_reason: e.disabled_reason.clone(),
            secret: e.secret.clone(),
            previous_secret: e.previous_secret.clone(),
            previous_secret_until: e.previous_secret_until,
            created_at: e.created_at,
            updated_at: e.updated_at,
        }
    }
}

fn event_types_json(types: &[EventType]) -> String {
    serde_json::Value::from(types.iter().map(|t| t.as_str()).collect::<Vec<_>>()).to_string()
}

/// An endpoint as a client creates it.
#[derive(Clone, Debug, Default)]
pub struct NewEndpoint {
    pub url: Option<String>,
    pub event_types: Option<Vec<String>>,
    pub description: Option<String>,
    pub enabled: Option<bool>,
    pub secret: Option<String>,
}

/// The fields a `PUT` may change (absent: unchanged).
#[derive(Clone, Debug, Default)]
pub struct EndpointPatch {
    pub url: Option<String>,
    pub event_types: Option<Vec<String>>,
    pub description: Option<String>,
    pub enabled: Option<bool>,
}

/// A URL the server may deliver to: http(s), at most [`MAX_URL_CHARS`], and a public
/// target unless private targets are allowed (checked again on every delivery).
async fn check_url(outbound: &Outbound, url: &str) -> Result<String> {
    let url = url.trim();
    if url.is_empty() {
        return Err(Error::invalid("url", "must not be empty"));
    }
    if url.chars().count() > MAX_URL_CHARS {
        return Err(Error::invalid("url", format!("must be at most {MAX_URL_CHARS} characters")));
    }
    outbound.check_target(url).await.map_err(|e| Error::invalid("url", format!("{e:#}")))?;
    Ok(url.to_string())
}

/// Known event types, in the order given, without repeats; at least one.
fn check_event_types(names: &[String]) -> Result<Vec<EventType>> {
    if names.is_empty() {
        return Err(Error::invalid("eventTypes", "must name at least one event type"));
    }
    let mut out: Vec<EventType> = Vec::with_capacity(names.len());
    for (i, name) in names.iter().enumerate() {
        let Ok(t) = name.parse::<EventType>() else {
            let known: Vec<&str> = EventType::ALL.iter().map(|t| t.as_str()).collect();
            return Err(Error::invalid(
                format!("eventTypes[{i}]"),
                format!("'{name}' is not an event type (known: {})", known.join(", ")),
            ));
        };
        if !out.contains(&t) {
            out.push(t);
        }
    }
    Ok(out)
}

fn check_description(d: &str) -> Result<String> {
    if d.chars().count() > MAX_DESCRIPTION_CHARS {
        return Err(Error::invalid("description", format!("must be at most {MAX_DESCRIPTION_CHARS} characters")));
    }
    Ok(d.to_string())
}

/// A secret given by the client, or a fresh one.
fn secret_or_new(field: &str, secret: Option<String>) -> Result<String> {
    match secret {
        Some(s) => {
            parse_secret(field, &s)?;
            Ok(s)
        }
        None => Ok(new_secret()),
    }
}

/// The endpoint stored under `id`, or 404 "Webhook not found".
pub(crate) async fn stored_endpoint(ex: store::Ex<'_>, spot_id: SpotId, id: WebhookId) -> Result<WebhookEndpoint> {
    store::webhooks::get(ex, spot_id, id).await?.ok_or(Error::NotFound(Entity::Webhook))?.try_into()
}

async fn locked_endpoint(tx: &mut Tx, spot_id: SpotId, id: WebhookId) -> Result<WebhookEndpoint> {
    store::webhooks::get_for_update(tx.ex(), spot_id, id).await?.ok_or(Error::NotFound(Entity::Webhook))?.try_into()
}

pub async fn list_endpoints(db: &Db, spot_id: SpotId, q: &ListQuery) -> Result<(Vec<WebhookEndpoint>, i64)> {
    if let Some(f) = q.filters.first() {
        return Err(Error::invalid(&f.param, "this list takes no filters"));
    }
    let mut c = db.conn().await?;
    let (rows, total) = store::webhooks::list(c.ex(), spot_id, q.offset(), i64::from(q.limit)).await?;
    Ok((rows.into_iter().map(WebhookEndpoint::try_from).collect::<Result<_>>()?, total))
}

pub async fn get_endpoint(db: &Db, spot_id: SpotId, id: WebhookId) -> Result<WebhookEndpoint> {
    let mut c = db.conn().await?;
    stored_endpoint(c.ex(), spot_id, id).await
}

/// Creates an endpoint (at most [`MAX_ENDPOINTS`] per spot).
pub async fn create_endpoint(
    db: &Db,
    outbound: &Outbound,
    spot_id: SpotId,
    new: NewEndpoint,
) -> Result<WebhookEndpoint> {
    let url = check_url(outbound, new.url.as_deref().ok_or_else(|| Error::invalid("url", "is required"))?).await?;
    let event_types =
        check_event_types(new.event_types.as_deref().ok_or_else(|| Error::invalid("eventTypes", "is required"))?)?;
    let description = check_description(new.description.as_deref().unwrap_or_default())?;
    let secret = secret_or_new("secret", new.secret)?;
    let enabled = new.enabled.unwrap_or(true);
    let now = now_ms();
    let endpoint = WebhookEndpoint {
        spot_id,
        id: WebhookId::generate(),
        url,
        description,
        event_types,
        enabled,
        disabled_reason: (!enabled).then(|| DISABLED_BY_API.to_string()),
        secret,
        previous_secret: None,
        previous_secret_until: None,
        created_at: now,
        updated_at: now,
    };
    let mut tx = db.begin().await?;
    // The lock of the spot's counters row (PostgreSQL) serialises creations, so two
    // cannot both be the 20th.
    if !store::members::lock_spot_for_inserts(tx.ex(), spot_id).await? {
        return Err(Error::NotFound(Entity::Spot));
    }
    if store::webhooks::count(tx.ex(), spot_id).await? >= MAX_ENDPOINTS {
        return Err(Error::BadRequest(format!("a spot has at most {MAX_ENDPOINTS} webhook endpoints")));
    }
    store::webhooks::insert(tx.ex(), &(&endpoint).into()).await?;
    events::targets_changing(&mut tx, spot_id).await?;
    tx.commit().await?;
    events::invalidate(spot_id);
    Ok(endpoint)
}

/// Applies a partial update. Enabling a disabled endpoint clears its reason and
/// resumes its paused deliveries; disabling says it was done through the API.
pub async fn update_endpoint(
    db: &Db,
    outbound: &Outbound,
    spot_id: SpotId,
    id: WebhookId,
    patch: EndpointPatch,
) -> Result<WebhookEndpoint> {
    let url = match patch.url.as_deref() {
        Some(u) => Some(check_url(outbound, u).await?),
        None => None,
    };
    let event_types = patch.event_types.as_deref().map(check_event_types).transpose()?;
    let description = patch.description.as_deref().map(check_description).transpose()?;
    let mut tx = db.begin().await?;
    let mut e = locked_endpoint(&mut tx, spot_id, id).await?;
    let now = now_ms();
    if let Some(u) = url {
        e.url = u;
    }
    if let Some(t) = event_types {
        e.event_types = t;
    }
    if let Some(d) = description {
        e.description = d;
    }
    match patch.enabled {
        Some(true) if !e.enabled => {
            e.enabled = true;
            e.disabled_reason = None;
            if store::outbox::resume_target(tx.ex(), spot_id, id.uuid(), now).await? > 0 {
                tx.note_outbox_write();
            }
        }
        Some(false) if e.enabled => {
            e.enabled = false;
            e.disabled_reason = Some(DISABLED_BY_API.to_string());
            store::outbox::pause_target(tx.ex(), spot_id, id.uuid(), now).await?;
        }
        _ => {}
    }
    e.updated_at = now;
    store::webhooks::update(tx.ex(), &(&e).into()).await?;
    events::targets_changing(&mut tx, spot_id).await?;
    tx.commit().await?;
    events::invalidate(spot_id);
    Ok(e)
}

/// Deletes the endpoint with its queued deliveries and its delivery log.
pub async fn delete_endpoint(db: &Db, spot_id: SpotId, id: WebhookId) -> Result<()> {
    let mut tx = db.begin().await?;
    if !store::webhooks::delete(tx.ex(), spot_id, id).await? {
        return Err(Error::NotFound(Entity::Webhook));
    }
    store::outbox::delete_target(tx.ex(), spot_id, id.uuid()).await?;
    events::targets_changing(&mut tx, spot_id).await?;
    tx.commit().await?;
    events::invalidate(spot_id);
    Ok(())
}

/// Replaces the secret (the given one, or a fresh one); the previous secret keeps
/// signing beside it for [`ROTATION_OVERLAP_MS`].
pub async fn rotate_secret(db: &Db, spot_id: SpotId, id: WebhookId, secret: Option<String>) -> Result<WebhookEndpoint> {
    let secret = secret_or_new("secret", secret)?;
    let mut tx = db.begin().await?;
    let mut e = locked_endpoint(&mut tx, spot_id, id).await?;
    let now = now_ms();
    e.previous_secret = Some(std::mem::replace(&mut e.secret, secret));
    e.previous_secret_until = Some(now + ROTATION_OVERLAP_MS);
    e.updated_at = now;
    store::webhooks::update(tx.ex(), &(&e).into()).await?;
    tx.commit().await?;
    Ok(e)
}

/// Queues a signed sample of `event_type` (default: the endpoint's first type) with
/// `test: true`, for this endpoint only; delivered like any event. 409 when the endpoint
/// is disabled. Returns the event id and type.
pub async fn send_test(
    db: &Db,
    spot_id: SpotId,
    id: WebhookId,
    event_type: Option<&str>,
) -> Result<(EventId, EventType)> {
    let requested =
        event_type.map(|t| t.parse::<EventType>().map_err(|reason| Error::invalid("eventType", reason))).transpose()?;
    let mut tx = db.begin().await?;
    let e = enabled_endpoint(&mut tx, spot_id, id).await?;
    let Some(event_type) = requested.or_else(|| e.event_types.first().copied()) else {
        return Err(Error::invalid("eventType", "is required (the endpoint has no event type)"));
    };
    let spot_name = events::targets(&mut tx, spot_id).await?.spot_name.clone();
    let now = now_ms();
    let event_id = EventId::generate();
    let row = NewOutboxRow {
        id: new_id(),
        event_id: event_id.uuid(),
        channel: ChannelKind::Webhook,
        target_id: Some(id.uuid()),
        event_type: event_type.as_str().to_string(),
        payload: events::sample(event_type, spot_id, &spot_name, now).to_string(),
        occurred_at: now,
        state: OutboxState::Pending,
        last_error: None,
    };
    store::outbox::insert_many(tx.ex(), spot_id, &[row], now).await?;
    tx.note_outbox_write();
    tx.commit().await?;
    Ok((event_id, event_type))
}

/// The filters of the delivery log.
pub const DELIVERY_FILTERS: &[FieldSpec] = &[
    FieldSpec { field: "eventId", column: "event_id", kind: Kind::Uuid, ops: &[Op::Eq] },
    FieldSpec { field: "eventType", column: "event_type", kind: Kind::Enum(EventType::NAMES), ops: &[Op::Eq] },
];

/// One attempt of the delivery log.
#[derive(Clone, Debug, PartialEq)]
pub struct Delivery {
    pub id: Uuid,
    pub event_id: EventId,
    pub event_type: String,
    /// 1-based number of this attempt at this event (redeliveries continue the count).
    pub attempt: i64,
    pub status_code: Option<i64>,
    pub duration_ms: i64,
    pub error: Option<String>,
    pub response_body: Option<String>,
    pub created_at: i64,
}

/// The endpoint's delivery attempts in the order they were made.
pub async fn list_deliveries(db: &Db, spot_id: SpotId, id: WebhookId, q: &ListQuery) -> Result<(Vec<Delivery>, i64)> {
    let preds = filter::validate(&q.filters, DELIVERY_FILTERS)?;
    let mut event_id = None;
    let mut event_type = None;
    for p in &preds {
        match (p.column, p.values.first()) {
            ("event_id", Some(Bind::Uuid(u))) => event_id = Some(*u),
            ("event_type", Some(Bind::Text(t))) => event_type = Some(t.as_str()),
            _ => {}
        }
    }
    let mut c = db.conn().await?;
    stored_endpoint(c.ex(), spot_id, id).await?;
    let (rows, total) =
        store::outbox::list_attempts(c.ex(), spot_id, id.uuid(), event_id, event_type, q.offset(), i64::from(q.limit))
            .await?;
    let items = rows
        .into_iter()
        .map(|r| Delivery {
            id: r.id,
            event_id: EventId(r.event_id),
            event_type: r.event_type,
            attempt: r.attempt,
            status_code: r.status_code,
            duration_ms: r.duration_ms,
            error: r.error,
            response_body: r.response_body,
            created_at: r.created_at,
        })
        .collect();
    Ok((items, total))
}

/// The endpoint, refused with 409 when it is disabled (nothing can be sent to it).
async fn enabled_endpoint(tx: &mut Tx, spot_id: SpotId, id: WebhookId) -> Result<WebhookEndpoint> {
    let e = locked_endpoint(tx, spot_id, id).await?;
    if !e.enabled {
        return Err(Error::Conflict("the webhook endpoint is disabled: enable it first".into()));
    }
    Ok(e)
}

/// Sends an event to the endpoint again (same event id, same body, a fresh retry
/// schedule), whatever became of it. 404 "Webhook event not found" when the endpoint
/// never had it (or it was purged).
pub async fn redeliver(db: &Db, spot_id: SpotId, id: WebhookId, event_id: EventId) -> Result<()> {
    let mut tx = db.begin().await?;
    enabled_endpoint(&mut tx, spot_id, id).await?;
    if !store::outbox::requeue_event(tx.ex(), spot_id, id.uuid(), event_id.uuid(), now_ms()).await? {
        return Err(Error::NotFound(Entity::WebhookEvent));
    }
    tx.note_outbox_write();
    tx.commit().await?;
    Ok(())
}

/// A point in time as `~recover` takes it: Unix seconds, milliseconds above 10^12, or an
/// ISO-8601 date-time; not in the future. Milliseconds.
pub fn parse_since(field: &str, v: &serde_json::Value, now: i64) -> Result<i64> {
    let ms = match v {
        serde_json::Value::Number(n) => {
            let Some(x) = n.as_i64().filter(|x| *x >= 0) else {
                return Err(Error::invalid(field, "must be a non-negative whole number of seconds or milliseconds"));
            };
            if x > 1_000_000_000_000 {
                x
            } else {
                x.saturating_mul(1000)
            }
        }
        serde_json::Value::String(s) => {
            let t = time::OffsetDateTime::parse(s.trim(), &time::format_description::well_known::Rfc3339)
                .map_err(|_| Error::invalid(field, "must be Unix seconds, milliseconds or an ISO-8601 date-time"))?;
            (t.unix_timestamp_nanos() / 1_000_000) as i64
        }
        serde_json::Value::Null => return Err(Error::invalid(field, "is required")),
        _ => return Err(Error::invalid(field, "must be Unix seconds, milliseconds or an ISO-8601 date-time")),
    };
    if ms > now {
        return Err(Error::invalid(field, "must not be in the future"));
    }
    Ok(ms)
}

/// Queues again every event that failed for good (its retries spent) since `since_ms`;
/// how many.
pub async fn recover(db: &Db, spot_id: SpotId, id: WebhookId, since_ms: i64) -> Result<u64> {
    let mut tx = db.begin().await?;
    enabled_endpoint(&mut tx, spot_id, id).await?;
    let n = store::outbox::requeue_failed_since(tx.ex(), spot_id, id.uuid(), since_ms, now_ms()).await?;
    if n > 0 {
        tx.note_outbox_write();
    }
    tx.commit().await?;
    Ok(n)
}

/// Delivers webhook rows of the outbox: the body as written, signed with the endpoint's
/// current secret (and the previous one while it still signs), through the vetted
/// outbound client.
pub struct WebhookChannel {
    outbound: Outbound,
}

impl WebhookChannel {
    /// `outbound` carries the attempt timeout (10 s by default) and the private-target rule.
    pub fn new(outbound: Outbound) -> Self {
        WebhookChannel { outbound }
    }

    async fn deliver(&self, db: &Db, row: &OutboxRow) -> Outcome {
        let started = std::time::Instant::now();
        let Some(target) = row.target_id else {
            return Outcome::TargetMissing;
        };
        let endpoint = match endpoint_for_delivery(db, row.spot_id, WebhookId(target)).await {
            Ok(Some(e)) => e,
            Ok(None) => return Outcome::TargetMissing,
            Err(e) => {
                return Outcome::Retry(Attempted {
                    duration_ms: started.elapsed().as_millis() as i64,
                    error: Some(format!("cannot read the endpoint: {e}")),
                    ..Attempted::default()
                })
            }
        };
        let now = now_ms();
        let ts = now.div_euclid(1000);
        let headers = delivery_headers(&endpoint, &row.event_id.to_string(), ts, now, row.payload.as_bytes());
        match self.outbound.post_bytes(&endpoint.url, &headers, row.payload.as_bytes().to_vec()).await {
            Ok(reply) => {
                let attempted = Attempted {
                    status: Some(reply.status),
                    duration_ms: reply.elapsed.as_millis() as i64,
                    response: Some(reply.body_prefix).filter(|b| !b.is_empty()),
                    error: None,
                };
                match reply.status {
                    200..=299 => Outcome::Delivered(attempted),
                    410 => Outcome::Gone(attempted),
                    300..=399 => Outcome::Retry(Attempted {
                        error: Some(format!("redirect (HTTP {}) not followed", reply.status)),
                        ..attempted
                    }),
                    _ => Outcome::Retry(attempted),
                }
            }
            Err(e) => Outcome::Retry(Attempted {
                duration_ms: started.elapsed().as_millis() as i64,
                error: Some(format!("{e:#}")),
                ..Attempted::default()
            }),
        }
    }
}

/// The endpoint a row goes to, read without a transaction (None: deleted since).
async fn endpoint_for_delivery(db: &Db, spot_id: SpotId, id: WebhookId) -> Result<Option<WebhookEndpoint>> {
    let mut c = db.conn().await?;
    store::webhooks::get(c.ex(), spot_id, id).await?.map(WebhookEndpoint::try_from).transpose()
}

/// The headers of one attempt: the Svix names and the Standard Webhooks names with the
/// same values, and the content type (the client sets `user-agent: openspot/<version>`).
pub fn delivery_headers(
    endpoint: &WebhookEndpoint,
    msg_id: &str,
    ts: i64,
    now_ms: i64,
    body: &[u8],
) -> Vec<(&'static str, String)> {
    let keys = endpoint.signing_keys(now_ms);
    let keys: Vec<&[u8]> = keys.iter().map(Vec::as_slice).collect();
    let signature = signature_header(&keys, msg_id, ts, body);
    vec![
        ("content-type", "application/json".to_string()),
        ("svix-id", msg_id.to_string()),
        ("svix-timestamp", ts.to_string()),
        ("svix-signature", signature.clone()),
        ("webhook-id", msg_id.to_string()),
        ("webhook-timestamp", ts.to_string()),
        ("webhook-signature", signature),
    ]
}

impl Channel for WebhookChannel {
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
            store::webhooks::disable(tx.ex(), spot_id, WebhookId(target), reason, now_ms()).await?;
            // Events from now on are written Paused: the other replicas drop their cached
            // targets at commit, this one now. A load racing this transaction may still
            // cache the old state, until an invalidation after the commit or the cache's
            // 10 s lifetime.
            events::targets_changing(tx, spot_id).await?;
            events::invalidate(spot_id);
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example of the Standard Webhooks specification.
    const SPEC_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const SPEC_ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
    const SPEC_TS: i64 = 1614265330;
    const SPEC_BODY: &[u8] = br#"{"test": 2432232314}"#;
    const SPEC_SIGNATURE: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";

    #[test]
    fn signs_the_standard_webhooks_example() {
        let key = parse_secret("secret", SPEC_SECRET).unwrap();
        assert_eq!(key.len(), 24);
        assert_eq!(signature_header(&[&key], SPEC_ID, SPEC_TS, SPEC_BODY), SPEC_SIGNATURE);
        assert!(verify(&key, SPEC_ID, SPEC_TS, SPEC_BODY, SPEC_SIGNATURE));
        // Any change to the id, the time or a byte of the body breaks it.
        assert!(!verify(&key, "msg_other", SPEC_TS, SPEC_BODY, SPEC_SIGNATURE));
        assert!(!verify(&key, SPEC_ID, SPEC_TS + 1, SPEC_BODY, SPEC_SIGNATURE));
        assert!(!verify(&key, SPEC_ID, SPEC_TS, br#"{"test":2432232314}"#, SPEC_SIGNATURE));
    }

    #[test]
    fn a_rotation_header_carries_both_signatures_current_first() {
        let old = parse_secret("secret", SPEC_SECRET).unwrap();
        let new = parse_secret("secret", &new_secret()).unwrap();
        let header = signature_header(&[&new, &old], SPEC_ID, SPEC_TS, SPEC_BODY);
        let parts: Vec<&str> = header.split(' ').collect();
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[1], SPEC_SIGNATURE);
        assert!(verify(&new, SPEC_ID, SPEC_TS, SPEC_BODY, &header));
        assert!(verify(&old, SPEC_ID, SPEC_TS, SPEC_BODY, &header));
    }

    #[test]
    fn generated_secrets_are_whsec_base64_of_32_random_bytes() {
        let a = new_secret();
        let b = new_secret();
        assert_ne!(a, b);
        assert!(a.starts_with("whsec_"));
        assert_eq!(parse_secret("secret", &a).unwrap().len(), SECRET_BYTES);
    }

    #[test]
    fn malformed_secrets_name_the_field() {
        for bad in ["", "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "whsec_", "whsec_!!!!", "whsec_c2hvcnQ=", "Whsec_MfKQ9r8G"]
        {
            match parse_secret("secret", bad) {
                Err(Error::Invalid { field, .. }) => assert_eq!(field, "secret", "{bad}"),
                other => panic!("{bad}: {other:?}"),
            }
        }
        // 65 bytes is too long, 64 is not; padding is optional.
        assert!(parse_secret("secret", &format!("whsec_{}", STANDARD.encode([7u8; 65]))).is_err());
        assert!(parse_secret("secret", &format!("whsec_{}", STANDARD.encode([7u8; 64]))).is_ok());
        assert!(parse_secret("secret", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSwAA").is_ok());
    }
}

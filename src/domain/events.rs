//! Events (contract §5): what a change tells the spot's webhook endpoints.
//!
//! [`emit`] runs inside the transaction of the change that causes the event, after the
//! change. When no endpoint of the spot listens to the event's type it is a lookup in a
//! per-spot, in-process cache of the spot's targets: no query, no allocation. Otherwise
//! it loads what the payloads need through the same transaction (so they show the
//! change), builds one body per event and writes one outbox row per (event, endpoint):
//! Pending, or Paused for a disabled endpoint (delivered once it is enabled again). The
//! dispatcher delivers the rows after the commit; a rollback takes them away with the
//! change. Who receives an event is decided when it happens: an endpoint created later
//! gets no history.
//!
//! Payloads follow MeltingSpot's event catalogue (`meltingspot-api.md` §4.3): `member`,
//! `spot`, `occurredAt` (Unix seconds) and `test`, plus `occurredAtMs` and
//! `member.updatedAt` (ms) so receivers can order what the delivery order does not.
//!
//! The cache keeps a spot's targets for [`CACHE_TTL`]. A change of targets drops the
//! spot's entry here after its commit ([`invalidate`]) and, through
//! [`targets_changing`], in the other replicas on the same PostgreSQL database.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, RwLock};
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::Value;
use uuid::Uuid;

use super::courses::Participant;
use super::ids::{CourseId, GroupId, MemberId, SpotId, WebhookId};
use super::members::Member;
use super::vocab::{ChannelKind, GroupRole, KzEventType, OutboxState};
use super::{from_rows, new_id, now_ms};
use crate::error::{Entity, Error, Result};
use crate::store::outbox::NewOutboxRow;
use crate::store::sql::IN_LIST_MAX;
use crate::store::{self, Tx};

/// The MeltingSpot webhook event types, by their wire names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EventType {
    MemberCreated,
    MemberUpdated,
    CourseParticipantCreated,
    CourseParticipantStatusUpdated,
    GroupMemberAdded,
    GroupMemberRemoved,
}

impl EventType {
    pub const ALL: &'static [EventType] = &[
        EventType::MemberCreated,
        EventType::MemberUpdated,
        EventType::CourseParticipantCreated,
        EventType::CourseParticipantStatusUpdated,
        EventType::GroupMemberAdded,
        EventType::GroupMemberRemoved,
    ];

    /// The wire names, in [`EventType::ALL`] order.
    pub const NAMES: &'static [&'static str] = &[
        "member.created",
        "member.updated",
        "course.participant.created",
        "course.participant.status.updated",
        "group.member.added",
        "group.member.removed",
    ];

    pub fn as_str(self) -> &'static str {
        Self::NAMES[self as usize]
    }

    /// This type's bit in a subscription mask.
    pub fn bit(self) -> u8 {
        1 << (self as u8)
    }

    /// The mask of `types`.
    pub fn mask(types: &[EventType]) -> u8 {
        types.iter().fold(0, |m, t| m | t.bit())
    }
}

impl fmt::Display for EventType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for EventType {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, Self::Err> {
        Self::NAMES
            .iter()
            .position(|n| *n == s)
            .map(|i| Self::ALL[i])
            .ok_or_else(|| format!("'{s}' is not an event type (known: {})", Self::NAMES.join(", ")))
    }
}

impl serde::Serialize for EventType {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> serde::Deserialize<'de> for EventType {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl utoipa::PartialSchema for EventType {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{ObjectBuilder, Type};
        ObjectBuilder::new().schema_type(Type::String).enum_values(Some(Self::NAMES.iter().copied())).into()
    }
}

impl utoipa::ToSchema for EventType {}

/// What happened, as the write paths report it (each variant may stand for many events:
/// one per member).
#[derive(Clone, Copy, Debug)]
pub enum Event<'a> {
    MemberCreated(&'a [Member]),
    MemberUpdated(&'a [Member]),
    ParticipantsCreated { course_id: CourseId, member_ids: &'a [MemberId] },
    ParticipantStatusUpdated { course_id: CourseId, participants: &'a [Participant] },
    GroupMembersAdded { group_id: GroupId, members: &'a [(MemberId, GroupRole)] },
    GroupMembersRemoved { group_id: GroupId, members: &'a [(MemberId, GroupRole)] },
}

impl Event<'_> {
    pub fn event_type(&self) -> EventType {
        match self {
            Event::MemberCreated(_) => EventType::MemberCreated,
            Event::MemberUpdated(_) => EventType::MemberUpdated,
            Event::ParticipantsCreated { .. } => EventType::CourseParticipantCreated,
            Event::ParticipantStatusUpdated { .. } => EventType::CourseParticipantStatusUpdated,
            Event::GroupMembersAdded { .. } => EventType::GroupMemberAdded,
            Event::GroupMembersRemoved { .. } => EventType::GroupMemberRemoved,
        }
    }

    fn is_empty(&self) -> bool {
        match self {
            Event::MemberCreated(m) | Event::MemberUpdated(m) => m.is_empty(),
            Event::ParticipantsCreated { member_ids, .. } => member_ids.is_empty(),
            Event::ParticipantStatusUpdated { participants, .. } => participants.is_empty(),
            Event::GroupMembersAdded { members, .. } | Event::GroupMembersRemoved { members, .. } => members.is_empty(),
        }
    }
}

/// A webhook endpoint as the cache keeps it.
#[derive(Clone, Debug, PartialEq)]
pub struct WebhookTarget {
    pub id: WebhookId,
    /// One bit per [`EventType`] it listens to.
    pub types: u8,
    pub enabled: bool,
}

/// A spot's delivery targets.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SpotTargets {
    pub spot_name: String,
    pub webhooks: Vec<WebhookTarget>,
    /// The union of the endpoints' masks: the one test a write without listeners pays.
    pub webhook_types: u8,
    /// Groups with a Kaizala subscription (of any event type, active or not): their
    /// membership changes are offered to [`kaizala::webhooks::queue_members`].
    pub kaizala_groups: HashSet<GroupId>,
}

impl SpotTargets {
    /// Whether anyone may want `event`: an endpoint listening to its type, or a Kaizala
    /// subscription of the group whose members changed.
    fn wanted(&self, event: &Event<'_>) -> bool {
        self.webhook_types & event.event_type().bit() != 0
            || kaizala_part(event).is_some_and(|(group_id, _, _)| self.kaizala_groups.contains(&group_id))
    }

    fn listening(&self, t: EventType) -> impl Iterator<Item = &WebhookTarget> {
        self.webhooks.iter().filter(move |w| w.types & t.bit() != 0)
    }
}

/// How long a spot's targets are used without reading them again. Changes made in this
/// process (and, on PostgreSQL, in the other replicas) invalidate at once; this bounds
/// what a lost notification can cost.
pub const CACHE_TTL: Duration = Duration::from_secs(10);

struct Entry {
    loaded: Instant,
    targets: Arc<SpotTargets>,
}

struct Cache {
    /// Bumped by every invalidation: a load that saw an older value is not stored, so a
    /// load racing a change of targets cannot put the old targets back.
    generation: AtomicU64,
    spots: RwLock<HashMap<SpotId, Entry>>,
}

static CACHE: LazyLock<Cache> =
    LazyLock::new(|| Cache { generation: AtomicU64::new(0), spots: RwLock::new(HashMap::new()) });

fn cached(spot_id: SpotId) -> Option<Arc<SpotTargets>> {
    let spots = CACHE.spots.read().ok()?;
    spots.get(&spot_id).filter(|e| e.loaded.elapsed() < CACHE_TTL).map(|e| e.targets.clone())
}

/// Drops the spot's cached targets (after a commit that changed them).
pub fn invalidate(spot_id: SpotId) {
    CACHE.generation.fetch_add(1, Ordering::SeqCst);
    if let Ok(mut spots) = CACHE.spots.write() {
        spots.remove(&spot_id);
    }
}

/// Drops every cached target (the notification connection was lost: changes may have
/// been missed).
pub fn invalidate_all() {
    CACHE.generation.fetch_add(1, Ordering::SeqCst);
    if let Ok(mut spots) = CACHE.spots.write() {
        spots.clear();
    }
}

/// Inside a transaction that changes the spot's targets: tells the other replicas to
/// drop their cached copy when it commits (PostgreSQL `NOTIFY`; nothing on SQLite, which
/// one process serves). Call [`invalidate`] after the commit for this process.
pub async fn targets_changing(tx: &mut Tx, spot_id: SpotId) -> Result<()> {
    store::webhooks::notify_targets(tx.ex(), spot_id).await?;
    Ok(())
}

/// The spot's targets: cached, or read through `tx` (and cached unless an invalidation
/// happened meanwhile).
pub async fn targets(tx: &mut Tx, spot_id: SpotId) -> Result<Arc<SpotTargets>> {
    if let Some(t) = cached(spot_id) {
        return Ok(t);
    }
    let generation = CACHE.generation.load(Ordering::SeqCst);
    let (endpoints, kaizala_groups, name) = store::webhooks::targets_of_spot(tx.ex(), spot_id).await?;
    let mut targets = SpotTargets {
        spot_name: name.ok_or(Error::NotFound(Entity::Spot))?,
        kaizala_groups: kaizala_groups.iter().filter_map(|g| g.parse().ok()).collect(),
        ..Default::default()
    };
    for e in endpoints {
        // A corrupt list (never written by this code) must not fail the spot's writes:
        // that endpoint listens to nothing.
        let names: Vec<String> = serde_json::from_str(&e.event_types).unwrap_or_else(|err| {
            tracing::warn!(spot_id = %spot_id, webhook_id = %e.id, error = %err, "unreadable webhook event types");
            Vec::new()
        });
        let types = names.iter().filter_map(|n| n.parse::<EventType>().ok()).fold(0, |m, t| m | t.bit());
        targets.webhook_types |= types;
        targets.webhooks.push(WebhookTarget { id: e.id, types, enabled: e.enabled });
    }
    let targets = Arc::new(targets);
    if let Ok(mut spots) = CACHE.spots.write() {
        if CACHE.generation.load(Ordering::SeqCst) == generation {
            spots.insert(spot_id, Entry { loaded: Instant::now(), targets: targets.clone() });
        }
    }
    Ok(targets)
}

/// Writes the outbox rows of `event` for every endpoint of the spot that listens to
/// it, inside the caller's transaction (see the module docs).
pub async fn emit(tx: &mut Tx, spot_id: SpotId, event: Event<'_>) -> Result<()> {
    let rows = webhook_rows(tx, spot_id, event).await?;
    if !rows.is_empty() {
        store::outbox::insert_many(tx.ex(), spot_id, &rows, now_ms()).await?;
        tx.note_outbox_write();
    }
    Ok(())
}

/// [`emit`] for a change that also moves the spot's member count by `delta` (a member
/// created): the count update carries the outbox rows in the same round trip
/// ([`store::outbox::insert_with_member_count`]), one fewer on PostgreSQL.
pub async fn emit_counting_members(tx: &mut Tx, spot_id: SpotId, delta: i64, event: Event<'_>) -> Result<()> {
    let rows = webhook_rows(tx, spot_id, event).await?;
    store::outbox::insert_with_member_count(tx.ex(), spot_id, delta, &rows, now_ms()).await?;
    if !rows.is_empty() {
        tx.note_outbox_write();
    }
    Ok(())
}

/// Queues the Kaizala side of `event` (its subscribers' rows) and returns the rows of
/// the spot's webhook endpoints that listen to it, for the caller to insert.
async fn webhook_rows(tx: &mut Tx, spot_id: SpotId, event: Event<'_>) -> Result<Vec<NewOutboxRow>> {
    let event_type = event.event_type();
    if event.is_empty() {
        return Ok(Vec::new());
    }
    // Cached: a write in a spot where nobody listens stops here without a query.
    let targets = targets(tx, spot_id).await?;
    if !targets.wanted(&event) {
        return Ok(Vec::new());
    }
    // Kaizala subscribers of the group hear of its membership changes from either dialect.
    if let Some((group_id, kz_type, members)) = kaizala_part(&event) {
        if targets.kaizala_groups.contains(&group_id) {
            super::kaizala::webhooks::queue_members(tx, spot_id, group_id, kz_type, members).await?;
        }
    }
    if targets.webhook_types & event_type.bit() == 0 {
        return Ok(Vec::new());
    }
    let now = now_ms();
    let spot = Named { id: spot_id.uuid(), name: Cut(&targets.spot_name) };
    let bodies = payloads(tx, spot_id, &event, spot, now).await?;
    let listeners: Vec<&WebhookTarget> = targets.listening(event_type).collect();
    let mut rows = Vec::with_capacity(bodies.len() * listeners.len());
    for payload in bodies {
        let event_id = new_id();
        for w in &listeners {
            rows.push(NewOutboxRow {
                id: new_id(),
                event_id,
                channel: ChannelKind::Webhook,
                target_id: Some(w.id.uuid()),
                event_type: event_type.as_str().to_string(),
                payload: payload.clone(),
                occurred_at: now,
                state: if w.enabled { OutboxState::Pending } else { OutboxState::Paused },
                last_error: None,
            });
        }
    }
    Ok(rows)
}

/// Members whose membership changed, with their role in the group.
type ChangedMembers<'e> = &'e [(MemberId, GroupRole)];

/// The Kaizala side of a membership change: the group, the event and who changed.
fn kaizala_part<'e>(event: &Event<'e>) -> Option<(GroupId, KzEventType, ChangedMembers<'e>)> {
    match event {
        Event::GroupMembersAdded { group_id, members } => Some((*group_id, KzEventType::MemberAdded, members)),
        Event::GroupMembersRemoved { group_id, members } => Some((*group_id, KzEventType::MemberRemoved, members)),
        _ => None,
    }
}

/// The longest string a payload carries; longer ones are cut and end with "…", so no
/// payload comes near the 256 KiB the receivers are promised.
pub const MAX_STRING_CHARS: usize = 4096;

/// A string of a payload, written cut to [`MAX_STRING_CHARS`] (ending with "…" when
/// cut): borrowed, so a payload is written straight from the rows it describes.
#[derive(Clone, Copy, Debug)]
struct Cut<'a>(&'a str);

impl serde::Serialize for Cut<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        match self.0.char_indices().nth(MAX_STRING_CHARS) {
            Some((at, _)) => s.serialize_str(&format!("{}…", &self.0[..at])),
            None => s.serialize_str(self.0),
        }
    }
}

/// Milliseconds since the epoch as ISO-8601 (`2025-05-04T09:42:00.123Z`).
fn iso8601(ms: Option<i64>) -> Option<String> {
    ms.and_then(|ms| time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).ok())
        .and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok())
}

/// The `member` block of every payload. Fields of every block are declared in the
/// alphabetical order their keys had when payloads were built as `serde_json` maps, so
/// bodies are written as before.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct MemberBlock<'a> {
    email: Option<Cut<'a>>,
    firstname: Cut<'a>,
    id: Uuid,
    lastname: Cut<'a>,
    mobile_number: Option<&'a str>,
    role: &'static str,
    status: &'static str,
    title: Option<Cut<'a>>,
    updated_at: i64,
}

impl<'a> MemberBlock<'a> {
    fn of(m: &'a Member) -> Self {
        MemberBlock {
            email: m.email.as_deref().map(Cut),
            firstname: Cut(&m.firstname),
            id: m.id.uuid(),
            lastname: Cut(&m.lastname),
            mobile_number: m.mobile_number.as_deref(),
            role: m.role.as_str(),
            status: m.status.as_str(),
            title: m.title.as_deref().map(Cut),
            updated_at: m.updated_at,
        }
    }
}

/// The `courseParticipant` block.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ParticipantBlock {
    completed_at: Option<String>,
    completion_rate: i64,
    id: Uuid,
    invited_at: Option<String>,
    started_at: Option<String>,
    status: &'static str,
    unenrolled_at: Option<String>,
}

impl ParticipantBlock {
    fn of(p: &Participant) -> Self {
        ParticipantBlock {
            completed_at: iso8601(p.completed_at),
            completion_rate: p.completion_rate,
            id: p.id.uuid(),
            invited_at: iso8601(Some(p.invited_at)),
            started_at: iso8601(p.started_at),
            status: p.status.as_str(),
            unenrolled_at: iso8601(p.unenrolled_at),
        }
    }
}

/// The `spot`, `course` and `group` blocks.
#[derive(Clone, Copy, Serialize)]
struct Named<'a> {
    id: Uuid,
    name: Cut<'a>,
}

/// A whole payload: the event's own blocks, then `spot`, `occurredAt` (s),
/// `occurredAtMs`, `test` and `type`.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Payload<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    course: Option<Named<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    course_participant: Option<ParticipantBlock>,
    #[serde(skip_serializing_if = "Option::is_none")]
    group: Option<Named<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    group_role: Option<&'static str>,
    member: MemberBlock<'a>,
    occurred_at: i64,
    occurred_at_ms: i64,
    spot: Named<'a>,
    test: bool,
    #[serde(rename = "type")]
    event_type: &'static str,
}

impl<'a> Payload<'a> {
    /// The payload of `event_type` about `member`, without the blocks of a course or group.
    fn new(event_type: EventType, member: MemberBlock<'a>, spot: Named<'a>, at_ms: i64, test: bool) -> Self {
        Payload {
            course: None,
            course_participant: None,
            group: None,
            group_role: None,
            member,
            occurred_at: at_ms.div_euclid(1000),
            occurred_at_ms: at_ms,
            spot,
            test,
            event_type: event_type.as_str(),
        }
    }

    /// With the `course` and `courseParticipant` blocks of a course event.
    fn with_course(self, course: Named<'a>, participant: ParticipantBlock) -> Self {
        Payload { course: Some(course), course_participant: Some(participant), ..self }
    }

    /// With the `group` and `groupRole` blocks of a group event.
    fn with_group(self, group: Named<'a>, role: &'static str) -> Self {
        Payload { group: Some(group), group_role: Some(role), ..self }
    }

    /// The body as sent.
    fn body(&self) -> String {
        // Plain data with string keys: serialising it cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// The spot's members among `ids`, by id (read in statements of [`IN_LIST_MAX`]).
async fn members_by_id(tx: &mut Tx, spot_id: SpotId, ids: &[MemberId]) -> Result<HashMap<MemberId, Member>> {
    let mut out = HashMap::with_capacity(ids.len());
    for chunk in ids.chunks(IN_LIST_MAX) {
        let rows = store::members::get_many(tx.ex(), spot_id, chunk).await?;
        out.extend(from_rows::<_, Member>(rows).into_iter().map(|m| (m.id, m)));
    }
    Ok(out)
}

/// One body per event of `event` (members that vanished meanwhile are left out).
async fn payloads(tx: &mut Tx, spot_id: SpotId, event: &Event<'_>, spot: Named<'_>, now: i64) -> Result<Vec<String>> {
    let t = event.event_type();
    Ok(match *event {
        Event::MemberCreated(members) | Event::MemberUpdated(members) => {
            members.iter().map(|m| Payload::new(t, MemberBlock::of(m), spot, now, false).body()).collect()
        }
        Event::ParticipantsCreated { course_id, member_ids } => {
            let Some(course) = store::courses::get(tx.ex(), spot_id, course_id).await? else {
                return Ok(Vec::new());
            };
            let course = Named { id: course_id.uuid(), name: Cut(&course.title) };
            let members = members_by_id(tx, spot_id, member_ids).await?;
            let mut out = Vec::with_capacity(member_ids.len());
            for chunk in member_ids.chunks(IN_LIST_MAX) {
                let rows = store::participants::get_many_by_member(tx.ex(), spot_id, course_id, chunk).await?;
                for p in from_rows::<_, Participant>(rows) {
                    let Some(m) = members.get(&p.member_id) else { continue };
                    let payload = Payload::new(t, MemberBlock::of(m), spot, now, false);
                    out.push(payload.with_course(course, ParticipantBlock::of(&p)).body());
                }
            }
            out
        }
        Event::ParticipantStatusUpdated { course_id, participants } => {
            let Some(course) = store::courses::get(tx.ex(), spot_id, course_id).await? else {
                return Ok(Vec::new());
            };
            let course = Named { id: course_id.uuid(), name: Cut(&course.title) };
            let ids: Vec<MemberId> = participants.iter().map(|p| p.member_id).collect();
            let members = members_by_id(tx, spot_id, &ids).await?;
            participants
                .iter()
                .filter_map(|p| {
                    let m = members.get(&p.member_id)?;
                    let payload = Payload::new(t, MemberBlock::of(m), spot, now, false);
                    Some(payload.with_course(course, ParticipantBlock::of(p)).body())
                })
                .collect()
        }
        Event::GroupMembersAdded { group_id, members } | Event::GroupMembersRemoved { group_id, members } => {
            let Some(group) = store::groups::get(tx.ex(), spot_id, group_id).await? else {
                return Ok(Vec::new());
            };
            let group = Named { id: group_id.uuid(), name: Cut(&group.name) };
            let ids: Vec<MemberId> = members.iter().map(|(id, _)| *id).collect();
            let found = members_by_id(tx, spot_id, &ids).await?;
            members
                .iter()
                .filter_map(|(id, role)| {
                    let m = found.get(id)?;
                    let payload = Payload::new(t, MemberBlock::of(m), spot, now, false);
                    Some(payload.with_group(group, role.as_str()).body())
                })
                .collect()
        }
    })
}

/// The id every sample payload's member has.
pub const SAMPLE_MEMBER_ID: Uuid = Uuid::nil();

/// A sample payload of `event_type` for a test send (`test: true`): a made-up member
/// (`jane.doe@example.com`, nil id), course, group and participant, and the real spot.
pub fn sample(event_type: EventType, spot_id: SpotId, spot_name: &str, at_ms: i64) -> Value {
    let member = MemberBlock {
        email: Some(Cut("jane.doe@example.com")),
        firstname: Cut("Jane"),
        id: SAMPLE_MEMBER_ID,
        lastname: Cut("Doe"),
        mobile_number: None,
        role: "Member",
        status: "Accepted",
        title: None,
        updated_at: at_ms,
    };
    let spot = Named { id: spot_id.uuid(), name: Cut(spot_name) };
    let payload = Payload::new(event_type, member, spot, at_ms, true);
    let participant = |status: &'static str| ParticipantBlock {
        completed_at: None,
        completion_rate: 0,
        id: SAMPLE_MEMBER_ID,
        invited_at: iso8601(Some(at_ms)),
        started_at: (status == "Started").then(|| iso8601(Some(at_ms))).flatten(),
        status,
        unenrolled_at: None,
    };
    let payload = match event_type {
        EventType::MemberCreated | EventType::MemberUpdated => payload,
        EventType::CourseParticipantCreated | EventType::CourseParticipantStatusUpdated => {
            let status = if event_type == EventType::CourseParticipantCreated { "Invited" } else { "Started" };
            payload.with_course(Named { id: SAMPLE_MEMBER_ID, name: Cut("Sample course") }, participant(status))
        }
        EventType::GroupMemberAdded | EventType::GroupMemberRemoved => {
            payload.with_group(Named { id: SAMPLE_MEMBER_ID, name: Cut("Sample group") }, "Member")
        }
    };
    serde_json::to_value(&payload).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_types_parse_and_print_their_wire_names() {
        for t in EventType::ALL {
            assert_eq!(t.as_str().parse::<EventType>(), Ok(*t));
            assert_eq!(serde_json::to_value(t).unwrap(), Value::from(t.as_str()));
        }
        assert_eq!(EventType::ALL.len(), EventType::NAMES.len());
        assert!("member.deleted".parse::<EventType>().unwrap_err().contains("member.created"));
        let all = EventType::mask(EventType::ALL);
        assert_eq!(all.count_ones() as usize, EventType::ALL.len());
    }

    /// The typed payloads write the very bytes the `serde_json` maps they replaced wrote
    /// (keys in alphabetical order), long strings cut alike.
    #[test]
    fn payloads_are_written_as_the_maps_wrote_them() {
        use serde_json::json;
        let mut m = Member::new_invited(SpotId::generate(), Some("ana@x.io".into()), None);
        m.firstname = "Ana \"Quoted\"".into();
        m.lastname = "é".repeat(MAX_STRING_CHARS + 3);
        m.title = Some("Dr".into());
        let spot_id = SpotId::generate();
        let spot = Named { id: spot_id.uuid(), name: Cut("Acme") };
        let old_member = json!({
            "id": m.id, "email": "ana@x.io", "firstname": "Ana \"Quoted\"",
            "lastname": format!("{}…", "é".repeat(MAX_STRING_CHARS)),
            "status": m.status.as_str(), "title": "Dr", "mobileNumber": m.mobile_number, "role": m.role.as_str(),
            "updatedAt": m.updated_at,
        });
        let old_spot = json!({"id": spot_id, "name": "Acme"});
        let at = 1_764_271_234_567_i64;
        let old = json!({
            "member": old_member, "type": "member.created", "spot": old_spot, "occurredAt": at / 1000,
            "occurredAtMs": at, "test": false,
        });
        let new = Payload::new(EventType::MemberCreated, MemberBlock::of(&m), spot, at, false).body();
        assert_eq!(new, old.to_string());
        let group_id = GroupId::generate();
        let payload = Payload::new(EventType::GroupMemberAdded, MemberBlock::of(&m), spot, at, false)
            .with_group(Named { id: group_id.uuid(), name: Cut("Team") }, GroupRole::Admin.as_str());
        let old = json!({
            "group": {"id": group_id, "name": "Team"}, "member": old_member, "groupRole": "Admin",
            "type": "group.member.added", "spot": old_spot, "occurredAt": at / 1000, "occurredAtMs": at, "test": false,
        });
        assert_eq!(payload.body(), old.to_string());
    }

    #[test]
    fn long_strings_are_cut() {
        let written = |s: &str| serde_json::to_value(Cut(s)).unwrap().as_str().unwrap().to_string();
        let long = "é".repeat(MAX_STRING_CHARS + 10);
        let c = written(&long);
        assert_eq!(c.chars().count(), MAX_STRING_CHARS + 1);
        assert!(c.ends_with('…'));
        assert_eq!(c, format!("{}…", "é".repeat(MAX_STRING_CHARS)));
        assert_eq!(written(&"é".repeat(MAX_STRING_CHARS)), "é".repeat(MAX_STRING_CHARS), "at the bound: whole");
        assert_eq!(written("short"), "short");
    }

    #[test]
    fn samples_have_the_catalogue_shape() {
        let spot = SpotId::generate();
        for t in EventType::ALL {
            let s = sample(*t, spot, "Acme", 1_764_271_234_567);
            assert_eq!(s["type"], t.as_str());
            assert_eq!(s["test"], true);
            assert_eq!(s["occurredAt"], 1_764_271_234);
            assert_eq!(s["occurredAtMs"], 1_764_271_234_567_i64);
            assert_eq!(s["spot"]["name"], "Acme");
            assert_eq!(s["member"]["email"], "jane.doe@example.com");
            assert_eq!(s["member"]["id"], "00000000-0000-0000-0000-000000000000");
        }
        let p = sample(EventType::CourseParticipantCreated, spot, "Acme", 0);
        assert_eq!(p["course"]["name"], "Sample course");
        assert_eq!(p["courseParticipant"]["status"], "Invited");
        let g = sample(EventType::GroupMemberRemoved, spot, "Acme", 0);
        assert_eq!(g["groupRole"], "Member");
    }
}

//! Groups (`meltingspot-api.md` §3.4, §5.3; contract §4, §8 "Groups"): static groups
//! with manual membership and smart groups whose membership the server computes.
//!
//! Membership is one table for both kinds. A smart group is computed in full once,
//! in the background, when it is created (`ready` turns true when done); from then on
//! every member write re-evaluates that one member against the spot's smart groups in
//! the same transaction ([`refresh_smart_memberships`]), so membership is current as
//! soon as the write commits and costs O(smart groups of the spot) per member change.
//! Every membership change goes through [`join`] / [`leave`], which keep the group's
//! member count.
//!
//! Full computations run in the background through a bounded queue
//! ([`start_computation`]: [`COMPUTE_WORKERS`] at a time, at most [`COMPUTE_QUEUE`]
//! admitted; the rest wait, unleased, for housekeeping), each in batches whose size
//! adapts so that a transaction holds SQLite's single write lock for about
//! `COMPUTE_HOLD`, pausing now and then (`store::WritePacer`). Fixed 2,000-member batches held
//! it for 3.2 s each, stalling every other spot's writes for as long.
//!
//! A batch is a range of member ids brought up to date by two set-based statements:
//! the rules compiled to SQL ([`Rules::member_test`], `store::smart_sql`) select the
//! members that join (`INSERT … SELECT`) and those that leave. Evaluating the rules in
//! Rust member by member took about 30 s per group at 1,000,000 members (figures in
//! BENCHMARKS.md); the Rust evaluator still decides single-member re-evaluations, and
//! a property test (`tests/smart_sql.rs`) holds both to the same answers.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicI64, Ordering};

use serde_json::Value;

use super::background::BackgroundJobs;
use super::events::Event;
use super::filter::{self, FieldSpec, Kind, ListQuery, Op};
use super::members::Member;
use super::properties::PropertyDef;
use super::smart_rules::{PropertyValues, Rules};
use super::vocab::{GroupKind, GroupRole, KaizalaGroupType};
use super::{from_rows, now_ms};
use crate::domain::ids::{GroupId, MemberId, SpotId};
use crate::error::{Entity, Error, Result};
use crate::store::property_values::StoredValue;
use crate::store::smart_sql::{IdRange, MemberTest};
use crate::store::{self, Db, Tx};

pub const MAX_BULK: usize = 200;
/// Members in the first transaction of a full smart-group computation; the next ones
/// double or halve (within [`COMPUTE_BATCH_MIN`]..=[`COMPUTE_BATCH_MAX`]) so that each
/// lasts about [`store::WRITE_SLICE`], whatever the disk and the rules cost. A batch is
/// a range of member ids brought up to date by two set-based statements.
pub const COMPUTE_BATCH: i64 = 4000;
pub const COMPUTE_BATCH_MIN: i64 = 250;
pub const COMPUTE_BATCH_MAX: i64 = 256_000;
/// How long a batch in SQL holds the write lock at most (it adapts between half this
/// and this): twice the slice of other long operations, as each batch has a fixed
/// cost (finding its range, the group's lock, the lease).
const COMPUTE_HOLD: std::time::Duration = std::time::Duration::from_millis(100);
/// The same bounds for rules evaluated in Rust, member by member (see
/// [`compute_smart_group`]).
const COMPUTE_BATCH_IN_RUST: i64 = 250;
const COMPUTE_BATCH_MIN_IN_RUST: i64 = 25;
const COMPUTE_BATCH_MAX_IN_RUST: i64 = 2000;
/// How long a replica's claim on a smart-group computation lasts without renewal, by
/// default (`--smart-group-lease-ms` sets it, see [`set_compute_lease`]).
pub const COMPUTE_LEASE_MS: i64 = 60_000;
static COMPUTE_LEASE: AtomicI64 = AtomicI64::new(COMPUTE_LEASE_MS);

/// Sets how long this process's claims on smart-group computations last without
/// renewal (from the configuration, at start-up). A batch renews the claim, so it must
/// stay well above a batch's duration; a replica that stops holds its computations
/// this long before another takes them over.
pub fn set_compute_lease(lease: std::time::Duration) {
    let ms = i64::try_from(lease.as_millis()).unwrap_or(i64::MAX).max(1);
    COMPUTE_LEASE.store(ms, Ordering::Relaxed);
}

fn compute_lease_ms() -> i64 {
    COMPUTE_LEASE.load(Ordering::Relaxed)
}
/// How long a computation waits for the transactions that were running when it began.
const EARLIER_WRITES_WAIT_MS: i64 = 30_000;

pub const GROUP_FILTERS: &[FieldSpec] =
    &[FieldSpec { field: "name", column: "name", kind: Kind::Text, ops: &[Op::Eq, Op::Contains] }];

pub const GROUP_MEMBER_FILTERS: &[FieldSpec] = &[
    FieldSpec { field: "email", column: "m.email_norm", kind: Kind::TextLower, ops: &[Op::In] },
    FieldSpec { field: "firstname", column: "m.firstname", kind: Kind::Text, ops: &[Op::In] },
    FieldSpec { field: "lastname", column: "m.lastname", kind: Kind::Text, ops: &[Op::In] },
    FieldSpec { field: "registrationDate", column: "m.registered_at", kind: Kind::Date, ops: &[Op::Before, Op::After] },
];

#[derive(Clone, Debug, PartialEq)]
pub struct Group {
    pub spot_id: SpotId,
    pub id: GroupId,
    pub name: String,
    pub description: Option<String>,
    pub emoji: Option<String>,
    pub icon: Option<String>,
    pub kind: GroupKind,
    /// Smart groups: the rules document (JSON text).
    pub rules: Option<String>,
    pub ready: bool,
    pub member_count: i64,
    /// Kaizala: the message shown to new members.
    pub welcome_message: Option<String>,
    /// Kaizala: the group's type.
    pub group_type: KaizalaGroupType,
    pub created_at: i64,
}

crate::domain::row_conversions!(
    Group,
    crate::store::groups::GroupRow {
        spot_id,
        id,
        name,
        description,
        emoji,
        icon,
        kind,
        rules,
        ready,
        member_count,
        welcome_message,
        group_type,
        created_at,
    }
);

impl Group {
    pub fn is_smart(&self) -> bool {
        self.kind == GroupKind::Smart
    }

    pub fn rules_json(&self) -> Option<Value> {
        self.rules.as_deref().and_then(|r| serde_json::from_str(r).ok())
    }
}

/// What a client asks for when creating a group.
#[derive(Clone, Debug, Default)]
pub struct NewGroup {
    pub name: Option<String>,
    pub description: Option<String>,
    pub emoji: Option<String>,
    pub kind: Option<String>,
    pub rules: Option<Value>,
    pub welcome_message: Option<String>,
    pub group_type: Option<String>,
}

fn prepare(spot_id: SpotId, n: NewGroup, props: &[PropertyDef]) -> Result<Group> {
    let name = n.name.as_deref().map(str::trim).unwrap_or_default().to_string();
    if name.is_empty() {
        return Err(Error::invalid("name", "is required"));
    }
    let kind = match n.kind.as_deref() {
        None => GroupKind::Static,
        Some(k) => k.parse().map_err(|_| Error::invalid("type", "must be Static or Smart"))?,
    };
    let rules = match (kind, n.rules) {
        (GroupKind::Static, None | Some(Value::Null)) => None,
        (GroupKind::Static, Some(_)) => return Err(Error::invalid("rules", "only a Smart group has rules")),
        (GroupKind::Smart, None | Some(Value::Null)) => {
            return Err(Error::invalid("rules", "is required for a Smart group"))
        }
        (GroupKind::Smart, Some(v)) => Some(Rules::parse_with(&v, props, true)?.to_json().to_string()),
    };
    let group_type = match n.group_type.as_deref() {
        None => KaizalaGroupType::Group,
        Some(t) => t.parse().map_err(|_| Error::invalid("groupType", "must be Group or ConnectGroup"))?,
    };
    Ok(Group {
        spot_id,
        id: GroupId::generate(),
        name,
        description: n.description,
        emoji: n.emoji,
        icon: None,
        ready: kind != GroupKind::Smart,
        kind,
        rules,
        member_count: 0,
        welcome_message: n.welcome_message,
        group_type,
        created_at: now_ms(),
    })
}

pub async fn list_groups(db: &Db, spot_id: SpotId, q: &ListQuery) -> Result<(Vec<Group>, i64)> {
    let preds = filter::validate(&q.filters, GROUP_FILTERS)?;
    let mut c = db.conn().await?;
    let (rows, total) = store::groups::list(c.ex(), spot_id, &preds, q.offset(), i64::from(q.limit)).await?;
    Ok((from_rows(rows), total))
}

pub async fn get_group(db: &Db, spot_id: SpotId, id: GroupId) -> Result<Group> {
    let mut c = db.conn().await?;
    store::groups::get(c.ex(), spot_id, id).await?.map(Group::from).ok_or(Error::NotFound(Entity::Group))
}

/// Creates a group inside the caller's transaction; a smart group still needs
/// [`start_computation`] after the commit.
pub async fn create_in(tx: &mut Tx, spot_id: SpotId, n: NewGroup) -> Result<Group> {
    let props = super::properties::all_in(tx.ex(), spot_id).await?;
    let g = prepare(spot_id, n, &props)?;
    store::groups::insert(tx.ex(), &(&g).into()).await?;
    Ok(g)
}

/// `POST /v1/groups`.
pub async fn create_group(db: &Db, spot_id: SpotId, n: NewGroup) -> Result<Group> {
    let mut tx = db.begin().await?;
    let g = create_in(&mut tx, spot_id, n).await?;
    tx.commit().await?;
    if g.is_smart() {
        start_computation(db, spot_id, g.id);
    }
    Ok(g)
}

/// `POST /v1/groups~bulkCreate`: the valid items are created; returns them and the
/// positions (in `items`) of the invalid ones, which the adapter echoes back as sent.
pub async fn bulk_create(db: &Db, spot_id: SpotId, items: Vec<NewGroup>) -> Result<(Vec<Group>, Vec<usize>)> {
    if items.is_empty() {
        return Err(Error::invalid("body", "must be a non-empty array of groups"));
    }
    if items.len() > MAX_BULK {
        return Err(Error::TooLarge);
    }
    let props = super::properties::list_properties(db, spot_id).await?;
    let mut valid = Vec::new();
    let mut failed = Vec::new();
    for (i, n) in items.into_iter().enumerate() {
        match prepare(spot_id, n, &props) {
            Ok(g) => valid.push(g),
            Err(_) => failed.push(i),
        }
    }
    let mut tx = db.begin().await?;
    for g in &valid {
        store::groups::insert(tx.ex(), &g.into()).await?;
    }
    tx.commit().await?;
    for g in valid.iter().filter(|g| g.is_smart()) {
        start_computation(db, spot_id, g.id);
    }
    Ok((valid, failed))
}

/// A partial update; `Some(None)` clears a nullable field.
#[derive(Clone, Debug, Default)]
pub struct GroupPatch {
    pub name: Option<String>,
    pub description: Option<Option<String>>,
    pub emoji: Option<Option<String>>,
    /// `type` as sent, when sent.
    pub kind: Option<String>,
    /// Whether `rules` was sent at all.
    pub rules_sent: bool,
}

/// `PUT /v1/groups/{id}`: name, description and emoji; rules and type are fixed.
pub async fn update_group(db: &Db, spot_id: SpotId, id: GroupId, p: GroupPatch) -> Result<Group> {
    let mut tx = db.begin().await?;
    let mut g =
        store::groups::get(tx.ex(), spot_id, id).await?.map(Group::from).ok_or(Error::NotFound(Entity::Group))?;
    if p.rules_sent || p.kind.as_deref().is_some_and(|k| k != g.kind.as_str()) {
        return Err(Error::Conflict(
            "A group's type and rules cannot be changed after creation; delete and recreate the group".into(),
        ));
    }
    if let Some(name) = p.name {
        let name = name.trim().to_string();
        if name.is_empty() {
            return Err(Error::invalid("name", "must not be empty"));
        }
        g.name = name;
    }
    if let Some(d) = p.description {
        g.description = d;
    }
    if let Some(e) = p.emoji {
        g.emoji = e;
    }
    store::groups::update(tx.ex(), &(&g).into()).await?;
    tx.commit().await?;
    Ok(g)
}

/// Saves name/welcome message/type changes made by the Kaizala dialect.
pub async fn save_in(tx: &mut Tx, g: &Group) -> Result<()> {
    Ok(store::groups::update(tx.ex(), &g.into()).await?)
}

/// `DELETE /v1/groups/{id}`: memberships go with the group; members stay.
pub async fn delete_group(db: &Db, spot_id: SpotId, id: GroupId) -> Result<()> {
    let mut tx = db.begin().await?;
    if !store::groups::delete(tx.ex(), spot_id, id).await? {
        return Err(Error::NotFound(Entity::Group));
    }
    tx.commit().await?;
    Ok(())
}

pub async fn list_group_members(
    db: &Db,
    spot_id: SpotId,
    group_id: GroupId,
    q: &ListQuery,
) -> Result<(Vec<Member>, i64)> {
    let preds = filter::validate(&q.filters, GROUP_MEMBER_FILTERS)?;
    let mut c = db.conn().await?;
    let g =
        store::groups::get(c.ex(), spot_id, group_id).await?.map(Group::from).ok_or(Error::NotFound(Entity::Group))?;
    let rows =
        store::memberships::list(c.ex(), spot_id, group_id, &preds, q.offset(), Some(i64::from(q.limit))).await?;
    let total = if preds.is_empty() {
        g.member_count
    } else {
        store::memberships::count(c.ex(), spot_id, group_id, &preds).await?
    };
    Ok((rows.into_iter().map(|(m, _)| m.into()).collect(), total))
}

/// Adds one membership (inside the caller's transaction); false when already a member.
/// Every membership addition of either dialect goes through here.
pub async fn join(
    tx: &mut Tx,
    spot_id: SpotId,
    group_id: GroupId,
    member_id: MemberId,
    group_role: GroupRole,
) -> Result<bool> {
    let added = store::memberships::insert(tx.ex(), spot_id, group_id, member_id, group_role, now_ms()).await?;
    if added {
        store::groups::add_member_count(tx.ex(), spot_id, group_id, 1).await?;
        let members = [(member_id, group_role)];
        super::events::emit(tx, spot_id, Event::GroupMembersAdded { group_id, members: &members }).await?;
        super::courses::invite_joiner(tx, spot_id, group_id, member_id).await?;
    }
    Ok(added)
}

/// [`join`] for many members at once, in set-based statements (a smart group's
/// computation); returns the members actually added.
async fn join_many(tx: &mut Tx, spot_id: SpotId, group_id: GroupId, member_ids: &[MemberId]) -> Result<Vec<MemberId>> {
    if member_ids.is_empty() {
        return Ok(Vec::new());
    }
    let added =
        store::memberships::insert_many(tx.ex(), spot_id, group_id, member_ids, GroupRole::Member, now_ms()).await?;
    joined(tx, spot_id, group_id, &added).await?;
    Ok(added)
}

/// What follows members' joining a group (as `Member`) in the same transaction: the
/// group's member count, their `group.member.added` events (one per member) and their
/// invitations to the group's courses.
async fn joined(tx: &mut Tx, spot_id: SpotId, group_id: GroupId, added: &[MemberId]) -> Result<()> {
    if added.is_empty() {
        return Ok(());
    }
    store::groups::add_member_count(tx.ex(), spot_id, group_id, added.len() as i64).await?;
    let members: Vec<(MemberId, GroupRole)> = added.iter().map(|m| (*m, GroupRole::Member)).collect();
    super::events::emit(tx, spot_id, Event::GroupMembersAdded { group_id, members: &members }).await?;
    super::courses::invite_joiners(tx, spot_id, group_id, added).await
}

/// What follows memberships' removal in the same transaction: the group's member
/// count and the `group.member.removed` events.
async fn removed_from(
    tx: &mut Tx,
    spot_id: SpotId,
    group_id: GroupId,
    removed: &[(MemberId, GroupRole)],
) -> Result<()> {
    if removed.is_empty() {
        return Ok(());
    }
    store::groups::add_member_count(tx.ex(), spot_id, group_id, -(removed.len() as i64)).await?;
    super::events::emit(tx, spot_id, Event::GroupMembersRemoved { group_id, members: removed }).await
}

/// Removes memberships (inside the caller's transaction); returns the ids removed.
pub async fn leave(tx: &mut Tx, spot_id: SpotId, group_id: GroupId, member_ids: &[MemberId]) -> Result<Vec<MemberId>> {
    let removed = store::memberships::delete_many(tx.ex(), spot_id, group_id, member_ids).await?;
    removed_from(tx, spot_id, group_id, &removed).await?;
    Ok(removed.into_iter().map(|(m, _)| m).collect())
}

/// Loads a group under its row lock (see `store::groups::lock`); 404 when absent.
async fn locked_group(tx: &mut Tx, spot_id: SpotId, group_id: GroupId) -> Result<Group> {
    if !store::groups::lock(tx.ex(), spot_id, group_id).await? {
        return Err(Error::NotFound(Entity::Group));
    }
    store::groups::get(tx.ex(), spot_id, group_id).await?.map(Group::from).ok_or(Error::NotFound(Entity::Group))
}

fn smart_refusal() -> Error {
    Error::Conflict("The membership of a smart group follows its rules; use its blacklist to exclude members".into())
}

/// `POST /v1/groups/{id}/spotMembers`: idempotent.
pub async fn add_member(db: &Db, spot_id: SpotId, group_id: GroupId, member_id: MemberId) -> Result<()> {
    store::retry_transient(|| add_member_once(db, spot_id, group_id, member_id)).await
}

/// One attempt (see [`store::retry_transient`]).
async fn add_member_once(db: &Db, spot_id: SpotId, group_id: GroupId, member_id: MemberId) -> Result<()> {
    let mut tx = db.begin().await?;
    let g = locked_group(&mut tx, spot_id, group_id).await?;
    store::members::get(tx.ex(), spot_id, member_id)
        .await?
        .map(Member::from)
        .ok_or(Error::NotFound(Entity::SpotMember))?;
    if g.is_smart() {
        return Err(smart_refusal());
    }
    join(&mut tx, spot_id, group_id, member_id, GroupRole::Member).await?;
    tx.commit().await?;
    Ok(())
}

/// Parses ids, sorting them into valid UUIDs and failures (echoed as sent).
fn split_ids(raw: &[String]) -> (Vec<MemberId>, Vec<String>) {
    let mut ok = Vec::new();
    let mut bad = Vec::new();
    let mut seen = HashSet::new();
    for r in raw {
        match r.trim().parse::<MemberId>() {
            Ok(id) => {
                if seen.insert(id) {
                    ok.push(id);
                }
            }
            Err(_) => bad.push(r.clone()),
        }
    }
    (ok, bad)
}

fn check_bulk(ids: &[String]) -> Result<()> {
    if ids.is_empty() {
        return Err(Error::invalid("spotMemberIds", "must contain at least 1 id"));
    }
    if ids.len() > MAX_BULK {
        return Err(Error::TooLarge);
    }
    Ok(())
}

/// `POST /v1/groups/{id}/spotMembers~bulkAdd`: (added ids, failed ids). Ids already in
/// the group count as added; unknown or foreign ids, and any id on a smart group, fail.
pub async fn bulk_add(
    db: &Db,
    spot_id: SpotId,
    group_id: GroupId,
    ids: &[String],
) -> Result<(Vec<String>, Vec<String>)> {
    check_bulk(ids)?;
    store::retry_transient(|| bulk_add_once(db, spot_id, group_id, ids)).await
}

/// One attempt (see [`store::retry_transient`]).
async fn bulk_add_once(
    db: &Db,
    spot_id: SpotId,
    group_id: GroupId,
    ids: &[String],
) -> Result<(Vec<String>, Vec<String>)> {
    let (parsed, _) = split_ids(ids);
    let mut tx = db.begin().await?;
    let g = locked_group(&mut tx, spot_id, group_id).await?;
    if g.is_smart() {
        return Ok((Vec::new(), ids.to_vec()));
    }
    let found: HashSet<MemberId> = from_rows::<_, Member>(store::members::get_many(tx.ex(), spot_id, &parsed).await?)
        .into_iter()
        .map(|m| m.id)
        .collect();
    // Both lists keep the order of the request (a repeated id is reported once).
    let mut added = Vec::new();
    let mut failed = Vec::new();
    let mut seen = HashSet::new();
    for raw in ids {
        let Ok(id) = raw.trim().parse::<MemberId>() else {
            failed.push(raw.clone());
            continue;
        };
        if !seen.insert(id) {
            continue;
        }
        if found.contains(&id) {
            join(&mut tx, spot_id, group_id, id, GroupRole::Member).await?;
            added.push(id.to_string());
        } else {
            failed.push(id.to_string());
        }
    }
    tx.commit().await?;
    Ok((added, failed))
}

/// `POST /v1/groups/{id}/spotMembers~bulkRemove`: how many members were actually removed.
pub async fn bulk_remove(db: &Db, spot_id: SpotId, group_id: GroupId, ids: &[String]) -> Result<u64> {
    check_bulk(ids)?;
    store::retry_transient(|| bulk_remove_once(db, spot_id, group_id, ids)).await
}

/// One attempt (see [`store::retry_transient`]).
async fn bulk_remove_once(db: &Db, spot_id: SpotId, group_id: GroupId, ids: &[String]) -> Result<u64> {
    let (parsed, _) = split_ids(ids);
    let mut tx = db.begin().await?;
    let g = locked_group(&mut tx, spot_id, group_id).await?;
    if g.is_smart() {
        return Err(smart_refusal());
    }
    let removed = leave(&mut tx, spot_id, group_id, &parsed).await?;
    tx.commit().await?;
    Ok(removed.len() as u64)
}

/// `blacklist~bulkAdd` / `blacklist~bulkRemove` of a smart group; returns the whole list.
pub async fn change_blacklist(
    db: &Db,
    spot_id: SpotId,
    group_id: GroupId,
    ids: &[String],
    add: bool,
) -> Result<Vec<MemberId>> {
    check_bulk(ids)?;
    store::retry_transient(|| change_blacklist_once(db, spot_id, group_id, ids, add)).await
}

/// One attempt of [`change_blacklist`] (see [`store::retry_transient`]).
async fn change_blacklist_once(
    db: &Db,
    spot_id: SpotId,
    group_id: GroupId,
    ids: &[String],
    add: bool,
) -> Result<Vec<MemberId>> {
    let (parsed, _) = split_ids(ids);
    let mut tx = db.begin().await?;
    let g =
        store::groups::get(tx.ex(), spot_id, group_id).await?.map(Group::from).ok_or(Error::NotFound(Entity::Group))?;
    if !g.is_smart() {
        return Err(Error::Conflict("Only a smart group has a blacklist".into()));
    }
    // The members (share-locked, so their state is current) before the group's lock:
    // the order in which a member write takes them, so neither waits on the other in a
    // cycle. A member write racing this call then either commits first (and is read
    // here) or re-reads the blacklist after this commits (`refresh_smart_memberships`).
    let members = from_rows::<_, Member>(store::members::get_many_for_share(tx.ex(), spot_id, &parsed).await?);
    if !store::groups::lock(tx.ex(), spot_id, group_id).await? {
        return Err(Error::NotFound(Entity::Group));
    }
    let props = super::properties::all_in(tx.ex(), spot_id).await?;
    let rules = parse_stored_rules(&g, &props)?;
    for m in &members {
        if add {
            store::blacklist::insert(tx.ex(), spot_id, group_id, m.id).await?;
            leave(&mut tx, spot_id, group_id, &[m.id]).await?;
        } else if store::blacklist::delete(tx.ex(), spot_id, group_id, m.id).await?
            && rules.matches_with(m, &property_values(&mut tx, m).await?)
        {
            join(&mut tx, spot_id, group_id, m.id, GroupRole::Member).await?;
        }
    }
    let list = store::blacklist::list(tx.ex(), spot_id, group_id).await?;
    tx.commit().await?;
    Ok(list)
}

/// A member's custom-property values, as property triggers read them.
async fn property_values(tx: &mut Tx, m: &Member) -> Result<PropertyValues> {
    let rows = store::property_values::list_of_member(tx.ex(), m.spot_id, m.id).await?;
    let mut out = PropertyValues::new();
    for (pid, _, text, num) in rows {
        out.entry(pid).or_default().push(StoredValue { text, num });
    }
    Ok(out)
}

fn parse_stored_rules(g: &Group, props: &[PropertyDef]) -> Result<Rules> {
    let v = g.rules_json().ok_or_else(|| Error::Internal(anyhow::anyhow!("smart group {} has no rules", g.id)))?;
    Rules::parse_with(&v, props, false)
}

/// Re-evaluates one member against every smart group of its spot (inside the
/// transaction that changed the member): joins the groups it now matches, leaves the
/// ones it no longer does. Blacklisted members never join.
pub async fn refresh_smart_memberships(tx: &mut Tx, m: &Member) -> Result<()> {
    refresh_smart_memberships_of(tx, std::slice::from_ref(m)).await
}

/// [`refresh_smart_memberships`] for several members of one spot (a chunk of a bulk
/// change): the spot's smart groups, their rules and its property definitions are
/// read and parsed once, not once per member.
pub async fn refresh_smart_memberships_of(tx: &mut Tx, members: &[Member]) -> Result<()> {
    let Some(spot_id) = members.first().map(|m| m.spot_id) else {
        return Ok(());
    };
    let smart = store::smart_groups::list(tx.ex(), spot_id).await?;
    if smart.is_empty() {
        return Ok(());
    }
    let uses_properties = smart.iter().any(|(_, r)| r.contains("\"customProperties."));
    let props = if uses_properties { super::properties::all_in(tx.ex(), spot_id).await? } else { Vec::new() };
    // Rules that no longer parse (a property they read was removed) match no one.
    let parsed: Vec<(GroupId, Option<Rules>)> = smart
        .iter()
        .map(|(group_id, rules)| {
            let rules =
                serde_json::from_str::<Value>(rules).ok().and_then(|v| Rules::parse_with(&v, &props, false).ok());
            (*group_id, rules)
        })
        .collect();
    for m in members {
        let current: HashSet<GroupId> =
            store::memberships::groups_of_member(tx.ex(), m.spot_id, m.id).await?.into_iter().collect();
        let blacklisted: HashSet<GroupId> =
            store::blacklist::groups_of_member(tx.ex(), m.spot_id, m.id).await?.into_iter().collect();
        let values = if uses_properties { property_values(tx, m).await? } else { PropertyValues::new() };
        for (group_id, rules) in &parsed {
            let group_id = *group_id;
            let should = rules.as_ref().is_some_and(|r| r.matches_with(m, &values)) && !blacklisted.contains(&group_id);
            let is = current.contains(&group_id);
            if should && !is {
                // Under the group's lock, re-read the blacklist: a concurrent
                // `blacklist~bulkAdd` holds that lock until it commits, and what it listed
                // must not be joined from a read taken before its commit.
                if !store::groups::lock(tx.ex(), m.spot_id, group_id).await?
                    || store::blacklist::contains(tx.ex(), m.spot_id, group_id, m.id).await?
                {
                    continue;
                }
                join(tx, m.spot_id, group_id, m.id, GroupRole::Member).await?;
            } else if !should && is {
                leave(tx, m.spot_id, group_id, &[m.id]).await?;
            }
        }
    }
    Ok(())
}

/// Smart-group computations running at once in this process.
pub const COMPUTE_WORKERS: usize = 2;
/// Computations admitted at once (running or waiting for a worker). Beyond, a new one
/// is not started here: its group stays `ready = false` without a lease, and the
/// housekeeping pass ([`resume_computations`], every 30 s) starts it later. Nothing is
/// lost, and a burst of smart-group creations cannot spawn a task per group.
pub const COMPUTE_QUEUE: usize = 64;

static COMPUTE_JOBS: BackgroundJobs<GroupId> = BackgroundJobs::new(COMPUTE_WORKERS, COMPUTE_QUEUE);

/// Members re-evaluated inside the changing transaction at most (see [`refresh_readers`]).
const REFRESH_IN_TX_MAX: usize = 500;

/// The smart groups of the spot whose rules contain `needle` (a quoted field name,
/// e.g. `"customRoleId"`).
pub(crate) async fn smart_groups_reading(tx: &mut Tx, spot_id: SpotId, needle: &str) -> Result<Vec<GroupId>> {
    Ok(store::smart_groups::list(tx.ex(), spot_id)
        .await?
        .into_iter()
        .filter(|(_, rules)| rules.contains(needle))
        .map(|(id, _)| id)
        .collect())
}

/// After a change underneath members (an option renamed or removed, a custom role
/// deleted), brings `readers` (the smart groups reading what changed, see
/// [`smart_groups_reading`]) up to date. Up to [`REFRESH_IN_TX_MAX`] members are
/// re-evaluated in the transaction, as a member write would. Past that, the readers are
/// marked not ready instead and returned, for the caller to recompute after commit
/// (sliced, through the bounded queue; housekeeping resumes them after a crash): the
/// transaction, which holds SQLite's one write lock, does not grow with the spot.
pub(crate) async fn refresh_readers(
    tx: &mut Tx,
    spot_id: SpotId,
    readers: &[GroupId],
    member_ids: Vec<MemberId>,
) -> Result<Vec<GroupId>> {
    if member_ids.is_empty() || readers.is_empty() {
        return Ok(Vec::new());
    }
    let mut ids = member_ids;
    ids.sort();
    ids.dedup();
    if ids.len() > REFRESH_IN_TX_MAX {
        for g in readers {
            store::smart_groups::set_not_ready(tx.ex(), spot_id, *g).await?;
        }
        return Ok(readers.to_vec());
    }
    for chunk in ids.chunks(store::sql::IN_LIST_MAX) {
        for m in from_rows::<_, Member>(store::members::get_many(tx.ex(), spot_id, chunk).await?) {
            refresh_smart_memberships(tx, &m).await?;
        }
    }
    Ok(Vec::new())
}

/// Queues the full computation of a smart group: it runs in the background on one of
/// [`COMPUTE_WORKERS`] slots; a group already queued is not queued twice, and a full
/// queue leaves the group to housekeeping (see [`COMPUTE_QUEUE`]).
pub fn start_computation(db: &Db, spot_id: SpotId, group_id: GroupId) {
    let db = db.clone();
    let admitted = COMPUTE_JOBS.spawn(group_id, async move {
        let _timer = crate::metrics::ComputationTimer::start();
        if let Err(e) = compute_smart_group(&db, spot_id, group_id).await {
            tracing::error!(error = ?e, %group_id, "smart group computation failed; another replica will retry");
        }
    });
    if !admitted {
        tracing::info!(%group_id, "smart group computation queue full or already queued; housekeeping resumes it");
    }
}

/// Takes over smart-group computations whose replica stopped (lease lapsed).
pub async fn resume_computations(db: &Db) -> Result<usize> {
    let mut c = db.conn().await?;
    let pending = store::smart_groups::pending_computes(c.ex(), now_ms()).await?;
    drop(c);
    let n = pending.len();
    for (spot_id, group_id) in pending {
        start_computation(db, spot_id, group_id);
    }
    Ok(n)
}

/// Waits (bounded) until every transaction in progress now has ended (PostgreSQL; a
/// no-op on SQLite). The group has committed, so a member write that starts from now
/// on sees it and keeps its member current itself; a write already under way may have
/// evaluated its member before the group existed, and its rows stay invisible to the
/// computation until it commits. Without this wait such members were never evaluated.
async fn wait_for_earlier_writes(db: &Db) -> Result<()> {
    let mut c = db.conn().await?;
    let running = store::smart_groups::transactions_in_progress(c.ex()).await?;
    let deadline = now_ms() + EARLIER_WRITES_WAIT_MS;
    while !running.is_empty() && store::smart_groups::count_in_progress(c.ex(), &running).await? > 0 {
        if now_ms() > deadline {
            tracing::warn!("smart group computation: transactions still running after {EARLIER_WRITES_WAIT_MS} ms");
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    Ok(())
}

/// Evaluates every member of the spot against a smart group, in batches, then marks
/// the group ready. Runs under a lease so that one replica does it at a time.
pub async fn compute_smart_group(db: &Db, spot_id: SpotId, group_id: GroupId) -> Result<()> {
    compute_in_batches_of_at_most(db, spot_id, group_id, COMPUTE_BATCH_MAX).await
}

/// [`compute_smart_group`] with batches of at most `max_batch` members (tests use small
/// ones to cross many batch boundaries).
#[doc(hidden)]
pub async fn compute_in_batches_of_at_most(db: &Db, spot_id: SpotId, group_id: GroupId, max_batch: i64) -> Result<()> {
    compute(db, spot_id, group_id, max_batch, false).await
}

/// [`compute_smart_group`] as it ran before rules compiled to SQL: member by member in
/// Rust. `benches/smart_groups.rs` compares the two.
#[doc(hidden)]
pub async fn compute_smart_group_in_rust(db: &Db, spot_id: SpotId, group_id: GroupId) -> Result<()> {
    compute(db, spot_id, group_id, COMPUTE_BATCH_MAX_IN_RUST, true).await
}

async fn compute(db: &Db, spot_id: SpotId, group_id: GroupId, max_batch: i64, in_rust: bool) -> Result<()> {
    let now = now_ms();
    let mut tx = db.begin().await?;
    let claimed = store::smart_groups::claim_compute(tx.ex(), spot_id, group_id, now, now + compute_lease_ms()).await?;
    let group = store::groups::get(tx.ex(), spot_id, group_id).await?.map(Group::from);
    tx.commit().await?;
    let (true, Some(group)) = (claimed, group) else {
        return Ok(());
    };
    wait_for_earlier_writes(db).await?;
    let props = {
        let mut c = db.conn().await?;
        super::properties::all_in(c.ex(), spot_id).await?
    };
    let rules = parse_stored_rules(&group, &props)?;
    let test = rules.member_test();
    // Rules near every cap (20 × 20 triggers of 100 values) bind more than a statement
    // may: those are evaluated in Rust, member by member, as before.
    let in_sql = !in_rust && test.bind_count() <= store::smart_sql::MAX_PREDICATE_BINDS;
    let (min, max) = if in_sql {
        (COMPUTE_BATCH_MIN, max_batch.max(1))
    } else {
        (COMPUTE_BATCH_MIN_IN_RUST, max_batch.clamp(1, COMPUTE_BATCH_MAX_IN_RUST))
    };
    let mut after = None;
    let first = if in_sql { COMPUTE_BATCH } else { COMPUTE_BATCH_IN_RUST };
    let mut size = first.clamp(min.min(max), max);
    let mut pacer = db.write_pacer();
    loop {
        let (next, held) = if in_sql {
            store::retry_transient(|| compute_batch(db, spot_id, group_id, &test, after, size)).await?
        } else {
            store::retry_transient(|| compute_batch_in_rust(db, spot_id, group_id, &rules, after, size)).await?
        };
        match next {
            Some(last) => after = Some(last),
            None => return Ok(()),
        }
        pacer.between_slices().await;
        // Keep each transaction near its target: SQLite's one write lock is held
        // throughout, so a fixed 2,000-member batch held it for seconds.
        let target = if in_sql { COMPUTE_HOLD } else { store::WRITE_SLICE };
        if held < target / 2 {
            size = (size * 2).min(max);
        } else if held > target {
            size = (size / 2).max(min.min(max));
        }
    }
}

/// Brings the next `size` members after `after` up to date in one transaction, in two
/// set-based statements (the matching ones not yet in join, the others leave); returns
/// the last member of the range (None once the group is ready, or was deleted
/// meanwhile) and how long the transaction held the write lock (from its begin, which
/// waits for the lock, to its commit). The last range is open-ended, and its
/// transaction marks the group ready.
async fn compute_batch(
    db: &Db,
    spot_id: SpotId,
    group_id: GroupId,
    test: &MemberTest,
    after: Option<MemberId>,
    size: i64,
) -> Result<(Option<MemberId>, std::time::Duration)> {
    let mut tx = db.begin().await?;
    let began = std::time::Instant::now();
    let (range, found) = store::smart_sql::next_range_for_share(tx.ex(), spot_id, after, size).await?;
    // The group's lock (after the members', as member writes take them) before the
    // blacklist is read, so a concurrent blacklist change is seen whole or not at all.
    if !store::groups::lock(tx.ex(), spot_id, group_id).await? {
        return Ok((None, began.elapsed()));
    }
    let last_range = found < size;
    let range = if last_range { IdRange { after, last: None } } else { range };
    // The members that left first: the delete evaluates the rules over the range only
    // when the range has memberships, which a first computation's has not until the
    // insert (run first, it made every batch evaluate the rules twice).
    let removed = store::smart_sql::delete_unmatching(tx.ex(), spot_id, group_id, range, test).await?;
    let added = store::smart_sql::insert_matching(tx.ex(), spot_id, group_id, range, test, now_ms()).await?;
    joined(&mut tx, spot_id, group_id, &added).await?;
    removed_from(&mut tx, spot_id, group_id, &removed).await?;
    if last_range {
        store::smart_groups::set_ready(tx.ex(), spot_id, group_id).await?;
    } else {
        store::smart_groups::extend_lease(tx.ex(), spot_id, group_id, now_ms() + compute_lease_ms()).await?;
    }
    tx.commit().await?;
    Ok((if last_range { None } else { range.last }, began.elapsed()))
}

/// [`compute_batch`] evaluating the rules in Rust, member by member (rules too large
/// for one statement).
async fn compute_batch_in_rust(
    db: &Db,
    spot_id: SpotId,
    group_id: GroupId,
    rules: &Rules,
    after: Option<MemberId>,
    size: i64,
) -> Result<(Option<MemberId>, std::time::Duration)> {
    let mut tx = db.begin().await?;
    let began = std::time::Instant::now();
    let batch: Vec<Member> = from_rows(store::members::batch_for_share(tx.ex(), spot_id, after, size).await?);
    let Some(last) = batch.last().map(|m| m.id) else {
        store::smart_groups::set_ready(tx.ex(), spot_id, group_id).await?;
        tx.commit().await?;
        return Ok((None, began.elapsed()));
    };
    // The group's lock (after the members', as member writes take them) before the
    // blacklist is read, so a concurrent blacklist change is seen whole or not at all.
    if !store::groups::lock(tx.ex(), spot_id, group_id).await? {
        return Ok((None, began.elapsed()));
    }
    let blacklisted: HashSet<MemberId> =
        store::blacklist::list(tx.ex(), spot_id, group_id).await?.into_iter().collect();
    let values = if rules.uses_properties() {
        let ids: Vec<MemberId> = batch.iter().map(|m| m.id).collect();
        store::property_values::list_of_members(tx.ex(), spot_id, &ids).await?
    } else {
        HashMap::new()
    };
    let (mut matching, mut out) = (Vec::new(), Vec::new());
    for m in &batch {
        let member_values = values.get(&m.id).cloned().unwrap_or_default();
        if rules.matches_with(m, &member_values) && !blacklisted.contains(&m.id) {
            matching.push(m.id);
        } else {
            out.push(m.id);
        }
    }
    join_many(&mut tx, spot_id, group_id, &matching).await?;
    leave(&mut tx, spot_id, group_id, &out).await?;
    store::smart_groups::extend_lease(tx.ex(), spot_id, group_id, now_ms() + compute_lease_ms()).await?;
    tx.commit().await?;
    Ok((Some(last), began.elapsed()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_computation_queue_is_bounded_and_admits_a_group_once() {
        let first = COMPUTE_JOBS.admit(GroupId::generate());
        assert!(first.is_some());
        let again = first.as_ref().and_then(|a| COMPUTE_JOBS.admit(a.key()));
        assert!(again.is_none(), "a group already queued is not queued twice");
        // Fill the queue (other tests of this process may hold places too).
        let mut held = Vec::new();
        while let Some(a) = COMPUTE_JOBS.admit(GroupId::generate()) {
            held.push(a);
            assert!(held.len() <= COMPUTE_QUEUE);
        }
        assert!(COMPUTE_JOBS.admit(GroupId::generate()).is_none(), "a full queue admits no one");
        // A finished computation gives its place back.
        held.pop();
        assert!(COMPUTE_JOBS.admit(GroupId::generate()).is_some());
    }
}

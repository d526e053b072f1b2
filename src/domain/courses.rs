//! Courses and learner progress (`meltingspot-api.md` §3.10, §5.8; contract §4, §8
//! "Courses").
//!
//! A participant moves Invited → Started → Completed, or to Unenrolled from anywhere;
//! re-inviting an Unenrolled member makes them Invited again. The server sets every
//! timestamp. A course linked to groups invites their current members and every
//! member who joins a linked group later ([`invite_joiner`], called by
//! `groups::join`).
//!
//! Linking (`groups~bulkAdd`) stays inside the request but never holds the database
//! for long: one transaction writes the link rows (from its commit on, every joiner is
//! invited by its own join), then the groups' current members are invited in slices,
//! each its own transaction of batched multi-row inserts that commits once
//! [`store::WRITE_SLICE`] has passed, with a pause between slices that lets other
//! writers in (`Db::yield_write_lock`). A 100,000-member group held SQLite's single
//! write lock for 2.2 s in one transaction, stalling every other spot's writes (and
//! their rate limiter's); in slices no hold exceeded 80 ms and the whole link took
//! 1.2 s (test build, `tests/api/robustness.rs`). A link interrupted part-way (a crash, a lost
//! connection) leaves the link rows and the participants invited so far: the call is
//! idempotent, so a client that did not get its 204 sends it again and the slices
//! invite the rest (existing participants are skipped).
//!
//! Locks (PostgreSQL; SQLite serialises writers): every write to a course's
//! participants holds the course's row lock, taken after any group lock (the order
//! `groups::join` already follows: group, then course); a progress update holds the
//! participant's row lock; a course update holds the course's.

use std::collections::{HashMap, HashSet};

use super::email::{self, Invitation};
use super::events::{self, Event};
use super::filter::{self, FieldSpec, Kind, ListQuery, Op};
use super::ids::{CourseId, GroupId, MemberId, ParticipantId, SpotId};
use super::members::Member;
use super::vocab::{self, CoursePrivacy, CourseStatus, NavigationMode, ParticipantStatus};
use super::{from_rows, now_ms};
use crate::error::{Entity, Error, Result};
use crate::store::{self, Db, Tx};

pub const MAX_BULK: usize = 200;
/// Rows per multi-row insert when inviting a whole group.
pub const INVITE_BATCH: usize = 500;

pub const COURSE_FILTERS: &[FieldSpec] = &[
    FieldSpec { field: "status", column: "status", kind: Kind::Enum(CourseStatus::NAMES), ops: &[Op::Eq] },
    FieldSpec { field: "privacy", column: "privacy", kind: Kind::Enum(CoursePrivacy::NAMES), ops: &[Op::Eq] },
];

pub const PARTICIPANT_FILTERS: &[FieldSpec] = &[
    FieldSpec { field: "firstname", column: "m.firstname", kind: Kind::Text, ops: &[Op::In] },
    FieldSpec { field: "lastname", column: "m.lastname", kind: Kind::Text, ops: &[Op::In] },
    FieldSpec { field: "email", column: "m.email_norm", kind: Kind::TextLower, ops: &[Op::In] },
    FieldSpec {
        field: "status",
        column: "p.status",
        kind: Kind::Enum(ParticipantStatus::NAMES),
        ops: &[Op::Eq, Op::In],
    },
];

#[derive(Clone, Debug, PartialEq)]
pub struct Course {
    pub spot_id: SpotId,
    pub id: CourseId,
    pub title: String,
    pub description: Option<String>,
    pub privacy: CoursePrivacy,
    pub status: CourseStatus,
    pub navigation_mode: NavigationMode,
    pub participant_count: i64,
}

crate::domain::row_conversions!(
    Course,
    crate::store::courses::CourseRow {
        spot_id,
        id,
        title,
        description,
        privacy,
        status,
        navigation_mode,
        participant_count,
    }
);

/// A participant with the member fields the wire object denormalises.
#[derive(Clone, Debug, PartialEq)]
pub struct Participant {
    pub spot_id: SpotId,
    pub id: ParticipantId,
    pub course_id: CourseId,
    pub member_id: MemberId,
    pub status: ParticipantStatus,
    pub invited_by: Option<MemberId>,
    pub invited_at: i64,
    pub started_at: Option<i64>,
    pub completed_at: Option<i64>,
    pub unenrolled_at: Option<i64>,
    pub last_activity_at: Option<i64>,
    pub completion_rate: i64,
    pub member_email: Option<String>,
    pub member_firstname: String,
    pub member_lastname: String,
}

crate::domain::row_conversions!(
    Participant,
    crate::store::participants::ParticipantRow {
        spot_id,
        id,
        course_id,
        member_id,
        status,
        invited_by,
        invited_at,
        started_at,
        completed_at,
        unenrolled_at,
        last_activity_at,
        completion_rate,
        member_email,
        member_firstname,
        member_lastname,
    }
);

/// Fields of a course as a client sends them (create: title required; update: all optional).
#[derive(Clone, Debug, Default)]
pub struct CourseInput {
    pub title: Option<String>,
    pub description: Option<Option<String>>,
    pub status: Option<String>,
    pub privacy: Option<String>,
    pub navigation_mode: Option<String>,
}

fn apply(c: &mut Course, input: CourseInput) -> Result<()> {
    if let Some(t) = input.title {
        let t = t.trim().to_string();
        if t.is_empty() {
            return Err(Error::invalid("title", "must not be empty"));
        }
        c.title = t;
    }
    if let Some(d) = input.description {
        c.description = d;
    }
    if let Some(s) = input.status {
        c.status = vocab::parse("status", &s)?;
    }
    if let Some(p) = input.privacy {
        c.privacy = vocab::parse("privacy", &p)?;
    }
    if let Some(n) = input.navigation_mode {
        c.navigation_mode = vocab::parse("navigationMode", &n)?;
    }
    Ok(())
}

pub async fn list_courses(db: &Db, spot_id: SpotId, q: &ListQuery) -> Result<(Vec<Course>, i64)> {
    let preds = filter::validate(&q.filters, COURSE_FILTERS)?;
    let mut c = db.conn().await?;
    let (rows, total) = store::courses::list(c.ex(), spot_id, &preds, q.offset(), i64::from(q.limit)).await?;
    Ok((from_rows(rows), total))
}

pub async fn get_course(db: &Db, spot_id: SpotId, id: CourseId) -> Result<Course> {
    let mut c = db.conn().await?;
    store::courses::get(c.ex(), spot_id, id).await?.map(Course::from).ok_or(Error::NotFound(Entity::Course))
}

/// `POST /v1/courses` (extension): defaults Draft, Secret, Flexible.
pub async fn create_course(db: &Db, spot_id: SpotId, input: CourseInput) -> Result<Course> {
    if input.title.as_deref().is_none_or(|t| t.trim().is_empty()) {
        return Err(Error::invalid("title", "is required"));
    }
    let mut course = Course {
        spot_id,
        id: CourseId::generate(),
        title: String::new(),
        description: None,
        privacy: CoursePrivacy::Secret,
        status: CourseStatus::Draft,
        navigation_mode: NavigationMode::Flexible,
        participant_count: 0,
    };
    apply(&mut course, input)?;
    let mut tx = db.begin().await?;
    store::courses::insert(tx.ex(), &(&course).into(), now_ms()).await?;
    tx.commit().await?;
    Ok(course)
}

pub async fn update_course(db: &Db, spot_id: SpotId, id: CourseId, input: CourseInput) -> Result<Course> {
    let mut tx = db.begin().await?;
    // Under the row lock: concurrent partial updates each keep the other's fields.
    let mut course = locked_course(&mut tx, spot_id, id).await?;
    apply(&mut course, input)?;
    store::courses::update(tx.ex(), &(&course).into()).await?;
    tx.commit().await?;
    Ok(course)
}

/// Deletes a course; its participants and group links go with it.
pub async fn delete_course(db: &Db, spot_id: SpotId, id: CourseId) -> Result<()> {
    let mut tx = db.begin().await?;
    if !store::courses::delete(tx.ex(), spot_id, id).await? {
        return Err(Error::NotFound(Entity::Course));
    }
    tx.commit().await?;
    Ok(())
}

async fn course_in(tx: &mut Tx, spot_id: SpotId, id: CourseId) -> Result<Course> {
    store::courses::get(tx.ex(), spot_id, id).await?.map(Course::from).ok_or(Error::NotFound(Entity::Course))
}

/// The course under its row lock (see the module notes); 404 when absent.
async fn locked_course(tx: &mut Tx, spot_id: SpotId, id: CourseId) -> Result<Course> {
    if !store::courses::lock(tx.ex(), spot_id, id).await? {
        return Err(Error::NotFound(Entity::Course));
    }
    course_in(tx, spot_id, id).await
}

pub async fn list_participants(
    db: &Db,
    spot_id: SpotId,
    course_id: CourseId,
    q: &ListQuery,
) -> Result<(Vec<Participant>, i64)> {
    let preds = filter::validate(&q.filters, PARTICIPANT_FILTERS)?;
    let mut c = db.conn().await?;
    let course = store::courses::get(c.ex(), spot_id, course_id)
        .await?
        .map(Course::from)
        .ok_or(Error::NotFound(Entity::Course))?;
    let items =
        from_rows(store::participants::list(c.ex(), spot_id, course_id, &preds, q.offset(), i64::from(q.limit)).await?);
    let total = if preds.is_empty() {
        course.participant_count
    } else {
        store::participants::count(c.ex(), spot_id, course_id, &preds).await?
    };
    Ok((items, total))
}

pub async fn get_participant(db: &Db, spot_id: SpotId, course_id: CourseId, id: ParticipantId) -> Result<Participant> {
    let mut c = db.conn().await?;
    store::courses::get(c.ex(), spot_id, course_id).await?.ok_or(Error::NotFound(Entity::Course))?;
    store::participants::get(c.ex(), spot_id, course_id, id)
        .await?
        .map(Participant::from)
        .ok_or(Error::NotFound(Entity::CourseParticipant))
}

/// Invites members (inside the caller's transaction): new participants are created,
/// Unenrolled ones become Invited again when `reinvite_unenrolled` (an explicit
/// invitation; group links leave them Unenrolled), others stay as they are. Returns
/// the members whose participation is new or re-invited. The caller holds the
/// course's lock.
async fn invite_members(
    tx: &mut Tx,
    spot_id: SpotId,
    course_id: CourseId,
    member_ids: &[MemberId],
    invited_by: Option<MemberId>,
    reinvite_unenrolled: bool,
) -> Result<Vec<MemberId>> {
    let now = now_ms();
    let mut changed = Vec::new();
    let known: HashSet<MemberId> = if reinvite_unenrolled {
        let existing: Vec<Participant> =
            from_rows(store::participants::get_many_by_member(tx.ex(), spot_id, course_id, member_ids).await?);
        changed.extend(
            reinvite(
                tx,
                spot_id,
                course_id,
                existing.iter().filter(|p| p.status == ParticipantStatus::Unenrolled),
                invited_by,
                now,
            )
            .await?,
        );
        existing.iter().map(|p| p.member_id).collect()
    } else {
        // Group links and joiners: the insert itself skips the members who participate
        // already (one probe of the unique key each). Looking them up first with an
        // `IN` list was planned on PostgreSQL as a scan of the course's participants
        // (statistics taken while the course was empty): quadratic in a large link.
        HashSet::new()
    };
    let fresh: Vec<(ParticipantId, MemberId)> =
        member_ids.iter().filter(|m| !known.contains(m)).map(|m| (ParticipantId::generate(), *m)).collect();
    for chunk in fresh.chunks(INVITE_BATCH) {
        let mut inserted: HashSet<MemberId> =
            store::participants::insert_invited(tx.ex(), spot_id, course_id, chunk, invited_by, now)
                .await?
                .into_iter()
                .collect();
        store::courses::add_participant_count(tx.ex(), spot_id, course_id, inserted.len() as i64).await?;
        // In the order asked for, each member once.
        let member_ids: Vec<MemberId> = chunk.iter().map(|(_, m)| *m).filter(|m| inserted.remove(m)).collect();
        events::emit(tx, spot_id, Event::ParticipantsCreated { course_id, member_ids: &member_ids }).await?;
        changed.extend(member_ids);
    }
    Ok(changed)
}

/// Makes Unenrolled participants Invited again; returns their member ids.
async fn reinvite<'a>(
    tx: &mut Tx,
    spot_id: SpotId,
    course_id: CourseId,
    unenrolled: impl Iterator<Item = &'a Participant>,
    invited_by: Option<MemberId>,
    now: i64,
) -> Result<Vec<MemberId>> {
    let mut updated = Vec::new();
    for p in unenrolled {
        let mut p = p.clone();
        p.status = ParticipantStatus::Invited;
        p.invited_at = now;
        p.invited_by = invited_by;
        p.started_at = None;
        p.completed_at = None;
        p.unenrolled_at = None;
        p.completion_rate = 0;
        store::participants::update(tx.ex(), &(&p).into()).await?;
        updated.push(p);
    }
    events::emit(tx, spot_id, Event::ParticipantStatusUpdated { course_id, participants: &updated }).await?;
    Ok(updated.into_iter().map(|p| p.member_id).collect())
}

/// [`invite_members`], answering with the participants that are new or re-invited.
async fn invite_in(
    tx: &mut Tx,
    spot_id: SpotId,
    course_id: CourseId,
    member_ids: &[MemberId],
    invited_by: Option<MemberId>,
    reinvite_unenrolled: bool,
) -> Result<Vec<Participant>> {
    let ids = invite_members(tx, spot_id, course_id, member_ids, invited_by, reinvite_unenrolled).await?;
    Ok(from_rows(store::participants::get_many_by_member(tx.ex(), spot_id, course_id, &ids).await?))
}

async fn check_inviter(tx: &mut Tx, spot_id: SpotId, invited_by: Option<MemberId>) -> Result<()> {
    if let Some(by) = invited_by {
        if store::members::get(tx.ex(), spot_id, by).await?.is_none() {
            return Err(Error::invalid("invitedBySpotMemberId", format!("no spot member '{by}'")));
        }
    }
    Ok(())
}

/// `POST …/participants`: (participant, true) when newly invited, (existing, false)
/// otherwise. With `notify`, a new or re-invited participant is sent an invitation email.
pub async fn invite_participant(
    db: &Db,
    spot_id: SpotId,
    course_id: CourseId,
    member_id: MemberId,
    invited_by: Option<MemberId>,
    notify: bool,
) -> Result<(Participant, bool)> {
    store::retry_transient(|| invite_participant_once(db, spot_id, course_id, member_id, invited_by, notify)).await
}

/// One attempt of [`invite_participant`] (see [`store::retry_transient`]).
async fn invite_participant_once(
    db: &Db,
    spot_id: SpotId,
    course_id: CourseId,
    member_id: MemberId,
    invited_by: Option<MemberId>,
    notify: bool,
) -> Result<(Participant, bool)> {
    let mut tx = db.begin().await?;
    let course = locked_course(&mut tx, spot_id, course_id).await?;
    let member = store::members::get(tx.ex(), spot_id, member_id)
        .await?
        .map(Member::from)
        .ok_or(Error::NotFound(Entity::SpotMember))?;
    check_inviter(&mut tx, spot_id, invited_by).await?;
    let invited = invite_in(&mut tx, spot_id, course_id, &[member_id], invited_by, true).await?;
    if notify && !invited.is_empty() {
        let what = Invitation::Course { course_id, title: &course.title };
        email::queue_invitations(&mut tx, spot_id, what, &[&member]).await?;
    }
    let out = match invited.into_iter().next() {
        Some(p) => (p, true),
        None => {
            let existing: Vec<Participant> =
                from_rows(store::participants::get_many_by_member(tx.ex(), spot_id, course_id, &[member_id]).await?);
            let p = existing.into_iter().next().ok_or(Error::NotFound(Entity::CourseParticipant))?;
            (p, false)
        }
    };
    tx.commit().await?;
    Ok(out)
}

/// `POST …/participants~bulkInvite`: any unknown or foreign id → 400 naming them and
/// nothing written; otherwise (new or re-invited participants, all participants asked for).
/// With `notify`, the new and re-invited participants are sent an invitation email.
pub async fn bulk_invite(
    db: &Db,
    spot_id: SpotId,
    course_id: CourseId,
    raw_ids: &[String],
    invited_by: Option<MemberId>,
    notify: bool,
) -> Result<(Vec<Participant>, Vec<Participant>)> {
    if raw_ids.is_empty() {
        return Err(Error::invalid("spotMemberIds", "must contain at least 1 id"));
    }
    if raw_ids.len() > MAX_BULK {
        return Err(Error::TooLarge);
    }
    let mut ids = Vec::new();
    let mut bad = Vec::new();
    for r in raw_ids {
        match r.trim().parse::<MemberId>() {
            Ok(id) if !ids.contains(&id) => ids.push(id),
            Ok(_) => {}
            Err(_) => bad.push(r.clone()),
        }
    }
    store::retry_transient(|| bulk_invite_once(db, spot_id, course_id, &ids, bad.clone(), invited_by, notify)).await
}

/// One attempt of [`bulk_invite`] (see [`store::retry_transient`]).
async fn bulk_invite_once(
    db: &Db,
    spot_id: SpotId,
    course_id: CourseId,
    ids: &[MemberId],
    mut bad: Vec<String>,
    invited_by: Option<MemberId>,
    notify: bool,
) -> Result<(Vec<Participant>, Vec<Participant>)> {
    let mut tx = db.begin().await?;
    let course = locked_course(&mut tx, spot_id, course_id).await?;
    check_inviter(&mut tx, spot_id, invited_by).await?;
    let found: HashMap<MemberId, Member> =
        from_rows::<_, Member>(store::members::get_many(tx.ex(), spot_id, ids).await?)
            .into_iter()
            .map(|m| (m.id, m))
            .collect();
    bad.extend(ids.iter().filter(|id| !found.contains_key(id)).map(|id| id.to_string()));
    if !bad.is_empty() {
        return Err(Error::invalid("spotMemberIds", format!("unknown spot members: {}", bad.join(", "))));
    }
    let invited = invite_in(&mut tx, spot_id, course_id, ids, invited_by, true).await?;
    if notify && !invited.is_empty() {
        let to: Vec<&Member> = invited.iter().filter_map(|p| found.get(&p.member_id)).collect();
        let what = Invitation::Course { course_id, title: &course.title };
        email::queue_invitations(&mut tx, spot_id, what, &to).await?;
    }
    let all: Vec<Participant> =
        from_rows(store::participants::get_many_by_member(tx.ex(), spot_id, course_id, ids).await?);
    tx.commit().await?;
    Ok((invited, all))
}

/// Learner progress (`PUT …/participants/{id}`, extension): allowed moves are
/// Invited→Started→Completed and any→Unenrolled; 409 names both statuses otherwise.
pub async fn update_progress(
    db: &Db,
    spot_id: SpotId,
    course_id: CourseId,
    id: ParticipantId,
    status: Option<String>,
    completion_rate: Option<i64>,
) -> Result<Participant> {
    let status = match status.as_deref().map(str::parse::<ParticipantStatus>) {
        Some(Ok(s)) if s.is_settable() => Some(s),
        Some(_) => return Err(Error::invalid("status", vocab::must_be_one_of(ParticipantStatus::SETTABLE))),
        None => None,
    };
    if let Some(r) = completion_rate {
        if !(0..=100).contains(&r) {
            return Err(Error::invalid("completionRate", "must be an integer from 0 to 100"));
        }
    }
    if status.is_none() && completion_rate.is_none() {
        return Err(Error::invalid("body", "send status and/or completionRate"));
    }
    let mut tx = db.begin().await?;
    course_in(&mut tx, spot_id, course_id).await?;
    // Under the participant's lock, so that concurrent moves are checked one after the
    // other (a Completed racing an Unenrolled must not overwrite it).
    if !store::participants::lock(tx.ex(), spot_id, course_id, id).await? {
        return Err(Error::NotFound(Entity::CourseParticipant));
    }
    let mut p = store::participants::get(tx.ex(), spot_id, course_id, id)
        .await?
        .map(Participant::from)
        .ok_or(Error::NotFound(Entity::CourseParticipant))?;
    let now = now_ms();
    let status_before = p.status;
    if let Some(to) = status {
        let from = p.status;
        if !from.can_move_to(to) {
            return Err(Error::Conflict(format!("A participant cannot move from {from} to {to}")));
        }
        match to {
            ParticipantStatus::Started if p.started_at.is_none() => p.started_at = Some(now),
            ParticipantStatus::Completed => {
                p.completed_at = p.completed_at.or(Some(now));
                p.completion_rate = 100;
            }
            ParticipantStatus::Unenrolled => p.unenrolled_at = Some(now),
            _ => {}
        }
        p.status = to;
    }
    if let Some(r) = completion_rate {
        match p.status {
            ParticipantStatus::Started => p.completion_rate = r,
            ParticipantStatus::Completed if r == 100 => {}
            other => {
                return Err(Error::Conflict(format!(
                    "completionRate can change only while Started (the participant is {other})"
                )))
            }
        }
    }
    p.last_activity_at = Some(now);
    store::participants::update(tx.ex(), &(&p).into()).await?;
    if p.status != status_before {
        let participants = std::slice::from_ref(&p);
        events::emit(&mut tx, spot_id, Event::ParticipantStatusUpdated { course_id, participants }).await?;
    }
    tx.commit().await?;
    Ok(p)
}

fn parse_group_ids(raw: &[String]) -> Result<Vec<GroupId>> {
    if raw.is_empty() {
        return Err(Error::invalid("groupIds", "must contain at least 1 id"));
    }
    if raw.len() > MAX_BULK {
        return Err(Error::TooLarge);
    }
    let mut ids = Vec::new();
    let mut bad = Vec::new();
    for r in raw {
        match r.trim().parse::<GroupId>() {
            Ok(id) => {
                if !ids.contains(&id) {
                    ids.push(id)
                }
            }
            Err(_) => bad.push(r.clone()),
        }
    }
    if !bad.is_empty() {
        return Err(Error::invalid("groupIds", format!("unknown groups: {}", bad.join(", "))));
    }
    Ok(ids)
}

async fn check_groups(tx: &mut Tx, spot_id: SpotId, ids: &[GroupId]) -> Result<()> {
    let found: HashSet<GroupId> =
        store::groups::get_many(tx.ex(), spot_id, ids).await?.into_iter().map(|g| g.id).collect();
    let missing: Vec<String> = ids.iter().filter(|id| !found.contains(id)).map(|id| id.to_string()).collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(Error::invalid("groupIds", format!("unknown groups: {}", missing.join(", "))))
    }
}

/// `groups~bulkAdd`: links groups and invites all their current members.
///
/// In short transactions (see the module notes): first the links, under the groups'
/// locks (in id order, before the course's) so that a member joining concurrently
/// either commits first and is read by the invitation slices, or waits for the links
/// and is invited by [`invite_joiner`]; then the groups' members, slice by slice.
pub async fn link_groups(db: &Db, spot_id: SpotId, course_id: CourseId, raw: &[String]) -> Result<()> {
    let ids = parse_group_ids(raw)?;
    store::retry_transient(|| write_links(db, spot_id, course_id, &ids)).await?;
    for gid in &ids {
        let mut after = None;
        while let Some(last) = store::retry_transient(|| invite_slice(db, spot_id, course_id, *gid, after)).await? {
            after = Some(last);
            db.yield_write_lock().await;
        }
    }
    Ok(())
}

/// The link rows of a `groups~bulkAdd`, in one transaction.
async fn write_links(db: &Db, spot_id: SpotId, course_id: CourseId, ids: &[GroupId]) -> Result<()> {
    let mut tx = db.begin().await?;
    course_in(&mut tx, spot_id, course_id).await?;
    check_groups(&mut tx, spot_id, ids).await?;
    let mut sorted = ids.to_vec();
    sorted.sort();
    for gid in &sorted {
        if !store::groups::lock(tx.ex(), spot_id, *gid).await? {
            return Err(Error::invalid("groupIds", format!("unknown groups: {gid}")));
        }
    }
    locked_course(&mut tx, spot_id, course_id).await?;
    for gid in ids {
        store::course_groups::insert(tx.ex(), spot_id, course_id, *gid).await?;
    }
    tx.commit().await?;
    Ok(())
}

/// Invites the members of `group_id` after `after` (in member id order) in one
/// transaction, batch after batch until [`store::WRITE_SLICE`] has passed; returns the
/// last member invited, or None when the group is done. A course deleted or a link
/// removed meanwhile ends the work (the participants invited so far stay).
async fn invite_slice(
    db: &Db,
    spot_id: SpotId,
    course_id: CourseId,
    group_id: GroupId,
    mut after: Option<MemberId>,
) -> Result<Option<MemberId>> {
    let mut tx = db.begin().await?;
    // From here on the write lock is held (on SQLite the begin waited for it).
    let started = std::time::Instant::now();
    if !store::courses::lock(tx.ex(), spot_id, course_id).await?
        || !store::course_groups::contains(tx.ex(), spot_id, course_id, group_id).await?
    {
        return Ok(None);
    }
    loop {
        let batch = store::memberships::member_ids(tx.ex(), spot_id, group_id, after, INVITE_BATCH as i64).await?;
        let Some(last) = batch.last().copied() else {
            tx.commit().await?;
            return Ok(None);
        };
        invite_members(&mut tx, spot_id, course_id, &batch, None, false).await?;
        after = Some(last);
        if started.elapsed() >= store::WRITE_SLICE {
            tx.commit().await?;
            return Ok(after);
        }
    }
}

/// `groups~bulkRemove`: stops inviting future members; participants stay.
pub async fn unlink_groups(db: &Db, spot_id: SpotId, course_id: CourseId, raw: &[String]) -> Result<()> {
    let ids = parse_group_ids(raw)?;
    let mut tx = db.begin().await?;
    course_in(&mut tx, spot_id, course_id).await?;
    check_groups(&mut tx, spot_id, &ids).await?;
    for gid in &ids {
        store::course_groups::delete(tx.ex(), spot_id, course_id, *gid).await?;
    }
    tx.commit().await?;
    Ok(())
}

/// Invites a member who just joined `group_id` to every course linked to it
/// (inside the joining transaction, which holds the group's lock). A course deleted
/// meanwhile is skipped.
pub async fn invite_joiner(tx: &mut Tx, spot_id: SpotId, group_id: GroupId, member_id: MemberId) -> Result<()> {
    invite_joiners(tx, spot_id, group_id, &[member_id]).await
}

/// [`invite_joiner`] for many members who just joined `group_id` together.
pub async fn invite_joiners(tx: &mut Tx, spot_id: SpotId, group_id: GroupId, member_ids: &[MemberId]) -> Result<()> {
    if member_ids.is_empty() {
        return Ok(());
    }
    for course_id in store::course_groups::courses_of_group(tx.ex(), spot_id, group_id).await? {
        if !store::courses::lock(tx.ex(), spot_id, course_id).await? {
            continue;
        }
        for chunk in member_ids.chunks(INVITE_BATCH) {
            invite_members(tx, spot_id, course_id, chunk, None, false).await?;
        }
    }
    Ok(())
}

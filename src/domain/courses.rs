//! Courses and learner progress (`meltingspot-api.md` §3.10, §5.8; contract §4, §8
//! "Courses").
//!
//! A participant moves Invited → Started → Completed, or to Unenrolled from anywhere;
//! re-inviting an Unenrolled member makes them Invited again. The server sets every
//! timestamp. A course linked to groups invites their current members and every
//! member who joins a linked group later ([`invite_joiner`], called by
//! `groups::join`).
//!
//! Linking (`groups~bulkAdd`) answers at once, whatever the groups' size: one
//! transaction writes the link rows (from its commit on, every joiner is invited by its
//! own join) and, for groups of up to [`LINK_INLINE_MAX`] members in all, invites them
//! too. A larger group's link is written not `ready` and its current members are
//! invited by a *link job* in the background ([`start_link_job`]), in slices: each its
//! own transaction of batched multi-row inserts that commits once [`store::WRITE_SLICE`]
//! has passed, pausing now and then to let another process's writers in
//! (`store::WritePacer`). In the request, a 100,000-member group held SQLite's single
//! write lock for 2.2 s in one transaction; sliced in the request it still took 3 s on
//! SQLite and outlived the 30 s request timeout on PostgreSQL (408). A course answers
//! `groupsReady: false` while one of its links is being worked.
//!
//! A link job is durable and safe with several replicas, as a smart group's computation
//! is: its state is on the link row (`course_groups`, migration 0012), and each slice's
//! transaction moves the cursor (`invited_through`, the last member invited in id
//! order) with the invitations it makes, so a crash loses at most the slice under way
//! and the work resumes at the cursor. Only the holder of the link's lease
//! (`leased_by`, `lease_until`) works it, and each slice renews the lease and checks it
//! still holds it; housekeeping on any replica ([`resume_link_jobs`]) starts the links
//! nobody works (never started, or their lease lapsed). At most [`LINK_WORKERS`] jobs run
//! at once per process and [`LINK_QUEUE`] are admitted; the rest wait for housekeeping.
//! Unlinking (`groups~bulkRemove`) or deleting the course stops a job at its next slice
//! (the participants invited so far stay); linking a linked group again while its job
//! runs starts no second job, and once it is ready invites its members once more
//! (members who participate already are skipped): that completes a link interrupted
//! before migration 0012, when links were worked inside their request.
//!
//! Locks (PostgreSQL; SQLite serialises writers): every write to a course's
//! participants holds the course's row lock, taken after any group lock (the order
//! `groups::join` already follows: group, then course), then a link row's (a link
//! job's slice, a link written again); a progress update holds the participant's row
//! lock; a course update holds the course's.

use std::collections::{HashMap, HashSet};

use super::background::BackgroundJobs;
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
    /// False while a link job is still inviting the members of a linked group.
    pub groups_ready: bool,
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
        groups_ready,
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
        groups_ready: true,
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

/// `groups~bulkAdd`: links groups and has all their current members invited.
///
/// One transaction writes the links, under the groups' locks (in id order, before the
/// course's) so that a member joining concurrently either commits first and is read by
/// the invitation, or waits for the links and is invited by [`invite_joiner`]. Groups
/// of [`LINK_INLINE_MAX`] members in all are invited in that transaction too; the
/// others are left to a link job each ([`start_link_job`]), which this call starts
/// without waiting for it (see the module notes).
pub async fn link_groups(db: &Db, spot_id: SpotId, course_id: CourseId, raw: &[String]) -> Result<()> {
    let ids = parse_group_ids(raw)?;
    let jobs = store::retry_transient(|| write_links(db, spot_id, course_id, &ids)).await?;
    for group_id in jobs {
        start_link_job(db, spot_id, course_id, group_id);
    }
    Ok(())
}

/// The link rows of a `groups~bulkAdd`, in one transaction, with the invitation of the
/// small groups' members; returns the links left to a job.
async fn write_links(db: &Db, spot_id: SpotId, course_id: CourseId, ids: &[GroupId]) -> Result<Vec<GroupId>> {
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
    // Under the groups' locks their member counts are exact.
    let sizes: HashMap<GroupId, i64> =
        store::groups::get_many(tx.ex(), spot_id, ids).await?.into_iter().map(|g| (g.id, g.member_count)).collect();
    let mut inline_left = LINK_INLINE_MAX;
    let mut jobs = Vec::new();
    for gid in ids {
        let size = sizes.get(gid).copied().unwrap_or(0);
        let inline = size <= inline_left;
        if store::course_groups::insert(tx.ex(), spot_id, course_id, *gid, inline).await? {
            inline_left -= size;
            let mut after = None;
            while let Some(last) = invite_batch(&mut tx, spot_id, course_id, *gid, after).await? {
                after = Some(last);
            }
        } else {
            // A new link, one invited again, or one whose job is under way: a second job
            // for it is not admitted (here) or finds it leased (elsewhere).
            jobs.push(*gid);
        }
    }
    tx.commit().await?;
    Ok(jobs)
}

/// Invites the next [`INVITE_BATCH`] members of `group_id` after `after` (in member id
/// order) inside the caller's transaction, which holds the course's lock; returns the
/// last one, or None when the group has no more.
async fn invite_batch(
    tx: &mut Tx,
    spot_id: SpotId,
    course_id: CourseId,
    group_id: GroupId,
    after: Option<MemberId>,
) -> Result<Option<MemberId>> {
    let batch = store::memberships::member_ids(tx.ex(), spot_id, group_id, after, INVITE_BATCH as i64).await?;
    invite_members(tx, spot_id, course_id, &batch, None, false).await?;
    Ok(if batch.len() < INVITE_BATCH { None } else { batch.last().copied() })
}

/// Link jobs running at once in this process.
pub const LINK_WORKERS: usize = 2;
/// Link jobs admitted at once (running or waiting for a worker). Beyond, a new one is
/// not started here: its link stays not ready without a lease, and the housekeeping
/// pass ([`resume_link_jobs`], every 30 s) starts it later.
pub const LINK_QUEUE: usize = 64;
/// How long a process's claim on a link job lasts without renewal (each slice renews
/// it); a process that stops holds its jobs this long before another takes them over.
pub const LINK_LEASE_MS: i64 = 60_000;
/// The members (of the groups of one `groups~bulkAdd`, in all) invited inside the
/// request's own transaction: two multi-row inserts, a few ms. Larger groups go to a
/// link job, so the request answers at once whatever their size.
pub const LINK_INLINE_MAX: i64 = 1_000;

static LINK_JOBS: BackgroundJobs<(CourseId, GroupId)> = BackgroundJobs::new(LINK_WORKERS, LINK_QUEUE);
/// This process, as the holder of link leases (`course_groups.leased_by`).
static THIS_PROCESS: std::sync::LazyLock<uuid::Uuid> = std::sync::LazyLock::new(super::new_id);

/// Queues the job that invites the members of a link that is not ready: it runs in the
/// background on one of [`LINK_WORKERS`] slots; a link already queued here is not
/// queued twice, and a full queue leaves it to housekeeping (see [`LINK_QUEUE`]).
pub fn start_link_job(db: &Db, spot_id: SpotId, course_id: CourseId, group_id: GroupId) {
    let db = db.clone();
    let admitted = LINK_JOBS.spawn((course_id, group_id), async move {
        if let Err(e) = run_link_job(&db, spot_id, course_id, group_id).await {
            tracing::error!(error = ?e, %course_id, %group_id, "course link job failed; housekeeping resumes it");
        }
    });
    if !admitted {
        tracing::debug!(%course_id, %group_id, "course link job queue full or already queued; housekeeping resumes it");
    }
}

/// Starts the link jobs no process is working: never started (the queue was full),
/// left by a process that stopped (lease lapsed), or failed in this one. Run by
/// housekeeping on every replica; returns how many links were found.
pub async fn resume_link_jobs(db: &Db) -> Result<usize> {
    let mut c = db.conn().await?;
    let pending = store::course_groups::pending(c.ex(), now_ms(), *THIS_PROCESS).await?;
    drop(c);
    let n = pending.len();
    for (spot_id, course_id, group_id) in pending {
        start_link_job(db, spot_id, course_id, group_id);
    }
    Ok(n)
}

/// Claims a link that is not ready (free, lapsed or already this process's) and
/// invites its members from its cursor on, slice by slice, until it is ready, unlinked
/// or its course deleted. Without the claim (another process works it) it does nothing.
async fn run_link_job(db: &Db, spot_id: SpotId, course_id: CourseId, group_id: GroupId) -> Result<()> {
    let now = now_ms();
    let mut tx = db.begin().await?;
    let claimed =
        store::course_groups::claim(tx.ex(), spot_id, course_id, group_id, *THIS_PROCESS, now, now + LINK_LEASE_MS)
            .await?;
    tx.commit().await?;
    if !claimed {
        return Ok(());
    }
    let mut pacer = db.write_pacer();
    while store::retry_transient(|| invite_slice(db, spot_id, course_id, group_id)).await? {
        pacer.between_slices().await;
    }
    Ok(())
}

/// One transaction of a link job: renews the lease and reads the cursor, invites the
/// next members batch after batch until [`store::WRITE_SLICE`] has passed, then moves
/// the cursor in the same transaction (or marks the link ready once the group has no
/// more). Returns whether there is more to do. A course deleted, a link removed or a
/// lease taken over by another process meanwhile ends the work (the participants
/// invited so far stay).
async fn invite_slice(db: &Db, spot_id: SpotId, course_id: CourseId, group_id: GroupId) -> Result<bool> {
    let mut tx = db.begin().await?;
    // From here on the write lock is held (on SQLite the begin waited for it).
    let started = std::time::Instant::now();
    if !store::courses::lock(tx.ex(), spot_id, course_id).await? {
        return Ok(false);
    }
    let until = now_ms() + LINK_LEASE_MS;
    let Some(mut after) =
        store::course_groups::renew(tx.ex(), spot_id, course_id, group_id, *THIS_PROCESS, until).await?
    else {
        return Ok(false);
    };
    loop {
        match invite_batch(&mut tx, spot_id, course_id, group_id, after).await? {
            None => {
                store::course_groups::set_ready(tx.ex(), spot_id, course_id, group_id).await?;
                tx.commit().await?;
                return Ok(false);
            }
            Some(last) => {
                after = Some(last);
                if started.elapsed() >= store::WRITE_SLICE {
                    store::course_groups::advance(tx.ex(), spot_id, course_id, group_id, last).await?;
                    tx.commit().await?;
                    return Ok(true);
                }
            }
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

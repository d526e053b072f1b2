//! Spot members (`meltingspot-api.md` §3.1; contract §3, §6, §8 "Members").
//!
//! A member is identified in its spot by a lower-cased email (MeltingSpot) or an E.164
//! mobile number (Kaizala); one member per email and per number, even under concurrent
//! invitations. The spot's member count is kept in the same transaction as every
//! insert, so an unfiltered list never counts rows.

use std::collections::{BTreeMap, HashMap, HashSet};

use uuid::Uuid;

use super::events::Event;
use super::filter::{self, FieldSpec, Kind, ListQuery, Op};
use super::vocab::{self, MemberRole, MemberStatus};
use super::{from_rows, new_id, now_ms};
use crate::domain::ids::{MemberId, RoleId, SpotId};
use crate::error::{Entity, Error, Result};
use crate::store::{self, Db, Ex};

pub const MAX_BULK_INVITE: usize = 200;

#[derive(Clone, Debug, PartialEq)]
pub struct Member {
    pub spot_id: SpotId,
    pub id: MemberId,
    pub user_id: Option<Uuid>,
    pub email: Option<String>,
    pub mobile_number: Option<String>,
    pub title: Option<String>,
    pub lang: String,
    pub role: MemberRole,
    pub custom_role_id: Option<RoleId>,
    pub status: MemberStatus,
    pub firstname: String,
    pub lastname: String,
    pub warnings: i64,
    pub avatar_url: Option<String>,
    /// JSON object of extra embed base URLs, or None for the default only.
    pub embed_base_urls: Option<String>,
    pub invited_at: i64,
    pub registered_at: Option<i64>,
    pub updated_at: i64,
    pub last_activity_at: Option<i64>,
}

crate::domain::row_conversions!(
    Member,
    crate::store::members::MemberRow {
        spot_id,
        id,
        user_id,
        email,
        mobile_number,
        title,
        lang,
        role,
        custom_role_id,
        status,
        firstname,
        lastname,
        warnings,
        avatar_url,
        embed_base_urls,
        invited_at,
        registered_at,
        updated_at,
        last_activity_at,
    }
);

impl Member {
    /// A new `Invited` member of `spot_id` with default fields.
    pub fn new_invited(spot_id: SpotId, email: Option<String>, mobile_number: Option<String>) -> Member {
        let now = now_ms();
        Member {
            spot_id,
            id: MemberId::generate(),
            user_id: None,
            email,
            mobile_number,
            title: None,
            lang: "en".into(),
            role: MemberRole::Member,
            custom_role_id: None,
            status: MemberStatus::Invited,
            firstname: String::new(),
            lastname: String::new(),
            warnings: 0,
            avatar_url: None,
            embed_base_urls: None,
            invited_at: now,
            registered_at: None,
            updated_at: now,
            last_activity_at: None,
        }
    }

    /// Sets the status; the first move to `Accepted` registers the member.
    pub fn set_status(&mut self, status: MemberStatus, now: i64) {
        if status == MemberStatus::Accepted && self.registered_at.is_none() {
            self.registered_at = Some(now);
            if self.user_id.is_none() {
                self.user_id = Some(new_id());
            }
        }
        self.status = status;
    }
}

/// The filters of `GET /v1/spotMembers`.
pub const MEMBER_FILTERS: &[FieldSpec] = &[
    FieldSpec { field: "email", column: "email_norm", kind: Kind::TextLower, ops: &[Op::In] },
    FieldSpec { field: "firstname", column: "firstname", kind: Kind::Text, ops: &[Op::In] },
    FieldSpec { field: "lastname", column: "lastname", kind: Kind::Text, ops: &[Op::In] },
    FieldSpec { field: "customRoleId", column: "custom_role_id", kind: Kind::Uuid, ops: &[Op::Eq] },
    FieldSpec { field: "invitationDate", column: "invited_at", kind: Kind::Date, ops: &[Op::Before, Op::After] },
    FieldSpec { field: "registrationDate", column: "registered_at", kind: Kind::Date, ops: &[Op::Before, Op::After] },
];

/// Trims and checks an email address.
pub fn normalize_email(field: &str, raw: &str) -> Result<String> {
    let email = raw.trim();
    if email.is_empty() {
        return Err(Error::invalid(field, "is required"));
    }
    if !email_address::EmailAddress::is_valid(email) {
        return Err(Error::invalid(field, format!("'{email}' is not a valid email address")));
    }
    Ok(email.to_string())
}

pub async fn list_members(db: &Db, spot_id: SpotId, q: &ListQuery) -> Result<(Vec<Member>, i64)> {
    // Borrowed, not cloned: every filter's strings were copied per request.
    let is_property = |f: &&filter::RawFilter| f.field.starts_with("customProperties.");
    let preds = filter::validate(q.filters.iter().filter(|f| !is_property(f)), MEMBER_FILTERS)?;
    let prop_raw: Vec<&filter::RawFilter> = q.filters.iter().filter(is_property).collect();
    let props = super::properties::property_filters(db, spot_id, &prop_raw).await?;
    let mut c = db.conn().await?;
    let items = from_rows::<_, Member>(
        store::members::list(c.ex(), spot_id, &preds, &props, q.offset(), i64::from(q.limit)).await?,
    );
    let total = if preds.is_empty() && props.is_empty() {
        store::spots::member_count(c.ex(), spot_id).await?.unwrap_or(0)
    } else {
        store::members::count(c.ex(), spot_id, &preds, &props).await?
    };
    Ok((items, total))
}

pub async fn get_member(db: &Db, spot_id: SpotId, id: MemberId) -> Result<Member> {
    let mut c = db.conn().await?;
    store::members::get(c.ex(), spot_id, id).await?.map(Member::from).ok_or(Error::NotFound(Entity::SpotMember))
}

/// Inserts `candidate` unless its email/number exists; returns the member and whether it is new.
/// Keeps the spot's member count. Runs inside the caller's transaction.
pub async fn insert_or_get(ex: &mut crate::store::Tx, candidate: Member) -> Result<(Member, bool)> {
    if let Some(m) = store::members::insert_if_absent(ex.ex(), &(&candidate).into()).await?.map(Member::from) {
        super::events::emit_counting_members(ex, m.spot_id, 1, Event::MemberCreated(std::slice::from_ref(&m))).await?;
        super::groups::refresh_smart_memberships(ex, &m).await?;
        return Ok((m, true));
    }
    let existing = match (&candidate.email, &candidate.mobile_number) {
        (Some(email), _) => store::members::get_by_email(ex.ex(), candidate.spot_id, email).await?.map(Member::from),
        (None, Some(mobile)) => {
            store::members::get_by_mobile(ex.ex(), candidate.spot_id, mobile).await?.map(Member::from)
        }
        (None, None) => None,
    };
    existing.map(|m| (m, false)).ok_or_else(|| Error::Conflict("member conflicts with an existing member".into()))
}

/// `POST /v1/spotMembers`: invites `email`; an existing member is returned as it is.
/// With `notify`, a new member is sent an invitation email.
pub async fn invite_member(db: &Db, spot_id: SpotId, email: &str, notify: bool) -> Result<(Member, bool)> {
    let email = normalize_email("email", email)?;
    store::retry_transient(|| async {
        let mut tx = db.begin().await?;
        store::members::lock_spot_for_inserts(tx.ex(), spot_id).await?;
        let out = insert_or_get(&mut tx, Member::new_invited(spot_id, Some(email.clone()), None)).await?;
        if notify && out.1 {
            super::email::queue_invitations(&mut tx, spot_id, super::email::Invitation::Spot, &[&out.0]).await?;
        }
        tx.commit().await?;
        Ok(out)
    })
    .await
}

/// Why an email of a bulk invitation was not invited.
#[derive(Clone, Debug, PartialEq)]
pub struct FailedInvite {
    pub email: String,
    pub reason: String,
}

/// `POST /v1/spotMembers~bulkInvite`: every valid email is invited (or found) once;
/// invalid emails and repeats within the request are reported as failed. With
/// `notify`, the members this call created are sent an invitation email.
pub async fn bulk_invite(
    db: &Db,
    spot_id: SpotId,
    emails: &[String],
    notify: bool,
) -> Result<(Vec<Member>, Vec<FailedInvite>)> {
    if emails.is_empty() {
        return Err(Error::invalid("emails", "must contain at least 1 email"));
    }
    if emails.len() > MAX_BULK_INVITE {
        return Err(Error::TooLarge);
    }
    let mut seen = HashSet::new();
    let mut valid = Vec::new();
    let mut failed = Vec::new();
    for raw in emails {
        match normalize_email("email", raw) {
            Err(e) => failed.push(FailedInvite { email: raw.clone(), reason: reason_of(&e) }),
            Ok(email) => {
                if seen.insert(email.to_lowercase()) {
                    valid.push(email);
                } else {
                    failed.push(FailedInvite { email: raw.clone(), reason: "is repeated in this request".into() });
                }
            }
        }
    }
    if valid.is_empty() {
        return Ok((Vec::new(), failed));
    }
    // Inserted in one order (lower-cased email), whatever the request's, so that
    // concurrent invitations take the unique index's locks in the same order; answered
    // in the request's order.
    let mut sorted: Vec<&String> = valid.iter().collect();
    sorted.sort_by_key(|e| e.to_lowercase());
    let by_email = store::retry_transient(|| async {
        let mut tx = db.begin().await?;
        store::members::lock_spot_for_inserts(tx.ex(), spot_id).await?;
        let mut by_email = HashMap::with_capacity(sorted.len());
        let mut created = Vec::new();
        for email in &sorted {
            let (m, new) = insert_or_get(&mut tx, Member::new_invited(spot_id, Some((*email).clone()), None)).await?;
            if new {
                created.push(email.to_lowercase());
            }
            by_email.insert(email.to_lowercase(), m);
        }
        if notify {
            let to: Vec<&Member> = created.iter().filter_map(|e| by_email.get(e)).collect();
            super::email::queue_invitations(&mut tx, spot_id, super::email::Invitation::Spot, &to).await?;
        }
        tx.commit().await?;
        Ok(by_email)
    })
    .await?;
    let created = valid.iter().filter_map(|e| by_email.get(&e.to_lowercase()).cloned()).collect();
    Ok((created, failed))
}

fn reason_of(e: &Error) -> String {
    match e {
        Error::Invalid { reason, .. } => reason.clone(),
        other => other.to_string(),
    }
}

/// A partial update of a member; `Some(None)` clears a nullable field.
#[derive(Clone, Debug, Default)]
pub struct MemberPatch {
    pub firstname: Option<String>,
    pub lastname: Option<String>,
    pub title: Option<Option<String>>,
    pub role: Option<String>,
    pub status: Option<String>,
    pub avatar_url: Option<Option<String>>,
    pub embed_base_urls: Option<Option<BTreeMap<String, String>>>,
    pub custom_role_id: Option<Option<RoleId>>,
}

/// A member's role and status as a client sends them, checked: the role must be one of
/// [`MemberRole`], the status one of [`MemberStatus::WRITABLE`].
fn parse_role_and_status(
    role: Option<&str>,
    status: Option<&str>,
) -> Result<(Option<MemberRole>, Option<MemberStatus>)> {
    let role = role.map(|r| vocab::parse::<MemberRole>("role", r)).transpose()?;
    let status = match status {
        Some(s) => match s.parse::<MemberStatus>() {
            Ok(s) if s.is_writable() => Some(s),
            _ => return Err(Error::invalid("status", vocab::must_be_one_of(MemberStatus::WRITABLE))),
        },
        None => None,
    };
    Ok((role, status))
}

/// `PUT /v1/spotMembers/{id}`.
pub async fn update_member(db: &Db, spot_id: SpotId, id: MemberId, patch: MemberPatch) -> Result<Member> {
    let (role, status) = parse_role_and_status(patch.role.as_deref(), patch.status.as_deref())?;
    store::retry_transient(|| apply_member_patch(db, spot_id, id, patch.clone(), role, status)).await
}

/// One attempt of [`update_member`]: the member is read under its row lock, so two
/// concurrent partial updates (one the first name, one the last) each keep the other's.
async fn apply_member_patch(
    db: &Db,
    spot_id: SpotId,
    id: MemberId,
    patch: MemberPatch,
    role: Option<MemberRole>,
    status: Option<MemberStatus>,
) -> Result<Member> {
    let mut tx = db.begin().await?;
    let mut m = store::members::get_for_update(tx.ex(), spot_id, id)
        .await?
        .map(Member::from)
        .ok_or(Error::NotFound(Entity::SpotMember))?;
    let before = m.clone();
    if let Some(Some(role_id)) = patch.custom_role_id {
        if store::custom_roles::get(tx.ex(), spot_id, role_id).await?.is_none() {
            return Err(Error::invalid("customRoleId", format!("no custom role '{role_id}' in this spot")));
        }
    }
    let now = now_ms();
    if let Some(v) = patch.firstname {
        m.firstname = v;
    }
    if let Some(v) = patch.lastname {
        m.lastname = v;
    }
    if let Some(v) = patch.title {
        m.title = v;
    }
    if let Some(v) = role {
        m.role = v;
    }
    if let Some(v) = status {
        m.set_status(v, now);
    }
    if let Some(v) = patch.avatar_url {
        m.avatar_url = v;
    }
    if let Some(v) = patch.embed_base_urls {
        m.embed_base_urls = match v {
            Some(map) => Some(serde_json::to_string(&map).map_err(|e| Error::Internal(e.into()))?),
            None => None,
        };
    }
    if let Some(v) = patch.custom_role_id {
        m.custom_role_id = v;
    }
    let changed = m != before;
    m.updated_at = now;
    store::members::update(tx.ex(), &(&m).into()).await?;
    if changed {
        super::events::emit(&mut tx, spot_id, Event::MemberUpdated(std::slice::from_ref(&m))).await?;
    }
    if !m.status.may_sign_in() {
        // Signed out: the tokens go, so reactivating the member does not revive them.
        store::kz_tokens::revoke_member(tx.ex(), spot_id, id).await?;
    }
    super::groups::refresh_smart_memberships(&mut tx, &m).await?;
    tx.commit().await?;
    Ok(m)
}

/// Sets the status of the spot's members among `ids` inside the caller's transaction
/// (a chunk of a bulk action), with what a status change through
/// [`update_member`] does for each: `registeredAt` on a first acceptance, one
/// `member.updated` event per member whose status moves, a signed-out member's
/// Kaizala tokens revoked, smart groups re-evaluated. Set-based: the chunk is read
/// under its row locks in one statement, written in one and its events queued in one,
/// where a member at a time made seven round trips and rewrote every index of the
/// member row. Returns how many of `ids` are not members of the spot (nothing is
/// written for them); members already in `status` are left as they are.
pub async fn set_status_of_many_in(
    tx: &mut store::Tx,
    spot_id: SpotId,
    ids: &[MemberId],
    status: MemberStatus,
) -> Result<usize> {
    if !status.is_writable() {
        return Err(Error::invalid("status", vocab::must_be_one_of(MemberStatus::WRITABLE)));
    }
    let rows = store::members::get_many_for_update(tx.ex(), spot_id, ids).await?;
    let missing = ids.len() - rows.len();
    let now = now_ms();
    let mut changed = Vec::with_capacity(rows.len());
    let mut registering = Vec::new();
    for row in rows {
        let mut m = Member::from(row);
        if m.status == status {
            continue;
        }
        let registered_before = m.registered_at.is_some();
        m.set_status(status, now);
        if !registered_before && m.registered_at.is_some() {
            registering.push(m.id);
        }
        m.updated_at = now;
        changed.push(m);
    }
    if changed.is_empty() {
        return Ok(missing);
    }
    let written: Vec<store::members::MemberRow> = changed.iter().map(Into::into).collect();
    store::members::update_status_many(tx.ex(), spot_id, status, now, &written, &registering).await?;
    super::events::emit(tx, spot_id, Event::MemberUpdated(&changed)).await?;
    if !status.may_sign_in() {
        let ids: Vec<MemberId> = changed.iter().map(|m| m.id).collect();
        store::kz_tokens::revoke_members(tx.ex(), spot_id, &ids).await?;
    }
    super::groups::refresh_smart_memberships_of(tx, &changed).await?;
    Ok(missing)
}

/// Loads a member inside a transaction (404 when absent or of another spot).
pub async fn get_in(ex: Ex<'_>, spot_id: SpotId, id: MemberId) -> Result<Member> {
    store::members::get(ex, spot_id, id).await?.map(Member::from).ok_or(Error::NotFound(Entity::SpotMember))
}

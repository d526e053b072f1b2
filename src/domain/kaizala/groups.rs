//! Groups, sub-groups, members and messages as Kaizala sees them (`kaizala-api.md` §4):
//! group membership carries the Kaizala role (Admin/Member), and a spot Admin acts as
//! an Admin of every group.

use std::collections::HashSet;

use uuid::Uuid;

use super::hierarchy::{walk, Direction};
use super::{member_by_mobile, mobile, webhooks, KzCaller};
use crate::domain::groups::{self, Group, NewGroup};
use crate::domain::ids::{GroupId, MemberId, SpotId};
use crate::domain::members::{self, Member};
use crate::domain::vocab::{GroupRole, KzEventType, MemberRole, MemberStatus};
use crate::domain::{from_rows, new_id, now_ms};
use crate::error::{Entity, Error, Result};
use crate::store::{self, Db, Tx};

pub const MAX_GROUP_MEMBERS_PER_CALL: usize = 100;
pub const MAX_MESSAGE_CHARS: usize = 4000;

/// A group with what the Kaizala group objects report.
#[derive(Clone, Debug)]
pub struct GroupView {
    pub group: Group,
    pub caller_role: Option<GroupRole>,
    pub parent_ids: Vec<GroupId>,
    pub child_ids: Vec<GroupId>,
    pub current_level_user_count: i64,
    pub current_level_unprovisioned: i64,
    /// Members across the group and all its sub-groups (a member in two counts twice).
    pub user_count: i64,
    pub unique_user_count: i64,
    pub unprovisioned_user_count: i64,
}

/// A member of a group as Kaizala lists it.
#[derive(Clone, Debug)]
pub struct GroupMemberView {
    pub member: Member,
    pub group_role: GroupRole,
}

async fn caller_member(tx: &mut Tx, caller: &KzCaller) -> Result<Member> {
    members::get_in(tx.ex(), caller.spot_id, caller.member_id).await
}

async fn load_group(tx: &mut Tx, spot_id: SpotId, id: GroupId) -> Result<Group> {
    store::groups::get(tx.ex(), spot_id, id).await?.map(Group::from).ok_or(Error::NotFound(Entity::Group))
}

/// The caller's role in the group; a spot Admin acts as a group Admin everywhere.
async fn effective_role(tx: &mut Tx, caller: &KzCaller, me: &Member, group_id: GroupId) -> Result<Option<GroupRole>> {
    let role = store::memberships::role(tx.ex(), caller.spot_id, group_id, caller.member_id).await?;
    Ok(if me.role == MemberRole::Admin { Some(GroupRole::Admin) } else { role })
}

async fn require_reader(tx: &mut Tx, caller: &KzCaller, group_id: GroupId) -> Result<(Group, Option<GroupRole>)> {
    let g = load_group(tx, caller.spot_id, group_id).await?;
    let me = caller_member(tx, caller).await?;
    let role = effective_role(tx, caller, &me, group_id).await?;
    if role.is_none() {
        return Err(Error::Forbidden("Caller is not a member of this group".into()));
    }
    Ok((g, role))
}

pub(super) async fn require_admin(tx: &mut Tx, caller: &KzCaller, group_id: GroupId) -> Result<Group> {
    let (g, role) = require_reader(tx, caller, group_id).await?;
    if role != Some(GroupRole::Admin) {
        return Err(Error::Forbidden("Only a group Admin can change this group".into()));
    }
    Ok(g)
}

/// Creates a group (or a sub-group of `parent`) with the caller as its Admin.
#[allow(clippy::too_many_arguments)]
pub async fn create_group(
    db: &Db,
    caller: &KzCaller,
    name: Option<String>,
    welcome_message: Option<String>,
    numbers: &[String],
    group_type: Option<String>,
    parent: Option<GroupId>,
    add_caller: bool,
) -> Result<(Group, bool)> {
    if numbers.len() > MAX_GROUP_MEMBERS_PER_CALL {
        return Err(Error::invalid("members", format!("at most {MAX_GROUP_MEMBERS_PER_CALL} mobile numbers")));
    }
    let numbers =
        numbers.iter().enumerate().map(|(i, n)| mobile(&format!("members[{i}]"), n)).collect::<Result<Vec<_>>>()?;
    let mut tx = db.begin().await?;
    tx.set_actor(caller.member_id);
    if let Some(p) = parent {
        require_admin(&mut tx, caller, p).await?;
    }
    let g = groups::create_in(
        &mut tx,
        caller.spot_id,
        NewGroup { name, welcome_message, group_type, ..Default::default() },
    )
    .await?;
    if add_caller {
        groups::join(&mut tx, caller.spot_id, g.id, caller.member_id, GroupRole::Admin).await?;
    }
    for n in &numbers {
        let m = member_by_mobile(&mut tx, caller.spot_id, n).await?;
        groups::join(&mut tx, caller.spot_id, g.id, m.id, GroupRole::Member).await?;
    }
    if let Some(p) = parent {
        store::group_links::insert(tx.ex(), caller.spot_id, p, g.id).await?;
    }
    tx.commit().await?;
    Ok((g, true))
}

/// Member counts over a group (its current level) and every group below it.
#[derive(Default)]
struct HierarchyCounts {
    current_level: i64,
    current_level_unprovisioned: i64,
    /// A member in two groups counts twice.
    users: i64,
    unprovisioned: i64,
    unique_users: i64,
}

async fn hierarchy_counts(
    tx: &mut Tx,
    spot_id: SpotId,
    group_id: GroupId,
    links: &[(GroupId, GroupId)],
) -> Result<HierarchyCounts> {
    let mut counts = HierarchyCounts::default();
    let mut unique: HashSet<MemberId> = HashSet::new();
    for gid in walk(links, &[group_id], Direction::Down) {
        let rows = store::memberships::list(tx.ex(), spot_id, gid, &[], 0, None).await?;
        for (m, _) in &rows {
            let unprovisioned = i64::from(m.status != MemberStatus::Accepted);
            counts.users += 1;
            counts.unprovisioned += unprovisioned;
            unique.insert(m.id);
            if gid == group_id {
                counts.current_level += 1;
                counts.current_level_unprovisioned += unprovisioned;
            }
        }
    }
    counts.unique_users = unique.len() as i64;
    Ok(counts)
}

async fn view(
    tx: &mut Tx,
    caller: &KzCaller,
    me: &Member,
    g: Group,
    links: &[(GroupId, GroupId)],
) -> Result<GroupView> {
    let parent_ids: Vec<GroupId> = links.iter().filter(|(_, c)| *c == g.id).map(|(p, _)| *p).collect();
    let child_ids: Vec<GroupId> = links.iter().filter(|(p, _)| *p == g.id).map(|(_, c)| *c).collect();
    let counts = hierarchy_counts(tx, caller.spot_id, g.id, links).await?;
    let caller_role = effective_role(tx, caller, me, g.id).await?;
    Ok(GroupView {
        group: g,
        caller_role,
        parent_ids,
        child_ids,
        current_level_user_count: counts.current_level,
        current_level_unprovisioned: counts.current_level_unprovisioned,
        user_count: counts.users,
        unique_user_count: counts.unique_users,
        unprovisioned_user_count: counts.unprovisioned,
    })
}

/// The caller's groups: those it belongs to (all of the spot's for a spot Admin), plus
/// with `fetch_all` their sub-groups and parent groups.
pub async fn list_groups(db: &Db, caller: &KzCaller, fetch_all: bool) -> Result<Vec<GroupView>> {
    let mut tx = db.begin_read().await?;
    let me = caller_member(&mut tx, caller).await?;
    let links = store::group_links::list(tx.ex(), caller.spot_id).await?;
    let mut ids: Vec<GroupId> = if me.role == MemberRole::Admin {
        let all: Vec<Group> = from_rows(store::groups::list(tx.ex(), caller.spot_id, &[], 0, i64::MAX).await?.0);
        all.into_iter().map(|g| g.id).collect()
    } else {
        store::memberships::groups_of_member(tx.ex(), caller.spot_id, caller.member_id).await?
    };
    if fetch_all {
        // Linked groups in either direction, at every level.
        ids = walk(&links, &ids, Direction::Either);
    }
    ids.sort();
    let groups = from_rows::<_, Group>(store::groups::get_many(tx.ex(), caller.spot_id, &ids).await?);
    let mut out = Vec::with_capacity(groups.len());
    for g in groups {
        out.push(view(&mut tx, caller, &me, g, &links).await?);
    }
    tx.commit().await?;
    Ok(out)
}

/// One group, readable by its members and the spot's Admins.
pub async fn group_detail(db: &Db, caller: &KzCaller, group_id: GroupId) -> Result<GroupView> {
    let mut tx = db.begin_read().await?;
    let (g, _) = require_reader(&mut tx, caller, group_id).await?;
    let me = caller_member(&mut tx, caller).await?;
    let links = store::group_links::list(tx.ex(), caller.spot_id).await?;
    let v = view(&mut tx, caller, &me, g, &links).await?;
    tx.commit().await?;
    Ok(v)
}

/// A group with its sub-groups (all levels with `fetch_all`).
pub async fn sub_groups(
    db: &Db,
    caller: &KzCaller,
    group_id: GroupId,
    fetch_all: bool,
) -> Result<(Group, Vec<Group>, Vec<(GroupId, GroupId)>)> {
    let mut tx = db.begin_read().await?;
    let (g, _) = require_reader(&mut tx, caller, group_id).await?;
    let links = store::group_links::list(tx.ex(), caller.spot_id).await?;
    let mut ids: Vec<GroupId> = if fetch_all {
        walk(&links, &[group_id], Direction::Down).into_iter().filter(|id| *id != group_id).collect()
    } else {
        links.iter().filter(|(p, _)| *p == group_id).map(|(_, c)| *c).collect()
    };
    ids.sort();
    let subs = from_rows::<_, Group>(store::groups::get_many(tx.ex(), caller.spot_id, &ids).await?);
    tx.commit().await?;
    Ok((g, subs, links))
}

/// Sub-groups one attach call may name.
pub const MAX_SUB_GROUPS_PER_CALL: usize = 100;

/// Attaches existing groups as sub-groups. The caller must be Admin of the parent and
/// of every child (a spot Admin is Admin everywhere): attaching a group makes its
/// members visible through the parent's hierarchy, so a group's own Admins decide.
pub async fn attach_sub_groups(db: &Db, caller: &KzCaller, group_id: GroupId, children: &[GroupId]) -> Result<()> {
    if children.len() > MAX_SUB_GROUPS_PER_CALL {
        return Err(Error::invalid("subGroups", format!("at most {MAX_SUB_GROUPS_PER_CALL} groups")));
    }
    let mut tx = db.begin().await?;
    require_admin(&mut tx, caller, group_id).await?;
    let me = caller_member(&mut tx, caller).await?;
    let found = from_rows::<_, Group>(store::groups::get_many(tx.ex(), caller.spot_id, children).await?);
    for (i, c) in children.iter().enumerate() {
        if !found.iter().any(|g| g.id == *c) {
            return Err(Error::invalid(format!("subGroups[{i}]"), format!("no group '{c}'")));
        }
        if *c == group_id {
            return Err(Error::invalid(format!("subGroups[{i}]"), "a group cannot be its own sub-group"));
        }
        if effective_role(&mut tx, caller, &me, *c).await? != Some(GroupRole::Admin) {
            return Err(Error::Forbidden(format!("Only an Admin of group '{c}' can attach it as a sub-group")));
        }
    }
    let links = store::group_links::list(tx.ex(), caller.spot_id).await?;
    for c in children {
        // Refuse cycles: the parent must not already be below the child.
        if walk(&links, &[*c], Direction::Down).contains(&group_id) {
            return Err(Error::invalid(
                "subGroups",
                format!("group '{c}' contains this group; links cannot form a cycle"),
            ));
        }
        store::group_links::insert(tx.ex(), caller.spot_id, group_id, *c).await?;
    }
    tx.commit().await?;
    Ok(())
}

pub async fn detach_sub_group(db: &Db, caller: &KzCaller, group_id: GroupId, child: GroupId) -> Result<()> {
    let mut tx = db.begin().await?;
    require_admin(&mut tx, caller, group_id).await?;
    if !store::group_links::delete(tx.ex(), caller.spot_id, group_id, child).await? {
        return Err(Error::NotFound(Entity::Group));
    }
    tx.commit().await?;
    Ok(())
}

pub async fn list_members(db: &Db, caller: &KzCaller, group_id: GroupId) -> Result<Vec<GroupMemberView>> {
    let mut tx = db.begin_read().await?;
    require_reader(&mut tx, caller, group_id).await?;
    let rows = store::memberships::list(tx.ex(), caller.spot_id, group_id, &[], 0, None).await?;
    tx.commit().await?;
    Ok(rows.into_iter().map(|(member, group_role)| GroupMemberView { member: member.into(), group_role }).collect())
}

fn smart_refusal() -> Error {
    Error::invalid("groupId", "this is a smart group: its membership follows its rules")
}

/// Adds mobile numbers to a group (creating unknown numbers as members); all-or-nothing.
pub async fn add_members(db: &Db, caller: &KzCaller, group_id: GroupId, numbers: &[String]) -> Result<()> {
    if numbers.is_empty() {
        return Err(Error::invalid("members", "must list at least one mobile number"));
    }
    if numbers.len() > MAX_GROUP_MEMBERS_PER_CALL {
        return Err(Error::invalid("members", format!("at most {MAX_GROUP_MEMBERS_PER_CALL} mobile numbers")));
    }
    let numbers =
        numbers.iter().enumerate().map(|(i, n)| mobile(&format!("members[{i}]"), n)).collect::<Result<Vec<_>>>()?;
    store::retry_transient(|| add_members_once(db, caller, group_id, &numbers)).await
}

/// One attempt of [`add_members`] (see [`store::retry_transient`]).
async fn add_members_once(db: &Db, caller: &KzCaller, group_id: GroupId, numbers: &[String]) -> Result<()> {
    let mut tx = db.begin().await?;
    tx.set_actor(caller.member_id);
    let g = require_admin(&mut tx, caller, group_id).await?;
    if g.is_smart() {
        return Err(smart_refusal());
    }
    // The group's lock, as every membership change holds it: a course link running
    // concurrently then either reads these members or is seen by their joins.
    if !store::groups::lock(tx.ex(), caller.spot_id, group_id).await? {
        return Err(Error::NotFound(Entity::Group));
    }
    for n in numbers {
        let m = member_by_mobile(&mut tx, caller.spot_id, n).await?;
        groups::join(&mut tx, caller.spot_id, group_id, m.id, GroupRole::Member).await?;
    }
    tx.commit().await?;
    Ok(())
}

/// Sets a member's group role; the last Admin cannot be demoted.
pub async fn set_member_role(
    db: &Db,
    caller: &KzCaller,
    group_id: GroupId,
    member_id: MemberId,
    role: &str,
) -> Result<()> {
    let role: GroupRole = role.parse().map_err(|_| Error::invalid("role", "must be Admin or Member"))?;
    store::retry_transient(|| set_member_role_once(db, caller, group_id, member_id, role)).await
}

/// One attempt of [`set_member_role`]: under the group's lock, so that two Admins
/// demoting each other at once cannot both see "another Admin remains".
async fn set_member_role_once(
    db: &Db,
    caller: &KzCaller,
    group_id: GroupId,
    member_id: MemberId,
    role: GroupRole,
) -> Result<()> {
    let mut tx = db.begin().await?;
    require_admin(&mut tx, caller, group_id).await?;
    if !store::groups::lock(tx.ex(), caller.spot_id, group_id).await? {
        return Err(Error::NotFound(Entity::Group));
    }
    let current = store::memberships::role(tx.ex(), caller.spot_id, group_id, member_id)
        .await?
        .ok_or(Error::NotFound(Entity::SpotMember))?;
    if current == GroupRole::Admin
        && role == GroupRole::Member
        && store::memberships::count_role(tx.ex(), caller.spot_id, group_id, GroupRole::Admin).await? <= 1
    {
        return Err(Error::invalid(
            "role",
            "the last Admin of a group cannot be demoted; promote another member first",
        ));
    }
    store::memberships::set_role(tx.ex(), caller.spot_id, group_id, member_id, role).await?;
    tx.commit().await?;
    Ok(())
}

/// Removes a member from a group; the last Admin cannot be removed.
pub async fn remove_member(db: &Db, caller: &KzCaller, group_id: GroupId, member_id: MemberId) -> Result<()> {
    store::retry_transient(|| remove_member_once(db, caller, group_id, member_id)).await
}

/// One attempt of [`remove_member`], under the group's lock (see [`set_member_role_once`]).
async fn remove_member_once(db: &Db, caller: &KzCaller, group_id: GroupId, member_id: MemberId) -> Result<()> {
    let mut tx = db.begin().await?;
    tx.set_actor(caller.member_id);
    let g = require_admin(&mut tx, caller, group_id).await?;
    if !store::groups::lock(tx.ex(), caller.spot_id, group_id).await? {
        return Err(Error::NotFound(Entity::Group));
    }
    let current = store::memberships::role(tx.ex(), caller.spot_id, group_id, member_id)
        .await?
        .ok_or(Error::NotFound(Entity::SpotMember))?;
    if g.is_smart() {
        return Err(smart_refusal());
    }
    if current == GroupRole::Admin
        && store::memberships::count_role(tx.ex(), caller.spot_id, group_id, GroupRole::Admin).await? <= 1
    {
        return Err(Error::invalid(
            "memberId",
            "the last Admin of a group cannot be removed; promote another member first",
        ));
    }
    groups::leave(&mut tx, caller.spot_id, group_id, &[member_id]).await?;
    tx.commit().await?;
    Ok(())
}

/// Stores a text message sent to a group by one of its members; returns its reference id.
pub async fn post_message(db: &Db, caller: &KzCaller, group_id: GroupId, text: &str) -> Result<Uuid> {
    if text.trim().is_empty() {
        return Err(Error::invalid("message", "must not be empty"));
    }
    if text.chars().count() > MAX_MESSAGE_CHARS {
        return Err(Error::invalid("message", format!("at most {MAX_MESSAGE_CHARS} characters")));
    }
    let mut tx = db.begin().await?;
    tx.set_actor(caller.member_id);
    require_reader(&mut tx, caller, group_id).await?;
    let id = new_id();
    store::messages::insert(tx.ex(), caller.spot_id, id, group_id, caller.member_id, text, now_ms()).await?;
    webhooks::queue(&mut tx, caller.spot_id, group_id, KzEventType::TextMessageCreated, &[webhooks::text_data(text)])
        .await?;
    tx.commit().await?;
    Ok(id)
}

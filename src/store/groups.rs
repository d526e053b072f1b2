//! Groups, their membership (one table for static and smart groups), the smart-group
//! blacklist and the Kaizala sub-group links.

use uuid::Uuid;

use super::sql::{Bind, Sql, IN_LIST_MAX};
use super::Ex;
use crate::domain::filter::Predicate;
use crate::domain::groups::Group;
use crate::domain::members::Member;
use crate::{bind_all, run};

const COLUMNS: &str = "spot_id, id, name, description, emoji, icon, kind, rules, ready, member_count, \
    welcome_message, group_type, created_at";

pub async fn insert(ex: Ex<'_>, g: &Group) -> Result<(), sqlx::Error> {
    run!(ex, |c| {
        sqlx::query(
            "INSERT INTO spot_groups (spot_id, id, name, description, emoji, icon, kind, rules, ready, member_count, \
         welcome_message, group_type, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
        )
        .bind(g.spot_id)
        .bind(g.id)
        .bind(&g.name)
        .bind(&g.description)
        .bind(&g.emoji)
        .bind(&g.icon)
        .bind(&g.kind)
        .bind(&g.rules)
        .bind(g.ready)
        .bind(g.member_count)
        .bind(&g.welcome_message)
        .bind(&g.group_type)
        .bind(g.created_at)
        .execute(c)
        .await
        .map(|_| ())
    })
}

pub async fn get(ex: Ex<'_>, spot_id: Uuid, id: Uuid) -> Result<Option<Group>, sqlx::Error> {
    let sql = format!("SELECT {COLUMNS} FROM spot_groups WHERE spot_id = $1 AND id = $2");
    run!(ex, |c| sqlx::query_as::<_, Group>(&sql).bind(spot_id).bind(id).fetch_optional(c).await)
}

/// A page of the spot's groups matching `filters`, and how many match.
pub async fn list(
    ex: Ex<'_>,
    spot_id: Uuid,
    filters: &[Predicate],
    offset: i64,
    limit: i64,
) -> Result<(Vec<Group>, i64), sqlx::Error> {
    super::sql::page(ex, "spot_groups", COLUMNS, spot_id, filters, offset, limit).await
}

/// The groups among `ids` that belong to the spot, in id order.
pub async fn get_many(ex: Ex<'_>, spot_id: Uuid, ids: &[Uuid]) -> Result<Vec<Group>, sqlx::Error> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let mut sql = Sql::from_parts(&["SELECT ", COLUMNS, " FROM spot_groups WHERE spot_id = "]);
    sql.push_bind(Bind::Uuid(spot_id)).push(" AND id IN ");
    sql.push_list(ids.iter().map(|id| Bind::Uuid(*id))).push(" ORDER BY id");
    run!(ex, |c| bind_all!(sqlx::query_as::<_, Group>(sql.text_for(&*c)), &sql.binds).fetch_all(c).await)
}

pub async fn update(ex: Ex<'_>, g: &Group) -> Result<(), sqlx::Error> {
    run!(ex, |c| {
        sqlx::query(
            "UPDATE spot_groups SET name = $3, description = $4, emoji = $5, welcome_message = $6, group_type = $7 \
         WHERE spot_id = $1 AND id = $2",
        )
        .bind(g.spot_id)
        .bind(g.id)
        .bind(&g.name)
        .bind(&g.description)
        .bind(&g.emoji)
        .bind(&g.welcome_message)
        .bind(&g.group_type)
        .execute(c)
        .await
        .map(|_| ())
    })
}

pub async fn delete(ex: Ex<'_>, spot_id: Uuid, id: Uuid) -> Result<bool, sqlx::Error> {
    run!(ex, |c| sqlx::query("DELETE FROM spot_groups WHERE spot_id = $1 AND id = $2")
        .bind(spot_id)
        .bind(id)
        .execute(c)
        .await
        .map(|r| r.rows_affected() == 1))
}

/// Takes the group row's write lock for the rest of the transaction (and tells whether
/// it exists): concurrent membership writes to one group then queue instead of
/// deadlocking on each other's uncommitted rows (PostgreSQL; SQLite writers are
/// serialised already).
pub async fn lock(ex: Ex<'_>, spot_id: Uuid, id: Uuid) -> Result<bool, sqlx::Error> {
    run!(ex, |c| sqlx::query("UPDATE spot_groups SET member_count = member_count WHERE spot_id = $1 AND id = $2")
        .bind(spot_id)
        .bind(id)
        .execute(c)
        .await
        .map(|r| r.rows_affected() == 1))
}

pub async fn add_member_count(ex: Ex<'_>, spot_id: Uuid, id: Uuid, delta: i64) -> Result<(), sqlx::Error> {
    if delta == 0 {
        return Ok(());
    }
    run!(ex, |c| sqlx::query("UPDATE spot_groups SET member_count = member_count + $3 WHERE spot_id = $1 AND id = $2")
        .bind(spot_id)
        .bind(id)
        .bind(delta)
        .execute(c)
        .await
        .map(|_| ()))
}

/// Takes the computation lease of a smart group that is not ready, if free or lapsed.
pub async fn claim_compute(ex: Ex<'_>, spot_id: Uuid, id: Uuid, now: i64, until: i64) -> Result<bool, sqlx::Error> {
    run!(ex, |c| {
        sqlx::query(
            "UPDATE spot_groups SET compute_lease_until = $4 WHERE spot_id = $1 AND id = $2 AND ready = $5 \
         AND (compute_lease_until IS NULL OR compute_lease_until < $3)",
        )
        .bind(spot_id)
        .bind(id)
        .bind(now)
        .bind(until)
        .bind(false)
        .execute(c)
        .await
        .map(|r| r.rows_affected() == 1)
    })
}

pub async fn extend_lease(ex: Ex<'_>, spot_id: Uuid, id: Uuid, until: i64) -> Result<(), sqlx::Error> {
    run!(ex, |c| sqlx::query("UPDATE spot_groups SET compute_lease_until = $3 WHERE spot_id = $1 AND id = $2")
        .bind(spot_id)
        .bind(id)
        .bind(until)
        .execute(c)
        .await
        .map(|_| ()))
}

/// Marks a smart group for recomputation: not ready, no lease (so any replica's
/// housekeeping takes it up if no one starts it).
pub async fn set_not_ready(ex: Ex<'_>, spot_id: Uuid, id: Uuid) -> Result<(), sqlx::Error> {
    run!(ex, |c| {
        sqlx::query("UPDATE spot_groups SET ready = $3, compute_lease_until = NULL WHERE spot_id = $1 AND id = $2")
            .bind(spot_id)
            .bind(id)
            .bind(false)
            .execute(c)
            .await
            .map(|_| ())
    })
}

pub async fn set_ready(ex: Ex<'_>, spot_id: Uuid, id: Uuid) -> Result<(), sqlx::Error> {
    run!(ex, |c| {
        sqlx::query("UPDATE spot_groups SET ready = $3, compute_lease_until = NULL WHERE spot_id = $1 AND id = $2")
            .bind(spot_id)
            .bind(id)
            .bind(true)
            .execute(c)
            .await
            .map(|_| ())
    })
}

/// PostgreSQL: the ids of the transactions in progress right now. A member write that
/// began before a smart group committed may have evaluated its member without seeing
/// the group, while its rows are still invisible to the group's computation; the
/// computation waits for these to finish first. Empty on SQLite, whose writers are
/// serialised (a write transaction ends before the group's transaction can start).
pub async fn transactions_in_progress(ex: Ex<'_>) -> Result<Vec<i64>, sqlx::Error> {
    match ex {
        Ex::Sqlite(_) => Ok(Vec::new()),
        Ex::Postgres(c) => {
            sqlx::query_scalar::<_, i64>("SELECT txid_snapshot_xip(txid_current_snapshot())::bigint").fetch_all(c).await
        }
    }
}

/// PostgreSQL: how many of `xids` (from [`transactions_in_progress`]) are still running.
pub async fn count_in_progress(ex: Ex<'_>, xids: &[i64]) -> Result<i64, sqlx::Error> {
    match ex {
        Ex::Sqlite(_) => Ok(0),
        Ex::Postgres(_) if xids.is_empty() => Ok(0),
        Ex::Postgres(c) => {
            sqlx::query_scalar::<_, i64>(
                "SELECT COUNT(*) FROM unnest($1::bigint[]) AS x(id) WHERE txid_status(x.id) = 'in progress'",
            )
            .bind(xids)
            .fetch_one(c)
            .await
        }
    }
}

/// Smart groups not ready whose lease is free or lapsed (work a replica may take over).
pub async fn pending_computes(ex: Ex<'_>, now: i64) -> Result<Vec<(Uuid, Uuid)>, sqlx::Error> {
    run!(ex, |c| {
        sqlx::query_as::<_, (Uuid, Uuid)>(
        "SELECT spot_id, id FROM spot_groups WHERE ready = $1 AND (compute_lease_until IS NULL OR compute_lease_until < $2)"
    )
    .bind(false)
    .bind(now)
    .fetch_all(c)
    .await
    })
}

/// The spot's smart groups: (id, rules JSON).
pub async fn smart_groups(ex: Ex<'_>, spot_id: Uuid) -> Result<Vec<(Uuid, String)>, sqlx::Error> {
    run!(ex, |c| {
        sqlx::query_as::<_, (Uuid, String)>(
            "SELECT id, rules FROM spot_groups WHERE spot_id = $1 AND kind = 'Smart' AND rules IS NOT NULL ORDER BY id",
        )
        .bind(spot_id)
        .fetch_all(c)
        .await
    })
}

/// Adds a membership; false when it was already there.
pub async fn insert_membership(
    ex: Ex<'_>,
    spot_id: Uuid,
    group_id: Uuid,
    member_id: Uuid,
    group_role: &str,
    now: i64,
) -> Result<bool, sqlx::Error> {
    run!(ex, |c| {
        sqlx::query(
        "INSERT INTO group_members (spot_id, group_id, member_id, group_role, added_at) VALUES ($1, $2, $3, $4, $5) \
         ON CONFLICT DO NOTHING"
    )
    .bind(spot_id)
    .bind(group_id)
    .bind(member_id)
    .bind(group_role)
    .bind(now)
    .execute(c)
    .await
    .map(|r| r.rows_affected() == 1)
    })
}

/// Removes the memberships of `member_ids`; returns the ids actually removed.
/// Adds many memberships (existing ones are kept as they are), in statements of
/// [`IN_LIST_MAX`] members; returns the members actually added.
pub async fn insert_memberships(
    ex: Ex<'_>,
    spot_id: Uuid,
    group_id: Uuid,
    member_ids: &[Uuid],
    group_role: &str,
    now: i64,
) -> Result<Vec<Uuid>, sqlx::Error> {
    run!(ex, |c| {
        let mut added = Vec::new();
        for chunk in member_ids.chunks(IN_LIST_MAX) {
            let mut sql = Sql::new(
                "INSERT INTO group_members (spot_id, group_id, member_id, group_role, added_at) SELECT spot_id, ",
            );
            sql.push_bind(Bind::Uuid(group_id)).push(", id, ").push_bind(Bind::Text(group_role.to_string()));
            sql.push(", ").push_bind(Bind::I64(now)).push(" FROM members WHERE spot_id = ");
            sql.push_bind(Bind::Uuid(spot_id)).push(" AND id IN ");
            sql.push_list(chunk.iter().map(|id| Bind::Uuid(*id))).push(" ON CONFLICT DO NOTHING RETURNING member_id");
            added.extend(
                bind_all!(sqlx::query_scalar::<_, Uuid>(sql.text_for(&*c)), &sql.binds).fetch_all(&mut *c).await?,
            );
        }
        Ok(added)
    })
}

pub async fn delete_memberships(
    ex: Ex<'_>,
    spot_id: Uuid,
    group_id: Uuid,
    member_ids: &[Uuid],
) -> Result<Vec<Uuid>, sqlx::Error> {
    if member_ids.is_empty() {
        return Ok(Vec::new());
    }
    let mut sql = Sql::new("DELETE FROM group_members WHERE spot_id = ");
    sql.push_bind(Bind::Uuid(spot_id)).push(" AND group_id = ").push_bind(Bind::Uuid(group_id));
    sql.push(" AND member_id IN ");
    sql.push_list(member_ids.iter().map(|id| Bind::Uuid(*id))).push(" RETURNING member_id");
    run!(ex, |c| bind_all!(sqlx::query_scalar::<_, Uuid>(sql.text_for(&*c)), &sql.binds).fetch_all(c).await)
}

/// The member's Kaizala role in a group, or None when not a member.
pub async fn membership_role(
    ex: Ex<'_>,
    spot_id: Uuid,
    group_id: Uuid,
    member_id: Uuid,
) -> Result<Option<String>, sqlx::Error> {
    run!(ex, |c| {
        sqlx::query_scalar::<_, String>(
            "SELECT group_role FROM group_members WHERE spot_id = $1 AND group_id = $2 AND member_id = $3",
        )
        .bind(spot_id)
        .bind(group_id)
        .bind(member_id)
        .fetch_optional(c)
        .await
    })
}

pub async fn set_membership_role(
    ex: Ex<'_>,
    spot_id: Uuid,
    group_id: Uuid,
    member_id: Uuid,
    group_role: &str,
) -> Result<bool, sqlx::Error> {
    run!(ex, |c| {
        sqlx::query("UPDATE group_members SET group_role = $4 WHERE spot_id = $1 AND group_id = $2 AND member_id = $3")
            .bind(spot_id)
            .bind(group_id)
            .bind(member_id)
            .bind(group_role)
            .execute(c)
            .await
            .map(|r| r.rows_affected() == 1)
    })
}

/// How many members of the group hold `group_role`.
pub async fn count_role(ex: Ex<'_>, spot_id: Uuid, group_id: Uuid, group_role: &str) -> Result<i64, sqlx::Error> {
    run!(ex, |c| {
        sqlx::query_scalar::<_, i64>(
            "SELECT COUNT(*) FROM group_members WHERE spot_id = $1 AND group_id = $2 AND group_role = $3",
        )
        .bind(spot_id)
        .bind(group_id)
        .bind(group_role)
        .fetch_one(c)
        .await
    })
}

/// Ids of the groups the member belongs to.
pub async fn groups_of_member(ex: Ex<'_>, spot_id: Uuid, member_id: Uuid) -> Result<Vec<Uuid>, sqlx::Error> {
    run!(ex, |c| sqlx::query_scalar::<_, Uuid>(
        "SELECT group_id FROM group_members WHERE spot_id = $1 AND member_id = $2"
    )
    .bind(spot_id)
    .bind(member_id)
    .fetch_all(c)
    .await)
}

/// Ids of the groups whose blacklist holds the member.
pub async fn blacklisting_groups(ex: Ex<'_>, spot_id: Uuid, member_id: Uuid) -> Result<Vec<Uuid>, sqlx::Error> {
    run!(ex, |c| sqlx::query_scalar::<_, Uuid>(
        "SELECT group_id FROM group_blacklist WHERE spot_id = $1 AND member_id = $2"
    )
    .bind(spot_id)
    .bind(member_id)
    .fetch_all(c)
    .await)
}

pub async fn blacklist_add(ex: Ex<'_>, spot_id: Uuid, group_id: Uuid, member_id: Uuid) -> Result<bool, sqlx::Error> {
    run!(ex, |c| {
        sqlx::query(
            "INSERT INTO group_blacklist (spot_id, group_id, member_id) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
        )
        .bind(spot_id)
        .bind(group_id)
        .bind(member_id)
        .execute(c)
        .await
        .map(|r| r.rows_affected() == 1)
    })
}

pub async fn blacklist_remove(ex: Ex<'_>, spot_id: Uuid, group_id: Uuid, member_id: Uuid) -> Result<bool, sqlx::Error> {
    run!(ex, |c| sqlx::query("DELETE FROM group_blacklist WHERE spot_id = $1 AND group_id = $2 AND member_id = $3")
        .bind(spot_id)
        .bind(group_id)
        .bind(member_id)
        .execute(c)
        .await
        .map(|r| r.rows_affected() == 1))
}

/// Whether the group's blacklist holds the member.
pub async fn is_blacklisted(ex: Ex<'_>, spot_id: Uuid, group_id: Uuid, member_id: Uuid) -> Result<bool, sqlx::Error> {
    run!(ex, |c| {
        sqlx::query_scalar::<_, i64>(
            "SELECT COUNT(*) FROM group_blacklist WHERE spot_id = $1 AND group_id = $2 AND member_id = $3",
        )
        .bind(spot_id)
        .bind(group_id)
        .bind(member_id)
        .fetch_one(c)
        .await
        .map(|n| n > 0)
    })
}

/// The spot's members among `ids`, in id order. On PostgreSQL the rows are
/// share-locked until the transaction ends, so a concurrent update of one of them is
/// either committed before they are read or waits until this transaction commits.
pub async fn members_for_share(ex: Ex<'_>, spot_id: Uuid, ids: &[Uuid]) -> Result<Vec<Member>, sqlx::Error> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let mut sql = Sql::from_parts(&["SELECT ", crate::store::members::COLUMNS, " FROM members WHERE spot_id = "]);
    sql.push_bind(Bind::Uuid(spot_id)).push(" AND id IN ");
    sql.push_list(ids.iter().map(|id| Bind::Uuid(*id))).push(" ORDER BY id").push(ex.row_lock(" FOR SHARE"));
    run!(ex, |c| bind_all!(sqlx::query_as::<_, Member>(sql.text_for(&*c)), &sql.binds).fetch_all(c).await)
}

pub async fn blacklist(ex: Ex<'_>, spot_id: Uuid, group_id: Uuid) -> Result<Vec<Uuid>, sqlx::Error> {
    run!(ex, |c| {
        sqlx::query_scalar::<_, Uuid>(
            "SELECT member_id FROM group_blacklist WHERE spot_id = $1 AND group_id = $2 ORDER BY member_id",
        )
        .bind(spot_id)
        .bind(group_id)
        .fetch_all(c)
        .await
    })
}

/// A group member's columns: the member's (`m.`) and its group role.
const GROUP_MEMBER_COLUMNS: &str = concat!(crate::store::members::member_columns!("m."), ", gm.group_role");

fn group_members_sql(select: &'static str, spot_id: Uuid, group_id: Uuid, filters: &[Predicate]) -> Sql {
    let mut sql = Sql::from_parts(&[
        "SELECT ",
        select,
        " FROM group_members gm JOIN members m ON m.spot_id = gm.spot_id AND m.id = gm.member_id WHERE gm.spot_id = ",
    ]);
    sql.push_bind(Bind::Uuid(spot_id)).push(" AND gm.group_id = ").push_bind(Bind::Uuid(group_id));
    sql.push_predicates(filters);
    sql
}

/// A page of a group's members (with their group role), in member creation order.
pub async fn list_members(
    ex: Ex<'_>,
    spot_id: Uuid,
    group_id: Uuid,
    filters: &[Predicate],
    offset: i64,
    limit: Option<i64>,
) -> Result<Vec<(Member, String)>, sqlx::Error> {
    let mut sql = group_members_sql(GROUP_MEMBER_COLUMNS, spot_id, group_id, filters);
    sql.push(" ORDER BY gm.member_id");
    if let Some(limit) = limit {
        sql.push(" LIMIT ").push_bind(Bind::I64(limit)).push(" OFFSET ").push_bind(Bind::I64(offset));
    }
    run!(ex, |c| {
        use sqlx::{FromRow, Row};
        let rows = bind_all!(sqlx::query(sql.text_for(&*c)), &sql.binds).fetch_all(&mut *c).await?;
        rows.iter()
            .map(|r| Ok((Member::from_row(r)?, r.try_get::<String, _>("group_role")?)))
            .collect::<Result<Vec<_>, sqlx::Error>>()
    })
}

pub async fn count_members(
    ex: Ex<'_>,
    spot_id: Uuid,
    group_id: Uuid,
    filters: &[Predicate],
) -> Result<i64, sqlx::Error> {
    let sql = group_members_sql("COUNT(*)", spot_id, group_id, filters);
    run!(ex, |c| bind_all!(sqlx::query_scalar::<_, i64>(sql.text_for(&*c)), &sql.binds).fetch_one(c).await)
}

/// The next batch of the spot's members after `after` (id order), for a full smart-group
/// computation. On PostgreSQL the rows are share-locked until the batch commits, so a
/// concurrent member update cannot interleave with the batch's evaluation of it.
pub async fn members_batch(
    ex: Ex<'_>,
    spot_id: Uuid,
    after: Option<Uuid>,
    limit: i64,
) -> Result<Vec<Member>, sqlx::Error> {
    let mut sql = Sql::from_parts(&["SELECT ", crate::store::members::COLUMNS, " FROM members WHERE spot_id = "]);
    sql.push_bind(Bind::Uuid(spot_id));
    if let Some(after) = after {
        sql.push(" AND id > ").push_bind(Bind::Uuid(after));
    }
    sql.push(" ORDER BY id LIMIT ").push_bind(Bind::I64(limit)).push(ex.row_lock(" FOR SHARE"));
    run!(ex, |c| bind_all!(sqlx::query_as::<_, Member>(sql.text_for(&*c)), &sql.binds).fetch_all(c).await)
}

pub async fn link(ex: Ex<'_>, spot_id: Uuid, parent: Uuid, child: Uuid) -> Result<bool, sqlx::Error> {
    run!(ex, |c| {
        sqlx::query("INSERT INTO group_links (spot_id, parent_id, child_id) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING")
            .bind(spot_id)
            .bind(parent)
            .bind(child)
            .execute(c)
            .await
            .map(|r| r.rows_affected() == 1)
    })
}

pub async fn unlink(ex: Ex<'_>, spot_id: Uuid, parent: Uuid, child: Uuid) -> Result<bool, sqlx::Error> {
    run!(ex, |c| sqlx::query("DELETE FROM group_links WHERE spot_id = $1 AND parent_id = $2 AND child_id = $3")
        .bind(spot_id)
        .bind(parent)
        .bind(child)
        .execute(c)
        .await
        .map(|r| r.rows_affected() == 1))
}

/// (parent, child) links of the spot.
pub async fn links(ex: Ex<'_>, spot_id: Uuid) -> Result<Vec<(Uuid, Uuid)>, sqlx::Error> {
    run!(ex, |c| sqlx::query_as::<_, (Uuid, Uuid)>(
        "SELECT parent_id, child_id FROM group_links WHERE spot_id = $1 ORDER BY child_id"
    )
    .bind(spot_id)
    .fetch_all(c)
    .await)
}

//! Group memberships (`group_members`): who is in which group, with their Kaizala group
//! role. One table for static and smart groups, so membership reads never care how a
//! member got in; the group row itself (and its member count) is [`super::groups`].

use super::members::MemberRow;
use super::sql::Predicate;
use super::sql::{Bind, Sql, IN_LIST_MAX};
use super::{one_row, Ex};
use crate::domain::ids::{GroupId, MemberId, SpotId};
use crate::domain::vocab::GroupRole;
use crate::{bind_all, run};

/// Adds a membership; false when it was already there.
pub async fn insert(
    ex: Ex<'_>,
    spot_id: SpotId,
    group_id: GroupId,
    member_id: MemberId,
    group_role: GroupRole,
    now: i64,
) -> Result<bool, sqlx::Error> {
    run!(ex, |c| {
        let outcome = sqlx::query(
            "INSERT INTO group_members (spot_id, group_id, member_id, group_role, added_at) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
        )
        .bind(spot_id)
        .bind(group_id)
        .bind(member_id)
        .bind(group_role)
        .bind(now)
        .execute(c)
        .await;
        one_row(outcome)
    })
}

/// Adds many memberships (existing ones are kept as they are), in statements of
/// [`IN_LIST_MAX`] members; returns the members actually added.
pub async fn insert_many(
    ex: Ex<'_>,
    spot_id: SpotId,
    group_id: GroupId,
    member_ids: &[MemberId],
    group_role: GroupRole,
    now: i64,
) -> Result<Vec<MemberId>, sqlx::Error> {
    run!(ex, |c| {
        let mut added = Vec::new();
        for chunk in member_ids.chunks(IN_LIST_MAX) {
            let mut sql = Sql::new(
                "INSERT INTO group_members (spot_id, group_id, member_id, group_role, added_at) SELECT spot_id, ",
            );
            sql.push_bind(group_id.into()).push(", id, ").push_bind(Bind::Text(group_role.to_string()));
            sql.push(", ").push_bind(Bind::I64(now)).push(" FROM members WHERE spot_id = ");
            sql.push_bind(spot_id.into()).push(" AND id IN ");
            sql.push_list(chunk.iter().map(|id| (*id).into())).push(" ON CONFLICT DO NOTHING RETURNING member_id");
            added.extend(
                bind_all!(sqlx::query_scalar::<_, MemberId>(sql.text_for(&*c)), &sql.binds).fetch_all(&mut *c).await?,
            );
        }
        Ok(added)
    })
}

/// Removes the memberships of `member_ids`; returns the ids actually removed.
pub async fn delete_many(
    ex: Ex<'_>,
    spot_id: SpotId,
    group_id: GroupId,
    member_ids: &[MemberId],
) -> Result<Vec<(MemberId, GroupRole)>, sqlx::Error> {
    if member_ids.is_empty() {
        return Ok(Vec::new());
    }
    let mut sql = Sql::new("DELETE FROM group_members WHERE spot_id = ");
    sql.push_bind(spot_id.into()).push(" AND group_id = ").push_bind(group_id.into());
    sql.push(" AND member_id IN ");
    sql.push_list(member_ids.iter().map(|id| (*id).into())).push(" RETURNING member_id, group_role");
    run!(ex, |c| bind_all!(sqlx::query_as::<_, (MemberId, GroupRole)>(sql.text_for(&*c)), &sql.binds)
        .fetch_all(c)
        .await)
}

/// The member's Kaizala role in a group, or None when not a member.
pub async fn role(
    ex: Ex<'_>,
    spot_id: SpotId,
    group_id: GroupId,
    member_id: MemberId,
) -> Result<Option<GroupRole>, sqlx::Error> {
    run!(ex, |c| {
        sqlx::query_scalar::<_, GroupRole>(
            "SELECT group_role FROM group_members WHERE spot_id = $1 AND group_id = $2 AND member_id = $3",
        )
        .bind(spot_id)
        .bind(group_id)
        .bind(member_id)
        .fetch_optional(c)
        .await
    })
}

/// Sets the member's Kaizala role in a group; false when not a member.
pub async fn set_role(
    ex: Ex<'_>,
    spot_id: SpotId,
    group_id: GroupId,
    member_id: MemberId,
    group_role: GroupRole,
) -> Result<bool, sqlx::Error> {
    run!(ex, |c| {
        let outcome = sqlx::query(
            "UPDATE group_members SET group_role = $4 WHERE spot_id = $1 AND group_id = $2 AND member_id = $3",
        )
        .bind(spot_id)
        .bind(group_id)
        .bind(member_id)
        .bind(group_role)
        .execute(c)
        .await;
        one_row(outcome)
    })
}

/// How many members of the group hold `group_role`.
pub async fn count_role(
    ex: Ex<'_>,
    spot_id: SpotId,
    group_id: GroupId,
    group_role: GroupRole,
) -> Result<i64, sqlx::Error> {
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
pub async fn groups_of_member(ex: Ex<'_>, spot_id: SpotId, member_id: MemberId) -> Result<Vec<GroupId>, sqlx::Error> {
    run!(ex, |c| sqlx::query_scalar::<_, GroupId>(
        "SELECT group_id FROM group_members WHERE spot_id = $1 AND member_id = $2"
    )
    .bind(spot_id)
    .bind(member_id)
    .fetch_all(c)
    .await)
}

/// A group member's columns: the member's (`m.`) and its group role.
const GROUP_MEMBER_COLUMNS: &str = concat!(crate::store::members::member_columns!("m."), ", gm.group_role");

fn group_members_sql(select: &'static str, spot_id: SpotId, group_id: GroupId, filters: &[Predicate]) -> Sql {
    let mut sql = Sql::from_parts(&[
        "SELECT ",
        select,
        " FROM group_members gm JOIN members m ON m.spot_id = gm.spot_id AND m.id = gm.member_id WHERE gm.spot_id = ",
    ]);
    sql.push_bind(spot_id.into()).push(" AND gm.group_id = ").push_bind(group_id.into());
    sql.push_predicates(filters);
    sql
}

/// A page of a group's members (with their group role), in member creation order.
pub async fn list(
    ex: Ex<'_>,
    spot_id: SpotId,
    group_id: GroupId,
    filters: &[Predicate],
    offset: i64,
    limit: Option<i64>,
) -> Result<Vec<(MemberRow, GroupRole)>, sqlx::Error> {
    let mut sql = group_members_sql(GROUP_MEMBER_COLUMNS, spot_id, group_id, filters);
    sql.push(" ORDER BY gm.member_id");
    if let Some(limit) = limit {
        sql.push(" LIMIT ").push_bind(Bind::I64(limit)).push(" OFFSET ").push_bind(Bind::I64(offset));
    }
    run!(ex, |c| {
        use sqlx::{FromRow, Row};
        let rows = bind_all!(sqlx::query(sql.text_for(&*c)), &sql.binds).fetch_all(&mut *c).await?;
        rows.iter()
            .map(|r| Ok((MemberRow::from_row(r)?, r.try_get::<GroupRole, _>("group_role")?)))
            .collect::<Result<Vec<_>, sqlx::Error>>()
    })
}

/// How many of a group's members match `filters`.
pub async fn count(ex: Ex<'_>, spot_id: SpotId, group_id: GroupId, filters: &[Predicate]) -> Result<i64, sqlx::Error> {
    let sql = group_members_sql("COUNT(*)", spot_id, group_id, filters);
    run!(ex, |c| bind_all!(sqlx::query_scalar::<_, i64>(sql.text_for(&*c)), &sql.binds).fetch_one(c).await)
}

/// A batch of a group's member ids after `after`, in id order (keyset paging).
pub async fn member_ids(
    ex: Ex<'_>,
    spot_id: SpotId,
    group_id: GroupId,
    after: Option<MemberId>,
    limit: i64,
) -> Result<Vec<MemberId>, sqlx::Error> {
    let mut sql = Sql::new("SELECT member_id FROM group_members WHERE spot_id = ");
    sql.push_bind(spot_id.into()).push(" AND group_id = ").push_bind(group_id.into());
    if let Some(a) = after {
        sql.push(" AND member_id > ").push_bind(a.into());
    }
    sql.push(" ORDER BY member_id LIMIT ").push_bind(Bind::I64(limit));
    run!(ex, |c| bind_all!(sqlx::query_scalar::<_, MemberId>(sql.text_for(&*c)), &sql.binds).fetch_all(c).await)
}

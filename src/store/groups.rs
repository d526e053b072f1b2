//! GroupRow rows (`spot_groups`): the plain CRUD of a group, its row lock and its member
//! count. Who is in a group lives in [`super::memberships`], a smart group's
//! computation state in [`super::smart_groups`], its blacklist in [`super::blacklist`],
//! Kaizala sub-group links in [`super::group_links`], course links in
//! [`super::course_groups`]: each its own table, each its own module.

use super::sql::Predicate;
use super::sql::Sql;
use super::{one_row, Ex};
use crate::domain::ids::{GroupId, SpotId};
use crate::domain::vocab::{GroupKind, KaizalaGroupType};
use crate::{bind_all, run};

/// One row as the domain's `Group` reads it.
#[derive(Clone, Debug, PartialEq, sqlx::FromRow)]
pub struct GroupRow {
    pub spot_id: SpotId,
    pub id: GroupId,
    pub name: String,
    pub description: Option<String>,
    pub emoji: Option<String>,
    pub icon: Option<String>,
    pub kind: GroupKind,
    pub rules: Option<String>,
    pub ready: bool,
    pub member_count: i64,
    pub welcome_message: Option<String>,
    pub group_type: KaizalaGroupType,
    pub created_at: i64,
}

const COLUMNS: &str = "spot_id, id, name, description, emoji, icon, kind, rules, ready, member_count, \
    welcome_message, group_type, created_at";

pub async fn insert(ex: Ex<'_>, g: &GroupRow) -> Result<(), sqlx::Error> {
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
        .bind(g.kind)
        .bind(&g.rules)
        .bind(g.ready)
        .bind(g.member_count)
        .bind(&g.welcome_message)
        .bind(g.group_type)
        .bind(g.created_at)
        .execute(c)
        .await
        .map(|_| ())
    })
}

/// The text of [`get`].
static BY_ID: super::sql::ByIdSql = super::sql::ByIdSql::new("spot_groups", COLUMNS);

pub async fn get(ex: Ex<'_>, spot_id: SpotId, id: GroupId) -> Result<Option<GroupRow>, sqlx::Error> {
    super::sql::by_id(ex, &BY_ID, spot_id, id).await
}

/// A page of the spot's groups matching `filters`, and how many match.
pub async fn list(
    ex: Ex<'_>,
    spot_id: SpotId,
    filters: &[Predicate],
    offset: i64,
    limit: i64,
) -> Result<(Vec<GroupRow>, i64), sqlx::Error> {
    super::sql::page(ex, "spot_groups", COLUMNS, spot_id, filters, offset, limit).await
}

/// The groups among `ids` that belong to the spot, in id order.
pub async fn get_many(ex: Ex<'_>, spot_id: SpotId, ids: &[GroupId]) -> Result<Vec<GroupRow>, sqlx::Error> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let mut sql = Sql::from_parts(&["SELECT ", COLUMNS, " FROM spot_groups WHERE spot_id = "]);
    sql.push_bind(spot_id.into()).push(" AND id IN ");
    sql.push_list(ids.iter().map(|id| (*id).into())).push(" ORDER BY id");
    run!(ex, |c| bind_all!(sqlx::query_as::<_, GroupRow>(sql.text_for(&*c)), &sql.binds).fetch_all(c).await)
}

pub async fn update(ex: Ex<'_>, g: &GroupRow) -> Result<(), sqlx::Error> {
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
        .bind(g.group_type)
        .execute(c)
        .await
        .map(|_| ())
    })
}

pub async fn delete(ex: Ex<'_>, spot_id: SpotId, id: GroupId) -> Result<bool, sqlx::Error> {
    run!(ex, |c| one_row(
        sqlx::query("DELETE FROM spot_groups WHERE spot_id = $1 AND id = $2").bind(spot_id).bind(id).execute(c).await
    ))
}

/// Takes the group row's write lock for the rest of the transaction (and tells whether
/// it exists): concurrent membership writes to one group then queue instead of
/// deadlocking on each other's uncommitted rows (PostgreSQL; SQLite writers are
/// serialised already).
pub async fn lock(ex: Ex<'_>, spot_id: SpotId, id: GroupId) -> Result<bool, sqlx::Error> {
    run!(ex, |c| one_row(
        sqlx::query("UPDATE spot_groups SET member_count = member_count WHERE spot_id = $1 AND id = $2")
            .bind(spot_id)
            .bind(id)
            .execute(c)
            .await
    ))
}

pub async fn add_member_count(ex: Ex<'_>, spot_id: SpotId, id: GroupId, delta: i64) -> Result<(), sqlx::Error> {
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

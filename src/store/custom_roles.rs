//! Custom roles of a spot (`/v1/spotMemberCustomRole`).

use super::sql::Predicate;
use super::{one_row, Ex};
use crate::domain::ids::{RoleId, SpotId};
use crate::run;

/// One row of `custom_roles`; `permissions` is a JSON array of strings.
#[derive(Clone, Debug, PartialEq, sqlx::FromRow)]
pub struct CustomRoleRow {
    pub spot_id: SpotId,
    pub id: RoleId,
    pub label: String,
    pub description: Option<String>,
    pub permissions: String,
}

const COLUMNS: &str = "spot_id, id, label, description, permissions";

pub async fn insert(ex: Ex<'_>, r: &CustomRoleRow, now: i64) -> Result<(), sqlx::Error> {
    run!(ex, |c| sqlx::query(
        "INSERT INTO custom_roles (spot_id, id, label, description, permissions, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6)"
    )
    .bind(r.spot_id)
    .bind(r.id)
    .bind(&r.label)
    .bind(&r.description)
    .bind(&r.permissions)
    .bind(now)
    .execute(c)
    .await
    .map(|_| ()))
}

/// The text of [`get`].
static BY_ID: super::sql::ByIdSql = super::sql::ByIdSql::new("custom_roles", COLUMNS);

pub async fn get(ex: Ex<'_>, spot_id: SpotId, id: RoleId) -> Result<Option<CustomRoleRow>, sqlx::Error> {
    super::sql::by_id(ex, &BY_ID, spot_id, id).await
}

pub async fn list(
    ex: Ex<'_>,
    spot_id: SpotId,
    filters: &[Predicate],
    offset: i64,
    limit: i64,
) -> Result<(Vec<CustomRoleRow>, i64), sqlx::Error> {
    super::sql::page(ex, "custom_roles", COLUMNS, spot_id, filters, offset, limit).await
}

pub async fn update(ex: Ex<'_>, r: &CustomRoleRow) -> Result<(), sqlx::Error> {
    run!(ex, |c| {
        sqlx::query(
            "UPDATE custom_roles SET label = $3, description = $4, permissions = $5 WHERE spot_id = $1 AND id = $2",
        )
        .bind(r.spot_id)
        .bind(r.id)
        .bind(&r.label)
        .bind(&r.description)
        .bind(&r.permissions)
        .execute(c)
        .await
        .map(|_| ())
    })
}

pub async fn delete(ex: Ex<'_>, spot_id: SpotId, id: RoleId) -> Result<bool, sqlx::Error> {
    run!(ex, |c| one_row(
        sqlx::query("DELETE FROM custom_roles WHERE spot_id = $1 AND id = $2").bind(spot_id).bind(id).execute(c).await
    ))
}

//! Custom property definitions (`custom_properties`); members' values are
//! [`super::property_values`].

use super::{one_row, Ex};
use crate::domain::ids::{PropertyId, SpotId};
use crate::domain::vocab::PropertyType;
use crate::run;

/// One row of `custom_properties`; `possible_values` is a JSON array of strings.
#[derive(Clone, Debug, PartialEq, sqlx::FromRow)]
pub struct PropertyRow {
    pub spot_id: SpotId,
    pub id: PropertyId,
    pub slug: String,
    pub label: String,
    pub description: Option<String>,
    pub kind: PropertyType,
    pub possible_values: String,
}

const COLUMNS: &str = "spot_id, id, slug, label, description, type AS kind, possible_values";

pub async fn insert(ex: Ex<'_>, p: &PropertyRow, now: i64) -> Result<(), sqlx::Error> {
    run!(ex, |c| sqlx::query(
        "INSERT INTO custom_properties (spot_id, id, slug, label, description, type, possible_values, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
    )
    .bind(p.spot_id)
    .bind(p.id)
    .bind(&p.slug)
    .bind(&p.label)
    .bind(&p.description)
    .bind(p.kind)
    .bind(&p.possible_values)
    .bind(now)
    .execute(c)
    .await
    .map(|_| ()))
}

pub async fn get_by_slug(ex: Ex<'_>, spot_id: SpotId, slug: &str) -> Result<Option<PropertyRow>, sqlx::Error> {
    select_by_slug(ex, spot_id, slug, "").await
}

/// The property with `slug`, locked for update until the transaction ends (taken before
/// its values are changed or removed, so no value writer runs alongside).
pub async fn get_by_slug_for_update(
    ex: Ex<'_>,
    spot_id: SpotId,
    slug: &str,
) -> Result<Option<PropertyRow>, sqlx::Error> {
    let lock = ex.row_lock(" FOR UPDATE");
    select_by_slug(ex, spot_id, slug, lock).await
}

async fn select_by_slug(
    ex: Ex<'_>,
    spot_id: SpotId,
    slug: &str,
    lock: &'static str,
) -> Result<Option<PropertyRow>, sqlx::Error> {
    let sql = format!("SELECT {COLUMNS} FROM custom_properties WHERE spot_id = $1 AND slug = $2{lock}");
    run!(ex, |c| sqlx::query_as::<_, PropertyRow>(&sql).bind(spot_id).bind(slug).fetch_optional(c).await)
}

/// Every property of the spot, in creation order.
pub async fn list(ex: Ex<'_>, spot_id: SpotId) -> Result<Vec<PropertyRow>, sqlx::Error> {
    select_all(ex, spot_id, "").await
}

/// Every property of the spot, share-locked until the transaction ends: what a value
/// writer reads, so a property cannot be deleted (or lose an option) under it.
pub async fn list_for_share(ex: Ex<'_>, spot_id: SpotId) -> Result<Vec<PropertyRow>, sqlx::Error> {
    let lock = ex.row_lock(" FOR SHARE");
    select_all(ex, spot_id, lock).await
}

async fn select_all(ex: Ex<'_>, spot_id: SpotId, lock: &'static str) -> Result<Vec<PropertyRow>, sqlx::Error> {
    let sql = format!("SELECT {COLUMNS} FROM custom_properties WHERE spot_id = $1 ORDER BY id{lock}");
    run!(ex, |c| sqlx::query_as::<_, PropertyRow>(&sql).bind(spot_id).fetch_all(c).await)
}

pub async fn update(ex: Ex<'_>, p: &PropertyRow) -> Result<(), sqlx::Error> {
    run!(ex, |c| {
        sqlx::query(
        "UPDATE custom_properties SET label = $3, description = $4, possible_values = $5 WHERE spot_id = $1 AND id = $2"
    )
    .bind(p.spot_id)
    .bind(p.id)
    .bind(&p.label)
    .bind(&p.description)
    .bind(&p.possible_values)
    .execute(c)
    .await
    .map(|_| ())
    })
}

pub async fn delete(ex: Ex<'_>, spot_id: SpotId, id: PropertyId) -> Result<bool, sqlx::Error> {
    run!(ex, |c| one_row(
        sqlx::query("DELETE FROM custom_properties WHERE spot_id = $1 AND id = $2")
            .bind(spot_id)
            .bind(id)
            .execute(c)
            .await
    ))
}

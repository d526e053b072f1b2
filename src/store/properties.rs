//! Custom property definitions and member values.

use std::collections::HashMap;

use super::sql::{Bind, Sql, IN_LIST_MAX};
use super::{one_row, Ex};
use crate::domain::ids::{MemberId, PropertyId, SpotId};
use super::members::MemberRow;
use crate::domain::properties::{PropertyDef, StoredValue};
use crate::{bind_all, run};

const COLUMNS: &str = "spot_id, id, slug, label, description, type AS kind, possible_values";

pub async fn insert(ex: Ex<'_>, p: &PropertyDef, now: i64) -> Result<(), sqlx::Error> {
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
    .bind(p.possible_values.to_json())
    .bind(now)
    .execute(c)
    .await
    .map(|_| ()))
}

pub async fn get_by_slug(ex: Ex<'_>, spot_id: SpotId, slug: &str) -> Result<Option<PropertyDef>, sqlx::Error> {
    select_by_slug(ex, spot_id, slug, "").await
}

/// The property with `slug`, locked for update until the transaction ends (taken before
/// its values are changed or removed, so no value writer runs alongside).
pub async fn get_by_slug_for_update(
    ex: Ex<'_>,
    spot_id: SpotId,
    slug: &str,
) -> Result<Option<PropertyDef>, sqlx::Error> {
    let lock = ex.row_lock(" FOR UPDATE");
    select_by_slug(ex, spot_id, slug, lock).await
}

async fn select_by_slug(
    ex: Ex<'_>,
    spot_id: SpotId,
    slug: &str,
    lock: &str,
) -> Result<Option<PropertyDef>, sqlx::Error> {
    let sql = format!("SELECT {COLUMNS} FROM custom_properties WHERE spot_id = $1 AND slug = $2{lock}");
    run!(ex, |c| sqlx::query_as::<_, PropertyDef>(&sql).bind(spot_id).bind(slug).fetch_optional(c).await)
}

/// Every property of the spot, in creation order.
pub async fn list(ex: Ex<'_>, spot_id: SpotId) -> Result<Vec<PropertyDef>, sqlx::Error> {
    select_all(ex, spot_id, "").await
}

/// Every property of the spot, share-locked until the transaction ends: what a value
/// writer reads, so a property cannot be deleted (or lose an option) under it.
pub async fn list_for_share(ex: Ex<'_>, spot_id: SpotId) -> Result<Vec<PropertyDef>, sqlx::Error> {
    let lock = ex.row_lock(" FOR SHARE");
    select_all(ex, spot_id, lock).await
}

async fn select_all(ex: Ex<'_>, spot_id: SpotId, lock: &str) -> Result<Vec<PropertyDef>, sqlx::Error> {
    let sql = format!("SELECT {COLUMNS} FROM custom_properties WHERE spot_id = $1 ORDER BY id{lock}");
    run!(ex, |c| sqlx::query_as::<_, PropertyDef>(&sql).bind(spot_id).fetch_all(c).await)
}

pub async fn update(ex: Ex<'_>, p: &PropertyDef) -> Result<(), sqlx::Error> {
    run!(ex, |c| {
        sqlx::query(
        "UPDATE custom_properties SET label = $3, description = $4, possible_values = $5 WHERE spot_id = $1 AND id = $2"
    )
    .bind(p.spot_id)
    .bind(p.id)
    .bind(&p.label)
    .bind(&p.description)
    .bind(p.possible_values.to_json())
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

/// Removes every stored value of a property (the values do not reference their
/// property, so deleting it takes them explicitly). A value is either text or a number:
/// one statement per partial index, each an index range.
pub async fn delete_all_values(ex: Ex<'_>, spot_id: SpotId, property_id: PropertyId) -> Result<u64, sqlx::Error> {
    run!(ex, |c| {
        let mut removed = 0;
        for column in ["value_text", "value_num"] {
            let sql = format!(
                "DELETE FROM member_property_values WHERE spot_id = $1 AND property_id = $2 AND {column} IS NOT NULL"
            );
            removed += sqlx::query(&sql).bind(spot_id).bind(property_id).execute(&mut *c).await?.rows_affected();
        }
        Ok(removed)
    })
}

/// Removes the stored values equal to any of `options` (select options that were
/// dropped); returns the members that had one (a member may be listed twice).
pub async fn delete_option_values(
    ex: Ex<'_>,
    spot_id: SpotId,
    property_id: PropertyId,
    options: &[String],
) -> Result<Vec<MemberId>, sqlx::Error> {
    if options.is_empty() {
        return Ok(Vec::new());
    }
    let mut sql = Sql::new("DELETE FROM member_property_values WHERE spot_id = ");
    sql.push_bind(spot_id.into()).push(" AND property_id = ").push_bind(property_id.into());
    sql.push(" AND value_text IN ").push_list(options.iter().map(|o| Bind::Text(o.clone())));
    sql.push(" RETURNING member_id");
    run!(ex, |c| bind_all!(sqlx::query_scalar::<_, MemberId>(sql.text_for(&*c)), &sql.binds).fetch_all(c).await)
}

/// Renames select options in the stored values, all in one statement so that each
/// value is renamed once from what it was: `{a→b, b→a}` swaps. Returns the members
/// whose values changed (a member may be listed twice).
pub async fn rename_option_values(
    ex: Ex<'_>,
    spot_id: SpotId,
    property_id: PropertyId,
    renames: &[(String, String)],
) -> Result<Vec<MemberId>, sqlx::Error> {
    if renames.is_empty() {
        return Ok(Vec::new());
    }
    let mut sql = Sql::new("UPDATE member_property_values SET value_text = CASE value_text");
    for (from, to) in renames {
        sql.push(" WHEN ").push_bind(Bind::Text(from.clone())).push(" THEN ").push_bind(Bind::Text(to.clone()));
    }
    sql.push(" END WHERE spot_id = ").push_bind(spot_id.into());
    sql.push(" AND property_id = ").push_bind(property_id.into());
    sql.push(" AND value_text IN ").push_list(renames.iter().map(|(from, _)| Bind::Text(from.clone())));
    sql.push(" RETURNING member_id");
    run!(ex, |c| bind_all!(sqlx::query_scalar::<_, MemberId>(sql.text_for(&*c)), &sql.binds).fetch_all(c).await)
}

/// The member whose property values are about to be written, row-locked until the
/// transaction ends (PostgreSQL; SQLite serialises writers), so that concurrent value
/// writes of one member run one after the other and each reads the member and its
/// values as the previous one left them. `FOR NO KEY UPDATE` is the lock an `UPDATE`
/// of the member takes: it does not block the key-share locks of membership inserts.
pub async fn lock_member(ex: Ex<'_>, spot_id: SpotId, member_id: MemberId) -> Result<Option<MemberRow>, sqlx::Error> {
    let lock = ex.row_lock(" FOR NO KEY UPDATE");
    let sql = format!("SELECT {} FROM members WHERE spot_id = $1 AND id = $2{lock}", super::members::COLUMNS);
    run!(ex, |c| sqlx::query_as::<_, MemberRow>(&sql).bind(spot_id).bind(member_id).fetch_optional(c).await)
}

/// Replaces a member's value of a property (`values` empty clears it).
pub async fn set_values(
    ex: Ex<'_>,
    spot_id: SpotId,
    property_id: PropertyId,
    member_id: MemberId,
    values: &[StoredValue],
) -> Result<(), sqlx::Error> {
    let mut sql = Sql::new("DELETE FROM member_property_values WHERE spot_id = ");
    sql.push_bind(spot_id.into()).push(" AND property_id = ").push_bind(property_id.into());
    sql.push(" AND member_id = ").push_bind(member_id.into());
    let mut insert = Sql::new(
        "INSERT INTO member_property_values (spot_id, property_id, member_id, ord, value_text, value_num) VALUES ",
    );
    for (i, v) in values.iter().enumerate() {
        if i > 0 {
            insert.push(", ");
        }
        insert.push("(").push_bind(spot_id.into()).push(", ").push_bind(property_id.into());
        insert.push(", ").push_bind(member_id.into()).push(", ").push_bind(Bind::I64(i as i64)).push(", ");
        match &v.text {
            Some(t) => insert.push_bind(Bind::Text(t.clone())),
            None => insert.push("NULL"),
        };
        insert.push(", ");
        match v.num {
            Some(n) => insert.push_bind(Bind::F64(n)),
            None => insert.push("NULL"),
        };
        insert.push(")");
    }
    run!(ex, |c| {
        bind_all!(sqlx::query(sql.text_for(&*c)), &sql.binds).execute(&mut *c).await?;
        if !values.is_empty() {
            bind_all!(sqlx::query(insert.text_for(&*c)), &insert.binds).execute(&mut *c).await?;
        }
        Ok(())
    })
}

/// A member's stored values: (property id, ord, text, num), in ord order.
pub async fn member_values(
    ex: Ex<'_>,
    spot_id: SpotId,
    member_id: MemberId,
) -> Result<Vec<(PropertyId, i64, Option<String>, Option<f64>)>, sqlx::Error> {
    run!(ex, |c| sqlx::query_as::<_, (PropertyId, i64, Option<String>, Option<f64>)>(
        "SELECT property_id, ord, value_text, value_num FROM member_property_values \
         WHERE spot_id = $1 AND member_id = $2 ORDER BY property_id, ord"
    )
    .bind(spot_id)
    .bind(member_id)
    .fetch_all(c)
    .await)
}

/// Inserts value rows of several members at once: (property, member, ord, value).
/// The caller has cleared any previous value of those (property, member) pairs.
pub async fn insert_values(
    ex: Ex<'_>,
    spot_id: SpotId,
    rows: &[(PropertyId, MemberId, i64, StoredValue)],
) -> Result<(), sqlx::Error> {
    if rows.is_empty() {
        return Ok(());
    }
    let mut sql = Sql::new(
        "INSERT INTO member_property_values (spot_id, property_id, member_id, ord, value_text, value_num) VALUES ",
    );
    for (i, (pid, mid, ord, v)) in rows.iter().enumerate() {
        if i > 0 {
            sql.push(", ");
        }
        sql.push("(").push_bind(spot_id.into()).push(", ").push_bind((*pid).into());
        sql.push(", ").push_bind((*mid).into()).push(", ").push_bind(Bind::I64(*ord)).push(", ");
        match &v.text {
            Some(t) => sql.push_bind(Bind::Text(t.clone())),
            None => sql.push("NULL"),
        };
        sql.push(", ");
        match v.num {
            Some(n) => sql.push_bind(Bind::F64(n)),
            None => sql.push("NULL"),
        };
        sql.push(")");
    }
    run!(ex, |c| bind_all!(sqlx::query(sql.text_for(&*c)), &sql.binds).execute(c).await.map(|_| ()))
}

/// The values of several members, grouped by member then property (in statements of
/// [`IN_LIST_MAX`] ids).
pub async fn values_of_members(
    ex: Ex<'_>,
    spot_id: SpotId,
    member_ids: &[MemberId],
) -> Result<HashMap<MemberId, HashMap<PropertyId, Vec<StoredValue>>>, sqlx::Error> {
    let mut out: HashMap<MemberId, HashMap<PropertyId, Vec<StoredValue>>> = HashMap::new();
    let rows = run!(ex, |c| {
        let mut rows = Vec::new();
        for chunk in member_ids.chunks(IN_LIST_MAX) {
            let mut sql = Sql::new(
                "SELECT member_id, property_id, value_text, value_num FROM member_property_values WHERE spot_id = ",
            );
            sql.push_bind(spot_id.into()).push(" AND member_id IN ");
            sql.push_list(chunk.iter().map(|id| (*id).into())).push(" ORDER BY member_id, property_id, ord");
            rows.extend(
                bind_all!(
                    sqlx::query_as::<_, (MemberId, PropertyId, Option<String>, Option<f64>)>(sql.text_for(&*c)),
                    &sql.binds
                )
                .fetch_all(&mut *c)
                .await?,
            );
        }
        Ok::<_, sqlx::Error>(rows)
    })?;
    for (mid, pid, text, num) in rows {
        out.entry(mid).or_default().entry(pid).or_default().push(StoredValue { text, num });
    }
    Ok(out)
}

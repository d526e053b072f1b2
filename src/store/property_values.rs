//! Members' custom-property values (`member_property_values`): one row per value (a
//! multiple select has one per option, in `ord` order), text in `value_text` or a
//! number in `value_num`, each column with its partial index for filters.

use std::collections::HashMap;

use super::sql::{Bind, Sql, IN_LIST_MAX};
use super::Ex;
use crate::domain::ids::{MemberId, PropertyId, SpotId};
use crate::{bind_all, run};

/// One stored value: text (text, date, select option) or number (number, boolean).
#[derive(Clone, Debug, PartialEq)]
pub struct StoredValue {
    pub text: Option<String>,
    pub num: Option<f64>,
}

const INSERT: &str =
    "INSERT INTO member_property_values (spot_id, property_id, member_id, ord, value_text, value_num) VALUES ";

/// Appends one `(spot, property, member, ord, text, num)` tuple of an [`INSERT`].
fn push_value_row(
    sql: &mut Sql,
    comma: bool,
    spot_id: SpotId,
    property_id: PropertyId,
    member_id: MemberId,
    ord: i64,
    v: &StoredValue,
) {
    if comma {
        sql.push(", ");
    }
    sql.push("(").push_bind(spot_id.into()).push(", ").push_bind(property_id.into());
    sql.push(", ").push_bind(member_id.into()).push(", ").push_bind(Bind::I64(ord)).push(", ");
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

/// Removes every stored value of a property (the values do not reference their
/// property, so deleting it takes them explicitly). A value is either text or a number:
/// one statement per partial index, each an index range.
pub async fn delete_all(ex: Ex<'_>, spot_id: SpotId, property_id: PropertyId) -> Result<u64, sqlx::Error> {
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
pub async fn delete_options(
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
pub async fn rename_options(
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

/// Replaces a member's value of a property (`values` empty clears it).
pub async fn replace(
    ex: Ex<'_>,
    spot_id: SpotId,
    property_id: PropertyId,
    member_id: MemberId,
    values: &[StoredValue],
) -> Result<(), sqlx::Error> {
    let mut sql = Sql::new("DELETE FROM member_property_values WHERE spot_id = ");
    sql.push_bind(spot_id.into()).push(" AND property_id = ").push_bind(property_id.into());
    sql.push(" AND member_id = ").push_bind(member_id.into());
    let mut insert = Sql::new(INSERT);
    for (i, v) in values.iter().enumerate() {
        push_value_row(&mut insert, i > 0, spot_id, property_id, member_id, i as i64, v);
    }
    run!(ex, |c| {
        bind_all!(sqlx::query(sql.text_for(&*c)), &sql.binds).execute(&mut *c).await?;
        if !values.is_empty() {
            bind_all!(sqlx::query(insert.text_for(&*c)), &insert.binds).execute(&mut *c).await?;
        }
        Ok(())
    })
}

/// Gives each of `member_ids` the same value of a property (`values` empty clears
/// it): one delete and batched inserts for all of them (a bulk action's chunk), in
/// statements of [`IN_LIST_MAX`] members or value rows.
pub async fn replace_many(
    mut ex: Ex<'_>,
    spot_id: SpotId,
    property_id: PropertyId,
    member_ids: &[MemberId],
    values: &[StoredValue],
) -> Result<(), sqlx::Error> {
    for chunk in member_ids.chunks(IN_LIST_MAX) {
        let mut sql = Sql::new("DELETE FROM member_property_values WHERE spot_id = ");
        sql.push_bind(spot_id.into()).push(" AND property_id = ").push_bind(property_id.into());
        sql.push(" AND member_id IN ").push_list(chunk.iter().map(|id| (*id).into()));
        run!(ex.reborrow(), |c| bind_all!(sqlx::query(sql.text_for(&*c)), &sql.binds).execute(c).await.map(|_| ()))?;
    }
    let rows: Vec<_> = member_ids
        .iter()
        .flat_map(|mid| values.iter().enumerate().map(move |(ord, v)| (property_id, *mid, ord as i64, v.clone())))
        .collect();
    for chunk in rows.chunks(IN_LIST_MAX) {
        insert_many(ex.reborrow(), spot_id, chunk).await?;
    }
    Ok(())
}

/// A member's stored values: (property id, ord, text, num), in ord order.
pub async fn list_of_member(
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
pub async fn insert_many(
    ex: Ex<'_>,
    spot_id: SpotId,
    rows: &[(PropertyId, MemberId, i64, StoredValue)],
) -> Result<(), sqlx::Error> {
    if rows.is_empty() {
        return Ok(());
    }
    let mut sql = Sql::new(INSERT);
    for (i, (pid, mid, ord, v)) in rows.iter().enumerate() {
        push_value_row(&mut sql, i > 0, spot_id, *pid, *mid, *ord, v);
    }
    run!(ex, |c| bind_all!(sqlx::query(sql.text_for(&*c)), &sql.binds).execute(c).await.map(|_| ()))
}

/// The values of several members, grouped by member then property (in statements of
/// [`IN_LIST_MAX`] ids).
pub async fn list_of_members(
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

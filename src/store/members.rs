//! Spot members. Emails are unique per spot on their lower-cased form (`email_norm`),
//! mobile numbers on their E.164 form; both uniques are what de-duplicates concurrent
//! invitations (`ON CONFLICT DO NOTHING` and a re-select). Every read of member rows
//! is here, the share-locked ones a smart-group computation takes included; a group's
//! members (joined with their memberships) are [`super::memberships`].

use super::sql::Predicate;
use super::sql::{Bind, Sql, IN_LIST_MAX};
use super::{one_row, Ex};
use crate::domain::ids::{MemberId, PropertyId, RoleId, SpotId};
use crate::domain::vocab::{MemberRole, MemberStatus};
use crate::{bind_all, run};

/// The member columns as a literal, each after `$p` (a table alias with its dot, or
/// `""`): one list for [`COLUMNS`] and its aliased forms, so they cannot drift apart.
macro_rules! member_columns {
    ($p:literal) => {
        $crate::store::members::member_columns!(@ $p; spot_id, id, user_id, email, mobile_number, title, lang,
            role, custom_role_id, status, firstname, lastname, warnings, avatar_url, embed_base_urls, invited_at,
            registered_at, updated_at, last_activity_at)
    };
    (@ $p:literal; $first:ident $(, $rest:ident)*) => {
        concat!($p, stringify!($first) $(, ", ", $p, stringify!($rest))*)
    };
}
pub(crate) use member_columns;

pub const COLUMNS: &str = member_columns!("");

/// Inserts `m` unless its email or mobile number is already taken in the spot.
/// One row as the domain's `Member` reads it.
#[derive(Clone, Debug, PartialEq, sqlx::FromRow)]
pub struct MemberRow {
    pub spot_id: SpotId,
    pub id: MemberId,
    pub user_id: Option<uuid::Uuid>,
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
    pub embed_base_urls: Option<String>,
    pub invited_at: i64,
    pub registered_at: Option<i64>,
    pub updated_at: i64,
    pub last_activity_at: Option<i64>,
}

pub async fn insert_if_absent(ex: Ex<'_>, m: &MemberRow) -> Result<Option<MemberRow>, sqlx::Error> {
    let sql = format!(
        "INSERT INTO members (spot_id, id, user_id, email, email_norm, mobile_number, title, lang, role, \
         custom_role_id, status, firstname, lastname, warnings, avatar_url, embed_base_urls, invited_at, \
         registered_at, updated_at, last_activity_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20) \
         ON CONFLICT DO NOTHING RETURNING {COLUMNS}"
    );
    let email_norm = m.email.as_deref().map(str::to_lowercase);
    run!(ex, |c| sqlx::query_as::<_, MemberRow>(&sql)
        .bind(m.spot_id)
        .bind(m.id)
        .bind(m.user_id)
        .bind(&m.email)
        .bind(&email_norm)
        .bind(&m.mobile_number)
        .bind(&m.title)
        .bind(&m.lang)
        .bind(m.role)
        .bind(m.custom_role_id)
        .bind(m.status)
        .bind(&m.firstname)
        .bind(&m.lastname)
        .bind(m.warnings)
        .bind(&m.avatar_url)
        .bind(&m.embed_base_urls)
        .bind(m.invited_at)
        .bind(m.registered_at)
        .bind(m.updated_at)
        .bind(m.last_activity_at)
        .fetch_optional(c)
        .await)
}

/// The text of [`get`].
static BY_ID: super::sql::ByIdSql = super::sql::ByIdSql::new("members", COLUMNS);

pub async fn get(ex: Ex<'_>, spot_id: SpotId, id: MemberId) -> Result<Option<MemberRow>, sqlx::Error> {
    super::sql::by_id(ex, &BY_ID, spot_id, id).await
}

/// The member under its row lock until the transaction ends (PostgreSQL; SQLite write
/// transactions exclude each other already), for read-modify-write updates. `FOR NO KEY
/// UPDATE` (the lock an `UPDATE` of non-key columns takes) still lets rows that
/// reference the member (memberships, participants) be inserted meanwhile.
pub async fn get_for_update(ex: Ex<'_>, spot_id: SpotId, id: MemberId) -> Result<Option<MemberRow>, sqlx::Error> {
    let lock = ex.row_lock(" FOR NO KEY UPDATE");
    let sql = format!("SELECT {COLUMNS} FROM members WHERE spot_id = $1 AND id = $2{lock}");
    run!(ex, |c| sqlx::query_as::<_, MemberRow>(&sql).bind(spot_id).bind(id).fetch_optional(c).await)
}

/// Takes the lock of the spot's counters row (`spot_counters`) until the transaction
/// ends (PostgreSQL), before any member insert: every insert also bumps the spot's
/// member count, i.e. takes this lock anyway, and taking it first keeps two invitations
/// from each holding an email the other wants (a deadlock) while both wait for it.
/// False when the spot does not exist. The row is distributed by `spot_id` on Citus,
/// so the lock is taken on the spot's worker only (not on every node, as a write to
/// the reference table `spots` would).
pub async fn lock_spot_for_inserts(ex: Ex<'_>, spot_id: SpotId) -> Result<bool, sqlx::Error> {
    run!(ex, |c| one_row(
        sqlx::query("UPDATE spot_counters SET member_count = member_count WHERE spot_id = $1")
            .bind(spot_id)
            .execute(c)
            .await
    ))
}

pub async fn get_by_email(ex: Ex<'_>, spot_id: SpotId, email: &str) -> Result<Option<MemberRow>, sqlx::Error> {
    let sql = format!("SELECT {COLUMNS} FROM members WHERE spot_id = $1 AND email_norm = $2");
    run!(ex, |c| sqlx::query_as::<_, MemberRow>(&sql)
        .bind(spot_id)
        .bind(email.trim().to_lowercase())
        .fetch_optional(c)
        .await)
}

pub async fn get_by_mobile(ex: Ex<'_>, spot_id: SpotId, mobile: &str) -> Result<Option<MemberRow>, sqlx::Error> {
    let sql = format!("SELECT {COLUMNS} FROM members WHERE spot_id = $1 AND mobile_number = $2");
    run!(ex, |c| sqlx::query_as::<_, MemberRow>(&sql).bind(spot_id).bind(mobile).fetch_optional(c).await)
}

/// The members among `ids` that belong to the spot.
pub async fn get_many(ex: Ex<'_>, spot_id: SpotId, ids: &[MemberId]) -> Result<Vec<MemberRow>, sqlx::Error> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let mut sql = Sql::from_parts(&["SELECT ", COLUMNS, " FROM members WHERE spot_id = "]);
    sql.push_bind(spot_id.into()).push(" AND id IN ");
    sql.push_list(ids.iter().map(|id| (*id).into())).push(" ORDER BY id");
    run!(ex, |c| bind_all!(sqlx::query_as::<_, MemberRow>(sql.text_for(&*c)), &sql.binds).fetch_all(c).await)
}

/// The spot's members among `ids`, in id order. On PostgreSQL the rows are
/// share-locked until the transaction ends, so a concurrent update of one of them is
/// either committed before they are read or waits until this transaction commits.
pub async fn get_many_for_share(ex: Ex<'_>, spot_id: SpotId, ids: &[MemberId]) -> Result<Vec<MemberRow>, sqlx::Error> {
    get_many_locked(ex, spot_id, ids, " FOR SHARE").await
}

/// The spot's members among `ids`, in id order, with the row lock `clause` on
/// PostgreSQL (none on SQLite, whose writers exclude each other already).
async fn get_many_locked(
    ex: Ex<'_>,
    spot_id: SpotId,
    ids: &[MemberId],
    clause: &'static str,
) -> Result<Vec<MemberRow>, sqlx::Error> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let mut sql = Sql::from_parts(&["SELECT ", COLUMNS, " FROM members WHERE spot_id = "]);
    sql.push_bind(spot_id.into()).push(" AND id IN ");
    sql.push_list(ids.iter().map(|id| (*id).into())).push(" ORDER BY id").push(ex.row_lock(clause));
    run!(ex, |c| bind_all!(sqlx::query_as::<_, MemberRow>(sql.text_for(&*c)), &sql.binds).fetch_all(c).await)
}

/// The next batch of the spot's members after `after` (id order), for a full smart-group
/// computation. On PostgreSQL the rows are share-locked until the batch commits, so a
/// concurrent member update cannot interleave with the batch's evaluation of it.
pub async fn batch_for_share(
    ex: Ex<'_>,
    spot_id: SpotId,
    after: Option<MemberId>,
    limit: i64,
) -> Result<Vec<MemberRow>, sqlx::Error> {
    let mut sql = Sql::from_parts(&["SELECT ", COLUMNS, " FROM members WHERE spot_id = "]);
    sql.push_bind(spot_id.into());
    if let Some(after) = after {
        sql.push(" AND id > ").push_bind(after.into());
    }
    sql.push(" ORDER BY id LIMIT ").push_bind(Bind::I64(limit)).push(ex.row_lock(" FOR SHARE"));
    run!(ex, |c| bind_all!(sqlx::query_as::<_, MemberRow>(sql.text_for(&*c)), &sql.binds).fetch_all(c).await)
}

/// Writes every mutable field of `m`.
pub async fn update(ex: Ex<'_>, m: &MemberRow) -> Result<(), sqlx::Error> {
    run!(ex, |c| {
        sqlx::query(
            "UPDATE members SET user_id = $3, title = $4, lang = $5, role = $6, custom_role_id = $7, status = $8, \
         firstname = $9, lastname = $10, avatar_url = $11, embed_base_urls = $12, registered_at = $13, \
         updated_at = $14, last_activity_at = $15, mobile_number = $16 WHERE spot_id = $1 AND id = $2",
        )
        .bind(m.spot_id)
        .bind(m.id)
        .bind(m.user_id)
        .bind(&m.title)
        .bind(&m.lang)
        .bind(m.role)
        .bind(m.custom_role_id)
        .bind(m.status)
        .bind(&m.firstname)
        .bind(&m.lastname)
        .bind(&m.avatar_url)
        .bind(&m.embed_base_urls)
        .bind(m.registered_at)
        .bind(m.updated_at)
        .bind(m.last_activity_at)
        .bind(&m.mobile_number)
        .execute(c)
        .await
        .map(|_| ())
    })
}

/// The spot's members among `ids`, in id order, each row-locked until the transaction
/// ends (PostgreSQL; SQLite serialises writers): the read of a chunk of a bulk change,
/// taken in id order so that two chunks over the same members cannot deadlock.
pub async fn get_many_for_update(ex: Ex<'_>, spot_id: SpotId, ids: &[MemberId]) -> Result<Vec<MemberRow>, sqlx::Error> {
    get_many_locked(ex, spot_id, ids, " FOR NO KEY UPDATE").await
}

/// Writes a status change of several members of one spot (`members`, all holding the
/// same new status, as `Member::set_status` left them) in one statement per
/// [`IN_LIST_MAX`] members. It names only the columns a status change moves: SQLite
/// rewrites the entry of every index over a column an `UPDATE` sets, changed or not,
/// and a member has a dozen of them (a full-row [`update`] per member made a
/// 10,000-member bulk status change write every one of them). `registered_at` and
/// `user_id` are set only when one of `members` is registering (its first Accepted),
/// each to its own value.
pub async fn update_status_many(
    mut ex: Ex<'_>,
    spot_id: SpotId,
    status: MemberStatus,
    now: i64,
    members: &[MemberRow],
    registering: &[MemberId],
) -> Result<(), sqlx::Error> {
    for chunk in members.chunks(IN_LIST_MAX / 4) {
        let mut sql = Sql::new("UPDATE members SET status = ");
        sql.push_bind(Bind::Text(status.to_string())).push(", updated_at = ").push_bind(Bind::I64(now));
        let registered: Vec<&MemberRow> = chunk.iter().filter(|m| registering.contains(&m.id)).collect();
        if !registered.is_empty() {
            sql.push(", registered_at = CASE id");
            for m in &registered {
                sql.push(" WHEN ").push_bind(m.id.into()).push(" THEN ");
                match m.registered_at {
                    Some(at) => sql.push_bind(Bind::I64(at)),
                    None => sql.push("registered_at"),
                };
            }
            sql.push(" ELSE registered_at END, user_id = CASE id");
            for m in &registered {
                sql.push(" WHEN ").push_bind(m.id.into()).push(" THEN ");
                match m.user_id {
                    Some(user) => sql.push_bind(Bind::Uuid(user)),
                    None => sql.push("user_id"),
                };
            }
            sql.push(" ELSE user_id END");
        }
        sql.push(" WHERE spot_id = ").push_bind(spot_id.into()).push(" AND id IN ");
        sql.push_list(chunk.iter().map(|m| m.id.into()));
        run!(ex.reborrow(), |c| bind_all!(sqlx::query(sql.text_for(&*c)), &sql.binds).execute(c).await.map(|_| ()))?;
    }
    Ok(())
}

/// Sets `updated_at` of the spot's members among `ids` (their properties changed): the
/// one column, for the reason [`update_status_many`] gives.
pub async fn touch_many(mut ex: Ex<'_>, spot_id: SpotId, ids: &[MemberId], now: i64) -> Result<(), sqlx::Error> {
    for chunk in ids.chunks(IN_LIST_MAX) {
        let mut sql = Sql::new("UPDATE members SET updated_at = ");
        sql.push_bind(Bind::I64(now)).push(" WHERE spot_id = ").push_bind(spot_id.into()).push(" AND id IN ");
        sql.push_list(chunk.iter().map(|id| (*id).into()));
        run!(ex.reborrow(), |c| bind_all!(sqlx::query(sql.text_for(&*c)), &sql.binds).execute(c).await.map(|_| ()))?;
    }
    Ok(())
}

/// Takes a deleted custom role away from the members holding it.
pub async fn clear_custom_role(ex: Ex<'_>, spot_id: SpotId, role_id: RoleId, now: i64) -> Result<u64, sqlx::Error> {
    run!(ex, |c| {
        sqlx::query(
            "UPDATE members SET custom_role_id = NULL, updated_at = $3 WHERE spot_id = $1 AND custom_role_id = $2",
        )
        .bind(spot_id)
        .bind(role_id)
        .bind(now)
        .execute(c)
        .await
        .map(|r| r.rows_affected())
    })
}

/// A condition on a member's value of one custom property: members with a value row of
/// `property_id` satisfying `predicate` (on `value_text` or `value_num`).
#[derive(Clone, Debug, PartialEq)]
pub struct PropertyFilter {
    pub property_id: PropertyId,
    pub predicate: Predicate,
}

fn push_property_filters(sql: &mut Sql, spot_id: SpotId, props: &[PropertyFilter]) {
    for f in props {
        sql.push(" AND id IN (SELECT member_id FROM member_property_values WHERE spot_id = ");
        sql.push_bind(spot_id.into()).push(" AND property_id = ").push_bind(f.property_id.into());
        sql.push_predicates(std::slice::from_ref(&f.predicate));
        // Stated so that every operator (`contains` too) reads the value's partial index.
        sql.push(" AND ").push(f.predicate.column).push(" IS NOT NULL)");
    }
}

/// One page of the spot's members matching `filters` and property filters (each an
/// index range on `member_property_values` yielding member ids), in creation order.
pub async fn list(
    ex: Ex<'_>,
    spot_id: SpotId,
    filters: &[Predicate],
    props: &[PropertyFilter],
    offset: i64,
    limit: i64,
) -> Result<Vec<MemberRow>, sqlx::Error> {
    let mut sql = Sql::from_parts(&["SELECT ", COLUMNS, " FROM members WHERE spot_id = "]);
    sql.push_bind(spot_id.into());
    sql.push_predicates(filters);
    push_property_filters(&mut sql, spot_id, props);
    sql.push(" ORDER BY id LIMIT ").push_bind(Bind::I64(limit)).push(" OFFSET ").push_bind(Bind::I64(offset));
    run!(ex, |c| bind_all!(sqlx::query_as::<_, MemberRow>(sql.text_for(&*c)), &sql.binds).fetch_all(c).await)
}

/// How many members match (an index range when filtered).
pub async fn count(
    ex: Ex<'_>,
    spot_id: SpotId,
    filters: &[Predicate],
    props: &[PropertyFilter],
) -> Result<i64, sqlx::Error> {
    let mut sql = Sql::new("SELECT COUNT(*) FROM members WHERE spot_id = ");
    sql.push_bind(spot_id.into());
    sql.push_predicates(filters);
    push_property_filters(&mut sql, spot_id, props);
    run!(ex, |c| bind_all!(sqlx::query_scalar::<_, i64>(sql.text_for(&*c)), &sql.binds).fetch_one(c).await)
}

/// Inserts new members in one multi-row statement, skipping emails (or numbers)
/// already taken; returns the ids of the members actually inserted.
pub async fn insert_many_if_absent(ex: Ex<'_>, members: &[MemberRow]) -> Result<Vec<MemberId>, sqlx::Error> {
    if members.is_empty() {
        return Ok(Vec::new());
    }
    let mut sql = Sql::new(
        "INSERT INTO members (spot_id, id, email, email_norm, mobile_number, lang, role, status, firstname, lastname, \
         warnings, invited_at, updated_at) VALUES ",
    );
    for (i, m) in members.iter().enumerate() {
        if i > 0 {
            sql.push(", ");
        }
        sql.push("(").push_bind(m.spot_id.into()).push(", ").push_bind(m.id.into()).push(", ");
        match &m.email {
            Some(e) => sql.push_bind(Bind::Text(e.clone())).push(", ").push_bind(Bind::Text(e.to_lowercase())),
            None => sql.push("NULL, NULL"),
        };
        sql.push(", ");
        match &m.mobile_number {
            Some(n) => sql.push_bind(Bind::Text(n.clone())),
            None => sql.push("NULL"),
        };
        sql.push(", ").push_bind(Bind::Text(m.lang.clone())).push(", ").push_bind(Bind::Text(m.role.to_string()));
        sql.push(", ")
            .push_bind(Bind::Text(m.status.to_string()))
            .push(", ")
            .push_bind(Bind::Text(m.firstname.clone()));
        sql.push(", ").push_bind(Bind::Text(m.lastname.clone())).push(", 0, ").push_bind(Bind::I64(m.invited_at));
        sql.push(", ").push_bind(Bind::I64(m.updated_at)).push(")");
    }
    sql.push(" ON CONFLICT DO NOTHING RETURNING id");
    run!(ex, |c| bind_all!(sqlx::query_scalar::<_, MemberId>(sql.text_for(&*c)), &sql.binds).fetch_all(c).await)
}

/// The spot's members with any of `emails` (compared lower-cased), in statements of
/// [`IN_LIST_MAX`] emails.
pub async fn get_many_by_email(ex: Ex<'_>, spot_id: SpotId, emails: &[String]) -> Result<Vec<MemberRow>, sqlx::Error> {
    run!(ex, |c| {
        let mut found = Vec::new();
        for chunk in emails.chunks(IN_LIST_MAX) {
            let mut sql = Sql::from_parts(&["SELECT ", COLUMNS, " FROM members WHERE spot_id = "]);
            sql.push_bind(spot_id.into()).push(" AND email_norm IN ");
            sql.push_list(chunk.iter().map(|e| Bind::Text(e.to_lowercase())));
            found.extend(
                bind_all!(sqlx::query_as::<_, MemberRow>(sql.text_for(&*c)), &sql.binds).fetch_all(&mut *c).await?,
            );
        }
        Ok(found)
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn column_lists_render_with_and_without_alias() {
        assert!(super::COLUMNS.starts_with("spot_id, id, user_id, email, "));
        assert!(super::COLUMNS.ends_with(", updated_at, last_activity_at"));
        assert_eq!(super::COLUMNS.split(", ").count(), 19);
        let aliased = super::member_columns!("m.");
        assert_eq!(aliased, super::COLUMNS.split(", ").map(|c| format!("m.{c}")).collect::<Vec<_>>().join(", "));
    }
}

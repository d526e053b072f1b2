//! The operator console's tables (migrations 0009 and 0011): admin passwords, sessions and
//! one-time sign-in links, the progress of background jobs and the uploads an import
//! waits on, plus the few read-only summaries its pages show that no API list answers
//! (member counts by status, a keyset page of members).
//!
//! Sign-in is the one place that looks members up by email across spots (a person signs
//! in before choosing a spot); everything after it is led by the session's spot.

use super::members::{MemberRow, PropertyFilter, COLUMNS as MEMBER_COLUMNS};
use super::sql::{Bind, Predicate, Sql};
use super::{one_row, Ex};
use crate::domain::ids::{GroupId, MemberId, RoleId, SpotId};
use crate::domain::vocab::{MemberRole, MemberStatus};
use crate::{bind_all, run};

/// A spot where an email is an Admin, with the spot's name and the password set there.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct AdminCandidateRow {
    pub spot_id: SpotId,
    pub member_id: MemberId,
    pub spot_name: String,
    pub password_hash: Option<String>,
}

/// Every spot where `email_norm` (lower-cased) belongs to an Admin.
pub async fn admin_candidates(ex: Ex<'_>, email_norm: &str) -> Result<Vec<AdminCandidateRow>, sqlx::Error> {
    run!(ex, |c| sqlx::query_as::<_, AdminCandidateRow>(
        "SELECT m.spot_id, m.id AS member_id, s.name AS spot_name, p.password_hash \
         FROM members m JOIN spots s ON s.id = m.spot_id \
         LEFT JOIN console_passwords p ON p.spot_id = m.spot_id AND p.member_id = m.id \
         WHERE m.email_norm = $1 AND m.role = 'Admin' ORDER BY s.name, m.spot_id"
    )
    .bind(email_norm)
    .fetch_all(c)
    .await)
}

pub async fn upsert_password(
    ex: Ex<'_>,
    spot_id: SpotId,
    member_id: MemberId,
    hash: &str,
    now: i64,
) -> Result<(), sqlx::Error> {
    run!(ex, |c| sqlx::query(
        "INSERT INTO console_passwords (spot_id, member_id, password_hash, updated_at) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (spot_id, member_id) DO UPDATE SET password_hash = excluded.password_hash, \
         updated_at = excluded.updated_at"
    )
    .bind(spot_id)
    .bind(member_id)
    .bind(hash)
    .bind(now)
    .execute(c)
    .await
    .map(|_| ()))
}

/// Signs out every session of a member (after a password change).
pub async fn delete_member_sessions(ex: Ex<'_>, spot_id: SpotId, member_id: MemberId) -> Result<u64, sqlx::Error> {
    run!(ex, |c| sqlx::query("DELETE FROM console_sessions WHERE spot_id = $1 AND member_id = $2")
        .bind(spot_id)
        .bind(member_id)
        .execute(c)
        .await
        .map(|r| r.rows_affected()))
}

pub struct NewSessionRow<'a> {
    pub id_hash: &'a [u8],
    pub spot_id: SpotId,
    pub member_id: MemberId,
    pub csrf_token: &'a str,
    pub now: i64,
}

pub async fn insert_session(ex: Ex<'_>, s: &NewSessionRow<'_>) -> Result<(), sqlx::Error> {
    run!(ex, |c| sqlx::query(
        "INSERT INTO console_sessions (id_hash, spot_id, member_id, csrf_token, created_at, last_seen_at) \
         VALUES ($1, $2, $3, $4, $5, $5)"
    )
    .bind(s.id_hash)
    .bind(s.spot_id)
    .bind(s.member_id)
    .bind(s.csrf_token)
    .bind(s.now)
    .execute(c)
    .await
    .map(|_| ()))
}

/// A session with what its every request checks: the member's role and status now.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct SessionRow {
    pub spot_id: SpotId,
    pub member_id: MemberId,
    pub csrf_token: String,
    pub last_seen_at: i64,
    pub role: MemberRole,
    pub status: MemberStatus,
    pub email: Option<String>,
    pub spot_name: String,
}

pub async fn get_session(ex: Ex<'_>, spot_id: SpotId, id_hash: &[u8]) -> Result<Option<SessionRow>, sqlx::Error> {
    run!(ex, |c| sqlx::query_as::<_, SessionRow>(
        "SELECT cs.spot_id, cs.member_id, cs.csrf_token, cs.last_seen_at, m.role, m.status, m.email, \
         s.name AS spot_name \
         FROM console_sessions cs JOIN members m ON m.spot_id = cs.spot_id AND m.id = cs.member_id \
         JOIN spots s ON s.id = cs.spot_id WHERE cs.spot_id = $1 AND cs.id_hash = $2"
    )
    .bind(spot_id)
    .bind(id_hash)
    .fetch_optional(c)
    .await)
}

pub async fn touch_session(ex: Ex<'_>, spot_id: SpotId, id_hash: &[u8], now: i64) -> Result<(), sqlx::Error> {
    run!(ex, |c| sqlx::query("UPDATE console_sessions SET last_seen_at = $3 WHERE spot_id = $1 AND id_hash = $2")
        .bind(spot_id)
        .bind(id_hash)
        .bind(now)
        .execute(c)
        .await
        .map(|_| ()))
}

pub async fn delete_session(ex: Ex<'_>, spot_id: SpotId, id_hash: &[u8]) -> Result<bool, sqlx::Error> {
    run!(ex, |c| one_row(
        sqlx::query("DELETE FROM console_sessions WHERE spot_id = $1 AND id_hash = $2")
            .bind(spot_id)
            .bind(id_hash)
            .execute(c)
            .await
    ))
}

/// Drops sessions idle since before `idle_before` and links that expired before `now`:
/// the spot's only (a request's own shard on Citus), or every spot's (`None`:
/// housekeeping, which reads every shard).
pub async fn purge_expired(ex: Ex<'_>, spot_id: Option<SpotId>, idle_before: i64, now: i64) -> Result<(), sqlx::Error> {
    let spot = if spot_id.is_some() { " AND spot_id = $2" } else { "" };
    let sessions = format!("DELETE FROM console_sessions WHERE last_seen_at < $1{spot}");
    let links = format!("DELETE FROM console_login_links WHERE expires_at < $1{spot}");
    run!(ex, |c| {
        let mut q = sqlx::query(&sessions).bind(idle_before);
        if let Some(s) = spot_id {
            q = q.bind(s);
        }
        q.execute(&mut *c).await?;
        let mut q = sqlx::query(&links).bind(now);
        if let Some(s) = spot_id {
            q = q.bind(s);
        }
        q.execute(&mut *c).await?;
        Ok(())
    })
}

pub async fn insert_link(
    ex: Ex<'_>,
    token_hash: &[u8],
    spot_id: SpotId,
    member_id: MemberId,
    expires_at: i64,
) -> Result<(), sqlx::Error> {
    run!(ex, |c| sqlx::query(
        "INSERT INTO console_login_links (token_hash, spot_id, member_id, expires_at) VALUES ($1, $2, $3, $4)"
    )
    .bind(token_hash)
    .bind(spot_id)
    .bind(member_id)
    .bind(expires_at)
    .execute(c)
    .await
    .map(|_| ()))
}

/// Marks the link used if it is unused and unexpired, in one statement (so two
/// concurrent uses cannot both win); returns its spot and member.
pub async fn take_link(
    ex: Ex<'_>,
    spot_id: SpotId,
    token_hash: &[u8],
    now: i64,
) -> Result<Option<(SpotId, MemberId)>, sqlx::Error> {
    run!(ex, |c| sqlx::query_as::<_, (SpotId, MemberId)>(
        "UPDATE console_login_links SET used_at = $2 \
         WHERE spot_id = $3 AND token_hash = $1 AND used_at IS NULL AND expires_at > $2 RETURNING spot_id, member_id"
    )
    .bind(token_hash)
    .bind(now)
    .bind(spot_id)
    .fetch_optional(c)
    .await)
}

/// Members of the spot by status.
pub async fn count_by_status(ex: Ex<'_>, spot_id: SpotId) -> Result<Vec<(MemberStatus, i64)>, sqlx::Error> {
    run!(ex, |c| sqlx::query_as::<_, (MemberStatus, i64)>(
        "SELECT status, COUNT(*) FROM members WHERE spot_id = $1 GROUP BY status ORDER BY status"
    )
    .bind(spot_id)
    .fetch_all(c)
    .await)
}

/// The most recently invited members.
pub async fn recent_members(ex: Ex<'_>, spot_id: SpotId, limit: i64) -> Result<Vec<MemberRow>, sqlx::Error> {
    let sql =
        format!("SELECT {MEMBER_COLUMNS} FROM members WHERE spot_id = $1 ORDER BY invited_at DESC, id DESC LIMIT $2");
    run!(ex, |c| sqlx::query_as::<_, MemberRow>(&sql).bind(spot_id).bind(limit).fetch_all(c).await)
}

/// A member of an admin's email in the spot (for the CLI's `admins` commands).
pub async fn member_by_email(ex: Ex<'_>, spot_id: SpotId, email_norm: &str) -> Result<Option<MemberRow>, sqlx::Error> {
    let sql = format!("SELECT {MEMBER_COLUMNS} FROM members WHERE spot_id = $1 AND email_norm = $2");
    run!(ex, |c| sqlx::query_as::<_, MemberRow>(&sql).bind(spot_id).bind(email_norm).fetch_optional(c).await)
}

/// The order of the console's member list; each is an indexed column (with `id` as the
/// tie-break), so a page is an index range whatever the spot's size (keyset paging).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MemberSort {
    InvitedAt,
    Lastname,
    Firstname,
}

impl MemberSort {
    fn column(self) -> &'static str {
        match self {
            MemberSort::InvitedAt => "invited_at",
            MemberSort::Lastname => "lastname",
            MemberSort::Firstname => "firstname",
        }
    }
}

/// Where a page starts: after the row with this sort value and id.
#[derive(Clone, Debug, PartialEq)]
pub enum SortValue {
    I64(i64),
    Text(String),
}

/// The console's member filters, checked by the domain.
#[derive(Clone, Debug, Default)]
pub struct MemberFilter {
    /// Case-insensitive prefix of the email, a name or the mobile number ([`push_search`]).
    pub text: Option<String>,
    pub status: Option<MemberStatus>,
    pub role: Option<MemberRole>,
    pub custom_role: Option<RoleId>,
    pub group: Option<GroupId>,
    pub props: Vec<PropertyFilter>,
    /// Set when a capped count ([`count_members`]) found at most its cap of matches:
    /// PostgreSQL then reads a page of a text search as the matches, sorted
    /// ([`search_members`]).
    pub few_matches: bool,
    /// The matching values of each property filter, counted once
    /// ([`measure_properties`]), so that a page and its count read them once.
    pub value_matches: Option<Vec<i64>>,
}

/// Appends ` AND …` for each filter of `f`; `forms` says how each property filter is
/// written ([`property_forms`]).
fn push_member_filter(sql: &mut Sql, spot_id: SpotId, f: &MemberFilter, forms: &[PropertyForm]) {
    if let Some(text) = &f.text {
        push_search(sql, text.trim());
    }
    if let Some(status) = f.status {
        sql.push(" AND status = ").push_bind(Bind::Text(status.as_str().to_string()));
    }
    if let Some(role) = f.role {
        sql.push(" AND role = ").push_bind(Bind::Text(role.as_str().to_string()));
    }
    if let Some(role) = f.custom_role {
        sql.push(" AND custom_role_id = ").push_bind(role.into());
    }
    if let Some(group) = f.group {
        sql.push(" AND id IN (SELECT member_id FROM group_members WHERE spot_id = ").push_bind(spot_id.into());
        sql.push(" AND group_id = ").push_bind(group.into()).push(")");
    }
    for (p, form) in f.props.iter().zip(forms.iter().chain(std::iter::repeat(&PropertyForm::List))) {
        let predicate = match form {
            PropertyForm::Probe => {
                // Tested member by member, in the order the page reads them: a
                // primary-key probe of the values (`spot_id, member_id, property_id`).
                // The value's column is written `+column`, which no index serves:
                // otherwise SQLite prefers the value index (its constraints look more
                // selective) and reads the whole value range once per member.
                sql.push(" AND EXISTS (SELECT 1 FROM member_property_values WHERE spot_id = members.spot_id");
                sql.push(" AND member_id = members.id AND property_id = ").push_bind(p.property_id.into());
                Predicate { column: unindexed(p.predicate.column), ..p.predicate.clone() }
            }
            PropertyForm::List => {
                sql.push(" AND id IN (SELECT member_id FROM member_property_values WHERE spot_id = ");
                sql.push_bind(spot_id.into()).push(" AND property_id = ").push_bind(p.property_id.into());
                p.predicate.clone()
            }
            PropertyForm::Array => {
                sql.push(" AND id = ANY(ARRAY(SELECT member_id FROM member_property_values WHERE spot_id = ");
                sql.push_bind(spot_id.into()).push(" AND property_id = ").push_bind(p.property_id.into());
                p.predicate.clone()
            }
        };
        sql.push_predicates(std::slice::from_ref::<Predicate>(&predicate));
        sql.push(" AND ").push(predicate.column).push(" IS NOT NULL)");
        if *form == PropertyForm::Array {
            sql.push(")");
        }
    }
}

/// How a property filter is written into a member query.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum PropertyForm {
    /// `id IN (SELECT member_id …)`: the planner's choice.
    List,
    /// `EXISTS (…)` on the values' primary key, member by member (SQLite, many matches).
    Probe,
    /// `id = ANY(ARRAY(SELECT member_id …))`: the matches read first, then each member
    /// by its key (PostgreSQL, a page of few matches).
    Array,
}

/// What a member query is for: its form of a property filter depends on it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Purpose {
    Page,
    Count,
}

/// A value column as an expression no index serves (SQLite's unary `+`).
fn unindexed(column: &'static str) -> &'static str {
    match column {
        "value_num" => "+value_num",
        "value_text" => "+value_text",
        other => other,
    }
}

/// A page reads a property filter as a per-member probe on SQLite from this many
/// matching values on, and as an array of its matches on PostgreSQL below it.
const PAGE_PROBE_FROM: i64 = 10_000;
/// A capped count ([`count_members`]) probes on SQLite from this many.
const COUNT_PROBE_FROM: i64 = 100_000;

/// How each of `f`'s property filters is written for `purpose`, from the number of
/// values it matches (counted no further than needed: an index range of at most that
/// many entries; [`measure_properties`] counts them once for a page and its count).
///
/// SQLite builds an `id IN (…)` list whole before reading a member: its cost is the
/// number of matches `m`, while a per-member probe costs the members read to find what
/// the query needs, about `need × n / m` of a spot of `n`. So a page (`need` 51)
/// probes from [`PAGE_PROBE_FROM`] matches (a filter matching half of a million
/// members took 0.7 s a page as a list, 1 ms probed) and a count capped at 10,001 from
/// [`COUNT_PROBE_FROM`] (both forms 60 ms there, at a million members).
///
/// PostgreSQL plans the list as a semi-join from its statistics, well for many matches
/// (9 ms a page for 250,000) but, for a few thousand, sometimes as a hash of the
/// matches against every member (95–190 ms from one run to the next for 5,000): a page
/// of fewer than [`PAGE_PROBE_FROM`] matches reads them as an array first and then each
/// member by its key. Its count keeps the list, which it plans as that nested loop.
async fn property_forms(
    mut ex: Ex<'_>,
    spot_id: SpotId,
    f: &MemberFilter,
    purpose: Purpose,
) -> Result<Vec<PropertyForm>, sqlx::Error> {
    let sqlite = matches!(ex, Ex::Sqlite(_));
    let from = match (sqlite, purpose) {
        (true, Purpose::Page) | (false, _) => PAGE_PROBE_FROM,
        (true, Purpose::Count) => COUNT_PROBE_FROM,
    };
    if f.props.is_empty() || (!sqlite && purpose == Purpose::Count) {
        return Ok(vec![PropertyForm::List; f.props.len()]);
    }
    let measured;
    let counted = match &f.value_matches {
        Some(counted) => counted,
        None => {
            measured = count_values(ex.reborrow(), spot_id, &f.props, from).await?;
            &measured
        }
    };
    Ok(counted
        .iter()
        .map(|n| match (sqlite, *n >= from) {
            (true, true) => PropertyForm::Probe,
            (true, false) | (false, true) => PropertyForm::List,
            (false, false) => PropertyForm::Array,
        })
        .collect())
}

/// The matching values of each of `props`, each counted no further than `cap`.
async fn count_values(
    mut ex: Ex<'_>,
    spot_id: SpotId,
    props: &[PropertyFilter],
    cap: i64,
) -> Result<Vec<i64>, sqlx::Error> {
    let mut out = Vec::with_capacity(props.len());
    for p in props {
        let mut sql = Sql::new("SELECT COUNT(*) FROM (SELECT 1 FROM member_property_values WHERE spot_id = ");
        sql.push_bind(spot_id.into()).push(" AND property_id = ").push_bind(p.property_id.into());
        sql.push_predicates(std::slice::from_ref::<Predicate>(&p.predicate));
        sql.push(" AND ").push(p.predicate.column).push(" IS NOT NULL LIMIT ");
        sql.push_bind(Bind::I64(cap)).push(") AS matching");
        out.push(run!(ex.reborrow(), |c| bind_all!(sqlx::query_scalar::<_, i64>(sql.text_for(&*c)), &sql.binds)
            .fetch_one(c)
            .await)?);
    }
    Ok(out)
}

/// Counts the matching values of `f`'s property filters once (up to
/// [`COUNT_PROBE_FROM`] on SQLite, [`PAGE_PROBE_FROM`] on PostgreSQL) for a page and
/// its count, which then both choose their form from it ([`property_forms`]) instead
/// of counting twice (a count up to 100,000 values took 45 ms at a million members).
pub async fn measure_properties(ex: Ex<'_>, spot_id: SpotId, f: &mut MemberFilter) -> Result<(), sqlx::Error> {
    if !f.props.is_empty() {
        let cap = if matches!(ex, Ex::Sqlite(_)) { COUNT_PROBE_FROM } else { PAGE_PROBE_FROM };
        f.value_matches = Some(count_values(ex, spot_id, &f.props, cap).await?);
    }
    Ok(())
}

/// The text search: a case-insensitive prefix of the email, the first name, the last
/// name or the mobile number; "first last" (a space) is a prefix of each name. Every
/// alternative is a range of an index (migration 0010), so a search costs its matches,
/// not the spot's size.
fn push_search(sql: &mut Sql, text: &str) {
    if let Some((first, last)) = text.split_once(' ') {
        sql.push(" AND ");
        push_prefix(sql, Searched::Firstname, first.trim());
        sql.push(" AND ");
        push_prefix(sql, Searched::Lastname, last.trim());
        return;
    }
    sql.push(" AND (");
    for (i, column) in
        [Searched::Email, Searched::Firstname, Searched::Lastname, Searched::Mobile].into_iter().enumerate()
    {
        if i > 0 {
            sql.push(" OR ");
        }
        sql.push("(");
        push_prefix(sql, column, text);
        sql.push(")");
    }
    sql.push(")");
}

/// A column the text search reads, with its index's expression.
#[derive(Clone, Copy)]
enum Searched {
    Email,
    Firstname,
    Lastname,
    Mobile,
}

impl Searched {
    /// The column as its search index has it, compared in byte order.
    fn push_index_expr(self, sql: &mut Sql) {
        match self {
            Searched::Email => {
                sql.push("email_norm");
            }
            Searched::Mobile => {
                sql.push("mobile_number");
            }
            Searched::Firstname => super::smart_sql::push_folded(sql, "firstname"),
            Searched::Lastname => super::smart_sql::push_folded(sql, "lastname"),
        }
        sql.push_per_backend(" COLLATE \"C\"", "");
    }
}

/// `column` starts with `prefix`, spelt as the range `[prefix, prefix + U+10FFFF)` of the
/// column's search index: byte order on both backends (SQLite's BINARY; PostgreSQL's
/// `COLLATE "C"`, whatever the database's collation).
fn push_prefix(sql: &mut Sql, column: Searched, prefix: &str) {
    let folded = match column {
        Searched::Email => prefix.to_lowercase(),
        Searched::Firstname | Searched::Lastname => prefix.to_ascii_lowercase(),
        Searched::Mobile => prefix.to_string(),
    };
    let upper = format!("{folded}\u{10FFFF}");
    column.push_index_expr(sql);
    sql.push(" >= ").push_bind(Bind::Text(folded)).push(" AND ");
    column.push_index_expr(sql);
    sql.push(" < ").push_bind(Bind::Text(upper));
}

/// One page of the members matching `f`, ordered by `sort` (then id), starting after
/// `after`; `limit` rows at most.
pub async fn search_members(
    mut ex: Ex<'_>,
    spot_id: SpotId,
    f: &MemberFilter,
    sort: MemberSort,
    descending: bool,
    after: Option<(SortValue, MemberId)>,
    limit: i64,
) -> Result<Vec<MemberRow>, sqlx::Error> {
    let forms = property_forms(ex.reborrow(), spot_id, f, Purpose::Page).await?;
    // Few matches, on PostgreSQL: the filter in a subquery that `OFFSET 0` keeps from
    // being merged, so its matches are read (an index range, or a bitmap of several)
    // and sorted for the page. Otherwise the planner may walk the sort column's index
    // and test each member, expecting the matches spread evenly so that the page's
    // LIMIT stops the walk early: a search sorted by last name whose matches sit at the
    // end of that order walked a million members (2.7 s; 44 ms as its 8,000 matches).
    // Many matches are dense enough for the walk; SQLite plans these cases well. Only
    // a text search is fenced: PostgreSQL plans the other filters well as they are (a
    // fenced property filter with 5,000 matches was hashed against every member: 140
    // ms instead of 95).
    let fenced = f.few_matches && f.text.is_some() && matches!(ex, Ex::Postgres(_));
    let mut sql = if fenced {
        Sql::from_parts(&[
            "SELECT ",
            MEMBER_COLUMNS,
            " FROM (SELECT ",
            MEMBER_COLUMNS,
            " FROM members WHERE spot_id = ",
        ])
    } else {
        Sql::from_parts(&["SELECT ", MEMBER_COLUMNS, " FROM members WHERE spot_id = "])
    };
    sql.push_bind(spot_id.into());
    push_member_filter(&mut sql, spot_id, f, &forms);
    if fenced {
        sql.push(" OFFSET 0) AS matching WHERE true");
    }
    let col = sort.column();
    if let Some((value, id)) = after {
        let value = match value {
            SortValue::I64(v) => Bind::I64(v),
            SortValue::Text(t) => Bind::Text(t),
        };
        let (cmp, cmp_eq) = if descending { (" < ", " <= ") } else { (" > ", " >= ") };
        // `col <= v AND (col < v OR id < last)`: the leading range keeps both planners on
        // the sort column's index (SQLite turns a plain `col < v OR (col = v AND …)` into
        // a multi-index OR and sorts every row: 2 s a page at a million members).
        sql.push(" AND ").push(col).push(cmp_eq).push_bind(value.clone());
        sql.push(" AND (").push(col).push(cmp).push_bind(value).push(" OR id").push(cmp).push_bind(id.into());
        sql.push(")");
    }
    sql.push(" ORDER BY ").push(col).push(if descending { " DESC, id DESC" } else { ", id" });
    sql.push(" LIMIT ").push_bind(Bind::I64(limit));
    run!(ex, |c| bind_all!(sqlx::query_as::<_, MemberRow>(sql.text_for(&*c)), &sql.binds).fetch_all(c).await)
}

/// How many members match `f`, counting no further than `cap` + 1: a filter matching
/// half a million members costs what one matching `cap` costs (the caller shows
/// "more than `cap`").
pub async fn count_members(mut ex: Ex<'_>, spot_id: SpotId, f: &MemberFilter, cap: i64) -> Result<i64, sqlx::Error> {
    let forms = property_forms(ex.reborrow(), spot_id, f, Purpose::Count).await?;
    let mut sql = Sql::new("SELECT COUNT(*) FROM (SELECT 1 FROM members WHERE spot_id = ");
    sql.push_bind(spot_id.into());
    push_member_filter(&mut sql, spot_id, f, &forms);
    sql.push(" LIMIT ").push_bind(Bind::I64(cap.saturating_add(1))).push(") AS counted");
    run!(ex, |c| bind_all!(sqlx::query_scalar::<_, i64>(sql.text_for(&*c)), &sql.binds).fetch_one(c).await)
}

/// Selects or unselects members for the session's bulk actions (ids of another spot
/// are ignored by the join in [`selected_ids`]).
pub async fn set_selected(
    ex: Ex<'_>,
    spot_id: SpotId,
    id_hash: &[u8],
    member_ids: &[MemberId],
    on: bool,
) -> Result<(), sqlx::Error> {
    run!(ex, |c| {
        for id in member_ids {
            let q = if on {
                "INSERT INTO console_selections (spot_id, session_id_hash, member_id) VALUES ($1, $2, $3) \
                 ON CONFLICT DO NOTHING"
            } else {
                "DELETE FROM console_selections WHERE spot_id = $1 AND session_id_hash = $2 AND member_id = $3"
            };
            sqlx::query(q).bind(spot_id).bind(id_hash).bind(*id).execute(&mut *c).await?;
        }
        Ok(())
    })
}

pub async fn clear_selected(ex: Ex<'_>, spot_id: SpotId, id_hash: &[u8]) -> Result<(), sqlx::Error> {
    run!(ex, |c| sqlx::query("DELETE FROM console_selections WHERE spot_id = $1 AND session_id_hash = $2")
        .bind(spot_id)
        .bind(id_hash)
        .execute(c)
        .await
        .map(|_| ()))
}

/// The session's selected members that exist in its spot, in id order.
pub async fn selected_ids(ex: Ex<'_>, id_hash: &[u8], spot_id: SpotId) -> Result<Vec<MemberId>, sqlx::Error> {
    run!(ex, |c| sqlx::query_scalar::<_, MemberId>(
        "SELECT m.id FROM console_selections s JOIN members m ON m.spot_id = s.spot_id AND m.id = s.member_id \
         WHERE s.spot_id = $2 AND s.session_id_hash = $1 ORDER BY m.id"
    )
    .bind(id_hash)
    .bind(spot_id)
    .fetch_all(c)
    .await)
}

/// A course a member participates in, with their progress.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct MemberCourseRow {
    pub course_id: crate::domain::ids::CourseId,
    pub title: String,
    pub status: String,
    pub completion_rate: i64,
}

pub async fn courses_of_member(
    ex: Ex<'_>,
    spot_id: SpotId,
    member_id: MemberId,
) -> Result<Vec<MemberCourseRow>, sqlx::Error> {
    run!(ex, |c| sqlx::query_as::<_, MemberCourseRow>(
        "SELECT c.id AS course_id, c.title, p.status, p.completion_rate FROM course_participants p \
         JOIN courses c ON c.spot_id = p.spot_id AND c.id = p.course_id \
         WHERE p.spot_id = $1 AND p.member_id = $2 ORDER BY c.title"
    )
    .bind(spot_id)
    .bind(member_id)
    .fetch_all(c)
    .await)
}

/// The groups linked to a course (their members are invited when they join).
pub async fn groups_of_course(
    ex: Ex<'_>,
    spot_id: SpotId,
    course_id: crate::domain::ids::CourseId,
) -> Result<Vec<GroupId>, sqlx::Error> {
    run!(ex, |c| sqlx::query_scalar::<_, GroupId>(
        "SELECT group_id FROM course_groups WHERE spot_id = $1 AND course_id = $2 ORDER BY group_id"
    )
    .bind(spot_id)
    .bind(course_id)
    .fetch_all(c)
    .await)
}

// ---------------------------------------------------------------------------------------
// Background work (migration 0011): a bulk action's or an import's progress, and an
// uploaded import file between its preview and its import, in the database so that any
// replica answers for them and a restart keeps a finished job's report.

/// A job's progress as the job page shows it.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct JobRow {
    pub label: String,
    pub total: i64,
    pub done: i64,
    pub failed: i64,
    pub finished: bool,
    pub error: Option<String>,
    pub link_path: Option<String>,
    pub link_text: Option<String>,
    pub updated_at: i64,
}

pub async fn insert_job(
    ex: Ex<'_>,
    spot_id: SpotId,
    id: uuid::Uuid,
    label: &str,
    total: i64,
    now: i64,
) -> Result<(), sqlx::Error> {
    run!(ex, |c| sqlx::query(
        "INSERT INTO console_jobs (spot_id, id, label, total, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $5)"
    )
    .bind(spot_id)
    .bind(id)
    .bind(label)
    .bind(total)
    .bind(now)
    .execute(c)
    .await
    .map(|_| ()))
}

pub async fn get_job(ex: Ex<'_>, spot_id: SpotId, id: uuid::Uuid) -> Result<Option<JobRow>, sqlx::Error> {
    run!(ex, |c| sqlx::query_as::<_, JobRow>(
        "SELECT label, total, done, failed, finished, error, link_path, link_text, updated_at \
         FROM console_jobs WHERE spot_id = $1 AND id = $2"
    )
    .bind(spot_id)
    .bind(id)
    .fetch_optional(c)
    .await)
}

/// Adds one chunk's members done and failed to an unfinished job.
pub async fn add_job_progress(
    ex: Ex<'_>,
    spot_id: SpotId,
    id: uuid::Uuid,
    done: i64,
    failed: i64,
    now: i64,
) -> Result<(), sqlx::Error> {
    run!(ex, |c| sqlx::query(
        "UPDATE console_jobs SET done = done + $3, failed = failed + $4, updated_at = $5 \
         WHERE spot_id = $1 AND id = $2 AND finished = FALSE"
    )
    .bind(spot_id)
    .bind(id)
    .bind(done)
    .bind(failed)
    .bind(now)
    .execute(c)
    .await
    .map(|_| ()))
}

/// Sets how many rows an unfinished job has done; never moves it back (a late write of
/// an older count is a no-op).
pub async fn set_job_done(ex: Ex<'_>, spot_id: SpotId, id: uuid::Uuid, done: i64, now: i64) -> Result<(), sqlx::Error> {
    run!(ex, |c| sqlx::query(
        "UPDATE console_jobs SET done = $3, updated_at = $4 \
         WHERE spot_id = $1 AND id = $2 AND finished = FALSE AND done < $3"
    )
    .bind(spot_id)
    .bind(id)
    .bind(done)
    .bind(now)
    .execute(c)
    .await
    .map(|_| ()))
}

/// How a job ended; `None` leaves a column as it is.
#[derive(Debug, Default)]
pub struct JobEnd<'a> {
    pub done: Option<i64>,
    pub failed: Option<i64>,
    pub label: Option<&'a str>,
    pub error: Option<&'a str>,
    pub link: Option<(&'a str, &'a str)>,
}

pub async fn finish_job(
    ex: Ex<'_>,
    spot_id: SpotId,
    id: uuid::Uuid,
    end: &JobEnd<'_>,
    now: i64,
) -> Result<(), sqlx::Error> {
    run!(ex, |c| sqlx::query(
        "UPDATE console_jobs SET finished = TRUE, done = COALESCE($3, done), failed = COALESCE($4, failed), \
         label = COALESCE($5, label), error = $6, link_path = $7, link_text = $8, updated_at = $9 \
         WHERE spot_id = $1 AND id = $2"
    )
    .bind(spot_id)
    .bind(id)
    .bind(end.done)
    .bind(end.failed)
    .bind(end.label)
    .bind(end.error)
    .bind(end.link.map(|l| l.0))
    .bind(end.link.map(|l| l.1))
    .bind(now)
    .execute(c)
    .await
    .map(|_| ()))
}

pub async fn insert_upload(
    ex: Ex<'_>,
    spot_id: SpotId,
    id: uuid::Uuid,
    file: &[u8],
    group_ids_json: &str,
    notify: bool,
    now: i64,
) -> Result<(), sqlx::Error> {
    run!(ex, |c| sqlx::query(
        "INSERT INTO console_uploads (spot_id, id, file, group_ids, notify, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6)"
    )
    .bind(spot_id)
    .bind(id)
    .bind(file)
    .bind(group_ids_json)
    .bind(notify)
    .bind(now)
    .execute(c)
    .await
    .map(|_| ()))
}

/// An upload as its import reads it.
#[derive(Debug, sqlx::FromRow)]
pub struct UploadRow {
    pub file: Vec<u8>,
    pub group_ids: String,
    pub notify: bool,
}

/// Marks an upload started if it was not, in one statement (so that two replicas cannot
/// both import it), and returns it; None when it is missing or already started.
pub async fn start_upload(ex: Ex<'_>, spot_id: SpotId, id: uuid::Uuid) -> Result<Option<UploadRow>, sqlx::Error> {
    run!(ex, |c| sqlx::query_as::<_, UploadRow>(
        "UPDATE console_uploads SET started = TRUE WHERE spot_id = $1 AND id = $2 AND started = FALSE \
         RETURNING file, group_ids, notify"
    )
    .bind(spot_id)
    .bind(id)
    .fetch_optional(c)
    .await)
}

/// Whether the upload exists (started or not).
pub async fn upload_exists(ex: Ex<'_>, spot_id: SpotId, id: uuid::Uuid) -> Result<bool, sqlx::Error> {
    run!(ex, |c| sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM console_uploads WHERE spot_id = $1 AND id = $2")
        .bind(spot_id)
        .bind(id)
        .fetch_one(c)
        .await
        .map(|n| n > 0))
}

/// Stores a finished import's failed rows and drops its file (no longer needed).
pub async fn finish_upload(
    ex: Ex<'_>,
    spot_id: SpotId,
    id: uuid::Uuid,
    failed_rows_csv: &str,
) -> Result<(), sqlx::Error> {
    run!(ex, |c| sqlx::query(
        "UPDATE console_uploads SET failed_rows_csv = $3, file = $4 WHERE spot_id = $1 AND id = $2"
    )
    .bind(spot_id)
    .bind(id)
    .bind(failed_rows_csv)
    .bind(&[] as &[u8])
    .execute(c)
    .await
    .map(|_| ()))
}

/// A finished import's failed rows (None while it has not finished, or if it is gone).
pub async fn upload_failed_rows(ex: Ex<'_>, spot_id: SpotId, id: uuid::Uuid) -> Result<Option<String>, sqlx::Error> {
    run!(ex, |c| sqlx::query_scalar::<_, Option<String>>(
        "SELECT failed_rows_csv FROM console_uploads WHERE spot_id = $1 AND id = $2"
    )
    .bind(spot_id)
    .bind(id)
    .fetch_optional(c)
    .await
    .map(Option::flatten))
}

/// Deletes jobs untouched since `jobs_before`, uploads whose import has not finished
/// (so still holding their file) made before `files_before`, and every upload made
/// before `reports_before`; returns the rows deleted.
pub async fn purge_background(
    ex: Ex<'_>,
    jobs_before: i64,
    files_before: i64,
    reports_before: i64,
) -> Result<u64, sqlx::Error> {
    run!(ex, |c| {
        let jobs =
            sqlx::query("DELETE FROM console_jobs WHERE updated_at < $1").bind(jobs_before).execute(&mut *c).await?;
        let uploads = sqlx::query(
            "DELETE FROM console_uploads WHERE created_at < $2 OR (failed_rows_csv IS NULL AND created_at < $1)",
        )
        .bind(files_before)
        .bind(reports_before)
        .execute(&mut *c)
        .await?;
        Ok(jobs.rows_affected() + uploads.rows_affected())
    })
}

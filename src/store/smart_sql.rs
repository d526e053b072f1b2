//! Smart-group rules as one SQL predicate over a `members m` row, and the set-based
//! statements of a smart group's full computation built on it.
//!
//! A first computation used to read every member and evaluate the rules in Rust, member
//! by member (about 30 s per group at 1,000,000 members). The domain now translates its
//! rule tree into a [`MemberTest`] (this module's own types: the store knows no domain
//! rule), which renders to one predicate per backend, and a batch of members joins with
//! one `INSERT … SELECT`. The Rust evaluator stays the reference (single-member
//! re-evaluation on every write); `tests/smart_sql.rs` checks that both agree.
//!
//! Every test renders two-valued (never NULL), so negating or combining them never
//! meets SQL's third truth value. Text is compared as bytes on both backends (PostgreSQL
//! orders with `COLLATE "C"`, SQLite's default collation is binary), and case is folded
//! for ASCII letters only: SQLite's `lower()` folds nothing else, so PostgreSQL folds
//! with `translate` rather than its locale-dependent `lower()`.

use super::sql::{Bind, Sql};
use super::Ex;
use crate::domain::ids::{GroupId, MemberId, PropertyId, SpotId};
use crate::domain::vocab::GroupRole;
use crate::{bind_all, run};

/// A text column of `members`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TextColumn {
    Status,
    Role,
    /// The lower-cased email (`email_norm`); NULL without an email.
    EmailNorm,
    Firstname,
    Lastname,
    /// The custom role id in its canonical text form (lower-case, hyphenated); NULL without one.
    CustomRoleText,
}

/// A time column of `members` (ms since the epoch).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimeColumn {
    InvitedAt,
    /// NULL until the member registers.
    RegisteredAt,
}

/// A comparison.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compare {
    Eq,
    Neq,
    Gt,
    Gte,
    Lt,
    Lte,
}

/// What a member's values of one custom property must satisfy. "First" is the row of
/// lowest `ord` (among the rows holding text, for text tests).
#[derive(Clone, Debug, PartialEq)]
pub enum ValueTest {
    /// The first row's number compares to the value.
    FirstNum(Compare, f64),
    /// The first row's number is non-zero (true) or zero (false).
    FirstBool(bool),
    /// Some text row equals one of the values.
    AnyTextIn(Vec<String>),
    /// The first text row compares (`Neq`, `Lt`, `Gt`: as bytes) to the value.
    FirstText(Compare, String),
    /// Some text row contains the needle, ASCII case folded.
    AnyTextContains(String),
}

/// A condition on one member, two-valued. A missing value (NULL column, no value row)
/// fails every test except `TextNeq` and `TextNotIn`, which it passes.
#[derive(Clone, Debug, PartialEq)]
pub enum MemberTest {
    Always,
    Never,
    All(Vec<MemberTest>),
    Any(Vec<MemberTest>),
    TextEq(TextColumn, String),
    TextNeq(TextColumn, String),
    TextIn(TextColumn, Vec<String>),
    TextNotIn(TextColumn, Vec<String>),
    /// The column contains the needle, ASCII case folded.
    TextContains(TextColumn, String),
    Before(TimeColumn, i64),
    After(TimeColumn, i64),
    Property(PropertyId, ValueTest),
}

impl MemberTest {
    /// How many values the predicate binds (each backend caps a statement's binds).
    pub fn bind_count(&self) -> usize {
        match self {
            MemberTest::Always | MemberTest::Never => 0,
            MemberTest::All(v) | MemberTest::Any(v) => v.iter().map(MemberTest::bind_count).sum(),
            MemberTest::TextIn(_, l) | MemberTest::TextNotIn(_, l) => l.len(),
            // The spot and the property, then the values.
            MemberTest::Property(_, ValueTest::AnyTextIn(l)) => l.len() + 2,
            MemberTest::Property(..) => 3,
            _ => 1,
        }
    }
}

/// Binds a statement's predicate may take (both backends allow more; the insert adds a few).
pub const MAX_PREDICATE_BINDS: usize = 30_000;

/// `x` lower-cased for ASCII letters only, in each backend's SQL (see the module docs).
pub(crate) fn push_folded(sql: &mut Sql, column: &'static str) {
    sql.push_per_backend("translate(", "lower(");
    sql.push(column);
    sql.push_per_backend(", 'ABCDEFGHIJKLMNOPQRSTUVWXYZ', 'abcdefghijklmnopqrstuvwxyz')", ")");
}

/// `needle` occurs in `haystack` (already folded SQL), as a two-valued test on a non-NULL haystack.
fn push_position(sql: &mut Sql, haystack: impl FnOnce(&mut Sql), needle: String) {
    sql.push_per_backend("strpos(", "instr(");
    haystack(sql);
    sql.push(", ").push_bind(Bind::Text(needle.to_ascii_lowercase())).push(") > 0");
}

fn column_of(c: TextColumn) -> &'static str {
    match c {
        TextColumn::Status => "m.status",
        TextColumn::Role => "m.role",
        TextColumn::EmailNorm => "m.email_norm",
        TextColumn::Firstname => "m.firstname",
        TextColumn::Lastname => "m.lastname",
        TextColumn::CustomRoleText => "m.custom_role_id",
    }
}

/// The column's text; the custom role id (a UUID, a 16-byte blob on SQLite) spelled
/// as `Uuid::to_string` spells it.
fn push_text_of(sql: &mut Sql, c: TextColumn) {
    if c == TextColumn::CustomRoleText {
        sql.push_per_backend(
            "m.custom_role_id::text",
            "lower(substr(hex(m.custom_role_id), 1, 8) || '-' || substr(hex(m.custom_role_id), 9, 4) || '-' || \
             substr(hex(m.custom_role_id), 13, 4) || '-' || substr(hex(m.custom_role_id), 17, 4) || '-' || \
             substr(hex(m.custom_role_id), 21, 12))",
        );
    } else {
        sql.push(column_of(c));
    }
}

fn nullable(c: TextColumn) -> bool {
    matches!(c, TextColumn::EmailNorm | TextColumn::CustomRoleText)
}

fn operator(c: Compare) -> &'static str {
    match c {
        Compare::Eq => " = ",
        Compare::Neq => " <> ",
        Compare::Gt => " > ",
        Compare::Gte => " >= ",
        Compare::Lt => " < ",
        Compare::Lte => " <= ",
    }
}

/// `(SELECT v.<column> FROM member_property_values v WHERE <m's values of property>`,
/// without the closing parenthesis. The spot is bound rather than taken from `m`: Citus
/// routes a correlated subquery to the spot's shard only when it names the spot itself
/// (with `v.spot_id = m.spot_id` every count or computation read every shard).
fn push_values_of(sql: &mut Sql, spot: SpotId, select: &'static str, property_id: PropertyId) {
    sql.push(select);
    sql.push(" FROM member_property_values v WHERE v.spot_id = ").push_bind(spot.into());
    sql.push(" AND v.member_id = m.id AND v.property_id = ");
    sql.push_bind(property_id.into());
}

fn push_value_test(sql: &mut Sql, spot: SpotId, property_id: PropertyId, test: &ValueTest) {
    match test {
        ValueTest::FirstNum(cmp, n) => {
            sql.push("COALESCE((");
            push_values_of(sql, spot, "SELECT v.value_num", property_id);
            sql.push(" ORDER BY v.ord LIMIT 1)").push(operator(*cmp)).push_bind(Bind::F64(*n)).push(", FALSE)");
        }
        ValueTest::FirstBool(b) => {
            sql.push("COALESCE((");
            push_values_of(sql, spot, "SELECT v.value_num", property_id);
            sql.push(" ORDER BY v.ord LIMIT 1)").push(if *b { " <> " } else { " = " });
            sql.push_bind(Bind::F64(0.0)).push(", FALSE)");
        }
        ValueTest::AnyTextIn(values) => {
            sql.push("EXISTS (");
            push_values_of(sql, spot, "SELECT 1", property_id);
            sql.push(" AND v.value_text IN ").push_list(values.iter().map(|v| Bind::Text(v.clone()))).push(")");
        }
        ValueTest::FirstText(cmp, value) => {
            sql.push("COALESCE((");
            push_values_of(sql, spot, "SELECT v.value_text", property_id);
            sql.push(" AND v.value_text IS NOT NULL ORDER BY v.ord LIMIT 1)");
            sql.push_per_backend(" COLLATE \"C\"", "");
            sql.push(operator(*cmp)).push_bind(Bind::Text(value.clone())).push(", FALSE)");
        }
        ValueTest::AnyTextContains(needle) => {
            sql.push("EXISTS (");
            push_values_of(sql, spot, "SELECT 1", property_id);
            sql.push(" AND v.value_text IS NOT NULL AND ");
            push_position(sql, |s| push_folded(s, "v.value_text"), needle.clone());
            sql.push(")");
        }
    }
}

/// Appends `test` as a parenthesised two-valued predicate over `members m` of `spot`.
pub fn push_test(sql: &mut Sql, spot: SpotId, test: &MemberTest) {
    let guard = |sql: &mut Sql, c: TextColumn, null_passes: bool| {
        if nullable(c) {
            sql.push(column_of(c)).push(if null_passes { " IS NULL OR " } else { " IS NOT NULL AND " });
        }
    };
    sql.push("(");
    match test {
        MemberTest::Always => {
            sql.push("1 = 1");
        }
        MemberTest::Never => {
            sql.push("1 = 0");
        }
        MemberTest::All(items) | MemberTest::Any(items) => {
            let junction = if matches!(test, MemberTest::All(_)) { " AND " } else { " OR " };
            if items.is_empty() {
                sql.push(if matches!(test, MemberTest::All(_)) { "1 = 1" } else { "1 = 0" });
            }
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    sql.push(junction);
                }
                push_test(sql, spot, item);
            }
        }
        MemberTest::TextEq(c, v) | MemberTest::TextNeq(c, v) => {
            let eq = matches!(test, MemberTest::TextEq(..));
            guard(sql, *c, !eq);
            push_text_of(sql, *c);
            sql.push(if eq { " = " } else { " <> " }).push_bind(Bind::Text(v.clone()));
        }
        MemberTest::TextIn(c, l) | MemberTest::TextNotIn(c, l) => {
            let is_in = matches!(test, MemberTest::TextIn(..));
            guard(sql, *c, !is_in);
            push_text_of(sql, *c);
            sql.push(if is_in { " IN " } else { " NOT IN " }).push_list(l.iter().map(|v| Bind::Text(v.clone())));
        }
        MemberTest::TextContains(c, needle) => {
            guard(sql, *c, false);
            push_position(
                sql,
                |s| {
                    if *c == TextColumn::CustomRoleText {
                        // Already lower-case.
                        push_text_of(s, *c);
                    } else {
                        push_folded(s, column_of(*c));
                    }
                },
                needle.clone(),
            );
        }
        MemberTest::Before(col, at) | MemberTest::After(col, at) => {
            let column = match col {
                TimeColumn::InvitedAt => "m.invited_at",
                TimeColumn::RegisteredAt => "m.registered_at",
            };
            sql.push(column).push(" IS NOT NULL AND ").push(column);
            sql.push(if matches!(test, MemberTest::Before(..)) { " < " } else { " > " });
            sql.push_bind(Bind::I64(*at));
        }
        MemberTest::Property(property_id, value_test) => push_value_test(sql, spot, *property_id, value_test),
    }
    sql.push(")");
}

/// The spot's members passing `test`, in id order (what a full computation would put in
/// the group, blacklist aside).
pub async fn matching(ex: Ex<'_>, spot_id: SpotId, test: &MemberTest) -> Result<Vec<MemberId>, sqlx::Error> {
    let mut sql = Sql::new("SELECT m.id FROM members m WHERE m.spot_id = ");
    sql.push_bind(spot_id.into()).push(" AND ");
    push_test(&mut sql, spot_id, test);
    sql.push(" ORDER BY m.id");
    run!(ex, |c| bind_all!(sqlx::query_scalar::<_, MemberId>(sql.text_for(&*c)), &sql.binds).fetch_all(c).await)
}

/// How many of the spot's members pass `test` (the rule builder's live count).
pub async fn count_matching(ex: Ex<'_>, spot_id: SpotId, test: &MemberTest) -> Result<i64, sqlx::Error> {
    let mut sql = Sql::new("SELECT COUNT(*) FROM members m WHERE m.spot_id = ");
    sql.push_bind(spot_id.into()).push(" AND ");
    push_test(&mut sql, spot_id, test);
    run!(ex, |c| bind_all!(sqlx::query_scalar::<_, i64>(sql.text_for(&*c)), &sql.binds).fetch_one(c).await)
}

/// A range of the spot's members in id order: after `after` (from the first when None)
/// up to `last` included (to the end when None).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IdRange {
    pub after: Option<MemberId>,
    pub last: Option<MemberId>,
}

impl IdRange {
    fn push(&self, sql: &mut Sql, column: &'static str) {
        if let Some(after) = self.after {
            sql.push(" AND ").push(column).push(" > ").push_bind(after.into());
        }
        if let Some(last) = self.last {
            sql.push(" AND ").push(column).push(" <= ").push_bind(last.into());
        }
    }
}

/// The next `size` members after `after` (id order): their range and how many there
/// are. On PostgreSQL they stay share-locked until the transaction ends, so a
/// concurrent update of one of them either committed before (and the batch's
/// statements, each with a new snapshot, see it) or waits for the batch to commit.
pub async fn next_range_for_share(
    ex: Ex<'_>,
    spot_id: SpotId,
    after: Option<MemberId>,
    size: i64,
) -> Result<(IdRange, i64), sqlx::Error> {
    let mut sql = Sql::new("WITH b AS (SELECT id FROM members WHERE spot_id = ");
    sql.push_bind(spot_id.into());
    IdRange { after, last: None }.push(&mut sql, "id");
    sql.push(" ORDER BY id LIMIT ").push_bind(Bind::I64(size)).push(ex.row_lock(" FOR SHARE"));
    sql.push(") SELECT (SELECT id FROM b ORDER BY id DESC LIMIT 1), (SELECT COUNT(*) FROM b)");
    let (last, n) =
        run!(ex, |c| bind_all!(sqlx::query_as::<_, (Option<MemberId>, i64)>(sql.text_for(&*c)), &sql.binds)
            .fetch_one(c)
            .await)?;
    Ok((IdRange { after, last }, n))
}

/// `AND NOT EXISTS (<m is on the group's blacklist>)`.
fn push_not_blacklisted(sql: &mut Sql, group_id: GroupId) {
    sql.push(" AND NOT EXISTS (SELECT 1 FROM group_blacklist b WHERE b.spot_id = m.spot_id AND b.group_id = ");
    sql.push_bind(group_id.into()).push(" AND b.member_id = m.id)");
}

/// Adds to the group (as `Member`) the members of `range` that pass `test` and are not
/// on its blacklist; returns the members actually added (ones already in stay as they are).
pub async fn insert_matching(
    ex: Ex<'_>,
    spot_id: SpotId,
    group_id: GroupId,
    range: IdRange,
    test: &MemberTest,
    now: i64,
) -> Result<Vec<MemberId>, sqlx::Error> {
    let mut sql =
        Sql::new("INSERT INTO group_members (spot_id, group_id, member_id, group_role, added_at) SELECT m.spot_id, ");
    sql.push_bind(group_id.into()).push(", m.id, ").push_bind(Bind::Text(GroupRole::Member.to_string()));
    sql.push(", ").push_bind(Bind::I64(now)).push(" FROM members m WHERE m.spot_id = ").push_bind(spot_id.into());
    range.push(&mut sql, "m.id");
    sql.push(" AND ");
    push_test(&mut sql, spot_id, test);
    push_not_blacklisted(&mut sql, group_id);
    sql.push(" ON CONFLICT DO NOTHING RETURNING member_id");
    run!(ex, |c| bind_all!(sqlx::query_scalar::<_, MemberId>(sql.text_for(&*c)), &sql.binds).fetch_all(c).await)
}

/// Removes from the group the members of `range` that fail `test` or are on its
/// blacklist; returns them with the role they had.
pub async fn delete_unmatching(
    ex: Ex<'_>,
    spot_id: SpotId,
    group_id: GroupId,
    range: IdRange,
    test: &MemberTest,
) -> Result<Vec<(MemberId, GroupRole)>, sqlx::Error> {
    // `NOT IN` the range's matching members (ids, never NULL): both backends compute
    // that set once, and only if the range has memberships at all (a first computation
    // has none). A correlated `NOT EXISTS` had PostgreSQL scan the whole spot per batch.
    let mut sql = Sql::new("DELETE FROM group_members WHERE spot_id = ");
    sql.push_bind(spot_id.into()).push(" AND group_id = ").push_bind(group_id.into());
    range.push(&mut sql, "member_id");
    sql.push(" AND member_id NOT IN (SELECT m.id FROM members m WHERE m.spot_id = ").push_bind(spot_id.into());
    range.push(&mut sql, "m.id");
    sql.push(" AND ");
    push_test(&mut sql, spot_id, test);
    push_not_blacklisted(&mut sql, group_id);
    sql.push(") RETURNING member_id, group_role");
    run!(ex, |c| bind_all!(sqlx::query_as::<_, (MemberId, GroupRole)>(sql.text_for(&*c)), &sql.binds)
        .fetch_all(c)
        .await)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tests_render_per_backend() {
        let p = PropertyId::generate();
        let test = MemberTest::All(vec![
            MemberTest::Any(vec![
                MemberTest::TextNeq(TextColumn::EmailNorm, "a@x.io".into()),
                MemberTest::TextContains(TextColumn::Firstname, "Ad".into()),
            ]),
            MemberTest::Property(p, ValueTest::FirstText(Compare::Lt, "2024-01-01".into())),
        ]);
        let mut sql = Sql::new("");
        let spot = SpotId::generate();
        push_test(&mut sql, spot, &test);
        assert_eq!(
            sql.text,
            "(((m.email_norm IS NULL OR m.email_norm <> $1) OR (strpos(translate(m.firstname, \
             'ABCDEFGHIJKLMNOPQRSTUVWXYZ', 'abcdefghijklmnopqrstuvwxyz'), $2) > 0)) AND (COALESCE((SELECT \
             v.value_text FROM member_property_values v WHERE v.spot_id = $3 AND v.member_id = m.id AND \
             v.property_id = $4 AND v.value_text IS NOT NULL ORDER BY v.ord LIMIT 1) COLLATE \"C\" < $5, FALSE)))"
        );
        assert_eq!(sql.binds[2], Bind::from(spot));
        assert_eq!(sql.binds[1], Bind::Text("ad".into()));
        assert_eq!(test.bind_count(), sql.binds.len());
    }
}

//! Dynamic SQL: a tiny builder that renders placeholders for both backends at once and
//! keeps the bound values beside the text (see [`crate::bind_all`]): numbered `$n` for
//! PostgreSQL, anonymous `?` for SQLite. SQLite keeps numbered parameters in a list it
//! searches linearly, and sqlx looks each one up by name when binding, so a multi-row
//! insert with thousands of `$n` cost time quadratic in its size (43% of a 200,000-row
//! import's CPU went to `sqlite3_bind_parameter_name`); `?` parameters are bound by
//! position.
//! List filters (`field[op]=value`, contract §3) arrive here as [`Predicate`]s: the
//! domain checks the wire filters against its allow-lists and hands the store a column
//! (a `&'static str` from those lists), a SQL comparison and binds.
//!
//! SQL text only ever comes from `&'static str` fragments (literals and constants):
//! every value, whatever its origin, is a [`Bind`], so no runtime string can reach the
//! text of a statement.

use std::fmt::Write as _;

use uuid::Uuid;

use crate::domain::ids::{
    ConnectorId, CourseId, EventId, GroupId, MemberId, ParticipantId, PropertyId, RoleId, SpotId, SubscriptionId,
    WebhookId,
};

/// Ids or keys per `IN (…)` list: lookups by many keys split into statements of this
/// many, well under both backends' bind limits.
pub const IN_LIST_MAX: usize = 500;

/// One bound value.
#[derive(Clone, Debug, PartialEq)]
pub enum Bind {
    Text(String),
    I64(i64),
    Uuid(Uuid),
    Bool(bool),
    F64(f64),
}

/// The SQL comparison of a [`Predicate`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cmp {
    Eq,
    Neq,
    Gt,
    Gte,
    Lt,
    Lte,
    In,
    NotIn,
    /// Case-insensitive substring (`lower(col) LIKE %v%`).
    Contains,
}

/// One condition of a `WHERE` clause: `column cmp values`.
#[derive(Clone, Debug, PartialEq)]
pub struct Predicate {
    pub column: &'static str,
    pub cmp: Cmp,
    pub values: Vec<Bind>,
}

impl From<Uuid> for Bind {
    fn from(id: Uuid) -> Self {
        Bind::Uuid(id)
    }
}

/// Typed ids bind as their UUID.
macro_rules! ids_bind_as_uuids {
    ($($id:ty),+) => {$(
        impl From<$id> for Bind {
            fn from(id: $id) -> Self {
                Bind::Uuid(id.uuid())
            }
        }
    )+};
}
ids_bind_as_uuids!(
    SpotId,
    MemberId,
    GroupId,
    CourseId,
    ParticipantId,
    PropertyId,
    RoleId,
    ConnectorId,
    WebhookId,
    SubscriptionId,
    EventId
);

/// SQL text with its binds, rendered for each backend; placeholders are numbered as
/// they are pushed, each used once, in bind order. Text is appended only from
/// `&'static str` fragments (see the module docs).
#[derive(Debug, Default)]
pub struct Sql {
    /// PostgreSQL text (`$1`, `$2`, …).
    pub text: String,
    /// SQLite text (`?` in bind order).
    sqlite_text: String,
    pub binds: Vec<Bind>,
}

/// The placeholder style of a backend, chosen from its connection type.
pub trait Dialect {
    const NUMBERED_PLACEHOLDERS: bool;
}

impl Dialect for sqlx::SqliteConnection {
    const NUMBERED_PLACEHOLDERS: bool = false;
}

impl Dialect for sqlx::PgConnection {
    const NUMBERED_PLACEHOLDERS: bool = true;
}

/// Room made for what a statement's start is followed by (its filters, order and
/// page) and for its binds, so that the texts and the bind list of an everyday
/// statement are allocated once, not regrown at each push (a list request builds two
/// statements: issue 17, item 4).
const TEXT_ROOM: usize = 160;
const BINDS_ROOM: usize = 8;

impl Sql {
    pub fn new(text: &'static str) -> Self {
        Self::from_parts(&[text])
    }

    /// A statement starting with `parts` joined, for text assembled from constants
    /// (such as a column list) that `concat!` cannot join.
    pub fn from_parts(parts: &[&'static str]) -> Self {
        let len = parts.iter().map(|p| p.len()).sum::<usize>() + TEXT_ROOM;
        let (mut text, mut sqlite_text) = (String::with_capacity(len), String::with_capacity(len));
        for p in parts {
            text.push_str(p);
            sqlite_text.push_str(p);
        }
        Sql { text, sqlite_text, binds: Vec::with_capacity(BINDS_ROOM) }
    }

    /// The text for the backend of connection `c` (used inside [`crate::run`]).
    pub fn text_for<C: Dialect>(&self, _c: &C) -> &str {
        if C::NUMBERED_PLACEHOLDERS {
            &self.text
        } else {
            &self.sqlite_text
        }
    }

    pub fn push(&mut self, text: &'static str) -> &mut Self {
        self.text.push_str(text);
        self.sqlite_text.push_str(text);
        self
    }

    /// Appends text that differs between the backends (a function one of them lacks).
    pub fn push_per_backend(&mut self, postgres: &'static str, sqlite: &'static str) -> &mut Self {
        self.text.push_str(postgres);
        self.sqlite_text.push_str(sqlite);
        self
    }

    /// Appends a placeholder for a new bind.
    pub fn push_bind(&mut self, value: Bind) -> &mut Self {
        self.binds.push(value);
        self.text.push('$');
        // Written in place: no `String` per placeholder, as `to_string` made.
        let _ = write!(self.text, "{}", self.binds.len());
        self.sqlite_text.push('?');
        self
    }

    /// Appends `($a, $b, …)` binding every value (callers ensure the list is not empty).
    pub fn push_list(&mut self, values: impl IntoIterator<Item = Bind>) -> &mut Self {
        self.push("(");
        for (i, v) in values.into_iter().enumerate() {
            if i > 0 {
                self.push(", ");
            }
            self.push_bind(v);
        }
        self.push(")")
    }

    /// Appends ` AND <predicate>` for each predicate.
    pub fn push_predicates(&mut self, predicates: &[Predicate]) -> &mut Self {
        for p in predicates {
            self.push(" AND ");
            self.push_predicate(p);
        }
        self
    }

    fn push_predicate(&mut self, p: &Predicate) {
        let col = p.column;
        let single = |s: &mut Sql, op: &'static str| {
            s.push(col).push(op);
            if let Some(v) = p.values.first() {
                s.push_bind(v.clone());
            }
        };
        match p.cmp {
            Cmp::Eq => single(self, " = "),
            Cmp::Neq => single(self, " <> "),
            Cmp::Gt => single(self, " > "),
            Cmp::Gte => single(self, " >= "),
            Cmp::Lt => single(self, " < "),
            Cmp::Lte => single(self, " <= "),
            Cmp::In | Cmp::NotIn => {
                self.push(col).push(if p.cmp == Cmp::In { " IN " } else { " NOT IN " });
                self.push_list(p.values.iter().cloned());
            }
            Cmp::Contains => {
                self.push("lower(").push(col).push(") LIKE ");
                let needle = match p.values.first() {
                    Some(Bind::Text(t)) => t.to_lowercase(),
                    _ => String::new(),
                };
                self.push_bind(Bind::Text(format!("%{}%", escape_like(&needle))));
                self.push(" ESCAPE '\\'");
            }
        }
    }
}

/// Escapes `%`, `_` and `\` for a `LIKE ... ESCAPE '\'` pattern.
pub fn escape_like(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for ch in s.chars() {
        if matches!(ch, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(ch);
    }
    out
}

/// A page of one spot's rows of `table` matching `filters`, in id (creation) order,
/// and how many rows match: the shape of every plain `{items, total}` list.
pub async fn page<T>(
    ex: super::Ex<'_>,
    table: &'static str,
    columns: &'static str,
    spot_id: SpotId,
    filters: &[Predicate],
    offset: i64,
    limit: i64,
) -> Result<(Vec<T>, i64), sqlx::Error>
where
    T: for<'r> sqlx::FromRow<'r, sqlx::sqlite::SqliteRow> + for<'r> sqlx::FromRow<'r, sqlx::postgres::PgRow>,
    T: Send + Unpin,
{
    page_of(ex, select_of_spot(table, columns, spot_id), table, spot_id, filters, offset, limit).await
}

/// `SELECT <columns> FROM <table> WHERE spot_id = <spot>`: the start of [`page_of`]'s
/// and [`by_id_of`]'s statement for plain columns.
fn select_of_spot(table: &'static str, columns: &'static str, spot_id: SpotId) -> Sql {
    let mut sql = Sql::from_parts(&["SELECT ", columns, " FROM ", table, " WHERE spot_id = "]);
    sql.push_bind(spot_id.into());
    sql
}

/// [`page`] with its own `SELECT` (`sql`): a statement reading the spot's rows of `table`,
/// ending in its `WHERE` (e.g. with columns that bind values of their own).
pub async fn page_of<T>(
    ex: super::Ex<'_>,
    mut sql: Sql,
    table: &'static str,
    spot_id: SpotId,
    filters: &[Predicate],
    offset: i64,
    limit: i64,
) -> Result<(Vec<T>, i64), sqlx::Error>
where
    T: for<'r> sqlx::FromRow<'r, sqlx::sqlite::SqliteRow> + for<'r> sqlx::FromRow<'r, sqlx::postgres::PgRow>,
    T: Send + Unpin,
{
    sql.push_predicates(filters);
    let mut count = Sql::from_parts(&["SELECT COUNT(*) FROM ", table, " WHERE spot_id = "]);
    count.push_bind(spot_id.into()).push_predicates(filters);
    sql.push(" ORDER BY id LIMIT ").push_bind(Bind::I64(limit)).push(" OFFSET ").push_bind(Bind::I64(offset));
    crate::run!(ex, |c| {
        let items = crate::bind_all!(sqlx::query_as::<_, T>(sql.text_for(&*c)), &sql.binds).fetch_all(&mut *c).await?;
        let total = crate::bind_all!(sqlx::query_scalar::<_, i64>(count.text_for(&*c)), &count.binds)
            .fetch_one(&mut *c)
            .await?;
        Ok((items, total))
    })
}

/// The statement of [`by_id`] for one table: `SELECT <columns> FROM <table> WHERE
/// spot_id = ? AND id = ?`, rendered once per process for each backend. A point read is
/// the commonest request, and assembling its text from parts cost each one two string
/// copies of the column list and a formatted placeholder (issue 17, item 4).
pub struct ByIdSql {
    table: &'static str,
    columns: &'static str,
    /// PostgreSQL text, SQLite text.
    texts: std::sync::OnceLock<[String; 2]>,
}

impl ByIdSql {
    pub const fn new(table: &'static str, columns: &'static str) -> Self {
        ByIdSql { table, columns, texts: std::sync::OnceLock::new() }
    }

    /// The text for the backend of connection `c`, the same [`select_of_spot`] and
    /// [`by_id_of`] render.
    pub fn text_for<C: Dialect>(&self, _c: &C) -> &str {
        let [postgres, sqlite] = self.texts.get_or_init(|| {
            let mut sql = select_of_spot(self.table, self.columns, SpotId::from(Uuid::nil()));
            sql.push(" AND id = ").push_bind(Bind::I64(0));
            [sql.text, sql.sqlite_text]
        });
        if C::NUMBERED_PLACEHOLDERS {
            postgres
        } else {
            sqlite
        }
    }
}

/// The spot's row with primary key `id` of the table of `statement`, if any: the shape
/// of every plain `get` by id.
pub async fn by_id<T>(
    ex: super::Ex<'_>,
    statement: &'static ByIdSql,
    spot_id: SpotId,
    id: impl Into<Uuid>,
) -> Result<Option<T>, sqlx::Error>
where
    T: for<'r> sqlx::FromRow<'r, sqlx::sqlite::SqliteRow> + for<'r> sqlx::FromRow<'r, sqlx::postgres::PgRow>,
    T: Send + Unpin,
{
    let id = id.into();
    crate::run!(ex, |c| sqlx::query_as::<_, T>(statement.text_for(&*c))
        .bind(spot_id.uuid())
        .bind(id)
        .fetch_optional(c)
        .await)
}

/// [`by_id`] with its own `select` (as [`page_of`] takes it).
pub async fn by_id_of<T>(ex: super::Ex<'_>, mut select: Sql, id: impl Into<Bind>) -> Result<Option<T>, sqlx::Error>
where
    T: for<'r> sqlx::FromRow<'r, sqlx::sqlite::SqliteRow> + for<'r> sqlx::FromRow<'r, sqlx::postgres::PgRow>,
    T: Send + Unpin,
{
    select.push(" AND id = ").push_bind(id.into());
    crate::run!(ex, |c| crate::bind_all!(sqlx::query_as::<_, T>(select.text_for(&*c)), &select.binds)
        .fetch_optional(c)
        .await)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_numbered_in_decimal() {
        let mut sql = Sql::new("SELECT 1 WHERE x IN ");
        sql.push_list((0..12).map(Bind::I64));
        assert!(sql.text.ends_with("$8, $9, $10, $11, $12)"), "{}", sql.text);
        let mut sql = Sql::new("SELECT 1 WHERE x IN ");
        sql.push_list((0..12345).map(Bind::I64));
        assert!(sql.text.contains("$99, $100, $101,"), "three digits");
        assert!(sql.text.ends_with(" $12344, $12345)"), "the last");
        assert!(sql.text.contains(" $10000, $10001,"), "five digits");
    }

    #[test]
    fn typed_ids_bind_as_their_uuid() {
        let id = ParticipantId::generate();
        assert_eq!(Bind::from(id), Bind::Uuid(id.uuid()));
    }

    #[test]
    fn predicates_render_numbered_placeholders() {
        let mut sql = Sql::new("SELECT * FROM members WHERE spot_id = ");
        sql.push_bind(Bind::I64(1));
        sql.push_predicates(&[
            Predicate {
                column: "email_norm",
                cmp: Cmp::In,
                values: vec![Bind::Text("a".into()), Bind::Text("b".into())],
            },
            Predicate { column: "registered_at", cmp: Cmp::Lt, values: vec![Bind::I64(5)] },
            Predicate { column: "label", cmp: Cmp::Contains, values: vec![Bind::Text("50%_Off".into())] },
            Predicate { column: "status", cmp: Cmp::NotIn, values: vec![Bind::Text("Left".into())] },
        ]);
        assert_eq!(
            sql.text,
            "SELECT * FROM members WHERE spot_id = $1 AND email_norm IN ($2, $3) AND registered_at < $4 \
             AND lower(label) LIKE $5 ESCAPE '\\' AND status NOT IN ($6)"
        );
        assert_eq!(
            sql.sqlite_text,
            "SELECT * FROM members WHERE spot_id = ? AND email_norm IN (?, ?) AND registered_at < ? \
             AND lower(label) LIKE ? ESCAPE '\\' AND status NOT IN (?)"
        );
        assert_eq!(sql.binds[4], Bind::Text("%50\\%\\_off%".into()));
        assert_eq!(sql.binds.len(), 6);
    }

    #[test]
    fn statements_join_static_parts() {
        const COLUMNS: &str = "id, name";
        let mut sql = Sql::from_parts(&["SELECT ", COLUMNS, " FROM courses WHERE spot_id = "]);
        sql.push_bind(Bind::I64(1)).push(" AND id = ").push_bind(Bind::I64(2));
        assert_eq!(sql.text, "SELECT id, name FROM courses WHERE spot_id = $1 AND id = $2");
        assert_eq!(sql.sqlite_text, "SELECT id, name FROM courses WHERE spot_id = ? AND id = ?");
    }
}

//! The SQL of `openspot spots export|import`: every spot-scoped table that holds a
//! spot's data, its columns and their types, read row by row and written back, on
//! both backends.
//!
//! A table is described once ([`TABLES`], parents before children, so that rows
//! inserted in this order satisfy every foreign key as they arrive); the same
//! description reads the rows of one spot ([`export_table`], streamed, never the whole
//! table in memory) and inserts them ([`insert_row`]). Values cross backends as
//! [`Cell`]s: a UUID is a `BLOB` on SQLite and a `UUID` on PostgreSQL, a boolean an
//! integer or a `BOOLEAN`, and sqlx converts both ways from the column's [`ColumnType`].
//!
//! The spot id itself is no column here: every table but `spots` has `spot_id`, read
//! by the `WHERE` and bound from the spot being imported, so a record can never land
//! in another spot. Transient tables (the outbox and its attempts, rate-limit windows,
//! Kaizala tokens and PINs) are not listed: see `domain::transfer`.

use futures_util::TryStreamExt;
use uuid::Uuid;

use super::Ex;
use crate::domain::ids::SpotId;
use crate::run;

/// How a column is read and bound.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ColumnType {
    Uuid,
    Bytes,
    Text,
    I64,
    F64,
    Bool,
}

/// One column of a transferred table.
#[derive(Clone, Copy, Debug)]
pub struct Column {
    pub name: &'static str,
    pub ty: ColumnType,
}

/// One spot-scoped table: its name, columns (without `spot_id`) and the key it is
/// read in (so that an export is deterministic).
#[derive(Debug)]
pub struct Table {
    pub name: &'static str,
    pub columns: &'static [Column],
    pub order_by: &'static str,
}

/// One value of a row.
#[derive(Clone, Debug, PartialEq)]
pub enum Cell {
    Null,
    Uuid(Uuid),
    Bytes(Vec<u8>),
    Text(String),
    I64(i64),
    F64(f64),
    Bool(bool),
}

const fn col(name: &'static str, ty: ColumnType) -> Column {
    Column { name, ty }
}

use ColumnType::{Bool, Bytes, Text, Uuid as U, F64, I64};

/// Every table exported, parents before children.
pub const TABLES: &[Table] = &[
    Table {
        name: "spots",
        columns: &[
            col("id", U),
            col("name", Text),
            col("api_key_hash", Bytes),
            col("rate_limit_per_10s", I64),
            col("rate_limit_per_day", I64),
            col("created_at", I64),
            col("email_sender_name", Text),
        ],
        order_by: "id",
    },
    // Migration 0016: the member count moved out of `spots` (see `domain::transfer`).
    Table { name: "spot_counters", columns: &[col("member_count", I64)], order_by: "spot_id" },
    Table {
        name: "custom_roles",
        columns: &[
            col("id", U),
            col("label", Text),
            col("description", Text),
            col("permissions", Text),
            col("created_at", I64),
        ],
        order_by: "id",
    },
    Table {
        name: "members",
        columns: &[
            col("id", U),
            col("user_id", U),
            col("email", Text),
            col("email_norm", Text),
            col("mobile_number", Text),
            col("title", Text),
            col("lang", Text),
            col("role", Text),
            col("custom_role_id", U),
            col("status", Text),
            col("firstname", Text),
            col("lastname", Text),
            col("warnings", I64),
            col("avatar_url", Text),
            col("embed_base_urls", Text),
            col("invited_at", I64),
            col("registered_at", I64),
            col("updated_at", I64),
            col("last_activity_at", I64),
        ],
        order_by: "id",
    },
    Table {
        name: "spot_groups",
        columns: &[
            col("id", U),
            col("name", Text),
            col("description", Text),
            col("emoji", Text),
            col("icon", Text),
            col("kind", Text),
            col("rules", Text),
            col("ready", Bool),
            col("compute_lease_until", I64),
            col("member_count", I64),
            col("welcome_message", Text),
            col("group_type", Text),
            col("created_at", I64),
        ],
        order_by: "id",
    },
    Table {
        name: "console_passwords",
        columns: &[col("member_id", U), col("password_hash", Text), col("updated_at", I64)],
        order_by: "member_id",
    },
    Table {
        name: "group_members",
        columns: &[col("group_id", U), col("member_id", U), col("group_role", Text), col("added_at", I64)],
        order_by: "group_id, member_id",
    },
    Table {
        name: "group_blacklist",
        columns: &[col("group_id", U), col("member_id", U)],
        order_by: "group_id, member_id",
    },
    Table { name: "group_links", columns: &[col("parent_id", U), col("child_id", U)], order_by: "parent_id, child_id" },
    Table {
        name: "courses",
        columns: &[
            col("id", U),
            col("title", Text),
            col("description", Text),
            col("privacy", Text),
            col("status", Text),
            col("navigation_mode", Text),
            col("participant_count", I64),
            col("created_at", I64),
        ],
        order_by: "id",
    },
    Table {
        name: "course_groups",
        columns: &[
            col("course_id", U),
            col("group_id", U),
            col("ready", Bool),
            col("invited_through", U),
            col("lease_until", I64),
            col("leased_by", U),
        ],
        order_by: "course_id, group_id",
    },
    Table {
        name: "course_participants",
        columns: &[
            col("id", U),
            col("course_id", U),
            col("member_id", U),
            col("status", Text),
            col("invited_by", U),
            col("invited_at", I64),
            col("started_at", I64),
            col("completed_at", I64),
            col("unenrolled_at", I64),
            col("last_activity_at", I64),
            col("completion_rate", I64),
        ],
        order_by: "id",
    },
    Table {
        name: "custom_properties",
        columns: &[
            col("id", U),
            col("slug", Text),
            col("label", Text),
            col("description", Text),
            col("type", Text),
            col("possible_values", Text),
            col("created_at", I64),
        ],
        order_by: "id",
    },
    Table {
        name: "member_property_values",
        columns: &[
            col("member_id", U),
            col("property_id", U),
            col("ord", I64),
            col("value_text", Text),
            col("value_num", F64),
        ],
        order_by: "member_id, property_id, ord",
    },
    Table {
        name: "webhook_endpoints",
        columns: &[
            col("id", U),
            col("url", Text),
            col("description", Text),
            col("event_types", Text),
            col("enabled", Bool),
            col("disabled_reason", Text),
            col("secret", Text),
            col("previous_secret", Text),
            col("previous_secret_until", I64),
            col("created_at", I64),
            col("updated_at", I64),
        ],
        order_by: "id",
    },
    Table {
        name: "kz_connectors",
        columns: &[col("id", U), col("name", Text), col("secret_hash", Bytes), col("created_at", I64)],
        order_by: "id",
    },
    Table {
        name: "kz_subscriptions",
        columns: &[
            col("id", U),
            col("connector_id", U),
            col("object_id", Text),
            col("object_type", Text),
            col("event_types", Text),
            col("callback_url", Text),
            col("callback_token", Text),
            col("callback_context", Text),
            col("validity", I64),
            col("active", Bool),
            col("disabled_reason", Text),
            col("created_at", I64),
            col("updated_at", I64),
        ],
        order_by: "id",
    },
    Table {
        name: "kz_messages",
        columns: &[
            col("id", U),
            col("group_id", U),
            col("sender_member_id", U),
            col("text", Text),
            col("created_at", I64),
        ],
        order_by: "id",
    },
];

/// The table called `name`, if it is transferred.
pub fn table(name: &str) -> Option<&'static Table> {
    TABLES.iter().find(|t| t.name == name)
}

/// The column that holds the spot: `id` in `spots`, `spot_id` everywhere else.
fn spot_column(table: &Table) -> &'static str {
    if table.name == "spots" {
        "id"
    } else {
        "spot_id"
    }
}

/// Reads one cell of a row on either backend (stamped out per backend by `run!`).
macro_rules! read_cell {
    ($row:expr, $i:expr, $ty:expr) => {{
        use sqlx::Row;
        let row = $row;
        match $ty {
            ColumnType::Uuid => row.try_get::<Option<Uuid>, _>($i)?.map_or(Cell::Null, Cell::Uuid),
            ColumnType::Bytes => row.try_get::<Option<Vec<u8>>, _>($i)?.map_or(Cell::Null, Cell::Bytes),
            ColumnType::Text => row.try_get::<Option<String>, _>($i)?.map_or(Cell::Null, Cell::Text),
            ColumnType::I64 => row.try_get::<Option<i64>, _>($i)?.map_or(Cell::Null, Cell::I64),
            ColumnType::F64 => row.try_get::<Option<f64>, _>($i)?.map_or(Cell::Null, Cell::F64),
            ColumnType::Bool => row.try_get::<Option<bool>, _>($i)?.map_or(Cell::Null, Cell::Bool),
        }
    }};
}

/// Streams the rows of `spot` in `table` to `sink`, one at a time, in key order;
/// returns how many there were. Run it inside a read transaction
/// ([`super::Db::begin_read`]) so that every table is read from one snapshot.
pub async fn export_table<E: From<sqlx::Error>>(
    ex: Ex<'_>,
    spot: SpotId,
    table: &Table,
    sink: &mut dyn FnMut(Vec<Cell>) -> Result<(), E>,
) -> Result<u64, E> {
    let columns: Vec<&str> = table.columns.iter().map(|c| c.name).collect();
    let sql = format!(
        "SELECT {} FROM {} WHERE {} = $1 ORDER BY {}",
        columns.join(", "),
        table.name,
        spot_column(table),
        table.order_by
    );
    let mut count = 0;
    run!(ex, |c| {
        let mut rows = sqlx::query(&sql).bind(spot).fetch(&mut *c);
        while let Some(row) = rows.try_next().await? {
            let mut cells = Vec::with_capacity(table.columns.len());
            for (i, column) in table.columns.iter().enumerate() {
                cells.push(read_cell!(&row, i, column.ty));
            }
            sink(cells)?;
            count += 1;
        }
    });
    Ok(count)
}

/// Inserts one row of `spot` into `table`; `cells` are in the order of
/// `table.columns` and already checked against their types.
pub async fn insert_row(ex: Ex<'_>, spot: SpotId, table: &Table, cells: &[Cell]) -> Result<(), sqlx::Error> {
    let mut names: Vec<&str> = table.columns.iter().map(|c| c.name).collect();
    let with_spot = table.name != "spots";
    if with_spot {
        names.push("spot_id");
    }
    let placeholders: Vec<String> = (1..=names.len()).map(|i| format!("${i}")).collect();
    let sql = format!("INSERT INTO {} ({}) VALUES ({})", table.name, names.join(", "), placeholders.join(", "));
    run!(ex, |c| {
        let mut q = sqlx::query(&sql);
        for (column, cell) in table.columns.iter().zip(cells) {
            q = match (cell, column.ty) {
                (Cell::Null, ColumnType::Uuid) => q.bind(None::<Uuid>),
                (Cell::Null, ColumnType::Bytes) => q.bind(None::<Vec<u8>>),
                (Cell::Null, ColumnType::Text) => q.bind(None::<String>),
                (Cell::Null, ColumnType::I64) => q.bind(None::<i64>),
                (Cell::Null, ColumnType::F64) => q.bind(None::<f64>),
                (Cell::Null, ColumnType::Bool) => q.bind(None::<bool>),
                (Cell::Uuid(v), _) => q.bind(*v),
                (Cell::Bytes(v), _) => q.bind(v.clone()),
                (Cell::Text(v), _) => q.bind(v.clone()),
                (Cell::I64(v), _) => q.bind(*v),
                (Cell::F64(v), _) => q.bind(*v),
                (Cell::Bool(v), _) => q.bind(*v),
            };
        }
        if with_spot {
            q = q.bind(spot);
        }
        q.execute(&mut *c).await.map(|_| ())
    })
}

/// Whether a spot with this id exists.
pub async fn spot_exists(ex: Ex<'_>, spot: SpotId) -> Result<bool, sqlx::Error> {
    run!(ex, |c| {
        let found: Option<i32> =
            sqlx::query_scalar("SELECT 1 FROM spots WHERE id = $1").bind(spot).fetch_optional(&mut *c).await?;
        Ok(found.is_some())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_and_column_names_are_plain_identifiers() {
        // They are spliced into SQL: only lower-case letters, digits and underscores.
        let plain =
            |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
        for t in TABLES {
            assert!(plain(t.name), "{}", t.name);
            for c in t.columns {
                assert!(plain(c.name), "{}.{}", t.name, c.name);
            }
        }
    }
}

//! Moving one spot between databases (`openspot spots export|import`), so that an
//! operator can go from SQLite to PostgreSQL (or back) keeping every id: members,
//! groups, courses and connectors answer by the same ids afterwards, and the spot's
//! API key and connector secrets keep working.
//!
//! The file is JSON lines: a header, one line per record, and an end line that counts
//! the records (a file cut short is refused rather than half imported):
//!
//! ```text
//! {"format":"openspot-spot","version":2,"spotId":"…","exportedAt":"2026-…Z","openspotVersion":"0.1.0"}
//! {"kind":"spot","data":{"id":"…","name":"Acme","api_key_hash":"base64…",…}}
//! {"kind":"spot_counter","data":{"member_count":1200}}
//! {"kind":"member","data":{"id":"…","email":"a@x.io",…}}
//! …
//! {"kind":"end","records":1234}
//! ```
//!
//! A record's `data` holds the table's columns by name, `spot_id` left out (the import
//! binds the header's spot). Bytes are standard base64, floats are strings (Rust's
//! shortest round-trip text, so a value comes back bit for bit), everything else is
//! the JSON value. Secrets go as stored: hashes stay hashes (the API key and connector
//! secrets are not recoverable from the file), webhook signing secrets are readable
//! and the file is as sensitive as the database.
//!
//! Not exported, because they are transient or rebuilt: the outbox, its delivery
//! attempts and per-target counts (pending deliveries stay with the old database),
//! rate-limit windows, Kaizala refresh/access tokens and PINs (users sign in
//! again), console sessions and sign-in links (admins sign in again; their
//! console password hashes are exported), and console jobs and import uploads (progress
//! and reports of work done in the old database). A smart group's computation lease is cleared, so that a group exported
//! mid-computation is taken up at once by the importing server.
//!
//! The export reads one snapshot (a read transaction); the import writes everything in
//! one transaction: all or nothing.

use std::io::{BufRead, Read, Write};

use base64::Engine;
use serde_json::{json, Map, Value};

use crate::domain::ids::SpotId;
use crate::error::{Entity, Error, Result};
use crate::store::transfer::{self as sql, Cell, ColumnType, Table};
use crate::store::Db;

/// The `format` of the header line.
pub const FORMAT: &str = "openspot-spot";
/// The version of the format; bumped when a table's columns change.
///
/// Version 2 (migration 0016): the spot's member count is a `spot_counter` record of
/// its own (table `spot_counters`) instead of the spot record's `member_count`. Files of
/// version 1 still import: their spot record's `member_count` becomes the counter row.
pub const VERSION: i64 = 2;
/// The oldest version an import reads.
pub const OLDEST_VERSION: i64 = 1;
/// The longest line an import reads (a record is far smaller; this bounds memory).
pub const MAX_LINE_BYTES: usize = 1 << 20;

/// The record kinds, in the order they are written and must be read (parents before
/// children), with the table each one fills.
pub const KINDS: &[(&str, &str)] = &[
    ("spot", "spots"),
    ("spot_counter", "spot_counters"),
    ("custom_role", "custom_roles"),
    ("member", "members"),
    ("group", "spot_groups"),
    ("console_password", "console_passwords"),
    ("membership", "group_members"),
    ("blacklist", "group_blacklist"),
    ("group_link", "group_links"),
    ("course", "courses"),
    ("course_group", "course_groups"),
    ("participant", "course_participants"),
    ("property", "custom_properties"),
    ("property_value", "member_property_values"),
    ("webhook_endpoint", "webhook_endpoints"),
    ("kaizala_connector", "kz_connectors"),
    ("kaizala_subscription", "kz_subscriptions"),
    ("kaizala_message", "kz_messages"),
];

/// The spot-scoped tables deliberately left out of an export (see the module docs).
pub const NOT_EXPORTED: &[&str] = &[
    "outbox",
    "outbox_attempts",
    "outbox_target_stats",
    "rate_limit_windows",
    "kz_refresh_tokens",
    "kz_access_tokens",
    "kz_pins",
    "console_sessions",
    "console_selections",
    "console_login_links",
    "console_jobs",
    "console_uploads",
];

/// Records written or read, per kind (kinds with none left out).
#[derive(Debug, Default, PartialEq)]
pub struct Summary {
    pub spot: Option<SpotId>,
    pub records: u64,
    pub by_kind: Vec<(&'static str, u64)>,
}

fn table_of(kind: &str) -> Option<(usize, &'static str, &'static Table)> {
    let (index, (kind, table)) = KINDS.iter().enumerate().find(|(_, (k, _))| *k == kind)?;
    Some((index, kind, sql::table(table)?))
}

fn io_error(e: std::io::Error) -> Error {
    Error::Internal(anyhow::Error::new(e).context("writing the export"))
}

/// Writes every record of `spot` to `out` as JSON lines, from one snapshot.
pub async fn export_spot(db: &Db, spot: SpotId, out: &mut dyn Write) -> Result<Summary> {
    let mut tx = db.begin_read().await?;
    if !sql::spot_exists(tx.ex(), spot).await? {
        return Err(Error::NotFound(Entity::Spot));
    }
    let exported_at = time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .map_err(|e| Error::Internal(e.into()))?;
    let header = json!({
        "format": FORMAT, "version": VERSION, "spotId": spot, "exportedAt": exported_at,
        "openspotVersion": env!("CARGO_PKG_VERSION"),
    });
    writeln!(out, "{header}").map_err(io_error)?;
    let mut summary = Summary { spot: Some(spot), ..Summary::default() };
    for (kind, table_name) in KINDS {
        let table = sql::table(table_name).ok_or_else(|| Error::Internal(anyhow::anyhow!("no table {table_name}")))?;
        let mut sink = |cells: Vec<Cell>| -> Result<()> {
            let line = json!({"kind": kind, "data": encode_row(table, cells)?});
            writeln!(out, "{line}").map_err(io_error)
        };
        let n = sql::export_table(tx.ex(), spot, table, &mut sink).await?;
        if n > 0 {
            summary.by_kind.push((kind, n));
        }
        summary.records += n;
    }
    writeln!(out, "{}", json!({"kind": "end", "records": summary.records})).map_err(io_error)?;
    out.flush().map_err(io_error)?;
    tx.commit().await?;
    Ok(summary)
}

/// The columns that hold a lease, exported empty: an unfinished smart group or course
/// link is taken up by the importing server's housekeeping.
fn is_lease(table: &str, column: &str) -> bool {
    matches!((table, column), ("spot_groups", "compute_lease_until") | ("course_groups", "lease_until" | "leased_by"))
}

/// Columns added to a table after files of this format were first written, with the
/// value a record written before them stands for.
fn added_later(table: &str, column: &str) -> Option<Cell> {
    match (table, column) {
        // Migration 0012: a course link was complete once written.
        ("course_groups", "ready") => Some(Cell::Bool(true)),
        ("course_groups", "invited_through" | "lease_until" | "leased_by") => Some(Cell::Null),
        _ => None,
    }
}

fn encode_row(table: &Table, cells: Vec<Cell>) -> Result<Map<String, Value>> {
    let mut data = Map::new();
    for (column, cell) in table.columns.iter().zip(cells) {
        let value = match cell {
            // A lease is one process's claim on a computation or a link job: not data.
            _ if is_lease(table.name, column.name) => Value::Null,
            Cell::Null => Value::Null,
            Cell::Uuid(v) => Value::String(v.to_string()),
            Cell::Bytes(v) => Value::String(base64::engine::general_purpose::STANDARD.encode(v)),
            Cell::Text(v) => Value::String(v),
            Cell::I64(v) => Value::from(v),
            Cell::F64(v) => Value::String(format!("{v:?}")),
            Cell::Bool(v) => Value::Bool(v),
        };
        data.insert(column.name.to_string(), value);
    }
    Ok(data)
}

/// A refused line of an import file.
fn bad_line(line: u64, reason: impl std::fmt::Display) -> Error {
    Error::BadRequest(format!("line {line}: {reason}"))
}

/// Reads one line of at most [`MAX_LINE_BYTES`] (its `\n` and a `\r` before it
/// removed); None at the end of the input.
fn read_line(input: &mut dyn BufRead, number: u64, buf: &mut Vec<u8>) -> Result<Option<()>> {
    buf.clear();
    let read = (&mut *input)
        .take(MAX_LINE_BYTES as u64 + 2)
        .read_until(b'\n', buf)
        .map_err(|e| Error::BadRequest(format!("line {number}: cannot read: {e}")))?;
    if read == 0 {
        return Ok(None);
    }
    if buf.last() == Some(&b'\n') {
        buf.pop();
        if buf.last() == Some(&b'\r') {
            buf.pop();
        }
    }
    if buf.len() > MAX_LINE_BYTES {
        return Err(bad_line(number, format!("longer than {MAX_LINE_BYTES} bytes")));
    }
    Ok(Some(()))
}

/// The header line: checks the format and version, returns the spot id.
pub fn parse_header(line: &[u8]) -> Result<SpotId> {
    let v: Value = serde_json::from_slice(line).map_err(|e| bad_line(1, format!("not a JSON header: {e}")))?;
    if v["format"] != FORMAT {
        return Err(bad_line(1, format!("not an openspot spot export (the header's format is not \"{FORMAT}\")")));
    }
    if !v["version"].as_i64().is_some_and(|n| (OLDEST_VERSION..=VERSION).contains(&n)) {
        return Err(bad_line(
            1,
            format!(
                "format version {} is not supported (this openspot reads {OLDEST_VERSION} to {VERSION})",
                v["version"]
            ),
        ));
    }
    v["spotId"]
        .as_str()
        .and_then(|s| s.parse::<uuid::Uuid>().ok())
        .map(SpotId)
        .ok_or_else(|| bad_line(1, "the header has no valid spotId"))
}

/// One record line, checked: its kind's position in [`KINDS`], table and cells.
/// `member_count` is the spot record's count in a file of version 1 (before migration
/// 0016 moved it to a `spot_counter` record), None otherwise.
pub enum Record {
    Row { order: usize, kind: &'static str, table: &'static Table, cells: Vec<Cell>, member_count: Option<i64> },
    End { records: u64 },
}

/// Parses and checks one record line (everything but the database's own checks).
pub fn parse_record(line: &[u8], number: u64) -> Result<Record> {
    let v: Value = serde_json::from_slice(line).map_err(|e| bad_line(number, format!("not JSON: {e}")))?;
    let Value::Object(mut obj) = v else { return Err(bad_line(number, "not a JSON object")) };
    let kind = match obj.remove("kind") {
        Some(Value::String(k)) => k,
        _ => return Err(bad_line(number, "no \"kind\"")),
    };
    if kind == "end" {
        let records = obj.get("records").and_then(Value::as_u64);
        return records
            .map(|records| Record::End { records })
            .ok_or_else(|| bad_line(number, "the end line has no record count"));
    }
    let Some((order, kind, table)) = table_of(&kind) else {
        return Err(bad_line(number, format!("unknown kind \"{kind}\"")));
    };
    let Some(Value::Object(mut data)) = obj.remove("data") else {
        return Err(bad_line(number, format!("{kind}: no \"data\" object")));
    };
    // A spot record of version 1 carries the count that version 2 writes as a `spot_counter`.
    let member_count = match table.name {
        "spots" => data
            .remove("member_count")
            .map(|v| v.as_i64().filter(|n| *n >= 0))
            .map(|n| n.ok_or_else(|| bad_line(number, format!("{kind}: \"member_count\" is not a count"))))
            .transpose()?,
        _ => None,
    };
    let mut cells = Vec::with_capacity(table.columns.len());
    for column in table.columns {
        let Some(value) = data.remove(column.name) else {
            match added_later(table.name, column.name) {
                Some(cell) => cells.push(cell),
                None => return Err(bad_line(number, format!("{kind}: no \"{}\"", column.name))),
            }
            continue;
        };
        let cell = decode_cell(value, column.ty)
            .ok_or_else(|| bad_line(number, format!("{kind}: \"{}\" is not a valid {:?}", column.name, column.ty)))?;
        cells.push(cell);
    }
    if let Some(extra) = data.keys().next() {
        return Err(bad_line(number, format!("{kind}: unknown field \"{extra}\"")));
    }
    Ok(Record::Row { order, kind, table, cells, member_count })
}

fn decode_cell(value: Value, ty: ColumnType) -> Option<Cell> {
    Some(match (value, ty) {
        (Value::Null, _) => Cell::Null,
        (Value::String(s), ColumnType::Uuid) => Cell::Uuid(s.parse().ok()?),
        (Value::String(s), ColumnType::Bytes) => Cell::Bytes(base64::engine::general_purpose::STANDARD.decode(s).ok()?),
        (Value::String(s), ColumnType::Text) => Cell::Text(s),
        (Value::Number(n), ColumnType::I64) => Cell::I64(n.as_i64()?),
        (Value::String(s), ColumnType::F64) => Cell::F64(s.parse::<f64>().ok().filter(|f| f.is_finite())?),
        (Value::Number(n), ColumnType::F64) => Cell::F64(n.as_f64()?),
        (Value::Bool(b), ColumnType::Bool) => Cell::Bool(b),
        _ => return None,
    })
}

/// Loads an export into `db` in one transaction. Refused whole (nothing written) if
/// the spot exists already, a line is invalid, out of order or refused by the
/// database, or the file ends before its end line.
pub async fn import_spot(db: &Db, input: &mut dyn BufRead) -> Result<Summary> {
    let mut buf = Vec::new();
    if read_line(input, 1, &mut buf)?.is_none() {
        return Err(bad_line(1, "the file is empty"));
    }
    let spot = parse_header(&buf)?;
    let mut tx = db.begin().await?;
    if sql::spot_exists(tx.ex(), spot).await? {
        return Err(Error::Conflict(format!(
            "spot {spot} exists already in this database: nothing was imported (delete it first, or import into \
             another database)"
        )));
    }
    let mut summary = Summary { spot: Some(spot), ..Summary::default() };
    let mut last_order = 0;
    let mut number = 1;
    let mut ended = false;
    loop {
        number += 1;
        if read_line(input, number, &mut buf)?.is_none() {
            break;
        }
        if ended {
            return Err(bad_line(number, "a line after the end line"));
        }
        match parse_record(&buf, number)? {
            Record::End { records } => {
                if records != summary.records {
                    return Err(bad_line(
                        number,
                        format!("the end line counts {records} records, the file has {}", summary.records),
                    ));
                }
                ended = true;
            }
            Record::Row { order, kind, table, cells, member_count } => {
                let is_spot = kind == "spot";
                if summary.records == 0 && !is_spot {
                    return Err(bad_line(number, "the first record must be the spot"));
                }
                if summary.records > 0 && (is_spot || order < last_order) {
                    return Err(bad_line(number, format!("{kind} out of order (records go in the export's order)")));
                }
                if is_spot && cells.first() != Some(&Cell::Uuid(spot.uuid())) {
                    return Err(bad_line(number, "the spot record's id is not the header's spotId"));
                }
                sql::insert_row(tx.ex(), spot, table, &cells)
                    .await
                    .map_err(|e| bad_line(number, format!("{kind} refused by the database: {e}")))?;
                if let Some(n) = member_count {
                    // A file of version 1: its spot's count becomes the counter row.
                    let counters = sql::table("spot_counters")
                        .ok_or_else(|| Error::Internal(anyhow::anyhow!("no table spot_counters")))?;
                    sql::insert_row(tx.ex(), spot, counters, &[Cell::I64(n)])
                        .await
                        .map_err(|e| bad_line(number, format!("{kind} refused by the database: {e}")))?;
                }
                last_order = order;
                summary.records += 1;
                match summary.by_kind.last_mut() {
                    Some((k, n)) if *k == kind => *n += 1,
                    _ => summary.by_kind.push((kind, 1)),
                }
            }
        }
    }
    if !ended {
        return Err(bad_line(number, "the file ends before its end line (cut short?): nothing was imported"));
    }
    if crate::store::spots::member_count(tx.ex(), spot).await?.is_none() {
        return Err(bad_line(number, "the file has no spot_counter record: nothing was imported"));
    }
    tx.commit().await?;
    db.analyze_after_bulk_write().await?;
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_has_a_table_and_every_table_a_kind() {
        for (kind, table) in KINDS {
            assert!(sql::table(table).is_some(), "{kind}: no table {table}");
        }
        for t in sql::TABLES {
            assert!(KINDS.iter().any(|(_, table)| *table == t.name), "table {} has no kind", t.name);
        }
        // Same order in both lists: parents before children.
        let kinds: Vec<&str> = KINDS.iter().map(|(_, t)| *t).collect();
        let tables: Vec<&str> = sql::TABLES.iter().map(|t| t.name).collect();
        assert_eq!(kinds, tables);
    }

    #[test]
    fn cells_round_trip_through_their_json() {
        let table = sql::table("member_property_values").unwrap();
        let id = uuid::Uuid::now_v7();
        let cells = vec![Cell::Uuid(id), Cell::Uuid(id), Cell::I64(-3), Cell::Null, Cell::F64(0.1 + 0.2)];
        let data = encode_row(table, cells.clone()).unwrap();
        let line = json!({"kind": "property_value", "data": data}).to_string();
        let Record::Row { cells: back, .. } = parse_record(line.as_bytes(), 2).unwrap() else { panic!("a row") };
        assert_eq!(back, cells);
    }

    #[test]
    fn a_course_link_exported_before_its_job_columns_is_a_finished_link() {
        let (course, group) = (uuid::Uuid::now_v7(), uuid::Uuid::now_v7());
        let line = json!({"kind": "course_group", "data": {"course_id": course, "group_id": group}}).to_string();
        let Record::Row { cells, .. } = parse_record(line.as_bytes(), 2).unwrap() else { panic!("a row") };
        assert_eq!(
            cells,
            [Cell::Uuid(course), Cell::Uuid(group), Cell::Bool(true), Cell::Null, Cell::Null, Cell::Null]
        );
        // Its lease is not exported; its cursor is.
        let through = uuid::Uuid::now_v7();
        let cells = vec![
            Cell::Uuid(course),
            Cell::Uuid(group),
            Cell::Bool(false),
            Cell::Uuid(through),
            Cell::I64(5),
            Cell::Uuid(through),
        ];
        let data = encode_row(sql::table("course_groups").unwrap(), cells).unwrap();
        assert_eq!((&data["ready"], &data["invited_through"]), (&json!(false), &json!(through)));
        assert_eq!((&data["lease_until"], &data["leased_by"]), (&Value::Null, &Value::Null));
    }

    #[test]
    fn bad_lines_name_their_number() {
        let err = |line: &str| parse_record(line.as_bytes(), 7).err().unwrap().to_string();
        assert!(err(r#"{"kind":"planet","data":{}}"#).starts_with("line 7: unknown kind \"planet\""));
        assert!(err("[1]").contains("line 7: not a JSON object"));
        assert!(err(r#"{"kind":"group_link","data":{"parent_id":"x","child_id":null}}"#).contains("parent_id"));
        let id = uuid::Uuid::nil();
        let extra = format!(r#"{{"kind":"group_link","data":{{"parent_id":"{id}","child_id":"{id}","x":1}}}}"#);
        assert!(err(&extra).contains("unknown field \"x\""));
        assert!(parse_header(br#"{"format":"other"}"#).is_err());
    }

    #[test]
    fn overlong_lines_are_refused_without_reading_them_whole() {
        let mut long = vec![b'x'; MAX_LINE_BYTES + 10];
        long.push(b'\n');
        let mut input = std::io::Cursor::new(long);
        let mut buf = Vec::new();
        let err = read_line(&mut input, 3, &mut buf).err().unwrap().to_string();
        assert!(err.starts_with("line 3: longer than"), "{err}");
        assert!(buf.len() <= MAX_LINE_BYTES + 2);
    }
}

//! Member import from spreadsheets (contract §4 "Member import", §8 "Member import"):
//! the CLI `openspot members import` and `POST /v1/spotMembers~import` share this.
//!
//! A file (CSV, or the first sheet of an XLSX) is read into rows of [`Cell`]s; the
//! header is checked before anything is written (a column that is neither `email`,
//! `firstname`, `lastname` nor a custom-property slug refuses the file, so a misspelt
//! slug never drops data silently). Each row is validated completely in memory, so a
//! bad row fails alone and nothing of it is written; valid rows are written in
//! transactions of [`BATCH_ROWS`]. An email already in the spot updates that member,
//! so running the same file twice creates no one.
//!
//! Speed (1,000,000 rows in about a minute on SQLite, `benches/import.sh`) comes from
//! writing each batch with multi-row statements: every row is offered as a new member
//! (`ON CONFLICT DO NOTHING RETURNING id`), only the rows whose email exists are read
//! back, and those are compared with what is stored so that an unchanged row writes
//! nothing.

use std::collections::{HashMap, HashSet};
use std::io::Cursor;

use serde_json::Value;
use uuid::Uuid;

use super::members::{normalize_email, Member};
use super::now_ms;
use super::properties::{self, PropertyDef, StoredValue};
use crate::error::{Error, Result};
use crate::store::{self, Db};

/// Rows written per transaction.
pub const BATCH_ROWS: usize = 20_000;
/// Members per multi-row insert statement (13 binds each).
const INSERT_ROWS_PER_STATEMENT: usize = 250;
/// Value rows per multi-row insert statement (6 binds each).
const VALUES_PER_STATEMENT: usize = 500;
/// An import that writes this many rows refreshes the planner's statistics at the end
/// (an HTTP upload, at most 2,000 rows, never does).
const ANALYZE_AFTER_ROWS: u64 = 10_000;
/// The HTTP endpoint's limits (MeltingSpot's own file limits).
pub const HTTP_MAX_ROWS: usize = 2000;
pub const HTTP_MAX_BYTES: usize = 5 << 20;

/// One spreadsheet cell.
#[derive(Clone, Debug, PartialEq)]
pub enum Cell {
    Empty,
    Text(String),
    Number(f64),
    Bool(bool),
    /// A date cell of an XLSX file, as `YYYY-MM-DD`.
    Date(String),
}

impl Cell {
    fn as_text(&self) -> Option<String> {
        match self {
            Cell::Empty => None,
            Cell::Text(s) => {
                let t = s.trim();
                (!t.is_empty()).then(|| t.to_string())
            }
            Cell::Number(n) if n.fract() == 0.0 && n.abs() < 9.0e15 => Some((*n as i64).to_string()),
            Cell::Number(n) => Some(n.to_string()),
            Cell::Bool(b) => Some(b.to_string()),
            Cell::Date(d) => Some(d.clone()),
        }
    }
}

/// A row that was not imported.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct FailedRow {
    pub line: u64,
    pub email: String,
    pub reason: String,
}

/// What an import did (or, dry, would do).
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct ImportReport {
    pub created: u64,
    pub updated: u64,
    pub failed: Vec<FailedRow>,
}

/// Reads CSV (UTF-8, optional BOM, RFC 4180) or XLSX (first sheet), told apart by content.
pub fn read_rows(bytes: &[u8]) -> Result<Vec<Vec<Cell>>> {
    if bytes.starts_with(b"PK\x03\x04") {
        read_xlsx(bytes)
    } else {
        read_csv(bytes)
    }
}

fn read_csv(bytes: &[u8]) -> Result<Vec<Vec<Cell>>> {
    let bytes = bytes.strip_prefix(b"\xef\xbb\xbf").unwrap_or(bytes);
    if std::str::from_utf8(bytes).is_err() {
        return Err(Error::invalid("file", "is neither an XLSX file nor UTF-8 CSV"));
    }
    let mut reader = csv::ReaderBuilder::new().has_headers(false).flexible(true).from_reader(bytes);
    let mut rows = Vec::new();
    for (i, rec) in reader.records().enumerate() {
        let rec = rec.map_err(|e| Error::invalid("file", format!("CSV error on line {}: {e}", i + 1)))?;
        rows.push(
            rec.iter().map(|f| if f.trim().is_empty() { Cell::Empty } else { Cell::Text(f.to_string()) }).collect(),
        );
    }
    Ok(rows)
}

/// Excel's serial day number → `YYYY-MM-DD` (day 0 = 1899-12-30, as Excel counts).
fn excel_date(serial: f64) -> Option<String> {
    let base = time::Date::from_calendar_date(1899, time::Month::December, 30).ok()?;
    let d = base.checked_add(time::Duration::days(serial.floor() as i64))?;
    Some(format!("{:04}-{:02}-{:02}", d.year(), u8::from(d.month()), d.day()))
}

fn read_xlsx(bytes: &[u8]) -> Result<Vec<Vec<Cell>>> {
    use calamine::{Data, Reader};
    let mut book = calamine::open_workbook_auto_from_rs(Cursor::new(bytes))
        .map_err(|e| Error::invalid("file", format!("cannot read the XLSX file: {e}")))?;
    let range = book
        .worksheet_range_at(0)
        .ok_or_else(|| Error::invalid("file", "the XLSX file has no sheet"))?
        .map_err(|e| Error::invalid("file", format!("cannot read the first sheet: {e}")))?;
    Ok(range
        .rows()
        .map(|r| {
            r.iter()
                .map(|c| match c {
                    Data::Empty | Data::Error(_) => Cell::Empty,
                    Data::String(s) | Data::DurationIso(s) => Cell::Text(s.clone()),
                    Data::Int(i) => Cell::Number(*i as f64),
                    Data::Float(f) => Cell::Number(*f),
                    Data::Bool(b) => Cell::Bool(*b),
                    Data::DateTime(dt) => excel_date(dt.as_f64()).map(Cell::Date).unwrap_or(Cell::Empty),
                    Data::DateTimeIso(s) => Cell::Date(s.chars().take(10).collect()),
                })
                .collect()
        })
        .collect())
}

/// What each column holds.
#[derive(Clone, Debug)]
enum Column {
    Email,
    Firstname,
    Lastname,
    Property(PropertyDef),
}

fn columns(header: &[Cell], defs: &[PropertyDef]) -> Result<Vec<Column>> {
    let mut out = Vec::with_capacity(header.len());
    let mut seen = HashSet::new();
    for (i, c) in header.iter().enumerate() {
        let name = c.as_text().unwrap_or_default();
        let key = name.to_lowercase();
        let col = match key.as_str() {
            "email" => Column::Email,
            "firstname" => Column::Firstname,
            "lastname" => Column::Lastname,
            "" => return Err(Error::invalid("file", format!("column {} has no header", i + 1))),
            _ => Column::Property(defs.iter().find(|d| d.slug == key).cloned().ok_or_else(|| {
                Error::invalid(
                    "file",
                    format!(
                        "column '{name}' is neither email, firstname, lastname nor a custom property slug of this spot"
                    ),
                )
            })?),
        };
        if !seen.insert(key.clone()) {
            return Err(Error::invalid("file", format!("column '{name}' appears twice")));
        }
        out.push(col);
    }
    if !out.iter().any(|c| matches!(c, Column::Email)) {
        return Err(Error::invalid("file", "the header has no 'email' column"));
    }
    Ok(out)
}

/// A validated row, ready to write.
struct RowPlan {
    email: String,
    firstname: Option<String>,
    lastname: Option<String>,
    values: Vec<(Uuid, Vec<StoredValue>)>,
}

fn cell_value(def: &PropertyDef, cell: &Cell) -> std::result::Result<Value, String> {
    let text = cell.as_text().unwrap_or_default();
    Ok(match def.kind.as_str() {
        "Number" => match cell {
            Cell::Number(n) => Value::from(*n),
            _ => Value::from(text.parse::<f64>().map_err(|_| format!("{}: '{text}' is not a number", def.slug))?),
        },
        "Boolean" => match cell {
            Cell::Bool(b) => Value::from(*b),
            _ => match text.to_lowercase().as_str() {
                "true" | "yes" | "1" => Value::from(true),
                "false" | "no" | "0" => Value::from(false),
                _ => return Err(format!("{}: '{text}' is not a boolean (true false yes no 1 0)", def.slug)),
            },
        },
        "MultipleSelect" => {
            Value::from(text.split(';').map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect::<Vec<_>>())
        }
        _ => Value::from(text),
    })
}

fn plan_row(cols: &[Column], row: &[Cell]) -> std::result::Result<RowPlan, (String, String)> {
    let email_raw = cols
        .iter()
        .position(|c| matches!(c, Column::Email))
        .and_then(|i| row.get(i))
        .and_then(Cell::as_text)
        .unwrap_or_default();
    let email = normalize_email("email", &email_raw).map_err(|e| (email_raw.clone(), reason(e)))?;
    let mut plan = RowPlan { email, firstname: None, lastname: None, values: Vec::new() };
    for (i, col) in cols.iter().enumerate() {
        let cell = row.get(i).unwrap_or(&Cell::Empty);
        if matches!(cell, Cell::Empty) || cell.as_text().is_none() {
            continue;
        }
        match col {
            Column::Email => {}
            Column::Firstname => plan.firstname = cell.as_text(),
            Column::Lastname => plan.lastname = cell.as_text(),
            Column::Property(def) => {
                let v = cell_value(def, cell).map_err(|r| (email_raw.clone(), r))?;
                let stored = properties::to_stored(def, &v, &def.slug).map_err(|e| (email_raw.clone(), reason(e)))?;
                plan.values.push((def.id, stored));
            }
        }
    }
    Ok(plan)
}

fn reason(e: Error) -> String {
    match e {
        Error::Invalid { field, reason } => format!("{field}: {reason}"),
        other => other.to_string(),
    }
}

/// Checks the header and groups without writing anything (HTTP refuses early with it).
pub async fn prepare(db: &Db, spot_id: Uuid, rows: &[Vec<Cell>], group_ids: &[Uuid]) -> Result<()> {
    let defs = properties::list_properties(db, spot_id).await?;
    columns(rows.first().map(Vec::as_slice).unwrap_or(&[]), &defs)?;
    check_groups(db, spot_id, group_ids).await
}

async fn check_groups(db: &Db, spot_id: Uuid, group_ids: &[Uuid]) -> Result<()> {
    let mut c = db.conn().await?;
    let found = store::groups::get_many(c.ex(), spot_id, group_ids).await?;
    for g in group_ids {
        match found.iter().find(|f| f.id == *g) {
            None => return Err(Error::invalid("groupId", format!("no group '{g}' in this spot"))),
            Some(f) if f.is_smart() => {
                return Err(Error::invalid(
                    "groupId",
                    format!("group '{g}' is a smart group: its members follow its rules"),
                ))
            }
            Some(_) => {}
        }
    }
    Ok(())
}

/// Imports `rows` (header first) into the spot. `progress` is told how many data rows
/// are done after each batch.
pub async fn import_rows(
    db: &Db,
    spot_id: Uuid,
    rows: &[Vec<Cell>],
    group_ids: &[Uuid],
    dry_run: bool,
    progress: &(dyn Fn(u64) + Send + Sync),
) -> Result<ImportReport> {
    let defs = properties::list_properties(db, spot_id).await?;
    let cols = columns(rows.first().map(Vec::as_slice).unwrap_or(&[]), &defs)?;
    check_groups(db, spot_id, group_ids).await?;
    // Groups are joined in id order, the order every other membership writer locks them in.
    let mut sorted = group_ids.to_vec();
    sorted.sort();
    sorted.dedup();
    let group_ids = sorted.as_slice();
    let has_smart = {
        let mut c = db.conn().await?;
        !store::groups::smart_groups(c.ex(), spot_id).await?.is_empty()
    };
    let mut report = ImportReport::default();
    let mut seen_in_dry_run: HashSet<String> = HashSet::new();
    let data = rows.get(1..).unwrap_or(&[]);
    let mut done = 0u64;
    for (batch_index, batch) in data.chunks(BATCH_ROWS).enumerate() {
        let first_line = (batch_index * BATCH_ROWS) as u64 + 2;
        let mut plans = Vec::with_capacity(batch.len());
        for (i, row) in batch.iter().enumerate() {
            if row.iter().all(|c| c.as_text().is_none()) {
                continue;
            }
            match plan_row(&cols, row) {
                Ok(p) => plans.push(p),
                Err((email, reason)) => report.failed.push(FailedRow { line: first_line + i as u64, email, reason }),
            }
        }
        if dry_run {
            let mut c = db.conn().await?;
            let keys: Vec<String> = plans.iter().map(|p| p.email.to_lowercase()).collect();
            let in_spot: HashSet<String> = store::members::get_many_by_email(c.ex(), spot_id, &keys)
                .await?
                .into_iter()
                .filter_map(|m| m.email.map(|e| e.to_lowercase()))
                .collect();
            for key in keys {
                if in_spot.contains(&key) || !seen_in_dry_run.insert(key) {
                    report.updated += 1;
                } else {
                    report.created += 1;
                }
            }
        } else {
            write_batch(db, spot_id, &defs, &plans, group_ids, has_smart, &mut report).await?;
        }
        done += batch.len() as u64;
        progress(done);
    }
    if !dry_run && report.created + report.updated >= ANALYZE_AFTER_ROWS {
        db.analyze_after_bulk_write().await?;
    }
    Ok(report)
}

/// Writes one batch of validated rows in one transaction, with multi-row statements
/// for what is new (members and their values) and per-row statements only for
/// members that already exist.
async fn write_batch(
    db: &Db,
    spot_id: Uuid,
    defs: &[PropertyDef],
    plans: &[RowPlan],
    group_ids: &[Uuid],
    has_smart: bool,
    report: &mut ImportReport,
) -> Result<()> {
    // Rows repeating an email within the batch merge into its first row (later cells win).
    let mut order: Vec<String> = Vec::new();
    let mut merged: HashMap<String, RowPlan> = HashMap::new();
    let mut occurrences: Vec<String> = Vec::with_capacity(plans.len());
    for p in plans {
        let key = p.email.to_lowercase();
        occurrences.push(key.clone());
        match merged.get_mut(&key) {
            Some(m) => {
                if p.firstname.is_some() {
                    m.firstname = p.firstname.clone();
                }
                if p.lastname.is_some() {
                    m.lastname = p.lastname.clone();
                }
                for (pid, v) in &p.values {
                    m.values.retain(|(id, _)| id != pid);
                    m.values.push((*pid, v.clone()));
                }
            }
            None => {
                order.push(key.clone());
                merged.insert(
                    key,
                    RowPlan {
                        email: p.email.clone(),
                        firstname: p.firstname.clone(),
                        lastname: p.lastname.clone(),
                        values: p.values.clone(),
                    },
                );
            }
        }
    }
    let mut tx = db.begin().await?;
    check_properties_unchanged(defs, &store::properties::list_for_share(tx.ex(), spot_id).await?, plans)?;
    let now = now_ms();
    // Every row is first offered as a new member; an email already in the spot (or
    // created meanwhile by another writer) makes its row a no-op, and only those rows
    // are then read back to be updated. A fresh import never looks an email up twice.
    let candidates: Vec<Member> = order
        .iter()
        .filter_map(|k| merged.get(k))
        .map(|p| {
            let mut m = Member::new_invited(spot_id, Some(p.email.clone()), None);
            m.firstname = p.firstname.clone().unwrap_or_default();
            m.lastname = p.lastname.clone().unwrap_or_default();
            m.invited_at = now;
            m.updated_at = now;
            m
        })
        .collect();
    let mut inserted: HashSet<Uuid> = HashSet::new();
    for chunk in candidates.chunks(INSERT_ROWS_PER_STATEMENT) {
        inserted.extend(store::members::insert_many_if_absent(tx.ex(), chunk).await?);
    }
    let mut members: HashMap<String, Member> = HashMap::with_capacity(candidates.len());
    let mut created: HashSet<String> = HashSet::with_capacity(inserted.len());
    let mut existing_emails: Vec<String> = Vec::new();
    for m in candidates {
        let key = m.email.as_deref().unwrap_or_default().to_lowercase();
        if inserted.contains(&m.id) {
            created.insert(key.clone());
            members.insert(key, m);
        } else {
            existing_emails.push(key);
        }
    }
    for m in store::members::get_many_by_email(tx.ex(), spot_id, &existing_emails).await? {
        if let Some(e) = &m.email {
            members.insert(e.to_lowercase(), m);
        }
    }
    let mut counted: HashSet<&str> = HashSet::new();
    for key in &occurrences {
        if created.contains(key) && counted.insert(key.as_str()) {
            report.created += 1;
        } else {
            report.updated += 1;
        }
    }
    // Members that exist already: their values are read in bulk and only what differs
    // is written, so re-running a file writes (and re-evaluates) nothing.
    let existing_ids: Vec<Uuid> =
        order.iter().filter(|k| !created.contains(*k)).filter_map(|k| members.get(k)).map(|m| m.id).collect();
    let current_values = store::properties::values_of_members(tx.ex(), spot_id, &existing_ids).await?;
    let mut new_values: Vec<(Uuid, Uuid, i64, StoredValue)> = Vec::new();
    let mut unchanged: HashSet<Uuid> = HashSet::new();
    for key in &order {
        let (Some(p), Some(m)) = (merged.get(key), members.get_mut(key)) else { continue };
        if created.contains(key) {
            for (pid, rows) in &p.values {
                for (i, v) in rows.iter().enumerate() {
                    new_values.push((*pid, m.id, i as i64, v.clone()));
                }
            }
            continue;
        }
        let mut changed = false;
        if let Some(f) = &p.firstname {
            changed |= m.firstname != *f;
            m.firstname = f.clone();
        }
        if let Some(l) = &p.lastname {
            changed |= m.lastname != *l;
            m.lastname = l.clone();
        }
        let current = current_values.get(&m.id);
        for (pid, rows) in &p.values {
            let before = current.and_then(|c| c.get(pid)).map(Vec::as_slice).unwrap_or(&[]);
            if before != rows.as_slice() {
                store::properties::set_values(tx.ex(), spot_id, *pid, m.id, rows).await?;
                changed = true;
            }
        }
        if changed {
            m.updated_at = now;
            store::members::update(tx.ex(), m).await?;
        } else {
            unchanged.insert(m.id);
        }
    }
    for chunk in new_values.chunks(VALUES_PER_STATEMENT) {
        store::properties::insert_values(tx.ex(), spot_id, chunk).await?;
    }
    for key in &order {
        let Some(m) = members.get(key) else { continue };
        if has_smart && !unchanged.contains(&m.id) {
            super::groups::refresh_smart_memberships(&mut tx, m).await?;
        }
        for g in group_ids {
            super::groups::join(&mut tx, spot_id, *g, m.id, "Member").await?;
        }
    }
    store::spots::add_member_count(tx.ex(), spot_id, created.len() as i64).await?;
    tx.commit().await?;
    Ok(())
}

/// Rows were validated against `planned`; the batch writes only if every property it
/// writes still exists with the same type and options (`current` is share-locked, so
/// this holds until it commits). A property deleted or narrowed during a long import
/// stops it with 409 rather than leave values the property no longer allows.
fn check_properties_unchanged(planned: &[PropertyDef], current: &[PropertyDef], plans: &[RowPlan]) -> Result<()> {
    let used: HashSet<Uuid> = plans.iter().flat_map(|p| p.values.iter().map(|(id, _)| *id)).collect();
    for def in planned.iter().filter(|d| used.contains(&d.id)) {
        let same = current
            .iter()
            .find(|c| c.id == def.id)
            .is_some_and(|c| c.kind == def.kind && c.possible_values == def.possible_values);
        if !same {
            return Err(Error::Conflict(format!(
                "custom property '{}' was changed or deleted during the import; run it again",
                def.slug
            )));
        }
    }
    Ok(())
}

/// The failed rows as CSV with the header `line,email,reason`.
pub fn failed_rows_csv(report: &ImportReport) -> Result<String> {
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record(["line", "email", "reason"]).map_err(|e| Error::Internal(e.into()))?;
    for f in &report.failed {
        w.write_record([f.line.to_string(), f.email.clone(), f.reason.clone()])
            .map_err(|e| Error::Internal(e.into()))?;
    }
    let bytes = w.into_inner().map_err(|e| Error::Internal(anyhow::anyhow!("{e}")))?;
    String::from_utf8(bytes).map_err(|e| Error::Internal(e.into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_with_bom_and_quotes() {
        let rows = read_rows(b"\xef\xbb\xbfEmail,firstname\r\n\"a@x.io\",\"Smith, Jr\"\r\n").expect("csv");
        assert_eq!(rows[0][0], Cell::Text("Email".into()));
        assert_eq!(rows[1][1], Cell::Text("Smith, Jr".into()));
    }

    #[test]
    fn excel_serial_dates() {
        assert_eq!(excel_date(45292.0).as_deref(), Some("2024-01-01"));
        assert_eq!(excel_date(1.0).as_deref(), Some("1899-12-31"));
    }

    #[test]
    fn headers_are_checked() {
        let h = |names: &[&str]| names.iter().map(|n| Cell::Text(n.to_string())).collect::<Vec<_>>();
        assert!(columns(&h(&["EMAIL", "FirstName"]), &[]).is_ok());
        let e = columns(&h(&["firstname"]), &[]).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(e.contains("no 'email' column"), "{e}");
        let e = columns(&h(&["email", "plna"]), &[]).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(e.contains("'plna'"), "{e}");
    }

    #[test]
    fn a_batch_stops_when_a_property_it_writes_changed() {
        let def = |options: &[&str]| PropertyDef {
            spot_id: Uuid::nil(),
            id: Uuid::from_u128(7),
            slug: "plan".into(),
            label: "Plan".into(),
            description: None,
            kind: "SingleSelect".into(),
            possible_values: properties::Options(options.iter().map(|o| o.to_string()).collect()),
        };
        let planned = vec![def(&["Free", "Pro"])];
        let value = StoredValue { text: Some("Pro".into()), num: None };
        let writes_plan = vec![RowPlan {
            email: "a@x.io".into(),
            firstname: None,
            lastname: None,
            values: vec![(Uuid::from_u128(7), vec![value])],
        }];
        let names_only = vec![RowPlan { email: "b@x.io".into(), firstname: None, lastname: None, values: vec![] }];
        let mut relabelled = def(&["Free", "Pro"]);
        relabelled.label = "Pricing plan".into();
        assert!(check_properties_unchanged(&planned, &[relabelled], &writes_plan).is_ok());
        let narrowed = check_properties_unchanged(&planned, &[def(&["Free"])], &writes_plan);
        assert!(matches!(&narrowed, Err(Error::Conflict(m)) if m.contains("'plan'")), "{narrowed:?}");
        assert!(matches!(check_properties_unchanged(&planned, &[], &writes_plan), Err(Error::Conflict(_))));
        // A batch that writes no value of the property does not care.
        assert!(check_properties_unchanged(&planned, &[], &names_only).is_ok());
    }
}

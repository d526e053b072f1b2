//! Member import from spreadsheets (contract §4 "Member import", §8 "Member import"):
//! the CLI `openspot members import` and `POST /v1/spotMembers~import` share this.
//!
//! Files are hostile until read: [`read_rows`] counts rows, columns, cells and text as
//! it reads and stops at the first limit crossed ([`HTTP_LIMITS`], [`CLI_LIMITS`]:
//! 2,000 / 10,000,000 member rows, 1,024 columns, 500,000 / 100,000,000 cells,
//! 16 MiB / 4 GiB of text, XLSX archives unpacking to 64 MiB / 8 GiB, 500,000 /
//! 20,000,000 shared strings). An XLSX archive is unpacked entry by entry through the
//! limit, and its shared-string counts checked, before calamine opens it (calamine
//! would inflate a zip bomb and reserve a declared `uniqueCount` up front); the first
//! sheet is then read cell by cell and its rows built sparsely, never as the dense
//! range from its first to its last cell (A1 and XFD1048576 would be 17 billion
//! cells). No cell value panics: a date outside the years 1 to 9999 fails its row.
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

use std::collections::{HashMap, HashSet, VecDeque};
use std::io::Cursor;

use serde_json::Value;

use super::events::Event;
use super::groups::Group;
use super::members::{normalize_email, Member};
use super::properties::{self, PropertyDef};
use super::vocab::PropertyType;
use super::{from_rows, now_ms};
use crate::domain::ids::{GroupId, MemberId, PropertyId, SpotId};
use crate::error::{Error, Result};
use crate::store::members::MemberRow;
use crate::store::property_values::StoredValue;
use crate::store::{self, Db, Tx};

/// Rows written per transaction.
pub const BATCH_ROWS: usize = 20_000;
/// Members per multi-row insert statement (13 binds each).
const INSERT_ROWS_PER_STATEMENT: usize = 250;
/// Value rows per multi-row insert statement (6 binds each).
const VALUES_PER_STATEMENT: usize = 500;
/// An import that writes this many rows refreshes the planner's statistics at the end
/// (an HTTP upload, at most 2,000 rows, never does).
const ANALYZE_AFTER_ROWS: u64 = 10_000;
/// The HTTP endpoint's body limit (MeltingSpot's own file limit).
pub const HTTP_MAX_BYTES: usize = 5 << 20;

/// How much of a file an import reads before it refuses the file. Every limit is
/// checked while reading, before the memory it guards is taken, so a hostile file is
/// refused after reading at most that much.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReadLimits {
    /// The file itself, in bytes.
    pub file_bytes: u64,
    /// Member rows after the header (an XLSX sheet counts every row from its first used
    /// row to its last, as a spreadsheet shows them).
    pub rows: usize,
    /// Columns: a cell further right refuses the file (400), whatever the other limits.
    pub columns: usize,
    /// Cells held, counting the empty cells a row needs up to its last used one.
    pub cells: usize,
    /// Text held: the XLSX shared-string table as stored, and the text of all cells.
    pub text_bytes: u64,
    /// Bytes all the entries of an XLSX archive unpack to together (zip bombs).
    pub unzipped_bytes: u64,
    /// Strings in the XLSX shared-string table, as declared (`count`, `uniqueCount`)
    /// or present.
    pub shared_strings: usize,
}

/// `POST /v1/spotMembers~import`: MeltingSpot's own 5 MiB and 2,000 member rows, and
/// what a 2,000-row file can reasonably need beside them. Over any → 413.
pub const HTTP_LIMITS: ReadLimits = ReadLimits {
    file_bytes: HTTP_MAX_BYTES as u64,
    rows: 2000,
    columns: 1024,
    cells: 500_000,
    text_bytes: 16 << 20,
    unzipped_bytes: 64 << 20,
    shared_strings: 500_000,
};

/// `openspot members import`: an operator's own file, so limits far above any real
/// member list (1,000,000 rows is the benchmark), which still stop a hostile file
/// before it takes all the machine's memory.
pub const CLI_LIMITS: ReadLimits = ReadLimits {
    file_bytes: 4 << 30,
    rows: 10_000_000,
    columns: 1024,
    cells: 100_000_000,
    text_bytes: 4 << 30,
    unzipped_bytes: 8 << 30,
    shared_strings: 20_000_000,
};

/// One spreadsheet cell.
#[derive(Clone, Debug, PartialEq)]
pub enum Cell {
    Empty,
    Text(String),
    Number(f64),
    Bool(bool),
    /// A date cell of an XLSX file, as `YYYY-MM-DD`.
    Date(String),
    /// A cell whose value cannot be used (e.g. a date serial out of any calendar): the
    /// row it is in fails with this reason.
    Unreadable(String),
}

impl Cell {
    fn as_text(&self) -> Option<String> {
        match self {
            Cell::Empty | Cell::Unreadable(_) => None,
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

    /// Nothing in it, not even something unusable.
    fn is_blank(&self) -> bool {
        !matches!(self, Cell::Unreadable(_)) && self.as_text().is_none()
    }
}

/// A row that was not imported.
#[derive(Clone, Debug, PartialEq)]
pub struct FailedRow {
    pub line: u64,
    pub email: String,
    pub reason: String,
}

/// What an import did (or, dry, would do).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ImportReport {
    pub created: u64,
    pub updated: u64,
    pub failed: Vec<FailedRow>,
}

/// Why a file was not read.
#[derive(Debug)]
pub enum ReadError {
    /// Over one of the [`ReadLimits`] (named here, for the CLI and the log): 413 over HTTP.
    TooLarge(String),
    /// A file that cannot be used: 400 naming the reason.
    Unusable(Error),
}

impl std::fmt::Display for ReadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReadError::TooLarge(why) => f.write_str(why),
            ReadError::Unusable(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for ReadError {}

impl From<ReadError> for Error {
    fn from(e: ReadError) -> Error {
        match e {
            ReadError::TooLarge(_) => Error::TooLarge,
            ReadError::Unusable(e) => e,
        }
    }
}

fn unusable(reason: impl Into<String>) -> ReadError {
    ReadError::Unusable(Error::invalid("file", reason))
}

/// `1234567` → `1,234,567`, for the limits named in messages.
fn grouped(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, d) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(d);
    }
    out
}

fn mib(bytes: u64) -> String {
    format!("{} MiB", grouped(bytes >> 20))
}

fn too_many_rows(limits: &ReadLimits) -> ReadError {
    ReadError::TooLarge(format!("the file has more than {} member rows", grouped(limits.rows as u64)))
}

fn too_many_cells(limits: &ReadLimits) -> ReadError {
    ReadError::TooLarge(format!("the file has more than {} cells", grouped(limits.cells as u64)))
}

fn too_wide(column: usize, limits: &ReadLimits) -> ReadError {
    unusable(format!(
        "the file has a cell in column {}, beyond the {} columns an import reads",
        grouped(column as u64),
        grouped(limits.columns as u64)
    ))
}

/// Reads CSV (UTF-8, optional BOM, RFC 4180) or XLSX (first sheet), told apart by
/// content, within `limits`. Blocking and CPU-bound: the server runs it off its async
/// workers.
pub fn read_rows(bytes: &[u8], limits: &ReadLimits) -> std::result::Result<Vec<Vec<Cell>>, ReadError> {
    if bytes.len() as u64 > limits.file_bytes {
        return Err(ReadError::TooLarge(format!("the file is larger than {}", mib(limits.file_bytes))));
    }
    if bytes.starts_with(b"PK\x03\x04") {
        // The XLSX reader does plain arithmetic on cell references, which a debug build
        // checks: a reference past u32 must refuse the file, not end the process.
        std::panic::catch_unwind(|| read_xlsx(bytes, limits))
            .unwrap_or_else(|_| Err(unusable("cannot read the XLSX file: a cell reference is out of range")))
    } else {
        read_csv(bytes, limits)
    }
}

fn read_csv(bytes: &[u8], limits: &ReadLimits) -> std::result::Result<Vec<Vec<Cell>>, ReadError> {
    let bytes = bytes.strip_prefix(b"\xef\xbb\xbf").unwrap_or(bytes);
    if std::str::from_utf8(bytes).is_err() {
        return Err(unusable("is neither an XLSX file nor UTF-8 CSV"));
    }
    let mut reader = csv::ReaderBuilder::new().has_headers(false).flexible(true).from_reader(bytes);
    let mut rows = Vec::new();
    let mut cells = 0usize;
    for (i, rec) in reader.records().enumerate() {
        // Record i is line i + 1; line 1 is the header.
        if i > limits.rows {
            return Err(too_many_rows(limits));
        }
        let rec = rec.map_err(|e| unusable(format!("CSV error on line {}: {e}", i + 1)))?;
        if rec.len() > limits.columns {
            return Err(too_wide(rec.len(), limits));
        }
        cells += rec.len();
        if cells > limits.cells {
            return Err(too_many_cells(limits));
        }
        rows.push(
            rec.iter().map(|f| if f.trim().is_empty() { Cell::Empty } else { Cell::Text(f.to_string()) }).collect(),
        );
    }
    Ok(rows)
}

/// Excel's serial day number → `YYYY-MM-DD` (day 0 = 1899-12-30, as Excel counts);
/// `None` outside the years 1 to 9999.
fn excel_date(serial: f64) -> Option<String> {
    // 0001-01-01 and 9999-12-31 as serials.
    const FIRST: f64 = -693_593.0;
    const LAST: f64 = 2_958_465.0;
    if !(FIRST..=LAST).contains(&serial.floor()) {
        return None;
    }
    let base = time::Date::from_calendar_date(1899, time::Month::December, 30).ok()?;
    let days = i32::try_from(serial.floor() as i64).ok()?;
    let d = time::Date::from_julian_day(base.to_julian_day().checked_add(days)?).ok()?;
    Some(format!("{:04}-{:02}-{:02}", d.year(), u8::from(d.month()), d.day()))
}

/// Checks an XLSX archive before the XLSX reader opens it: every entry is unpacked
/// (and dropped) through the limit of what all may unpack to, and the shared-string
/// table, which the reader keeps whole and sizes from its declared count, is read
/// through its own limit and its declared and actual counts checked. The reader then
/// unpacks the same entries with the same zip library, so it reads no more than this.
fn check_archive(bytes: &[u8], limits: &ReadLimits) -> std::result::Result<(), ReadError> {
    use std::io::Read;
    let cannot = |e: &dyn std::fmt::Display| unusable(format!("cannot read the XLSX file: {e}"));
    let mut archive = zip::ZipArchive::new(Cursor::new(bytes)).map_err(|e| cannot(&e))?;
    let too_big = || ReadError::TooLarge(format!("the XLSX file unpacks to more than {}", mib(limits.unzipped_bytes)));
    let mut left = limits.unzipped_bytes;
    for i in 0..archive.len() {
        let entry = archive.by_index(i).map_err(|e| cannot(&e))?;
        if entry.name().map_err(|e| cannot(&e))?.to_ascii_lowercase().ends_with("sharedstrings.xml") {
            let cap = left.min(limits.text_bytes);
            let mut xml = Vec::new();
            entry.take(cap + 1).read_to_end(&mut xml).map_err(|e| cannot(&e))?;
            let read = xml.len() as u64;
            if read > cap {
                return Err(if cap < left {
                    ReadError::TooLarge(format!("the XLSX shared strings are larger than {}", mib(limits.text_bytes)))
                } else {
                    too_big()
                });
            }
            left -= read;
            check_shared_strings(&xml, limits)?;
        } else {
            let read = std::io::copy(&mut entry.take(left + 1), &mut std::io::sink()).map_err(|e| cannot(&e))?;
            if read > left {
                return Err(too_big());
            }
            left -= read;
        }
    }
    Ok(())
}

/// Counts the strings of a shared-string table (every start tag whose local name is
/// `si`, wherever it is, so a comment can only over-count) and checks the counts the
/// table declares on `sst` (`uniqueCount` sizes the reader's table before any string).
fn check_shared_strings(xml: &[u8], limits: &ReadLimits) -> std::result::Result<(), ReadError> {
    let too_many = || {
        ReadError::TooLarge(format!(
            "the XLSX file has more than {} shared strings",
            grouped(limits.shared_strings as u64)
        ))
    };
    let is_name_end = |b: &u8| matches!(b, b' ' | b'\t' | b'\r' | b'\n' | b'/' | b'>');
    let mut strings = 0usize;
    let mut at = 0usize;
    while let Some(lt) = xml.get(at..).and_then(|rest| rest.iter().position(|b| *b == b'<')) {
        let name_start = at + lt + 1;
        let rest = xml.get(name_start..).unwrap_or_default();
        let name_len = rest.iter().position(is_name_end).unwrap_or(rest.len());
        let name = rest.get(..name_len).unwrap_or_default();
        let local = name.rsplit(|b| *b == b':').next().unwrap_or(name);
        if local == b"si" {
            strings += 1;
            if strings > limits.shared_strings {
                return Err(too_many());
            }
        } else if local == b"sst" {
            for (attr, value) in tag_attributes(rest.get(name_len..).unwrap_or_default()) {
                let attr_local = attr.rsplit(|b| *b == b':').next().unwrap_or(attr);
                if (attr_local == b"uniqueCount" || attr_local == b"count")
                    && declared_count(value).is_none_or(|n| n > limits.shared_strings as u64)
                {
                    return Err(too_many());
                }
            }
        }
        at = name_start + name_len;
    }
    Ok(())
}

/// The `name="value"` pairs at the start of `tag` (the bytes after a tag's name), up
/// to its end.
fn tag_attributes(tag: &[u8]) -> Vec<(&[u8], &[u8])> {
    let mut out = Vec::new();
    let mut rest = tag;
    loop {
        rest = rest.trim_ascii_start();
        let Some(eq) = rest.iter().position(|b| *b == b'=') else { break };
        let name = rest.get(..eq).unwrap_or_default().trim_ascii();
        if name.is_empty() || name.iter().any(|b| matches!(b, b'>' | b'/' | b'<' | b'"' | b'\'')) {
            break;
        }
        let after = rest.get(eq + 1..).unwrap_or_default().trim_ascii_start();
        let Some((&quote, value_and_rest)) = after.split_first() else { break };
        if quote != b'"' && quote != b'\'' {
            break;
        }
        let Some(close) = value_and_rest.iter().position(|b| *b == quote) else { break };
        out.push((name, value_and_rest.get(..close).unwrap_or_default()));
        rest = value_and_rest.get(close + 1..).unwrap_or_default();
    }
    out
}

/// A declared count as the XLSX reader would take it, erring high: its leading
/// digits (after a `+` and zeros), `None` when they do not fit in a u64.
fn declared_count(value: &[u8]) -> Option<u64> {
    let value = value.trim_ascii();
    let value = value.strip_prefix(b"+").unwrap_or(value);
    let start = value.iter().position(|b| *b != b'0').unwrap_or(value.len());
    let digits = value.get(start..).unwrap_or_default();
    let len = digits.iter().position(|b| !b.is_ascii_digit()).unwrap_or(digits.len());
    let digits = digits.get(..len).unwrap_or_default();
    if digits.is_empty() {
        return Some(0);
    }
    std::str::from_utf8(digits).ok()?.parse().ok()
}

/// An XLSX cell's value as a [`Cell`]; None for an empty cell (nothing to hold).
fn xlsx_cell(value: &calamine::DataRef<'_>) -> Option<Cell> {
    use calamine::DataRef;
    Some(match value {
        DataRef::Empty => return None,
        DataRef::Error(_) => Cell::Empty,
        DataRef::String(s) | DataRef::DurationIso(s) => Cell::Text(s.clone()),
        DataRef::SharedString(s) => Cell::Text((*s).to_string()),
        DataRef::Int(i) => Cell::Number(*i as f64),
        DataRef::Float(f) => Cell::Number(*f),
        DataRef::Bool(b) => Cell::Bool(*b),
        DataRef::DateTime(dt) => {
            let serial = dt.as_f64();
            excel_date(serial).map(Cell::Date).unwrap_or_else(|| {
                Cell::Unreadable(format!("the date (serial {serial}) is outside the years 1 to 9999"))
            })
        }
        DataRef::DateTimeIso(s) => Cell::Date(s.chars().take(10).collect()),
    })
}

/// The first sheet, read cell by cell (never as the dense range from its first to its
/// last cell, which a file with two far-apart cells makes enormous). Rows run from the
/// first used row to the last, columns from the first used column, as a spreadsheet
/// shows the sheet's used range.
fn read_xlsx(bytes: &[u8], limits: &ReadLimits) -> std::result::Result<Vec<Vec<Cell>>, ReadError> {
    use calamine::{Reader, XlsxError};
    check_archive(bytes, limits)?;
    let mut book =
        calamine::Xlsx::new(Cursor::new(bytes)).map_err(|e| unusable(format!("cannot read the XLSX file: {e}")))?;
    let first = book.sheet_names().into_iter().next().ok_or_else(|| unusable("the XLSX file has no sheet"))?;
    let mut reader = match book.worksheet_cells_reader(&first) {
        Ok(r) => r,
        Err(XlsxError::NotAWorksheet(_)) => return Ok(Vec::new()),
        Err(e) => return Err(unusable(format!("cannot read the first sheet: {e}"))),
    };
    let cannot = |e: XlsxError| unusable(format!("cannot read the first sheet: {e}"));
    // Rows from the first row seen; a cell above it (never in a real file, whose cells
    // come in row order) adds the rows between at the front. Columns are absolute until
    // the end, bounded by `limits.columns`.
    let mut rows: VecDeque<Vec<Cell>> = VecDeque::new();
    let mut first_row = 0u32;
    let mut first_col = u32::MAX;
    let (mut held, mut text) = (0usize, 0u64);
    while let Some(cell) = reader.next_cell().map_err(cannot)? {
        let (row, col) = cell.get_position();
        let Some(value) = xlsx_cell(cell.get_value()) else { continue };
        let at = col as usize;
        if at >= limits.columns {
            return Err(too_wide(at + 1, limits));
        }
        if rows.is_empty() {
            first_row = row;
        } else if row < first_row {
            let above = (first_row - row) as usize;
            if rows.len() + above > limits.rows + 1 {
                return Err(too_many_rows(limits));
            }
            for _ in 0..above {
                rows.push_front(Vec::new());
            }
            first_row = row;
        }
        let index = (row - first_row) as usize;
        if index > limits.rows {
            return Err(too_many_rows(limits));
        }
        if rows.len() <= index {
            rows.resize_with(index + 1, Vec::new);
        }
        let Some(out) = rows.get_mut(index) else { continue };
        if out.len() <= at {
            held += at + 1 - out.len();
            if held > limits.cells {
                return Err(too_many_cells(limits));
            }
            out.reserve_exact(at + 1 - out.len());
            out.resize(at + 1, Cell::Empty);
        }
        text += match &value {
            Cell::Text(s) | Cell::Date(s) => s.len() as u64,
            _ => 0,
        };
        if text > limits.text_bytes {
            return Err(ReadError::TooLarge(format!("the file has more than {} of text", mib(limits.text_bytes))));
        }
        first_col = first_col.min(col);
        // A later cell at the same position wins, as in a dense range.
        if let Some(slot) = out.get_mut(at) {
            *slot = value;
        }
    }
    let mut rows = Vec::from(rows);
    if first_col > 0 && first_col != u32::MAX {
        for row in &mut rows {
            row.drain(..row.len().min(first_col as usize));
        }
    }
    // The header spans the used range, as in a spreadsheet: a cell right of the last
    // header refuses the file ("column N has no header") instead of being dropped.
    let width = rows.iter().map(Vec::len).max().unwrap_or(0);
    if let Some(header) = rows.first_mut() {
        header.resize(width, Cell::Empty);
    }
    Ok(rows)
}

/// What each column holds.
#[derive(Clone, Debug)]
enum Column {
    Email,
    Firstname,
    Lastname,
    Property(PropertyDef),
}

impl Column {
    fn name(&self) -> &str {
        match self {
            Column::Email => "email",
            Column::Firstname => "firstname",
            Column::Lastname => "lastname",
            Column::Property(def) => &def.slug,
        }
    }
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
    values: Vec<(PropertyId, Vec<StoredValue>)>,
}

fn cell_value(def: &PropertyDef, cell: &Cell) -> std::result::Result<Value, String> {
    let text = cell.as_text().unwrap_or_default();
    Ok(match def.kind {
        PropertyType::Number => match cell {
            Cell::Number(n) if n.is_finite() => Value::from(*n),
            _ => Value::from(
                text.parse::<f64>()
                    .ok()
                    .filter(|n| n.is_finite())
                    .ok_or_else(|| format!("{}: '{text}' is not a number", def.slug))?,
            ),
        },
        PropertyType::Boolean => match cell {
            Cell::Bool(b) => Value::from(*b),
            _ => match text.to_lowercase().as_str() {
                "true" | "yes" | "1" => Value::from(true),
                "false" | "no" | "0" => Value::from(false),
                _ => return Err(format!("{}: '{text}' is not a boolean (true false yes no 1 0)", def.slug)),
            },
        },
        PropertyType::MultipleSelect => {
            Value::from(text.split(';').map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect::<Vec<_>>())
        }
        PropertyType::Text | PropertyType::Date | PropertyType::SingleSelect => Value::from(text),
    })
}

fn plan_row(cols: &[Column], row: &[Cell]) -> std::result::Result<RowPlan, (String, String)> {
    let email_raw = cols
        .iter()
        .position(|c| matches!(c, Column::Email))
        .and_then(|i| row.get(i))
        .and_then(Cell::as_text)
        .unwrap_or_default();
    for (col, cell) in cols.iter().zip(row) {
        if let Cell::Unreadable(why) = cell {
            return Err((email_raw, format!("{}: {why}", col.name())));
        }
    }
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
pub async fn prepare(db: &Db, spot_id: SpotId, rows: &[Vec<Cell>], group_ids: &[GroupId]) -> Result<()> {
    let defs = properties::list_properties(db, spot_id).await?;
    columns(rows.first().map(Vec::as_slice).unwrap_or(&[]), &defs)?;
    check_groups(db, spot_id, group_ids).await
}

async fn check_groups(db: &Db, spot_id: SpotId, group_ids: &[GroupId]) -> Result<()> {
    let mut c = db.conn().await?;
    let found = from_rows::<_, Group>(store::groups::get_many(c.ex(), spot_id, group_ids).await?);
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

/// Imports `rows` (header first) into the spot. With `notify` (and not `dry_run`), each
/// member created is sent an invitation email, queued in its batch's transaction.
/// `progress` is told how many data rows are done after each batch.
pub async fn import_rows(
    db: &Db,
    spot_id: SpotId,
    rows: &[Vec<Cell>],
    group_ids: &[GroupId],
    dry_run: bool,
    notify: bool,
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
        !store::smart_groups::list(c.ex(), spot_id).await?.is_empty()
    };
    let mut report = ImportReport::default();
    let mut seen_in_dry_run: HashSet<String> = HashSet::new();
    let data = rows.get(1..).unwrap_or(&[]);
    let mut done = 0u64;
    for (batch_index, batch) in data.chunks(BATCH_ROWS).enumerate() {
        let first_line = (batch_index * BATCH_ROWS) as u64 + 2;
        let mut plans = Vec::with_capacity(batch.len());
        for (i, row) in batch.iter().enumerate() {
            if row.iter().all(Cell::is_blank) {
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
            let in_spot: HashSet<String> =
                from_rows::<_, Member>(store::members::get_many_by_email(c.ex(), spot_id, &keys).await?)
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
            write_batch(db, spot_id, &defs, &plans, group_ids, has_smart, notify, &mut report).await?;
        }
        done += batch.len() as u64;
        progress(done);
    }
    if !dry_run && report.created + report.updated >= ANALYZE_AFTER_ROWS {
        db.analyze_after_bulk_write().await?;
    }
    if !dry_run {
        crate::metrics::global().count_import(report.created, report.updated, report.failed.len() as u64);
    }
    Ok(report)
}

/// Writes one batch of validated rows in one transaction, with multi-row statements
/// for what is new (members and their values) and per-row statements only for
/// members that already exist.
#[allow(clippy::too_many_arguments)]
async fn write_batch(
    db: &Db,
    spot_id: SpotId,
    defs: &[PropertyDef],
    plans: &[RowPlan],
    group_ids: &[GroupId],
    has_smart: bool,
    notify: bool,
    report: &mut ImportReport,
) -> Result<()> {
    let batch = MergedBatch::of(plans);
    let mut tx = db.begin().await?;
    check_properties_unchanged(defs, &super::properties::all_for_share(tx.ex(), spot_id).await?, plans)?;
    let now = now_ms();
    let mut members = insert_new_members(&mut tx, spot_id, &batch, now).await?;
    members.count_outcomes(&batch.occurrences, report);
    let new_values = values_of_created(&batch, &members);
    let unchanged = update_existing_members(&mut tx, spot_id, &batch, &mut members, now).await?;
    for chunk in new_values.chunks(VALUES_PER_STATEMENT) {
        store::property_values::insert_many(tx.ex(), spot_id, chunk).await?;
    }
    refresh_group_memberships(&mut tx, spot_id, &batch, &members, &unchanged, group_ids, has_smart).await?;
    store::spots::add_member_count(tx.ex(), spot_id, members.created.len() as i64).await?;
    if notify {
        let created: Vec<&Member> = batch
            .order
            .iter()
            .filter(|k| members.created.contains(*k))
            .filter_map(|k| members.by_email.get(k))
            .collect();
        super::email::queue_invitations(&mut tx, spot_id, super::email::Invitation::Spot, &created).await?;
    }
    tx.commit().await?;
    Ok(())
}

/// A batch's rows by lower-cased email: rows repeating an email merge into its first
/// row (later cells win).
struct MergedBatch {
    /// Each email once, in the order of its first row.
    order: Vec<String>,
    rows: HashMap<String, RowPlan>,
    /// The email of every row, repeats included (each row counts in the report).
    occurrences: Vec<String>,
}

impl MergedBatch {
    fn of(plans: &[RowPlan]) -> Self {
        let mut batch =
            MergedBatch { order: Vec::new(), rows: HashMap::new(), occurrences: Vec::with_capacity(plans.len()) };
        for p in plans {
            let key = p.email.to_lowercase();
            batch.occurrences.push(key.clone());
            match batch.rows.get_mut(&key) {
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
                    batch.order.push(key.clone());
                    batch.rows.insert(
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
        batch
    }

    /// Each distinct email's merged row with its key, in first-row order.
    fn rows(&self) -> impl Iterator<Item = (&String, &RowPlan)> {
        self.order.iter().filter_map(|k| self.rows.get(k).map(|p| (k, p)))
    }
}

/// The members of a batch by lower-cased email, and which of them the batch created.
struct BatchMembers {
    by_email: HashMap<String, Member>,
    created: HashSet<String>,
}

impl BatchMembers {
    /// Counts each row as created (the first row of an email the batch created) or updated.
    fn count_outcomes(&self, occurrences: &[String], report: &mut ImportReport) {
        let mut counted: HashSet<&str> = HashSet::new();
        for key in occurrences {
            if self.created.contains(key) && counted.insert(key.as_str()) {
                report.created += 1;
            } else {
                report.updated += 1;
            }
        }
    }
}

/// Offers every row as a new member; an email already in the spot (or created
/// meanwhile by another writer) makes its row a no-op, and only those rows are then
/// read back to be updated. A fresh import never looks an email up twice.
async fn insert_new_members(tx: &mut Tx, spot_id: SpotId, batch: &MergedBatch, now: i64) -> Result<BatchMembers> {
    let candidates: Vec<Member> = batch
        .rows()
        .map(|(_, p)| {
            let mut m = Member::new_invited(spot_id, Some(p.email.clone()), None);
            m.firstname = p.firstname.clone().unwrap_or_default();
            m.lastname = p.lastname.clone().unwrap_or_default();
            m.invited_at = now;
            m.updated_at = now;
            m
        })
        .collect();
    let candidates: Vec<MemberRow> = candidates.into_iter().map(MemberRow::from).collect();
    let mut inserted: HashSet<MemberId> = HashSet::new();
    for chunk in candidates.chunks(INSERT_ROWS_PER_STATEMENT) {
        inserted.extend(store::members::insert_many_if_absent(tx.ex(), chunk).await?);
    }
    let mut members = BatchMembers {
        by_email: HashMap::with_capacity(candidates.len()),
        created: HashSet::with_capacity(inserted.len()),
    };
    let mut existing_emails: Vec<String> = Vec::new();
    let mut created: Vec<Member> = Vec::with_capacity(inserted.len());
    for m in candidates.into_iter().map(Member::from) {
        if inserted.contains(&m.id) {
            created.push(m);
        } else {
            existing_emails.push(m.email.as_deref().unwrap_or_default().to_lowercase());
        }
    }
    super::events::emit(tx, spot_id, Event::MemberCreated(&created)).await?;
    for m in created {
        let key = m.email.as_deref().unwrap_or_default().to_lowercase();
        members.created.insert(key.clone());
        members.by_email.insert(key, m);
    }
    for m in from_rows::<_, Member>(store::members::get_many_by_email(tx.ex(), spot_id, &existing_emails).await?) {
        if let Some(e) = &m.email {
            members.by_email.insert(e.to_lowercase(), m);
        }
    }
    Ok(members)
}

/// The property values of the members the batch created, as rows to insert
/// (`property, member, position, value`).
fn values_of_created(batch: &MergedBatch, members: &BatchMembers) -> Vec<(PropertyId, MemberId, i64, StoredValue)> {
    let mut new_values = Vec::new();
    for (key, p) in batch.rows().filter(|(key, _)| members.created.contains(*key)) {
        let Some(m) = members.by_email.get(key) else { continue };
        for (pid, rows) in &p.values {
            for (i, v) in rows.iter().enumerate() {
                new_values.push((*pid, m.id, i as i64, v.clone()));
            }
        }
    }
    new_values
}

/// Applies the batch to the members that existed already: their values are read in
/// bulk and only what differs is written, so re-running a file writes (and
/// re-evaluates) nothing. Returns the members left unchanged.
async fn update_existing_members(
    tx: &mut Tx,
    spot_id: SpotId,
    batch: &MergedBatch,
    members: &mut BatchMembers,
    now: i64,
) -> Result<HashSet<MemberId>> {
    let existing_ids: Vec<MemberId> = batch
        .order
        .iter()
        .filter(|k| !members.created.contains(*k))
        .filter_map(|k| members.by_email.get(k))
        .map(|m| m.id)
        .collect();
    let current_values = store::property_values::list_of_members(tx.ex(), spot_id, &existing_ids).await?;
    let mut unchanged: HashSet<MemberId> = HashSet::new();
    let mut updated: Vec<Member> = Vec::new();
    for (key, p) in batch.rows() {
        if members.created.contains(key) {
            continue;
        }
        let Some(m) = members.by_email.get_mut(key) else { continue };
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
                store::property_values::replace(tx.ex(), spot_id, *pid, m.id, rows).await?;
                changed = true;
            }
        }
        if changed {
            m.updated_at = now;
            store::members::update(tx.ex(), &(&*m).into()).await?;
            updated.push(m.clone());
        } else {
            unchanged.insert(m.id);
        }
    }
    super::events::emit(tx, spot_id, Event::MemberUpdated(&updated)).await?;
    Ok(unchanged)
}

/// Re-evaluates the smart groups of every member the batch created or changed, and
/// adds every member of the batch to `group_ids`.
async fn refresh_group_memberships(
    tx: &mut Tx,
    spot_id: SpotId,
    batch: &MergedBatch,
    members: &BatchMembers,
    unchanged: &HashSet<MemberId>,
    group_ids: &[GroupId],
    has_smart: bool,
) -> Result<()> {
    for key in &batch.order {
        let Some(m) = members.by_email.get(key) else { continue };
        if has_smart && !unchanged.contains(&m.id) {
            super::groups::refresh_smart_memberships(tx, m).await?;
        }
        for g in group_ids {
            super::groups::join(tx, spot_id, *g, m.id, super::vocab::GroupRole::Member).await?;
        }
    }
    Ok(())
}

/// Rows were validated against `planned`; the batch writes only if every property it
/// writes still exists with the same type and options (`current` is share-locked, so
/// this holds until it commits). A property deleted or narrowed during a long import
/// stops it with 409 rather than leave values the property no longer allows.
fn check_properties_unchanged(planned: &[PropertyDef], current: &[PropertyDef], plans: &[RowPlan]) -> Result<()> {
    let used: HashSet<PropertyId> = plans.iter().flat_map(|p| p.values.iter().map(|(id, _)| *id)).collect();
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
    use uuid::Uuid;

    use std::io::Write;

    /// Small limits, so each is easy to cross.
    const SMALL: ReadLimits = ReadLimits {
        file_bytes: 1 << 20,
        rows: 3,
        columns: 4,
        cells: 12,
        text_bytes: 4096,
        unzipped_bytes: 64 << 10,
        shared_strings: 10,
    };

    /// Writes the content of one archive entry.
    type Content<'a> = &'a dyn Fn(&mut dyn Write);

    /// A real XLSX file (rust_xlsxwriter, `email` in A1 so it has a shared-string table)
    /// with the entries named in `replace` swapped for the given content.
    fn xlsx_with(replace: &[(&str, Content)]) -> Vec<u8> {
        let mut wb = rust_xlsxwriter::Workbook::new();
        wb.add_worksheet().write_string(0, 0, "email").unwrap();
        let original = wb.save_to_buffer().unwrap();
        let mut archive = zip::ZipArchive::new(Cursor::new(original)).unwrap();
        let mut out = zip::ZipWriter::new(Cursor::new(Vec::new()));
        for i in 0..archive.len() {
            let entry = archive.by_index(i).unwrap();
            let name = entry.name().unwrap().to_string();
            match replace.iter().find(|(n, _)| *n == name) {
                Some((_, write)) => {
                    out.start_file(name, zip::write::SimpleFileOptions::default().large_file(true)).unwrap();
                    write(&mut out);
                }
                None => out.raw_copy_file(entry).unwrap(),
            }
        }
        out.finish().unwrap().into_inner()
    }

    fn sheet(cells: &str) -> impl Fn(&mut dyn Write) + '_ {
        move |w: &mut dyn Write| {
            write!(
                w,
                r#"<?xml version="1.0" encoding="UTF-8"?><worksheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"><sheetData>{cells}</sheetData></worksheet>"#
            )
            .unwrap()
        }
    }

    fn too_large(r: std::result::Result<Vec<Vec<Cell>>, ReadError>) -> String {
        match r {
            Err(ReadError::TooLarge(why)) => why,
            other => panic!("expected TooLarge, got {other:?}"),
        }
    }

    fn refused(r: std::result::Result<Vec<Vec<Cell>>, ReadError>) -> String {
        match r {
            Err(ReadError::Unusable(e)) => e.to_string(),
            other => panic!("expected a refused file, got {other:?}"),
        }
    }

    #[test]
    fn csv_rows_columns_and_cells_are_capped_while_reading() {
        let rows = |n: usize| {
            let mut csv = String::from("email\n");
            (0..n).for_each(|i| csv.push_str(&format!("m{i}@x.io\n")));
            csv
        };
        assert_eq!(read_rows(rows(3).as_bytes(), &SMALL).expect("3 rows").len(), 4);
        assert!(too_large(read_rows(rows(4).as_bytes(), &SMALL)).contains("more than 3 member rows"));
        // Past the cap the rest is not parsed: a line too wide after it is never seen.
        let mut then_wide = rows(3).into_bytes();
        then_wide.extend_from_slice(b"a,b,c,d,e,f\n");
        assert!(too_large(read_rows(&then_wide, &SMALL)).contains("more than 3 member rows"));
        assert!(refused(read_rows(b"email,a,b,c,d\n", &SMALL)).contains("column 5, beyond the 4 columns"));
        let cells = "email,a,b,c\n1,2,3,4\n1,2,3,4\n1\n";
        assert!(too_large(read_rows(cells.as_bytes(), &SMALL)).contains("more than 12 cells"));
        let file = vec![b'a'; (1 << 20) + 1];
        assert!(too_large(read_rows(&file, &SMALL)).contains("larger than 1 MiB"));
    }

    #[test]
    fn xlsx_is_read_sparsely_and_capped() {
        let far = xlsx_with(&[(
            "xl/worksheets/sheet1.xml",
            &sheet(
                r#"<row r="1"><c r="A1" t="s"><v>0</v></c></row><row r="1048576"><c r="XFD1048576"><v>1</v></c></row>"#,
            ),
        )]);
        assert!(refused(read_rows(&far, &HTTP_LIMITS)).contains("column 16,384, beyond the 1,024 columns"));
        let deep = xlsx_with(&[(
            "xl/worksheets/sheet1.xml",
            &sheet(
                r#"<row r="1"><c r="A1" t="s"><v>0</v></c></row><row r="1048576"><c r="A1048576"><v>1</v></c></row>"#,
            ),
        )]);
        assert!(too_large(read_rows(&deep, &HTTP_LIMITS)).contains("more than 2,000 member rows"));
        // Rows are as a spreadsheet shows the used range: from the first used row and
        // column, a row above the first one seen included.
        let shifted = xlsx_with(&[(
            "xl/worksheets/sheet1.xml",
            &sheet(
                r#"<row r="3"><c r="C3" t="inlineStr"><is><t>a@x.io</t></is></c><c r="E3"><v>5</v></c></row><row r="2"><c r="C2" t="s"><v>0</v></c></row>"#,
            ),
        )]);
        let rows = read_rows(&shifted, &ReadLimits { columns: 8, ..SMALL }).expect("shifted sheet");
        assert_eq!(
            rows,
            vec![
                vec![Cell::Text("email".into()), Cell::Empty, Cell::Empty],
                vec![Cell::Text("a@x.io".into()), Cell::Empty, Cell::Number(5.0)]
            ]
        );
        let e = columns(&rows[0], &[]).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(e.contains("column 2 has no header"), "a cell right of the header is not dropped: {e}");
        let many: String = (1..=4).map(|r| format!(r#"<row r="{r}"><c r="D{r}"><v>1</v></c></row>"#)).collect();
        let wide = xlsx_with(&[("xl/worksheets/sheet1.xml", &sheet(&many))]);
        assert!(too_large(read_rows(&wide, &SMALL)).contains("more than 12 cells"), "padding counts");
        let long = format!(r#"<row r="1"><c r="A1" t="inlineStr"><is><t>{}</t></is></c></row>"#, "a".repeat(5000));
        let text = xlsx_with(&[("xl/worksheets/sheet1.xml", &sheet(&long))]);
        assert!(too_large(read_rows(&text, &SMALL)).contains("of text"));
        // A reference past u32 overflows the reader's arithmetic: refused, not a crash.
        let past = xlsx_with(&[("xl/worksheets/sheet1.xml", &sheet(r#"<row><c r="A99999999999"><v>1</v></c></row>"#))]);
        assert!(read_rows(&past, &SMALL).is_err());
    }

    #[test]
    fn xlsx_unpacked_bytes_are_capped_before_parsing() {
        let bomb = xlsx_with(&[("xl/worksheets/sheet1.xml", &|w: &mut dyn Write| {
            w.write_all(br#"<worksheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"><sheetData>"#)
                .unwrap();
            let blanks = vec![b' '; 1 << 20];
            for _ in 0..70 {
                w.write_all(&blanks).unwrap();
            }
            w.write_all(b"</sheetData></worksheet>").unwrap();
        })]);
        assert!(bomb.len() < 200 << 10, "{} bytes", bomb.len());
        assert!(too_large(read_rows(&bomb, &HTTP_LIMITS)).contains("unpacks to more than 64 MiB"));
        assert!(read_rows(&bomb, &ReadLimits { unzipped_bytes: 80 << 20, ..HTTP_LIMITS }).is_ok());
    }

    #[test]
    fn xlsx_shared_strings_are_capped_before_the_reader_sizes_its_table() {
        let sst = |attrs: &'static str, strings: usize| {
            move |w: &mut dyn Write| {
                write!(w, r#"<?xml version="1.0"?><sst xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main" {attrs}>"#).unwrap();
                w.write_all(b"<si><t>email</t></si>").unwrap();
                for _ in 1..strings {
                    w.write_all(b"<x:si/>").unwrap();
                }
                w.write_all(b"</sst>").unwrap();
            }
        };
        let declared = xlsx_with(&[("xl/sharedStrings.xml", &sst(r#"count="1" uniqueCount="99999999999""#, 1))]);
        assert!(too_large(read_rows(&declared, &HTTP_LIMITS)).contains("more than 500,000 shared strings"));
        let overflowing =
            xlsx_with(&[("xl/sharedStrings.xml", &sst(r#"uniqueCount = '+0099999999999999999999999'"#, 1))]);
        assert!(too_large(read_rows(&overflowing, &HTTP_LIMITS)).contains("shared strings"));
        let present = xlsx_with(&[("xl/sharedStrings.xml", &sst(r#"count="1" uniqueCount="1""#, 11))]);
        assert!(too_large(read_rows(&present, &SMALL)).contains("more than 10 shared strings"));
        let fine = xlsx_with(&[("xl/sharedStrings.xml", &sst(r#"count="10" uniqueCount="10""#, 10))]);
        assert_eq!(read_rows(&fine, &SMALL).expect("10 strings"), vec![vec![Cell::Text("email".into())]]);
        let big = xlsx_with(&[("xl/sharedStrings.xml", &|w: &mut dyn Write| {
            w.write_all(br#"<sst uniqueCount="1"><si><t>"#).unwrap();
            w.write_all(&vec![b'a'; 8192]).unwrap();
            w.write_all(b"</t></si></sst>").unwrap();
        })]);
        assert!(too_large(read_rows(&big, &SMALL)).contains("shared strings are larger than"));
    }

    #[test]
    fn dates_out_of_range_fail_their_row_without_panicking() {
        for serial in [1e300, -1e300, f64::INFINITY, f64::NAN, 2_958_466.0, -693_594.0] {
            assert_eq!(excel_date(serial), None, "{serial}");
        }
        assert_eq!(excel_date(2_958_465.0).as_deref(), Some("9999-12-31"));
        assert_eq!(excel_date(-693_593.0).as_deref(), Some("0001-01-01"));
        let mut wb = rust_xlsxwriter::Workbook::new();
        let ws = wb.add_worksheet();
        let date = rust_xlsxwriter::Format::new().set_num_format("yyyy-mm-dd");
        ws.write_string(0, 0, "email").unwrap();
        ws.write_string(0, 1, "firstname").unwrap();
        ws.write_string(1, 0, "a@x.io").unwrap();
        ws.write_number_with_format(1, 1, 1e300, &date).unwrap();
        let rows = read_rows(&wb.save_to_buffer().unwrap(), &HTTP_LIMITS).expect("read");
        assert!(matches!(&rows[1][1], Cell::Unreadable(r) if r.contains("outside the years 1 to 9999")), "{rows:?}");
        let cols = columns(&rows[0], &[]).expect("header");
        let failed = plan_row(&cols, &rows[1]).err().expect("the row fails");
        assert_eq!(failed.0, "a@x.io");
        assert!(failed.1.starts_with("firstname: the date"), "{}", failed.1);
        assert!(!rows[1].iter().all(Cell::is_blank), "an unreadable cell is not a blank row");
    }

    #[test]
    fn non_finite_numbers_are_not_numbers() {
        let def = PropertyDef {
            spot_id: SpotId(Uuid::nil()),
            id: PropertyId(Uuid::from_u128(1)),
            slug: "seats".into(),
            label: "Seats".into(),
            description: None,
            kind: PropertyType::Number,
            possible_values: properties::Options(vec![]),
        };
        for text in ["inf", "NaN", "-infinity"] {
            assert!(cell_value(&def, &Cell::Text(text.into())).is_err(), "{text}");
        }
        assert!(cell_value(&def, &Cell::Number(f64::INFINITY)).is_err());
        assert_eq!(cell_value(&def, &Cell::Text("2.5".into())), Ok(Value::from(2.5)));
    }

    #[test]
    fn limits_read_in_messages() {
        assert_eq!(grouped(0), "0");
        assert_eq!(grouped(999), "999");
        assert_eq!(grouped(1000), "1,000");
        assert_eq!(grouped(10_000_000), "10,000,000");
        assert_eq!(mib(64 << 20), "64 MiB");
    }

    #[test]
    fn csv_with_bom_and_quotes() {
        let rows =
            read_rows(b"\xef\xbb\xbfEmail,firstname\r\n\"a@x.io\",\"Smith, Jr\"\r\n", &HTTP_LIMITS).expect("csv");
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
            spot_id: SpotId(Uuid::nil()),
            id: PropertyId(Uuid::from_u128(7)),
            slug: "plan".into(),
            label: "Plan".into(),
            description: None,
            kind: PropertyType::SingleSelect,
            possible_values: properties::Options(options.iter().map(|o| o.to_string()).collect()),
        };
        let planned = vec![def(&["Free", "Pro"])];
        let value = StoredValue { text: Some("Pro".into()), num: None };
        let writes_plan = vec![RowPlan {
            email: "a@x.io".into(),
            firstname: None,
            lastname: None,
            values: vec![(PropertyId(Uuid::from_u128(7)), vec![value])],
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

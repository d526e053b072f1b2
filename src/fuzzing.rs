//! Entry points shared by the fuzz targets (`fuzz/`, nightly `cargo fuzz`) and the
//! stable replay of their committed corpus (`tests/fuzz_corpus.rs`), so that CI runs
//! every input the fuzzer kept through exactly the code it fuzzed. Each takes raw bytes,
//! feeds one parser that reads untrusted input, and checks the parser's own promises
//! (bounds, round trips); a broken promise panics, which the fuzzer reports as a crash.
//! Not an API: hidden from the docs, and nothing else calls it.

use serde_json::Value;

use crate::domain::filter;
use crate::domain::import::{read_rows, Cell, HTTP_LIMITS};
use crate::domain::members::MEMBER_FILTERS;
use crate::domain::phone::normalize_mobile_number;
use crate::domain::smart_rules::Rules;
use crate::http::kaizala::lenient::parse_lenient_body;

/// One fuzz target: raw input in, a panic when a promise is broken.
pub type Target = fn(&[u8]);

/// The fuzz targets, by name (the directory names under `fuzz/corpus/`).
pub const TARGETS: &[(&str, Target)] = &[
    ("lhs_filters", lhs_filters),
    ("kaizala_body", kaizala_body),
    ("smart_rules", smart_rules),
    ("import_csv", import_csv),
    ("import_xlsx", import_xlsx),
    ("phone", phone),
];

/// A list query string (`page`, `limit`, `field[op]=value`), then the members' allow-list.
pub fn lhs_filters(data: &[u8]) {
    let Ok(query) = std::str::from_utf8(data) else { return };
    if let Ok(parsed) = filter::parse_list_query(Some(query), &[]) {
        assert!((1..=filter::MAX_LIMIT).contains(&parsed.limit), "{parsed:?}");
        assert!(parsed.offset() <= filter::MAX_OFFSET, "{parsed:?}");
        for f in &parsed.filters {
            assert!(f.values.len() <= filter::MAX_LIST_VALUES, "{f:?}");
            assert!(f.op.is_list() || f.values.len() == 1, "{f:?}");
        }
        if filter::validate(&parsed.filters, MEMBER_FILTERS).is_ok() {
            for f in &parsed.filters {
                let spec = MEMBER_FILTERS.iter().find(|s| s.field == f.field);
                assert!(spec.is_some_and(|s| s.ops.contains(&f.op)), "accepted {f:?}");
            }
        }
    }
}

/// A Kaizala request body (JSON5, keys lower-cased); what it accepts reads back the same.
pub fn kaizala_body(data: &[u8]) {
    if let Ok(v) = parse_lenient_body(data) {
        let again = parse_lenient_body(v.to_string().as_bytes());
        assert_eq!(again.ok().as_ref(), Some(&v), "strict JSON of an accepted body reads back");
    }
}

/// A smart-group rules document: as a whole, and as one trigger of a valid document.
/// Accepted rules render to a document that parses to the same rules.
pub fn smart_rules(data: &[u8]) {
    let Ok(v) = serde_json::from_slice::<Value>(data) else { return };
    let wrapped = serde_json::json!({"operator": "AND", "conditions": [{"operator": "OR", "triggers": [v.clone()]}]});
    for doc in [v, wrapped] {
        if let Ok(rules) = Rules::parse(&doc) {
            let again = Rules::parse(&rules.to_json());
            assert_eq!(again.ok().as_ref(), Some(&rules), "rendered rules parse back");
        }
    }
}

/// An import file read as CSV (never starts like a ZIP archive): within the limits,
/// every cell is a non-blank text or empty.
pub fn import_csv(data: &[u8]) {
    if data.starts_with(b"PK") {
        return;
    }
    if let Ok(rows) = read_rows(data, &HTTP_LIMITS) {
        assert!(rows.len() <= HTTP_LIMITS.rows + 1);
        for row in &rows {
            assert!(row.len() <= HTTP_LIMITS.columns);
            for cell in row {
                assert!(
                    matches!(cell, Cell::Empty) || matches!(cell, Cell::Text(t) if !t.trim().is_empty()),
                    "{cell:?}"
                );
            }
        }
    }
}

/// An XLSX file whose first sheet's `<sheetData>` and shared-string table come from the
/// input (split at the first NUL byte), packed into a well-formed archive, so the
/// fuzzer spends its time in the cell path (references, types, shared strings, dates)
/// rather than in the ZIP reader.
pub fn import_xlsx(data: &[u8]) {
    let (sheet, strings) = match data.iter().position(|b| *b == 0) {
        Some(at) => (&data[..at], &data[at + 1..]),
        None => (data, &b""[..]),
    };
    let Ok(file) = xlsx_package(sheet, strings) else { return };
    if let Ok(rows) = read_rows(&file, &HTTP_LIMITS) {
        assert!(rows.len() <= HTTP_LIMITS.rows + 1);
        for row in &rows {
            assert!(row.len() <= HTTP_LIMITS.columns);
        }
    }
}

/// A minimal XLSX archive with `sheet_data` inside the first sheet's `<sheetData>` and
/// `shared_strings` inside `<sst>`.
pub fn xlsx_package(sheet_data: &[u8], shared_strings: &[u8]) -> zip::result::ZipResult<Vec<u8>> {
    use std::io::Write;
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let options = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    let mut sheet = b"<?xml version=\"1.0\" encoding=\"UTF-8\"?><worksheet xmlns=\"http://schemas.openxmlformats.org/spreadsheetml/2006/main\"><sheetData>".to_vec();
    sheet.extend_from_slice(sheet_data);
    sheet.extend_from_slice(b"</sheetData></worksheet>");
    let mut sst = b"<?xml version=\"1.0\" encoding=\"UTF-8\"?><sst xmlns=\"http://schemas.openxmlformats.org/spreadsheetml/2006/main\">".to_vec();
    sst.extend_from_slice(shared_strings);
    sst.extend_from_slice(b"</sst>");
    let parts: [(&str, &[u8]); 6] = [
        ("[Content_Types].xml", br#"<?xml version="1.0" encoding="UTF-8"?><Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types"><Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/><Default Extension="xml" ContentType="application/xml"/><Override PartName="/xl/workbook.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml"/><Override PartName="/xl/worksheets/sheet1.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.worksheet+xml"/><Override PartName="/xl/sharedStrings.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.sharedStrings+xml"/></Types>"#),
        ("_rels/.rels", br#"<?xml version="1.0" encoding="UTF-8"?><Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships"><Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/officeDocument" Target="xl/workbook.xml"/></Relationships>"#),
        ("xl/workbook.xml", br#"<?xml version="1.0" encoding="UTF-8"?><workbook xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main" xmlns:r="http://schemas.openxmlformats.org/officeDocument/2006/relationships"><sheets><sheet name="Members" sheetId="1" r:id="rId1"/></sheets></workbook>"#),
        ("xl/_rels/workbook.xml.rels", br#"<?xml version="1.0" encoding="UTF-8"?><Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships"><Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/worksheet" Target="worksheets/sheet1.xml"/><Relationship Id="rId2" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/sharedStrings" Target="sharedStrings.xml"/></Relationships>"#),
        ("xl/worksheets/sheet1.xml", &sheet),
        ("xl/sharedStrings.xml", &sst),
    ];
    for (name, body) in parts {
        zip.start_file(name, options)?;
        zip.write_all(body)?;
    }
    Ok(zip.finish()?.into_inner())
}

/// A mobile number: what is accepted is E.164 and normalises to itself.
pub fn phone(data: &[u8]) {
    let Ok(input) = std::str::from_utf8(data) else { return };
    if let Ok(e164) = normalize_mobile_number(input) {
        assert!(e164.starts_with('+') && e164[1..].bytes().all(|b| b.is_ascii_digit()), "{e164}");
        assert_eq!(normalize_mobile_number(&e164).ok().as_deref(), Some(e164.as_str()), "{input:?}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_xlsx_harness_reaches_the_cells() {
        let sheet = br#"<row r="1"><c r="A1" t="s"><v>0</v></c><c r="B1" t="inlineStr"><is><t>firstname</t></is></c></row><row r="2"><c r="A2" t="s"><v>1</v></c><c r="B2"><v>2.5</v></c></row>"#;
        let strings = b"<si><t>email</t></si><si><t>a@x.io</t></si>";
        let file = xlsx_package(sheet, strings).unwrap();
        let rows = read_rows(&file, &HTTP_LIMITS).unwrap();
        assert_eq!(rows[0], vec![Cell::Text("email".into()), Cell::Text("firstname".into())]);
        assert_eq!(rows[1], vec![Cell::Text("a@x.io".into()), Cell::Number(2.5)]);
    }
}

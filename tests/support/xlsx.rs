//! Hostile XLSX files for the import tests of both test binaries (`tests/api` and
//! `tests/cli.rs` include this file with `#[path]`): a real workbook whose archive
//! entries can be swapped for any content.

use std::io::Write;

/// Writes the content of one archive entry.
pub type Content<'a> = &'a dyn Fn(&mut dyn Write);

/// A real XLSX file (rust_xlsxwriter: `email` in A1, so it has a shared-string table)
/// with the entries named in `replace` swapped for what their writer writes.
pub fn xlsx_with(replace: &[(&str, Content)]) -> Vec<u8> {
    let mut wb = rust_xlsxwriter::Workbook::new();
    wb.add_worksheet().write_string(0, 0, "email").unwrap();
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(wb.save_to_buffer().unwrap())).unwrap();
    let mut out = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
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

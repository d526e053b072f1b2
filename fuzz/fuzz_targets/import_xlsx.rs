//! Fuzzes `openspot::fuzzing::import_xlsx` (see src/fuzzing.rs for what it checks).
#![no_main]

// The import reader catches a panic of the XLSX library (cell-reference arithmetic past
// u32, checked in this debug-assertions build) and refuses the file: that is handled, so
// the panic hook goes back to the default one, which does not abort. A panic that
// escapes the target still aborts (libfuzzer-sys aborts on an unwound target).
libfuzzer_sys::fuzz_target!(init: drop(std::panic::take_hook()), |data: &[u8]| openspot::fuzzing::import_xlsx(data));

//! Fuzzes `openspot::fuzzing::lhs_filters` (see src/fuzzing.rs for what it checks).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| openspot::fuzzing::lhs_filters(data));

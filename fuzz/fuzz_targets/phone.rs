//! Fuzzes `openspot::fuzzing::phone` (see src/fuzzing.rs for what it checks).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| openspot::fuzzing::phone(data));

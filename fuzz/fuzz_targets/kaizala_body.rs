//! Fuzzes `openspot::fuzzing::kaizala_body` (see src/fuzzing.rs for what it checks).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| openspot::fuzzing::kaizala_body(data));

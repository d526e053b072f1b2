//! Replays the committed fuzz corpus (`fuzz/corpus/<target>/`, minimised with
//! `cargo fuzz cmin`) through the fuzz targets' own entry points
//! (`openspot::fuzzing`), on stable Rust: every input the fuzzer found interesting,
//! crashes it found included, stays a regression test without nightly.

#![allow(clippy::expect_used)]

use std::path::Path;

#[test]
fn every_committed_fuzz_input_passes_its_target() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus");
    let mut replayed = 0;
    for (target, run) in openspot::fuzzing::TARGETS {
        let dir = root.join(target);
        let mut files: Vec<_> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|e| e.expect("corpus entry").path())
            .collect();
        files.sort();
        assert!(!files.is_empty(), "{target}: no corpus committed");
        for file in files {
            let data = std::fs::read(&file).expect("corpus file");
            // A panic names the file: `cargo fuzz run <target> <file>` reproduces it.
            eprintln!("{target}: {}", file.display());
            run(&data);
            replayed += 1;
        }
    }
    assert!(replayed > 0);
}

//! The layering rules of `docs/architecture.md`, checked on the source text so that a
//! shortcut across a seam fails the build's tests instead of waiting for a review:
//!
//! * the store (`src/store`) knows no domain type except the leaf value types
//!   `domain::ids` and `domain::vocab`; it returns its own row types;
//! * those leaf modules import nothing from the store or the HTTP layer;
//! * the HTTP dialects reach the store only for the `Db` handle they hand to the domain;
//! * the two dialects and the operator console (a third adapter) never call each
//!   other, and neither the domain nor the store knows HTTP.

#![allow(clippy::expect_used)]

use std::fs;
use std::path::{Path, PathBuf};

fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).expect("source directory") {
        let path = entry.expect("directory entry").path();
        if path.is_dir() {
            out.extend(rust_files(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
    out
}

/// Every `crate::<layer>::…` path written in `dir` (comments skipped), as
/// (file, line, path).
fn references(dir: &str, layer: &str) -> Vec<(String, usize, String)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src").join(dir);
    let needle = format!("crate::{layer}::");
    let mut out = Vec::new();
    for file in rust_files(&root) {
        let text = fs::read_to_string(&file).expect("source file");
        for (n, line) in text.lines().enumerate() {
            let code = line.split("//").next().unwrap_or_default();
            let mut rest = code;
            while let Some(at) = rest.find(&needle) {
                let tail = &rest[at + needle.len()..];
                let end = tail.find(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':')).unwrap_or(tail.len());
                out.push((file.display().to_string(), n + 1, tail[..end].trim_end_matches(':').to_string()));
                rest = &tail[end..];
            }
        }
    }
    out
}

fn assert_none(found: Vec<(String, usize, String)>, rule: &str) {
    let lines: Vec<String> = found.iter().map(|(f, n, p)| format!("  {f}:{n}: {p}")).collect();
    assert!(lines.is_empty(), "{rule}:\n{}", lines.join("\n"));
}

#[test]
fn the_store_knows_only_the_domains_leaf_value_types() {
    let found = references("store", "domain")
        .into_iter()
        .filter(|(_, _, p)| !(p.starts_with("ids") || p.starts_with("vocab")))
        .collect();
    assert_none(found, "the store may use only domain::ids and domain::vocab (return row types instead)");
}

#[test]
fn the_leaf_value_types_import_no_layer() {
    for file in ["ids.rs", "vocab.rs"] {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/domain").join(file);
        let text = fs::read_to_string(&path).expect("source file");
        for layer in ["crate::store", "crate::http"] {
            assert!(!text.contains(layer), "{file} must not use {layer}: the store depends on it");
        }
    }
}

#[test]
fn http_reaches_the_store_only_for_the_db_handle() {
    let found = references("http", "store").into_iter().filter(|(_, _, p)| p != "Db").collect();
    assert_none(found, "HTTP handlers call the domain, never the store");
}

#[test]
fn neither_the_domain_nor_the_store_knows_http() {
    let mut found = references("domain", "http");
    found.extend(references("store", "http"));
    assert_none(found, "the domain and the store must not depend on the HTTP layer");
}

/// The adapters over the domain: each may use the shared HTTP modules, not another adapter.
const ADAPTERS: &[&str] = &["kaizala", "meltingspot", "console"];

#[test]
fn the_dialects_never_call_each_other() {
    let mut found = Vec::new();
    for adapter in ADAPTERS {
        let others: Vec<&str> = ADAPTERS.iter().copied().filter(|a| a != adapter).collect();
        found.extend(
            references(&format!("http/{adapter}"), "http")
                .into_iter()
                .filter(|(_, _, p)| others.iter().any(|o| p.starts_with(o))),
        );
    }
    assert_none(found, "one adapter (dialect or console) must not call another");
}

#[test]
fn the_scanner_sees_references() {
    // Guards the checks above against passing vacuously (a scanner that finds nothing).
    assert!(references("store", "domain").iter().any(|(_, _, p)| p.starts_with("ids")));
    assert!(references("http", "store").iter().any(|(_, _, p)| p == "Db"));
}

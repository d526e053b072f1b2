//! Property tests of the parsers that read client input: the LHS list filters, the
//! nesting scan, the lenient Kaizala body parser, smart-group rules, phone numbers and
//! import files. Each property holds for every input proptest generates (a bounded
//! number of cases, so `cargo test` stays quick); the first is always "never panics".
//! A failing case is written to `tests/properties.proptest-regressions` and replayed
//! first from then on.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use openspot::domain::filter::{self, Op, MAX_LIST_VALUES, MAX_OFFSET};
use openspot::domain::import::{read_rows, Cell, HTTP_LIMITS};
use openspot::domain::members::MEMBER_FILTERS;
use openspot::domain::phone::normalize_mobile_number;
use openspot::domain::smart_rules::Rules;
use openspot::http::kaizala::lenient::parse_lenient_body;
use openspot::http::nesting::{check_nesting, MAX_DEPTH};
use proptest::prelude::*;
use serde_json::{json, Value};

fn config() -> ProptestConfig {
    ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() }
}

/// JSON values of bounded depth and size, with keys of any case.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        "[ -~]{0,12}".prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map("[A-Za-z_][A-Za-z0-9_]{0,8}", inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn lower_keys(v: &Value) -> Value {
    match v {
        Value::Object(m) => {
            let mut out = serde_json::Map::new();
            for (k, v) in m {
                out.insert(k.to_lowercase(), lower_keys(v));
            }
            Value::Object(out)
        }
        Value::Array(a) => Value::Array(a.iter().map(lower_keys).collect()),
        other => other.clone(),
    }
}

/// A filter parameter of the members' allow-list, or a near miss of one.
fn member_filter_param() -> impl Strategy<Value = String> {
    let fields: Vec<&'static str> = MEMBER_FILTERS.iter().map(|s| s.field).chain(["nickname", ""]).collect();
    let ops = ["eq", "neq", "gt", "gte", "lt", "lte", "in", "notin", "contains", "before", "after", "like", ""];
    (prop::sample::select(fields), prop::sample::select(ops.to_vec()), "[ -~]{0,20}")
        .prop_map(|(f, o, v)| format!("{f}%5B{o}%5D={}", urlencode(&v)))
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b == b'-' || b == b'.' {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn list_queries_never_panic_and_stay_bounded(q in "[ -~]{0,200}") {
        if let Ok(parsed) = filter::parse_list_query(Some(&q), &[]) {
            prop_assert!((1..=filter::MAX_LIMIT).contains(&parsed.limit));
            prop_assert!(parsed.offset() <= MAX_OFFSET);
            for f in &parsed.filters {
                prop_assert!(f.values.len() <= MAX_LIST_VALUES);
                prop_assert!(f.op.is_list() || f.values.len() == 1, "{f:?}");
            }
        }
    }

    #[test]
    fn member_filters_are_accepted_only_as_the_allow_list_says(params in prop::collection::vec(member_filter_param(), 1..4)) {
        let q = params.join("&");
        if let Ok(parsed) = filter::parse_list_query(Some(&q), &[]) {
            let checked = filter::validate(&parsed.filters, MEMBER_FILTERS);
            if checked.is_ok() {
                for f in &parsed.filters {
                    let spec = MEMBER_FILTERS.iter().find(|s| s.field == f.field);
                    prop_assert!(spec.is_some_and(|s| s.ops.contains(&f.op)), "{q} accepted {f:?}");
                }
            }
        }
    }

    #[test]
    fn the_nesting_scan_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = check_nesting(&bytes, MAX_DEPTH);
    }

    #[test]
    fn the_nesting_scan_counts_depth_exactly(depth in 0usize..130, object in any::<bool>()) {
        let (open, close) = if object { ("{\"a\":", "}") } else { ("[", "]") };
        let body = format!("{}1{}", open.repeat(depth), close.repeat(depth));
        prop_assert_eq!(check_nesting(body.as_bytes(), MAX_DEPTH).is_ok(), depth <= MAX_DEPTH, "depth {}", depth);
    }

    #[test]
    fn the_lenient_parser_never_panics(text in "\\PC{0,200}") {
        let _ = parse_lenient_body(text.as_bytes());
    }

    #[test]
    fn the_lenient_parser_reads_strict_json_with_lower_cased_keys(v in json_value()) {
        let parsed = parse_lenient_body(v.to_string().as_bytes()).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(parsed, lower_keys(&v));
    }

    #[test]
    fn the_lenient_parser_reads_unquoted_keys(keys in prop::collection::btree_set("[A-Za-z_][A-Za-z0-9_]{0,8}", 1..6), n in any::<i32>()) {
        let body = format!("{{{}}}", keys.iter().map(|k| format!("{k}: {n}")).collect::<Vec<_>>().join(", "));
        let parsed = parse_lenient_body(body.as_bytes()).map_err(|e| TestCaseError::fail(e.to_string()))?;
        for k in &keys {
            prop_assert_eq!(&parsed[k.to_lowercase()], &json!(n));
        }
    }

    #[test]
    fn smart_rules_never_panic_on_any_document(v in json_value()) {
        let _ = Rules::parse(&v);
        let _ = Rules::parse(&json!({"operator": "AND", "conditions": [{"operator": "OR", "triggers": [v]}]}));
    }

    #[test]
    fn smart_rules_survive_their_own_rendering(
        field in prop::sample::select(vec!["status", "role", "email", "firstname", "lastname"]),
        text in "[a-zA-Z@.]{1,12}",
        registered in -62_000_000_000i64..253_000_000_000,
        top_and in any::<bool>(),
    ) {
        let value = match field {
            "status" => json!("Accepted"),
            "role" => json!("Admin"),
            _ => json!(text),
        };
        let doc = json!({"operator": if top_and { "AND" } else { "OR" }, "conditions": [
            {"operator": "AND", "triggers": [{"field": field, "op": "eq", "value": value}]},
            {"operator": "OR", "triggers": [{"field": "registrationDate", "op": "after", "value": registered}]},
        ]});
        let rules = Rules::parse(&doc).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let again = Rules::parse(&rules.to_json()).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(again, rules);
    }

    #[test]
    fn phone_numbers_never_panic_and_normalise_once(input in "[+0-9 ()\\-.a-z]{0,24}") {
        if let Ok(e164) = normalize_mobile_number(&input) {
            prop_assert!(e164.starts_with('+') && e164[1..].bytes().all(|b| b.is_ascii_digit()), "{e164}");
            prop_assert_eq!(normalize_mobile_number(&e164).ok(), Some(e164.clone()));
        }
    }

    #[test]
    fn import_files_never_panic_and_stay_within_their_limits(bytes in prop::collection::vec(any::<u8>(), 0..2048)) {
        if let Ok(rows) = read_rows(&bytes, &HTTP_LIMITS) {
            prop_assert!(rows.len() <= HTTP_LIMITS.rows + 1);
            prop_assert!(rows.iter().all(|r| r.len() <= HTTP_LIMITS.columns));
        }
    }

    #[test]
    fn csv_cells_read_back_as_written(cells in prop::collection::vec(prop::collection::vec("[a-zA-Z0-9 @.,\"]{0,10}", 3), 1..20)) {
        let mut csv = String::from("email,firstname,lastname\n");
        for row in &cells {
            let quoted: Vec<String> = row.iter().map(|c| format!("\"{}\"", c.replace('"', "\"\""))).collect();
            csv.push_str(&quoted.join(","));
            csv.push('\n');
        }
        let rows = read_rows(csv.as_bytes(), &HTTP_LIMITS).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(rows.len(), cells.len() + 1);
        for (row, expected) in rows[1..].iter().zip(&cells) {
            for (cell, text) in row.iter().zip(expected) {
                let read = match cell {
                    Cell::Text(s) => s.trim().to_string(),
                    Cell::Empty => String::new(),
                    other => format!("{other:?}"),
                };
                prop_assert_eq!(read.as_str(), text.trim());
            }
        }
    }
}

#[test]
fn the_op_words_round_trip() {
    for word in ["eq", "neq", "gt", "gte", "lt", "lte", "in", "notin", "contains", "before", "after"] {
        assert_eq!(Op::parse(word).map(Op::as_str), Some(word));
    }
    assert!(Op::parse("like").is_none());
}

//! Lenient request bodies for the Kaizala dialect (`kaizala-api.md` §1.3, contract §6).
//!
//! The original service (ASP.NET + Json.NET) accepted JSON that strict parsers refuse,
//! and the official samples and real clients depend on it: unquoted keys, single
//! quotes, any key case, trailing CR/LF, empty bodies on GET/DELETE, booleans as
//! strings and PINs as numbers. Bodies are parsed as JSON5 (a superset of JSON with
//! exactly those syntax freedoms), then every object key is lower-cased so DTOs bind
//! case-insensitively; the serde helpers below accept the loose scalar forms.

use std::fmt;

use serde::{Deserialize, Deserializer};
use serde_json::{Map, Value};

#[derive(Debug)]
pub struct LenientError(String);

impl fmt::Display for LenientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "request body is not valid JSON: {}", self.0)
    }
}

impl std::error::Error for LenientError {}

/// Parses a body as JSON5 (empty → `{}`) and lower-cases every object key.
pub fn parse_lenient_body(bytes: &[u8]) -> Result<Value, LenientError> {
    let text = std::str::from_utf8(bytes).map_err(|_| LenientError("it is not UTF-8".into()))?;
    let text = text.trim_start_matches('\u{feff}').trim_matches(|c: char| c.is_whitespace() || c == '\0');
    if text.is_empty() {
        return Ok(Value::Object(Map::new()));
    }
    // Bounded before the JSON5 parser (which has no depth limit) and `lower_keys` recurse.
    crate::http::nesting::check_nesting(text.as_bytes(), crate::http::nesting::MAX_DEPTH).map_err(LenientError)?;
    let value: Value = json5::from_str(text).map_err(|e| LenientError(e.to_string()))?;
    Ok(lower_keys(value))
}

fn lower_keys(v: Value) -> Value {
    match v {
        Value::Object(map) => Value::Object(map.into_iter().map(|(k, v)| (k.to_lowercase(), lower_keys(v))).collect()),
        Value::Array(items) => Value::Array(items.into_iter().map(lower_keys).collect()),
        other => other,
    }
}

/// A boolean, or `"true"`/`"false"` in any case; null or absent → None.
pub fn opt_bool<'de, D: Deserializer<'de>>(d: D) -> Result<Option<bool>, D::Error> {
    match Option::<Value>::deserialize(d)? {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(b)),
        Some(Value::String(s)) => match s.trim().to_ascii_lowercase().as_str() {
            "true" => Ok(Some(true)),
            "false" => Ok(Some(false)),
            _ => Err(serde::de::Error::custom(format!("expected a boolean, got \"{s}\""))),
        },
        Some(other) => Err(serde::de::Error::custom(format!("expected a boolean, got {other}"))),
    }
}

/// A string, or an integer given as a JSON number (its decimal text); null → None.
pub fn opt_string_or_number<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    match Option::<Value>::deserialize(d)? {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(Value::Number(n)) if n.is_i64() || n.is_u64() => Ok(Some(n.to_string())),
        Some(other) => Err(serde::de::Error::custom(format!("expected a string or an integer, got {other}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(s: &str) -> Value {
        parse_lenient_body(s.as_bytes()).expect("parses")
    }

    #[test]
    fn official_and_client_samples_parse() {
        assert_eq!(
            parse(
                r#"{name:"Kaizala Test group", welcomeMessage:"Welcome", members:["+911199999999"], groupType:"Group"}"#
            ),
            json!({"name": "Kaizala Test group", "welcomemessage": "Welcome", "members": ["+911199999999"], "grouptype": "Group"})
        );
        assert_eq!(
            parse(r#"{"mobileNumber":"+911199999999", applicationId:"abc"}"#),
            json!({"mobilenumber": "+911199999999", "applicationid": "abc"})
        );
        assert_eq!(parse("{'members': ['+911199999999']}"), json!({"members": ["+911199999999"]}));
        assert_eq!(parse("{message:\"Test message via API\"}\r\n"), json!({"message": "Test message via API"}));
        assert_eq!(parse("{\r\n\t\"name\":\"x\"\r\n}"), json!({"name": "x"}));
        assert_eq!(
            parse(r#"{"Name":"x","WelcomeMessage":"y","Members":[],"GroupType":"ConnectGroup"}"#),
            json!({"name": "x", "welcomemessage": "y", "members": [], "grouptype": "ConnectGroup"})
        );
        assert_eq!(parse("{a: 1, /* note */ b: [2,],}"), json!({"a": 1, "b": [2]}));
        assert_eq!(
            parse(r#"{"Outer": {"InnerKey": [{"DeepKey": 1}]}}"#),
            json!({"outer": {"innerkey": [{"deepkey": 1}]}})
        );
    }

    #[test]
    fn empty_bodies_are_empty_objects() {
        assert_eq!(parse(""), json!({}));
        assert_eq!(parse("   \r\n"), json!({}));
        assert_eq!(parse("\u{feff}{}"), json!({}));
    }

    #[test]
    fn deep_nesting_is_refused_before_parsing() {
        let deep = "[".repeat(100_000);
        let err = parse_lenient_body(deep.as_bytes()).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err.contains("deeper than 64"), "{err}");
        let ok = format!("{{a: {}1{}}}", "[".repeat(63), "]".repeat(63));
        assert!(parse_lenient_body(ok.as_bytes()).is_ok());
    }

    #[test]
    fn garbage_is_an_error() {
        assert!(parse_lenient_body(b"{name:").is_err());
        assert!(parse_lenient_body(b"not json at all").is_err());
        assert!(parse_lenient_body(&[0xff, 0xfe]).is_err());
    }

    #[derive(Deserialize)]
    struct Loose {
        #[serde(default, deserialize_with = "opt_bool")]
        active: Option<bool>,
        #[serde(default, deserialize_with = "opt_string_or_number")]
        pin: Option<String>,
    }

    #[test]
    fn loose_scalars() {
        let l: Loose = serde_json::from_value(parse(r#"{"Active": "true", "pin": 8876}"#)).expect("binds");
        assert_eq!((l.active, l.pin.as_deref()), (Some(true), Some("8876")));
        let l: Loose = serde_json::from_value(parse(r#"{"active": false, "pin": "1234"}"#)).expect("binds");
        assert_eq!((l.active, l.pin.as_deref()), (Some(false), Some("1234")));
        let l: Loose = serde_json::from_value(parse("{}")).expect("binds");
        assert_eq!((l.active, l.pin), (None, None));
        assert!(serde_json::from_value::<Loose>(parse(r#"{"active": "maybe"}"#)).is_err());
    }
}

//! The filter parameters `/openapi.json` documents for each list operation are exactly
//! the `field[op]` pairs the server accepts (plus `page` and `limit`).
//!
//! The list operations are found by behaviour, not by the document: every GET operation
//! is asked for `?page=0`, and those that answer 400 naming `page` parse a list query.
//! Each must be in [`list_ops`] with the domain allow-list its handler validates
//! against, its documented filters must be that allow-list, and the server must accept
//! every documented `field[op]` and refuse every other operator on a documented field.

use std::collections::BTreeSet;

use openspot::domain::filter::{FieldSpec, Kind, Op, DEFAULT_LIMIT, MAX_LIMIT, MAX_LIST_VALUES};
use openspot::domain::vocab::PropertyType;
use openspot::domain::{courses, custom_roles, groups, members, properties, webhooks};
use serde_json::{json, Value};

use crate::both;
use crate::common::assert_ms_error;

const ALL_OPS: &[Op] =
    &[Op::Eq, Op::Neq, Op::Gt, Op::Gte, Op::Lt, Op::Lte, Op::In, Op::NotIn, Op::Contains, Op::Before, Op::After];

/// Every list operation: its path and the allow-list its domain function validates with
/// (an empty one for lists that take no filters).
fn list_ops() -> Vec<(&'static str, &'static [FieldSpec])> {
    vec![
        ("/v1/spotMembers", members::MEMBER_FILTERS),
        ("/v1/groups", groups::GROUP_FILTERS),
        ("/v1/groups/{groupId}/spotMembers", groups::GROUP_MEMBER_FILTERS),
        ("/v1/courses", courses::COURSE_FILTERS),
        ("/v1/courses/{courseId}/participants", courses::PARTICIPANT_FILTERS),
        ("/v1/spotMemberCustomRole", custom_roles::ROLE_FILTERS),
        ("/v1/customProperties", &[]),
        ("/v1/spotMembers/{spotMemberId}/customPropertiesValues", &[]),
        ("/v1/webhooks", &[]),
        ("/v1/webhooks/{webhookId}/deliveries", webhooks::DELIVERY_FILTERS),
    ]
}

fn allow_list(specs: &[FieldSpec]) -> BTreeSet<String> {
    specs.iter().flat_map(|s| s.ops.iter().map(move |op| format!("{}[{}]", s.field, op.as_str()))).collect()
}

/// `path` with `{groupId}`, `{courseId}` and `{spotMemberId}` replaced by real ids and any
/// other parameter by a fresh UUID.
fn fill(path: &str, ids: &[(&str, &str)]) -> String {
    path.split('/')
        .map(|seg| match seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
            Some(name) => ids
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, id)| id.to_string())
                .unwrap_or_else(|| uuid::Uuid::new_v4().to_string()),
            None => seg.to_string(),
        })
        .collect::<Vec<_>>()
        .join("/")
}

/// A value the documented schema of a query parameter says is valid.
fn sample(schema: &Value) -> String {
    let item = if schema["type"] == "array" { &schema["items"] } else { schema };
    if let Some(first) = item["enum"].as_array().and_then(|e| e.first()) {
        return first.as_str().unwrap().to_string();
    }
    match (item["type"].as_str(), item["format"].as_str()) {
        (_, Some("uuid")) => uuid::Uuid::new_v4().to_string(),
        (Some("integer"), _) => "1700000000".to_string(),
        _ => "someone@example.com".to_string(),
    }
}

fn encode(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

both!(documented_filters_are_the_parsers_allow_lists, |app| {
    let doc: Value = app.client.get(format!("{}/openapi.json", app.base)).send().await.unwrap().json().await.unwrap();
    let group = app.post("/v1/groups", json!({"name": "Readers"})).await.body["id"].as_str().unwrap().to_string();
    let course = app.post("/v1/courses", json!({"title": "Rust 101"})).await.body["id"].as_str().unwrap().to_string();
    let member = app.invite("reader@example.com").await;
    let hook =
        app.post("/v1/webhooks", json!({"url": "https://93.184.215.14/hook", "eventTypes": ["member.created"]})).await;
    let hook = hook.body["id"].as_str().unwrap().to_string();
    let ids = [
        ("groupId", group.as_str()),
        ("courseId", course.as_str()),
        ("spotMemberId", member.as_str()),
        ("webhookId", hook.as_str()),
    ];
    let expected = list_ops();

    let mut found = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        let Some(op) = item.get("get") else { continue };
        let r = app.get(&format!("{}?page=0", fill(path, &ids))).await;
        if r.status != 400 || !r.body["message"].as_str().unwrap_or_default().starts_with("page") {
            continue;
        }
        found.push(path.clone());
        let Some((_, specs)) = expected.iter().find(|(p, _)| p == path) else {
            panic!("{path} parses a list query but list_ops() does not name its allow-list");
        };
        let params = op["parameters"].as_array().cloned().unwrap_or_default();
        let query: Vec<&Value> = params.iter().filter(|p| p["in"] == "query").collect();
        let names: BTreeSet<String> = query.iter().map(|p| p["name"].as_str().unwrap().to_string()).collect();
        let mut want = allow_list(specs);
        want.insert("page".into());
        want.insert("limit".into());
        assert_eq!(names, want, "{path}: documented query parameters vs the parser's allow-list");

        // The server accepts each documented filter with a value of its documented type...
        for p in &query {
            let name = p["name"].as_str().unwrap();
            if name == "page" || name == "limit" {
                continue;
            }
            let url = format!("{}?{}={}", fill(path, &ids), encode(name), encode(&sample(&p["schema"])));
            let r = app.get(&url).await;
            assert_eq!(r.status, 200, "{url}: {}", r.text);
            // ...and refuses every operator the document does not list for that field.
            let field = &name[..name.find('[').unwrap()];
            for other in ALL_OPS {
                let key = format!("{field}[{}]", other.as_str());
                if names.contains(&key) {
                    continue;
                }
                let url = format!("{}?{}={}", fill(path, &ids), encode(&key), encode(&sample(&p["schema"])));
                let msg = assert_ms_error(&app.get(&url).await, 400);
                assert!(msg.starts_with(&key), "{url}: {msg}");
            }
        }
        // A field the document does not list is refused.
        let msg = assert_ms_error(&app.get(&format!("{}?nickname%5Beq%5D=x", fill(path, &ids))).await, 400);
        assert!(msg.starts_with("nickname[eq]"), "{path}: {msg}");
    }
    let mut listed: Vec<String> = expected.iter().map(|(p, _)| p.to_string()).collect();
    listed.sort();
    found.sort();
    assert_eq!(found, listed, "the list operations of /openapi.json vs list_ops()");
});

// The documented schema of each filter says what the parser reads: lists are arrays,
// dates integers, ids UUIDs, enums their values.
both!(documented_filter_types_follow_the_allow_lists, |app| {
    let doc: Value = app.client.get(format!("{}/openapi.json", app.base)).send().await.unwrap().json().await.unwrap();
    for (path, specs) in list_ops() {
        let params = doc["paths"][path]["get"]["parameters"].as_array().cloned().unwrap_or_default();
        // page and limit with the bounds the parser enforces (page=0 and limit=101 are 400s).
        let schema_of = |name: &str| params.iter().find(|p| p["name"] == name).map(|p| p["schema"].clone());
        let page = schema_of("page").unwrap_or_else(|| panic!("{path}: page"));
        assert_eq!((&page["type"], &page["minimum"]), (&json!("integer"), &json!(1)), "{path} page: {page}");
        let limit = schema_of("limit").unwrap_or_else(|| panic!("{path}: limit"));
        assert_eq!(
            (&limit["minimum"], &limit["maximum"], &limit["default"]),
            (&json!(1), &json!(MAX_LIMIT), &json!(DEFAULT_LIMIT)),
            "{path} limit: {limit}"
        );
        for spec in specs {
            for op in spec.ops {
                let name = format!("{}[{}]", spec.field, op.as_str());
                let p = params.iter().find(|p| p["name"] == name.as_str()).unwrap_or_else(|| panic!("{path}: {name}"));
                let schema = &p["schema"];
                let item = if op.is_list() {
                    assert_eq!(schema["type"], "array", "{path} {name}: {schema}");
                    assert_eq!(schema["maxItems"], json!(MAX_LIST_VALUES), "{path} {name}: {schema}");
                    &schema["items"]
                } else {
                    schema
                };
                match spec.kind {
                    Kind::Text | Kind::TextLower => assert_eq!(item["type"], "string", "{path} {name}"),
                    Kind::Date | Kind::Integer => assert_eq!(item["type"], "integer", "{path} {name}"),
                    Kind::Uuid => assert_eq!(item["format"], "uuid", "{path} {name}"),
                    Kind::Enum(values) => assert_eq!(item["enum"], json!(values), "{path} {name}"),
                }
                assert_ne!(p["required"], true, "{path} {name}");
            }
        }
    }
});

// The member list also takes `customProperties.<slug>[op]` filters, which depend on the
// spot's properties and so cannot be listed as parameters: the operation's description
// names the operators of each property type, as the property filter check allows them.
both!(documented_property_filters_follow_the_property_types, |app| {
    let doc: Value = app.client.get(format!("{}/openapi.json", app.base)).send().await.unwrap().json().await.unwrap();
    let op = &doc["paths"]["/v1/spotMembers"]["get"];
    let text =
        format!("{} {}", op["summary"].as_str().unwrap_or_default(), op["description"].as_str().unwrap_or_default())
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ");
    assert!(text.contains("customProperties.<slug>[op]=value"), "{text}");
    for kind in PropertyType::ALL {
        let ops: Vec<&str> = properties::ops_of(*kind).iter().map(|o| o.as_str()).collect();
        let want = format!("`{kind}`: {}", ops.join(", "));
        assert!(text.contains(&want), "the description should say {want}: {text}");
    }
});

/// Every `$ref` string anywhere under `v`.
fn refs(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                match (k.as_str(), x) {
                    ("$ref", Value::String(r)) => out.push(r.clone()),
                    _ => refs(x, out),
                }
            }
        }
        Value::Array(a) => a.iter().for_each(|x| refs(x, out)),
        _ => {}
    }
}

// The vocabularies (course status, participant status, …) are documented as string
// enums of their wire words, and every schema a field refers to is in the document.
both!(vocabularies_are_documented_string_enums, |app| {
    let doc: Value = app.client.get(format!("{}/openapi.json", app.base)).send().await.unwrap().json().await.unwrap();
    let schemas = &doc["components"]["schemas"];
    let mut all = Vec::new();
    refs(&doc, &mut all);
    for r in &all {
        let name = r.strip_prefix("#/components/schemas/").unwrap_or_else(|| panic!("unexpected $ref {r}"));
        assert!(schemas.get(name).is_some(), "{r} is not in the document");
    }
    assert_eq!(schemas["CourseStatus"]["enum"], json!(["Draft", "Published"]));
    assert_eq!(schemas["ParticipantStatus"]["enum"], json!(["Invited", "Started", "Completed", "Unenrolled"]));
    assert_eq!(schemas["MemberRole"]["enum"], json!(["Member", "Admin"]));
    assert_eq!(
        schemas["PropertyType"]["enum"],
        json!(["Text", "Number", "Boolean", "Date", "SingleSelect", "MultipleSelect"])
    );
    assert_eq!(
        schemas["MemberStatus"]["enum"],
        json!(["Accepted", "Deactivated", "DeclinedInvitation", "Invited", "Left", "Pending", "Rejected"])
    );
});

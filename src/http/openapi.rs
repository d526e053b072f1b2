//! The responses the shared layers give, added to the assembled OpenAPI document.
//!
//! Every `/v1` operation and every Kaizala operation that takes an access token passes
//! through its dialect's guard before its handler runs, and the guard can answer on its
//! own: 401 for a missing or wrong credential, 429 for a spent per-spot (or
//! per-connector) budget or an address with too many failed credentials. Every body is
//! read under the body cap, over which the answer is 413 (contract §3). Those answers
//! belong to every such operation, so they are added here, once, rather than repeated
//! (and forgotten) in each handler's annotation; an annotation that already documents
//! one of them keeps its own description. `tests/schemathesis.rs` lints the result.

use utoipa::openapi::header::Header;
use utoipa::openapi::path::Operation;
use utoipa::openapi::schema::{ObjectBuilder, Type};
use utoipa::openapi::{Content, OpenApi, Ref, RefOr, ResponseBuilder};

/// Adds the guard's 401 and 429 to each guarded operation, and the body cap's 413 to
/// each operation with a body, where the annotation does not list them.
pub fn add_shared_responses(doc: &mut OpenApi) {
    for (path, item) in doc.paths.paths.iter_mut() {
        let (error_schema, refused, throttled, too_large) = if path.starts_with("/v1/") {
            (
                "ErrorBody",
                "Unauthorized: no API key, or not a valid one",
                "Too many requests (see `Retry-After`)",
                "Payload is too large",
            )
        } else if path.starts_with("/kaizala/") {
            (
                "KzErrorBody",
                "InvalidToken: no access token, or not a valid one",
                "Throttled (see `Retry-After`)",
                "InvalidParameters: the body is too large",
            )
        } else {
            continue;
        };
        let operations = [&mut item.get, &mut item.put, &mut item.post, &mut item.delete, &mut item.patch];
        for op in operations.into_iter().flatten() {
            if op.request_body.is_some() {
                add_response(op, "413", too_large, error_schema, false);
            }
            if path.starts_with("/kaizala/") && !takes_access_token(op) {
                continue;
            }
            add_response(op, "401", refused, error_schema, false);
            add_response(op, "429", throttled, error_schema, true);
        }
    }
}

/// Whether the operation's security requirements name the Kaizala access token.
fn takes_access_token(op: &Operation) -> bool {
    serde_json::to_value(&op.security).is_ok_and(|v| v.to_string().contains("\"kaizalaToken\""))
}

fn add_response(op: &mut Operation, status: &str, description: &str, error_schema: &str, retry_after: bool) {
    if op.responses.responses.contains_key(status) {
        return;
    }
    let mut response = ResponseBuilder::new()
        .description(description)
        .content("application/json", Content::new(Some(Ref::from_schema_name(error_schema))));
    if retry_after {
        let seconds = ObjectBuilder::new().schema_type(Type::Integer).minimum(Some(1));
        let mut header = Header::new(seconds);
        header.description = Some("Seconds to wait before trying again".into());
        response = response.header("Retry-After", header);
    }
    op.responses.responses.insert(status.to_string(), RefOr::T(response.build()));
}

//! Rendering of [`crate::error::Error`] in the MeltingSpot dialect:
//! `{"statusCode": 404, "message": "Spot member not found", "error": "Not Found"}`
//! (contract §3, §8), and [`render`], what both dialects do with an error on its way
//! out: internal errors are logged and answered without detail, 413 and 408 close the
//! connection, 429 and 503 carry `Retry-After`.

use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;

use crate::error::Error;

/// The MeltingSpot error body.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ErrorBody {
    #[schema(example = 404)]
    pub status_code: u16,
    #[schema(example = "Spot member not found")]
    pub message: String,
    #[schema(example = "Not Found")]
    pub error: String,
}

/// An [`Error`] on its way out of a `/v1` handler.
#[derive(Debug)]
pub struct MsError(pub Error);

impl<E: Into<Error>> From<E> for MsError {
    fn from(e: E) -> Self {
        MsError(e.into())
    }
}

pub fn reason_phrase(status: u16) -> &'static str {
    StatusCode::from_u16(status).ok().and_then(|s| s.canonical_reason()).unwrap_or("Error")
}

/// The JSON error response for `status` with `message`.
pub fn error_response(status: u16, message: String) -> Response {
    let code = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let body = ErrorBody { status_code: status, message, error: reason_phrase(status).to_string() };
    (code, Json(body)).into_response()
}

/// Renders `e` through `body` (the dialect's body for a status and a message) with
/// what every dialect adds: an internal error is logged and its message hidden, and
/// the headers of [`add_error_headers`].
pub fn render(e: &Error, body: impl FnOnce(u16, String) -> Response) -> Response {
    let status = e.status();
    let message = match e {
        Error::Internal(inner) => {
            tracing::error!(error = ?inner, "internal error");
            "Internal server error".to_string()
        }
        other => other.to_string(),
    };
    let mut resp = body(status, message);
    add_error_headers(resp.headers_mut(), status, e.retry_after_s());
    resp
}

/// The headers an error response of `status` needs: `Connection: close` for 413 and
/// 408 (the rest of the body is never read, so the connection cannot carry another
/// request: a client that reused it would fail), and `Retry-After` when the client is
/// told when to come back (429 rate limit, 503 busy database).
pub fn add_error_headers(headers: &mut HeaderMap, status: u16, retry_after_s: Option<u64>) {
    if status == 413 || status == 408 {
        headers.insert("connection", HeaderValue::from_static("close"));
    }
    if let Some(retry_after_s) = retry_after_s {
        if let Ok(v) = HeaderValue::from_str(&retry_after_s.to_string()) {
            headers.insert("retry-after", v);
        }
    }
}

impl IntoResponse for MsError {
    fn into_response(self) -> Response {
        render(&self.0, error_response)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_headers_close_on_413_and_408_and_say_when_to_retry() {
        for status in [413, 408] {
            let mut h = HeaderMap::new();
            add_error_headers(&mut h, status, None);
            assert_eq!(h.get("connection").map(|v| v.as_bytes()), Some(&b"close"[..]), "{status}");
            assert!(h.get("retry-after").is_none());
        }
        let mut h = HeaderMap::new();
        add_error_headers(&mut h, 429, Some(7));
        assert_eq!(h.get("retry-after").map(|v| v.as_bytes()), Some(&b"7"[..]));
        assert!(h.get("connection").is_none());
    }

    #[test]
    fn internal_errors_are_rendered_without_detail() {
        let e = Error::Internal(anyhow::anyhow!("secret detail"));
        let mut seen = None;
        let resp = render(&e, |status, message| {
            seen = Some((status, message));
            error_response(status, "x".into())
        });
        assert_eq!(seen, Some((500, "Internal server error".to_string())));
        assert_eq!(resp.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let resp = render(&Error::RateLimited { retry_after_s: 3 }, error_response);
        assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(resp.headers().get("retry-after").map(|v| v.as_bytes()), Some(&b"3"[..]));
    }
}

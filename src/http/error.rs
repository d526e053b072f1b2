//! Rendering of [`crate::error::Error`] in the MeltingSpot dialect:
//! `{"statusCode": 404, "message": "Spot member not found", "error": "Not Found"}`
//! (contract §3, §8). Internal errors are logged here and answered without detail;
//! 429 and 503 carry `Retry-After`.

use axum::http::{HeaderValue, StatusCode};
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

impl IntoResponse for MsError {
    fn into_response(self) -> Response {
        let status = self.0.status();
        let message = match &self.0 {
            Error::Internal(e) => {
                tracing::error!(error = ?e, "internal error");
                "Internal server error".to_string()
            }
            other => other.to_string(),
        };
        let mut resp = error_response(status, message);
        if matches!(self.0, Error::TooLarge) {
            // The rest of an oversized body is never read, so this connection cannot
            // carry another request: say so, or a client may reuse it and fail.
            resp.headers_mut().insert("connection", HeaderValue::from_static("close"));
        }
        // 429 (rate limit) and 503 (busy database) say when to come back.
        if let Some(retry_after_s) = self.0.retry_after_s() {
            if let Ok(v) = HeaderValue::from_str(&retry_after_s.to_string()) {
                resp.headers_mut().insert("retry-after", v);
            }
        }
        resp
    }
}

//! `POST /v1/spotMembers~import` (openspot; contract §8 "Member import"): the CLI
//! import over HTTP, as `multipart/form-data` with the file in the part `file`,
//! optional `dryRun`, `withEmailNotification` and repeatable `groupId`. MeltingSpot's own limits apply: 5 MiB
//! and 2,000 member rows, else 413 with nothing written; so do the reader's other
//! limits ([`HTTP_LIMITS`]: cells, text, what an XLSX unpacks to), checked while the
//! file is read, so a hostile file is refused after reading no more than they allow.
//!
//! Reading a file is CPU-bound: it runs on the blocking pool, at most
//! [`PARSES_AT_ONCE`] at a time per process, so uploads never hold up the async
//! workers that answer every other request.

use axum::extract::multipart::MultipartRejection;
use axum::extract::{DefaultBodyLimit, Multipart, State};
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::domain::ids::GroupId;
use crate::domain::import::{self, ReadError, HTTP_LIMITS, HTTP_MAX_BYTES};
use crate::error::Error;
use crate::http::error::{ErrorBody, MsError};
use crate::http::extract::CallerSpot;
use crate::http::AppState;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(import_spot_members)).layer(DefaultBodyLimit::max(HTTP_MAX_BYTES + 64 * 1024))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct FailedRowDto {
    /// The spreadsheet line (the header is line 1).
    line: u64,
    email: String,
    reason: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ImportReportDto {
    created: u64,
    updated: u64,
    failed: Vec<FailedRowDto>,
}

/// The multipart form (documentation only; parsed by hand).
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct ImportForm {
    /// A .csv (UTF-8) or .xlsx file: header `email` (required), `firstname`, `lastname`, property slugs.
    #[schema(value_type = String, format = Binary)]
    file: Vec<u8>,
    /// `true` validates and reports, writing nothing.
    #[schema(rename = "dryRun")]
    dry_run: Option<bool>,
    /// `true` sends an invitation email to each member the import creates (never in a dry run).
    #[schema(rename = "withEmailNotification")]
    with_email_notification: Option<bool>,
    /// A static group every imported member joins (repeat the part for several).
    #[schema(rename = "groupId")]
    group_id: Option<Uuid>,
}

/// Files read at once by this process; more uploads wait for their turn.
pub const PARSES_AT_ONCE: usize = 2;
static PARSES: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(PARSES_AT_ONCE);

/// Reads the uploaded file on the blocking pool, once a parse permit is free. The
/// permit goes with the work, so a client that hangs up does not free it early.
async fn read_file(file: Vec<u8>) -> Result<Vec<Vec<import::Cell>>, MsError> {
    let permit = PARSES.acquire().await.map_err(|_| Error::Unavailable("the server is shutting down".into()))?;
    let read = tokio::task::spawn_blocking(move || {
        let rows = import::read_rows(&file, &HTTP_LIMITS);
        drop(permit);
        rows
    })
    .await
    .map_err(|e| Error::Internal(anyhow::anyhow!("reading an import file failed: {e}")))?;
    read.map_err(|e| {
        if let ReadError::TooLarge(why) = &e {
            tracing::info!(reason = %why, "import file refused");
        }
        MsError(e.into())
    })
}

/// A boolean form part: `true`, or `false` / empty.
fn form_bool(part: &str, bytes: &[u8]) -> Result<bool, MsError> {
    match String::from_utf8_lossy(bytes).trim() {
        "true" => Ok(true),
        "false" | "" => Ok(false),
        other => Err(Error::invalid(part, format!("must be true or false, not '{other}'")).into()),
    }
}

fn too_large() -> MsError {
    MsError(Error::TooLarge)
}

/// Import members from a spreadsheet (openspot)
///
/// Each row creates a member (`Invited`; invited by email with `withEmailNotification=true`)
/// or updates the member with that email; a bad row fails alone (reported with its line)
/// and the others land.
#[utoipa::path(post, path = "/v1/spotMembers~import", tag = "Spot members",
    request_body(content = ImportForm, content_type = "multipart/form-data"),
    extensions(("x-openspot" = json!(true))),
    responses(
        (status = 200, description = "Import report", body = ImportReportDto),
        (status = 400, description = "Unusable file (names the reason) or unknown group", body = ErrorBody),
        (status = 401, description = "Unauthorized", body = ErrorBody),
        (status = 413, description = "Payload is too large (over 5 MiB or 2,000 rows, or over another limit of the reader)", body = ErrorBody),
    ))]
async fn import_spot_members(
    State(st): State<AppState>,
    CallerSpot(spot): CallerSpot,
    form: Result<Multipart, MultipartRejection>,
) -> Result<Json<ImportReportDto>, MsError> {
    // Not a multipart body (or one without a boundary): the MeltingSpot error, not
    // axum's plain-text rejection.
    let mut form = form.map_err(|e| MsError(Error::BadRequest(format!("body: {}", e.body_text()))))?;
    let mut file: Option<Vec<u8>> = None;
    let mut dry_run = false;
    let mut notify = false;
    let mut groups = Vec::new();
    loop {
        let field = match form.next_field().await {
            Ok(Some(f)) => f,
            Ok(None) => break,
            Err(e) if e.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE => return Err(too_large()),
            Err(e) => return Err(Error::BadRequest(format!("malformed multipart body: {}", e.body_text())).into()),
        };
        let name = field.name().unwrap_or_default().to_string();
        let bytes = field.bytes().await.map_err(|e| {
            if e.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
                too_large()
            } else {
                MsError(Error::BadRequest(format!("malformed multipart body: {}", e.body_text())))
            }
        })?;
        match name.as_str() {
            "file" => {
                if bytes.len() > HTTP_MAX_BYTES {
                    return Err(too_large());
                }
                file = Some(bytes.to_vec());
            }
            "dryRun" => dry_run = form_bool("dryRun", &bytes)?,
            "withEmailNotification" => notify = form_bool("withEmailNotification", &bytes)?,
            "groupId" => {
                let raw = String::from_utf8_lossy(&bytes).trim().to_string();
                groups.push(
                    Uuid::parse_str(&raw)
                        .map(GroupId::from)
                        .map_err(|_| Error::invalid("groupId", format!("'{raw}' is not a group id")))?,
                );
            }
            other => {
                return Err(Error::invalid(
                    other,
                    "is not a part of this form (file, dryRun, withEmailNotification, groupId)",
                )
                .into())
            }
        }
    }
    let file = file.ok_or_else(|| Error::invalid("file", "is required"))?;
    let rows = read_file(file).await?;
    import::prepare(&st.db, spot, &rows, &groups).await?;
    let report = import::import_rows(&st.db, spot, &rows, &groups, dry_run, notify, &|_| {}).await?;
    Ok(Json(ImportReportDto {
        created: report.created,
        updated: report.updated,
        failed: report
            .failed
            .into_iter()
            .map(|f| FailedRowDto { line: f.line, email: f.email, reason: f.reason })
            .collect(),
    }))
}

//! Page 6, Import: upload a CSV or XLSX file (the API's limits), see the dry run's
//! report, then import it with a progress page; the failed rows download as CSV. The
//! upload and the report are in the database, so each step may reach another replica.

use askama::Template;
use axum::extract::{DefaultBodyLimit, Multipart, Path, State};
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Redirect};
use axum::routing::{get, post};
use axum::Router;

use super::{render, Admin, Nav, PageResult};
use crate::domain::console;
use crate::domain::filter::ListQuery;
use crate::domain::groups::{self, Group};
use crate::domain::ids::GroupId;
use crate::domain::import::{ImportReport, HTTP_MAX_BYTES};
use crate::error::Error;
use crate::http::AppState;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/console/import", get(form).post(upload).layer(DefaultBodyLimit::max(HTTP_MAX_BYTES + 64 * 1024)))
        .route("/console/import/{id}/run", post(run))
        .route("/console/import/{id}/errors.csv", get(errors))
}

#[derive(Template)]
#[template(path = "console/import.html")]
struct ImportPage {
    nav: Nav,
    groups: Vec<Group>,
    error: Option<String>,
}

async fn import_page(st: &AppState, s: &console::ConsoleSession, error: Option<String>) -> PageResult {
    let (groups, _) =
        groups::list_groups(&st.db, s.spot_id, &ListQuery { page: 1, limit: 100, filters: Vec::new() }).await?;
    let groups = groups.into_iter().filter(|g| !g.is_smart()).collect();
    let bad = error.is_some();
    let mut r = render(&ImportPage { nav: Nav::of(s, "import"), groups, error });
    if bad {
        *r.status_mut() = axum::http::StatusCode::BAD_REQUEST;
    }
    Ok(r)
}

async fn form(State(st): State<AppState>, Admin(s): Admin) -> PageResult {
    import_page(&st, &s, None).await
}

#[derive(Template)]
#[template(path = "console/import_preview.html")]
struct PreviewPage {
    nav: Nav,
    id: String,
    report: ImportReport,
    rows: usize,
}

async fn upload(State(st): State<AppState>, Admin(s): Admin, mut form: Multipart) -> PageResult {
    let mut file = None;
    let mut group_ids = Vec::new();
    let mut notify = false;
    while let Some(field) = form.next_field().await.map_err(|e| Error::BadRequest(e.body_text()))? {
        let name = field.name().unwrap_or_default().to_string();
        let bytes = field.bytes().await.map_err(|e| Error::BadRequest(e.body_text()))?;
        match name.as_str() {
            "file" => file = Some(bytes.to_vec()),
            "group" if !bytes.is_empty() => group_ids.push(
                String::from_utf8_lossy(&bytes)
                    .trim()
                    .parse::<GroupId>()
                    .map_err(|_| Error::invalid("group", "is not a group id"))?,
            ),
            "notify" => notify = !bytes.is_empty(),
            _ => {}
        }
    }
    let Some(file) = file.filter(|f| !f.is_empty()) else {
        return import_page(&st, &s, Some("Choose a CSV or XLSX file".into())).await;
    };
    match console::preview_import(&st.db, s.spot_id, file, group_ids, notify).await {
        Ok((id, report)) => {
            let rows = (report.created + report.updated) as usize + report.failed.len();
            Ok(render(&PreviewPage { nav: Nav::of(&s, "import"), id: id.to_string(), report, rows }))
        }
        Err(Error::Invalid { field, reason }) => import_page(&st, &s, Some(format!("{field}: {reason}"))).await,
        Err(Error::BadRequest(m)) => import_page(&st, &s, Some(m)).await,
        Err(e) => Err(e.into()),
    }
}

fn upload_id(raw: &str) -> Result<uuid::Uuid, Error> {
    raw.parse().map_err(|_| Error::BadRequest("No such upload".into()))
}

async fn run(State(st): State<AppState>, Admin(s): Admin, Path(id): Path<String>) -> PageResult {
    let job = console::start_import(&st.db, s.spot_id, upload_id(&id)?).await?;
    Ok(Redirect::to(&format!("/console/jobs/{job}?from=import")).into_response())
}

async fn errors(State(st): State<AppState>, Admin(s): Admin, Path(id): Path<String>) -> PageResult {
    let csv = console::import_errors_csv(&st.db, s.spot_id, upload_id(&id)?).await?;
    Ok((
        [
            (header::CONTENT_TYPE, HeaderValue::from_static("text/csv; charset=utf-8")),
            (header::CONTENT_DISPOSITION, HeaderValue::from_static("attachment; filename=\"import-errors.csv\"")),
        ],
        csv,
    )
        .into_response())
}

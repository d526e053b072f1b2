//! Page 2, Members: search, filters, keyset pages, a selection kept across pages, bulk
//! actions (on the selection or on every member matching) with a confirmation and a
//! progress page, CSV export; and the member page (profile, status, custom role,
//! properties by type, groups, courses with progress).

use askama::Template;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::{Html, IntoResponse, Redirect};
use axum::routing::{get, post};
use axum::Router;

use super::form::Fields;
use super::{render, Admin, ConsoleError, Nav, PageResult};
use crate::domain::console::{self, BulkAction, BulkScope, JobProgress, MemberDetail, MemberPage, MemberQuery};
use crate::domain::courses::Course;
use crate::domain::custom_roles::CustomRole;
use crate::domain::filter::ListQuery;
use crate::domain::groups::Group;
use crate::domain::ids::{MemberId, SpotId};
use crate::domain::properties::PropertyDef;
use crate::domain::vocab::{MemberRole, MemberStatus};
use crate::domain::{courses, custom_roles, groups, members, properties};
use crate::error::Error;
use crate::http::AppState;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/console/members", get(list))
        .route("/console/members.csv", get(export))
        .route("/console/members/select", post(select))
        .route("/console/members/selection/clear", post(clear))
        .route("/console/members/bulk", post(bulk))
        .route("/console/jobs/{id}", get(job))
        .route("/console/members/{id}", get(member).post(save_member))
}

/// The spot's groups, courses, custom roles and properties: the choices of the forms.
pub struct Choices {
    pub groups: Vec<Group>,
    pub courses: Vec<Course>,
    pub roles: Vec<CustomRole>,
    pub props: Vec<PropertyDef>,
}

pub async fn choices(st: &AppState, spot_id: SpotId) -> Result<Choices, Error> {
    let q = ListQuery { page: 1, limit: 100, filters: Vec::new() };
    Ok(Choices {
        groups: groups::list_groups(&st.db, spot_id, &q).await?.0,
        courses: courses::list_courses(&st.db, spot_id, &q).await?.0,
        roles: custom_roles::list_roles(&st.db, spot_id, &q).await?.0,
        props: properties::list_properties(&st.db, spot_id).await?,
    })
}

#[derive(Template)]
#[template(path = "console/members.html")]
struct MembersPage {
    nav: Nav,
    q: MemberQuery,
    page: MemberPage,
    selected: Vec<MemberId>,
    choices: Choices,
    statuses: &'static [MemberStatus],
    writable: &'static [MemberStatus],
    roles: &'static [MemberRole],
    query_string: String,
    error: Option<String>,
}

impl MembersPage {
    fn is_selected(&self, id: &MemberId) -> bool {
        self.selected.contains(id)
    }
}

async fn list(State(st): State<AppState>, Admin(s): Admin, Query(q): Query<MemberQuery>) -> PageResult {
    let (page, error) = match console::search_members(&st.db, s.spot_id, &q).await {
        Ok(p) => (p, None),
        Err(e @ Error::Invalid { .. }) => {
            (MemberPage { items: Vec::new(), next: None, total: 0, more: false }, Some(e.to_string()))
        }
        Err(e) => return Err(e.into()),
    };
    let selected = console::selection(&st.db, &s).await?;
    let query_string = q.to_query_string();
    Ok(render(&MembersPage {
        nav: Nav::of(&s, "members"),
        page,
        selected,
        choices: choices(&st, s.spot_id).await?,
        statuses: MemberStatus::ALL,
        writable: MemberStatus::WRITABLE,
        roles: MemberRole::ALL,
        query_string,
        error,
        q,
    }))
}

async fn export(State(st): State<AppState>, Admin(s): Admin, Query(q): Query<MemberQuery>) -> PageResult {
    let csv = console::export_csv(&st.db, s.spot_id, &q).await?;
    Ok((
        [
            (header::CONTENT_TYPE, HeaderValue::from_static("text/csv; charset=utf-8")),
            (header::CONTENT_DISPOSITION, HeaderValue::from_static("attachment; filename=\"members.csv\"")),
        ],
        csv,
    )
        .into_response())
}

/// Toggles members in the selection (`id` repeated; `on=1` selects, absent unselects);
/// answers the selection's size (an htmx fragment), or back to the list without htmx.
async fn select(
    State(st): State<AppState>,
    Admin(s): Admin,
    headers: HeaderMap,
    Query(query): Query<Vec<(String, String)>>,
    body: Bytes,
) -> PageResult {
    let mut fields = Fields::from_body(&body);
    fields.0.extend(query);
    let on = fields.get("on") == "1";
    let n = console::select(&st.db, &s, &fields.all("id"), on).await?;
    if headers.contains_key("hx-request") {
        return Ok(Html(format!("{n} selected")).into_response());
    }
    Ok(Redirect::to("/console/members").into_response())
}

async fn clear(State(st): State<AppState>, Admin(s): Admin) -> PageResult {
    console::clear_selection(&st.db, &s).await?;
    Ok(Redirect::to("/console/members").into_response())
}

#[derive(Template)]
#[template(path = "console/bulk_confirm.html")]
struct ConfirmPage {
    nav: Nav,
    count: usize,
    description: String,
    fields: Vec<(String, String)>,
}

/// The bulk form: first a confirmation naming the count, then (`confirm=1`) the job.
async fn bulk(State(st): State<AppState>, Admin(s): Admin, body: Bytes) -> PageResult {
    let f = Fields::from_body(&body);
    let action = BulkAction::parse(f.get("action"), f.get("target"), f.get("value"))?;
    console::check_bulk_action(&st.db, s.spot_id, &action).await?;
    let scope = if f.get("scope") == "all" {
        let q: MemberQuery = serde_urlencoded_query(f.get("query"))?;
        BulkScope::AllMatching(Box::new(q))
    } else {
        BulkScope::Selection
    };
    let targets = console::bulk_targets(&st.db, &s, &scope).await?;
    if targets.is_empty() {
        return Err(Error::invalid("scope", "no member to apply it to: select members or filter first").into());
    }
    let description = describe(&st, s.spot_id, &action).await?;
    if f.get("confirm") != "1" {
        let fields = f.0.iter().filter(|(k, _)| k != "_csrf" && k != "confirm").cloned().collect();
        return Ok(render(&ConfirmPage { nav: Nav::of(&s, "members"), count: targets.len(), description, fields }));
    }
    let id = console::start_bulk(&st.db, &s, action, &description, targets).await?;
    Ok(Redirect::to(&format!("/console/jobs/{id}")).into_response())
}

/// The action as the confirmation and the job name it: groups and courses by their name and
/// title (the domain's description names them by id, which an operator cannot check).
async fn describe(st: &AppState, spot_id: SpotId, action: &BulkAction) -> Result<String, Error> {
    Ok(match action {
        BulkAction::AddToGroup(g) => format!("add to group “{}”", groups::get_group(&st.db, spot_id, *g).await?.name),
        BulkAction::RemoveFromGroup(g) => {
            format!("remove from group “{}”", groups::get_group(&st.db, spot_id, *g).await?.name)
        }
        BulkAction::InviteToCourse(c) => {
            format!("invite to course “{}”", courses::get_course(&st.db, spot_id, *c).await?.title)
        }
        other => other.describe(),
    })
}

fn serde_urlencoded_query(raw: &str) -> Result<MemberQuery, Error> {
    let mut q = MemberQuery::default();
    for (k, v) in form_urlencoded::parse(raw.as_bytes()) {
        let v = v.into_owned();
        match k.as_ref() {
            "q" => q.q = v,
            "status" => q.status = v,
            "role" => q.role = v,
            "custom_role" => q.custom_role = v,
            "group" => q.group = v,
            "prop" => q.prop = v,
            "op" => q.op = v,
            "value" => q.value = v,
            "sort" => q.sort = v,
            "dir" => q.dir = v,
            _ => {}
        }
    }
    Ok(q)
}

#[derive(Template)]
#[template(path = "console/job.html")]
struct JobPage {
    nav: Nav,
    id: String,
    job: JobProgress,
    /// Where the page leads back to: (path, link text).
    back: (&'static str, &'static str),
}

/// Which page started a job (`?from=import` for imports, else the members list).
#[derive(serde::Deserialize, Default)]
struct JobFrom {
    #[serde(default)]
    from: String,
}

/// The progress alone, which the page polls (htmx) until the job finishes.
#[derive(Template)]
#[template(path = "console/job_progress.html")]
struct JobFragment {
    id: String,
    job: JobProgress,
}

async fn job(
    State(st): State<AppState>,
    Admin(s): Admin,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(from): Query<JobFrom>,
) -> PageResult {
    let id: uuid::Uuid = id.parse().map_err(|_| Error::NotFound(crate::error::Entity::Spot))?;
    let Some(job) = console::job(&st.db, s.spot_id, id).await? else {
        return Err(ConsoleError(Error::BadRequest("No such job (jobs are kept a week)".into())));
    };
    if headers.contains_key("hx-request") {
        return Ok(render(&JobFragment { id: id.to_string(), job }));
    }
    let (active, back) = if from.from == "import" {
        ("import", ("/console/import", "Import another file"))
    } else {
        ("members", ("/console/members", "Back to members"))
    };
    Ok(render(&JobPage { nav: Nav::of(&s, active), id: id.to_string(), job, back }))
}

#[derive(Template)]
#[template(path = "console/member.html")]
struct MemberPageT {
    nav: Nav,
    d: MemberDetail,
    writable: &'static [MemberStatus],
    saved: bool,
    error: Option<(String, String)>,
}

impl MemberPageT {
    fn error_for(&self, field: &str) -> Option<&str> {
        self.error.as_ref().filter(|(f, _)| f == field).map(|(_, r)| r.as_str())
    }
    fn other_error(&self) -> Option<&str> {
        self.error
            .as_ref()
            .filter(|(f, _)| {
                !["firstname", "lastname", "title", "status", "customRoleId"].contains(&f.as_str())
                    && !f.starts_with("prop.")
            })
            .map(|(_, r)| r.as_str())
    }
}

fn member_id(raw: &str) -> Result<MemberId, Error> {
    raw.parse().map_err(|_| Error::NotFound(crate::error::Entity::SpotMember))
}

#[derive(serde::Deserialize)]
struct Saved {
    #[serde(default)]
    saved: String,
}

async fn member(
    State(st): State<AppState>,
    Admin(s): Admin,
    Path(id): Path<String>,
    Query(q): Query<Saved>,
) -> PageResult {
    let d = console::member_detail(&st.db, s.spot_id, member_id(&id)?).await?;
    Ok(render(&MemberPageT {
        nav: Nav::of(&s, "members"),
        d,
        writable: MemberStatus::WRITABLE,
        saved: q.saved == "1",
        error: None,
    }))
}

async fn save_member(State(st): State<AppState>, Admin(s): Admin, Path(id): Path<String>, body: Bytes) -> PageResult {
    let id = member_id(&id)?;
    let f = Fields::from_body(&body);
    let opt = |v: &str| (!v.trim().is_empty()).then(|| v.trim().to_string());
    let patch = members::MemberPatch {
        firstname: Some(f.get("firstname").trim().to_string()),
        lastname: Some(f.get("lastname").trim().to_string()),
        title: Some(opt(f.get("title"))),
        status: opt(f.get("status")),
        custom_role_id: Some(match opt(f.get("custom_role")) {
            Some(r) => Some(r.parse().map_err(|_| Error::invalid("customRoleId", "is not a custom role"))?),
            None => None,
        }),
        ..Default::default()
    };
    let props = f.with_prefix("prop.");
    match console::save_member(&st.db, s.spot_id, id, patch, &props).await {
        Ok(_) => Ok(Redirect::to(&format!("/console/members/{id}?saved=1")).into_response()),
        Err(Error::Invalid { field, reason }) => {
            let d = console::member_detail(&st.db, s.spot_id, id).await?;
            let mut r = render(&MemberPageT {
                nav: Nav::of(&s, "members"),
                d,
                writable: MemberStatus::WRITABLE,
                saved: false,
                error: Some((field, reason)),
            });
            *r.status_mut() = axum::http::StatusCode::BAD_REQUEST;
            Ok(r)
        }
        Err(e) => Err(e.into()),
    }
}

//! Page 4, Courses: create and edit, participants with their progress, inviting
//! members (found by search) and linking groups (whose members are invited as they join).

use askama::Template;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Redirect};
use axum::routing::{get, post};
use axum::Router;

use super::form::Fields;
use super::{render, Admin, Nav, PageResult};
use crate::domain::console::{self, ConsoleSession, MemberQuery};
use crate::domain::courses::{self, Course, CourseInput, Participant};
use crate::domain::filter::ListQuery;
use crate::domain::groups::{self, Group};
use crate::domain::ids::CourseId;
use crate::domain::members::Member;
use crate::domain::vocab::{CoursePrivacy, CourseStatus, NavigationMode};
use crate::error::{Entity, Error};
use crate::http::AppState;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/console/courses", get(list).post(create))
        .route("/console/courses/{id}", get(show).post(edit))
        .route("/console/courses/{id}/invite", post(invite))
        .route("/console/courses/{id}/link", post(link))
        .route("/console/courses/{id}/unlink", post(unlink))
        .route("/console/courses/{id}/delete", post(delete))
}

fn course_id(raw: &str) -> Result<CourseId, Error> {
    raw.parse().map_err(|_| Error::NotFound(Entity::Course))
}

#[derive(Template)]
#[template(path = "console/courses.html")]
struct CoursesPage {
    nav: Nav,
    courses: Vec<Course>,
    total: i64,
    error: Option<(String, String)>,
}

impl CoursesPage {
    fn error_for(&self, field: &str) -> Option<&str> {
        self.error.as_ref().filter(|(f, _)| f == field).map(|(_, r)| r.as_str())
    }
}

async fn courses_page(st: &AppState, s: &ConsoleSession, error: Option<(String, String)>) -> PageResult {
    let (courses, total) =
        courses::list_courses(&st.db, s.spot_id, &ListQuery { page: 1, limit: 100, filters: Vec::new() }).await?;
    Ok(render(&CoursesPage { nav: Nav::of(s, "courses"), courses, total, error }))
}

async fn list(State(st): State<AppState>, Admin(s): Admin) -> PageResult {
    courses_page(&st, &s, None).await
}

fn input(f: &Fields) -> CourseInput {
    let opt = |v: &str| (!v.trim().is_empty()).then(|| v.trim().to_string());
    CourseInput {
        title: Some(f.get("title").to_string()),
        description: Some(opt(f.get("description"))),
        status: opt(f.get("status")),
        privacy: opt(f.get("privacy")),
        navigation_mode: opt(f.get("navigation_mode")),
    }
}

async fn create(State(st): State<AppState>, Admin(s): Admin, body: Bytes) -> PageResult {
    let f = Fields::from_body(&body);
    match courses::create_course(&st.db, s.spot_id, input(&f)).await {
        Ok(c) => Ok(Redirect::to(&format!("/console/courses/{}", c.id)).into_response()),
        Err(Error::Invalid { field, reason }) => {
            let mut r = courses_page(&st, &s, Some((field, reason))).await?;
            *r.status_mut() = axum::http::StatusCode::BAD_REQUEST;
            Ok(r)
        }
        Err(e) => Err(e.into()),
    }
}

#[derive(Template)]
#[template(path = "console/course.html")]
struct CoursePage {
    nav: Nav,
    c: Course,
    participants: Vec<Participant>,
    total: i64,
    linked: Vec<Group>,
    groups: Vec<Group>,
    q: String,
    found: Vec<Member>,
    statuses: &'static [CourseStatus],
    privacies: &'static [CoursePrivacy],
    modes: &'static [NavigationMode],
    error: Option<(String, String)>,
}

impl CoursePage {
    fn error_for(&self, field: &str) -> Option<&str> {
        self.error.as_ref().filter(|(f, _)| f == field).map(|(_, r)| r.as_str())
    }
}

#[derive(serde::Deserialize, Default)]
struct SearchQuery {
    #[serde(default)]
    q: String,
}

async fn course_page(
    st: &AppState,
    s: &ConsoleSession,
    id: CourseId,
    q: String,
    error: Option<(String, String)>,
) -> PageResult {
    let c = courses::get_course(&st.db, s.spot_id, id).await?;
    let (participants, total) =
        courses::list_participants(&st.db, s.spot_id, id, &ListQuery { page: 1, limit: 100, filters: Vec::new() })
            .await?;
    let linked = console::course_groups(&st.db, s.spot_id, id).await?;
    let (groups, _) =
        groups::list_groups(&st.db, s.spot_id, &ListQuery { page: 1, limit: 100, filters: Vec::new() }).await?;
    let found = if q.trim().is_empty() {
        Vec::new()
    } else {
        let mq = MemberQuery { q: q.clone(), ..Default::default() };
        console::search_members(&st.db, s.spot_id, &mq).await?.items.into_iter().take(20).collect()
    };
    Ok(render(&CoursePage {
        nav: Nav::of(s, "courses"),
        c,
        participants,
        total,
        linked,
        groups,
        q,
        found,
        statuses: CourseStatus::ALL,
        privacies: CoursePrivacy::ALL,
        modes: NavigationMode::ALL,
        error,
    }))
}

async fn show(
    State(st): State<AppState>,
    Admin(s): Admin,
    Path(id): Path<String>,
    Query(q): Query<SearchQuery>,
) -> PageResult {
    course_page(&st, &s, course_id(&id)?, q.q, None).await
}

async fn edit(State(st): State<AppState>, Admin(s): Admin, Path(id): Path<String>, body: Bytes) -> PageResult {
    let id = course_id(&id)?;
    let f = Fields::from_body(&body);
    match courses::update_course(&st.db, s.spot_id, id, input(&f)).await {
        Ok(_) => Ok(Redirect::to(&format!("/console/courses/{id}")).into_response()),
        Err(Error::Invalid { field, reason }) => {
            let mut r = course_page(&st, &s, id, String::new(), Some((field, reason))).await?;
            *r.status_mut() = axum::http::StatusCode::BAD_REQUEST;
            Ok(r)
        }
        Err(e) => Err(e.into()),
    }
}

async fn invite(State(st): State<AppState>, Admin(s): Admin, Path(id): Path<String>, body: Bytes) -> PageResult {
    let id = course_id(&id)?;
    let ids = Fields::from_body(&body).all("member");
    if !ids.is_empty() {
        courses::bulk_invite(&st.db, s.spot_id, id, &ids, Some(s.member_id), false).await?;
    }
    Ok(Redirect::to(&format!("/console/courses/{id}")).into_response())
}

async fn link(State(st): State<AppState>, Admin(s): Admin, Path(id): Path<String>, body: Bytes) -> PageResult {
    let id = course_id(&id)?;
    let ids = Fields::from_body(&body).all("group");
    if !ids.is_empty() {
        courses::link_groups(&st.db, s.spot_id, id, &ids).await?;
    }
    Ok(Redirect::to(&format!("/console/courses/{id}")).into_response())
}

async fn unlink(State(st): State<AppState>, Admin(s): Admin, Path(id): Path<String>, body: Bytes) -> PageResult {
    let id = course_id(&id)?;
    let ids = Fields::from_body(&body).all("group");
    if !ids.is_empty() {
        courses::unlink_groups(&st.db, s.spot_id, id, &ids).await?;
    }
    Ok(Redirect::to(&format!("/console/courses/{id}")).into_response())
}

async fn delete(State(st): State<AppState>, Admin(s): Admin, Path(id): Path<String>) -> PageResult {
    courses::delete_course(&st.db, s.spot_id, course_id(&id)?).await?;
    Ok(Redirect::to("/console/courses").into_response())
}

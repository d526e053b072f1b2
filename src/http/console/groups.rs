//! Page 3, Groups: the list; static groups (members added by search, removed); smart
//! groups built with a rule builder (AND/OR conditions of typed triggers) showing a live
//! count before saving, their blacklist and `ready` state.

use askama::Template;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::response::{Html, IntoResponse, Redirect};
use axum::routing::{get, post};
use axum::Router;

use super::form::Fields;
use super::{render, Admin, Nav, PageResult};
use crate::domain::console::{self, ConditionInput, MemberQuery, TriggerInput, RULE_FIELDS};
use crate::domain::filter::ListQuery;
use crate::domain::groups::{self, Group, NewGroup};
use crate::domain::ids::GroupId;
use crate::domain::members::Member;
use crate::domain::properties::{self, PropertyDef};
use crate::error::{Entity, Error};
use crate::http::AppState;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/console/groups", get(list).post(create))
        .route("/console/groups/new-smart", get(new_smart))
        .route("/console/groups/preview", post(preview))
        .route("/console/groups/{id}", get(show))
        .route("/console/groups/{id}/add", post(add))
        .route("/console/groups/{id}/remove", post(remove))
        .route("/console/groups/{id}/blacklist", post(blacklist))
        .route("/console/groups/{id}/delete", post(delete))
}

fn group_id(raw: &str) -> Result<GroupId, Error> {
    raw.parse().map_err(|_| Error::NotFound(Entity::Group))
}

#[derive(Template)]
#[template(path = "console/groups.html")]
struct GroupsPage {
    nav: Nav,
    groups: Vec<Group>,
    total: i64,
    page: u32,
    error: Option<(String, String)>,
}

impl GroupsPage {
    fn error_for(&self, field: &str) -> Option<&str> {
        self.error.as_ref().filter(|(f, _)| f == field).map(|(_, r)| r.as_str())
    }
}

#[derive(serde::Deserialize, Default)]
struct PageQuery {
    #[serde(default)]
    page: Option<u32>,
    #[serde(default)]
    q: String,
}

async fn groups_page(
    st: &AppState,
    s: &console::ConsoleSession,
    page: u32,
    error: Option<(String, String)>,
) -> PageResult {
    let (groups, total) =
        groups::list_groups(&st.db, s.spot_id, &ListQuery { page, limit: 50, filters: Vec::new() }).await?;
    Ok(render(&GroupsPage { nav: Nav::of(s, "groups"), groups, total, page, error }))
}

async fn list(State(st): State<AppState>, Admin(s): Admin, Query(q): Query<PageQuery>) -> PageResult {
    groups_page(&st, &s, q.page.unwrap_or(1).max(1), None).await
}

/// Creates a static group (`name`, `description`), or a smart one when `rules` come
/// from the rule builder.
async fn create(State(st): State<AppState>, Admin(s): Admin, body: Bytes) -> PageResult {
    let f = Fields::from_body(&body);
    let opt = |v: &str| (!v.trim().is_empty()).then(|| v.trim().to_string());
    let smart = f.get("kind") == "smart";
    let rules = if smart {
        let (top, conds) = builder_rows(&f);
        Some(console::rules_from_builder(&st.db, s.spot_id, &top, &conds).await?)
    } else {
        None
    };
    let n = NewGroup {
        name: opt(f.get("name")),
        description: opt(f.get("description")),
        kind: smart.then(|| "Smart".to_string()),
        rules,
        ..Default::default()
    };
    match groups::create_group(&st.db, s.spot_id, n).await {
        Ok(g) => Ok(Redirect::to(&format!("/console/groups/{}", g.id)).into_response()),
        Err(Error::Invalid { field, reason }) if !smart => {
            let mut r = groups_page(&st, &s, 1, Some((field, reason))).await?;
            *r.status_mut() = axum::http::StatusCode::BAD_REQUEST;
            Ok(r)
        }
        Err(Error::Invalid { field, reason }) => {
            let (top, conds) = builder_rows(&f);
            let mut r = builder_page(&st, &s, f.get("name"), &top, conds, Some((field, reason))).await?;
            *r.status_mut() = axum::http::StatusCode::BAD_REQUEST;
            Ok(r)
        }
        Err(e) => Err(e.into()),
    }
}

/// Conditions shown by the rule builder, and triggers per condition.
const BUILDER_CONDITIONS: usize = 3;
const BUILDER_TRIGGERS: usize = 3;

/// The builder's rows: `operator`, then `c{i}.operator` and `c{i}.t{j}.{field,op,value}`.
fn builder_rows(f: &Fields) -> (String, Vec<ConditionInput>) {
    let conds = (0..BUILDER_CONDITIONS)
        .map(|i| ConditionInput {
            operator: f.get(&format!("c{i}.operator")).to_string(),
            triggers: (0..BUILDER_TRIGGERS)
                .map(|j| TriggerInput {
                    field: f.get(&format!("c{i}.t{j}.field")).to_string(),
                    op: f.get(&format!("c{i}.t{j}.op")).to_string(),
                    value: f.get(&format!("c{i}.t{j}.value")).to_string(),
                })
                .collect(),
        })
        .collect();
    (f.get("operator").to_string(), conds)
}

#[derive(Template)]
#[template(path = "console/group_builder.html")]
struct BuilderPage {
    nav: Nav,
    name: String,
    top: String,
    conds: Vec<ConditionInput>,
    fields: Vec<String>,
    props: Vec<PropertyDef>,
    ops: &'static [&'static str],
    error: Option<(String, String)>,
}

async fn builder_page(
    st: &AppState,
    s: &console::ConsoleSession,
    name: &str,
    top: &str,
    mut conds: Vec<ConditionInput>,
    error: Option<(String, String)>,
) -> PageResult {
    let props = properties::list_properties(&st.db, s.spot_id).await?;
    let mut fields: Vec<String> = RULE_FIELDS.iter().map(|f| f.to_string()).collect();
    fields.extend(props.iter().map(|p| format!("customProperties.{}", p.slug)));
    conds.resize_with(BUILDER_CONDITIONS, Default::default);
    for c in &mut conds {
        c.triggers.resize_with(BUILDER_TRIGGERS, Default::default);
    }
    Ok(render(&BuilderPage {
        nav: Nav::of(s, "groups"),
        name: name.to_string(),
        top: top.to_string(),
        conds,
        fields,
        props,
        ops: super::ALL_OPS,
        error,
    }))
}

async fn new_smart(State(st): State<AppState>, Admin(s): Admin) -> PageResult {
    builder_page(&st, &s, "", "AND", Vec::new(), None).await
}

/// The live count: how many members the builder's rules hold now (an htmx fragment).
async fn preview(State(st): State<AppState>, Admin(s): Admin, body: Bytes) -> PageResult {
    let f = Fields::from_body(&body);
    let (top, conds) = builder_rows(&f);
    let rules = console::rules_from_builder(&st.db, s.spot_id, &top, &conds).await?;
    let text = match console::count_rule_matches(&st.db, s.spot_id, &rules).await {
        Ok(n) => format!("<span class=\"ok\">{n} members match now</span>"),
        Err(Error::Invalid { field, reason }) => {
            format!("<span class=\"error\">{}: {}</span>", escape(&field), escape(&reason))
        }
        Err(e) => return Err(e.into()),
    };
    Ok(Html(text).into_response())
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

#[derive(Template)]
#[template(path = "console/group.html")]
struct GroupPage {
    nav: Nav,
    g: Group,
    rules: String,
    members: Vec<Member>,
    total: i64,
    page: u32,
    blacklist: Vec<Member>,
    q: String,
    found: Vec<Member>,
}

async fn show(
    State(st): State<AppState>,
    Admin(s): Admin,
    Path(id): Path<String>,
    Query(q): Query<PageQuery>,
) -> PageResult {
    let id = group_id(&id)?;
    let g = groups::get_group(&st.db, s.spot_id, id).await?;
    let page = q.page.unwrap_or(1).max(1);
    let (members, total) =
        groups::list_group_members(&st.db, s.spot_id, id, &ListQuery { page, limit: 50, filters: Vec::new() }).await?;
    let blacklist = if g.is_smart() { console::group_blacklist(&st.db, s.spot_id, id).await? } else { Vec::new() };
    let found = if q.q.trim().is_empty() {
        Vec::new()
    } else {
        let mq = MemberQuery { q: q.q.clone(), ..Default::default() };
        console::search_members(&st.db, s.spot_id, &mq).await?.items.into_iter().take(20).collect()
    };
    let rules = g.rules_json().map(|r| serde_json::to_string_pretty(&r).unwrap_or_default()).unwrap_or_default();
    Ok(render(&GroupPage { nav: Nav::of(&s, "groups"), g, rules, members, total, page, blacklist, q: q.q, found }))
}

async fn add(State(st): State<AppState>, Admin(s): Admin, Path(id): Path<String>, body: Bytes) -> PageResult {
    let id = group_id(&id)?;
    let ids = Fields::from_body(&body).all("member");
    if !ids.is_empty() {
        groups::bulk_add(&st.db, s.spot_id, id, &ids).await?;
    }
    Ok(Redirect::to(&format!("/console/groups/{id}")).into_response())
}

async fn remove(State(st): State<AppState>, Admin(s): Admin, Path(id): Path<String>, body: Bytes) -> PageResult {
    let id = group_id(&id)?;
    let ids = Fields::from_body(&body).all("member");
    if !ids.is_empty() {
        groups::bulk_remove(&st.db, s.spot_id, id, &ids).await?;
    }
    Ok(Redirect::to(&format!("/console/groups/{id}")).into_response())
}

async fn blacklist(State(st): State<AppState>, Admin(s): Admin, Path(id): Path<String>, body: Bytes) -> PageResult {
    let id = group_id(&id)?;
    let f = Fields::from_body(&body);
    let ids = f.all("member");
    if !ids.is_empty() {
        groups::change_blacklist(&st.db, s.spot_id, id, &ids, f.get("on") == "1").await?;
    }
    Ok(Redirect::to(&format!("/console/groups/{id}")).into_response())
}

async fn delete(State(st): State<AppState>, Admin(s): Admin, Path(id): Path<String>) -> PageResult {
    groups::delete_group(&st.db, s.spot_id, group_id(&id)?).await?;
    Ok(Redirect::to("/console/groups").into_response())
}

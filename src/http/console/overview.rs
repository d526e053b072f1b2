//! Page 1, Overview: member counts by status, recent joins, groups and courses at a glance.

use askama::Template;
use axum::extract::State;

use super::{render, Admin, Nav, PageResult};
use crate::domain::console::{self, Overview};
use crate::http::AppState;

#[derive(Template)]
#[template(path = "console/overview.html")]
struct OverviewPage {
    nav: Nav,
    o: Overview,
}

pub async fn page(State(st): State<AppState>, Admin(s): Admin) -> PageResult {
    let o = console::overview(&st.db, s.spot_id).await?;
    Ok(render(&OverviewPage { nav: Nav::of(&s, "overview"), o }))
}

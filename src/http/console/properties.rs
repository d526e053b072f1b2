//! Page 5, Custom properties: definitions (type, options), renaming labels and
//! options (stored values follow), and what uses each (smart groups reading it).

use std::collections::HashMap;

use askama::Template;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Redirect};
use axum::routing::{get, post};
use axum::Router;

use super::form::Fields;
use super::{render, Admin, Nav, PageResult};
use crate::domain::console::{self, ConsoleSession};
use crate::domain::properties::{self, NewProperty, PropertyDef, PropertyPatch};
use crate::domain::vocab::PropertyType;
use crate::error::Error;
use crate::http::AppState;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/console/properties", get(list).post(create))
        .route("/console/properties/{slug}", post(edit))
        .route("/console/properties/{slug}/delete", post(delete))
}

#[derive(Template)]
#[template(path = "console/properties.html")]
struct PropertiesPage {
    nav: Nav,
    props: Vec<PropertyDef>,
    uses: HashMap<String, Vec<String>>,
    kinds: &'static [PropertyType],
    error: Option<(String, String, String)>,
}

impl PropertiesPage {
    /// The error of `field` in the form of property `slug` ("" for the new-property form).
    fn error_for(&self, slug: &str, field: &str) -> Option<&str> {
        self.error.as_ref().filter(|(s, f, _)| s == slug && f == field).map(|(_, _, r)| r.as_str())
    }
    fn other_error(&self, slug: &str) -> Option<&str> {
        self.error
            .as_ref()
            .filter(|(s, f, _)| {
                s == slug && !["label", "type", "possibleValues", "renamedValues"].contains(&f.as_str())
            })
            .map(|(_, _, r)| r.as_str())
    }
    fn uses_of(&self, slug: &str) -> String {
        self.uses.get(slug).map(|g| g.join(", ")).unwrap_or_default()
    }
}

async fn page(st: &AppState, s: &ConsoleSession, error: Option<(String, String, String)>) -> PageResult {
    let props = properties::list_properties(&st.db, s.spot_id).await?;
    let uses = console::property_uses(&st.db, s.spot_id).await?;
    let mut r = render(&PropertiesPage {
        nav: Nav::of(s, "properties"),
        props,
        uses,
        kinds: PropertyType::ALL,
        error: error.clone(),
    });
    if error.is_some() {
        *r.status_mut() = axum::http::StatusCode::BAD_REQUEST;
    }
    Ok(r)
}

async fn list(State(st): State<AppState>, Admin(s): Admin) -> PageResult {
    page(&st, &s, None).await
}

fn options(raw: &str) -> Option<Vec<String>> {
    let v: Vec<String> = raw.split(',').map(|o| o.trim().to_string()).filter(|o| !o.is_empty()).collect();
    (!v.is_empty()).then_some(v)
}

async fn create(State(st): State<AppState>, Admin(s): Admin, body: Bytes) -> PageResult {
    let f = Fields::from_body(&body);
    let n = NewProperty {
        slug: None,
        label: Some(f.get("label").to_string()),
        description: None,
        kind: Some(f.get("type").to_string()),
        possible_values: options(f.get("options")),
    };
    match properties::create_property(&st.db, s.spot_id, n).await {
        Ok(_) => Ok(Redirect::to("/console/properties").into_response()),
        Err(Error::Invalid { field, reason }) => page(&st, &s, Some((String::new(), field, reason))).await,
        Err(e) => Err(e.into()),
    }
}

/// Renames the label, replaces the options and renames options (`old=new`, one a line).
async fn edit(State(st): State<AppState>, Admin(s): Admin, Path(slug): Path<String>, body: Bytes) -> PageResult {
    let f = Fields::from_body(&body);
    let renamed: HashMap<String, String> = f
        .get("renames")
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(a, b)| (a.trim().to_string(), b.trim().to_string()))
        .filter(|(a, b)| !a.is_empty() && !b.is_empty())
        .collect();
    let mut patch =
        PropertyPatch { label: Some(f.get("label").to_string()), renamed_values: renamed, ..Default::default() };
    let def = properties::get_property(&st.db, s.spot_id, &slug).await?;
    if def.kind.is_select() {
        patch.possible_values = options(f.get("options"));
    }
    match properties::update_property(&st.db, s.spot_id, &slug, patch).await {
        Ok(_) => Ok(Redirect::to("/console/properties").into_response()),
        Err(Error::Invalid { field, reason }) => page(&st, &s, Some((slug, field, reason))).await,
        Err(e) => Err(e.into()),
    }
}

async fn delete(State(st): State<AppState>, Admin(s): Admin, Path(slug): Path<String>) -> PageResult {
    properties::delete_property(&st.db, s.spot_id, &slug).await?;
    Ok(Redirect::to("/console/properties").into_response())
}

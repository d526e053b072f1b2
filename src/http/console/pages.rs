//! The signed-in pages after the Overview, one module each, mounted here.

use axum::Router;

use crate::http::AppState;

pub fn routes() -> Router<AppState> {
    Router::new()
        .merge(super::members::routes())
        .merge(super::groups::routes())
        .merge(super::courses::routes())
        .merge(super::properties::routes())
        .merge(super::settings::routes())
        .merge(super::import::routes())
}

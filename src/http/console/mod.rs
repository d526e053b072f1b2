//! The operator console (`/console/`): a third adapter beside the two API dialects,
//! rendering server-side HTML (askama templates, checked at compile time) with htmx for
//! partial updates. Its handlers call the domain only, like the dialects do.
//!
//! Security model (see `docs/console.md`): the session cookie (`HttpOnly`,
//! `SameSite=Lax`, `Secure` when the public URL is https) names a session stored in
//! the database ([`crate::domain::console`]); [`guard`] re-checks it (idle expiry, the
//! member still an Admin) on every request and refuses a state-changing request whose
//! CSRF token (header `X-CSRF-Token`, form field or query parameter `_csrf`) is not
//! the session's. Assets are compiled into the binary.

pub mod auth;
pub mod courses;
pub mod form;
pub mod groups;
pub mod import;
pub mod members;
pub mod overview;
pub mod pages;
pub mod properties;
pub mod settings;

use askama::Template;
use axum::body::Body;
use axum::extract::{FromRequestParts, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;

use super::AppState;
use crate::domain::console::{self, ConsoleSession};
use crate::error::Error;

/// The session cookie's name.
pub const COOKIE: &str = "openspot_console";
/// The CSRF token's header (htmx sends it on every request, see `base.html`).
pub const CSRF_HEADER: &str = "x-csrf-token";
/// The CSRF token's form field and query parameter.
pub const CSRF_FIELD: &str = "_csrf";

const HTMX_JS: &[u8] = include_bytes!("../../../assets/console/htmx.min.js");
const CONSOLE_CSS: &str = include_str!("../../../assets/console/console.css");

pub fn routes(state: AppState) -> Router<AppState> {
    let signed_in = Router::new()
        .route("/console/", get(overview::page))
        .route("/console/logout", post(auth::logout))
        .merge(pages::routes())
        .route_layer(axum::middleware::from_fn_with_state(state, guard));
    Router::new()
        .route("/console", get(|| async { Redirect::to("/console/") }))
        .route("/console/login", get(auth::login_form).post(auth::login))
        .route("/console/link", get(auth::link_form).post(auth::link))
        .route("/console/assets/htmx.min.js", get(htmx_js))
        .route("/console/assets/console.css", get(console_css))
        .merge(signed_in)
}

async fn htmx_js() -> Response {
    asset("text/javascript; charset=utf-8", Body::from(HTMX_JS))
}

async fn console_css() -> Response {
    asset("text/css; charset=utf-8", Body::from(CONSOLE_CSS))
}

fn asset(content_type: &'static str, body: Body) -> Response {
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
            (header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=3600")),
        ],
        body,
    )
        .into_response()
}

/// The value of the session cookie, if the request has one.
pub fn session_cookie(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value.trim().to_string())
        .filter(|v| !v.is_empty())
}

/// Sends the browser to the sign-in page: a redirect, or `HX-Redirect` for htmx requests
/// (whose redirects htmx would otherwise follow into a fragment).
fn to_login(headers: &HeaderMap) -> Response {
    if headers.contains_key("hx-request") {
        let mut r = StatusCode::NO_CONTENT.into_response();
        r.headers_mut().insert("hx-redirect", HeaderValue::from_static("/console/login"));
        return r;
    }
    Redirect::to("/console/login").into_response()
}

/// Every signed-in route: the session must be valid now (else to the sign-in page), and
/// a state-changing request must carry the session's CSRF token (else 403).
async fn guard(State(st): State<AppState>, req: Request, next: Next) -> Response {
    let Some(cookie) = session_cookie(req.headers()) else {
        return to_login(req.headers());
    };
    let session = match console::authenticate(&st.db, &cookie).await {
        Ok(s) => s,
        Err(Error::Unauthorized(_)) => return to_login(req.headers()),
        Err(e) => return ConsoleError(e).into_response(),
    };
    let mut req = if matches!(*req.method(), Method::GET | Method::HEAD) {
        req
    } else {
        match check_csrf(req, &session).await {
            Ok(req) => req,
            Err(resp) => return resp,
        }
    };
    req.extensions_mut().insert(session);
    let mut resp = next.run(req).await;
    // Pages show member data: never cached, never framed.
    let h = resp.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert("x-frame-options", HeaderValue::from_static("DENY"));
    resp
}

/// Passes the request on when its CSRF token is the session's: from the header, the
/// query string, or (for a URL-encoded form) the body, which is then put back.
async fn check_csrf(req: Request, session: &ConsoleSession) -> Result<Request, Response> {
    let from_header = req.headers().get(CSRF_HEADER).and_then(|v| v.to_str().ok()).map(str::to_string);
    let from_query = req
        .uri()
        .query()
        .and_then(|q| form_urlencoded::parse(q.as_bytes()).find(|(k, _)| k == CSRF_FIELD).map(|(_, v)| v.into_owned()));
    if let Some(token) = from_header.or(from_query) {
        return if console::csrf_matches(session, &token) { Ok(req) } else { Err(forbidden()) };
    }
    let is_form = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    if !is_form {
        return Err(forbidden());
    }
    let (parts, body) = req.into_parts();
    let bytes = match axum::body::to_bytes(body, super::BODY_LIMIT).await {
        Ok(b) => b,
        Err(_) => return Err(ConsoleError(Error::TooLarge).into_response()),
    };
    let token = form_urlencoded::parse(&bytes).find(|(k, _)| k == CSRF_FIELD).map(|(_, v)| v.into_owned());
    if !token.is_some_and(|t| console::csrf_matches(session, &t)) {
        return Err(forbidden());
    }
    Ok(Request::from_parts(parts, Body::from(bytes)))
}

fn forbidden() -> Response {
    ConsoleError(Error::Forbidden(
        "The form was stale or not sent by the console: reload the page and try again".into(),
    ))
    .into_response()
}

/// The signed-in admin, put in the request by [`guard`].
pub struct Admin(pub ConsoleSession);

impl<S: Send + Sync> FromRequestParts<S> for Admin {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut axum::http::request::Parts, _: &S) -> Result<Self, Response> {
        parts.extensions.get::<ConsoleSession>().cloned().map(Admin).ok_or_else(|| to_login(&parts.headers))
    }
}

/// What every signed-in page's layout shows.
#[derive(Clone, Debug)]
pub struct Nav {
    pub spot_name: String,
    pub email: String,
    pub csrf: String,
    /// The section highlighted in the navigation.
    pub active: &'static str,
}

impl Nav {
    pub fn of(s: &ConsoleSession, active: &'static str) -> Nav {
        Nav { spot_name: s.spot_name.clone(), email: s.email.clone(), csrf: s.csrf_token.clone(), active }
    }
}

/// The navigation: (key, path, label).
pub const SECTIONS: &[(&str, &str, &str)] = &[
    ("overview", "/console/", "Overview"),
    ("members", "/console/members", "Members"),
    ("groups", "/console/groups", "Groups"),
    ("courses", "/console/courses", "Courses"),
    ("properties", "/console/properties", "Custom properties"),
    ("import", "/console/import", "Import"),
    ("settings", "/console/settings", "Settings"),
];

/// A millisecond timestamp as `YYYY-MM-DD HH:MM` UTC (templates).
pub fn date(ms: &i64) -> String {
    let format = time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]");
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(*ms) * 1_000_000)
        .ok()
        .and_then(|t| t.format(&format).ok())
        .unwrap_or_default()
}

/// Every filter operator's name, for the member filter's operator list.
pub const ALL_OPS: &[&str] = &["eq", "neq", "gt", "gte", "lt", "lte", "in", "notin", "contains", "before", "after"];

/// A property's JSON value as a form field shows it ("" when unset; lists comma-joined).
pub fn value_text(v: &serde_json::Value) -> String {
    use serde_json::Value;
    match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        Value::Array(items) => items.iter().map(value_text).collect::<Vec<_>>().join(", "),
        other => other.to_string(),
    }
}

/// Renders a template as an HTML page.
pub fn render<T: Template>(t: &T) -> Response {
    match t.render() {
        Ok(html) => Html(html).into_response(),
        Err(e) => ConsoleError(Error::Internal(anyhow::anyhow!("template: {e}"))).into_response(),
    }
}

#[derive(Template)]
#[template(path = "console/error.html")]
struct ErrorPage {
    status: u16,
    message: String,
}

/// A domain error as a console page (404 for another spot's ids, like the API).
pub struct ConsoleError(pub Error);

impl From<Error> for ConsoleError {
    fn from(e: Error) -> Self {
        ConsoleError(e)
    }
}

impl IntoResponse for ConsoleError {
    fn into_response(self) -> Response {
        super::error::render(&self.0, |status, message| {
            let code = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let page = ErrorPage { status, message };
            let html = page.render().unwrap_or_else(|_| "Error".to_string());
            (code, Html(html)).into_response()
        })
    }
}

/// A console handler's result.
pub type PageResult = Result<Response, ConsoleError>;

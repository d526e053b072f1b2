//! Signing in (password or one-time link), picking a spot, signing out.

use askama::Template;
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use serde::Deserialize;

use super::{render, session_cookie, Admin, ConsoleError, PageResult, COOKIE};
use crate::domain::console::{self, NewSession, SignIn, SpotChoice};
use crate::error::Error;
use crate::http::server::ClientIp;
use crate::http::AppState;

#[derive(Template)]
#[template(path = "console/login.html")]
struct LoginPage {
    email: String,
    error: Option<String>,
}

#[derive(Template)]
#[template(path = "console/pick.html")]
struct PickPage {
    choices: Vec<SpotChoice>,
}

#[derive(Template)]
#[template(path = "console/link.html")]
struct LinkPage {
    token: String,
}

pub async fn login_form() -> Response {
    render(&LoginPage { email: String::new(), error: None })
}

#[derive(Deserialize)]
pub struct LoginForm {
    #[serde(default)]
    email: String,
    #[serde(default)]
    password: String,
}

/// `Set-Cookie` for a new session (`Secure` when the console is reached over https).
fn session_cookie_header(st: &AppState, value: &str) -> HeaderValue {
    let secure = if st.config.public_url.starts_with("https://") { "; Secure" } else { "" };
    HeaderValue::from_str(&format!("{COOKIE}={value}; Path=/console; HttpOnly; SameSite=Lax{secure}"))
        .unwrap_or_else(|_| HeaderValue::from_static(""))
}

fn signed_in(st: &AppState, s: &NewSession) -> Response {
    let mut r = Redirect::to("/console/").into_response();
    r.headers_mut().insert(header::SET_COOKIE, session_cookie_header(st, &s.cookie_value));
    r
}

pub async fn login(State(st): State<AppState>, ip: ClientIp, Form(f): Form<LoginForm>) -> Response {
    match console::sign_in_with_password(&st.db, &f.email, &f.password, ip.0).await {
        Ok(SignIn::Session(s)) => signed_in(&st, &s),
        Ok(SignIn::Choose(choices)) => render(&PickPage { choices }),
        Err(e @ (Error::Unauthenticated(_) | Error::Invalid { .. })) => {
            let message = match e {
                Error::Invalid { reason, .. } => reason,
                _ => "Wrong email or password".to_string(),
            };
            let mut r = render(&LoginPage { email: f.email, error: Some(message) });
            *r.status_mut() = StatusCode::UNAUTHORIZED;
            r
        }
        Err(e @ Error::RateLimited { .. }) => {
            let mut r = ConsoleError(e).into_response();
            *r.status_mut() = StatusCode::TOO_MANY_REQUESTS;
            r
        }
        Err(e) => ConsoleError(e).into_response(),
    }
}

#[derive(Deserialize)]
pub struct LinkQuery {
    #[serde(default)]
    token: String,
}

/// A link opened in a browser shows a button: fetching it (as mail scanners do) does
/// not spend it, only the button's POST does.
pub async fn link_form(Query(q): Query<LinkQuery>) -> Response {
    render(&LinkPage { token: q.token })
}

pub async fn link(State(st): State<AppState>, ip: ClientIp, Form(q): Form<LinkQuery>) -> Response {
    match console::sign_in_with_link(&st.db, &q.token, ip.0).await {
        Ok(s) => signed_in(&st, &s),
        Err(Error::Unauthenticated(_)) => {
            let mut r = render(&LoginPage {
                email: String::new(),
                error: Some("This sign-in link is expired or was already used: ask for a new one".into()),
            });
            *r.status_mut() = StatusCode::UNAUTHORIZED;
            r
        }
        Err(e) => ConsoleError(e).into_response(),
    }
}

pub async fn logout(State(st): State<AppState>, _admin: Admin, headers: HeaderMap) -> PageResult {
    if let Some(cookie) = session_cookie(&headers) {
        console::sign_out(&st.db, &cookie).await?;
    }
    let mut r = Redirect::to("/console/login").into_response();
    r.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_str(&format!("{COOKIE}=; Path=/console; HttpOnly; SameSite=Lax; Max-Age=0"))
            .unwrap_or_else(|_| HeaderValue::from_static("")),
    );
    Ok(r)
}

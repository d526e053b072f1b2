//! The Kaizala connectors API dialect under `/kaizala` (`kaizala-api.md` §1–4,
//! contract §6): a thin adapter over the same domain as `/v1`.
//!
//! What makes it Kaizala: lenient request bodies ([`lenient`]), token auth from the
//! `accessToken` header (any case) or `Authorization: Bearer`, the error body
//! `{message, errorCode, errorCategoryKey}`, per-connector and per-spot throttling,
//! and paths as real clients write them (`subgroups` in any case, `@1` id suffixes,
//! a doubled slash after the base URL), normalised by [`normalize_path`] before routing.

pub mod auth;
pub mod groups;
pub mod lenient;
pub mod webhooks;

use axum::extract::{FromRequest, FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::de::DeserializeOwned;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;

use super::extract::body_bytes;
use super::server::ClientIp;
use super::AppState;
use crate::domain::ids::{GroupId, MemberId};
use crate::domain::kaizala::KzCaller;
use crate::domain::rate_limit::MINUTE_MS;
use crate::error::{Entity, Error};

pub fn routes(state: AppState) -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .merge(groups::routes().route_layer(axum::middleware::from_fn_with_state(state.clone(), guard)))
        .merge(webhooks::routes().route_layer(axum::middleware::from_fn_with_state(state, guard)))
        .merge(auth::routes())
}

/// The Kaizala error body.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct KzErrorBody {
    #[schema(example = "Invalid token. Failure reason:Token validation failed due to unknown reason!")]
    pub message: String,
    #[schema(example = "InvalidToken")]
    pub error_code: String,
    #[schema(example = "AuthException")]
    pub error_category_key: String,
}

/// Messages clients match on (kaizala-api.md §1.7).
pub const MSG_TOKEN_MISSING: &str = "Token missing. Header should have token as value of ACCESSTOKEN";
pub const MSG_TOKEN_INVALID: &str = "Invalid token. Failure reason:Token validation failed due to unknown reason!";
pub const MSG_BAD_APP_CREDENTIALS: &str = "Dont have correct applicationId and secret in header!";
pub const MSG_BAD_LOGIN: &str = "Invalid mobile number, PIN or application";

/// The scope of a refresh token from PIN login, and of an access token.
pub const GRANTED_SCOPE: &str = "groupinfo.read,groupinfo.write,groupinfo.remove,groupinfo.update,groupmember.read,\
groupmember.write,groupmember.remove,textmessage.read,textmessage.write";
pub const ACCESS_TOKEN_SCOPE: &str = "token.write";

/// An error on its way out of a Kaizala handler.
#[derive(Debug)]
pub struct KzError(pub Error);

impl<E: Into<Error>> From<E> for KzError {
    fn from(e: E) -> Self {
        KzError(e.into())
    }
}

/// The Kaizala `errorCode` and `errorCategoryKey` of an error.
fn codes(e: &Error) -> (&'static str, &'static str) {
    match e {
        Error::Invalid { .. } | Error::BadRequest(_) | Error::Conflict(_) | Error::TooLarge => {
            ("InvalidParameters", "ClientException")
        }
        Error::NotFound(Entity::Group) => ("GroupNotFound", "ClientException"),
        Error::NotFound(Entity::SpotMember) => ("MemberNotFound", "ClientException"),
        Error::NotFound(_) => ("ResourceNotFound", "ClientException"),
        Error::Unauthorized(_) | Error::InvalidToken(_) => ("InvalidToken", "AuthException"),
        Error::Unauthenticated(_) => ("Unauthenticated", "AuthException"),
        Error::Forbidden(_) => ("AccessDenied", "AuthException"),
        Error::RateLimited { .. } => ("Throttled", "ClientException"),
        Error::TimedOut => ("RequestTimeout", "ServerException"),
        Error::Unavailable(_) | Error::Transient(_) => ("ServiceUnavailable", "ServerException"),
        Error::Internal(_) => ("InternalServerError", "ServerException"),
    }
}

impl IntoResponse for KzError {
    fn into_response(self) -> Response {
        let (error_code, error_category_key) = codes(&self.0);
        super::error::render(&self.0, |status, message| {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let body = KzErrorBody {
                message,
                error_code: error_code.to_string(),
                error_category_key: error_category_key.to_string(),
            };
            (status, Json(body)).into_response()
        })
    }
}

/// Puts the documented text on a refused credential from the domain: `InvalidToken`
/// always reads [`MSG_TOKEN_INVALID`], `Unauthenticated` reads `unauthenticated` (the
/// endpoint's own). Other errors pass unchanged.
pub fn with_wire_text(e: Error, unauthenticated: &str) -> Error {
    match e {
        Error::InvalidToken(_) => Error::InvalidToken(MSG_TOKEN_INVALID.into()),
        Error::Unauthenticated(_) => Error::Unauthenticated(unauthenticated.into()),
        other => other,
    }
}

/// A lenient JSON body (JSON5 syntax, keys lower-cased; see [`lenient`]). DTOs name
/// their fields in lower case (`#[serde(rename_all = "lowercase")]`).
pub struct KzJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for KzJson<T> {
    type Rejection = KzError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = body_bytes(req, state).await?;
        let value = lenient::parse_lenient_body(&bytes).map_err(|e| Error::BadRequest(e.to_string()))?;
        serde_path_to_error::deserialize(value).map(KzJson).map_err(|e| {
            let path = e.path().to_string();
            let field = if path == "." { "body".to_string() } else { path };
            KzError::from(Error::invalid(field, e.into_inner().to_string()))
        })
    }
}

/// The caller, set by [`guard`].
pub struct Caller(pub KzCaller);

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = KzError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<KzCaller>()
            .cloned()
            .map(Caller)
            .ok_or_else(|| KzError(Error::InvalidToken(MSG_TOKEN_MISSING.into())))
    }
}

/// A header by name, any case (HTTP header names are case-insensitive already).
pub fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok()).map(str::trim).filter(|v| !v.is_empty())
}

fn access_token_of(headers: &HeaderMap) -> Option<&str> {
    header(headers, "accesstoken").or_else(|| {
        let raw = header(headers, "authorization")?;
        let (scheme, rest) = raw.split_once(' ')?;
        scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim()).filter(|t| !t.is_empty())
    })
}

/// Authenticates the access token and applies the Kaizala throttles.
/// An address with too many failed tokens this minute is refused before any lookup.
async fn guard(State(st): State<AppState>, mut req: Request, next: Next) -> Response {
    let client_ip = ClientIp::of_request(&st.config, &req).0;
    if let Some(retry_after_s) = st.failed_auth.blocked_for(client_ip) {
        return KzError::from(Error::RateLimited { retry_after_s }).into_response();
    }
    let Some(token) = access_token_of(req.headers()) else {
        st.failed_auth.record_failure(client_ip);
        return KzError(Error::InvalidToken(MSG_TOKEN_MISSING.into())).into_response();
    };
    let caller = match st.kz_tokens.authenticate(&st.db, token).await {
        Ok(c) => c,
        Err(e) => {
            if e.is_auth_failure() {
                st.failed_auth.record_failure(client_ip);
            }
            return KzError(with_wire_text(e, MSG_BAD_APP_CREDENTIALS)).into_response();
        }
    };
    let conn_scope = format!("kz:connector:{}", caller.connector_id);
    let limits = st.config.kaizala_limits;
    for (scope, limit) in
        [(conn_scope.as_str(), limits.per_connector_per_minute), ("kz:spot", limits.per_spot_per_minute)]
    {
        match st.limiter.check(&st.db, caller.spot_id, scope, limit, MINUTE_MS).await {
            Ok(d) if d.allowed => {}
            Ok(d) => return KzError::from(Error::RateLimited { retry_after_s: d.reset_s }).into_response(),
            Err(e) => return KzError::from(e).into_response(),
        }
    }
    req.extensions_mut().insert(caller);
    next.run(req).await
}

/// A group id from a path or body: a UUID, optionally with an `@<n>` suffix.
pub fn group_id(raw: &str) -> Result<GroupId, KzError> {
    let base = raw.trim().split('@').next().unwrap_or_default();
    base.parse().map_err(|_| KzError::from(Error::NotFound(Entity::Group)))
}

pub fn member_id(raw: &str) -> Result<MemberId, KzError> {
    raw.trim().parse().map_err(|_| KzError::from(Error::NotFound(Entity::SpotMember)))
}

/// Rewrites a `/kaizala` request path as real clients write it into the routed form:
/// a doubled slash after `/kaizala` is collapsed, a `subgroups` segment in any case
/// becomes `subGroups`, and an `@<n>` (or `%40<n>`) suffix of a segment is dropped.
/// Empty segments inside the path are kept (they must not match a route).
pub fn normalize_path(path: &str) -> Option<String> {
    let rest = path.strip_prefix("/kaizala")?;
    if !rest.is_empty() && !rest.starts_with('/') {
        return None;
    }
    let rest = rest.strip_prefix("//").map(|r| format!("/{r}")).unwrap_or_else(|| rest.to_string());
    let segments: Vec<String> = rest
        .split('/')
        .map(|seg| {
            if seg.eq_ignore_ascii_case("subgroups") {
                return "subGroups".to_string();
            }
            let cut = seg.find('@').or_else(|| seg.to_ascii_lowercase().find("%40"));
            match cut {
                Some(i)
                    if i > 0
                        && seg[i..]
                            .trim_start_matches('@')
                            .trim_start_matches("%40")
                            .chars()
                            .all(|c| c.is_ascii_digit()) =>
                {
                    seg[..i].to_string()
                }
                _ => seg.to_string(),
            }
        })
        .collect();
    let normalized = format!("/kaizala{}", segments.join("/"));
    (normalized != path).then_some(normalized)
}

/// Applies [`normalize_path`] to a request's URI (before routing).
pub fn normalize_request<B>(mut req: axum::http::Request<B>) -> axum::http::Request<B> {
    if let Some(path) = normalize_path(req.uri().path()) {
        let pq = match req.uri().query() {
            Some(q) => format!("{path}?{q}"),
            None => path,
        };
        let mut parts = req.uri().clone().into_parts();
        if let Ok(p) = pq.parse() {
            parts.path_and_query = Some(p);
            if let Ok(uri) = Uri::from_parts(parts) {
                *req.uri_mut() = uri;
            }
        }
    }
    req
}

/// A boolean query flag read leniently: any key case, `true`/`1`/`yes`.
pub fn query_flag(uri: &Uri, names: &[&str]) -> bool {
    form_urlencoded::parse(uri.query().unwrap_or("").as_bytes()).any(|(k, v)| {
        names.iter().any(|n| k.eq_ignore_ascii_case(n))
            && matches!(v.trim().to_ascii_lowercase().as_str(), "true" | "1" | "yes")
    })
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    #[test]
    fn paths_are_normalized_as_clients_write_them() {
        let g = "df91cb37-97bf-4ccd-a8c2-b2a3ba5eac62";
        assert_eq!(
            normalize_path(&format!("/kaizala/v1/groups/{g}@1/members")),
            Some(format!("/kaizala/v1/groups/{g}/members"))
        );
        assert_eq!(normalize_path(&format!("/kaizala/v1/groups/{g}%401")), Some(format!("/kaizala/v1/groups/{g}")));
        assert_eq!(
            normalize_path(&format!("/kaizala/v1/groups/{g}/subgroups")),
            Some(format!("/kaizala/v1/groups/{g}/subGroups"))
        );
        assert_eq!(
            normalize_path(&format!("/kaizala/v1/groups/{g}/SUBGROUPS")),
            Some(format!("/kaizala/v1/groups/{g}/subGroups"))
        );
        assert_eq!(normalize_path("/kaizala//v1/groups"), Some("/kaizala/v1/groups".into()));
        assert_eq!(normalize_path("/kaizala/v1/groups//subscribers/remove"), None);
        assert_eq!(normalize_path("/kaizala/v1/groups"), None);
        assert_eq!(normalize_path("/v1/groups/x@1"), None);
        assert_eq!(normalize_path("/kaizalax/v1"), None);
    }

    #[test]
    fn tokens_come_from_access_token_or_bearer() {
        let mut h = HeaderMap::new();
        assert_eq!(access_token_of(&h), None);
        h.insert("authorization", HeaderValue::from_static("Bearer abc"));
        assert_eq!(access_token_of(&h), Some("abc"));
        h.insert("AccessToken", HeaderValue::from_static("xyz"));
        assert_eq!(access_token_of(&h), Some("xyz"));
    }

    #[test]
    fn refused_credentials_get_the_documented_text_and_code() {
        let e = with_wire_text(Error::invalid_token(), MSG_BAD_APP_CREDENTIALS);
        assert_eq!(e.to_string(), MSG_TOKEN_INVALID);
        assert_eq!(codes(&e), ("InvalidToken", "AuthException"));
        let e = with_wire_text(Error::unauthenticated(), MSG_BAD_LOGIN);
        assert_eq!(e.to_string(), MSG_BAD_LOGIN);
        assert_eq!(codes(&e), ("Unauthenticated", "AuthException"));
        // A lockout keeps its own text and code.
        let e = with_wire_text(Error::RateLimited { retry_after_s: 60 }, MSG_BAD_LOGIN);
        assert_eq!(codes(&e), ("Throttled", "ClientException"));
        let resp = KzError(e).into_response();
        assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(resp.headers().get("retry-after").map(|v| v.as_bytes()), Some(&b"60"[..]));
        let resp = KzError(Error::TooLarge).into_response();
        assert_eq!(resp.headers().get("connection").map(|v| v.as_bytes()), Some(&b"close"[..]));
    }

    #[test]
    fn group_ids_accept_suffixes() {
        assert!(group_id("df91cb37-97bf-4ccd-a8c2-b2a3ba5eac62@2").is_ok());
        assert!(group_id("nope").is_err());
    }
}

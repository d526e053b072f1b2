//! The MeltingSpot Open API v1 dialect (`/v1/...`): thin handlers over the domain.
//! Each resource module owns its wire DTOs and handlers; this module guards them with
//! API-key auth and the per-spot rate limits (contract §3).

pub mod courses;
pub mod custom_roles;
pub mod groups;
pub mod import;
pub mod members;
pub mod properties;
pub mod webhooks;

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use axum::extract::Request;
use axum::http::{HeaderMap, HeaderName, HeaderValue};
use axum::response::{IntoResponse, Response};
use utoipa_axum::router::OpenApiRouter;

use super::error::MsError;
use super::server::ClientIp;
use super::AppState;
use crate::domain::rate_limit::{Decision, DAY_MS, TEN_SECONDS_MS};
use crate::error::Error;

pub fn routes(state: AppState) -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .merge(members::routes())
        .merge(custom_roles::routes())
        .merge(groups::routes())
        .merge(courses::routes())
        .merge(properties::routes())
        .merge(import::routes())
        .merge(webhooks::routes())
        .route_layer(GuardLayer(state))
}

/// The key of `Authorization: <key>` or `Authorization: Bearer <key>`.
fn api_key(headers: &HeaderMap) -> Option<&str> {
    let raw = headers.get(axum::http::header::AUTHORIZATION)?.to_str().ok()?.trim();
    let key = match raw.split_once(' ') {
        Some((scheme, rest)) if scheme.eq_ignore_ascii_case("bearer") => rest.trim(),
        _ if raw.eq_ignore_ascii_case("bearer") => "",
        _ => raw,
    };
    (!key.is_empty()).then_some(key)
}

fn set_rate_headers(headers: &mut HeaderMap, d: &Decision) {
    // This runs on every `/v1` answer: names parsed once; of the values, only
    // `remaining` is formatted (an allocation) each time. The 10-second window's reset
    // is 1 to 10 s (static texts), and a spot's limit is the same from one request to
    // the next (the last one formatted is kept per thread, so a clone is a reference
    // count).
    static LIMIT: HeaderName = HeaderName::from_static("ratelimit-limit");
    static REMAINING: HeaderName = HeaderName::from_static("ratelimit-remaining");
    static RESET: HeaderName = HeaderName::from_static("ratelimit-reset");
    const SECONDS: [&str; 11] = ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9", "10"];
    thread_local! {
        static LAST_LIMIT: std::cell::RefCell<(i64, HeaderValue)> =
            const { std::cell::RefCell::new((0, HeaderValue::from_static("0"))) };
    }
    let limit = LAST_LIMIT.with_borrow_mut(|last| {
        if last.0 != d.limit {
            *last = (d.limit, HeaderValue::from(d.limit));
        }
        last.1.clone()
    });
    let reset = match SECONDS.get(d.reset_s as usize) {
        Some(text) => HeaderValue::from_static(text),
        None => HeaderValue::from(d.reset_s),
    };
    headers.insert(LIMIT.clone(), limit);
    headers.insert(REMAINING.clone(), HeaderValue::from(d.remaining));
    headers.insert(RESET.clone(), reset);
}

/// The guard of every `/v1` route ([`guard`]), applied per route with `route_layer`
/// (so that a 404 or 405 needs no key).
///
/// A hand-written service rather than `axum::middleware::from_fn`: on every request a
/// `from_fn` layer also boxes its inner service into a `Next`, boxes its future and
/// boxes the response body again; this one moves its route into its future and calls it
/// there (issue 17, item 4).
#[derive(Clone)]
pub struct GuardLayer(pub AppState);

impl<S> tower::Layer<S> for GuardLayer {
    type Service = Guard<S>;

    fn layer(&self, inner: S) -> Guard<S> {
        Guard { inner, st: self.0.clone() }
    }
}

/// The service of [`GuardLayer`].
#[derive(Clone)]
pub struct Guard<S> {
    inner: S,
    st: AppState,
}

impl<S> tower::Service<Request> for Guard<S>
where
    S: tower::Service<Request, Response = Response, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request) -> Self::Future {
        // The instance polled ready goes with this request; a clone stays for the next
        // (an axum route is always ready).
        let clone = self.inner.clone();
        let route = std::mem::replace(&mut self.inner, clone);
        let st = self.st.clone();
        Box::pin(async move { Ok(guard(st, req, route).await) })
    }
}

/// Authenticates the caller, spends one request of each budget, calls `route` and
/// stamps the `RateLimit-*` headers (10-second window) on its answer.
/// An address with too many failed keys this minute is refused before any lookup.
async fn guard<S>(st: AppState, mut req: Request, mut route: S) -> Response
where
    S: tower::Service<Request, Response = Response, Error = Infallible>,
{
    let client_ip = ClientIp::of_request(&st.config, &req).0;
    let Some(key) = api_key(req.headers()) else {
        st.failed_auth.record_failure(client_ip);
        return MsError(Error::Unauthorized("Unauthorized".into())).into_response();
    };
    // An address over its failures is refused without a lookup, unless the key is
    // one this process already knows to be valid (a client behind the same NAT).
    if let Some(retry_after_s) = st.failed_auth.blocked_for(client_ip) {
        if st.keys.cached_valid(key).is_none() {
            return MsError(Error::RateLimited { retry_after_s }).into_response();
        }
    }
    let authed = match st.keys.authenticate(&st.db, key, st.config.default_limits).await {
        Ok(a) => a,
        Err(e) => {
            if matches!(e, Error::Unauthorized(_)) {
                st.failed_auth.record_failure(client_ip);
            }
            return MsError(e).into_response();
        }
    };
    let short = match st.limiter.check(&st.db, authed.spot_id, "v1:10s", authed.limits.per_10s, TEN_SECONDS_MS).await {
        Ok(d) => d,
        Err(e) => return MsError(e).into_response(),
    };
    let refused = if !short.allowed {
        Some(short.reset_s)
    } else {
        match st.limiter.check(&st.db, authed.spot_id, "v1:day", authed.limits.per_day, DAY_MS).await {
            Ok(d) if d.allowed => None,
            Ok(d) => Some(d.reset_s),
            Err(e) => return MsError(e).into_response(),
        }
    };
    let mut resp = match refused {
        Some(retry_after_s) => MsError(Error::RateLimited { retry_after_s }).into_response(),
        None => {
            req.extensions_mut().insert(authed);
            match route.call(req).await {
                Ok(resp) => resp,
                Err(never) => match never {},
            }
        }
    };
    set_rate_headers(resp.headers_mut(), &short);
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The values are the decision's, whether formatted, kept from the last answer or static.
    #[test]
    fn rate_headers_carry_the_decision() {
        for (limit, remaining, reset_s) in [(100, 99, 10), (100, 0, 1), (50_000, 7, 86_400), (100, 5, 0)] {
            let mut h = HeaderMap::new();
            set_rate_headers(&mut h, &Decision { allowed: true, limit, remaining, reset_s });
            assert_eq!(h["ratelimit-limit"], limit.to_string().as_str());
            assert_eq!(h["ratelimit-remaining"], remaining.to_string().as_str());
            assert_eq!(h["ratelimit-reset"], reset_s.to_string().as_str());
        }
    }

    #[test]
    fn keys_are_read_raw_or_bearer() {
        let mut h = HeaderMap::new();
        assert_eq!(api_key(&h), None);
        h.insert("authorization", HeaderValue::from_static("os_abc"));
        assert_eq!(api_key(&h), Some("os_abc"));
        h.insert("authorization", HeaderValue::from_static("Bearer os_abc"));
        assert_eq!(api_key(&h), Some("os_abc"));
        h.insert("authorization", HeaderValue::from_static("bearer   os_abc "));
        assert_eq!(api_key(&h), Some("os_abc"));
        h.insert("authorization", HeaderValue::from_static("Bearer "));
        assert_eq!(api_key(&h), None);
    }
}

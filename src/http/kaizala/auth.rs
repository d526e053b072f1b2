//! Kaizala authentication endpoints (`kaizala-api.md` §2, contract §6):
//! `generatePin`, `loginWithPinAndApplicationId`, `accessToken`.

use axum::extract::State;
use axum::http::HeaderMap;
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{
    header, lenient, with_wire_text, KzError, KzErrorBody, KzJson, ACCESS_TOKEN_SCOPE, GRANTED_SCOPE,
    MSG_BAD_APP_CREDENTIALS, MSG_BAD_LOGIN, MSG_TOKEN_INVALID,
};
use crate::domain::kaizala::{self, LoginThrottles};
use crate::error::Error;
use crate::http::server::ClientIp;
use crate::http::AppState;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(generate_pin)).routes(routes!(login_with_pin)).routes(routes!(access_token))
}

/// `{}`: the answer of `generatePin`, whoever the number belongs to.
#[derive(Debug, Serialize, ToSchema)]
pub struct KzEmpty {}

/// Body of `generatePin` (keys in any case; JSON5 syntax accepted).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub struct GeneratePinBody {
    #[schema(rename = "mobileNumber")]
    mobilenumber: Option<String>,
    #[schema(rename = "applicationId")]
    applicationid: Option<String>,
}

fn required(v: Option<String>, field: &str) -> Result<String, KzError> {
    v.filter(|s| !s.trim().is_empty()).ok_or_else(|| KzError::from(Error::invalid(field, "is required")))
}

/// Send a login PIN
///
/// Sends a 4-digit PIN (valid 10 minutes, 5 tries) to a member of the connector's spot
/// through `OPENSPOT_SMS_WEBHOOK_URL`, in the background. Always `{}`: membership is not
/// revealed. Throttled per client address, connector and number (429 `Throttled`).
#[utoipa::path(post, path = "/kaizala/v1/generatePin", tag = "Kaizala: authentication", security(()),
    request_body = GeneratePinBody,
    responses(
        (status = 200, description = "`{}`", body = KzEmpty),
        (status = 400, description = "InvalidParameters", body = KzErrorBody),
        (status = 429, description = "Throttled (per address, connector or number); see `Retry-After`", body = KzErrorBody),
    ))]
async fn generate_pin(
    State(st): State<AppState>,
    ClientIp(client_ip): ClientIp,
    KzJson(body): KzJson<GeneratePinBody>,
) -> Result<Json<KzEmpty>, KzError> {
    let mobile = required(body.mobilenumber, "mobileNumber")?;
    let app = required(body.applicationid, "applicationId")?;
    let throttles = LoginThrottles { limiter: &st.limiter, limits: &st.config.auth, client_ip };
    kaizala::generate_pin(&st.db, &st.pin_delivery, &throttles, &mobile, &app).await?;
    Ok(Json(KzEmpty {}))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub struct LoginBody {
    #[schema(rename = "mobileNumber")]
    mobilenumber: Option<String>,
    #[schema(rename = "applicationId")]
    applicationid: Option<String>,
    /// A number or a string.
    #[serde(default, deserialize_with = "lenient::opt_string_or_number")]
    #[schema(value_type = Option<String>)]
    pin: Option<String>,
    /// Checked when sent.
    #[schema(rename = "applicationSecret")]
    applicationsecret: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct LoginResult {
    refresh_token: String,
    granted_scope: String,
    /// Milliseconds since the epoch.
    refresh_token_expiry: i64,
    endpoint_url: String,
}

/// Exchange a PIN for a refresh token
#[utoipa::path(post, path = "/kaizala/v1/loginWithPinAndApplicationId", tag = "Kaizala: authentication",
    security(()), request_body = LoginBody,
    responses(
        (status = 200, description = "Refresh token", body = LoginResult),
        (status = 400, description = "InvalidParameters", body = KzErrorBody),
        (status = 401, description = "Unauthenticated (wrong PIN, connector or secret)", body = KzErrorBody),
        (status = 429, description = "Throttled, or the number is locked after too many wrong PINs this hour; see `Retry-After`", body = KzErrorBody),
    ))]
async fn login_with_pin(
    State(st): State<AppState>,
    ClientIp(client_ip): ClientIp,
    KzJson(body): KzJson<LoginBody>,
) -> Result<Json<LoginResult>, KzError> {
    let mobile = required(body.mobilenumber, "mobileNumber")?;
    let app = required(body.applicationid, "applicationId")?;
    let pin = required(body.pin, "pin")?;
    let throttles = LoginThrottles { limiter: &st.limiter, limits: &st.config.auth, client_ip };
    let login = kaizala::login_with_pin(&st.db, &throttles, &mobile, &app, &pin, body.applicationsecret.as_deref())
        .await
        .map_err(|e| with_wire_text(e, MSG_BAD_LOGIN))?;
    // The pair's old refresh token was replaced: its cached access tokens go now.
    st.kz_tokens.forget_pair(login.connector_id, login.member_id);
    Ok(Json(LoginResult {
        refresh_token: login.refresh_token,
        granted_scope: GRANTED_SCOPE.to_string(),
        refresh_token_expiry: login.expires_at,
        endpoint_url: format!("{}/kaizala", st.config.public_url),
    }))
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AccessTokenResult {
    access_token: String,
    /// `<public-url>/kaizala`, without a trailing slash.
    endpoint_url: String,
    /// Milliseconds since the epoch (24 h after issue).
    access_token_expiry: i64,
    /// Empty, except in the last 10 % of the refresh token's life: then a new one to store.
    refresh_token: String,
    scope: String,
}

/// Get an access token
///
/// Headers `applicationId`, `applicationSecret` and `refreshToken` (any case).
#[utoipa::path(get, path = "/kaizala/v1/accessToken", tag = "Kaizala: authentication", security(()),
    params(
        ("applicationId" = String, Header), ("applicationSecret" = String, Header), ("refreshToken" = String, Header),
    ),
    responses(
        (status = 200, description = "Access token", body = AccessTokenResult),
        (status = 401, description = "Unauthenticated (connector credentials) or InvalidToken (refresh token)", body = KzErrorBody),
        (status = 429, description = "Throttled: too many failed credential checks from this address", body = KzErrorBody),
    ))]
async fn access_token(
    State(st): State<AppState>,
    ClientIp(client_ip): ClientIp,
    headers: HeaderMap,
) -> Result<Json<AccessTokenResult>, KzError> {
    if let Some(retry_after_s) = st.failed_auth.blocked_for(client_ip) {
        return Err(Error::RateLimited { retry_after_s }.into());
    }
    let (Some(app), Some(secret)) = (header(&headers, "applicationid"), header(&headers, "applicationsecret")) else {
        return Err(Error::Unauthenticated(MSG_BAD_APP_CREDENTIALS.into()).into());
    };
    let Some(refresh) = header(&headers, "refreshtoken") else {
        return Err(Error::InvalidToken(MSG_TOKEN_INVALID.into()).into());
    };
    let g = kaizala::access_token(&st.db, app, secret, refresh).await.map_err(|e| {
        if e.is_auth_failure() {
            st.failed_auth.record_failure(client_ip);
        }
        with_wire_text(e, MSG_BAD_APP_CREDENTIALS)
    })?;
    if g.new_refresh_token.is_some() {
        st.kz_tokens.forget_pair(g.connector_id, g.member_id);
    }
    Ok(Json(AccessTokenResult {
        access_token: g.access_token,
        endpoint_url: format!("{}/kaizala", st.config.public_url),
        access_token_expiry: g.expires_at,
        refresh_token: g.new_refresh_token.unwrap_or_default(),
        scope: ACCESS_TOKEN_SCOPE.into(),
    }))
}

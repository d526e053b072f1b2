//! Kaizala authentication (`kaizala-api.md` §2–3): connectors, operator-minted and
//! PIN-login refresh tokens, 24-hour access tokens and their cache.
//!
//! A connector (application) belongs to one spot. A refresh token is minted for a
//! (connector, member) pair — by the operator's CLI or by PIN login — and exchanged
//! for 24-hour access tokens. All secrets, tokens and PINs are stored as SHA-256 hashes.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use rand::{Rng, RngCore};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tokio::sync::Semaphore;
use uuid::Uuid;

use super::{member_by_mobile, mobile};
use crate::config::AuthLimits;
use crate::domain::auth::HashCache;
use crate::domain::groups;
use crate::domain::ids::{ConnectorId, MemberId, SpotId};
use crate::domain::members::{self, Member};
use crate::domain::now_ms;
use crate::domain::rate_limit::{AttemptWindow, RateLimiter, ANONYMOUS, HOUR_MS, MINUTE_MS};
use crate::domain::vocab::MemberStatus;
use crate::error::{Entity, Error, Result};
use crate::outbound::Outbound;
use crate::store::{self, Db, Tx};

pub const ACCESS_TOKEN_TTL_MS: i64 = 24 * 3600 * 1000;
pub const REFRESH_TOKEN_TTL_MS: i64 = 365 * 24 * 3600 * 1000;
pub const PIN_TTL_MS: i64 = 10 * 60 * 1000;
pub const PIN_TRIES: i64 = 5;

#[derive(Clone, Debug, PartialEq)]
pub struct Connector {
    pub spot_id: SpotId,
    pub id: ConnectorId,
    pub name: String,
    pub created_at: i64,
}

/// Who a token speaks for, and until when.
#[derive(Clone, Debug, PartialEq)]
pub struct TokenGrant {
    pub spot_id: SpotId,
    pub connector_id: ConnectorId,
    pub member_id: MemberId,
    pub issued_at: i64,
    pub expires_at: i64,
}

crate::domain::row_conversions!(Connector, store::connectors::ConnectorRow { spot_id, id, name, created_at });
crate::domain::row_conversions!(
    TokenGrant,
    store::kz_tokens::GrantRow { spot_id, connector_id, member_id, issued_at, expires_at }
);

fn random_token(prefix: &str, bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::rngs::OsRng.fill_bytes(&mut buf);
    format!("{prefix}{}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(buf))
}

/// Access and refresh tokens are [`crate::domain::auth::spot_token`]s with these prefixes.
const TOKEN_PREFIXES: &[&str] = &["kza_", "kzr_"];

fn token_spot(token: &str) -> Option<SpotId> {
    crate::domain::auth::token_spot(token, TOKEN_PREFIXES)
}

fn sha256(s: &str) -> [u8; 32] {
    Sha256::digest(s.as_bytes()).into()
}

fn same_hash(stored: &[u8], candidate: &[u8; 32]) -> bool {
    bool::from(stored.ct_eq(candidate))
}

/// Creates a connector of `spot_id`; returns it with its secret (shown once).
pub async fn create_connector(db: &Db, spot_id: SpotId, name: &str) -> Result<(Connector, String)> {
    let name = name.trim();
    if name.is_empty() {
        return Err(Error::invalid("name", "must not be empty"));
    }
    let secret = random_token("", 18).replace(['-', '_'], "X").to_uppercase();
    let connector = Connector { spot_id, id: ConnectorId::generate(), name: name.to_string(), created_at: now_ms() };
    let mut tx = db.begin().await?;
    store::spots::get(tx.ex(), spot_id).await?.ok_or(Error::NotFound(Entity::Spot))?;
    store::connectors::insert(tx.ex(), &(&connector).into(), &sha256(&secret)).await?;
    tx.commit().await?;
    Ok((connector, secret))
}

pub async fn list_connectors(db: &Db, spot_id: Option<SpotId>) -> Result<Vec<Connector>> {
    let mut c = db.conn().await?;
    Ok(store::connectors::list(c.ex(), spot_id).await?.into_iter().map(Connector::from).collect())
}

/// Deletes a connector; its tokens and PINs go with it.
pub async fn delete_connector(db: &Db, id: ConnectorId) -> Result<()> {
    let mut tx = db.begin().await?;
    if !store::connectors::delete(tx.ex(), id).await? {
        return Err(Error::NotFound(Entity::Connector));
    }
    tx.commit().await?;
    Ok(())
}

/// Mints the (connector, member) refresh token, replacing an older one and revoking
/// the access tokens the old one issued, and registers the member (first `Accepted`
/// sets the registration date, contract §8).
async fn mint_refresh(tx: &mut Tx, connector: &Connector, member: &Member) -> Result<(String, i64)> {
    let now = now_ms();
    if member.status.accepts_on_sign_in() {
        let mut m = member.clone();
        m.set_status(MemberStatus::Accepted, now);
        m.updated_at = now;
        store::members::update(tx.ex(), &(&m).into()).await?;
        let updated = crate::domain::events::Event::MemberUpdated(std::slice::from_ref(&m));
        crate::domain::events::emit(tx, m.spot_id, updated).await?;
        groups::refresh_smart_memberships(tx, &m).await?;
    }
    let token = crate::domain::auth::spot_token("kzr_", connector.spot_id);
    let expires = now + REFRESH_TOKEN_TTL_MS;
    store::kz_tokens::upsert_refresh(
        tx.ex(),
        connector.spot_id,
        connector.id,
        member.id,
        &sha256(&token),
        now,
        expires,
    )
    .await?;
    store::kz_tokens::delete_access_of_pair(tx.ex(), connector.spot_id, connector.id, member.id).await?;
    Ok((token, expires))
}

async fn connector_by_id(db: &Db, raw_id: &str) -> Result<Option<(Connector, Vec<u8>)>> {
    let Ok(id) = raw_id.trim().parse::<ConnectorId>() else { return Ok(None) };
    let mut c = db.conn().await?;
    Ok(store::connectors::get_with_secret(c.ex(), id).await?.map(|(row, hash)| (Connector::from(row), hash)))
}

/// `openspot kaizala tokens create`: an operator-minted user token. The number becomes
/// a spot member (Accepted, Member) if it is not one; a Deactivated, Rejected or Left
/// member gets no token.
pub async fn create_user_token(db: &Db, application_id: &str, mobile_number: &str) -> Result<(String, i64)> {
    let number = mobile("mobile-number", mobile_number)?;
    let (connector, _) = connector_by_id(db, application_id).await?.ok_or(Error::NotFound(Entity::Connector))?;
    let mut tx = db.begin().await?;
    let member = member_by_mobile(&mut tx, connector.spot_id, &number).await?;
    if !member.status.may_sign_in() {
        return Err(Error::invalid(
            "mobile-number",
            format!("belongs to a member whose status is {}: such members get no token", member.status),
        ));
    }
    let out = mint_refresh(&mut tx, &connector, &member).await?;
    tx.commit().await?;
    Ok(out)
}

/// Issues PINs and hands them to the SMS relay, in the background (at most
/// [`PinDelivery::MAX_PENDING`] at once): `generatePin` answers before the PIN is
/// stored or sent, so neither the relay nor the write tells a member's number from
/// another by its timing. Without a relay the log says a PIN was issued, never the PIN.
#[derive(Clone, Debug)]
pub struct PinDelivery {
    sms_webhook_url: Option<String>,
    outbound: Outbound,
    pending: Arc<Semaphore>,
}

impl PinDelivery {
    /// PINs being stored or relayed at once; beyond, a request is dropped (the user asks again).
    pub const MAX_PENDING: usize = 64;

    pub fn new(sms_webhook_url: Option<String>, outbound: Outbound) -> Self {
        PinDelivery { sms_webhook_url, outbound, pending: Arc::new(Semaphore::new(Self::MAX_PENDING)) }
    }

    /// Waits (at most `within`) for the PINs being stored or relayed: a graceful shutdown
    /// calls it, so a PIN the server answered for is not lost with the process.
    pub async fn drain(&self, within: std::time::Duration) {
        let all = Self::MAX_PENDING as u32;
        if tokio::time::timeout(within, self.pending.acquire_many(all)).await.is_err() {
            tracing::warn!("shutdown: some Kaizala PINs were still being delivered");
        }
    }

    /// For a member who may sign in: stores a new PIN, then relays it. For anyone else
    /// the same background slot is taken and nothing happens.
    fn issue(&self, db: &Db, connector: &Connector, member_id: Option<MemberId>, number: String) {
        let Ok(permit) = self.pending.clone().try_acquire_owned() else {
            tracing::warn!("{} PINs are being issued already; this request was dropped", Self::MAX_PENDING);
            return;
        };
        let Some(member_id) = member_id else {
            drop(permit);
            return;
        };
        let (db, connector, this) = (db.clone(), connector.clone(), self.clone());
        tokio::spawn(async move {
            match store_pin(&db, &connector, member_id).await {
                Ok(pin) => this.relay(number, pin).await,
                Err(e) => tracing::warn!(error = %e, "cannot store a Kaizala PIN"),
            }
            drop(permit);
        });
    }

    async fn relay(&self, number: String, pin: String) {
        let Some(url) = &self.sms_webhook_url else {
            tracing::info!("Kaizala PIN issued but not delivered: OPENSPOT_SMS_WEBHOOK_URL is not set");
            return;
        };
        let body = serde_json::json!({"mobileNumber": number, "pin": pin});
        match self.outbound.post_json(url, &body).await {
            Ok(status) if (200..300).contains(&status) => tracing::info!("PIN sent through the SMS relay"),
            Ok(status) => tracing::warn!(status, "SMS relay refused the PIN"),
            // The outermost context only: never the URL (it may carry credentials).
            Err(e) => tracing::warn!(error = %e, "SMS relay unreachable"),
        }
    }
}

/// Stores a new PIN for the (connector, member) pair, replacing a pending one.
async fn store_pin(db: &Db, connector: &Connector, member_id: MemberId) -> Result<String> {
    let pin = rand::rngs::OsRng.gen_range(1000..=9999).to_string();
    let pin_hash = sha256(&format!("{}:{}", connector.id, pin));
    let mut tx = db.begin().await?;
    store::pins::upsert(
        tx.ex(),
        connector.spot_id,
        connector.id,
        member_id,
        &pin_hash,
        now_ms() + PIN_TTL_MS,
        PIN_TRIES,
    )
    .await?;
    tx.commit().await?;
    Ok(pin)
}

/// The throttles PIN login applies before it does any work (SECURITY.md "Kaizala
/// login"): per client address, per connector, and per number within the connector's
/// spot, shared by every replica through the rate-limit windows.
pub struct LoginThrottles<'a> {
    pub limiter: &'a RateLimiter,
    pub limits: &'a AuthLimits,
    pub client_ip: Option<IpAddr>,
}

impl LoginThrottles<'_> {
    async fn spend(&self, db: &Db, spot_id: SpotId, scope: &str, limit: i64, window_ms: i64) -> Result<()> {
        let d = self.limiter.check(db, spot_id, scope, limit, window_ms).await?;
        if d.allowed {
            Ok(())
        } else {
            Err(Error::RateLimited { retry_after_s: d.reset_s })
        }
    }

    async fn per_address(&self, db: &Db, what: &str) -> Result<()> {
        match self.client_ip {
            Some(ip) => {
                let scope = format!("kz:{what}:addr:{ip}");
                self.spend(db, ANONYMOUS, &scope, self.limits.pin_calls_per_address, MINUTE_MS).await
            }
            None => Ok(()),
        }
    }

    async fn per_connector(&self, db: &Db, what: &str, c: &Connector) -> Result<()> {
        let scope = format!("kz:{what}:connector:{}", c.id);
        self.spend(db, c.spot_id, &scope, self.limits.pin_calls_per_connector, MINUTE_MS).await
    }
}

/// The member of the connector's spot with `number`, if there is one who may sign in.
async fn member_who_may_sign_in(db: &Db, connector: &Connector, number: &str) -> Result<Option<Member>> {
    let mut c = db.conn().await?;
    let member = store::members::get_by_mobile(c.ex(), connector.spot_id, number).await?.map(Member::from);
    Ok(member.filter(|m| m.status.may_sign_in()))
}

/// Window of the per-number `generatePin` throttle.
const PIN_REQUEST_WINDOW_MS: i64 = 10 * MINUTE_MS;

/// `POST /generatePin`: issues a PIN to a member of the connector's spot. Members,
/// non-members and members who may not sign in get the same `{}` after the same work
/// (the PIN is stored and sent in the background); an unknown connector gets `{}` too.
/// The per-number budget belongs to the connector's spot, so a stranger with a made-up
/// application id cannot spend it.
pub async fn generate_pin(
    db: &Db,
    delivery: &PinDelivery,
    throttles: &LoginThrottles<'_>,
    mobile_number: &str,
    application_id: &str,
) -> Result<()> {
    let number = mobile("mobileNumber", mobile_number)?;
    throttles.per_address(db, "pin").await?;
    let Some((connector, _)) = connector_by_id(db, application_id).await? else { return Ok(()) };
    throttles.per_connector(db, "pin", &connector).await?;
    let per_number = format!("kz:pin:number:{number}");
    throttles
        .spend(db, connector.spot_id, &per_number, throttles.limits.pins_per_number, PIN_REQUEST_WINDOW_MS)
        .await?;
    let member_id = member_who_may_sign_in(db, &connector, &number).await?.map(|m| m.id);
    delivery.issue(db, &connector, member_id, number);
    Ok(())
}

/// A refresh token from a PIN login, and whose it is.
#[derive(Debug, Clone)]
pub struct PinLogin {
    pub refresh_token: String,
    pub expires_at: i64,
    pub connector_id: ConnectorId,
    pub member_id: MemberId,
}

/// `POST /loginWithPinAndApplicationId`: a refresh token for the PIN's member.
///
/// Once the connector is known, every attempt takes one of the number's
/// [`AuthLimits::pin_failures_per_number`] hourly attempts in the connector's spot
/// (given back on success), whatever the PIN or membership, so neither new PINs nor
/// other connectors of the spot reset the count and a refusal reveals nothing. A PIN's
/// own tries are spent atomically (`UPDATE … WHERE tries_left > 0 RETURNING`), so
/// concurrent guesses cannot share a try; members and non-members cost the same write.
pub async fn login_with_pin(
    db: &Db,
    throttles: &LoginThrottles<'_>,
    mobile_number: &str,
    application_id: &str,
    pin: &str,
    application_secret: Option<&str>,
) -> Result<PinLogin> {
    let number = mobile("mobileNumber", mobile_number)?;
    throttles.per_address(db, "login").await?;
    let Some((connector, secret_hash)) = connector_by_id(db, application_id).await? else {
        return Err(Error::unauthenticated());
    };
    throttles.per_connector(db, "login", &connector).await?;
    let scope = format!("kz:login-attempts:number:{number}");
    let attempts = AttemptWindow {
        spot_id: connector.spot_id,
        scope: &scope,
        window_ms: HOUR_MS,
        limit: throttles.limits.pin_failures_per_number,
    };
    // Over the budget: the number is locked out (429) until the hour ends.
    attempts.take(db).await?;
    if let Some(secret) = application_secret {
        if !same_hash(&secret_hash, &sha256(secret)) {
            return Err(Error::unauthenticated());
        }
    }
    let login = verify_pin(db, &connector, &number, pin).await?;
    attempts.give_back(db).await?;
    Ok(login)
}

async fn verify_pin(db: &Db, connector: &Connector, number: &str, pin: &str) -> Result<PinLogin> {
    let member = member_who_may_sign_in(db, connector, number).await?;
    // A stranger's attempt makes the same write as a member's (on no row), so the
    // answer's timing does not tell them apart.
    let member_id = member.as_ref().map(|m| m.id).unwrap_or_else(|| MemberId(Uuid::nil()));
    let mut tx = db.begin().await?;
    let stored = store::pins::spend_try(tx.ex(), connector.spot_id, connector.id, member_id, now_ms()).await?;
    let (Some(member), Some(hash)) = (member, stored) else {
        tx.commit().await?;
        return Err(Error::unauthenticated());
    };
    if !same_hash(&hash, &sha256(&format!("{}:{}", connector.id, pin.trim()))) {
        tx.commit().await?;
        return Err(Error::unauthenticated());
    }
    store::pins::delete(tx.ex(), connector.spot_id, connector.id, member.id).await?;
    let (refresh_token, expires_at) = mint_refresh(&mut tx, connector, &member).await?;
    tx.commit().await?;
    Ok(PinLogin { refresh_token, expires_at, connector_id: connector.id, member_id: member.id })
}

/// An access token, and a new refresh token when the old one is in the last 10 % of its life.
#[derive(Debug, Clone)]
pub struct AccessGrant {
    pub access_token: String,
    pub expires_at: i64,
    pub new_refresh_token: Option<String>,
    /// Whose token it is (so the caller can forget cached tokens of a replaced pair).
    pub connector_id: ConnectorId,
    pub member_id: MemberId,
}

/// `GET /accessToken`. A member who may no longer sign in gets `InvalidToken`.
pub async fn access_token(
    db: &Db,
    application_id: &str,
    application_secret: &str,
    refresh_token: &str,
) -> Result<AccessGrant> {
    let Some((connector, secret_hash)) = connector_by_id(db, application_id).await? else {
        return Err(Error::unauthenticated());
    };
    if !same_hash(&secret_hash, &sha256(application_secret.trim())) {
        return Err(Error::unauthenticated());
    }
    let mut tx = db.begin().await?;
    let presented = refresh_token.trim();
    let grant =
        store::kz_tokens::get_refresh(tx.ex(), token_spot(presented), &sha256(presented)).await?.map(TokenGrant::from);
    let now = now_ms();
    let Some(grant) = grant.filter(|g| g.connector_id == connector.id && g.expires_at > now) else {
        return Err(Error::invalid_token());
    };
    let member = members::get_in(tx.ex(), grant.spot_id, grant.member_id).await?;
    if !member.status.may_sign_in() {
        return Err(Error::invalid_token());
    }
    // Renewal first: replacing the refresh token revokes the pair's access tokens,
    // and the one issued below must not be among them.
    let life = grant.expires_at - grant.issued_at;
    let new_refresh = if now >= grant.issued_at + life * 9 / 10 {
        Some(mint_refresh(&mut tx, &connector, &member).await?.0)
    } else {
        None
    };
    let access = crate::domain::auth::spot_token("kza_", grant.spot_id);
    let access_grant = TokenGrant { expires_at: now + ACCESS_TOKEN_TTL_MS, issued_at: now, ..grant.clone() };
    store::kz_tokens::purge_expired_access(tx.ex(), grant.spot_id, now).await?;
    store::kz_tokens::insert_access(tx.ex(), &(&access_grant).into(), &sha256(&access)).await?;
    tx.commit().await?;
    Ok(AccessGrant {
        access_token: access,
        expires_at: access_grant.expires_at,
        new_refresh_token: new_refresh,
        connector_id: grant.connector_id,
        member_id: grant.member_id,
    })
}

/// The caller of a Kaizala resource call.
#[derive(Clone, Debug, PartialEq)]
pub struct KzCaller {
    pub spot_id: SpotId,
    pub connector_id: ConnectorId,
    pub member_id: MemberId,
    pub expires_at: i64,
}

/// Access-token lookups, cached briefly so a call costs no extra round-trip. A token
/// whose member was deactivated (or whose refresh token was replaced) stops working
/// within the cache's lifetime ([`crate::config::Config::auth_cache_ttl`]) on every
/// replica, and at once on the one that replaced it.
/// Unknown tokens are cached too, so repeating one costs no lookup.
#[derive(Debug)]
pub struct TokenCache(HashCache<Option<KzCaller>>);

impl TokenCache {
    /// A cache whose entries live for `ttl`.
    pub fn new(ttl: Duration) -> Self {
        TokenCache(HashCache::new(ttl))
    }

    /// The caller of a live access token; [`Error::InvalidToken`] for an unknown,
    /// expired or revoked one, or one whose member may no longer sign in.
    pub async fn authenticate(&self, db: &Db, token: &str) -> Result<KzCaller> {
        let hash = sha256(token.trim());
        let now = now_ms();
        if let Some(cached) = self.0.get(&hash) {
            return cached.filter(|c| c.expires_at > now).ok_or_else(Error::invalid_token);
        }
        let mut c = db.conn().await?;
        let found = store::kz_tokens::get_access(c.ex(), token_spot(token), &hash).await?;
        drop(c);
        let Some((g, status)) = found.filter(|(g, _)| g.expires_at > now) else {
            self.0.put(hash, None);
            return Err(Error::invalid_token());
        };
        if !status.may_sign_in() {
            self.0.put(hash, None);
            return Err(Error::invalid_token());
        }
        let caller = KzCaller {
            spot_id: g.spot_id,
            connector_id: g.connector_id,
            member_id: g.member_id,
            expires_at: g.expires_at,
        };
        self.0.put(hash, Some(caller.clone()));
        Ok(caller)
    }

    /// Forgets the cached tokens of a (connector, member) pair whose refresh token was
    /// just replaced, so they stop working here at once.
    pub fn forget_pair(&self, connector_id: ConnectorId, member_id: MemberId) {
        self.0.retain(|c| c.as_ref().is_some_and(|c| !(c.connector_id == connector_id && c.member_id == member_id)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_names_its_spot_and_an_older_one_none() {
        let spot = SpotId::generate();
        for prefix in ["kza_", "kzr_"] {
            let token = crate::domain::auth::spot_token(prefix, spot);
            assert!(token.starts_with(prefix), "{token}");
            assert_eq!(token_spot(&token), Some(spot));
            assert_eq!(token_spot(&format!(" {token} ")), Some(spot), "read as presented, trimmed");
        }
        assert_ne!(
            crate::domain::auth::spot_token("kza_", spot),
            crate::domain::auth::spot_token("kza_", spot),
            "random"
        );
        for other in
            ["kza_OLDFORMATtokenOLDFORMATtokenOLDFORMATtok", "kza_@@@.x", "kzx_AAAAAAAAAAAAAAAAAAAAAA.x", ".", ""]
        {
            assert_eq!(token_spot(other), None, "{other}");
        }
    }
}

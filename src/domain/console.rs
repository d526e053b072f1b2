//! The operator console's security model, on the domain side: who may sign in (a spot's
//! members whose role is `Admin`), with what (an argon2id password set from the CLI, or
//! a one-time link valid 15 minutes), how sessions live (in the database, so every
//! replica sees them and they survive restarts; idle expiry; one spot per session) and
//! how guessing is bounded (attempt windows per account and per address, exact across
//! replicas). The HTTP adapter (`http::console`) only carries cookies and forms.
//!
//! Secrets (session ids, link tokens) are 32 random bytes shown once and stored as their
//! SHA-256; the role and status are re-read on every request, so a member demoted from
//! Admin loses access at their next request.

use std::net::IpAddr;

use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use argon2::Argon2;
use base64::Engine;
use rand::RngCore;
use sha2::{Digest, Sha256};

use super::groups::Group;
use super::members::Member;
use super::rate_limit::{AttemptWindow, ANONYMOUS};
use super::vocab::{MemberRole, MemberStatus};
use super::{from_rows, now_ms};
use crate::domain::courses::Course;
use crate::domain::filter::ListQuery;
use crate::domain::ids::{MemberId, SpotId};
use crate::error::{Error, Result};
use crate::store::{self, Db};

/// A session unused this long is signed out.
pub const SESSION_IDLE_MS: i64 = 30 * 60 * 1000;
/// A sign-in link is valid this long, once.
pub const LINK_TTL_MS: i64 = 15 * 60 * 1000;
/// A session's last use is written at most this often (not on every request).
const TOUCH_EVERY_MS: i64 = 60 * 1000;
/// Shortest password accepted.
pub const MIN_PASSWORD_CHARS: usize = 12;
/// Failed sign-ins allowed per account (email) and per client address in a window.
pub const FAILURES_PER_ACCOUNT: i64 = 5;
pub const FAILURES_PER_ADDRESS: i64 = 20;
const FAILURE_WINDOW_MS: i64 = 15 * 60 * 1000;

/// The signed-in admin of one request.
#[derive(Clone, Debug)]
pub struct ConsoleSession {
    pub spot_id: SpotId,
    pub member_id: MemberId,
    pub email: String,
    pub spot_name: String,
    /// Every state-changing request must carry it back.
    pub csrf_token: String,
}

/// A session just created: the cookie value is shown here only.
#[derive(Clone, Debug)]
pub struct NewSession {
    pub cookie_value: String,
    pub spot_id: SpotId,
}

/// A spot a person may sign in to, with a one-time token that signs in there.
#[derive(Clone, Debug)]
pub struct SpotChoice {
    pub spot_id: SpotId,
    pub spot_name: String,
    pub token: String,
}

/// What a correct password leads to.
#[derive(Debug)]
pub enum SignIn {
    /// Admin of one spot: signed in.
    Session(NewSession),
    /// Admin of several spots with this password: one to pick (each choice a one-time link).
    Choose(Vec<SpotChoice>),
}

fn random_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn sha256(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// An argon2id PHC string of `password` (on a blocking thread: it is slow on purpose).
pub async fn hash_password(password: String) -> Result<String> {
    tokio::task::spawn_blocking(move || {
        Argon2::default().hash_password(password.as_bytes()).map(|h| h.to_string()).map_err(|e| anyhow::anyhow!("{e}"))
    })
    .await
    .map_err(|e| Error::Internal(e.into()))?
    .map_err(Error::Internal)
}

/// Whether `password` matches the PHC string `stored` (a malformed hash never matches).
async fn verify_password(password: String, stored: String) -> Result<bool> {
    tokio::task::spawn_blocking(move || match PasswordHash::new(&stored) {
        Ok(parsed) => Argon2::default().verify_password(password.as_bytes(), &parsed).is_ok(),
        Err(_) => false,
    })
    .await
    .map_err(|e| Error::Internal(e.into()))
}

/// The Admin member of `email` in the spot (400 naming `email` otherwise).
async fn admin_of(db: &Db, spot_id: SpotId, email: &str) -> Result<Member> {
    super::spots::get_spot(db, spot_id).await?;
    let email_norm = email.trim().to_lowercase();
    let mut c = db.conn().await?;
    let m = store::console::member_by_email(c.ex(), spot_id, &email_norm)
        .await?
        .map(Member::from)
        .ok_or_else(|| Error::invalid("email", format!("no member '{email_norm}' in this spot")))?;
    if m.role != MemberRole::Admin {
        return Err(Error::invalid("email", format!("'{email_norm}' is not an Admin of this spot")));
    }
    Ok(m)
}

/// Sets the console password of the spot's Admin `email`; their sessions end.
pub async fn set_password(db: &Db, spot_id: SpotId, email: &str, password: &str) -> Result<()> {
    if password.chars().count() < MIN_PASSWORD_CHARS {
        return Err(Error::invalid("password", format!("must be at least {MIN_PASSWORD_CHARS} characters")));
    }
    let m = admin_of(db, spot_id, email).await?;
    let hash = hash_password(password.to_string()).await?;
    let mut tx = db.begin().await?;
    store::console::upsert_password(tx.ex(), spot_id, m.id, &hash, now_ms()).await?;
    store::console::delete_member_sessions(tx.ex(), spot_id, m.id).await?;
    tx.commit().await?;
    Ok(())
}

/// A one-time sign-in token for the spot's Admin `email` (valid [`LINK_TTL_MS`]).
pub async fn create_login_link(db: &Db, spot_id: SpotId, email: &str) -> Result<String> {
    let m = admin_of(db, spot_id, email).await?;
    issue_link(db, spot_id, m.id).await
}

async fn issue_link(db: &Db, spot_id: SpotId, member_id: MemberId) -> Result<String> {
    let token = random_token();
    let mut tx = db.begin().await?;
    store::console::insert_link(tx.ex(), &sha256(&token), spot_id, member_id, now_ms() + LINK_TTL_MS).await?;
    tx.commit().await?;
    Ok(token)
}

/// The console's path that signs in with `token`.
pub fn link_path(token: &str) -> String {
    format!("/console/link?token={token}")
}

fn may_use_console(role: MemberRole, status: MemberStatus) -> bool {
    role == MemberRole::Admin && status.may_sign_in()
}

async fn create_session(db: &Db, spot_id: SpotId, member_id: MemberId) -> Result<NewSession> {
    let cookie_value = random_token();
    let csrf = random_token();
    let now = now_ms();
    let mut tx = db.begin().await?;
    store::console::purge_expired(tx.ex(), now - SESSION_IDLE_MS, now).await?;
    store::console::insert_session(
        tx.ex(),
        &store::console::NewSessionRow { id_hash: &sha256(&cookie_value), spot_id, member_id, csrf_token: &csrf, now },
    )
    .await?;
    tx.commit().await?;
    Ok(NewSession { cookie_value, spot_id })
}

/// The attempt windows a sign-in with `email` from `ip` spends.
fn attempt_windows(email_norm: &str, ip: Option<IpAddr>) -> (String, Option<String>) {
    (format!("console:account:{email_norm}"), ip.map(|ip| format!("console:address:{ip}")))
}

/// Signs in with email and password. Every attempt spends one try of the account's
/// and the address's windows (429 when either is spent); a success gives both back.
/// A wrong email, a wrong password and an account without a password all answer the
/// same 401, after the same (argon2) cost.
pub async fn sign_in_with_password(db: &Db, email: &str, password: &str, ip: Option<IpAddr>) -> Result<SignIn> {
    let email_norm = email.trim().to_lowercase();
    if email_norm.is_empty() || password.is_empty() {
        return Err(Error::invalid("email", "email and password are required"));
    }
    let (account_scope, address_scope) = attempt_windows(&email_norm, ip);
    let account = AttemptWindow {
        spot_id: ANONYMOUS,
        scope: &account_scope,
        window_ms: FAILURE_WINDOW_MS,
        limit: FAILURES_PER_ACCOUNT,
    };
    let address = address_scope.as_deref().map(|scope| AttemptWindow {
        spot_id: ANONYMOUS,
        scope,
        window_ms: FAILURE_WINDOW_MS,
        limit: FAILURES_PER_ADDRESS,
    });
    if let Some(a) = &address {
        a.take(db).await?;
    }
    account.take(db).await?;

    let candidates = {
        let mut c = db.conn().await?;
        store::console::admin_candidates(c.ex(), &email_norm).await?
    };
    let mut matched = Vec::new();
    let mut compared = false;
    for cand in candidates {
        if let Some(stored) = cand.password_hash.clone() {
            compared = true;
            if verify_password(password.to_string(), stored).await? {
                matched.push(cand);
            }
        }
    }
    if !compared {
        // The same cost as a real comparison, so timing does not tell accounts apart.
        let dummy = DUMMY_HASH.get_or_try_init(|| hash_password(random_token())).await?;
        let _ = verify_password(password.to_string(), dummy.clone()).await?;
    }
    if matched.is_empty() {
        return Err(Error::unauthenticated());
    }
    account.give_back(db).await?;
    if let Some(a) = &address {
        a.give_back(db).await?;
    }
    if matched.len() == 1 {
        let only = &matched[0];
        return Ok(SignIn::Session(create_session(db, only.spot_id, only.member_id).await?));
    }
    let mut choices = Vec::with_capacity(matched.len());
    for cand in matched {
        let token = issue_link(db, cand.spot_id, cand.member_id).await?;
        choices.push(SpotChoice { spot_id: cand.spot_id, spot_name: cand.spot_name, token });
    }
    Ok(SignIn::Choose(choices))
}

/// An argon2id hash of a random password (made once per process), compared against
/// when an email has no password, so that answer costs what a real comparison does.
static DUMMY_HASH: tokio::sync::OnceCell<String> = tokio::sync::OnceCell::const_new();

/// Signs in with a one-time link token: valid once, for [`LINK_TTL_MS`], and only while
/// its member is still an Admin who may sign in. Failures count like wrong passwords
/// against the address.
pub async fn sign_in_with_link(db: &Db, token: &str, ip: Option<IpAddr>) -> Result<NewSession> {
    let (_, address_scope) = attempt_windows("", ip);
    let address = address_scope.as_deref().map(|scope| AttemptWindow {
        spot_id: ANONYMOUS,
        scope,
        window_ms: FAILURE_WINDOW_MS,
        limit: FAILURES_PER_ADDRESS,
    });
    if let Some(a) = &address {
        a.take(db).await?;
    }
    let taken = {
        let mut tx = db.begin().await?;
        let t = store::console::take_link(tx.ex(), &sha256(token.trim()), now_ms()).await?;
        tx.commit().await?;
        t
    };
    let Some((spot_id, member_id)) = taken else {
        return Err(Error::unauthenticated());
    };
    let m = super::members::get_member(db, spot_id, member_id).await?;
    if !may_use_console(m.role, m.status) {
        return Err(Error::unauthenticated());
    }
    if let Some(a) = &address {
        a.give_back(db).await?;
    }
    create_session(db, spot_id, member_id).await
}

/// The session of a cookie value: 401 when it is unknown, idle too long, or its member
/// is no longer an Admin who may sign in (the session is then deleted).
pub async fn authenticate(db: &Db, cookie_value: &str) -> Result<ConsoleSession> {
    let hash = sha256(cookie_value);
    let now = now_ms();
    let mut c = db.conn().await?;
    let Some(row) = store::console::get_session(c.ex(), &hash).await? else {
        return Err(Error::Unauthorized("Signed out".into()));
    };
    if now - row.last_seen_at > SESSION_IDLE_MS || !may_use_console(row.role, row.status) {
        store::console::delete_session(c.ex(), &hash).await?;
        return Err(Error::Unauthorized("Signed out".into()));
    }
    if now - row.last_seen_at > TOUCH_EVERY_MS {
        store::console::touch_session(c.ex(), &hash, now).await?;
    }
    Ok(ConsoleSession {
        spot_id: row.spot_id,
        member_id: row.member_id,
        email: row.email.unwrap_or_default(),
        spot_name: row.spot_name,
        csrf_token: row.csrf_token,
    })
}

/// Ends the session of a cookie value (nothing when there is none).
pub async fn sign_out(db: &Db, cookie_value: &str) -> Result<()> {
    let mut c = db.conn().await?;
    store::console::delete_session(c.ex(), &sha256(cookie_value)).await?;
    Ok(())
}

/// Whether `presented` is the session's CSRF token (constant time).
pub fn csrf_matches(session: &ConsoleSession, presented: &str) -> bool {
    use subtle::ConstantTimeEq;
    !presented.is_empty() && bool::from(session.csrf_token.as_bytes().ct_eq(presented.as_bytes()))
}

/// What the Overview page shows.
#[derive(Clone, Debug)]
pub struct Overview {
    pub total_members: i64,
    pub by_status: Vec<(MemberStatus, i64)>,
    pub recent: Vec<Member>,
    pub groups: Vec<Group>,
    pub group_total: i64,
    pub courses: Vec<Course>,
    pub course_total: i64,
}

pub async fn overview(db: &Db, spot_id: SpotId) -> Result<Overview> {
    let (by_status, recent) = {
        let mut c = db.conn().await?;
        let by_status = store::console::count_by_status(c.ex(), spot_id).await?;
        let recent = from_rows::<_, Member>(store::console::recent_members(c.ex(), spot_id, 8).await?);
        (by_status, recent)
    };
    let q = ListQuery { page: 1, limit: 10, filters: Vec::new() };
    let (groups, group_total) = super::groups::list_groups(db, spot_id, &q).await?;
    let (courses, course_total) = super::courses::list_courses(db, spot_id, &q).await?;
    Ok(Overview {
        total_members: by_status.iter().map(|(_, n)| n).sum(),
        by_status,
        recent,
        groups,
        group_total,
        courses,
        course_total,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn passwords_hash_and_verify() {
        let h = hash_password("correct horse battery".into()).await.unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert!(verify_password("correct horse battery".into(), h.clone()).await.unwrap());
        assert!(!verify_password("wrong".into(), h).await.unwrap());
        assert!(!verify_password("x".into(), "not a hash".into()).await.unwrap());
    }
}

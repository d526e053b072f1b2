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
    /// The session id's hash (what the database knows it by): keys its selection.
    pub session_key: [u8; 32],
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

/// Console secrets (session cookies, sign-in link tokens) have no prefix before their
/// spot ([`super::auth::spot_token`]).
const TOKEN_PREFIXES: &[&str] = &[""];

fn token_spot(token: &str) -> Option<SpotId> {
    super::auth::token_spot(token, TOKEN_PREFIXES)
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
    let token = super::auth::spot_token("", spot_id);
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
    let cookie_value = super::auth::spot_token("", spot_id);
    let csrf = random_token();
    let now = now_ms();
    let mut tx = db.begin().await?;
    // The spot's own expired sessions and links (every spot's: housekeeping).
    store::console::purge_expired(tx.ex(), Some(spot_id), now - SESSION_IDLE_MS, now).await?;
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

/// The window of failed sign-ins of `scope` (from [`attempt_windows`]), allowing `limit`.
fn sign_in_window(scope: &str, limit: i64) -> AttemptWindow<'_> {
    AttemptWindow { spot_id: ANONYMOUS, scope, window_ms: FAILURE_WINDOW_MS, limit }
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
    let account = sign_in_window(&account_scope, FAILURES_PER_ACCOUNT);
    let address = address_scope.as_deref().map(|scope| sign_in_window(scope, FAILURES_PER_ADDRESS));
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
    let address = address_scope.as_deref().map(|scope| sign_in_window(scope, FAILURES_PER_ADDRESS));
    if let Some(a) = &address {
        a.take(db).await?;
    }
    let taken = match token_spot(token) {
        Some(spot_id) => {
            let mut tx = db.begin().await?;
            let t = store::console::take_link(tx.ex(), spot_id, &sha256(token.trim()), now_ms()).await?;
            tx.commit().await?;
            t
        }
        None => None,
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
    let Some(spot_id) = token_spot(cookie_value) else {
        return Err(Error::Unauthorized("Signed out".into()));
    };
    let hash = sha256(cookie_value);
    let now = now_ms();
    let mut c = db.conn().await?;
    let Some(row) = store::console::get_session(c.ex(), spot_id, &hash).await? else {
        return Err(Error::Unauthorized("Signed out".into()));
    };
    drop(c);
    // The rare writes (an expired session deleted, a stale one touched) on the writer.
    if now - row.last_seen_at > SESSION_IDLE_MS || !may_use_console(row.role, row.status) {
        let mut w = db.write_conn().await?;
        store::console::delete_session(w.ex(), spot_id, &hash).await?;
        return Err(Error::Unauthorized("Signed out".into()));
    }
    if now - row.last_seen_at > TOUCH_EVERY_MS {
        let mut w = db.write_conn().await?;
        store::console::touch_session(w.ex(), spot_id, &hash, now).await?;
    }
    Ok(ConsoleSession {
        spot_id: row.spot_id,
        member_id: row.member_id,
        email: row.email.unwrap_or_default(),
        spot_name: row.spot_name,
        csrf_token: row.csrf_token,
        session_key: hash,
    })
}

/// Ends the session of a cookie value (nothing when there is none).
pub async fn sign_out(db: &Db, cookie_value: &str) -> Result<()> {
    let Some(spot_id) = token_spot(cookie_value) else {
        return Ok(());
    };
    let mut c = db.write_conn().await?;
    store::console::delete_session(c.ex(), spot_id, &sha256(cookie_value)).await?;
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

    #[test]
    fn a_cookie_or_link_token_names_its_spot_and_an_older_one_none() {
        let spot = SpotId::generate();
        let token = crate::domain::auth::spot_token("", spot);
        assert_eq!(token_spot(&token), Some(spot));
        assert_eq!(token_spot(&format!(" {token} ")), Some(spot), "read as presented, trimmed");
        assert_ne!(crate::domain::auth::spot_token("", spot), token, "random");
        // A value made before 0014 (32 random bytes, base64url, no dot) or a malformed one.
        for other in [random_token().as_str(), "@@@.x", "AAAA.x", ".", ""] {
            assert_eq!(token_spot(other), None, "{other}");
        }
    }

    #[tokio::test]
    async fn passwords_hash_and_verify() {
        let h = hash_password("correct horse battery".into()).await.unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert!(verify_password("correct horse battery".into(), h.clone()).await.unwrap());
        assert!(!verify_password("wrong".into(), h).await.unwrap());
        assert!(!verify_password("x".into(), "not a hash".into()).await.unwrap());
    }
}

// ---------------------------------------------------------------------------------------
// Members: search, filters, keyset pages, selection, bulk actions, CSV export.

/// The member list's query as the console's form sends it (every field optional).
#[derive(Clone, Debug, Default, serde::Deserialize)]
pub struct MemberQuery {
    #[serde(default)]
    pub q: String,
    #[serde(default)]
    pub status: String,
    #[serde(default)]
    pub role: String,
    #[serde(default)]
    pub custom_role: String,
    #[serde(default)]
    pub group: String,
    /// A custom property's slug, its operator and value (`prop`, `op`, `value`).
    #[serde(default)]
    pub prop: String,
    #[serde(default)]
    pub op: String,
    #[serde(default)]
    pub value: String,
    /// `invited` (default), `lastname` or `firstname`.
    #[serde(default)]
    pub sort: String,
    /// `asc` or `desc` (default: newest first for `invited`, A→Z for names).
    #[serde(default)]
    pub dir: String,
    /// The keyset cursor of the page (from [`MemberPage::next`]).
    #[serde(default)]
    pub after: String,
}

impl MemberQuery {
    fn sort(&self) -> Result<(store::console::MemberSort, bool)> {
        use store::console::MemberSort;
        let sort = match self.sort.as_str() {
            "" | "invited" => MemberSort::InvitedAt,
            "lastname" => MemberSort::Lastname,
            "firstname" => MemberSort::Firstname,
            _ => return Err(Error::invalid("sort", "must be one of invited, lastname, firstname")),
        };
        let desc = match self.dir.as_str() {
            "" => sort == MemberSort::InvitedAt,
            "desc" => true,
            "asc" => false,
            _ => return Err(Error::invalid("dir", "must be asc or desc")),
        };
        Ok((sort, desc))
    }

    /// The query string of these filters and order (no cursor): for links and export.
    pub fn to_query_string(&self) -> String {
        let mut s = form_urlencoded::Serializer::new(String::new());
        for (k, v) in [
            ("q", &self.q),
            ("status", &self.status),
            ("role", &self.role),
            ("custom_role", &self.custom_role),
            ("group", &self.group),
            ("prop", &self.prop),
            ("op", &self.op),
            ("value", &self.value),
            ("sort", &self.sort),
            ("dir", &self.dir),
        ] {
            if !v.is_empty() {
                s.append_pair(k, v);
            }
        }
        s.finish()
    }

    /// Whether any filter is set (the total is then counted, not read from the spot).
    pub fn is_filtered(&self) -> bool {
        ![&self.q, &self.status, &self.role, &self.custom_role, &self.group, &self.prop].iter().all(|v| v.is_empty())
    }
}

fn parse_id<T: std::str::FromStr>(field: &str, raw: &str) -> Result<T> {
    raw.trim().parse::<T>().map_err(|_| Error::invalid(field, format!("'{raw}' is not an id")))
}

/// The checked store filter of a query (property filters through the API's own rules).
async fn member_filter(db: &Db, spot_id: SpotId, q: &MemberQuery) -> Result<store::console::MemberFilter> {
    let opt = |s: &str| (!s.trim().is_empty()).then(|| s.trim().to_string());
    let mut f = store::console::MemberFilter {
        text: opt(&q.q),
        status: opt(&q.status).map(|s| super::vocab::parse::<MemberStatus>("status", &s)).transpose()?,
        role: opt(&q.role).map(|s| super::vocab::parse::<MemberRole>("role", &s)).transpose()?,
        custom_role: opt(&q.custom_role).map(|s| parse_id("custom_role", &s)).transpose()?,
        group: opt(&q.group).map(|s| parse_id("group", &s)).transpose()?,
        props: Vec::new(),
        few_matches: false,
        value_matches: None,
    };
    if let Some(slug) = opt(&q.prop) {
        let op_name = if q.op.is_empty() { "eq" } else { q.op.as_str() };
        let op = super::filter::Op::parse(op_name).ok_or_else(|| Error::invalid("op", "unknown operator"))?;
        let raw = super::filter::RawFilter {
            param: format!("customProperties.{slug}[{op_name}]"),
            field: format!("customProperties.{slug}"),
            op,
            values: q.value.split(',').map(|v| v.trim().to_string()).collect(),
        };
        f.props = super::properties::property_filters(db, spot_id, &[&raw]).await?;
    }
    Ok(f)
}

/// One page of the member list.
#[derive(Clone, Debug)]
pub struct MemberPage {
    pub items: Vec<Member>,
    /// The cursor of the next page, when there is one.
    pub next: Option<String>,
    /// How many members match, counted up to [`COUNT_CAP`] when filtered.
    pub total: i64,
    /// Whether more than `total` match (the count stopped at [`COUNT_CAP`]).
    pub more: bool,
}

impl MemberPage {
    /// The total as the page shows it: `10000+` when the count stopped at the cap.
    pub fn total_label(&self) -> String {
        if self.more {
            format!("{}+", self.total)
        } else {
            self.total.to_string()
        }
    }
}

/// A filtered member list counts its matches up to this many: an exact count of half a
/// million matches reads half a million index entries on every page, and past ten
/// thousand the figure helps nobody. A bulk action's confirmation still names the
/// exact number it will touch.
pub const COUNT_CAP: i64 = 10_000;

/// Rows per page of the member list.
pub const MEMBERS_PER_PAGE: i64 = 50;

fn cursor_of(m: &Member, sort: store::console::MemberSort) -> String {
    use store::console::MemberSort;
    let value = match sort {
        MemberSort::InvitedAt => m.invited_at.to_string(),
        MemberSort::Lastname => m.lastname.clone(),
        MemberSort::Firstname => m.firstname.clone(),
    };
    format!("{}~{value}", m.id)
}

fn parse_cursor(raw: &str, sort: store::console::MemberSort) -> Result<Option<(store::console::SortValue, MemberId)>> {
    use store::console::{MemberSort, SortValue};
    if raw.is_empty() {
        return Ok(None);
    }
    let bad = || Error::invalid("after", "is not a page cursor");
    let (id, value) = raw.split_once('~').ok_or_else(bad)?;
    let id: MemberId = id.parse().map_err(|_| bad())?;
    let value = match sort {
        MemberSort::InvitedAt => SortValue::I64(value.parse().map_err(|_| bad())?),
        MemberSort::Lastname | MemberSort::Firstname => SortValue::Text(value.to_string()),
    };
    Ok(Some((value, id)))
}

/// A page of the spot's members matching `q` (keyset paging: each page is an index
/// range, as fast on the last page of a million members as on the first).
pub async fn search_members(db: &Db, spot_id: SpotId, q: &MemberQuery) -> Result<MemberPage> {
    let (sort, desc) = q.sort()?;
    let after = parse_cursor(&q.after, sort)?;
    let mut f = member_filter(db, spot_id, q).await?;
    let mut c = db.conn().await?;
    // The capped count first: a filter it finds few matches for is read as its matches,
    // sorted, rather than as a walk of the sort order (`MemberFilter::few_matches`).
    let (total, more) = if q.is_filtered() {
        store::console::measure_properties(c.ex(), spot_id, &mut f).await?;
        let n = store::console::count_members(c.ex(), spot_id, &f, COUNT_CAP).await?;
        f.few_matches = n <= COUNT_CAP;
        (n.min(COUNT_CAP), n > COUNT_CAP)
    } else {
        (store::spots::member_count(c.ex(), spot_id).await?.unwrap_or(0), false)
    };
    let mut items = from_rows::<_, Member>(
        store::console::search_members(c.ex(), spot_id, &f, sort, desc, after, MEMBERS_PER_PAGE + 1).await?,
    );
    let next = if items.len() as i64 > MEMBERS_PER_PAGE {
        items.truncate(MEMBERS_PER_PAGE as usize);
        items.last().map(|m| cursor_of(m, sort))
    } else {
        None
    };
    Ok(MemberPage { items, next, total, more })
}

/// Every member id matching `q`, read in keyset batches.
async fn matching_ids(db: &Db, spot_id: SpotId, q: &MemberQuery) -> Result<Vec<MemberId>> {
    use store::console::{MemberSort, SortValue};
    let f = member_filter(db, spot_id, q).await?;
    let mut out = Vec::new();
    let mut after = None;
    loop {
        let mut c = db.conn().await?;
        let batch =
            store::console::search_members(c.ex(), spot_id, &f, MemberSort::InvitedAt, false, after, 1000).await?;
        drop(c);
        let Some(last) = batch.last() else { break };
        after = Some((SortValue::I64(last.invited_at), last.id));
        let n = batch.len();
        out.extend(batch.into_iter().map(|m| m.id));
        if n < 1000 {
            break;
        }
    }
    Ok(out)
}

/// Selects (or unselects) members for the session's next bulk action.
pub async fn select(db: &Db, s: &ConsoleSession, ids: &[String], on: bool) -> Result<usize> {
    let ids: Vec<MemberId> = ids.iter().filter_map(|i| i.trim().parse().ok()).collect();
    let mut c = db.write_conn().await?;
    store::console::set_selected(c.ex(), s.spot_id, &s.session_key, &ids, on).await?;
    Ok(store::console::selected_ids(c.ex(), &s.session_key, s.spot_id).await?.len())
}

pub async fn clear_selection(db: &Db, s: &ConsoleSession) -> Result<()> {
    let mut c = db.write_conn().await?;
    store::console::clear_selected(c.ex(), s.spot_id, &s.session_key).await?;
    Ok(())
}

/// The session's selected members (of its spot).
pub async fn selection(db: &Db, s: &ConsoleSession) -> Result<Vec<MemberId>> {
    let mut c = db.conn().await?;
    Ok(store::console::selected_ids(c.ex(), &s.session_key, s.spot_id).await?)
}

/// What a bulk action applies to.
#[derive(Clone, Debug)]
pub enum BulkScope {
    Selection,
    AllMatching(Box<MemberQuery>),
}

/// A bulk action on members.
#[derive(Clone, Debug, PartialEq)]
pub enum BulkAction {
    AddToGroup(super::ids::GroupId),
    RemoveFromGroup(super::ids::GroupId),
    InviteToCourse(super::ids::CourseId),
    SetStatus(MemberStatus),
    SetProperty { slug: String, value: String },
}

impl BulkAction {
    /// From the bulk form's fields: `action` and its `target` (group, course, status,
    /// or property slug) and `value` (a property's value).
    pub fn parse(action: &str, target: &str, value: &str) -> Result<BulkAction> {
        Ok(match action {
            "add_to_group" => BulkAction::AddToGroup(parse_id("target", target)?),
            "remove_from_group" => BulkAction::RemoveFromGroup(parse_id("target", target)?),
            "invite_to_course" => BulkAction::InviteToCourse(parse_id("target", target)?),
            "set_status" => match target.parse::<MemberStatus>() {
                Ok(s) if s.is_writable() => BulkAction::SetStatus(s),
                _ => return Err(Error::invalid("target", super::vocab::must_be_one_of(MemberStatus::WRITABLE))),
            },
            "set_property" if !target.trim().is_empty() => {
                BulkAction::SetProperty { slug: target.trim().to_string(), value: value.to_string() }
            }
            "set_property" => return Err(Error::invalid("target", "choose a property")),
            _ => return Err(Error::invalid("action", "choose an action")),
        })
    }

    /// What the confirmation says it will do.
    pub fn describe(&self) -> String {
        match self {
            BulkAction::AddToGroup(g) => format!("add to group {g}"),
            BulkAction::RemoveFromGroup(g) => format!("remove from group {g}"),
            BulkAction::InviteToCourse(c) => format!("invite to course {c}"),
            BulkAction::SetStatus(s) => format!("set status to {s}"),
            BulkAction::SetProperty { slug, value } => format!("set property {slug} to \"{value}\""),
        }
    }
}

/// The members a bulk action on `scope` would touch.
pub async fn bulk_targets(db: &Db, s: &ConsoleSession, scope: &BulkScope) -> Result<Vec<MemberId>> {
    match scope {
        BulkScope::Selection => selection(db, s).await,
        BulkScope::AllMatching(q) => matching_ids(db, s.spot_id, q).await,
    }
}

/// Checks a bulk action's target exists in the session's spot (404 otherwise).
pub async fn check_bulk_action(db: &Db, spot_id: SpotId, action: &BulkAction) -> Result<()> {
    match action {
        BulkAction::AddToGroup(g) | BulkAction::RemoveFromGroup(g) => {
            super::groups::get_group(db, spot_id, *g).await.map(|_| ())
        }
        BulkAction::InviteToCourse(c) => super::courses::get_course(db, spot_id, *c).await.map(|_| ()),
        BulkAction::SetStatus(_) => Ok(()),
        BulkAction::SetProperty { slug, value } => {
            let def = super::properties::get_property(db, spot_id, slug).await?;
            super::properties::to_stored(&def, &typed_value(&def, value), "value").map(|_| ())
        }
    }
}

/// A property value as typed in a form field, as the JSON its type takes.
pub fn typed_value(def: &super::properties::PropertyDef, raw: &str) -> serde_json::Value {
    use super::vocab::PropertyType;
    use serde_json::Value;
    let raw = raw.trim();
    if raw.is_empty() {
        return Value::Null;
    }
    match def.kind {
        PropertyType::Number => raw
            .parse::<f64>()
            .ok()
            .and_then(serde_json::Number::from_f64)
            .map_or_else(|| Value::String(raw.into()), Value::Number),
        PropertyType::Boolean => match raw {
            "true" | "yes" | "on" | "1" => Value::Bool(true),
            "false" | "no" | "off" | "0" => Value::Bool(false),
            _ => Value::String(raw.into()),
        },
        PropertyType::MultipleSelect => {
            Value::Array(raw.split(',').map(|v| Value::String(v.trim().to_string())).filter(|v| v != "").collect())
        }
        _ => Value::String(raw.into()),
    }
}

/// The progress of a bulk action (or an import), as stored (`console_jobs`): any
/// replica answers for a job another one runs, and a finished job's report outlives a
/// restart (until housekeeping purges it, [`JOB_RETENTION_MS`]).
#[derive(Clone, Debug, Default)]
pub struct JobProgress {
    pub label: String,
    pub total: usize,
    pub done: usize,
    pub failed: usize,
    pub finished: bool,
    pub error: Option<String>,
    /// A download the finished job offers: (path, text).
    pub link: Option<(String, String)>,
}

/// An unfinished job whose progress has not moved for this long is shown as stopped:
/// the replica running it ended (a chunk of a bulk action or a batch of an import
/// takes seconds, not minutes).
pub const JOB_STALE_MS: i64 = 10 * 60 * 1000;
/// Jobs (finished or abandoned) are purged this long after their last progress.
pub const JOB_RETENTION_MS: i64 = 7 * 24 * 60 * 60 * 1000;
/// An upload not (or not completely) imported is purged, file and all, after this long.
pub const UPLOAD_FILE_RETENTION_MS: i64 = 24 * 60 * 60 * 1000;
/// A finished import's failed rows stay downloadable this long (as its job's report).
pub const UPLOAD_REPORT_RETENTION_MS: i64 = JOB_RETENTION_MS;
/// How often, at most, an import's progress is written.
const IMPORT_PROGRESS_EVERY: std::time::Duration = std::time::Duration::from_millis(250);

/// A job's progress in `spot_id`, whichever replica runs (or ran) it.
pub async fn job(db: &Db, spot_id: SpotId, id: uuid::Uuid) -> Result<Option<JobProgress>> {
    let mut c = db.conn().await?;
    let Some(row) = store::console::get_job(c.ex(), spot_id, id).await? else {
        return Ok(None);
    };
    let stale = !row.finished && now_ms() - row.updated_at > JOB_STALE_MS;
    Ok(Some(JobProgress {
        label: row.label,
        total: usize::try_from(row.total).unwrap_or(0),
        done: usize::try_from(row.done).unwrap_or(0),
        failed: usize::try_from(row.failed).unwrap_or(0),
        finished: row.finished || stale,
        error: if stale { Some("the server running it stopped before it finished".into()) } else { row.error },
        link: row.link_path.zip(row.link_text),
    }))
}

/// Records a new job and returns its id.
async fn new_job(db: &Db, spot_id: SpotId, label: &str, total: usize) -> Result<uuid::Uuid> {
    let id = super::new_id();
    let mut c = db.write_conn().await?;
    store::console::insert_job(c.ex(), spot_id, id, label, total as i64, now_ms()).await?;
    Ok(id)
}

/// Writes how a job ended. A failure to write is logged: the job's own work is done
/// (or failed) either way, and its page then shows it as stopped once stale.
async fn end_job(db: &Db, spot_id: SpotId, id: uuid::Uuid, end: &store::console::JobEnd<'_>) {
    let written = async {
        let mut c = db.write_conn().await?;
        store::console::finish_job(c.ex(), spot_id, id, end, now_ms()).await
    };
    if let Err(e) = written.await {
        tracing::warn!(error = ?e, job = %id, "cannot record the end of a console job");
    }
}

/// Members per write of a bulk action.
const BULK_CHUNK: usize = 100;

/// Starts `action` on `targets` in the background (this process), named by
/// `description`; its progress is [`job`], written once per chunk. Each chunk is its
/// own transaction: a failure stops the job and says where.
pub async fn start_bulk(
    db: &Db,
    s: &ConsoleSession,
    action: BulkAction,
    description: &str,
    targets: Vec<MemberId>,
) -> Result<uuid::Uuid> {
    let id = new_job(db, s.spot_id, &format!("{description} ({} members)", targets.len()), targets.len()).await?;
    let db = db.clone();
    let spot_id = s.spot_id;
    let actor = s.member_id;
    tokio::spawn(async move {
        // Chunks follow each other, with a pause now and then (`store::WritePacer`):
        // back-to-back chunks starved another process's writers on SQLite; pausing
        // after every slice doubled a 10,000-member action's time.
        let mut pacer = db.write_pacer();
        for chunk in targets.chunks(BULK_CHUNK) {
            pacer.between_slices().await;
            let failed = match apply_chunk(&db, spot_id, actor, &action, chunk).await {
                Ok(failed) => failed,
                Err(e) => {
                    let error = e.to_string();
                    end_job(&db, spot_id, id, &store::console::JobEnd { error: Some(&error), ..Default::default() })
                        .await;
                    return;
                }
            };
            let written = async {
                let mut c = db.write_conn().await?;
                store::console::add_job_progress(c.ex(), spot_id, id, chunk.len() as i64, failed as i64, now_ms()).await
            };
            if let Err(e) = written.await {
                // The chunk is applied; only its count is missing from the page.
                tracing::warn!(error = ?e, job = %id, "cannot record a console job's progress");
            }
        }
        end_job(&db, spot_id, id, &store::console::JobEnd::default()).await;
    });
    Ok(id)
}

/// Applies `action` to one chunk; returns how many members it could not apply to.
async fn apply_chunk(
    db: &Db,
    spot_id: SpotId,
    actor: MemberId,
    action: &BulkAction,
    ids: &[MemberId],
) -> Result<usize> {
    let raw: Vec<String> = ids.iter().map(|i| i.to_string()).collect();
    let write = match action {
        BulkAction::AddToGroup(g) => return Ok(super::groups::bulk_add(db, spot_id, *g, &raw).await?.1.len()),
        BulkAction::RemoveFromGroup(g) => return super::groups::bulk_remove(db, spot_id, *g, &raw).await.map(|_| 0),
        BulkAction::InviteToCourse(c) => {
            return super::courses::bulk_invite(db, spot_id, *c, &raw, Some(actor), false).await.map(|_| 0)
        }
        BulkAction::SetStatus(status) => MemberWrite::Status(*status),
        BulkAction::SetProperty { slug, value } => {
            let def = super::properties::get_property(db, spot_id, slug).await?;
            MemberWrite::Property(slug, typed_value(&def, value))
        }
    };
    // The chunk in one transaction, retried whole on a transient conflict: it commits
    // once (a member per transaction took 22 s for 10,000 members on SQLite). Members
    // gone since the action was confirmed are counted as failed; any error leaves
    // nothing of the chunk written.
    store::retry_transient(|| async {
        let mut tx = db.begin().await?;
        let failed = match &write {
            MemberWrite::Status(status) => {
                super::members::set_status_of_many_in(&mut tx, spot_id, ids, *status).await?
            }
            MemberWrite::Property(slug, value) => {
                super::properties::set_value_of_many_in(&mut tx, spot_id, ids, slug, value, "value").await?
            }
        };
        tx.commit().await?;
        Ok(failed)
    })
    .await
}

/// A bulk action that writes the members themselves.
enum MemberWrite<'a> {
    Status(MemberStatus),
    Property(&'a str, serde_json::Value),
}

/// The members matching `q` as CSV (id, email, names, mobile, status, role, dates),
/// read in keyset batches of the rows themselves.
pub async fn export_csv(db: &Db, spot_id: SpotId, q: &MemberQuery) -> Result<Vec<u8>> {
    use store::console::{MemberSort, SortValue};
    let f = member_filter(db, spot_id, q).await?;
    let mut w = csv::Writer::from_writer(Vec::new());
    let csv_err = |e: csv::Error| Error::Internal(e.into());
    w.write_record([
        "id",
        "email",
        "firstname",
        "lastname",
        "mobileNumber",
        "status",
        "role",
        "invitedAt",
        "registeredAt",
    ])
    .map_err(csv_err)?;
    let mut after = None;
    loop {
        let mut c = db.conn().await?;
        let rows = from_rows::<_, Member>(
            store::console::search_members(c.ex(), spot_id, &f, MemberSort::InvitedAt, false, after, 1000).await?,
        );
        drop(c);
        for m in &rows {
            let invited = m.invited_at.to_string();
            let registered = m.registered_at.map(|t| t.to_string()).unwrap_or_default();
            w.write_record([
                m.id.to_string().as_str(),
                m.email.as_deref().unwrap_or(""),
                &m.firstname,
                &m.lastname,
                m.mobile_number.as_deref().unwrap_or(""),
                m.status.as_str(),
                m.role.as_str(),
                &invited,
                &registered,
            ])
            .map_err(csv_err)?;
        }
        match rows.last() {
            Some(last) if rows.len() == 1000 => after = Some((SortValue::I64(last.invited_at), last.id)),
            _ => break,
        }
    }
    w.into_inner().map_err(|e| Error::Internal(anyhow::anyhow!("{e}")))
}

/// What the member page shows.
#[derive(Clone, Debug)]
pub struct MemberDetail {
    pub member: Member,
    pub properties: Vec<super::properties::PropertyValue>,
    pub groups: Vec<Group>,
    pub courses: Vec<store::console::MemberCourseRow>,
    pub custom_roles: Vec<super::custom_roles::CustomRole>,
}

pub async fn member_detail(db: &Db, spot_id: SpotId, id: MemberId) -> Result<MemberDetail> {
    let member = super::members::get_member(db, spot_id, id).await?;
    let (properties, _) = super::properties::member_values(db, spot_id, id, 0, 1000).await?;
    let (group_ids, courses) = {
        let mut c = db.conn().await?;
        (
            store::memberships::groups_of_member(c.ex(), spot_id, id).await?,
            store::console::courses_of_member(c.ex(), spot_id, id).await?,
        )
    };
    let mut groups = Vec::with_capacity(group_ids.len());
    for g in group_ids {
        groups.push(super::groups::get_group(db, spot_id, g).await?);
    }
    let (custom_roles, _) =
        super::custom_roles::list_roles(db, spot_id, &ListQuery { page: 1, limit: 100, filters: Vec::new() }).await?;
    Ok(MemberDetail { member, properties, groups, courses, custom_roles })
}

/// Saves the member page's profile form.
pub async fn save_member(
    db: &Db,
    spot_id: SpotId,
    id: MemberId,
    patch: super::members::MemberPatch,
    properties: &[(String, String)],
) -> Result<Member> {
    let m = super::members::update_member(db, spot_id, id, patch).await?;
    if !properties.is_empty() {
        let defs = super::properties::list_properties(db, spot_id).await?;
        let mut items = Vec::new();
        for (slug, raw) in properties {
            let def = defs
                .iter()
                .find(|d| &d.slug == slug)
                .ok_or_else(|| Error::invalid(format!("prop.{slug}"), "no such property"))?;
            items.push((slug.clone(), typed_value(def, raw), format!("prop.{slug}")));
        }
        super::properties::set_values(db, spot_id, id, &items).await?;
    }
    Ok(m)
}

// ---------------------------------------------------------------------------------------
// Groups: the smart-group rule builder and its live count; courses' linked groups;
// what uses a custom property.

/// One row of the rule builder: a trigger as typed (field, operator, value).
#[derive(Clone, Debug, Default)]
pub struct TriggerInput {
    pub field: String,
    pub op: String,
    pub value: String,
}

/// A condition of the rule builder: its junction and its triggers.
#[derive(Clone, Debug, Default)]
pub struct ConditionInput {
    pub operator: String,
    pub triggers: Vec<TriggerInput>,
}

/// The smart-group fields a trigger may read besides custom properties.
pub const RULE_FIELDS: &[&str] =
    &["status", "role", "email", "firstname", "lastname", "customRoleId", "invitationDate", "registrationDate"];

/// The rules document of the builder's rows, each value typed for its field and
/// operator (lists for `in`/`notin`, Unix seconds for dates, numbers and booleans for
/// such properties); rows without a field are skipped. The domain's rules parser then
/// checks it as the API would.
pub async fn rules_from_builder(
    db: &Db,
    spot_id: SpotId,
    top: &str,
    conds: &[ConditionInput],
) -> Result<serde_json::Value> {
    use super::vocab::PropertyType;
    use serde_json::{json, Value};
    let props = super::properties::list_properties(db, spot_id).await?;
    let mut conditions = Vec::new();
    for c in conds {
        let mut triggers = Vec::new();
        for t in c.triggers.iter().filter(|t| !t.field.trim().is_empty()) {
            let raw = t.value.trim();
            let kind = t
                .field
                .strip_prefix("customProperties.")
                .and_then(|slug| props.iter().find(|p| p.slug == slug))
                .map(|p| p.kind);
            let scalar = |v: &str| -> Value {
                match kind {
                    Some(PropertyType::Number) => v
                        .parse::<f64>()
                        .ok()
                        .and_then(serde_json::Number::from_f64)
                        .map_or(Value::from(v), Value::Number),
                    Some(PropertyType::Boolean) => Value::Bool(matches!(v, "true" | "yes" | "1")),
                    _ => Value::from(v),
                }
            };
            let value = match t.op.as_str() {
                "in" | "notin" => Value::Array(raw.split(',').map(|v| scalar(v.trim())).collect()),
                // Member dates are Unix seconds in rules; a date property keeps its text.
                "before" | "after" if kind.is_none() => date_seconds(raw).unwrap_or_else(|_| Value::from(raw)),
                _ => scalar(raw),
            };
            triggers.push(json!({"field": t.field.trim(), "op": t.op, "value": value}));
        }
        if !triggers.is_empty() {
            conditions.push(json!({"operator": junction(&c.operator), "triggers": triggers}));
        }
    }
    Ok(json!({"operator": junction(top), "conditions": conditions}))
}

fn junction(s: &str) -> &'static str {
    if s.eq_ignore_ascii_case("or") {
        "OR"
    } else {
        "AND"
    }
}

/// `YYYY-MM-DD` (a date input's value) as Unix seconds at midnight UTC.
fn date_seconds(raw: &str) -> Result<serde_json::Value> {
    let format = time::macros::format_description!("[year]-[month]-[day]");
    let d = time::Date::parse(raw, &format).map_err(|_| Error::invalid("value", format!("'{raw}' is not a date")))?;
    Ok(serde_json::Value::from(d.midnight().assume_utc().unix_timestamp()))
}

/// How many of the spot's members `rules` would hold now (blacklist aside): the rule
/// builder's live count before saving. Reads the members in keyset batches.
pub async fn count_rule_matches(db: &Db, spot_id: SpotId, rules: &serde_json::Value) -> Result<i64> {
    use store::console::{MemberFilter, MemberSort, SortValue};
    let props = super::properties::list_properties(db, spot_id).await?;
    let rules = super::smart_rules::Rules::parse_with(rules, &props, true)?;
    // One SQL count (the rules compiled as for a group's computation), but for rules
    // binding more values than a statement may: those are read member by member.
    let test = rules.member_test();
    if test.bind_count() <= store::smart_sql::MAX_PREDICATE_BINDS {
        let mut c = db.conn().await?;
        return Ok(store::smart_sql::count_matching(c.ex(), spot_id, &test).await?);
    }
    let mut after = None;
    let mut matched = 0;
    let f = MemberFilter::default();
    loop {
        let mut c = db.conn().await?;
        let batch = from_rows::<_, Member>(
            store::console::search_members(c.ex(), spot_id, &f, MemberSort::InvitedAt, false, after, 2000).await?,
        );
        let values = if rules.uses_properties() {
            let ids: Vec<MemberId> = batch.iter().map(|m| m.id).collect();
            store::property_values::list_of_members(c.ex(), spot_id, &ids).await?
        } else {
            Default::default()
        };
        drop(c);
        matched +=
            batch.iter().filter(|m| rules.matches_with(m, &values.get(&m.id).cloned().unwrap_or_default())).count()
                as i64;
        let Some(last) = batch.last() else { break };
        after = Some((SortValue::I64(last.invited_at), last.id));
        if batch.len() < 2000 {
            break;
        }
    }
    Ok(matched)
}

/// The groups linked to a course.
pub async fn course_groups(db: &Db, spot_id: SpotId, course_id: super::ids::CourseId) -> Result<Vec<Group>> {
    let ids = {
        let mut c = db.conn().await?;
        store::console::groups_of_course(c.ex(), spot_id, course_id).await?
    };
    let mut out = Vec::with_capacity(ids.len());
    for id in ids {
        out.push(super::groups::get_group(db, spot_id, id).await?);
    }
    Ok(out)
}

/// The smart groups whose rules read each custom property, by slug.
pub async fn property_uses(db: &Db, spot_id: SpotId) -> Result<std::collections::HashMap<String, Vec<String>>> {
    let q = ListQuery { page: 1, limit: 100, filters: Vec::new() };
    let mut out: std::collections::HashMap<String, Vec<String>> = Default::default();
    let mut page = 1;
    loop {
        let (groups, total) = super::groups::list_groups(db, spot_id, &ListQuery { page, ..q.clone() }).await?;
        for g in &groups {
            if let Some(rules) = &g.rules {
                for p in super::properties::list_properties(db, spot_id).await? {
                    if rules.contains(&format!("\"customProperties.{}\"", p.slug)) {
                        out.entry(p.slug.clone()).or_default().push(g.name.clone());
                    }
                }
            }
        }
        if i64::from(page) * 100 >= total || groups.is_empty() {
            break;
        }
        page += 1;
    }
    Ok(out)
}

/// The members on a smart group's blacklist.
pub async fn group_blacklist(db: &Db, spot_id: SpotId, group_id: super::ids::GroupId) -> Result<Vec<Member>> {
    let mut c = db.conn().await?;
    let ids = store::blacklist::list(c.ex(), spot_id, group_id).await?;
    Ok(from_rows(store::members::get_many(c.ex(), spot_id, &ids).await?))
}

// ---------------------------------------------------------------------------------------
// Import: an uploaded file is read and dry-run at once (the preview), stored in the
// database (`console_uploads`), then imported in the background by whichever replica
// is asked to, with its progress; the failed rows download as CSV from any replica.

/// Reads an uploaded file under the API's limits, checks it against the spot (a dry
/// run) and stores it for [`start_import`]; returns its id and the dry run's report.
pub async fn preview_import(
    db: &Db,
    spot_id: SpotId,
    file: Vec<u8>,
    groups: Vec<super::ids::GroupId>,
    notify: bool,
) -> Result<(uuid::Uuid, super::import::ImportReport)> {
    let (file, rows) = tokio::task::spawn_blocking(move || {
        super::import::read_rows(&file, &super::import::HTTP_LIMITS).map(|rows| (file, rows))
    })
    .await
    .map_err(|e| Error::Internal(e.into()))??;
    super::import::prepare(db, spot_id, &rows, &groups).await?;
    let report = super::import::import_rows(db, spot_id, &rows, &groups, true, notify, &|_| {}).await?;
    let id = super::new_id();
    let groups_json = serde_json::to_string(&groups).map_err(|e| Error::Internal(e.into()))?;
    let mut c = db.write_conn().await?;
    store::console::insert_upload(c.ex(), spot_id, id, &file, &groups_json, notify, now_ms()).await?;
    Ok((id, report))
}

/// Imports a previewed upload in the background; returns the job showing its progress.
/// An upload is imported once, whichever replicas are asked (409 the second time).
pub async fn start_import(db: &Db, spot_id: SpotId, upload_id: uuid::Uuid) -> Result<uuid::Uuid> {
    let upload = {
        let mut c = db.write_conn().await?;
        match store::console::start_upload(c.ex(), spot_id, upload_id).await? {
            Some(u) => u,
            None if store::console::upload_exists(c.ex(), spot_id, upload_id).await? => {
                return Err(Error::Conflict("This file was already imported".into()))
            }
            None => return Err(Error::BadRequest("This upload is gone (it expired?): upload the file again".into())),
        }
    };
    let groups: Vec<super::ids::GroupId> =
        serde_json::from_str(&upload.group_ids).map_err(|e| Error::Internal(e.into()))?;
    let notify = upload.notify;
    let file = upload.file;
    // Read again (the preview read the same bytes under the same limits).
    let rows = tokio::task::spawn_blocking(move || super::import::read_rows(&file, &super::import::HTTP_LIMITS))
        .await
        .map_err(|e| Error::Internal(e.into()))??;
    let total = rows.len().saturating_sub(1);
    let label = format!("Import of {total} rows");
    let job = new_job(db, spot_id, &label, total).await?;
    let db = db.clone();
    tokio::spawn(async move {
        // The progress callback is synchronous: it leaves the latest count in a watch
        // channel, which a writer task stores at most every IMPORT_PROGRESS_EVERY (a
        // write of its own, never inside the import's transactions). The writer ends when
        // the import drops the sender, before the job's end is written.
        let (tx, mut rx) = tokio::sync::watch::channel(0u64);
        let writer_db = db.clone();
        let writer = tokio::spawn(async move {
            while rx.changed().await.is_ok() {
                let done = *rx.borrow_and_update() as i64;
                let written = async {
                    let mut c = writer_db.write_conn().await?;
                    store::console::set_job_done(c.ex(), spot_id, job, done, now_ms()).await
                };
                if let Err(e) = written.await {
                    tracing::warn!(error = ?e, job = %job, "cannot record an import's progress");
                }
                tokio::time::sleep(IMPORT_PROGRESS_EVERY).await;
            }
        });
        let result = {
            let progress = move |n: u64| {
                tx.send_replace(n);
            };
            super::import::import_rows(&db, spot_id, &rows, &groups, false, notify, &progress).await
        };
        let _ = writer.await;
        let outcome = match result {
            Ok(report) => super::import::failed_rows_csv(&report).map(|csv| (report, csv)),
            Err(e) => Err(e),
        };
        match outcome {
            Ok((report, csv)) => {
                let failed = report.failed.len();
                let label =
                    format!("{label} — {} created, {} updated, {failed} failed", report.created, report.updated);
                let stored = async {
                    let mut c = db.write_conn().await?;
                    store::console::finish_upload(c.ex(), spot_id, upload_id, &csv).await
                };
                if let Err(e) = stored.await {
                    tracing::warn!(error = ?e, upload = %upload_id, "cannot store an import's failed rows");
                }
                let path = format!("/console/import/{upload_id}/errors.csv");
                let end = store::console::JobEnd {
                    done: Some(total as i64),
                    failed: Some(failed as i64),
                    label: Some(&label),
                    link: (failed > 0).then_some((path.as_str(), "Download the failed rows (CSV)")),
                    ..Default::default()
                };
                end_job(&db, spot_id, job, &end).await;
            }
            Err(e) => {
                let error = e.to_string();
                end_job(&db, spot_id, job, &store::console::JobEnd { error: Some(&error), ..Default::default() }).await;
            }
        }
    });
    Ok(job)
}

/// The failed rows of a finished import as CSV (line, email, reason), from any replica.
pub async fn import_errors_csv(db: &Db, spot_id: SpotId, upload_id: uuid::Uuid) -> Result<String> {
    let mut c = db.conn().await?;
    store::console::upload_failed_rows(c.ex(), spot_id, upload_id)
        .await?
        .ok_or_else(|| Error::BadRequest("No finished import with this id".into()))
}

/// Purges expired sessions and sign-in links of every spot, and old jobs and uploads
/// (housekeeping): jobs [`JOB_RETENTION_MS`] after their
/// last progress, uploads holding a file [`UPLOAD_FILE_RETENTION_MS`] after the upload,
/// finished imports' failed rows [`UPLOAD_REPORT_RETENTION_MS`] after. Returns the rows
/// deleted.
pub async fn purge_background(db: &Db) -> Result<u64> {
    let now = now_ms();
    let mut c = db.write_conn().await?;
    store::console::purge_expired(c.ex(), None, now - SESSION_IDLE_MS, now).await?;
    Ok(store::console::purge_background(
        c.ex(),
        now - JOB_RETENTION_MS,
        now - UPLOAD_FILE_RETENTION_MS,
        now - UPLOAD_REPORT_RETENTION_MS,
    )
    .await?)
}

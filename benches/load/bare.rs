//! The bare baseline of the load bench: a minimal axum router and a sqlx pool on the
//! same database as openspot, serving the member reads the bench drives with the very
//! statement texts openspot runs (`store::sql::by_id`, `store::members::list` and
//! `count`, `store::spots::get`), and a JSON body of the same shape, with nothing else:
//! no authentication, no rate limit, no middleware, no connection bounds. What the
//! stack (hyper, axum, sqlx, the database, serde) can do at most on this machine, so
//! that openspot's figures read as a fraction of it (issue 17, item 4).
//!
//! The spot is fixed at start-up (there is no key to find it from). The pool is opened
//! with openspot's own options (`Db::connect`), so the two differ by the code between
//! the socket and the pool, not by pool sizes or pragmas.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use openspot::domain::vocab::{MemberRole, MemberStatus};
use openspot::store::members::{MemberRow, COLUMNS};
use openspot::store::Db;
use serde::Serialize;
use uuid::Uuid;

#[derive(Clone)]
struct Bare {
    db: Db,
    spot: Uuid,
    public_url: String,
}

/// The member as openspot's `SpotMemberDto` writes it.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct MemberJson {
    id: Uuid,
    spot_id: Uuid,
    user_id: Option<Uuid>,
    email: Option<String>,
    mobile_number: Option<String>,
    title: Option<String>,
    lang: String,
    role: MemberRole,
    custom_role_id: Option<Uuid>,
    status: MemberStatus,
    firstname: String,
    lastname: String,
    warnings: i64,
    avatar_url: Option<String>,
    embed_base_urls: BTreeMap<String, String>,
    updated_at: Option<i64>,
    last_activity_at: Option<i64>,
}

impl MemberJson {
    fn new(m: MemberRow, public_url: &str) -> Self {
        let mut embed: BTreeMap<String, String> =
            m.embed_base_urls.as_deref().and_then(|s| serde_json::from_str(s).ok()).unwrap_or_default();
        embed.entry("default".into()).or_insert_with(|| public_url.to_string());
        MemberJson {
            id: m.id.uuid(),
            spot_id: m.spot_id.uuid(),
            user_id: m.user_id,
            email: m.email,
            mobile_number: m.mobile_number,
            title: m.title,
            lang: m.lang,
            role: m.role,
            custom_role_id: m.custom_role_id.map(|r| r.uuid()),
            status: m.status,
            firstname: m.firstname,
            lastname: m.lastname,
            warnings: m.warnings,
            avatar_url: m.avatar_url,
            embed_base_urls: embed,
            updated_at: Some(m.updated_at),
            last_activity_at: m.last_activity_at,
        }
    }
}

#[derive(Serialize)]
struct Page {
    items: Vec<MemberJson>,
    total: i64,
}

fn fail(e: impl std::fmt::Display) -> Response {
    (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response()
}

/// Placeholders as openspot's `Sql` builder renders them: `?` on SQLite, `$n` on PostgreSQL.
fn placeholders(db: &Db, from: usize, n: usize) -> String {
    (from..from + n)
        .map(|i| if matches!(db, Db::Sqlite(..)) { "?".to_string() } else { format!("${i}") })
        .collect::<Vec<_>>()
        .join(", ")
}

async fn get_member(State(st): State<Bare>, Path(id): Path<String>) -> Response {
    let Ok(id) = Uuid::parse_str(&id) else { return StatusCode::NOT_FOUND.into_response() };
    // store::sql::by_id of store::members::get: the text made once, as openspot does.
    static TEXTS: std::sync::LazyLock<[String; 2]> = std::sync::LazyLock::new(|| {
        [
            format!("SELECT {COLUMNS} FROM members WHERE spot_id = ? AND id = ?"),
            format!("SELECT {COLUMNS} FROM members WHERE spot_id = $1 AND id = $2"),
        ]
    });
    let row = match &st.db {
        Db::Sqlite(p, ..) => sqlx::query_as::<_, MemberRow>(&TEXTS[0]).bind(st.spot).bind(id).fetch_optional(p).await,
        Db::Postgres(p) => sqlx::query_as::<_, MemberRow>(&TEXTS[1]).bind(st.spot).bind(id).fetch_optional(p).await,
    };
    match row {
        Ok(Some(m)) => Json(MemberJson::new(m, &st.public_url)).into_response(),
        Ok(None) => StatusCode::NOT_FOUND.into_response(),
        Err(e) => fail(e),
    }
}

/// `page`/`limit` and one `email[in]` or `firstname[in]` filter (comma list), as the
/// bench sends them.
async fn list_members(State(st): State<Bare>, RawQuery(q): RawQuery) -> Response {
    let (mut page, mut limit) = (1i64, 20i64);
    let mut filter: Option<(&'static str, Vec<String>)> = None;
    for (k, v) in form_urlencoded::parse(q.unwrap_or_default().as_bytes()) {
        let values = || v.split(',').map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect::<Vec<_>>();
        match k.as_ref() {
            "page" => page = v.parse().unwrap_or(1),
            "limit" => limit = v.parse().unwrap_or(20),
            "email[in]" => filter = Some(("email_norm", values().into_iter().map(|e| e.to_lowercase()).collect())),
            "firstname[in]" => filter = Some(("firstname", values())),
            _ => return StatusCode::BAD_REQUEST.into_response(),
        }
    }
    let offset = (page - 1) * limit;
    let db = &st.db;
    // store::members::list and, filtered, store::members::count; unfiltered, the
    // maintained count of store::spots::member_count. One connection for both, as openspot.
    let mut sql = format!("SELECT {COLUMNS} FROM members WHERE spot_id = {}", placeholders(db, 1, 1));
    let mut count = format!("SELECT COUNT(*) FROM members WHERE spot_id = {}", placeholders(db, 1, 1));
    let values = filter.as_ref().map(|f| f.1.clone()).unwrap_or_default();
    if let Some((col, vals)) = &filter {
        let list = format!(" AND {col} IN ({})", placeholders(db, 2, vals.len()));
        sql.push_str(&list);
        count.push_str(&list);
    }
    let next = 2 + values.len();
    sql.push_str(&format!(" ORDER BY id LIMIT {} OFFSET {}", placeholders(db, next, 1), placeholders(db, next + 1, 1)));
    let spot_sql = "SELECT member_count FROM spot_counters WHERE spot_id = $1";
    macro_rules! run {
        ($pool:expr) => {{
            let mut c = match $pool.acquire().await {
                Ok(c) => c,
                Err(e) => return fail(e),
            };
            let mut q = sqlx::query_as::<_, MemberRow>(&sql).bind(st.spot);
            for v in &values {
                q = q.bind(v);
            }
            let rows = match q.bind(limit).bind(offset).fetch_all(&mut *c).await {
                Ok(r) => r,
                Err(e) => return fail(e),
            };
            let total = if filter.is_none() {
                sqlx::query_scalar::<_, i64>(spot_sql)
                    .bind(st.spot)
                    .fetch_optional(&mut *c)
                    .await
                    .map(|n| n.unwrap_or(0))
            } else {
                let mut q = sqlx::query_scalar::<_, i64>(&count).bind(st.spot);
                for v in &values {
                    q = q.bind(v);
                }
                q.fetch_one(&mut *c).await
            };
            (rows, total)
        }};
    }
    let (rows, total) = match db {
        Db::Sqlite(p, ..) => run!(p),
        Db::Postgres(p) => run!(p),
    };
    match total {
        Ok(total) => {
            Json(Page { items: rows.into_iter().map(|m| MemberJson::new(m, &st.public_url)).collect(), total })
                .into_response()
        }
        Err(e) => fail(e),
    }
}

/// Starts the bare server on a loopback port with its own pool on `url`.
pub async fn spawn(url: &str, spot: Uuid, public_url: String) -> SocketAddr {
    let db = Db::connect(url).await.expect("bare pool");
    let app = Router::new()
        .route("/v1/spotMembers", get(list_members))
        .route("/v1/spotMembers/{id}", get(get_member))
        .with_state(Bare { db, spot, public_url });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    // Without Nagle's delay, as openspot's connection loop sets it.
    let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
        let _ = tcp.set_nodelay(true);
    });
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

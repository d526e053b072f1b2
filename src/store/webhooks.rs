//! Webhook endpoints of the MeltingSpot dialect (`/v1/webhooks`), and the read of every
//! delivery targets of a spot for the event cache.

use super::{one_row, Ex};
use crate::domain::ids::{SpotId, WebhookId};
use crate::run;

/// One row of `webhook_endpoints`; `event_types` is a JSON array of wire names.
#[derive(Clone, Debug, PartialEq, sqlx::FromRow)]
pub struct WebhookEndpointRow {
    pub spot_id: SpotId,
    pub id: WebhookId,
    pub url: String,
    pub description: String,
    pub event_types: String,
    pub enabled: bool,
    pub disabled_reason: Option<String>,
    pub secret: String,
    pub previous_secret: Option<String>,
    /// ms: the previous secret signs too until then.
    pub previous_secret_until: Option<i64>,
    pub created_at: i64,
    pub updated_at: i64,
}

const COLUMNS: &str = "spot_id, id, url, description, event_types, enabled, disabled_reason, secret, \
                       previous_secret, previous_secret_until, created_at, updated_at";

pub async fn insert(ex: Ex<'_>, r: &WebhookEndpointRow) -> Result<(), sqlx::Error> {
    run!(ex, |c| sqlx::query(
        "INSERT INTO webhook_endpoints (spot_id, id, url, description, event_types, enabled, disabled_reason, \
         secret, previous_secret, previous_secret_until, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)"
    )
    .bind(r.spot_id)
    .bind(r.id)
    .bind(&r.url)
    .bind(&r.description)
    .bind(&r.event_types)
    .bind(r.enabled)
    .bind(&r.disabled_reason)
    .bind(&r.secret)
    .bind(&r.previous_secret)
    .bind(r.previous_secret_until)
    .bind(r.created_at)
    .bind(r.updated_at)
    .execute(c)
    .await
    .map(|_| ()))
}

pub async fn get(ex: Ex<'_>, spot_id: SpotId, id: WebhookId) -> Result<Option<WebhookEndpointRow>, sqlx::Error> {
    let sql = format!("SELECT {COLUMNS} FROM webhook_endpoints WHERE spot_id = $1 AND id = $2");
    run!(ex, |c| sqlx::query_as::<_, WebhookEndpointRow>(&sql).bind(spot_id).bind(id).fetch_optional(c).await)
}

/// [`get`] with the row locked until the transaction ends (PostgreSQL), for
/// read-modify-write updates.
pub async fn get_for_update(
    ex: Ex<'_>,
    spot_id: SpotId,
    id: WebhookId,
) -> Result<Option<WebhookEndpointRow>, sqlx::Error> {
    let lock = ex.row_lock(" FOR UPDATE");
    let sql = format!("SELECT {COLUMNS} FROM webhook_endpoints WHERE spot_id = $1 AND id = $2{lock}");
    run!(ex, |c| sqlx::query_as::<_, WebhookEndpointRow>(&sql).bind(spot_id).bind(id).fetch_optional(c).await)
}

/// A page of the spot's endpoints in creation order, and how many it has (at most a
/// few dozen: the domain caps them).
pub async fn list(
    ex: Ex<'_>,
    spot_id: SpotId,
    offset: i64,
    limit: i64,
) -> Result<(Vec<WebhookEndpointRow>, i64), sqlx::Error> {
    super::sql::page(ex, "webhook_endpoints", COLUMNS, spot_id, &[], offset, limit).await
}

pub async fn count(ex: Ex<'_>, spot_id: SpotId) -> Result<i64, sqlx::Error> {
    run!(ex, |c| sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM webhook_endpoints WHERE spot_id = $1")
        .bind(spot_id)
        .fetch_one(c)
        .await)
}

/// Writes every column but the keys and `created_at`.
pub async fn update(ex: Ex<'_>, r: &WebhookEndpointRow) -> Result<(), sqlx::Error> {
    run!(ex, |c| sqlx::query(
        "UPDATE webhook_endpoints SET url = $3, description = $4, event_types = $5, enabled = $6, \
         disabled_reason = $7, secret = $8, previous_secret = $9, previous_secret_until = $10, updated_at = $11 \
         WHERE spot_id = $1 AND id = $2"
    )
    .bind(r.spot_id)
    .bind(r.id)
    .bind(&r.url)
    .bind(&r.description)
    .bind(&r.event_types)
    .bind(r.enabled)
    .bind(&r.disabled_reason)
    .bind(&r.secret)
    .bind(&r.previous_secret)
    .bind(r.previous_secret_until)
    .bind(r.updated_at)
    .execute(c)
    .await
    .map(|_| ()))
}

/// Disables the endpoint with `reason`; false when it does not exist.
pub async fn disable(ex: Ex<'_>, spot_id: SpotId, id: WebhookId, reason: &str, now: i64) -> Result<bool, sqlx::Error> {
    run!(ex, |c| one_row(
        sqlx::query(
            "UPDATE webhook_endpoints SET enabled = FALSE, disabled_reason = $3, updated_at = $4 \
             WHERE spot_id = $1 AND id = $2"
        )
        .bind(spot_id)
        .bind(id)
        .bind(reason)
        .bind(now)
        .execute(c)
        .await
    ))
}

pub async fn delete(ex: Ex<'_>, spot_id: SpotId, id: WebhookId) -> Result<bool, sqlx::Error> {
    run!(ex, |c| one_row(
        sqlx::query("DELETE FROM webhook_endpoints WHERE spot_id = $1 AND id = $2")
            .bind(spot_id)
            .bind(id)
            .execute(c)
            .await
    ))
}

/// What the event cache keeps of an endpoint.
#[derive(Clone, Debug, PartialEq, sqlx::FromRow)]
pub struct EndpointTargetRow {
    pub id: WebhookId,
    /// JSON array of wire names.
    pub event_types: String,
    pub enabled: bool,
}

/// The spot's webhook endpoints (what the event cache keeps of them) and the spot's
/// name (None when the spot does not exist).
pub async fn targets_of_spot(
    ex: Ex<'_>,
    spot_id: SpotId,
) -> Result<(Vec<EndpointTargetRow>, Vec<String>, Option<String>), sqlx::Error> {
    run!(ex, |c| {
        let endpoints = sqlx::query_as::<_, EndpointTargetRow>(
            "SELECT id, event_types, enabled FROM webhook_endpoints WHERE spot_id = $1 ORDER BY id",
        )
        .bind(spot_id)
        .fetch_all(&mut *c)
        .await?;
        let kaizala_groups = sqlx::query_scalar::<_, String>(
            "SELECT DISTINCT object_id FROM kz_subscriptions WHERE spot_id = $1 AND object_type = 'Group'",
        )
        .bind(spot_id)
        .fetch_all(&mut *c)
        .await?;
        let name = sqlx::query_scalar::<_, String>("SELECT name FROM spots WHERE id = $1")
            .bind(spot_id)
            .fetch_optional(&mut *c)
            .await?;
        Ok((endpoints, kaizala_groups, name))
    })
}

/// The PostgreSQL channel on which a change of a spot's delivery targets is announced
/// (payload: the spot id), so other replicas drop their cached copy.
pub const TARGETS_CHANNEL: &str = "openspot_targets";

/// On PostgreSQL, `NOTIFY openspot_targets, '<spot id>'` (delivered when the transaction
/// commits); nothing on SQLite (one process).
pub async fn notify_targets(ex: Ex<'_>, spot_id: SpotId) -> Result<(), sqlx::Error> {
    match ex {
        Ex::Sqlite(_) => Ok(()),
        Ex::Postgres(c) => sqlx::query("SELECT pg_notify($1, $2)")
            .bind(TARGETS_CHANNEL)
            .bind(spot_id.to_string())
            .execute(c)
            .await
            .map(|_| ()),
    }
}

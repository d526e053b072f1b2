//! Kaizala webhook subscriptions (`kaizala-api.md` §6), per spot. The outbox rows they
//! receive live in `outbox` (`store::outbox`); this module owns every other statement
//! on `kz_subscriptions` except the dispatch-time read of a spot's targets.

use super::{one_row, Ex};
use crate::domain::ids::{ConnectorId, SpotId, SubscriptionId};
use crate::domain::vocab::KzObjectType;
use crate::run;

/// Every column of `kz_subscriptions`, in [`SubscriptionRow`] order.
pub const COLUMNS: &str = "spot_id, id, connector_id, object_id, object_type, event_types, callback_url, \
     callback_token, callback_context, validity, active, disabled_reason, created_at, updated_at";

/// One row of `kz_subscriptions`.
#[derive(Clone, Debug, PartialEq, sqlx::FromRow)]
pub struct SubscriptionRow {
    pub spot_id: SpotId,
    pub id: SubscriptionId,
    pub connector_id: Option<ConnectorId>,
    pub object_id: String,
    pub object_type: KzObjectType,
    /// JSON array of `KzEventType` words.
    pub event_types: String,
    pub callback_url: String,
    pub callback_token: Option<String>,
    pub callback_context: Option<String>,
    /// Epoch ms after which the subscription receives nothing.
    pub validity: i64,
    pub active: bool,
    pub disabled_reason: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
}

pub async fn insert(ex: Ex<'_>, r: &SubscriptionRow) -> Result<(), sqlx::Error> {
    run!(ex, |c| sqlx::query(&format!(
        "INSERT INTO kz_subscriptions ({COLUMNS}) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)"
    ))
    .bind(r.spot_id)
    .bind(r.id)
    .bind(r.connector_id)
    .bind(&r.object_id)
    .bind(r.object_type)
    .bind(&r.event_types)
    .bind(&r.callback_url)
    .bind(&r.callback_token)
    .bind(&r.callback_context)
    .bind(r.validity)
    .bind(r.active)
    .bind(&r.disabled_reason)
    .bind(r.created_at)
    .bind(r.updated_at)
    .execute(c)
    .await
    .map(|_| ()))
}

/// The subscription `id` of the spot.
pub async fn get(ex: Ex<'_>, spot_id: SpotId, id: SubscriptionId) -> Result<Option<SubscriptionRow>, sqlx::Error> {
    run!(ex, |c| sqlx::query_as::<_, SubscriptionRow>(&format!(
        "SELECT {COLUMNS} FROM kz_subscriptions WHERE spot_id = $1 AND id = $2"
    ))
    .bind(spot_id)
    .bind(id)
    .fetch_optional(c)
    .await)
}

/// The spot's subscriptions, optionally of one object type and object id, in creation
/// order (ids are UUIDv7).
pub async fn list(
    ex: Ex<'_>,
    spot_id: SpotId,
    object_type: Option<KzObjectType>,
    object_id: Option<&str>,
) -> Result<Vec<SubscriptionRow>, sqlx::Error> {
    let object_type = object_type.map(|t| t.as_str());
    run!(ex, |c| sqlx::query_as::<_, SubscriptionRow>(&format!(
        "SELECT {COLUMNS} FROM kz_subscriptions WHERE spot_id = $1 \
         AND ($2 IS NULL OR object_type = $2) AND ($3 IS NULL OR object_id = $3) ORDER BY id"
    ))
    .bind(spot_id)
    .bind(object_type)
    .bind(object_id)
    .fetch_all(c)
    .await)
}

/// How many subscriptions the spot has.
pub async fn count(ex: Ex<'_>, spot_id: SpotId) -> Result<i64, sqlx::Error> {
    run!(ex, |c| sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM kz_subscriptions WHERE spot_id = $1")
        .bind(spot_id)
        .fetch_one(c)
        .await)
}

/// Writes every changeable column of `r` (matched by spot and id); false when absent.
pub async fn update(ex: Ex<'_>, r: &SubscriptionRow) -> Result<bool, sqlx::Error> {
    run!(ex, |c| one_row(
        sqlx::query(
            "UPDATE kz_subscriptions SET object_id = $3, object_type = $4, event_types = $5, callback_url = $6, \
             callback_token = $7, callback_context = $8, validity = $9, active = $10, disabled_reason = $11, \
             updated_at = $12 WHERE spot_id = $1 AND id = $2"
        )
        .bind(r.spot_id)
        .bind(r.id)
        .bind(&r.object_id)
        .bind(r.object_type)
        .bind(&r.event_types)
        .bind(&r.callback_url)
        .bind(&r.callback_token)
        .bind(&r.callback_context)
        .bind(r.validity)
        .bind(r.active)
        .bind(&r.disabled_reason)
        .bind(r.updated_at)
        .execute(c)
        .await
    ))
}

/// Marks the subscription inactive with `reason` (the dispatcher, after a 410 or an
/// exhausted retry schedule); false when absent.
pub async fn deactivate(
    ex: Ex<'_>,
    spot_id: SpotId,
    id: SubscriptionId,
    reason: &str,
    now: i64,
) -> Result<bool, sqlx::Error> {
    run!(ex, |c| one_row(
        sqlx::query(
            "UPDATE kz_subscriptions SET active = FALSE, disabled_reason = $3, updated_at = $4 \
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

pub async fn delete(ex: Ex<'_>, spot_id: SpotId, id: SubscriptionId) -> Result<bool, sqlx::Error> {
    run!(ex, |c| one_row(
        sqlx::query("DELETE FROM kz_subscriptions WHERE spot_id = $1 AND id = $2")
            .bind(spot_id)
            .bind(id)
            .execute(c)
            .await
    ))
}

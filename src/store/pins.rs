//! Kaizala sign-in PINs (hashed), with their expiry and remaining tries.

use super::Ex;
use crate::domain::ids::{ConnectorId, MemberId, SpotId};
use crate::run;

pub async fn upsert(
    ex: Ex<'_>,
    spot_id: SpotId,
    connector_id: ConnectorId,
    member_id: MemberId,
    pin_hash: &[u8],
    expires_at: i64,
    tries: i64,
) -> Result<(), sqlx::Error> {
    run!(ex, |c| sqlx::query(
        "INSERT INTO kz_pins (spot_id, connector_id, member_id, pin_hash, expires_at, tries_left) \
         VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (spot_id, connector_id, member_id) DO UPDATE SET \
         pin_hash = excluded.pin_hash, expires_at = excluded.expires_at, tries_left = excluded.tries_left"
    )
    .bind(spot_id)
    .bind(connector_id)
    .bind(member_id)
    .bind(pin_hash)
    .bind(expires_at)
    .bind(tries)
    .execute(c)
    .await
    .map(|_| ()))
}

/// Spends one try of the pair's unexpired PIN and returns its hash; None when there is
/// no such PIN or no try left. One statement, so concurrent guesses (PostgreSQL row
/// lock, SQLite write lock) each take their own try and never more than there are.
pub async fn spend_try(
    ex: Ex<'_>,
    spot_id: SpotId,
    connector_id: ConnectorId,
    member_id: MemberId,
    now: i64,
) -> Result<Option<Vec<u8>>, sqlx::Error> {
    run!(ex, |c| sqlx::query_scalar::<_, Vec<u8>>(
        "UPDATE kz_pins SET tries_left = tries_left - 1 WHERE spot_id = $1 AND connector_id = $2 \
         AND member_id = $3 AND tries_left > 0 AND expires_at > $4 RETURNING pin_hash"
    )
    .bind(spot_id)
    .bind(connector_id)
    .bind(member_id)
    .bind(now)
    .fetch_optional(c)
    .await)
}

pub async fn delete(
    ex: Ex<'_>,
    spot_id: SpotId,
    connector_id: ConnectorId,
    member_id: MemberId,
) -> Result<(), sqlx::Error> {
    run!(ex, |c| sqlx::query("DELETE FROM kz_pins WHERE spot_id = $1 AND connector_id = $2 AND member_id = $3")
        .bind(spot_id)
        .bind(connector_id)
        .bind(member_id)
        .execute(c)
        .await
        .map(|_| ()))
}

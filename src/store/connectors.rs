//! Kaizala connectors (the applications that sign members in) and their secret hashes.

use super::{one_row, Ex};
use crate::domain::ids::{ConnectorId, SpotId};
use crate::run;

/// One row of `kz_connectors` without its secret hash (read only where it is compared).
#[derive(Clone, Debug, PartialEq, sqlx::FromRow)]
pub struct ConnectorRow {
    pub spot_id: SpotId,
    pub id: ConnectorId,
    pub name: String,
    pub created_at: i64,
}

pub async fn insert(ex: Ex<'_>, c_: &ConnectorRow, secret_hash: &[u8]) -> Result<(), sqlx::Error> {
    run!(ex, |c| sqlx::query(
        "INSERT INTO kz_connectors (spot_id, id, name, secret_hash, created_at) VALUES ($1, $2, $3, $4, $5)"
    )
    .bind(c_.spot_id)
    .bind(c_.id)
    .bind(&c_.name)
    .bind(secret_hash)
    .bind(c_.created_at)
    .execute(c)
    .await
    .map(|_| ()))
}

/// The connector with `id` (any spot) and its secret hash.
pub async fn get_with_secret(ex: Ex<'_>, id: ConnectorId) -> Result<Option<(ConnectorRow, Vec<u8>)>, sqlx::Error> {
    run!(ex, |c| {
        let row = sqlx::query_as::<_, (SpotId, ConnectorId, String, i64, Vec<u8>)>(
            "SELECT spot_id, id, name, created_at, secret_hash FROM kz_connectors WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(c)
        .await?;
        Ok(row.map(|(spot_id, id, name, created_at, hash)| (ConnectorRow { spot_id, id, name, created_at }, hash)))
    })
}

pub async fn list(ex: Ex<'_>, spot_id: Option<SpotId>) -> Result<Vec<ConnectorRow>, sqlx::Error> {
    run!(ex, |c| sqlx::query_as::<_, ConnectorRow>(
        "SELECT spot_id, id, name, created_at FROM kz_connectors WHERE ($1 IS NULL OR spot_id = $1) ORDER BY id"
    )
    .bind(spot_id)
    .fetch_all(c)
    .await)
}

pub async fn delete(ex: Ex<'_>, id: ConnectorId) -> Result<bool, sqlx::Error> {
    run!(ex, |c| one_row(sqlx::query("DELETE FROM kz_connectors WHERE id = $1").bind(id).execute(c).await))
}

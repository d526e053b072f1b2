//! Spots: the tenants of an openspot deployment, and their API keys.
//!
//! A key is 32 bytes from the OS CSPRNG, shown once, and stored only as its SHA-256
//! (a key has full entropy, so a slow hash adds nothing). Rotation replaces the hash,
//! so the old key stops working (within the auth cache's few seconds on other replicas).

use base64::Engine;
use rand::RngCore;
use sha2::{Digest, Sha256};

use super::now_ms;
use crate::domain::ids::SpotId;
use crate::error::{Entity, Error, Result};
use crate::store::{self, Db};

#[derive(Clone, Debug, PartialEq)]
pub struct Spot {
    pub id: SpotId,
    pub name: String,
    pub rate_limit_per_10s: Option<i64>,
    pub rate_limit_per_day: Option<i64>,
    pub created_at: i64,
}

/// A fresh API key: `os_` followed by 43 base64url characters (256 random bits).
pub fn generate_api_key() -> String {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    format!("os_{}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
}

super::row_conversions!(Spot, store::spots::SpotRow { id, name, rate_limit_per_10s, rate_limit_per_day, created_at });

pub fn hash_api_key(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

/// Creates a spot and returns it with its API key (the only time the key is visible).
pub async fn create_spot(db: &Db, name: &str) -> Result<(Spot, String)> {
    let name = name.trim();
    if name.is_empty() {
        return Err(Error::invalid("name", "must not be empty"));
    }
    let spot = Spot {
        id: SpotId::generate(),
        name: name.to_string(),
        rate_limit_per_10s: None,
        rate_limit_per_day: None,
        created_at: now_ms(),
    };
    let key = generate_api_key();
    let mut tx = db.begin().await?;
    store::spots::insert(tx.ex(), &(&spot).into(), &hash_api_key(&key)).await?;
    tx.commit().await?;
    Ok((spot, key))
}

pub async fn list_spots(db: &Db) -> Result<Vec<Spot>> {
    let mut c = db.conn().await?;
    Ok(store::spots::list(c.ex()).await?.into_iter().map(Spot::from).collect())
}

/// Every spot with its member count (operator listings: on Citus it reads every shard).
pub async fn list_spots_with_member_counts(db: &Db) -> Result<Vec<(Spot, i64)>> {
    let mut c = db.conn().await?;
    let rows = store::spots::list_with_member_counts(c.ex()).await?;
    Ok(rows.into_iter().map(|r| (Spot::from(r.spot), r.member_count)).collect())
}

pub async fn get_spot(db: &Db, id: SpotId) -> Result<Spot> {
    let mut c = db.conn().await?;
    store::spots::get(c.ex(), id).await?.map(Spot::from).ok_or(Error::NotFound(Entity::Spot))
}

/// Replaces the spot's key; the old one stops working.
pub async fn rotate_key(db: &Db, id: SpotId) -> Result<String> {
    let key = generate_api_key();
    let mut tx = db.begin().await?;
    if !store::spots::set_key_hash(tx.ex(), id, &hash_api_key(&key)).await? {
        return Err(Error::NotFound(Entity::Spot));
    }
    tx.commit().await?;
    Ok(key)
}

/// A short public name of the spot's current key (16 hex digits of its stored hash,
/// which reveal nothing of the key): the console's rotation form carries it, so that
/// the form sent twice (a page reload re-posts it) replaces the key once.
pub async fn key_fingerprint(db: &Db, id: SpotId) -> Result<String> {
    let mut c = db.conn().await?;
    let hash = store::spots::get_key_hash(c.ex(), id).await?.ok_or(Error::NotFound(Entity::Spot))?;
    Ok(fingerprint_of(&hash))
}

fn fingerprint_of(hash: &[u8]) -> String {
    hash.iter().take(8).map(|b| format!("{b:02x}")).collect()
}

/// Replaces the API key if it is still the one `fingerprint` names
/// ([`key_fingerprint`]) and returns the new key; None when the key was replaced since
/// (this request repeats one that did it, or another admin rotated meanwhile): nothing
/// changes, and the key shown by that rotation stays the key.
pub async fn rotate_key_if_current(db: &Db, id: SpotId, fingerprint: &str) -> Result<Option<String>> {
    let mut tx = db.begin().await?;
    let current = store::spots::get_key_hash(tx.ex(), id).await?.ok_or(Error::NotFound(Entity::Spot))?;
    let presented = fingerprint.trim().as_bytes();
    if !bool::from(subtle::ConstantTimeEq::ct_eq(fingerprint_of(&current).as_bytes(), presented)) {
        return Ok(None);
    }
    let key = generate_api_key();
    if !store::spots::replace_key_hash(tx.ex(), id, &current, &hash_api_key(&key)).await? {
        return Ok(None);
    }
    tx.commit().await?;
    Ok(Some(key))
}

/// Overrides the spot's rate limits (`None` keeps the current value).
pub async fn set_limits(db: &Db, id: SpotId, per_10s: Option<i64>, per_day: Option<i64>) -> Result<Spot> {
    for (field, v) in [("per-10s", per_10s), ("per-day", per_day)] {
        if v.is_some_and(|n| n < 1) {
            return Err(Error::invalid(field, "must be at least 1"));
        }
    }
    let mut tx = db.begin().await?;
    if !store::spots::set_limits(tx.ex(), id, per_10s, per_day).await? {
        return Err(Error::NotFound(Entity::Spot));
    }
    let spot = store::spots::get(tx.ex(), id).await?.map(Spot::from).ok_or(Error::NotFound(Entity::Spot))?;
    tx.commit().await?;
    Ok(spot)
}

/// Deletes the spot and everything in it.
pub async fn delete_spot(db: &Db, id: SpotId) -> Result<()> {
    let mut tx = db.begin().await?;
    if !store::spots::delete(tx.ex(), id).await? {
        return Err(Error::NotFound(Entity::Spot));
    }
    tx.commit().await?;
    // Its rate-limit windows: on SQLite in the companion database, outside the
    // transaction. They are counters, not data: if this fails, housekeeping purges
    // them within two days, and no request can spend them (the spot is gone).
    let purged = match db.limits_conn().await {
        Ok(mut c) => store::rate_limits::delete_spot(c.ex(), id).await,
        Err(e) => Err(e),
    };
    if let Err(e) = purged {
        tracing::warn!(error = %e, spot = %id, "the deleted spot's rate-limit windows are left to housekeeping");
    }
    Ok(())
}

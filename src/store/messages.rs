//! Kaizala group messages.

use uuid::Uuid;

use super::Ex;
use crate::domain::ids::{GroupId, MemberId, SpotId};
use crate::run;

pub async fn insert(
    ex: Ex<'_>,
    spot_id: SpotId,
    id: Uuid,
    group_id: GroupId,
    sender: MemberId,
    text: &str,
    now: i64,
) -> Result<(), sqlx::Error> {
    run!(ex, |c| sqlx::query(
        "INSERT INTO kz_messages (spot_id, id, group_id, sender_member_id, text, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6)"
    )
    .bind(spot_id)
    .bind(id)
    .bind(group_id)
    .bind(sender)
    .bind(text)
    .bind(now)
    .execute(c)
    .await
    .map(|_| ()))
}

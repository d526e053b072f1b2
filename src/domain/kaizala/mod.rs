//! The Kaizala connectors model (`kaizala-api.md` §2–4, contract §6, §8 "Kaizala"),
//! over the same spots, members and groups as the MeltingSpot dialect.
//! Kaizala members are spot members identified by E.164 mobile number.
//!
//! Split along its seams: [`auth`] (connectors, refresh and access tokens, PINs and
//! login, the access-token cache) and [`groups`] (groups, sub-groups, members and
//! messages as Kaizala sees them), with the sub-group hierarchy walked by one helper
//! ([`hierarchy`]). Callers use the re-exports below (`domain::kaizala::X`).
//!
//! A refused credential is [`Error::InvalidToken`] (token) or [`Error::Unauthenticated`]
//! (application credentials, PIN) with the neutral text; the HTTP adapter puts the
//! documented wire text in (`http::kaizala`).

pub mod auth;
pub mod groups;
pub mod hierarchy;
pub mod webhooks;

pub use auth::{
    access_token, create_connector, create_user_token, delete_connector, generate_pin, list_connectors, login_with_pin,
    AccessGrant, Connector, KzCaller, LoginThrottles, PinDelivery, PinLogin, TokenCache, TokenGrant,
    ACCESS_TOKEN_TTL_MS, PIN_TRIES, PIN_TTL_MS, REFRESH_TOKEN_TTL_MS,
};
pub use groups::{
    add_members, attach_sub_groups, create_group, detach_sub_group, group_detail, list_groups, list_members,
    post_message, remove_member, set_member_role, sub_groups, GroupMemberView, GroupView, MAX_GROUP_MEMBERS_PER_CALL,
    MAX_MESSAGE_CHARS, MAX_SUB_GROUPS_PER_CALL,
};

use super::members::{self, Member};
use super::phone;
use crate::domain::ids::SpotId;
use crate::error::{Error, Result};
use crate::store::{self, Tx};

/// Normalises a mobile number or answers 400 naming `field`.
pub fn mobile(field: &str, raw: &str) -> Result<String> {
    phone::normalize_mobile_number(raw).map_err(|e| Error::invalid(field, e.to_string()))
}

/// The member with `mobile` in the spot, created (`Invited`, no email) when absent.
pub async fn member_by_mobile(tx: &mut Tx, spot_id: SpotId, mobile: &str) -> Result<Member> {
    if let Some(m) = store::members::get_by_mobile(tx.ex(), spot_id, mobile).await?.map(Member::from) {
        return Ok(m);
    }
    let (m, _) = members::insert_or_get(tx, Member::new_invited(spot_id, None, Some(mobile.to_string()))).await?;
    Ok(m)
}

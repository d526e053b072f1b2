//! Typed ids: one newtype per kind of entity, so that a course id passed where a
//! participant id is expected is a compile error rather than a silent 404.
//!
//! Each id is a UUID underneath: it encodes as a UUID for both sqlx backends
//! (`sqlx(transparent)`), serialises as the UUID string, displays and parses as one.
//! Parsing a path segment into an id (with the dialect's own not-found message) stays
//! at the HTTP edge (`http::extract::parse_id`, `http::kaizala::{group_id, member_id}`).
//!
//! One kind of id where another is expected does not compile:
//!
//! ```compile_fail
//! use openspot::domain::ids::{CourseId, ParticipantId};
//! fn participant(_: ParticipantId) {}
//! participant(CourseId::generate());
//! ```
//!
//! ```
//! use openspot::domain::ids::ParticipantId;
//! fn participant(_: ParticipantId) {}
//! participant(ParticipantId::generate());
//! ```

use std::fmt;
use std::str::FromStr;

use uuid::Uuid;

macro_rules! typed_id {
    ($($(#[$doc:meta])* $name:ident;)*) => {$(
        $(#[$doc])*
        #[derive(
            Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord,
            serde::Serialize, serde::Deserialize, sqlx::Type,
        )]
        #[serde(transparent)]
        #[sqlx(transparent)]
        pub struct $name(pub Uuid);

        impl $name {
            /// A new, time-ordered id (see [`crate::domain::new_id`]).
            pub fn generate() -> Self {
                Self(crate::domain::new_id())
            }

            /// The UUID underneath.
            pub fn uuid(self) -> Uuid {
                self.0
            }
        }

        impl From<Uuid> for $name {
            fn from(id: Uuid) -> Self {
                Self(id)
            }
        }

        impl From<$name> for Uuid {
            fn from(id: $name) -> Self {
                id.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.0, f)
            }
        }

        impl FromStr for $name {
            type Err = uuid::Error;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Uuid::parse_str(s).map(Self)
            }
        }

        impl utoipa::PartialSchema for $name {
            fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
                use utoipa::openapi::schema::{KnownFormat, ObjectBuilder, SchemaFormat, Type};
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .format(Some(SchemaFormat::KnownFormat(KnownFormat::Uuid)))
                    .into()
            }
        }

        impl utoipa::ToSchema for $name {}
    )*};
}

typed_id! {
    /// A spot (tenant).
    SpotId;
    /// A member of a spot.
    MemberId;
    /// A group of a spot.
    GroupId;
    /// A course of a spot.
    CourseId;
    /// A participant of a course (not the member: a member has one participant per course).
    ParticipantId;
    /// A custom property definition.
    PropertyId;
    /// A custom role.
    RoleId;
    /// A Kaizala connector.
    ConnectorId;
    /// A MeltingSpot webhook endpoint.
    WebhookId;
    /// A Kaizala subscription (webhook).
    SubscriptionId;
    /// An event delivered through the outbox: the same on every target and attempt.
    EventId;
}

#[cfg(test)]
mod tests {
    use super::*;

    const RAW: &str = "df91cb37-97bf-4ccd-a8c2-b2a3ba5eac62";

    #[test]
    fn parses_and_displays_as_the_uuid() {
        let id: CourseId = RAW.parse().unwrap();
        assert_eq!(id.to_string(), RAW);
        assert_eq!(Uuid::from(id), Uuid::parse_str(RAW).unwrap());
        assert!("nope".parse::<CourseId>().is_err());
    }

    #[test]
    fn serialises_as_the_uuid_string() {
        let id: GroupId = RAW.parse().unwrap();
        assert_eq!(serde_json::to_string(&id).unwrap(), format!("\"{RAW}\""));
        let back: GroupId = serde_json::from_str(&format!("\"{RAW}\"")).unwrap();
        assert_eq!(back, id);
    }

    #[test]
    fn orders_and_hashes_like_the_uuid() {
        let a = MemberId::generate();
        let b = MemberId::generate();
        assert!(a < b, "v7 ids are time-ordered");
        let set: std::collections::HashSet<MemberId> = [a, b, a].into_iter().collect();
        assert_eq!(set.len(), 2);
    }

    #[test]
    fn schema_is_a_uuid_string() {
        use utoipa::PartialSchema;
        let ours = serde_json::to_value(SpotId::schema()).unwrap();
        assert_eq!(ours, serde_json::json!({"type": "string", "format": "uuid"}));
    }
}

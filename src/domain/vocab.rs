//! The closed vocabularies of the domain (course status, participant status, member
//! status and role, …) as enums rather than strings compared all over the code.
//!
//! Each word is spelled on the wire and in the database exactly as its variant is
//! named (`Accepted`, `SingleSelect`): [`std::fmt::Display`], [`std::str::FromStr`],
//! serde and the sqlx encoding (a TEXT column, on SQLite and PostgreSQL alike) all use
//! that spelling, so the enums change no byte of either dialect. A word that is not in
//! the vocabulary is refused by [`parse`] with today's validation message
//! (`must be one of A, B`); the rules that move between words (which status may follow
//! which) are methods of the enum next to its definition.

use std::fmt;

use crate::error::{Error, Result};

/// A word outside its vocabulary; displays as `must be one of A, B` (the allowed words
/// in their declared order).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UnknownWord {
    pub allowed: &'static [&'static str],
}

impl fmt::Display for UnknownWord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&must_be_one_of(self.allowed))
    }
}

impl std::error::Error for UnknownWord {}

/// `must be one of A, B` for the words of `allowed`, in order.
pub fn must_be_one_of<T: fmt::Display>(allowed: &[T]) -> String {
    let words: Vec<String> = allowed.iter().map(T::to_string).collect();
    format!("must be one of {}", words.join(", "))
}

/// `value` as a word of `T`, or a 400 naming `field` and the allowed words.
pub fn parse<T: std::str::FromStr<Err = UnknownWord>>(field: &str, value: &str) -> Result<T> {
    value.parse().map_err(|e: UnknownWord| Error::invalid(field, e.to_string()))
}

/// Declares a vocabulary: the enum, its words (`NAMES`, in declared order), `as_str`,
/// `Display`, `FromStr`, serde as the word, an OpenAPI string enum, and sqlx TEXT
/// encoding for both backends.
macro_rules! vocabulary {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
        pub enum $name {
            $($(#[$vmeta])* $variant),+
        }

        impl $name {
            /// Every word, in declared order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];
            /// Every word's spelling, in declared order.
            pub const NAMES: &'static [&'static str] = &[$(stringify!($variant)),+];

            /// The word as it is spelled on the wire and stored.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => stringify!($variant)),+
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl std::str::FromStr for $name {
            type Err = $crate::domain::vocab::UnknownWord;

            fn from_str(s: &str) -> std::result::Result<Self, Self::Err> {
                match s {
                    $(stringify!($variant) => Ok($name::$variant),)+
                    _ => Err($crate::domain::vocab::UnknownWord { allowed: $name::NAMES }),
                }
            }
        }

        impl sqlx::Type<sqlx::Sqlite> for $name {
            fn type_info() -> sqlx::sqlite::SqliteTypeInfo {
                <str as sqlx::Type<sqlx::Sqlite>>::type_info()
            }

            fn compatible(ty: &sqlx::sqlite::SqliteTypeInfo) -> bool {
                <str as sqlx::Type<sqlx::Sqlite>>::compatible(ty)
            }
        }

        impl<'q> sqlx::Encode<'q, sqlx::Sqlite> for $name {
            fn encode_by_ref(
                &self,
                buf: &mut Vec<sqlx::sqlite::SqliteArgumentValue<'q>>,
            ) -> std::result::Result<sqlx::encode::IsNull, sqlx::error::BoxDynError> {
                <&'q str as sqlx::Encode<'q, sqlx::Sqlite>>::encode(self.as_str(), buf)
            }
        }

        impl<'r> sqlx::Decode<'r, sqlx::Sqlite> for $name {
            fn decode(value: sqlx::sqlite::SqliteValueRef<'r>) -> std::result::Result<Self, sqlx::error::BoxDynError> {
                let word = <&str as sqlx::Decode<'r, sqlx::Sqlite>>::decode(value)?;
                Ok(word.parse::<$name>()?)
            }
        }

        impl sqlx::Type<sqlx::Postgres> for $name {
            fn type_info() -> sqlx::postgres::PgTypeInfo {
                <str as sqlx::Type<sqlx::Postgres>>::type_info()
            }

            fn compatible(ty: &sqlx::postgres::PgTypeInfo) -> bool {
                <str as sqlx::Type<sqlx::Postgres>>::compatible(ty)
            }
        }

        impl sqlx::Encode<'_, sqlx::Postgres> for $name {
            fn encode_by_ref(
                &self,
                buf: &mut sqlx::postgres::PgArgumentBuffer,
            ) -> std::result::Result<sqlx::encode::IsNull, sqlx::error::BoxDynError> {
                <&str as sqlx::Encode<'_, sqlx::Postgres>>::encode(self.as_str(), buf)
            }
        }

        impl<'r> sqlx::Decode<'r, sqlx::Postgres> for $name {
            fn decode(value: sqlx::postgres::PgValueRef<'r>) -> std::result::Result<Self, sqlx::error::BoxDynError> {
                let word = <&str as sqlx::Decode<'r, sqlx::Postgres>>::decode(value)?;
                Ok(word.parse::<$name>()?)
            }
        }
    };
}

vocabulary! {
    /// Whether a course is visible to its participants yet.
    CourseStatus { Draft, Published }
}

vocabulary! {
    /// Who may see a course.
    CoursePrivacy { Public, Secret }
}

vocabulary! {
    /// Whether a course's lessons may be taken in any order.
    NavigationMode { Flexible, Sequential }
}

vocabulary! {
    /// A course participant's progress.
    ParticipantStatus { Invited, Started, Completed, Unenrolled }
}

impl ParticipantStatus {
    /// The statuses a client may set (`PUT …/participants/{id}`); Invited is set only
    /// by an invitation.
    pub const SETTABLE: &'static [ParticipantStatus] =
        &[ParticipantStatus::Started, ParticipantStatus::Completed, ParticipantStatus::Unenrolled];

    /// Whether a client may set this status (see [`Self::SETTABLE`]).
    pub fn is_settable(self) -> bool {
        Self::SETTABLE.contains(&self)
    }

    /// Whether a participant may move from `self` to `to`: Invited → Started →
    /// Completed (Started and Completed may be repeated), and any status but
    /// Unenrolled → Unenrolled.
    pub fn can_move_to(self, to: ParticipantStatus) -> bool {
        use ParticipantStatus::*;
        match (self, to) {
            (Invited, Started) | (Started, Started) | (Started, Completed) | (Completed, Completed) => true,
            (from, Unenrolled) => from != Unenrolled,
            _ => false,
        }
    }
}

vocabulary! {
    /// A member's role in their spot.
    MemberRole { Member, Admin }
}

vocabulary! {
    /// Where a member stands in their spot: invited, registered, gone, …
    MemberStatus { Accepted, Deactivated, DeclinedInvitation, Invited, Left, Pending, Rejected }
}

impl MemberStatus {
    /// The statuses `PUT /v1/spotMembers/{id}` may set; the others follow from what the
    /// member does (accepting an invitation, leaving).
    pub const WRITABLE: &'static [MemberStatus] =
        &[MemberStatus::Accepted, MemberStatus::Deactivated, MemberStatus::Rejected];

    /// Whether a client may set this status on a member.
    pub fn is_writable(self) -> bool {
        Self::WRITABLE.contains(&self)
    }

    /// Whether a member with this status may sign in, refresh or use a Kaizala token
    /// (SECURITY.md "Revocation"): not once Deactivated, Rejected or Left.
    pub fn may_sign_in(self) -> bool {
        !matches!(self, MemberStatus::Deactivated | MemberStatus::Rejected | MemberStatus::Left)
    }

    /// Whether signing in makes the member Accepted (an Invited or Pending member
    /// registers by signing in; the others keep their status).
    pub fn accepts_on_sign_in(self) -> bool {
        matches!(self, MemberStatus::Invited | MemberStatus::Pending)
    }
}

vocabulary! {
    /// A member's role in a group (Kaizala): an Admin may change the group and its
    /// members; a spot Admin acts as a group Admin everywhere.
    GroupRole { Admin, Member }
}

vocabulary! {
    /// How a group's members are decided: by hand (Static) or by rules (Smart).
    GroupKind { Static, Smart }
}

vocabulary! {
    /// A Kaizala group's type.
    KaizalaGroupType { Group, ConnectGroup }
}

vocabulary! {
    /// The type of a custom member property: what its values are and which filter
    /// operators apply to them.
    PropertyType { Text, Number, Boolean, Date, SingleSelect, MultipleSelect }
}

impl PropertyType {
    /// Whether the values are picked from the property's possible values.
    pub fn is_select(self) -> bool {
        matches!(self, PropertyType::SingleSelect | PropertyType::MultipleSelect)
    }

    /// Whether the values are stored as numbers (a Boolean as 0 or 1).
    pub fn is_numeric(self) -> bool {
        matches!(self, PropertyType::Number | PropertyType::Boolean)
    }
}

vocabulary! {
    /// Where an outbox row stands: waiting (Pending), held while its target is disabled
    /// (Paused), or done (Delivered, Failed after its retries, Skipped without a way to send).
    OutboxState { Pending, Paused, Delivered, Failed, Skipped }
}

impl OutboxState {
    /// Whether the row is finished (no further attempt unless requeued).
    pub fn is_final(self) -> bool {
        matches!(self, OutboxState::Delivered | OutboxState::Failed | OutboxState::Skipped)
    }
}

vocabulary! {
    /// How an outbox row is delivered: a MeltingSpot webhook endpoint, a Kaizala
    /// subscription, or an email.
    ChannelKind { Webhook, Kaizala, Email }
}

vocabulary! {
    /// The event types of a Kaizala subscription (kaizala-api.md §6).
    KzEventType {
        ActionCreated,
        ActionResponse,
        SurveyCreated,
        JobCreated,
        SurveyResponse,
        JobResponse,
        TextMessageCreated,
        AttachmentCreated,
        Announcement,
        MemberAdded,
        MemberRemoved,
        GroupAdded,
        GroupRemoved,
        PollCreated,
        LetsMeetCreated,
        PollResponse,
        LetsMeetResponse,
    }
}

vocabulary! {
    /// What a Kaizala subscription watches.
    KzObjectType { Group, Action, ActionPackage }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_round_trip_and_unknown_words_name_the_allowed_ones() {
        for s in ParticipantStatus::ALL {
            assert_eq!(s.as_str().parse::<ParticipantStatus>(), Ok(*s));
            assert_eq!(s.to_string(), s.as_str());
        }
        let err = "invited".parse::<ParticipantStatus>().unwrap_err();
        assert_eq!(err.to_string(), "must be one of Invited, Started, Completed, Unenrolled");
        assert_eq!(serde_json::to_value(CourseStatus::Draft).unwrap(), serde_json::json!("Draft"));
    }

    #[test]
    fn participant_moves() {
        use ParticipantStatus::*;
        let allowed: Vec<(ParticipantStatus, ParticipantStatus)> = ParticipantStatus::ALL
            .iter()
            .flat_map(|f| ParticipantStatus::ALL.iter().map(move |t| (*f, *t)))
            .filter(|(f, t)| f.can_move_to(*t))
            .collect();
        assert_eq!(
            allowed,
            vec![
                (Invited, Started),
                (Invited, Unenrolled),
                (Started, Started),
                (Started, Completed),
                (Started, Unenrolled),
                (Completed, Completed),
                (Completed, Unenrolled),
            ]
        );
    }

    #[test]
    fn member_status_rules() {
        use MemberStatus::*;
        let writable: Vec<_> = MemberStatus::ALL.iter().filter(|s| s.is_writable()).copied().collect();
        assert_eq!(writable, vec![Accepted, Deactivated, Rejected]);
        let signed_out: Vec<_> = MemberStatus::ALL.iter().filter(|s| !s.may_sign_in()).copied().collect();
        assert_eq!(signed_out, vec![Deactivated, Left, Rejected]);
        let accepting: Vec<_> = MemberStatus::ALL.iter().filter(|s| s.accepts_on_sign_in()).copied().collect();
        assert_eq!(accepting, vec![Invited, Pending]);
        assert_eq!("Owner".parse::<MemberRole>().unwrap_err().to_string(), "must be one of Member, Admin");
    }
}

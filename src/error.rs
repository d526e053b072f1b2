//! The one error type of openspot. Domain and store code return [`Error`]; each HTTP
//! dialect renders it in its own body shape (`http::error`), so a validation failure
//! reads the same whichever API asked.

use std::fmt;

/// What was not found; its display is the documented message ("Spot member not found").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Entity {
    Spot,
    SpotMember,
    CustomRole,
    Group,
    Course,
    CourseParticipant,
    CustomProperty,
    Webhook,
    Connector,
}

impl fmt::Display for Entity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Entity::Spot => "Spot",
            Entity::SpotMember => "Spot member",
            Entity::CustomRole => "Custom role",
            Entity::Group => "Group",
            Entity::Course => "Course",
            Entity::CourseParticipant => "Course participant",
            Entity::CustomProperty => "Custom property",
            Entity::Webhook => "Webhook",
            Entity::Connector => "Connector",
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// 404 "<Entity> not found".
    #[error("{0} not found")]
    NotFound(Entity),
    /// 400: a field (or query parameter) and what is wrong with it.
    #[error("{field}: {reason}")]
    Invalid { field: String, reason: String },
    /// 400 with a free message (e.g. an unparseable body).
    #[error("{0}")]
    BadRequest(String),
    /// 401.
    #[error("{0}")]
    Unauthorized(String),
    /// 403.
    #[error("{0}")]
    Forbidden(String),
    /// 409.
    #[error("{0}")]
    Conflict(String),
    /// 413 "Payload is too large".
    #[error("Payload is too large")]
    TooLarge,
    /// 429.
    #[error("Too many requests, retry in {retry_after_s} s")]
    RateLimited { retry_after_s: u64 },
    /// 503: the database does not answer.
    #[error("{0}")]
    Unavailable(String),
    /// 500: logged, never shown.
    #[error("internal error")]
    Internal(#[from] anyhow::Error),
}

impl Error {
    pub fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Error::Invalid { field: field.into(), reason: reason.into() }
    }

    pub fn status(&self) -> u16 {
        match self {
            Error::NotFound(_) => 404,
            Error::Invalid { .. } | Error::BadRequest(_) => 400,
            Error::Unauthorized(_) => 401,
            Error::Forbidden(_) => 403,
            Error::Conflict(_) => 409,
            Error::TooLarge => 413,
            Error::RateLimited { .. } => 429,
            Error::Unavailable(_) => 503,
            Error::Internal(_) => 500,
        }
    }
}

impl From<sqlx::Error> for Error {
    fn from(e: sqlx::Error) -> Self {
        match e {
            sqlx::Error::PoolTimedOut => Error::Unavailable("database is busy, retry shortly".into()),
            other => Error::Internal(anyhow::Error::new(other)),
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

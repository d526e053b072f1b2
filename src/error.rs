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
    WebhookEvent,
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
            Entity::WebhookEvent => "Webhook event",
            Entity::Connector => "Connector",
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// 404 "`Entity` not found" (e.g. "Spot member not found").
    #[error("{0} not found")]
    NotFound(Entity),
    /// 400: a field (or query parameter) and what is wrong with it.
    #[error("{field}: {reason}")]
    Invalid { field: String, reason: String },
    /// 400 with a free message (e.g. an unparseable body).
    #[error("{0}")]
    BadRequest(String),
    /// 401: a MeltingSpot API key was refused.
    #[error("{0}")]
    Unauthorized(String),
    /// 401: a token (access or refresh) is missing, unknown, expired or revoked, or its
    /// member may no longer sign in. The domain says [`UNAUTHORIZED`]; a dialect with
    /// documented wire text (Kaizala `InvalidToken`) puts its own in.
    #[error("{0}")]
    InvalidToken(String),
    /// 401: wrong application credentials or PIN (Kaizala `Unauthenticated`); the text
    /// is chosen as for [`Error::InvalidToken`].
    #[error("{0}")]
    Unauthenticated(String),
    /// 403.
    #[error("{0}")]
    Forbidden(String),
    /// 409.
    #[error("{0}")]
    Conflict(String),
    /// 408: the request (its body included) was not answered within the request timeout.
    #[error("Request timed out")]
    TimedOut,
    /// 413 "Payload is too large".
    #[error("Payload is too large")]
    TooLarge,
    /// 429: a throttle or a lockout (too many wrong PINs for a number this hour).
    #[error("Too many requests, retry in {retry_after_s} s")]
    RateLimited { retry_after_s: u64 },
    /// 503 + `Retry-After`: the database is busy (SQLite's lock was not granted within
    /// the busy timeout, no pooled connection came free) or does not answer.
    #[error("{0}")]
    Unavailable(String),
    /// 503 + `Retry-After` once retries are spent: the transaction lost a race that
    /// re-running it can win (a PostgreSQL deadlock or serialization failure, a SQLite
    /// snapshot or table lock). [`crate::store::retry_transient`] re-runs the operation.
    #[error("{0}")]
    Transient(String),
    /// 500: logged, never shown.
    #[error("internal error")]
    Internal(#[from] anyhow::Error),
}

impl Error {
    pub fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Error::Invalid { field: field.into(), reason: reason.into() }
    }

    /// [`Error::InvalidToken`] with the dialect-neutral text.
    pub fn invalid_token() -> Self {
        Error::InvalidToken(UNAUTHORIZED.into())
    }

    /// [`Error::Unauthenticated`] with the dialect-neutral text.
    pub fn unauthenticated() -> Self {
        Error::Unauthenticated(UNAUTHORIZED.into())
    }

    pub fn status(&self) -> u16 {
        match self {
            Error::NotFound(_) => 404,
            Error::Invalid { .. } | Error::BadRequest(_) => 400,
            Error::Unauthorized(_) | Error::InvalidToken(_) | Error::Unauthenticated(_) => 401,
            Error::Forbidden(_) => 403,
            Error::Conflict(_) => 409,
            Error::TimedOut => 408,
            Error::TooLarge => 413,
            Error::RateLimited { .. } => 429,
            Error::Unavailable(_) | Error::Transient(_) => 503,
            Error::Internal(_) => 500,
        }
    }

    /// Seconds a client should wait before retrying (`Retry-After`), for the errors
    /// that are worth retrying as they are.
    pub fn retry_after_s(&self) -> Option<u64> {
        match self {
            Error::RateLimited { retry_after_s } => Some(*retry_after_s),
            Error::Unavailable(_) | Error::Transient(_) => Some(BUSY_RETRY_AFTER_S),
            _ => None,
        }
    }

    /// True when a presented credential (key, token, application secret, PIN) was
    /// refused: what the failed-auth throttle counts. Throttles, lockouts and database
    /// failures are not.
    pub fn is_auth_failure(&self) -> bool {
        matches!(self, Error::Unauthorized(_) | Error::InvalidToken(_) | Error::Unauthenticated(_))
    }

    /// True for a failure that re-running the whole operation may not meet again.
    pub fn is_transient(&self) -> bool {
        matches!(self, Error::Transient(_))
    }
}

/// The text of a refused credential when the dialect has none of its own.
pub const UNAUTHORIZED: &str = "Unauthorized";

/// The `Retry-After` (seconds) of a 503 from a busy database: its write locks are held
/// for at most a few hundred milliseconds at a time, so one second is plenty.
pub const BUSY_RETRY_AFTER_S: u64 = 1;

const BUSY_MESSAGE: &str = "The database is busy, retry shortly";
const UNREACHABLE_MESSAGE: &str = "The database is unavailable, retry shortly";
const FULL_MESSAGE: &str = "The database is full: nothing more can be stored until its operator frees space";
const READ_ONLY_MESSAGE: &str = "The database is read-only: nothing can be changed until its operator fixes it";

/// How a database error reads to a client: busy/contended or a genuine failure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DbFailure {
    /// Lost a race that a re-run can win (deadlock, serialization failure, stale snapshot).
    Transient,
    /// Busy after waiting (lock not granted within the busy timeout, pool exhausted).
    Busy,
    /// The database cannot be reached (connection refused or lost, server shutting down).
    Unreachable,
    /// No space left for the database (SQLite `SQLITE_FULL`, PostgreSQL `53100`).
    Full,
    /// The database refuses writes (a read-only file or mount, a read-only server).
    ReadOnly,
    Other,
}

/// Classifies a database error code: SQLite's (extended) result codes as decimal text,
/// PostgreSQL's SQLSTATE.
pub fn classify_db_code(code: &str) -> DbFailure {
    match code {
        // PostgreSQL: deadlock_detected, serialization_failure.
        "40P01" | "40001" => DbFailure::Transient,
        // PostgreSQL: lock_not_available (lock_timeout), too_many_connections.
        "55P03" | "53300" => DbFailure::Busy,
        // PostgreSQL: admin_shutdown, crash_shutdown, cannot_connect_now, and the
        // connection exceptions of class 08.
        "57P01" | "57P02" | "57P03" => DbFailure::Unreachable,
        c if c.starts_with("08") => DbFailure::Unreachable,
        // PostgreSQL: disk_full; read_only_sql_transaction (a standby).
        "53100" => DbFailure::Full,
        "25006" => DbFailure::ReadOnly,
        _ => match code.parse::<i32>() {
            // SQLite: SQLITE_BUSY_SNAPSHOT (a read snapshot that cannot become a write),
            // SQLITE_LOCKED and its extended forms (a table lock of the same process).
            Ok(517) => DbFailure::Transient,
            Ok(n) if n & 0xff == 6 => DbFailure::Transient,
            // SQLITE_BUSY and its extended forms (BUSY_RECOVERY 261, BUSY_TIMEOUT 773):
            // the busy timeout has already been waited out.
            Ok(n) if n & 0xff == 5 => DbFailure::Busy,
            // SQLITE_FULL; SQLITE_READONLY and its extended forms.
            Ok(13) => DbFailure::Full,
            Ok(n) if n & 0xff == 8 => DbFailure::ReadOnly,
            // SQLITE_CANTOPEN and its extended forms: a connection to open, of a file
            // gone, out of reach or not creatable (a read-only mount).
            Ok(n) if n & 0xff == 14 => DbFailure::Unreachable,
            _ => DbFailure::Other,
        },
    }
}

impl From<sqlx::Error> for Error {
    fn from(e: sqlx::Error) -> Self {
        let failure = match &e {
            sqlx::Error::PoolTimedOut => DbFailure::Busy,
            sqlx::Error::Io(_) | sqlx::Error::PoolClosed | sqlx::Error::WorkerCrashed => DbFailure::Unreachable,
            sqlx::Error::Database(d) => d.code().map_or(DbFailure::Other, |c| classify_db_code(&c)),
            _ => DbFailure::Other,
        };
        match failure {
            DbFailure::Transient => {
                tracing::warn!(error = %e, "transaction lost a race with another");
                Error::Transient(BUSY_MESSAGE.into())
            }
            DbFailure::Busy => {
                tracing::warn!(error = %e, "database busy");
                Error::Unavailable(BUSY_MESSAGE.into())
            }
            DbFailure::Unreachable => {
                tracing::error!(error = %e, "database unreachable");
                Error::Unavailable(UNREACHABLE_MESSAGE.into())
            }
            DbFailure::Full => {
                tracing::error!(error = %e, "database full: free space for it");
                Error::Unavailable(FULL_MESSAGE.into())
            }
            DbFailure::ReadOnly => {
                tracing::error!(error = %e, "database read-only");
                Error::Unavailable(READ_ONLY_MESSAGE.into())
            }
            DbFailure::Other => Error::Internal(anyhow::Error::new(e)),
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_codes_are_classified() {
        for code in ["40P01", "40001", "517", "6", "262"] {
            assert_eq!(classify_db_code(code), DbFailure::Transient, "{code}");
        }
        for code in ["57P01", "57P03", "08006", "08001", "14", "1294"] {
            assert_eq!(classify_db_code(code), DbFailure::Unreachable, "{code}");
        }
        for code in ["13", "53100"] {
            assert_eq!(classify_db_code(code), DbFailure::Full, "{code}");
        }
        for code in ["8", "1032", "264", "25006"] {
            assert_eq!(classify_db_code(code), DbFailure::ReadOnly, "{code}");
        }
        for code in ["5", "261", "773", "55P03", "53300"] {
            assert_eq!(classify_db_code(code), DbFailure::Busy, "{code}");
        }
        // Constraint violations (SQLite 2067 unique, PostgreSQL 23505) are not busy.
        for code in ["2067", "19", "23505", "42P01", "1", "x"] {
            assert_eq!(classify_db_code(code), DbFailure::Other, "{code}");
        }
    }

    #[test]
    fn busy_and_transient_errors_are_503_with_a_retry_hint() {
        let busy = Error::from(sqlx::Error::PoolTimedOut);
        assert!(matches!(busy, Error::Unavailable(_)));
        assert_eq!(busy.status(), 503);
        assert_eq!(busy.retry_after_s(), Some(BUSY_RETRY_AFTER_S));
        assert!(!busy.is_transient());
        let transient = Error::Transient(BUSY_MESSAGE.into());
        assert_eq!(transient.status(), 503);
        assert_eq!(transient.retry_after_s(), Some(BUSY_RETRY_AFTER_S));
        assert!(transient.is_transient());
        assert_eq!(Error::from(sqlx::Error::RowNotFound).status(), 500);
        assert_eq!(Error::Conflict("x".into()).retry_after_s(), None);
    }

    #[test]
    fn refused_credentials_are_401_and_count_as_auth_failures() {
        for e in [Error::invalid_token(), Error::unauthenticated(), Error::Unauthorized(UNAUTHORIZED.into())] {
            assert_eq!(e.status(), 401, "{e:?}");
            assert!(e.is_auth_failure(), "{e:?}");
            assert_eq!(e.retry_after_s(), None, "{e:?}");
            assert_eq!(e.to_string(), UNAUTHORIZED);
        }
        // A lockout is a throttle, not a refused credential.
        let locked = Error::RateLimited { retry_after_s: 60 };
        assert_eq!(locked.status(), 429);
        assert!(!locked.is_auth_failure());
        assert!(!Error::from(sqlx::Error::PoolTimedOut).is_auth_failure());
    }
}

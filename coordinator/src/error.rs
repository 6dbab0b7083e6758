//! The service's one error type: what went wrong in terms of the request
//! (refused, not found, too many...), a readable message and the field at
//! fault. It knows nothing of HTTP: `api/error.rs` gives each kind its
//! status and sends it as `{"error": "...", "field": "..."}`.

use oblivion_protocol::SpecError;
use oblivion_store::{ErrorKind, StoreError};

/// What kind of failure a request met, which decides how it is answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Failure {
    /// The request itself is malformed.
    Malformed,
    /// It needs a signed-in account, or a worker's token, that it lacks.
    NotSignedIn,
    /// The caller is known, but may not do this.
    Forbidden,
    /// No such thing.
    NotFound,
    /// Valid, but not now (e.g. a lease the worker does not hold).
    Conflict,
    /// Addressed to another coordinator (a sign-in for another origin).
    WrongHost,
    /// A body over its limit.
    TooLarge,
    /// A body sent too slowly.
    TooSlow,
    /// Well-formed, but breaks a rule.
    Unprocessable,
    /// Over a rate or a quota.
    TooMany,
    /// Storage busy or unreachable: the same request may succeed later.
    Unavailable,
    /// A fault of the coordinator's.
    Internal,
}

/// A failed request, or failed background work.
#[derive(Debug)]
pub struct AppError {
    /// What kind of failure.
    pub kind: Failure,
    /// What is wrong.
    pub message: String,
    /// The spec field at fault.
    pub field: Option<String>,
    /// Seconds to wait before retrying.
    pub retry_after: Option<u64>,
    /// Whether the same request may succeed later: storage or the
    /// database was unreachable, busy or timed out. Background work
    /// (aggregation) retries these; anything else is deterministic.
    pub transient: bool,
}

impl AppError {
    /// An error of `kind`.
    pub fn new(kind: Failure, message: impl Into<String>) -> AppError {
        AppError {
            kind,
            message: message.into(),
            field: None,
            retry_after: None,
            transient: false,
        }
    }

    /// The request itself is malformed.
    pub fn bad_request(message: impl Into<String>) -> AppError {
        AppError::new(Failure::Malformed, message)
    }

    /// No such thing.
    pub fn not_found(message: impl Into<String>) -> AppError {
        AppError::new(Failure::NotFound, message)
    }

    /// Valid, but not now (e.g. a lease the worker does not hold).
    pub fn conflict(message: impl Into<String>) -> AppError {
        AppError::new(Failure::Conflict, message)
    }

    /// Well-formed, but breaks a rule.
    pub fn unprocessable(message: impl Into<String>) -> AppError {
        AppError::new(Failure::Unprocessable, message)
    }

    /// A fault of the coordinator's.
    pub fn internal(message: impl Into<String>) -> AppError {
        AppError::new(Failure::Internal, message)
    }

    /// An I/O failure of the artifact store: transient (a disk or an
    /// object store that is away comes back), as [`AppError::db`] answers.
    pub fn io(e: std::io::Error) -> AppError {
        AppError::db(StoreError::from(e))
    }

    /// A failure of the store, answered by its kind alone: its text (a
    /// query, a path, a server's words) is logged, never sent. Transient:
    /// unavailable, to retry after a second, and background work tries it
    /// again; a conflict with what is stored: a conflict; anything else:
    /// internal.
    pub fn db(e: StoreError) -> AppError {
        tracing::error!("store: {e}");
        match e.kind() {
            ErrorKind::Transient => AppError {
                retry_after: Some(1),
                transient: true,
                ..AppError::new(
                    Failure::Unavailable,
                    "the coordinator's storage is busy or unreachable; try again shortly",
                )
            },
            ErrorKind::Conflict => {
                AppError::conflict("the change conflicts with what is stored now; reload and retry")
            }
            ErrorKind::Corrupt | ErrorKind::Other => {
                AppError::internal("internal error in the coordinator's storage (logged)")
            }
        }
    }

    /// Names the spec field at fault.
    pub fn with_field(mut self, field: &str) -> AppError {
        self.field = Some(field.to_string());
        self
    }
}

impl From<StoreError> for AppError {
    fn from(e: StoreError) -> AppError {
        AppError::db(e)
    }
}

impl From<SpecError> for AppError {
    fn from(e: SpecError) -> AppError {
        // A document that is not JSON at all is a bad request; a JSON
        // document breaking a rule of the spec is unprocessable.
        let kind = if e.field.is_empty() {
            Failure::Malformed
        } else {
            Failure::Unprocessable
        };
        AppError {
            kind,
            message: e.to_string(),
            field: (!e.field.is_empty()).then_some(e.field),
            retry_after: None,
            transient: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_store_failure_tells_the_client_its_kind_and_nothing_of_its_text() {
        let secret = "connection to 10.0.0.7:5432 refused; SELECT token_hash FROM workers";
        let away = AppError::db(StoreError::new(ErrorKind::Transient, secret));
        assert_eq!(away.kind, Failure::Unavailable);
        assert_eq!(away.retry_after, Some(1));
        assert!(away.transient);
        let io = std::io::Error::other("/var/lib/oblivion/artifacts/ab: disk full");
        let disk = AppError::io(io);
        assert_eq!(disk.kind, Failure::Unavailable);
        assert!(!disk.message.contains("/var/lib"), "{}", disk.message);
        let conflict = AppError::db(StoreError::new(ErrorKind::Conflict, secret));
        assert_eq!(conflict.kind, Failure::Conflict);
        assert!(!conflict.transient);
        let corrupt = AppError::db(StoreError::new(ErrorKind::Corrupt, secret));
        assert_eq!(corrupt.kind, Failure::Internal);
        for e in [away, conflict, corrupt] {
            assert!(
                !e.message.contains("10.0.0.7") && !e.message.contains("SELECT"),
                "{}",
                e.message
            );
        }
    }
}

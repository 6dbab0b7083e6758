//! The one error type of the HTTP API: a status and a readable message,
//! sent as `{"error": "...", "field": "..."}`.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use oblivion_protocol::SpecError;
use oblivion_protocol::api::ApiError;
use oblivion_store::{ErrorKind, StoreError};

/// An HTTP error answer.
#[derive(Debug)]
pub struct AppError {
    /// Status code.
    pub status: StatusCode,
    /// What is wrong.
    pub message: String,
    /// The spec field at fault.
    pub field: Option<String>,
    /// Seconds to wait before retrying (sent as `Retry-After`).
    pub retry_after: Option<u64>,
    /// Whether the same request may succeed later: storage or the
    /// database was unreachable, busy or timed out. Background work
    /// (aggregation) retries these; anything else is deterministic.
    pub transient: bool,
}

impl AppError {
    /// An error with `status`.
    pub fn new(status: StatusCode, message: impl Into<String>) -> AppError {
        AppError {
            status,
            message: message.into(),
            field: None,
            retry_after: None,
            transient: false,
        }
    }

    /// 400: the request itself is malformed.
    pub fn bad_request(message: impl Into<String>) -> AppError {
        AppError::new(StatusCode::BAD_REQUEST, message)
    }

    /// 404.
    pub fn not_found(message: impl Into<String>) -> AppError {
        AppError::new(StatusCode::NOT_FOUND, message)
    }

    /// 409: valid, but not now (e.g. a lease the worker does not hold).
    pub fn conflict(message: impl Into<String>) -> AppError {
        AppError::new(StatusCode::CONFLICT, message)
    }

    /// 422: well-formed, but breaks a rule.
    pub fn unprocessable(message: impl Into<String>) -> AppError {
        AppError::new(StatusCode::UNPROCESSABLE_ENTITY, message)
    }

    /// 500.
    pub fn internal(message: impl Into<String>) -> AppError {
        AppError::new(StatusCode::INTERNAL_SERVER_ERROR, message)
    }

    /// An I/O failure of the artifact store: transient (a disk or an
    /// object store that is away comes back), as [`AppError::db`] answers.
    pub fn io(e: std::io::Error) -> AppError {
        AppError::db(StoreError::from(e))
    }

    /// A failure of the store, answered by its kind alone: its text (a
    /// query, a path, a server's words) is logged, never sent. Transient:
    /// 503 with `Retry-After`, and background work tries it again; a
    /// conflict with what is stored: 409; anything else: 500.
    pub fn db(e: StoreError) -> AppError {
        tracing::error!("store: {e}");
        match e.kind() {
            ErrorKind::Transient => AppError {
                retry_after: Some(1),
                transient: true,
                ..AppError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
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
        let status = if e.field.is_empty() {
            StatusCode::BAD_REQUEST
        } else {
            StatusCode::UNPROCESSABLE_ENTITY
        };
        AppError {
            status,
            message: e.to_string(),
            field: (!e.field.is_empty()).then_some(e.field),
            retry_after: None,
            transient: false,
        }
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let body = ApiError {
            error: self.message,
            field: self.field,
        };
        let mut response = (self.status, Json(body)).into_response();
        if let Some(secs) = self.retry_after {
            response
                .headers_mut()
                .insert(axum::http::header::RETRY_AFTER, secs.into());
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_store_failure_tells_the_client_its_kind_and_nothing_of_its_text() {
        let secret = "connection to 10.0.0.7:5432 refused; SELECT token_hash FROM workers";
        let away = AppError::db(StoreError::new(ErrorKind::Transient, secret));
        assert_eq!(away.status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(away.retry_after, Some(1));
        assert!(away.transient);
        let io = std::io::Error::other("/var/lib/oblivion/artifacts/ab: disk full");
        let disk = AppError::io(io);
        assert_eq!(disk.status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(!disk.message.contains("/var/lib"), "{}", disk.message);
        let conflict = AppError::db(StoreError::new(ErrorKind::Conflict, secret));
        assert_eq!(conflict.status, StatusCode::CONFLICT);
        assert!(!conflict.transient);
        let corrupt = AppError::db(StoreError::new(ErrorKind::Corrupt, secret));
        assert_eq!(corrupt.status, StatusCode::INTERNAL_SERVER_ERROR);
        for e in [away, conflict, corrupt] {
            assert!(
                !e.message.contains("10.0.0.7") && !e.message.contains("SELECT"),
                "{}",
                e.message
            );
        }
    }
}

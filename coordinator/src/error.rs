//! The one error type of the HTTP API: a status and a readable message,
//! sent as `{"error": "...", "field": "..."}`.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use oblivion_protocol::SpecError;
use oblivion_protocol::api::ApiError;

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

    /// 500 from an I/O failure of the artifact store: transient (a disk
    /// or an object store that is away comes back).
    pub fn io(e: std::io::Error) -> AppError {
        tracing::error!("storage: {e}");
        AppError {
            transient: true,
            ..AppError::internal(format!("storage error: {e}"))
        }
    }

    /// 500 from the database; transient when it was unreachable, busy or
    /// timed out, or a transaction lost a serialization race.
    pub fn db(e: sqlx::Error) -> AppError {
        tracing::error!("database: {e}");
        AppError {
            transient: transient_db(&e),
            ..AppError::internal(format!("database error: {e}"))
        }
    }

    /// Names the spec field at fault.
    pub fn with_field(mut self, field: &str) -> AppError {
        self.field = Some(field.to_string());
        self
    }
}

/// Whether a database error may pass if the same work is tried again.
fn transient_db(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => true,
        // PostgreSQL: serialization failure, deadlock, too many
        // connections, shutting down; SQLite: busy, locked.
        sqlx::Error::Database(d) => matches!(
            d.code().as_deref(),
            Some("40001" | "40P01" | "53300" | "57P01" | "57P02" | "57P03" | "5" | "6")
        ),
        _ => false,
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

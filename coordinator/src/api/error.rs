//! How a failure is answered over HTTP: each kind its status, the message
//! and field as `{"error": "...", "field": "..."}`, and `Retry-After` when
//! trying again may help. The only place a failure becomes a status.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use oblivion_protocol::api::ApiError;

use crate::error::{AppError, Failure};

/// The status a failure of `kind` is answered with.
pub fn status_of(kind: Failure) -> StatusCode {
    match kind {
        Failure::Malformed => StatusCode::BAD_REQUEST,
        Failure::NotSignedIn => StatusCode::UNAUTHORIZED,
        Failure::Forbidden => StatusCode::FORBIDDEN,
        Failure::NotFound => StatusCode::NOT_FOUND,
        Failure::Conflict => StatusCode::CONFLICT,
        Failure::WrongHost => StatusCode::MISDIRECTED_REQUEST,
        Failure::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        Failure::TooSlow => StatusCode::REQUEST_TIMEOUT,
        Failure::Unprocessable => StatusCode::UNPROCESSABLE_ENTITY,
        Failure::TooMany => StatusCode::TOO_MANY_REQUESTS,
        Failure::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        Failure::Internal => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let body = ApiError {
            error: self.message,
            field: self.field,
        };
        let mut response = (status_of(self.kind), Json(body)).into_response();
        if let Some(secs) = self.retry_after {
            response
                .headers_mut()
                .insert(axum::http::header::RETRY_AFTER, secs.into());
        }
        response
    }
}

//! The HTTP API: plain `async fn` handlers over the [`Coordinator`].
//!
//! | route | what |
//! | --- | --- |
//! | `POST /api/auth/nonce` | a Sign-In with Ethereum challenge |
//! | `POST /api/auth/login` | signed challenge → session cookie |
//! | `GET /api/auth/session`, `POST /api/auth/logout` | who is signed in; sign out |
//! | `POST /api/jobs` | submit a spec → 201 `{"id"}` (signed in: the job's owner) |
//! | `GET /api/jobs`, `GET /api/jobs/{id}` | status, rounds, metrics, shards (private jobs: owner only) |
//! | `POST /api/jobs/{id}/cancel` | stop a job (owner only) |
//! | `GET /api/jobs/{id}/model?format=onnx\|safetensors\|burn` | download |
//! | `POST /api/datasets` | upload a CSV or IDX file → `{"sha256"}` (signed in) |
//! | `GET /api/artifacts/{sha256}` | immutable blobs (weights, shards) |
//! | `GET /api/chain` | where paid jobs settle (404: nowhere) |
//! | `GET /api/rewards` | the signed-in account's payouts and proofs |
//! | `GET /api/workers` | connected workers |
//! | `GET /api/events` | live network state, server-sent events |
//! | `GET /api/workers/connect` | the worker WebSocket |
//! | `POST /api/leases/{id}/update` | a worker's update |

mod auth;
mod events;
mod jobs;
mod payments;
mod workers;

use std::sync::Arc;

use axum::Router;
use axum::routing::{any, get, post};
use tower_http::services::{ServeDir, ServeFile};
use tower_http::trace::TraceLayer;

use axum::body::{Body, Bytes};
use axum::http::StatusCode;

use crate::coordinator::Coordinator;
use crate::error::AppError;

/// Reads a request body of at most `limit` bytes; a larger one is a 413
/// that says the limit.
pub async fn read_body(body: Body, limit: usize, what: &str) -> Result<Bytes, AppError> {
    axum::body::to_bytes(body, limit).await.map_err(|_| {
        AppError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("{what} is larger than the limit of {limit} bytes"),
        )
    })
}

/// Largest job spec, bytes.
pub const MAX_SPEC_BYTES: usize = 256 * 1024;

/// The application's routes.
pub fn router(coordinator: Arc<Coordinator>) -> Router {
    let web = coordinator.config.web_dir.clone();
    let api = Router::new()
        .route("/api/health", get(|| async { "ok" }))
        .route("/api/auth/nonce", post(auth::nonce))
        .route("/api/auth/login", post(auth::login))
        .route("/api/auth/session", get(auth::session))
        .route("/api/auth/logout", post(auth::logout))
        .route("/api/jobs", post(jobs::create).get(jobs::list))
        .route("/api/jobs/{id}", get(jobs::show))
        .route("/api/jobs/{id}/cancel", post(jobs::cancel))
        .route("/api/jobs/{id}/model", get(jobs::model))
        .route("/api/datasets", post(jobs::upload_dataset))
        .route("/api/chain", get(payments::chain))
        .route("/api/rewards", get(payments::rewards))
        .route("/api/artifacts/{sha}", get(jobs::artifact))
        .route("/api/workers", get(workers::list))
        .route("/api/events", get(events::stream))
        .route("/api/workers/connect", get(workers::connect))
        .route("/api/leases/{id}/update", post(workers::update))
        .route("/api/{*rest}", any(jobs::no_route))
        .with_state(coordinator);
    let app = match web {
        Some(dir) => {
            let index = dir.join("index.html");
            api.fallback_service(ServeDir::new(dir).fallback(ServeFile::new(index)))
        }
        None => api.fallback(jobs::no_route),
    };
    app.layer(TraceLayer::new_for_http())
}

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

mod accounts;
mod auth;
mod client;
mod download;
mod error;
mod events;
mod jobs;
mod market;
mod models;
mod payments;
mod web;
mod workers;

use std::sync::Arc;

use axum::Router;
use axum::routing::{any, get, post};
use tower_http::map_request_body::MapRequestBodyLayer;
use tower_http::services::{ServeDir, ServeFile};
use tower_http::timeout::RequestBodyTimeoutLayer;
use tower_http::trace::TraceLayer;

use axum::body::{Body, Bytes};

use crate::error::{AppError, Failure};
use crate::service::Coordinator;

/// Reads a request body of at most `limit` bytes within `deadline`; a
/// larger one is a 413 that says the limit, a slower one a 408, a broken
/// one a 400. (Every
/// body also times out after `--upload-idle-secs` without a byte: see
/// [`router`].)
pub async fn read_body_within(
    body: Body,
    limit: usize,
    deadline: std::time::Duration,
    what: &str,
) -> Result<Bytes, AppError> {
    let too_slow = || {
        AppError::new(
            Failure::TooSlow,
            format!("{what} was not received in time (it is sent too slowly)"),
        )
    };
    let read = tokio::time::timeout(deadline, axum::body::to_bytes(body, limit)).await;
    let error = match read {
        Ok(Ok(bytes)) => return Ok(bytes),
        Ok(Err(e)) => e,
        Err(_) => return Err(too_slow()),
    };
    // The cause is somewhere in the error's chain.
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(&error);
    while let Some(e) = cause {
        if e.is::<http_body_util::LengthLimitError>() {
            return Err(AppError::new(
                Failure::TooLarge,
                format!("{what} is larger than the limit of {limit} bytes"),
            ));
        }
        if e.is::<tower_http::timeout::TimeoutError>() {
            return Err(too_slow());
        }
        cause = e.source();
    }
    Err(AppError::bad_request(format!(
        "{what} could not be read: {error}"
    )))
}

/// [`read_body_within`] the default deadline, [`BODY_DEADLINE`].
pub async fn read_body(body: Body, limit: usize, what: &str) -> Result<Bytes, AppError> {
    read_body_within(body, limit, BODY_DEADLINE, what).await
}

/// Longest a small request body (a spec, a sign-in) may take in all.
pub const BODY_DEADLINE: std::time::Duration = std::time::Duration::from_secs(60);

/// Largest job spec, bytes.
pub const MAX_SPEC_BYTES: usize = 256 * 1024;

/// The application's routes.
pub fn router(coordinator: Arc<Coordinator>) -> Router {
    let web = coordinator.config.web_dir.clone();
    let idle = coordinator.config.uploads.upload_idle;
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
        .route("/api/jobs/{id}/outputs", get(jobs::outputs))
        .route("/api/datasets", post(jobs::upload_dataset))
        .route("/api/models", get(models::list).post(models::register))
        .route("/api/models/{id}", get(models::show))
        .route("/api/models/{id}/weights", get(models::weights))
        .route("/api/models/{id}/listing", post(market::offer))
        .route("/api/market", get(market::listed))
        .route("/api/market/account", get(market::account))
        .route("/api/accounts/{address}", get(accounts::profile))
        .route("/api/leaderboard", get(models::leaderboard))
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
            // Each file is served as its precompressed copy when the
            // browser takes one (`cargo xtask web` writes them), with the
            // cache policy its name allows.
            let files = ServeDir::new(dir)
                .precompressed_br()
                .precompressed_gzip()
                .fallback(ServeFile::new(index));
            api.fallback_service(
                Router::new()
                    .fallback_service(files)
                    .layer(axum::middleware::from_fn(web::cache_policy)),
            )
        }
        None => api.fallback(jobs::no_route),
    };
    app.layer(
        tower::ServiceBuilder::new()
            .layer(TraceLayer::new_for_http())
            // A body that stops arriving fails its read (408) rather than
            // holding its handler, and what the handler holds, forever.
            .layer(RequestBodyTimeoutLayer::new(idle))
            .layer(MapRequestBodyLayer::new(Body::new)),
    )
}

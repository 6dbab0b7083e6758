//! Job, dataset, model and artifact handlers.

use oblivion_protocol::{BlobId, JobId};
use std::sync::Arc;

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use oblivion_protocol::JobSpec;
use oblivion_protocol::api::{Created, JobView, UploadedDataset, outputs_headers};

use super::client::Client;
use super::download::{FormatQuery, attachment, model_format};
use super::{MAX_SPEC_BYTES, read_body, read_body_within};
use crate::error::AppError;
use crate::service::{Coordinator, OutputsFormat, Viewer};

/// `POST /api/jobs`: a JSON spec → 201 `{"id": …}`.
pub async fn create(
    State(c): State<Arc<Coordinator>>,
    Client(client): Client,
    viewer: Viewer,
    body: Body,
) -> Result<(StatusCode, Json<Created>), AppError> {
    let owner = viewer.account()?;
    c.limits.uploads.check(client)?;
    let bytes = read_body(body, MAX_SPEC_BYTES, "the job spec").await?;
    let text = std::str::from_utf8(&bytes)
        .map_err(|_| AppError::bad_request("the job spec is not UTF-8 text"))?;
    let spec = JobSpec::from_json(text)?;
    let id = c.jobs.create_job(spec, owner).await?;
    Ok((StatusCode::CREATED, Json(Created { id })))
}

/// `GET /api/jobs`: the public jobs and the viewer's own.
pub async fn list(
    State(c): State<Arc<Coordinator>>,
    viewer: Viewer,
) -> Result<Json<Vec<JobView>>, AppError> {
    Ok(Json(c.jobs.jobs(&viewer).await?))
}

fn parse_id(raw: &str) -> Result<JobId, AppError> {
    raw.parse()
        .map_err(|_| AppError::bad_request(format!("{raw:?} is not a job id")))
}

/// `GET /api/jobs/{id}`.
pub async fn show(
    State(c): State<Arc<Coordinator>>,
    viewer: Viewer,
    Path(id): Path<String>,
) -> Result<Json<JobView>, AppError> {
    Ok(Json(c.jobs.job_view_for(&viewer, parse_id(&id)?).await?))
}

/// `POST /api/jobs/{id}/cancel`.
pub async fn cancel(
    State(c): State<Arc<Coordinator>>,
    viewer: Viewer,
    Path(id): Path<String>,
) -> Result<Json<JobView>, AppError> {
    Ok(Json(c.jobs.cancel_job(&viewer, parse_id(&id)?).await?))
}

/// `GET /api/jobs/{id}/outputs?format=csv|jsonl|npy`: an inference job's
/// outputs, with the model's and the inputs' sha256 in its headers.
pub async fn outputs(
    State(c): State<Arc<Coordinator>>,
    viewer: Viewer,
    Path(id): Path<String>,
    Query(q): Query<FormatQuery>,
) -> Result<Response, AppError> {
    let name = q.format.as_deref().unwrap_or("csv");
    let format = OutputsFormat::parse(name).ok_or_else(|| {
        AppError::bad_request(format!(
            "unknown outputs format {name:?}; use csv, jsonl or npy"
        ))
    })?;
    let file = c.jobs.outputs(&viewer, parse_id(&id)?, format).await?;
    Ok((
        [
            (header::CONTENT_TYPE, "application/octet-stream".to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{}\"", file.name),
            ),
        ],
        [
            (outputs_headers::MODEL_SHA256, file.model_sha256.hex()),
            (outputs_headers::INPUTS_SHA256, file.inputs_sha256.hex()),
        ],
        file.bytes,
    )
        .into_response())
}

/// `GET /api/jobs/{id}/model?format=onnx|safetensors|burn`.
pub async fn model(
    State(c): State<Arc<Coordinator>>,
    viewer: Viewer,
    Path(id): Path<String>,
    Query(q): Query<FormatQuery>,
) -> Result<Response, AppError> {
    let format = model_format(q.format.as_deref())?;
    let (bytes, file) = c.jobs.model(&viewer, parse_id(&id)?, format).await?;
    Ok(attachment(bytes, &file))
}

/// `POST /api/datasets`: a CSV or IDX file (optionally gzip) as the body.
pub async fn upload_dataset(
    State(c): State<Arc<Coordinator>>,
    Client(client): Client,
    viewer: Viewer,
    body: Body,
) -> Result<(StatusCode, Json<UploadedDataset>), AppError> {
    let owner = viewer.account()?;
    c.limits.uploads.check(client)?;
    let bytes = read_body_within(
        body,
        c.config.uploads.max_upload_bytes,
        c.config.uploads.upload_deadline,
        "the upload",
    )
    .await?;
    Ok((
        StatusCode::CREATED,
        Json(c.jobs.upload_dataset(owner, bytes.to_vec()).await?),
    ))
}

/// `GET /api/artifacts/{sha256}`: immutable, so cacheable forever (by
/// shared caches too when a public job names it). A worker proves its lease
/// with its token header.
pub async fn artifact(
    State(c): State<Arc<Coordinator>>,
    viewer: Viewer,
    headers: axum::http::HeaderMap,
    Path(address): Path<String>,
) -> Result<Response, AppError> {
    // An address no blob can have names nothing stored.
    let blob: BlobId = address
        .parse()
        .map_err(|e| AppError::not_found(format!("no artifact {address:?}: {e}")))?;
    let worker = headers
        .get(oblivion_protocol::wire::WORKER_TOKEN_HEADER)
        .and_then(|v| v.to_str().ok());
    let (bytes, public) = c.jobs.artifact(&viewer, worker, blob).await?;
    let cache = if public { "public" } else { "private" };
    Ok((
        [
            (header::CONTENT_TYPE, "application/octet-stream".to_string()),
            (
                header::CACHE_CONTROL,
                format!("{cache}, max-age=31536000, immutable"),
            ),
            (header::ETAG, format!("\"{blob}\"")),
        ],
        bytes,
    )
        .into_response())
}

/// Any other path under `/api`.
pub async fn no_route(uri: Uri) -> AppError {
    AppError::not_found(format!("no such endpoint: {}", uri.path()))
}

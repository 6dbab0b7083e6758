//! The model registry's handlers, and the leaderboards'.

use std::sync::Arc;

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use oblivion_protocol::api::{Leaderboard, ModelView};
use oblivion_protocol::{JobId, ModelId, Visibility};
use serde::{Deserialize, Serialize};

use super::client::Client;
use super::download::{FormatQuery, attachment, model_format};
use super::read_body_within;
use crate::error::AppError;
use crate::service::{ContributorOrder, Coordinator, ModelOrder, Viewer};

pub(super) fn parse_id(raw: &str) -> Result<ModelId, AppError> {
    raw.parse()
        .map_err(|_| AppError::bad_request(format!("{raw:?} is not a model id")))
}

/// Query of the model list.
#[derive(Deserialize)]
pub struct ListQuery {
    /// Only models whose name holds this.
    q: Option<String>,
    /// `newest` (the default), `accuracy` or `name`.
    sort: Option<String>,
}

/// `GET /api/models?q=&sort=newest|accuracy|name`: the public models and
/// the viewer's own.
pub async fn list(
    State(c): State<Arc<Coordinator>>,
    viewer: Viewer,
    Query(q): Query<ListQuery>,
) -> Result<Json<Vec<ModelView>>, AppError> {
    let name = q.sort.as_deref().unwrap_or("newest");
    let order = ModelOrder::parse(name).ok_or_else(|| {
        AppError::bad_request(format!(
            "unknown order {name:?}; use newest, accuracy or name"
        ))
    })?;
    Ok(Json(c.models.list(&viewer, q.q.as_deref(), order).await?))
}

/// `GET /api/models/{id}`: the card and its lineage.
pub async fn show(
    State(c): State<Arc<Coordinator>>,
    viewer: Viewer,
    Path(id): Path<String>,
) -> Result<Json<ModelView>, AppError> {
    Ok(Json(c.models.show(&viewer, parse_id(&id)?).await?))
}

/// `GET /api/models/{id}/weights?format=onnx|safetensors|burn`.
pub async fn weights(
    State(c): State<Arc<Coordinator>>,
    viewer: Viewer,
    Path(id): Path<String>,
    Query(q): Query<FormatQuery>,
) -> Result<Response, AppError> {
    let format = model_format(q.format.as_deref())?;
    let (bytes, file) = c.models.weights(&viewer, parse_id(&id)?, format).await?;
    Ok(attachment(bytes, &file))
}

/// Query of the leaderboard.
#[derive(Deserialize)]
pub struct LeaderboardQuery {
    /// One job's standings only.
    job: Option<JobId>,
    /// `work` (the default), `recent`, `earned` or `reputation`.
    sort: Option<String>,
}

/// `GET /api/leaderboard?job=&sort=work|recent|earned|reputation`.
pub async fn leaderboard(
    State(c): State<Arc<Coordinator>>,
    viewer: Viewer,
    Query(q): Query<LeaderboardQuery>,
) -> Result<Json<Leaderboard>, AppError> {
    let name = q.sort.as_deref().unwrap_or("work");
    let order = ContributorOrder::parse(name).ok_or_else(|| {
        AppError::bad_request(format!(
            "unknown order {name:?}; use work, recent, earned or reputation"
        ))
    })?;
    Ok(Json(
        c.leaderboards.leaderboard(&viewer, q.job, order).await?,
    ))
}

/// Query of a registration.
#[derive(Deserialize)]
pub struct RegisterQuery {
    /// Its name.
    name: String,
    /// `public` (the default) or `private`.
    visibility: Option<String>,
}

/// The new model's id.
#[derive(Serialize)]
pub struct Registered {
    id: ModelId,
}

/// `POST /api/models?name=&visibility=`: weights as safetensors in the
/// form a model download has (its metadata declares the architecture),
/// registered to the signed-in account.
pub async fn register(
    State(c): State<Arc<Coordinator>>,
    Client(client): Client,
    viewer: Viewer,
    Query(q): Query<RegisterQuery>,
    body: Body,
) -> Result<(StatusCode, Json<Registered>), AppError> {
    let owner = viewer.account()?;
    c.limits.uploads.check(client)?;
    let visibility = match q.visibility.as_deref() {
        None => Visibility::Public,
        Some(v) => Visibility::parse(v).ok_or_else(|| {
            AppError::unprocessable(format!("visibility: {v:?} is neither public nor private"))
                .with_field("visibility")
        })?,
    };
    let bytes = read_body_within(
        body,
        c.config.uploads.max_upload_bytes,
        c.config.uploads.upload_deadline,
        "the weights",
    )
    .await?;
    let id = c
        .models
        .register(owner, &q.name, visibility, bytes.to_vec())
        .await?;
    Ok((StatusCode::CREATED, Json(Registered { id })))
}

//! What every download answers with: a format named in the query, and
//! the file to save.

use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use crate::error::AppError;
use crate::service::ModelFormat;

/// Query of a download: its format.
#[derive(Deserialize)]
pub struct FormatQuery {
    pub(super) format: Option<String>,
}

/// A model download format by name (`safetensors` when none is given).
pub fn model_format(name: Option<&str>) -> Result<ModelFormat, AppError> {
    let name = name.unwrap_or("safetensors");
    ModelFormat::parse(name).ok_or_else(|| {
        AppError::bad_request(format!(
            "unknown model format {name:?}; use onnx, safetensors or burn"
        ))
    })
}

/// A file to save under `file`.
pub fn attachment(bytes: Vec<u8>, file: &str) -> Response {
    (
        [
            (header::CONTENT_TYPE, "application/octet-stream".to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{file}\""),
            ),
        ],
        bytes,
    )
        .into_response()
}

//! Where a job's samples come from: the built-in datasets compiled into the
//! binary, or files uploaded through `POST /api/datasets`. Decoding is
//! heavy, so it runs on a blocking thread, once per dataset: decoded
//! datasets are kept in a small cache that new jobs share.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use oblivion_ml::data::{
    Dataset, csv_columns, maybe_gunzip, parse_csv, parse_idx_images, parse_idx_labels,
};
use oblivion_protocol::api::UploadedDataset;
use oblivion_protocol::{BlobId, DatasetSpec};

use crate::blocking::blocking;
use crate::error::AppError;
use oblivion_store::Artifacts;

const MNIST_IMAGES: &[u8] = include_bytes!("../../datasets/mnist/train-images-idx3-ubyte.gz");
const MNIST_LABELS: &[u8] = include_bytes!("../../datasets/mnist/train-labels-idx1-ubyte.gz");
const IRIS: &[u8] = include_bytes!("../../datasets/tabular/iris.csv");
const WINE: &[u8] = include_bytes!("../../datasets/tabular/wine.csv");
const BREAST_CANCER: &[u8] = include_bytes!("../../datasets/tabular/breast_cancer.csv");

fn unprocessable(field: &str, message: String) -> AppError {
    AppError::unprocessable(message).with_field(field)
}

/// Decoded datasets by spec, least recently used dropped first.
pub struct DatasetCache {
    capacity: usize,
    entries: Mutex<VecDeque<(DatasetSpec, Arc<Dataset>)>>,
}

impl DatasetCache {
    /// A cache of at most `capacity` datasets (0 disables it).
    pub fn new(capacity: usize) -> DatasetCache {
        DatasetCache {
            capacity,
            entries: Mutex::new(VecDeque::new()),
        }
    }

    fn entries(&self) -> std::sync::MutexGuard<'_, VecDeque<(DatasetSpec, Arc<Dataset>)>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The samples a spec names, decoded once.
    pub async fn load(
        &self,
        spec: &DatasetSpec,
        artifacts: &Artifacts,
        max_bytes: usize,
    ) -> Result<Arc<Dataset>, AppError> {
        {
            let mut entries = self.entries();
            if let Some(i) = entries.iter().position(|(s, _)| s == spec)
                && let Some(hit) = entries.remove(i)
            {
                let data = hit.1.clone();
                entries.push_front(hit);
                return Ok(data);
            }
        }
        let data = Arc::new(load(spec, artifacts, max_bytes).await?);
        if self.capacity > 0 {
            let mut entries = self.entries();
            entries.retain(|(s, _)| s != spec);
            entries.push_front((spec.clone(), data.clone()));
            entries.truncate(self.capacity);
        }
        Ok(data)
    }
}

/// Decodes the samples a spec names (on a blocking thread).
async fn load(
    spec: &DatasetSpec,
    artifacts: &Artifacts,
    max_bytes: usize,
) -> Result<Dataset, AppError> {
    let internal = |e: oblivion_ml::MlError| AppError::internal(format!("built-in dataset: {e}"));
    match spec {
        DatasetSpec::Builtin(name) => {
            let bytes: Result<&'static [u8], AppError> = match name.as_str() {
                "mnist" => {
                    return blocking(move || {
                        Dataset::from_idx(MNIST_IMAGES, MNIST_LABELS).map_err(internal)
                    })
                    .await;
                }
                "iris" => Ok(IRIS),
                "wine" => Ok(WINE),
                "breast_cancer" => Ok(BREAST_CANCER),
                other => Err(unprocessable(
                    "dataset.builtin",
                    format!("unknown dataset {other:?}"),
                )),
            };
            let bytes = bytes?;
            blocking(move || parse_csv(bytes).map_err(internal)).await
        }
        DatasetSpec::Csv(file) => {
            let bytes = fetch(artifacts, "dataset.csv", *file).await?;
            blocking(move || {
                let raw = maybe_gunzip(&bytes, max_bytes)
                    .map_err(|e| unprocessable("dataset.csv", e.to_string()))?;
                parse_csv(&raw).map_err(|e| unprocessable("dataset.csv", e.to_string()))
            })
            .await
        }
        DatasetSpec::Federated { .. } => Err(AppError::internal(
            "federated data is held by its contributors: load the validation data",
        )),
        DatasetSpec::Idx { images, labels } => {
            let images = fetch(artifacts, "dataset.idx.images", *images).await?;
            let labels = fetch(artifacts, "dataset.idx.labels", *labels).await?;
            blocking(move || {
                // Decoded, a pixel takes four bytes: bounded like a CSV's
                // floats, at twice the file limit.
                Dataset::from_idx_within(&images, &labels, max_bytes.saturating_mul(2))
                    .map_err(|e| unprocessable("dataset.idx", e.to_string()))
            })
            .await
        }
    }
}

/// The names of the feature columns of the data a spec names (a CSV's
/// header); `None` for images.
pub async fn columns(
    spec: &DatasetSpec,
    artifacts: &Artifacts,
    max_bytes: usize,
) -> Result<Option<Vec<String>>, AppError> {
    let bytes = match spec {
        DatasetSpec::Builtin(name) => match name.as_str() {
            "iris" => IRIS.to_vec(),
            "wine" => WINE.to_vec(),
            "breast_cancer" => BREAST_CANCER.to_vec(),
            _ => return Ok(None),
        },
        DatasetSpec::Csv(file) => fetch(artifacts, "dataset.csv", *file).await?,
        DatasetSpec::Idx { .. } | DatasetSpec::Federated { .. } => return Ok(None),
    };
    blocking(move || {
        let raw = maybe_gunzip(&bytes, max_bytes)
            .map_err(|e| unprocessable("dataset.csv", e.to_string()))?;
        csv_columns(&raw)
            .map(Some)
            .map_err(|e| unprocessable("dataset.csv", e.to_string()))
    })
    .await
}

async fn fetch(artifacts: &Artifacts, field: &str, file: BlobId) -> Result<Vec<u8>, AppError> {
    artifacts
        .get(file)
        .await
        .map_err(AppError::io)?
        .ok_or_else(|| {
            unprocessable(
                field,
                format!(
                    "no uploaded file has sha256 {file}; upload it with POST /api/datasets first"
                ),
            )
        })
}

/// Recognises and checks an uploaded data file (CSV, IDX images or IDX
/// labels, optionally gzip, at most `max_bytes` once decompressed), and
/// stores it.
pub async fn upload(
    bytes: Vec<u8>,
    artifacts: &Artifacts,
    max_bytes: usize,
) -> Result<UploadedDataset, AppError> {
    let (kind, rows, bytes) = blocking(move || {
        let raw =
            maybe_gunzip(&bytes, max_bytes).map_err(|e| AppError::unprocessable(e.to_string()))?;
        let magic = raw
            .get(..4)
            .map(|m| u32::from_be_bytes([m[0], m[1], m[2], m[3]]));
        let bad = |e: oblivion_ml::MlError| AppError::unprocessable(e.to_string());
        let (kind, rows) = match magic {
            Some(2051) => {
                let (shape, pixels) = parse_idx_images(&raw).map_err(bad)?;
                (
                    "idx-images",
                    pixels.len() / shape.iter().product::<usize>().max(1),
                )
            }
            Some(2049) => ("idx-labels", parse_idx_labels(&raw).map_err(bad)?.len()),
            _ => ("csv", parse_csv(&raw).map_err(bad)?.len()),
        };
        Ok((kind, rows, bytes))
    })
    .await?;
    let sha256 = artifacts.put(bytes).await.map_err(AppError::io)?;
    Ok(UploadedDataset {
        sha256,
        kind: kind.to_string(),
        rows: rows as u64,
    })
}

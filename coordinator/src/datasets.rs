//! Where a job's samples come from: the built-in datasets compiled into the
//! binary, or files uploaded through `POST /api/datasets`.

use oblivion_ml::data::{Dataset, parse_csv, parse_idx_images, parse_idx_labels};
use oblivion_protocol::DatasetSpec;
use oblivion_protocol::api::UploadedDataset;

use crate::error::AppError;
use crate::store::Artifacts;

const MNIST_IMAGES: &[u8] = include_bytes!("../../datasets/mnist/train-images-idx3-ubyte.gz");
const MNIST_LABELS: &[u8] = include_bytes!("../../datasets/mnist/train-labels-idx1-ubyte.gz");
const IRIS: &[u8] = include_bytes!("../../datasets/tabular/iris.csv");
const WINE: &[u8] = include_bytes!("../../datasets/tabular/wine.csv");
const BREAST_CANCER: &[u8] = include_bytes!("../../datasets/tabular/breast_cancer.csv");

fn unprocessable(field: &str, message: String) -> AppError {
    AppError::unprocessable(message).with_field(field)
}

/// Loads the samples a spec names.
pub async fn load(spec: &DatasetSpec, artifacts: &Artifacts) -> Result<Dataset, AppError> {
    let internal = |e: oblivion_ml::MlError| AppError::internal(format!("built-in dataset: {e}"));
    match spec {
        DatasetSpec::Builtin(name) => match name.as_str() {
            "mnist" => Dataset::from_idx(MNIST_IMAGES, MNIST_LABELS).map_err(internal),
            "iris" => parse_csv(IRIS).map_err(internal),
            "wine" => parse_csv(WINE).map_err(internal),
            "breast_cancer" => parse_csv(BREAST_CANCER).map_err(internal),
            other => Err(unprocessable(
                "dataset.builtin",
                format!("unknown dataset {other:?}"),
            )),
        },
        DatasetSpec::Csv(sha) => {
            let bytes = fetch(artifacts, "dataset.csv", sha).await?;
            parse_csv(&bytes).map_err(|e| unprocessable("dataset.csv", e.to_string()))
        }
        DatasetSpec::Idx { images, labels } => {
            let images = fetch(artifacts, "dataset.idx.images", images).await?;
            let labels = fetch(artifacts, "dataset.idx.labels", labels).await?;
            Dataset::from_idx(&images, &labels)
                .map_err(|e| unprocessable("dataset.idx", e.to_string()))
        }
    }
}

async fn fetch(artifacts: &Artifacts, field: &str, sha: &str) -> Result<Vec<u8>, AppError> {
    artifacts
        .get(sha)
        .await
        .map_err(AppError::io)?
        .ok_or_else(|| {
            unprocessable(
                field,
                format!(
                    "no uploaded file has sha256 {sha}; upload it with POST /api/datasets first"
                ),
            )
        })
}

/// Recognises and checks an uploaded data file (CSV, IDX images or IDX
/// labels, optionally gzip), and stores it.
pub async fn upload(bytes: &[u8], artifacts: &Artifacts) -> Result<UploadedDataset, AppError> {
    let raw = oblivion_ml::data::maybe_gunzip(bytes, 512 * 1024 * 1024)
        .map_err(|e| AppError::unprocessable(e.to_string()))?;
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
    let sha256 = artifacts.put(bytes).await.map_err(AppError::io)?;
    Ok(UploadedDataset {
        sha256,
        kind: kind.to_string(),
        rows: rows as u64,
    })
}

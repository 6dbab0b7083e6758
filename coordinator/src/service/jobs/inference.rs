//! Inference jobs: the model and rows a spec names, resolved and checked
//! for its creator when the job is created; and the assembled outputs,
//! downloaded as CSV, JSON lines or `.npy` with the hashes of the model
//! and the rows they came from.

use std::sync::Arc;

use oblivion_ml::data::{Dataset, decode_shard};
use oblivion_ml::inference::Outputs;
use oblivion_ml::model::Architecture;
use oblivion_protocol::api::JobStatus;
use oblivion_protocol::wire::FeatureScaling;
use oblivion_protocol::{
    BlobId, DatasetSpec, InferenceSpec, InputsSpec, JobId, JobSpec, ModelId, ModelRef, Visibility,
};

use super::{Jobs, Prepared, Start};
use crate::blocking::blocking;
use crate::error::{AppError, Failure};
use crate::hub::Weights;
use crate::kind::kind_of;
use crate::service::accounts::Viewer;
use crate::service::budget;
use crate::service::models::{architecture, may_read};
use crate::service::shared::{arch_of, check_released, job_row, ml_internal, scaling_of, weights};
use oblivion_store::{InferenceResult, JobRow};

/// Download formats of an inference job's outputs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutputsFormat {
    /// One line a row: its index, predicted class and probabilities, after
    /// `#` lines naming the job, the model's hash and the inputs' hash.
    Csv,
    /// One JSON object a row.
    Jsonl,
    /// NumPy's format: the probabilities, `float32` `[rows, classes]`.
    Npy,
}

impl OutputsFormat {
    /// Parses `csv`, `jsonl` or `npy`.
    pub fn parse(s: &str) -> Option<OutputsFormat> {
        match s {
            "csv" => Some(OutputsFormat::Csv),
            "jsonl" => Some(OutputsFormat::Jsonl),
            "npy" => Some(OutputsFormat::Npy),
            _ => None,
        }
    }

    /// File extension.
    pub fn extension(self) -> &'static str {
        match self {
            OutputsFormat::Csv => "csv",
            OutputsFormat::Jsonl => "jsonl",
            OutputsFormat::Npy => "npy",
        }
    }
}

/// An inference job's outputs as downloaded.
#[derive(Clone, Debug)]
pub struct OutputsFile {
    /// The file.
    pub bytes: Vec<u8>,
    /// Its name.
    pub name: String,
    /// The sha256 of the model's weights (safetensors) that made them.
    pub model_sha256: BlobId,
    /// The sha256 of the rows they answer: the uploaded file (an IDX
    /// pair's images), else the rows as the coordinator encoded them.
    pub inputs_sha256: BlobId,
}

/// A resolved model: its architecture, scaling and weights.
type Resolved = (Architecture, Option<FeatureScaling>, BlobId);

impl Jobs {
    /// An inference job's kind, its model's architecture and weights, and
    /// its rows cut into slots, each checked for `creator`: the model must
    /// be a completed training job's that the creator may read (and, if
    /// paid, settled), and the rows must fit it.
    pub(super) async fn prepare_inference(
        &self,
        spec: &InferenceSpec,
        creator: &str,
    ) -> Result<Prepared, AppError> {
        let viewer = Viewer(Some(creator.to_string()));
        let (arch, scaling, weights_sha) = self
            .resolve(&viewer, &spec.model, "model", spec.visibility)
            .await?;
        let params = Arc::new(weights(&self.artifacts, weights_sha).await?);
        let rows = self
            .inference_rows(spec, &viewer, &arch, scaling.as_ref())
            .await?;
        budget::check_inference(&self.config.budgets, spec, &arch, rows.len() as u64)?;
        let kind = kind_of(&JobSpec::Inference(spec.clone()))?;
        let division = {
            let kind = kind.clone();
            blocking(move || Ok(kind.divide(&rows)?)).await?
        };
        Ok(Prepared {
            kind,
            arch,
            division,
            scaling,
            start: Start::Stored(Weights {
                blob: weights_sha,
                params,
            }),
        })
    }

    /// The weights a training job of `arch` starts from when its spec
    /// names a model (`init`): that model's, which must be of the same
    /// architecture on the same inputs.
    pub(super) async fn initial_model(
        &self,
        creator: &str,
        init: &ModelRef,
        arch: &Architecture,
        visibility: Visibility,
    ) -> Result<Weights, AppError> {
        let viewer = Viewer(Some(creator.to_string()));
        let (theirs, _, blob) = self.resolve(&viewer, init, "init", visibility).await?;
        if &theirs != arch {
            return Err(AppError::unprocessable(format!(
                "init: that model is a {:?} on inputs {:?} with {} classes; this job trains a \
                 {:?} on {:?} with {}",
                theirs.model,
                theirs.input_shape,
                theirs.classes,
                arch.model,
                arch.input_shape,
                arch.classes
            ))
            .with_field("init"));
        }
        let params = Arc::new(weights(&self.artifacts, blob).await?);
        Ok(Weights { blob, params })
    }

    /// The model `model` names, if `viewer` may run it in a job of
    /// `visibility`: its architecture, scaling and weights; refusals name
    /// `field`. A private model is read only by private jobs: a public one
    /// would hand its weights to everyone (its artifacts, its download, any
    /// worker).
    async fn resolve(
        &self,
        viewer: &Viewer,
        model: &ModelRef,
        field: &str,
        visibility: Visibility,
    ) -> Result<(Architecture, Option<FeatureScaling>, BlobId), AppError> {
        let (resolved, theirs) = match *model {
            ModelRef::Job(source) => {
                self.model_of_job(viewer, source, &format!("{field}.job"))
                    .await?
            }
            ModelRef::Model(id) => {
                self.registered_model(viewer, id, &format!("{field}.model"))
                    .await?
            }
        };
        if theirs == Visibility::Private && visibility == Visibility::Public {
            return Err(AppError::unprocessable(format!(
                "visibility: {field} names a private model; a job that reads it must be private too"
            ))
            .with_field("visibility"));
        }
        Ok(resolved)
    }

    /// The model a completed training job made, if `viewer` may run it:
    /// its architecture, scaling and weights.
    async fn model_of_job(
        &self,
        viewer: &Viewer,
        source: JobId,
        field: &str,
    ) -> Result<(Resolved, Visibility), AppError> {
        let model = self
            .readable_job(viewer, source)
            .await
            .map_err(|e| e.with_field(field))?;
        if model.spec.training().is_none() {
            return Err(AppError::unprocessable(format!(
                "{field}: job {source} runs a model; name the training job that made it"
            ))
            .with_field(field));
        }
        if model.status != JobStatus::Completed {
            return Err(AppError::unprocessable(format!(
                "{field}: job {source} is {}; only a completed job's model is final",
                model.status.as_str()
            ))
            .with_field(field));
        }
        check_released(&self.db, &model)
            .await
            .map_err(|e| e.with_field(field))?;
        let visibility = model.spec.visibility();
        Ok((
            (arch_of(&model)?, scaling_of(&model)?, model.global_sha),
            visibility,
        ))
    }

    /// A model of the registry, if `viewer` may run it (a paid job's once
    /// settled): its architecture, scaling and weights.
    async fn registered_model(
        &self,
        viewer: &Viewer,
        id: ModelId,
        field: &str,
    ) -> Result<(Resolved, Visibility), AppError> {
        let row = self
            .db
            .model(id)
            .await
            .map_err(AppError::db)?
            .ok_or_else(|| {
                AppError::unprocessable(format!("{field}: there is no model {id}"))
                    .with_field(field)
            })?;
        if !may_read(&self.db, viewer, &row).await? {
            return Err(AppError::new(
                Failure::Forbidden,
                format!("{field}: model {id} is private to its owner"),
            )
            .with_field(field));
        }
        if let Some(job) = row.job_id {
            let job = job_row(&self.db, job).await?;
            check_released(&self.db, &job)
                .await
                .map_err(|e| e.with_field(field))?;
        }
        let (arch, scaling) = architecture(&row)?;
        Ok(((arch, scaling, row.entry.weights_sha), row.entry.visibility))
    }

    /// The rows an inference spec names, scaled as the model's training
    /// data was, and checked against the model: the same sample shape, and
    /// labels among its classes.
    async fn inference_rows(
        &self,
        spec: &InferenceSpec,
        viewer: &Viewer,
        arch: &Architecture,
        scaling: Option<&FeatureScaling>,
    ) -> Result<Dataset, AppError> {
        let max_bytes = self.config.uploads.max_dataset_bytes;
        let rows = match &spec.inputs {
            InputsSpec::HeldOutBy(job) => {
                let field = "inputs.held_out_by";
                let row = self
                    .readable_job(viewer, *job)
                    .await
                    .map_err(|e| e.with_field(field))?;
                let Some(training) = row.spec.training() else {
                    return Err(AppError::unprocessable(format!(
                        "{field}: job {job} holds out no rows: it runs a model"
                    ))
                    .with_field(field));
                };
                // Held-out rows are scaled for their own job's model.
                let theirs = scaling_of(&row)?;
                if !same_scaling(theirs.as_ref(), scaling) {
                    return Err(AppError::unprocessable(format!(
                        "{field}: job {job}'s rows are scaled for its own training data, \
                         and the model was trained on other data; upload them instead"
                    ))
                    .with_field(field));
                }
                match self
                    .artifacts
                    .get(row.data.validation_sha)
                    .await
                    .map_err(AppError::io)?
                {
                    Some(bytes) => {
                        blocking(move || decode_shard(&bytes).map_err(ml_internal)).await?
                    }
                    // Collected since the job finished: the split is
                    // recomputed, as it was made (seeded).
                    None => {
                        let data = self
                            .datasets
                            .load(
                                training.dataset.held_by_coordinator(),
                                &self.artifacts,
                                max_bytes,
                            )
                            .await?;
                        let kind = kind_of(&row.spec)?;
                        blocking(move || Ok(kind.divide(&data)?.validation)).await?
                    }
                }
            }
            other => {
                let dataset = match other {
                    InputsSpec::Builtin(name) => DatasetSpec::Builtin(name.clone()),
                    InputsSpec::Csv(file) => DatasetSpec::Csv(*file),
                    InputsSpec::Idx { images, labels } => DatasetSpec::Idx {
                        images: *images,
                        labels: *labels,
                    },
                    InputsSpec::HeldOutBy(_) => unreachable!("matched above"),
                };
                self.check_dataset_owner(&dataset, viewer.account()?)
                    .await
                    .map_err(|e| e.with_field("inputs"))?;
                let data = self
                    .datasets
                    .load(&dataset, &self.artifacts, max_bytes)
                    .await
                    .map_err(|e| e.with_field("inputs"))?;
                let scaling = scaling.cloned();
                blocking(move || {
                    let mut rows = Dataset::clone(&data);
                    if let Some(s) = &scaling
                        && s.mean.len() == rows.sample_len()
                    {
                        rows.normalize(s);
                    }
                    Ok(rows)
                })
                .await?
            }
        };
        if rows.shape != arch.input_shape {
            return Err(AppError::unprocessable(format!(
                "inputs: rows of shape {:?}; the model takes {:?}",
                rows.shape, arch.input_shape
            ))
            .with_field("inputs"));
        }
        if let Some(label) = rows.labels.iter().find(|&&l| l as usize >= arch.classes) {
            return Err(AppError::unprocessable(format!(
                "inputs: a row is labelled {label}; the model has {} classes",
                arch.classes
            ))
            .with_field("inputs"));
        }
        Ok(rows)
    }

    /// An inference job's outputs in `format`, for `viewer`: 409 until the
    /// job has completed.
    pub async fn outputs(
        &self,
        viewer: &Viewer,
        id: JobId,
        format: OutputsFormat,
    ) -> Result<OutputsFile, AppError> {
        let row = self.readable_job(viewer, id).await?;
        let Some(spec) = row.spec.inference() else {
            return Err(AppError::not_found(format!(
                "job {id} trains a model: it has no outputs (download its model)"
            )));
        };
        // A paid job's outputs are what its creator pays for: kept until
        // the workers' settlement is on chain, as a training job's model.
        check_released(&self.db, &row).await?;
        let result = self.db.inference_result(id).await.map_err(AppError::db)?;
        let Some(result) = result else {
            return Err(AppError::conflict(format!(
                "job {id} is {}: its outputs are assembled when it completes",
                row.status.as_str()
            )));
        };
        let bytes = self
            .artifacts
            .get(result.outputs_sha)
            .await
            .map_err(AppError::io)?
            .ok_or_else(|| {
                AppError::internal(format!("outputs {} are missing", result.outputs_sha))
            })?;
        let model_sha256 = row.global_sha;
        let inputs_sha256 = inputs_hash(spec, &row);
        let encoded = {
            let header = Header {
                job: id,
                model_sha256,
                inputs_sha256,
                result,
            };
            blocking(move || encode(&bytes, &header, format)).await?
        };
        Ok(OutputsFile {
            bytes: encoded,
            name: format!("job-{id}-outputs.{}", format.extension()),
            model_sha256,
            inputs_sha256,
        })
    }
}

/// Whether two scalings are the same (column names aside).
fn same_scaling(a: Option<&FeatureScaling>, b: Option<&FeatureScaling>) -> bool {
    match (a, b) {
        (None, None) => true,
        (Some(a), Some(b)) => a.mean == b.mean && a.std == b.std,
        _ => false,
    }
}

/// The hash of an inference job's rows (see [`OutputsFile::inputs_sha256`]).
fn inputs_hash(spec: &InferenceSpec, row: &JobRow) -> BlobId {
    match &spec.inputs {
        InputsSpec::Csv(file) => *file,
        InputsSpec::Idx { images, .. } => *images,
        InputsSpec::Builtin(_) | InputsSpec::HeldOutBy(_) => row.data.validation_sha,
    }
}

/// What a downloaded file says of where its outputs came from.
struct Header {
    job: JobId,
    model_sha256: BlobId,
    inputs_sha256: BlobId,
    result: InferenceResult,
}

/// The stored outputs (safetensors) as a file of `format`.
fn encode(stored: &[u8], header: &Header, format: OutputsFormat) -> Result<Vec<u8>, AppError> {
    let r = &header.result;
    let outputs = Outputs::decode(stored, r.rows as usize, r.classes as usize, 1e-3)
        .map_err(|e| AppError::internal(format!("stored outputs: {e}")))?;
    Ok(match format {
        OutputsFormat::Csv => {
            let mut out = format!(
                "# oblivion inference job {}\n# model_sha256: {}\n# inputs_sha256: {}\nrow,predicted",
                header.job, header.model_sha256, header.inputs_sha256
            );
            for c in 0..outputs.classes {
                out.push_str(&format!(",p{c}"));
            }
            out.push('\n');
            for i in 0..outputs.rows() {
                out.push_str(&format!("{i},{}", outputs.predicted[i]));
                for p in outputs.row(i) {
                    out.push_str(&format!(",{p}"));
                }
                out.push('\n');
            }
            out.into_bytes()
        }
        OutputsFormat::Jsonl => {
            let mut out = String::new();
            for i in 0..outputs.rows() {
                let line = serde_json::json!({
                    "row": i,
                    "predicted": outputs.predicted[i],
                    "probabilities": outputs.row(i),
                });
                out.push_str(&line.to_string());
                out.push('\n');
            }
            out.into_bytes()
        }
        OutputsFormat::Npy => npy_f32(&outputs.probabilities, outputs.rows(), outputs.classes),
    })
}

/// NumPy's `.npy` (version 1.0) of a little-endian `float32` matrix. The
/// format is a short text header and the raw values; written here rather
/// than through a crate for the twenty lines it takes.
fn npy_f32(values: &[f32], rows: usize, columns: usize) -> Vec<u8> {
    let dict =
        format!("{{'descr': '<f4', 'fortran_order': False, 'shape': ({rows}, {columns}), }}");
    // Magic (6), version (2), header length (2), then the header padded
    // with spaces and ended by a newline to a multiple of 64 bytes.
    let unpadded = 10 + dict.len() + 1;
    let padding = (64 - unpadded % 64) % 64;
    let header_len = dict.len() + padding + 1;
    let mut out = Vec::with_capacity(10 + header_len + values.len() * 4);
    out.extend_from_slice(b"\x93NUMPY\x01\x00");
    out.extend_from_slice(&(header_len as u16).to_le_bytes());
    out.extend_from_slice(dict.as_bytes());
    out.extend(std::iter::repeat_n(b' ', padding));
    out.push(b'\n');
    for v in values {
        out.extend_from_slice(&v.to_le_bytes());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_npy_header_is_what_numpy_reads() {
        let bytes = npy_f32(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0], 2, 3);
        assert_eq!(&bytes[..8], b"\x93NUMPY\x01\x00");
        let header_len = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
        assert_eq!((10 + header_len) % 64, 0, "aligned");
        let header = std::str::from_utf8(&bytes[10..10 + header_len]).unwrap();
        assert!(header.starts_with("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }"));
        assert!(header.ends_with('\n'));
        assert_eq!(bytes.len(), 10 + header_len + 24);
        assert_eq!(
            &bytes[10 + header_len..10 + header_len + 4],
            &1.0f32.to_le_bytes()
        );
    }
}

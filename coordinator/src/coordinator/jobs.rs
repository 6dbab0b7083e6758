//! Jobs: creating one within its budgets, reading, cancelling, failing,
//! and downloading its model; datasets and artifacts.

use std::sync::Arc;

use oblivion_ml::data::{Normalization, encode_shard};
use oblivion_ml::export;
use oblivion_ml::model::Architecture;
use oblivion_ml::weights::{check_params, initial_params};
use oblivion_protocol::JobSpec;
use oblivion_protocol::api::{JobStatus, JobView, RoundMetrics, UploadedDataset};

use super::{Coordinator, blocking, budget, lock, ml_internal};
use crate::datasets;
use crate::error::AppError;
use crate::hub::LiveJob;
use crate::store::{JobRefusal, JobRow, now};

/// Model download formats.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ModelFormat {
    /// safetensors.
    Safetensors,
    /// ONNX.
    Onnx,
    /// burn's record (burnpack).
    Burn,
}

impl ModelFormat {
    /// Parses `onnx`, `safetensors` or `burn`.
    pub fn parse(s: &str) -> Option<ModelFormat> {
        match s {
            "safetensors" => Some(ModelFormat::Safetensors),
            "onnx" => Some(ModelFormat::Onnx),
            "burn" => Some(ModelFormat::Burn),
            _ => None,
        }
    }

    /// File extension.
    pub fn extension(self) -> &'static str {
        match self {
            ModelFormat::Safetensors => "safetensors",
            ModelFormat::Onnx => "onnx",
            ModelFormat::Burn => "bpk",
        }
    }
}

impl Coordinator {
    /// Validates data against a spec and the budgets, prepares shards and
    /// initial weights, stores the job and starts handing out its shards.
    /// `creator` is the submitting client (its address).
    pub async fn create_job(
        self: &Arc<Self>,
        spec: JobSpec,
        creator: &str,
    ) -> Result<u64, AppError> {
        let in_flight = self
            .db
            .jobs_in_flight(creator)
            .await
            .map_err(AppError::db)?;
        if in_flight >= u64::from(self.config.max_jobs_in_flight) {
            return Err(AppError::new(
                axum::http::StatusCode::TOO_MANY_REQUESTS,
                format!(
                    "this client already has {in_flight} unfinished jobs, the most allowed \
                     (max_jobs_in_flight); wait for one to finish or cancel one"
                ),
            ));
        }
        let dataset = self
            .datasets
            .load(
                &spec.dataset,
                &self.artifacts,
                self.config.max_dataset_bytes,
            )
            .await?;
        let arch = Architecture::new(spec.model.clone(), dataset.shape.clone(), dataset.classes)
            .map_err(|e| AppError::unprocessable(e.to_string()).with_field("dataset"))?;
        let held_out = ((dataset.len() as f64 * spec.validation_split).ceil() as u64)
            .clamp(1, dataset.len() as u64);
        budget::check(&self.config.budgets, &spec, &arch, held_out)?;
        let prepared = {
            let (spec, arch) = (spec.clone(), arch.clone());
            blocking(move || {
                let (mut train, mut val) = dataset.split(spec.validation_split, spec.seed);
                let normalization = (!train.is_image()).then(|| {
                    let n = train.normalization();
                    train.normalize(&n);
                    val.normalize(&n);
                    n
                });
                if train.len() < spec.shards_per_round as usize {
                    return Err(AppError::unprocessable(format!(
                        "shards_per_round: {} shards but only {} training samples",
                        spec.shards_per_round,
                        train.len()
                    ))
                    .with_field("shards_per_round"));
                }
                let shards: Vec<(Vec<u8>, u64)> = train
                    .chunks(spec.shards_per_round as usize)
                    .iter()
                    .map(|c| (encode_shard(c), c.len() as u64))
                    .collect();
                let initial = initial_params(&arch, spec.seed).map_err(ml_internal)?;
                let initial_blob = initial.to_safetensors(None);
                Ok((
                    shards,
                    encode_shard(&val),
                    val,
                    train.len(),
                    normalization,
                    initial,
                    initial_blob,
                ))
            })
            .await?
        };
        let (shard_blobs, val_blob, val, train_len, normalization, initial, initial_blob) =
            prepared;
        let mut shards = Vec::with_capacity(shard_blobs.len());
        for (blob, samples) in shard_blobs {
            shards.push((
                self.artifacts.put(blob).await.map_err(AppError::io)?,
                samples,
            ));
        }
        let validation_sha = self.artifacts.put(val_blob).await.map_err(AppError::io)?;
        let global_sha = self
            .artifacts
            .put(initial_blob)
            .await
            .map_err(AppError::io)?;
        let normalization = normalization
            .as_ref()
            .map(serde_json::to_string)
            .transpose()
            .map_err(|e| AppError::internal(format!("normalisation: {e}")))?;
        let row = JobRow {
            id: 0,
            spec: spec.clone(),
            status: JobStatus::Pending,
            round: 1,
            global_sha: global_sha.clone(),
            input_shape: arch.input_shape.clone(),
            classes: arch.classes,
            normalization,
            validation_sha,
            train_samples: train_len as u64,
            validation_samples: val.len() as u64,
            round_started_at: now(),
            error: None,
            created_at: now() as i64,
            creator: Some(creator.to_string()),
        };
        let id = self
            .db
            .insert_job(&row, &shards)
            .await
            .map_err(AppError::db)?;
        lock(&self.validation).insert(id, Arc::new(val));
        self.jobs_changed();
        self.hub().jobs.insert(
            id,
            LiveJob::new(
                id,
                spec,
                Arc::new(arch),
                global_sha,
                Arc::new(initial),
                shards,
            ),
        );
        tracing::info!(job = id, "job created");
        self.request_pump();
        Ok(id)
    }

    async fn job_row(&self, id: u64) -> Result<JobRow, AppError> {
        self.db
            .job(id)
            .await
            .map_err(AppError::db)?
            .ok_or_else(|| AppError::not_found(format!("no job {id}")))
    }

    /// The API view of a job.
    pub async fn job_view(&self, id: u64) -> Result<JobView, AppError> {
        let row = self.job_row(id).await?;
        let history = self.db.rounds(id).await.map_err(AppError::db)?;
        let mut view = self.view_of(row, history);
        view.contributors = self.db.contributors(id).await.map_err(AppError::db)?;
        Ok(view)
    }

    fn view_of(&self, row: JobRow, history: Vec<RoundMetrics>) -> JobView {
        let hub = self.hub();
        JobView {
            id: row.id,
            name: row.spec.name.clone(),
            status: row.status,
            round: row.round,
            rounds: row.spec.rounds,
            history,
            shards: hub.shard_views(row.id),
            active_workers: hub.active_workers(row.id),
            contributors: Vec::new(),
            error: row.error,
            spec: row.spec,
            train_samples: row.train_samples,
            validation_samples: row.validation_samples,
            created_at: row.created_at,
        }
    }

    /// All jobs, newest first (two queries, however many jobs).
    pub async fn jobs(&self) -> Result<Vec<JobView>, AppError> {
        let rows = self.db.jobs().await.map_err(AppError::db)?;
        let mut rounds = self.db.all_rounds().await.map_err(AppError::db)?;
        Ok(rows
            .into_iter()
            .map(|row| {
                let history = rounds.remove(&row.id).unwrap_or_default();
                self.view_of(row, history)
            })
            .collect())
    }

    /// Ends an unfinished job as `status` (cancelled or failed) in the
    /// database, then revokes its leases here.
    async fn finish(
        &self,
        id: u64,
        status: JobStatus,
        error: Option<&str>,
    ) -> Result<(), AppError> {
        self.db
            .finish_job(id, status, error)
            .await
            .map_err(AppError::db)?
            .map_err(|refusal| match refusal {
                JobRefusal::Missing => AppError::not_found(format!("no job {id}")),
                JobRefusal::State(s) => {
                    AppError::conflict(format!("job {id} is already {}", s.as_str()))
                }
            })?;
        let ended = self.hub().remove_job(id);
        lock(&self.validation).remove(&id);
        self.jobs_changed();
        // The database revoked them with the status change; this tells the
        // holders (and is a no-op on the rows).
        self.settle_ended(ended, &format!("job {}", status.as_str()))
            .await;
        Ok(())
    }

    /// Stops a job; its leases are revoked. Refused (409) once it finished.
    pub async fn cancel_job(&self, id: u64) -> Result<JobView, AppError> {
        self.finish(id, JobStatus::Cancelled, None).await?;
        tracing::info!(job = id, "job cancelled");
        self.job_view(id).await
    }

    pub(super) async fn fail(&self, id: u64, message: &str) {
        tracing::error!(job = id, "job failed: {message}");
        if let Err(e) = self.finish(id, JobStatus::Failed, Some(message)).await {
            tracing::error!("recording failure of job {id}: {}", e.message);
        }
    }

    /// The job's current model in `format`, with a file name.
    pub async fn model(&self, id: u64, format: ModelFormat) -> Result<(Vec<u8>, String), AppError> {
        let row = self.job_row(id).await?;
        let arch = Self::arch_of(&row)?;
        let params = self.weights(&row.global_sha).await?;
        let normalization: Option<Normalization> = row
            .normalization
            .as_deref()
            .map(serde_json::from_str)
            .transpose()
            .map_err(|e| AppError::internal(format!("stored normalisation: {e}")))?;
        let bytes = blocking(move || {
            check_params(&arch, &params).map_err(ml_internal)?;
            match format {
                ModelFormat::Safetensors => Ok(export::to_safetensors(
                    &arch,
                    &params,
                    normalization.as_ref(),
                )),
                ModelFormat::Onnx => {
                    export::to_onnx(&arch, &params, normalization.as_ref()).map_err(ml_internal)
                }
                ModelFormat::Burn => export::to_burn_record(&arch, &params).map_err(ml_internal),
            }
        })
        .await?;
        Ok((
            bytes,
            format!("job-{id}-round-{}.{}", row.round, format.extension()),
        ))
    }

    /// A stored blob.
    pub async fn artifact(&self, sha: &str) -> Result<Vec<u8>, AppError> {
        self.artifacts
            .get(sha)
            .await
            .map_err(AppError::io)?
            .ok_or_else(|| AppError::not_found(format!("no artifact {sha}")))
    }

    /// Stores an uploaded dataset file.
    pub async fn upload_dataset(&self, bytes: Vec<u8>) -> Result<UploadedDataset, AppError> {
        datasets::upload(bytes, &self.artifacts, self.config.max_dataset_bytes).await
    }
}

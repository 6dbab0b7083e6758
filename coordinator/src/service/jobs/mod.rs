//! Jobs: creating one within its budgets, reading, cancelling, failing,
//! and downloading its model; datasets and artifacts. An inference job's
//! preparation and outputs are `inference`'s.

mod inference;

pub use inference::OutputsFormat;

use oblivion_protocol::{BlobId, JobId};
use std::sync::Arc;

use oblivion_ml::data::encode_shard;
use oblivion_ml::model::Architecture;
use oblivion_ml::params::Params;
use oblivion_ml::weights::initial_params;
use oblivion_protocol::api::{JobStatus, JobView, OutputsView, RoundMetrics, UploadedDataset};
use oblivion_protocol::auth::normalize_address;
use oblivion_protocol::wire::FeatureScaling;
use oblivion_protocol::{DatasetSpec, JobSpec, TrainingSpec};

use super::accounts::Viewer;
use super::budget;
use super::chain_link::{ChainLink, spec_hash};
use super::dispatch::Dispatch;
use super::models::{ModelFormat, export_as};
use super::rounds::Rounds;
use super::shared::{
    JobsVersion, Parts, arch_of, check_released, job_row, ml_internal, scaling_of, token_hash,
    weights,
};
use crate::blocking::blocking;
use crate::config::Config;
use crate::datasets::{self, DatasetCache};
use crate::error::{AppError, Failure};
use crate::hub::{LiveJob, ShardDetail, Weights};
use crate::kind::{Division, JobKind, kind_of};
use oblivion_store::{Artifacts, Db, JobData, JobRow, NewJob, NewPayment, now};

/// A new job before it is stored: what its kind made of its spec.
pub(super) struct Prepared {
    kind: Arc<dyn JobKind>,
    arch: Architecture,
    division: Division,
    /// Its feature scaling (tabular data).
    scaling: Option<FeatureScaling>,
    start: Start,
}

/// The weights a new job starts from.
pub(super) enum Start {
    /// Its own initial weights, to store.
    New(Params),
    /// Weights already stored (the model an inference job runs).
    Stored(Weights),
}

/// Jobs as their creators and visitors see them: created within their
/// budgets, listed, viewed, cancelled, downloaded; the datasets they are
/// cut from, and the stored blobs they name (collected when unused).
pub struct Jobs {
    pub(super) config: Arc<Config>,
    pub(super) db: Db,
    pub(super) artifacts: Artifacts,
    /// The named datasets jobs are cut from, kept decoded.
    pub(super) datasets: DatasetCache,
    pub(super) rounds: Arc<Rounds>,
    dispatch: Arc<Dispatch>,
    jobs_version: Arc<JobsVersion>,
    /// The chain paid jobs settle on, if any.
    chain: Option<Arc<ChainLink>>,
}

impl Jobs {
    /// The jobs service.
    pub(super) fn new(parts: &Parts, rounds: Arc<Rounds>, dispatch: Arc<Dispatch>) -> Jobs {
        let parts = parts.clone();
        Jobs {
            datasets: DatasetCache::new(parts.config.uploads.dataset_cache_entries),
            config: parts.config,
            db: parts.db,
            artifacts: parts.artifacts,
            rounds,
            dispatch,
            jobs_version: parts.jobs_version,
            chain: parts.chain,
        }
    }

    /// Validates data against a spec and the budgets, prepares shards and
    /// initial weights, stores the job and starts handing out its shards.
    /// `creator` is the account that will own it.
    pub async fn create_job(&self, spec: JobSpec, creator: &str) -> Result<JobId, AppError> {
        let in_flight = self
            .db
            .jobs_in_flight(creator)
            .await
            .map_err(AppError::db)?;
        if in_flight >= u64::from(self.config.quotas.max_jobs_in_flight) {
            return Err(AppError::new(
                Failure::TooMany,
                format!(
                    "this account already has {in_flight} unfinished jobs, the most allowed \
                     (max_jobs_in_flight); wait for one to finish or cancel one"
                ),
            ));
        }
        if spec.reward().is_some() && self.chain.is_none() {
            return Err(AppError::unprocessable(
                "reward: this coordinator settles on no chain, so its jobs run unpaid; \
                 leave reward out",
            )
            .with_field("reward"));
        }
        if let (Some(reward), Some(link)) = (spec.reward(), &self.chain) {
            let needed = link
                .config
                .time_needed(spec.rounds(), self.config.leases.lease_max_lifetime);
            let hours = needed.as_secs().div_ceil(3600);
            if u64::from(reward.deadline_hours) < hours {
                return Err(AppError::unprocessable(format!(
                    "reward.deadline_hours: {} rounds need at least {hours} hours before the \
                     deadline ({} s a round, then a lease's lifetime and {} s to settle)",
                    spec.rounds(),
                    link.config.round_time.as_secs(),
                    link.config.deadline_margin.as_secs(),
                ))
                .with_field("reward.deadline_hours"));
            }
        }
        let prepared = match &spec {
            JobSpec::Training(t) => self.prepare_training(t, creator).await?,
            JobSpec::Inference(i) => self.prepare_inference(i, creator).await?,
        };
        let Prepared {
            kind,
            arch,
            division,
            scaling: normalization,
            start,
        } = prepared;
        // A slot whose worker brings its own data has none stored.
        let mut shards = Vec::with_capacity(division.slots.len());
        for slot in division.slots {
            let data = match slot.data {
                Some(blob) => Some(self.artifacts.put(blob).await.map_err(AppError::io)?),
                None => None,
            };
            shards.push((data, slot.credit));
        }
        let (val, train_len) = (division.validation, division.train_samples);
        let val_blob = {
            let val = val.clone();
            blocking(move || Ok(encode_shard(&val))).await?
        };
        let validation_sha = self.artifacts.put(val_blob).await.map_err(AppError::io)?;
        let global = match start {
            Start::Stored(weights) => weights,
            Start::New(params) => {
                let (params, encoded) =
                    blocking(move || Ok((params.clone(), params.to_safetensors(None)))).await?;
                Weights {
                    blob: self.artifacts.put(encoded).await.map_err(AppError::io)?,
                    params: Arc::new(params),
                }
            }
        };
        let stored_normalization = normalization
            .as_ref()
            .map(serde_json::to_string)
            .transpose()
            .map_err(|e| AppError::internal(format!("normalisation: {e}")))?;
        let paid = spec.reward().is_some();
        let row = NewJob {
            spec: spec.clone(),
            status: if paid {
                JobStatus::Funding
            } else {
                JobStatus::Pending
            },
            global_sha: global.blob,
            data: JobData {
                model: arch.model.clone(),
                input_shape: arch.input_shape.clone(),
                classes: arch.classes,
                normalization: stored_normalization,
                validation_sha,
                train_samples: train_len as u64,
                validation_samples: val.len() as u64,
            },
            round_started_at: now(),
            created_at: now() as i64,
            round_replicas: crate::replication::pick_secretly(
                shards.len(),
                spec.replication().fraction,
            ),
            creator: Some(creator.to_string()),
        };
        let id = match (spec.reward(), &self.chain) {
            (Some(reward), Some(link)) => {
                let stored = serde_json::to_string(&spec)
                    .map_err(|e| AppError::internal(format!("spec: {e}")))?;
                let key_of = |id: JobId| link.job_key(creator, id);
                let payment = NewPayment {
                    job_key: &key_of,
                    spec_hash: &spec_hash(&stored),
                    amount: &reward.amount,
                };
                self.db.insert_paid_job(&row, &shards, Some(&payment)).await
            }
            _ => self.db.insert_job(&row, &shards).await,
        }
        .map_err(AppError::db)?;
        self.jobs_version.bump();
        if paid {
            // Run once its deposit is confirmed (see `payments`).
            tracing::info!(job = %id, "paid job created; waiting for its deposit");
            return Ok(id);
        }
        let trainers = spec.restricted_to(Some(creator));
        let live = LiveJob::new(
            id,
            spec,
            kind,
            Arc::new(arch),
            global,
            shards,
            &row.round_replicas,
        )
        .trained_by(trainers)
        .scaled_by(normalization);
        self.rounds.start_job(live, Arc::new(val));
        tracing::info!(job = %id, "job created");
        Ok(id)
    }

    /// A training job's kind, architecture, slots and initial weights, its
    /// dataset checked against the budgets.
    async fn prepare_training(
        &self,
        spec: &TrainingSpec,
        creator: &str,
    ) -> Result<Prepared, AppError> {
        self.check_dataset_owner(&spec.dataset, creator).await?;
        let dataset = self
            .datasets
            .load(
                spec.dataset.held_by_coordinator(),
                &self.artifacts,
                self.config.uploads.max_dataset_bytes,
            )
            .await?;
        let kind = kind_of(&spec.clone().into())?;
        let arch = Architecture::new(spec.model.clone(), dataset.shape.clone(), dataset.classes)
            .map_err(|e| AppError::unprocessable(e.to_string()).with_field("dataset"))?;
        let held_out = kind.held_out(dataset.len());
        budget::check(&self.config.budgets, spec, &arch, held_out)?;
        let (division, initial) = {
            let (kind, arch, seed) = (kind.clone(), arch.clone(), spec.seed);
            blocking(move || {
                let division = kind.divide(&dataset)?;
                let initial = initial_params(&arch, seed).map_err(ml_internal)?;
                Ok::<_, AppError>((division, initial))
            })
            .await?
        };
        let mut scaling = division.scaling.clone();
        if kind.names_columns()
            && let Some(n) = scaling.as_mut()
        {
            // Workers' own data must hold the same columns, by name.
            n.columns = datasets::columns(
                spec.dataset.held_by_coordinator(),
                &self.artifacts,
                self.config.uploads.max_dataset_bytes,
            )
            .await?;
        }
        let start = match &spec.init {
            None => Start::New(initial),
            Some(init) => Start::Stored(
                self.initial_model(creator, init, &arch, spec.visibility)
                    .await?,
            ),
        };
        Ok(Prepared {
            kind,
            arch,
            division,
            scaling,
            start,
        })
    }

    /// An uploaded dataset may be trained on by its uploaders alone (its
    /// content address is no secret: it names the file, it does not grant it).
    async fn check_dataset_owner(
        &self,
        dataset: &DatasetSpec,
        owner: &str,
    ) -> Result<(), AppError> {
        let files = match dataset.held_by_coordinator() {
            DatasetSpec::Builtin(_) | DatasetSpec::Federated { .. } => Vec::new(),
            DatasetSpec::Csv(file) => vec![*file],
            DatasetSpec::Idx { images, labels } => vec![*images, *labels],
        };
        for file in files {
            if !self
                .db
                .uploaded_by(file, owner)
                .await
                .map_err(AppError::db)?
                && !self
                    .db
                    .artifact_readers(file)
                    .await
                    .map_err(AppError::db)?
                    .owners
                    .is_empty()
            {
                // (A file nobody uploaded is reported missing by the loader.)
                return Err(AppError::new(
                    Failure::Forbidden,
                    format!("dataset {file} was not uploaded by this account; upload it first"),
                )
                .with_field("dataset"));
            }
        }
        Ok(())
    }

    /// A job `viewer` may read (403 for someone else's private job).
    async fn readable_job(&self, viewer: &Viewer, id: JobId) -> Result<JobRow, AppError> {
        let row = job_row(&self.db, id).await?;
        if !viewer.may_read(&row) {
            return Err(AppError::new(
                Failure::Forbidden,
                format!("job {id} is private to its owner"),
            ));
        }
        Ok(row)
    }

    /// The API view of a job, for `viewer`.
    pub async fn job_view_for(&self, viewer: &Viewer, id: JobId) -> Result<JobView, AppError> {
        let row = self.readable_job(viewer, id).await?;
        self.job_view(id, viewer.owns(&row)).await
    }

    /// The API view of a job; `owner`: as its owner sees it, with every
    /// slot of the round (replicas too) and who holds it.
    async fn job_view(&self, id: JobId, owner: bool) -> Result<JobView, AppError> {
        let row = job_row(&self.db, id).await?;
        let history = self.db.rounds(id).await.map_err(AppError::db)?;
        let mut view = self.view_of(row, history, owner);
        view.contributors = self.db.contributors(id).await.map_err(AppError::db)?;
        view.payment = self.db.payment(id).await.map_err(AppError::db)?;
        view.outputs = self
            .db
            .inference_result(id)
            .await
            .map_err(AppError::db)?
            .map(|r| OutputsView {
                rows: r.rows,
                classes: r.classes,
                accuracy: r.accuracy,
                confusion: r.confusion,
            });
        Ok(view)
    }

    fn view_of(&self, row: JobRow, history: Vec<RoundMetrics>, owner: bool) -> JobView {
        let hub = self.dispatch.hub();
        let detail = if owner {
            ShardDetail::Owner
        } else {
            ShardDetail::Public
        };
        JobView {
            id: row.id,
            name: row.spec.name().to_string(),
            status: row.status,
            round: row.round,
            rounds: row.spec.rounds(),
            history,
            shards: hub.shard_views(row.id, detail),
            active_workers: hub.active_workers(row.id, detail),
            contributors: Vec::new(),
            error: row.error,
            spec: row.spec,
            train_samples: row.data.train_samples,
            validation_samples: row.data.validation_samples,
            created_at: row.created_at,
            owner: row.creator.as_deref().and_then(normalize_address),
            payment: None,
            outputs: None,
        }
    }

    /// The jobs `viewer` may read, newest first (two queries, however
    /// many jobs).
    pub async fn jobs(&self, viewer: &Viewer) -> Result<Vec<JobView>, AppError> {
        let rows = self.db.jobs().await.map_err(AppError::db)?;
        let mut rounds = self.db.all_rounds().await.map_err(AppError::db)?;
        Ok(rows
            .into_iter()
            .filter(|row| viewer.may_read(row))
            .map(|row| {
                let history = rounds.remove(&row.id).unwrap_or_default();
                let owner = viewer.owns(&row);
                self.view_of(row, history, owner)
            })
            .collect())
    }

    /// Stops a job for its owner; its leases are revoked. Refused: 401
    /// anonymous, 403 another account, 409 once it finished.
    pub async fn cancel_job(&self, viewer: &Viewer, id: JobId) -> Result<JobView, AppError> {
        let account = viewer.account()?;
        let row = job_row(&self.db, id).await?;
        if !viewer.owns(&row) {
            return Err(AppError::new(
                Failure::Forbidden,
                format!("job {id} belongs to another account; {account} may not cancel it"),
            ));
        }
        self.rounds.finish(id, JobStatus::Cancelled, None).await?;
        tracing::info!(job = %id, "job cancelled");
        self.job_view(id, true).await
    }

    /// The job's current model in `format`, with a file name.
    pub async fn model(
        &self,
        viewer: &Viewer,
        id: JobId,
        format: ModelFormat,
    ) -> Result<(Vec<u8>, String), AppError> {
        let row = self.readable_job(viewer, id).await?;
        check_released(&self.db, &row).await?;
        let arch = arch_of(&row)?;
        let params = weights(&self.artifacts, row.global_sha).await?;
        let normalization = scaling_of(&row)?;
        let bytes =
            blocking(move || export_as(&arch, &params, normalization.as_ref(), format)).await?;
        Ok((
            bytes,
            format!("job-{id}-round-{}.{}", row.round, format.extension()),
        ))
    }

    /// A stored blob, if `viewer` (or the worker whose token is `worker`)
    /// may read it; and whether anyone may.
    pub async fn artifact(
        &self,
        viewer: &Viewer,
        worker: Option<&str>,
        blob: BlobId,
    ) -> Result<(Vec<u8>, bool), AppError> {
        let missing = || AppError::not_found(format!("no artifact {blob}"));
        let readers = self.db.artifact_readers(blob).await.map_err(AppError::db)?;
        if readers.withheld {
            let leased = match worker {
                Some(token) => self
                    .db
                    .lease_needs(&token_hash(token), blob)
                    .await
                    .map_err(AppError::db)?,
                None => false,
            };
            if !leased {
                return Err(AppError::new(
                    Failure::Forbidden,
                    format!(
                        "artifact {blob} is weights of a paid job, released once its \
                         settlement is seen on chain"
                    ),
                ));
            }
        } else if !readers.public {
            if readers.owners.is_empty() {
                // Named by nothing any more: as good as gone.
                return Err(missing());
            }
            let owner = viewer
                .0
                .as_ref()
                .is_some_and(|a| readers.owners.contains(a));
            let leased = match worker {
                Some(token) if !owner => self
                    .db
                    .lease_needs(&token_hash(token), blob)
                    .await
                    .map_err(AppError::db)?,
                _ => false,
            };
            if !owner && !leased {
                return Err(AppError::new(
                    Failure::Forbidden,
                    format!("artifact {blob} belongs to a private job or upload"),
                ));
            }
        }
        let bytes = self
            .artifacts
            .get(blob)
            .await
            .map_err(AppError::io)?
            .ok_or_else(missing)?;
        Ok((bytes, readers.public))
    }

    /// Stores a dataset file uploaded by `owner`.
    pub async fn upload_dataset(
        &self,
        owner: &str,
        bytes: Vec<u8>,
    ) -> Result<UploadedDataset, AppError> {
        let uploaded = datasets::upload(
            bytes,
            &self.artifacts,
            self.config.uploads.max_dataset_bytes,
        )
        .await?;
        self.db
            .add_upload(uploaded.sha256, owner, oblivion_store::now())
            .await
            .map_err(AppError::db)?;
        Ok(uploaded)
    }
}

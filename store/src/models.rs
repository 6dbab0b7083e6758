//! The model registry: an entry for each completed training job's model
//! (written with the round that completes the job: see
//! [`crate::RoundRow::model`]) and for each set of weights an owner
//! registers.

use oblivion_protocol::{BlobId, JobId, ModelId, ModelSpec, Visibility};
use sqlx::{Any, Transaction};

use crate::columns::{Int, Text};
use crate::db::{Db, transaction};
use crate::error::StoreError;

/// A registry entry.
#[derive(Clone, Debug, PartialEq, sqlx::FromRow)]
pub struct ModelRow {
    /// Id.
    #[sqlx(try_from = "i64")]
    pub id: ModelId,
    /// The training job that made it; `None` for registered weights.
    #[sqlx(try_from = "OptionalJob")]
    pub job_id: Option<JobId>,
    /// Its name.
    #[sqlx(flatten)]
    pub entry: ModelEntry,
}

/// What an entry says of a model.
#[derive(Clone, Debug, PartialEq, sqlx::FromRow)]
pub struct ModelEntry {
    /// A short human name (its job's, or the registrant's).
    pub name: String,
    /// Its owner: the account that made or registered it (as stored: jobs
    /// from before accounts hold an address of no account).
    pub owner: Option<String>,
    /// Who may find, read and run it.
    #[sqlx(try_from = "Text<Visibility>")]
    pub visibility: Visibility,
    /// The architecture.
    #[sqlx(try_from = "Text<ModelSpec>")]
    pub model: ModelSpec,
    /// Shape of one input sample.
    #[sqlx(try_from = "Text<Vec<usize>>")]
    pub input_shape: Vec<usize>,
    /// Classes it predicts.
    #[sqlx(try_from = "i64")]
    pub classes: usize,
    /// Tabular feature scaling, JSON, as jobs store it.
    pub normalization: Option<String>,
    /// Its weights (safetensors, as the network trains them).
    #[sqlx(try_from = "Text<BlobId>")]
    pub weights_sha: BlobId,
    /// What it was trained on: its job's dataset spec as JSON, or
    /// `"registered"`.
    pub dataset: String,
    /// Accuracy on its validation split, when known.
    pub accuracy: Option<f64>,
    /// Loss on its validation split, when known.
    pub loss: Option<f64>,
    /// The ε its training spent, when private.
    pub epsilon: Option<f64>,
    /// Rounds it was trained for (0 for registered weights).
    #[sqlx(try_from = "i64")]
    pub rounds: u32,
    /// When it was made (Unix seconds).
    pub created_at: i64,
}

/// A nullable job id column.
#[derive(sqlx::Type)]
#[sqlx(transparent)]
pub(crate) struct OptionalJob(Option<i64>);

impl TryFrom<OptionalJob> for Option<JobId> {
    type Error = oblivion_protocol::ids::NegativeId;

    fn try_from(j: OptionalJob) -> Result<Self, Self::Error> {
        j.0.map(JobId::try_from).transpose()
    }
}

const COLUMNS: &str = "name, owner, visibility, model, input_shape, classes, normalization, \
                       weights_sha, dataset, accuracy, loss, epsilon, rounds, created_at";

impl Db {
    /// Adds the model of `job` to the registry, in the transaction that
    /// completes it.
    pub(crate) async fn insert_model(
        &self,
        tx: &mut Transaction<'static, Any>,
        job: Option<JobId>,
        entry: &ModelEntry,
    ) -> Result<ModelId, StoreError> {
        let id: Int<ModelId> = sqlx::query_scalar(&format!(
            "INSERT INTO models (job_id, {COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, \
             $10, $11, $12, $13, $14, $15) RETURNING id"
        ))
        .bind(job.map(JobId::db))
        .bind(&entry.name)
        .bind(&entry.owner)
        .bind(entry.visibility.as_str())
        .bind(serde_json::to_string(&entry.model)?)
        .bind(serde_json::to_string(&entry.input_shape)?)
        .bind(entry.classes as i64)
        .bind(&entry.normalization)
        .bind(entry.weights_sha.hex())
        .bind(&entry.dataset)
        .bind(entry.accuracy)
        .bind(entry.loss)
        .bind(entry.epsilon)
        .bind(i64::from(entry.rounds))
        .bind(entry.created_at)
        .fetch_one(&mut **tx)
        .await?;
        Ok(id.get())
    }

    /// Registers weights an owner uploaded (checked against their
    /// architecture before); their new id.
    pub async fn register_model(&self, entry: &ModelEntry) -> Result<ModelId, StoreError> {
        transaction!(self, |tx| {
            let id = self.insert_model(&mut tx, None, entry).await?;
            tx.commit().await?;
            Ok(id)
        })
    }

    /// The entry whose weights are `blob`, if any (the oldest).
    pub async fn model_with_weights(&self, blob: BlobId) -> Result<Option<ModelId>, StoreError> {
        let id: Option<Int<ModelId>> =
            sqlx::query_scalar("SELECT MIN(id) FROM models WHERE weights_sha = $1")
                .bind(blob.hex())
                .fetch_one(&self.pool)
                .await?;
        Ok(id.map(Int::get))
    }

    /// Every entry, newest first.
    pub async fn models(&self) -> Result<Vec<ModelRow>, StoreError> {
        Ok(sqlx::query_as(&format!(
            "SELECT id, job_id, {COLUMNS} FROM models ORDER BY id DESC"
        ))
        .fetch_all(&self.pool)
        .await?)
    }

    /// One entry.
    pub async fn model(&self, id: ModelId) -> Result<Option<ModelRow>, StoreError> {
        Ok(sqlx::query_as(&format!(
            "SELECT id, job_id, {COLUMNS} FROM models WHERE id = $1"
        ))
        .bind(id.db())
        .fetch_optional(&self.pool)
        .await?)
    }

    /// The entry of `job`'s model, once it completed.
    pub async fn model_of_job(&self, job: JobId) -> Result<Option<ModelRow>, StoreError> {
        Ok(sqlx::query_as(&format!(
            "SELECT id, job_id, {COLUMNS} FROM models WHERE job_id = $1"
        ))
        .bind(job.db())
        .fetch_optional(&self.pool)
        .await?)
    }
}

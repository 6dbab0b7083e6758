//! Jobs in the database: their rows, their shards and every status they
//! have had.

use oblivion_protocol::api::JobStatus;
use oblivion_protocol::{BlobId, JobId, JobSpec, ModelSpec};

use crate::columns::{Int, Text, optional_blob};
use crate::db::{Db, TRAINING, UNFINISHED, now, transaction};
use crate::error::StoreError;

/// A job as stored.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct JobRow {
    /// Id.
    #[sqlx(try_from = "i64")]
    pub id: JobId,
    /// The validated spec.
    #[sqlx(try_from = "Text<JobSpec>")]
    pub spec: JobSpec,
    /// Life-cycle state.
    #[sqlx(try_from = "Text<JobStatus>")]
    pub status: JobStatus,
    /// Round in progress (or last, once finished).
    #[sqlx(try_from = "i64")]
    pub round: u32,
    /// Current global weights.
    #[sqlx(try_from = "Text<BlobId>")]
    pub global_sha: BlobId,
    /// What its dataset came to.
    #[sqlx(flatten)]
    pub data: JobData,
    /// When the current round started.
    pub round_started_at: f64,
    /// Why it failed.
    pub error: Option<String>,
    /// Creation time (Unix seconds).
    pub created_at: i64,
    /// Its owner: the account that created it (lower-case `0x` hex). Jobs
    /// from before accounts hold the client's IP address here: no owner.
    pub creator: Option<String>,
    /// The current round's replica slots: the shard each slot beyond the
    /// shards trains again (slot `shards + k` copies `round_replicas[k]`).
    #[sqlx(try_from = "Text<Vec<u32>>")]
    pub round_replicas: Vec<u32>,
}

/// A job about to be stored: its row but for the id the database gives
/// it. It starts at round 1, without an error.
#[derive(Clone, Debug)]
pub struct NewJob {
    /// The validated spec.
    pub spec: JobSpec,
    /// `Pending`, or `Funding` for a paid job (see [`JobStatus`]).
    pub status: JobStatus,
    /// The initial weights.
    pub global_sha: BlobId,
    /// What its dataset came to.
    pub data: JobData,
    /// When its first round starts (Unix seconds).
    pub round_started_at: f64,
    /// Creation time (Unix seconds).
    pub created_at: i64,
    /// Its owner (see [`JobRow::creator`]).
    pub creator: Option<String>,
    /// The first round's replica slots (see [`JobRow::round_replicas`]).
    pub round_replicas: Vec<u32>,
}

/// What a job's dataset came to when the job was created: the shape its
/// model takes, and its validation split.
#[derive(Clone, Debug, PartialEq, sqlx::FromRow)]
pub struct JobData {
    /// The architecture it trains or runs.
    #[sqlx(try_from = "Text<ModelSpec>")]
    pub model: ModelSpec,
    /// Shape of one sample.
    #[sqlx(try_from = "Text<Vec<usize>>")]
    pub input_shape: Vec<usize>,
    /// Number of classes.
    #[sqlx(try_from = "i64")]
    pub classes: usize,
    /// Tabular normalisation, JSON.
    pub normalization: Option<String>,
    /// Validation shard.
    #[sqlx(try_from = "Text<BlobId>")]
    pub validation_sha: BlobId,
    /// Training samples.
    #[sqlx(try_from = "i64")]
    pub train_samples: u64,
    /// Validation samples.
    #[sqlx(try_from = "i64")]
    pub validation_samples: u64,
}

/// Why a guarded change of a job did not happen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JobRefusal {
    /// No such job.
    Missing,
    /// The job is in this state, which does not allow it.
    State(JobStatus),
}

impl Db {
    /// Stores a new job and its shards; returns its id.
    pub async fn insert_job(
        &self,
        job: &NewJob,
        shards: &[(Option<BlobId>, u64)],
    ) -> Result<JobId, StoreError> {
        self.insert_paid_job(job, shards, None).await
    }

    /// Stores a new job, its shards and, for a paid job, its payment row
    /// (whose escrow key depends on the id), in one transaction.
    pub async fn insert_paid_job(
        &self,
        job: &NewJob,
        shards: &[(Option<BlobId>, u64)],
        payment: Option<&super::NewPayment<'_>>,
    ) -> Result<JobId, StoreError> {
        transaction!(self, |tx| {
            let new_id: Int<JobId> = sqlx::query_scalar(
                "INSERT INTO jobs (name, spec, status, round, global_sha, input_shape, classes, \
                 normalization, validation_sha, train_samples, validation_samples, round_started_at, \
                 error, created_at, creator, visibility, round_slots, round_replicas, model) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, \
                 $17, $18, $19) RETURNING id",
            )
            .bind(job.spec.name())
            .bind(serde_json::to_string(&job.spec)?)
            .bind(job.status.as_str())
            .bind(1i64)
            .bind(job.global_sha.hex())
            .bind(serde_json::to_string(&job.data.input_shape)?)
            .bind(job.data.classes as i64)
            .bind(&job.data.normalization)
            .bind(job.data.validation_sha.hex())
            .bind(job.data.train_samples as i64)
            .bind(job.data.validation_samples as i64)
            .bind(job.round_started_at)
            .bind(None::<String>)
            .bind(job.created_at)
            .bind(&job.creator)
            .bind(job.spec.visibility().as_str())
            .bind((shards.len() + job.round_replicas.len()) as i64)
            .bind(serde_json::to_string(&job.round_replicas)?)
            .bind(serde_json::to_string(&job.data.model)?)
            .fetch_one(&mut *tx)
            .await?;
            let new_id = new_id.get();
            for (i, (data, samples)) in shards.iter().enumerate() {
                sqlx::query(
                    "INSERT INTO job_shards (job_id, shard, data_sha, samples) VALUES ($1, $2, $3, $4)",
                )
                .bind(new_id.db())
                .bind(i as i64)
                .bind(optional_blob(*data))
                .bind(*samples as i64)
                .execute(&mut *tx)
                .await?;
            }
            if let Some(p) = payment {
                sqlx::query(
                    "INSERT INTO payments (job_id, job_key, spec_hash, amount, state) \
                     VALUES ($1, $2, $3, $4, 'awaiting_deposit')",
                )
                .bind(new_id.db())
                .bind((p.job_key)(new_id))
                .bind(p.spec_hash)
                .bind(p.amount.as_str())
                .execute(&mut *tx)
                .await?;
            }
            self.notify(&mut tx, [new_id]).await?;
            tx.commit().await?;
            Ok(new_id)
        })
    }

    /// One job.
    pub async fn job(&self, id: JobId) -> Result<Option<JobRow>, StoreError> {
        Ok(sqlx::query_as("SELECT * FROM jobs WHERE id = $1")
            .bind(id.db())
            .fetch_optional(&self.pool)
            .await?)
    }

    /// All jobs, newest first.
    pub async fn jobs(&self) -> Result<Vec<JobRow>, StoreError> {
        Ok(sqlx::query_as("SELECT * FROM jobs ORDER BY id DESC")
            .fetch_all(&self.pool)
            .await?)
    }

    /// Jobs still to train (pending or running), oldest first.
    pub async fn unfinished_jobs(&self) -> Result<Vec<JobRow>, StoreError> {
        Ok(sqlx::query_as(&format!(
            "SELECT * FROM jobs WHERE status IN {TRAINING} ORDER BY id"
        ))
        .fetch_all(&self.pool)
        .await?)
    }

    /// Jobs submitted by `creator` that have not finished.
    pub async fn jobs_in_flight(&self, creator: &str) -> Result<u64, StoreError> {
        let n: Int<u64> = sqlx::query_scalar(&format!(
            "SELECT COUNT(*) FROM jobs WHERE creator = $1 AND status IN {UNFINISHED}"
        ))
        .bind(creator)
        .fetch_one(&self.pool)
        .await?;
        Ok(n.get())
    }

    /// Ends a job that has not finished: `Cancelled` (revoking its active
    /// leases) or `Failed` (with `error`), in one transaction. Refused when
    /// the job already finished, whatever raced with it.
    pub async fn finish_job(
        &self,
        id: JobId,
        status: JobStatus,
        error: Option<&str>,
    ) -> Result<Result<(), JobRefusal>, StoreError> {
        transaction!(self, |tx| {
            let changed = sqlx::query(&format!(
                "UPDATE jobs SET status = $2, error = COALESCE($3, error), \
                 aggregation_claim = NULL, aggregation_claimed_at = NULL \
                 WHERE id = $1 AND status IN {UNFINISHED}"
            ))
            .bind(id.db())
            .bind(status.as_str())
            .bind(error)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if changed == 0 {
                let current: Option<Text<JobStatus>> =
                    sqlx::query_scalar("SELECT status FROM jobs WHERE id = $1")
                        .bind(id.db())
                        .fetch_optional(&mut *tx)
                        .await?;
                return Ok(Err(match current {
                    Some(status) => JobRefusal::State(status.into()),
                    None => JobRefusal::Missing,
                }));
            }
            sqlx::query(
                "UPDATE leases SET status = 'revoked', reason = $2, ended_at = $3 \
                 WHERE job_id = $1 AND status = 'active'",
            )
            .bind(id.db())
            .bind(format!("job {}", status.as_str()))
            .bind(now())
            .execute(&mut *tx)
            .await?;
            self.notify(&mut tx, [id]).await?;
            tx.commit().await?;
            Ok(Ok(()))
        })
    }

    /// Every status a job has had, oldest first (`None` before creation).
    pub async fn transitions(
        &self,
        job: JobId,
    ) -> Result<Vec<(Option<JobStatus>, JobStatus)>, StoreError> {
        let moves: Vec<(Option<Text<JobStatus>>, Text<JobStatus>)> = sqlx::query_as(
            "SELECT from_status, to_status FROM job_transitions WHERE job_id = $1 ORDER BY id",
        )
        .bind(job.db())
        .fetch_all(&self.pool)
        .await?;
        Ok(moves
            .into_iter()
            .map(|(from, to)| (from.map(Into::into), to.into()))
            .collect())
    }

    /// A job's data shards: (data, samples) by index.
    pub async fn job_shards(&self, job: JobId) -> Result<Vec<(Option<BlobId>, u64)>, StoreError> {
        let shards: Vec<(Text<Option<BlobId>>, Int<u64>)> = sqlx::query_as(
            "SELECT data_sha, samples FROM job_shards WHERE job_id = $1 ORDER BY shard",
        )
        .bind(job.db())
        .fetch_all(&self.pool)
        .await?;
        Ok(shards
            .into_iter()
            .map(|(data, samples)| (data.get(), samples.get()))
            .collect())
    }
}

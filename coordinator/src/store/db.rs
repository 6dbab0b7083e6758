//! The database: the one source of truth for jobs, rounds, shards, leases,
//! updates and workers' counters. SQLite (embedded, the default) or
//! PostgreSQL, through sqlx's `Any` driver so that both run the same
//! queries (`$N` placeholders, `RETURNING`, `ON CONFLICT DO NOTHING` are
//! common to both).
//!
//! Every state change is one transaction whose `UPDATE … WHERE status = …`
//! guards are checked by rows affected; the schema adds what the code must
//! not be trusted with alone (one active lease per shard, one update per
//! shard and round, job statuses that only move forward, a log of every
//! status change). Schema changes are versioned migrations.

use std::collections::HashMap;
use std::time::Duration;

use oblivion_protocol::JobSpec;
use oblivion_protocol::api::{Contributor, JobStatus, RoundMetrics, WorkerView};
use oblivion_protocol::wire::{ClientKind, DeviceInfo};
use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{Any, AnyPool, Executor, Row, Transaction};

use super::migrations;
use super::trust::{IDENTITY, Quarantined, UpdateVerdict};
use crate::hub::Grant;
use crate::reputation::ReputationPolicy;
use crate::states::LeaseStatus;

/// Seconds since the Unix epoch, with fractions (for records; expiry runs
/// on a monotonic clock).
pub fn now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or_default()
}

/// Which database a URL names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// `sqlite://PATH`: embedded, one instance.
    Sqlite,
    /// `postgres://…`: shared by several instances.
    Postgres,
}

impl Backend {
    /// The backend of `url`, or a readable refusal.
    pub fn of(url: &str) -> Result<Backend, String> {
        if url.starts_with("sqlite:") {
            Ok(Backend::Sqlite)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Ok(Backend::Postgres)
        } else {
            Err(format!(
                "database URL {url:?} is neither sqlite://PATH nor postgres://…"
            ))
        }
    }
}

/// Handle on the database.
#[derive(Clone, Debug)]
pub struct Db {
    pub(super) pool: AnyPool,
    backend: Backend,
}

/// A job as stored.
#[derive(Clone, Debug)]
pub struct JobRow {
    /// Id.
    pub id: u64,
    /// The validated spec.
    pub spec: JobSpec,
    /// Life-cycle state.
    pub status: JobStatus,
    /// Round in progress (or last, once finished).
    pub round: u32,
    /// Current global weights.
    pub global_sha: String,
    /// Shape of one sample.
    pub input_shape: Vec<usize>,
    /// Number of classes.
    pub classes: usize,
    /// Tabular normalisation, JSON.
    pub normalization: Option<String>,
    /// Validation shard.
    pub validation_sha: String,
    /// Training samples.
    pub train_samples: u64,
    /// Validation samples.
    pub validation_samples: u64,
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
    pub round_replicas: Vec<u32>,
}

/// An accepted update as stored.
#[derive(Clone, Debug)]
pub struct UpdateRow {
    /// Shard index.
    pub shard: u32,
    /// Worker that made it.
    pub worker_id: u64,
    /// Lease it answered.
    pub lease_id: u64,
    /// The update blob.
    pub update_sha: String,
    /// Samples credited (the shard's size).
    pub samples: u64,
    /// Training loss reported.
    pub train_loss: f64,
    /// L2 norm.
    pub norm: f64,
    /// Training time the worker reported (informative only).
    pub train_millis: u64,
    /// When it was accepted (the database's clock, seconds).
    pub accepted_at: f64,
}

/// A finished round as stored.
#[derive(Clone, Debug)]
pub struct RoundRow {
    /// Metrics.
    pub metrics: RoundMetrics,
    /// Weights after the round.
    pub global_sha: String,
    /// The verdict on each of the round's updates.
    pub verdicts: Vec<UpdateVerdict>,
    /// The next round's replica slots (see [`JobRow::round_replicas`]).
    pub next_replicas: Vec<u32>,
}

/// A lease the database recorded for a planned [`Grant`].
#[derive(Clone, Copy, Debug)]
pub struct Granted {
    /// What was planned.
    pub grant: Grant,
    /// The lease's id.
    pub id: u64,
    /// Whether it moved its job from pending to running.
    pub started_job: bool,
}

/// Why a guarded change of a job did not happen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JobRefusal {
    /// No such job.
    Missing,
    /// The job is in this state, which does not allow it.
    State(JobStatus),
}

/// Why an update was not recorded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UpdateRefusal {
    /// The lease is not active (it ended, or another worker holds it).
    LeaseNotActive,
    /// The job is no longer running this round.
    JobMovedOn,
    /// This shard's update for the round is already in.
    Duplicate,
    /// The worker is quarantined, for this reason.
    Quarantined(String),
}

fn decode_err(e: impl std::error::Error + Send + Sync + 'static) -> sqlx::Error {
    sqlx::Error::Decode(Box::new(e))
}

fn status_of(text: &str) -> Result<JobStatus, sqlx::Error> {
    JobStatus::parse(text).ok_or_else(|| sqlx::Error::Decode(format!("bad status {text}").into()))
}

fn job_from_row(row: &AnyRow) -> Result<JobRow, sqlx::Error> {
    let spec: String = row.try_get("spec")?;
    let status: String = row.try_get("status")?;
    let shape: String = row.try_get("input_shape")?;
    Ok(JobRow {
        id: row.try_get::<i64, _>("id")? as u64,
        spec: serde_json::from_str(&spec).map_err(decode_err)?,
        status: status_of(&status)?,
        round: row.try_get::<i64, _>("round")? as u32,
        global_sha: row.try_get("global_sha")?,
        input_shape: serde_json::from_str(&shape).map_err(decode_err)?,
        classes: row.try_get::<i64, _>("classes")? as usize,
        normalization: row.try_get("normalization")?,
        validation_sha: row.try_get("validation_sha")?,
        train_samples: row.try_get::<i64, _>("train_samples")? as u64,
        validation_samples: row.try_get::<i64, _>("validation_samples")? as u64,
        round_started_at: row.try_get("round_started_at")?,
        error: row.try_get("error")?,
        created_at: row.try_get("created_at")?,
        creator: row.try_get("creator")?,
        round_replicas: {
            let text: String = row.try_get("round_replicas")?;
            serde_json::from_str(&text).map_err(decode_err)?
        },
    })
}

fn metrics_from_row(r: &AnyRow) -> Result<RoundMetrics, sqlx::Error> {
    Ok(RoundMetrics {
        round: r.try_get::<i64, _>("round")? as u32,
        loss: r.try_get("loss")?,
        accuracy: r.try_get("accuracy")?,
        train_loss: r.try_get("train_loss")?,
        updates: r.try_get::<i64, _>("updates")? as u32,
        seconds: r.try_get("seconds")?,
        train_seconds: r.try_get("train_seconds")?,
        aggregate_seconds: r.try_get("aggregate_seconds")?,
        disputed: r.try_get::<i64, _>("disputed")? as u32,
        no_work: r.try_get::<i64, _>("no_work")? as u32,
        epsilon: r.try_get("epsilon")?,
    })
}

/// Whether `e` is worth trying again: a deadlock or serialization failure
/// (PostgreSQL), or a busy database (SQLite).
fn is_transient(e: &sqlx::Error) -> bool {
    e.as_database_error()
        .and_then(|d| d.code())
        .is_some_and(|code| matches!(&*code, "40P01" | "40001" | "5" | "517"))
}

/// Awaits `attempt` again (up to four more times, backing off) while it
/// fails transiently; a transaction that failed was rolled back whole. (A
/// macro: a helper taking an async closure loses the futures' `Send`.)
macro_rules! retrying {
    ($attempt:expr) => {{
        let mut tries = 0u32;
        loop {
            match $attempt.await {
                Err(e) if tries < 4 && is_transient(&e) => {
                    tries += 1;
                    tokio::time::sleep(Duration::from_millis(5 << tries)).await;
                }
                result => break result,
            }
        }
    }};
}

/// The PostgreSQL channel on which changed jobs are announced (payload:
/// the job id).
pub const JOBS_CHANNEL: &str = "oblivion_jobs";

/// Statuses of a job that has not finished (it may be cancelled or failed
/// from them, and nothing of it is collected).
pub(super) const UNFINISHED: &str = "('funding', 'pending', 'running')";
/// Statuses of a job being trained (a paid job waiting for its deposit is
/// not).
const TRAINING: &str = "('pending', 'running')";

impl Db {
    /// Connects to `url` (creating an SQLite file if missing) and brings
    /// the schema up to date.
    pub async fn connect(url: &str, max_connections: u32) -> Result<Db, sqlx::Error> {
        sqlx::any::install_default_drivers();
        let backend = Backend::of(url).map_err(|e| sqlx::Error::Configuration(e.into()))?;
        let mut options = AnyPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(Duration::from_secs(30));
        let url = match backend {
            Backend::Sqlite => {
                options = options.after_connect(|conn, _| {
                    Box::pin(async move {
                        // WAL: readers never wait for the writer. NORMAL:
                        // a commit is in the log before it returns, so a
                        // killed process loses nothing committed; only a
                        // power cut may lose the last commits (SQLite's
                        // advice for WAL; fsync per commit would cap the
                        // coordinator at a few hundred changes a second).
                        conn.execute(
                            "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; \
                             PRAGMA busy_timeout = 10000;",
                        )
                        .await?;
                        Ok(())
                    })
                });
                if url.contains('?') {
                    url.to_string()
                } else {
                    format!("{url}?mode=rwc")
                }
            }
            Backend::Postgres => url.to_string(),
        };
        let pool = options.connect(&url).await?;
        migrations::run(&pool, backend).await?;
        Ok(Db { pool, backend })
    }

    /// Which database this is.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// `FOR SHARE` where the database has row locks: taken on a job's row
    /// by changes that depend on its status, so that a concurrent cancel
    /// (which updates the row) waits for them, and they for it.
    fn share_lock(&self) -> &'static str {
        match self.backend {
            Backend::Sqlite => "",
            Backend::Postgres => " FOR SHARE",
        }
    }

    /// Row-lock clause for a row a transaction is about to change, taken
    /// before it reads what the change depends on (nothing on SQLite,
    /// whose write transactions hold the whole database).
    fn update_lock(&self) -> &'static str {
        match self.backend {
            Backend::Sqlite => "",
            Backend::Postgres => " FOR UPDATE",
        }
    }

    /// Tells every instance listening (PostgreSQL's NOTIFY, delivered when
    /// the transaction commits) that `job` changed; nothing on SQLite,
    /// which one instance uses alone.
    pub(super) async fn notify(
        &self,
        tx: &mut Transaction<'static, Any>,
        job: u64,
    ) -> Result<(), sqlx::Error> {
        if self.backend == Backend::Postgres {
            sqlx::query("SELECT pg_notify($1, $2)")
                .bind(JOBS_CHANNEL)
                .bind(job.to_string())
                .execute(&mut **tx)
                .await?;
        }
        Ok(())
    }

    /// A transaction that will write. SQLite takes its write lock at once,
    /// so that two writers never deadlock upgrading from read to write.
    pub(super) async fn write(&self) -> Result<Transaction<'static, Any>, sqlx::Error> {
        match self.backend {
            Backend::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await,
            Backend::Postgres => self.pool.begin().await,
        }
    }

    /// Stores a new job and its shards; returns its id.
    pub async fn insert_job(
        &self,
        job: &JobRow,
        shards: &[(String, u64)],
    ) -> Result<u64, sqlx::Error> {
        self.insert_paid_job(job, shards, None).await
    }

    /// Stores a new job, its shards and, for a paid job, its payment row
    /// (whose escrow key depends on the id), in one transaction.
    pub async fn insert_paid_job(
        &self,
        job: &JobRow,
        shards: &[(String, u64)],
        payment: Option<&super::NewPayment<'_>>,
    ) -> Result<u64, sqlx::Error> {
        let mut tx = self.write().await?;
        let id: i64 = sqlx::query(
            "INSERT INTO jobs (name, spec, status, round, global_sha, input_shape, classes, \
             normalization, validation_sha, train_samples, validation_samples, round_started_at, \
             error, created_at, creator, visibility, round_slots, round_replicas) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, \
             $17, $18) RETURNING id",
        )
        .bind(&job.spec.name)
        .bind(serde_json::to_string(&job.spec).map_err(decode_err)?)
        .bind(job.status.as_str())
        .bind(i64::from(job.round))
        .bind(&job.global_sha)
        .bind(serde_json::to_string(&job.input_shape).map_err(decode_err)?)
        .bind(job.classes as i64)
        .bind(&job.normalization)
        .bind(&job.validation_sha)
        .bind(job.train_samples as i64)
        .bind(job.validation_samples as i64)
        .bind(job.round_started_at)
        .bind(&job.error)
        .bind(job.created_at)
        .bind(&job.creator)
        .bind(job.spec.visibility.as_str())
        .bind((shards.len() + job.round_replicas.len()) as i64)
        .bind(serde_json::to_string(&job.round_replicas).map_err(decode_err)?)
        .fetch_one(&mut *tx)
        .await?
        .try_get("id")?;
        for (i, (sha, samples)) in shards.iter().enumerate() {
            sqlx::query(
                "INSERT INTO job_shards (job_id, shard, data_sha, samples) VALUES ($1, $2, $3, $4)",
            )
            .bind(id)
            .bind(i as i64)
            .bind(sha)
            .bind(*samples as i64)
            .execute(&mut *tx)
            .await?;
        }
        if let Some(p) = payment {
            sqlx::query(
                "INSERT INTO payments (job_id, job_key, spec_hash, amount, state) \
                 VALUES ($1, $2, $3, $4, 'awaiting_deposit')",
            )
            .bind(id)
            .bind((p.job_key)(id as u64))
            .bind(p.spec_hash)
            .bind(p.amount)
            .execute(&mut *tx)
            .await?;
        }
        self.notify(&mut tx, id as u64).await?;
        tx.commit().await?;
        Ok(id as u64)
    }

    /// One job.
    pub async fn job(&self, id: u64) -> Result<Option<JobRow>, sqlx::Error> {
        sqlx::query("SELECT * FROM jobs WHERE id = $1")
            .bind(id as i64)
            .fetch_optional(&self.pool)
            .await?
            .as_ref()
            .map(job_from_row)
            .transpose()
    }

    /// All jobs, newest first.
    pub async fn jobs(&self) -> Result<Vec<JobRow>, sqlx::Error> {
        sqlx::query("SELECT * FROM jobs ORDER BY id DESC")
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(job_from_row)
            .collect()
    }

    /// Jobs still to train (pending or running), oldest first.
    pub async fn unfinished_jobs(&self) -> Result<Vec<JobRow>, sqlx::Error> {
        sqlx::query(&format!(
            "SELECT * FROM jobs WHERE status IN {TRAINING} ORDER BY id"
        ))
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(job_from_row)
        .collect()
    }

    /// Jobs submitted by `creator` that have not finished.
    pub async fn jobs_in_flight(&self, creator: &str) -> Result<u64, sqlx::Error> {
        let n: i64 = sqlx::query(&format!(
            "SELECT COUNT(*) AS n FROM jobs WHERE creator = $1 AND status IN {UNFINISHED}"
        ))
        .bind(creator)
        .fetch_one(&self.pool)
        .await?
        .try_get("n")?;
        Ok(n as u64)
    }

    /// Ends a job that has not finished: `Cancelled` (revoking its active
    /// leases) or `Failed` (with `error`), in one transaction. Refused when
    /// the job already finished, whatever raced with it.
    pub async fn finish_job(
        &self,
        id: u64,
        status: JobStatus,
        error: Option<&str>,
    ) -> Result<Result<(), JobRefusal>, sqlx::Error> {
        retrying!(self.finish_job_once(id, status, error))
    }

    /// One attempt of [`Db::finish_job`].
    async fn finish_job_once(
        &self,
        id: u64,
        status: JobStatus,
        error: Option<&str>,
    ) -> Result<Result<(), JobRefusal>, sqlx::Error> {
        let mut tx = self.write().await?;
        let changed = sqlx::query(&format!(
            "UPDATE jobs SET status = $2, error = COALESCE($3, error), \
             aggregation_claim = NULL, aggregation_claimed_at = NULL \
             WHERE id = $1 AND status IN {UNFINISHED}"
        ))
        .bind(id as i64)
        .bind(status.as_str())
        .bind(error)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if changed == 0 {
            let current = sqlx::query("SELECT status FROM jobs WHERE id = $1")
                .bind(id as i64)
                .fetch_optional(&mut *tx)
                .await?;
            return Ok(Err(match current {
                Some(row) => JobRefusal::State(status_of(&row.try_get::<String, _>("status")?)?),
                None => JobRefusal::Missing,
            }));
        }
        sqlx::query(
            "UPDATE leases SET status = 'revoked', reason = $2, ended_at = $3 \
             WHERE job_id = $1 AND status = 'active'",
        )
        .bind(id as i64)
        .bind(format!("job {}", status.as_str()))
        .bind(now())
        .execute(&mut *tx)
        .await?;
        self.notify(&mut tx, id).await?;
        tx.commit().await?;
        Ok(Ok(()))
    }

    /// Claims the aggregation of `job`'s `round` for `instance`: only one
    /// claimant wins, and a claim older than `stale_before` (its instance
    /// died) may be taken over.
    pub async fn claim_aggregation(
        &self,
        job: u64,
        round: u32,
        instance: &str,
        stale_before: f64,
    ) -> Result<bool, sqlx::Error> {
        let mut tx = self.write().await?;
        let claimed = sqlx::query(
            "UPDATE jobs SET aggregation_claim = $3, aggregation_claimed_at = $4 \
             WHERE id = $1 AND round = $2 AND status = 'running' \
             AND (aggregation_claim IS NULL OR aggregation_claimed_at < $5)",
        )
        .bind(job as i64)
        .bind(i64::from(round))
        .bind(instance)
        .bind(now())
        .bind(stale_before)
        .execute(&mut *tx)
        .await?
        .rows_affected()
            == 1;
        tx.commit().await?;
        Ok(claimed)
    }

    /// Gives up a claim (after a failed attempt), so another may take it.
    pub async fn release_aggregation(&self, job: u64, instance: &str) -> Result<(), sqlx::Error> {
        sqlx::query(
            "UPDATE jobs SET aggregation_claim = NULL, aggregation_claimed_at = NULL \
             WHERE id = $1 AND aggregation_claim = $2",
        )
        .bind(job as i64)
        .bind(instance)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Drops every aggregation claim (at start-up of the only instance that
    /// uses this database: the claimants died with the last process).
    pub async fn release_all_aggregations(&self) -> Result<u64, sqlx::Error> {
        Ok(sqlx::query(
            "UPDATE jobs SET aggregation_claim = NULL, aggregation_claimed_at = NULL \
             WHERE aggregation_claim IS NOT NULL",
        )
        .execute(&self.pool)
        .await?
        .rows_affected())
    }

    /// Records the aggregated round and moves the job on, in one
    /// transaction, if `instance` still holds the claim on this round of a
    /// running job. Returns whether it did.
    pub async fn finish_round(
        &self,
        id: u64,
        instance: &str,
        round: &RoundRow,
        next_round: u32,
        status: JobStatus,
        policy: &ReputationPolicy,
    ) -> Result<Option<Vec<Quarantined>>, sqlx::Error> {
        let m = &round.metrics;
        let mut tx = self.write().await?;
        let moved = sqlx::query(
            "UPDATE jobs SET round = $2, global_sha = $3, status = $4, round_started_at = $5, \
             aggregation_claim = NULL, aggregation_claimed_at = NULL, \
             round_slots = (SELECT COUNT(*) FROM job_shards WHERE job_id = $1) + $8, \
             round_replicas = $9 \
             WHERE id = $1 AND round = $6 AND status = 'running' AND aggregation_claim = $7",
        )
        .bind(id as i64)
        .bind(i64::from(next_round))
        .bind(&round.global_sha)
        .bind(status.as_str())
        .bind(now())
        .bind(i64::from(m.round))
        .bind(instance)
        .bind(round.next_replicas.len() as i64)
        .bind(serde_json::to_string(&round.next_replicas).map_err(decode_err)?)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if moved != 1 {
            return Ok(None);
        }
        sqlx::query(
            "INSERT INTO rounds (job_id, round, global_sha, loss, accuracy, train_loss, \
             updates, seconds, train_seconds, aggregate_seconds, disputed, no_work, epsilon) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
        )
        .bind(id as i64)
        .bind(i64::from(m.round))
        .bind(&round.global_sha)
        .bind(m.loss)
        .bind(m.accuracy)
        .bind(m.train_loss)
        .bind(i64::from(m.updates))
        .bind(m.seconds)
        .bind(m.train_seconds)
        .bind(m.aggregate_seconds)
        .bind(i64::from(m.disputed))
        .bind(i64::from(m.no_work))
        .bind(m.epsilon)
        .execute(&mut *tx)
        .await?;
        let quarantined = self
            .record_verdicts(&mut tx, id, m.round, &round.verdicts, policy, now())
            .await?;
        self.notify(&mut tx, id).await?;
        tx.commit().await?;
        Ok(Some(quarantined))
    }

    /// Finished rounds of a job, in order.
    pub async fn rounds(&self, job: u64) -> Result<Vec<RoundMetrics>, sqlx::Error> {
        sqlx::query("SELECT * FROM rounds WHERE job_id = $1 ORDER BY round")
            .bind(job as i64)
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(metrics_from_row)
            .collect()
    }

    /// Finished rounds of every job, by job (one query for the job list).
    pub async fn all_rounds(&self) -> Result<HashMap<u64, Vec<RoundMetrics>>, sqlx::Error> {
        let mut out: HashMap<u64, Vec<RoundMetrics>> = HashMap::new();
        for r in sqlx::query("SELECT * FROM rounds ORDER BY job_id, round")
            .fetch_all(&self.pool)
            .await?
        {
            let job = r.try_get::<i64, _>("job_id")? as u64;
            out.entry(job).or_default().push(metrics_from_row(&r)?);
        }
        Ok(out)
    }

    /// A job's data shards: (sha256, samples) by index.
    pub async fn job_shards(&self, job: u64) -> Result<Vec<(String, u64)>, sqlx::Error> {
        sqlx::query("SELECT data_sha, samples FROM job_shards WHERE job_id = $1 ORDER BY shard")
            .bind(job as i64)
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(|r| {
                Ok((
                    r.try_get("data_sha")?,
                    r.try_get::<i64, _>("samples")? as u64,
                ))
            })
            .collect()
    }

    /// Sets `job`'s `round` replica slots to `replicas` (adding a third
    /// opinion when two disagree), while `instance` holds its aggregation
    /// claim, and releases the claim: the round is incomplete again. False
    /// when the claim or the round moved on.
    pub async fn add_replica(
        &self,
        job: u64,
        round: u32,
        instance: &str,
        replicas: &[u32],
    ) -> Result<bool, sqlx::Error> {
        let mut tx = self.write().await?;
        let done = sqlx::query(
            "UPDATE jobs SET round_slots = (SELECT COUNT(*) FROM job_shards WHERE job_id = $1) + $4, \
             round_replicas = $5, aggregation_claim = NULL, aggregation_claimed_at = NULL \
             WHERE id = $1 AND round = $2 AND status = 'running' AND aggregation_claim = $3",
        )
        .bind(job as i64)
        .bind(i64::from(round))
        .bind(instance)
        .bind(replicas.len() as i64)
        .bind(serde_json::to_string(replicas).map_err(decode_err)?)
        .execute(&mut *tx)
        .await?
        .rows_affected()
            == 1;
        if done {
            self.notify(&mut tx, job).await?;
        }
        tx.commit().await?;
        Ok(done)
    }

    /// Closes `job`'s `round` on its quorum when at least `needed` of its
    /// slots have an update: the round then counts exactly those (its
    /// `round_slots`, so it is complete and takes no more leases or
    /// updates), and the leases still out are revoked. One transaction;
    /// whether it closed the round.
    pub async fn close_round_on_quorum(
        &self,
        job: u64,
        round: u32,
        needed: u32,
    ) -> Result<bool, sqlx::Error> {
        retrying!(self.close_round_on_quorum_once(job, round, needed))
    }

    async fn close_round_on_quorum_once(
        &self,
        job: u64,
        round: u32,
        needed: u32,
    ) -> Result<bool, sqlx::Error> {
        let mut tx = self.write().await?;
        // The job row first, locked on PostgreSQL: an update being accepted
        // (which holds it shared) commits before the count below is read.
        let running = sqlx::query(&format!(
            "SELECT 1 AS ok FROM jobs WHERE id = $1 AND round = $2 AND status = 'running'{}",
            self.update_lock()
        ))
        .bind(job as i64)
        .bind(i64::from(round))
        .fetch_optional(&mut *tx)
        .await?;
        if running.is_none() {
            return Ok(false);
        }
        let closed = sqlx::query(
            "UPDATE jobs SET round_slots = \
             (SELECT COUNT(*) FROM updates WHERE job_id = $1 AND round = $2) \
             WHERE id = $1 AND round = $2 AND status = 'running' \
             AND (SELECT COUNT(*) FROM updates WHERE job_id = $1 AND round = $2) \
             BETWEEN $3 AND round_slots - 1",
        )
        .bind(job as i64)
        .bind(i64::from(round))
        .bind(i64::from(needed))
        .execute(&mut *tx)
        .await?
        .rows_affected()
            == 1;
        if !closed {
            return Ok(false);
        }
        sqlx::query(
            "UPDATE leases SET status = 'revoked', reason = 'the round closed on its quorum', \
             ended_at = $3 WHERE job_id = $1 AND round = $2 AND status = 'active'",
        )
        .bind(job as i64)
        .bind(i64::from(round))
        .bind(now())
        .execute(&mut *tx)
        .await?;
        self.notify(&mut tx, job).await?;
        tx.commit().await?;
        Ok(true)
    }

    /// How many slots the job's current round counts: its shards and
    /// replicas, or the updates it closed on (a quorum).
    pub async fn round_slots(&self, job: u64) -> Result<u32, sqlx::Error> {
        let row = sqlx::query("SELECT round_slots FROM jobs WHERE id = $1")
            .bind(job as i64)
            .fetch_one(&self.pool)
            .await?;
        Ok(row
            .try_get::<i64, _>("round_slots")?
            .clamp(0, i64::from(u32::MAX)) as u32)
    }

    /// Records planned leases, each only if its job is still unfinished in
    /// that round and its slot has neither an update nor an active lease
    /// of the same kind (a slot may have one lease and one backup lease),
    /// and a backup only to a worker whose identity (its account, else
    /// its connection) holds none in that round and won none (one hub plans a
    /// connection's leases, one batch at a time; two connections of one
    /// account on two instances could race to one backup each, at most);
    /// a job's first lease moves it to running. One transaction.
    pub async fn grant_leases(
        &self,
        grants: &[Grant],
        instance: &str,
    ) -> Result<Vec<Granted>, sqlx::Error> {
        retrying!(self.grant_leases_once(grants, instance))
    }

    /// One attempt of [`Db::grant_leases`].
    async fn grant_leases_once(
        &self,
        grants: &[Grant],
        instance: &str,
    ) -> Result<Vec<Granted>, sqlx::Error> {
        let mut tx = self.write().await?;
        let mut jobs: Vec<u64> = grants.iter().map(|g| g.job).collect();
        jobs.sort_unstable();
        jobs.dedup();
        if self.backend == Backend::Postgres {
            for job in jobs {
                sqlx::query(&format!(
                    "SELECT 1 AS ok FROM jobs WHERE id = $1{}",
                    self.share_lock()
                ))
                .bind(job as i64)
                .fetch_optional(&mut *tx)
                .await?;
            }
        }
        let mut granted = Vec::with_capacity(grants.len());
        let issued_at = now();
        for g in grants {
            let row = sqlx::query(&format!(
                "INSERT INTO leases (job_id, round, shard, worker_id, status, issued_at, instance, base, \
                 backup) \
                 SELECT $1, $2, $3, $4, 'active', $5, $6, $7, $8 \
                 WHERE EXISTS (SELECT 1 FROM jobs WHERE id = $1 AND round = $2 \
                               AND status IN {TRAINING} AND round_slots > \
                               (SELECT COUNT(*) FROM updates WHERE job_id = $1 AND round = $2)) \
                 AND NOT EXISTS (SELECT 1 FROM updates WHERE job_id = $1 AND round = $2 \
                                 AND shard = $3) \
                 AND ($8 = 0 OR NOT EXISTS (SELECT 1 FROM leases l JOIN workers w \
                                            ON w.id = l.worker_id \
                                            WHERE l.job_id = $1 AND l.round = $2 \
                                            AND l.backup = 1 \
                                            AND l.status IN ('active', 'completed') \
                                            AND {IDENTITY} = \
                                            (SELECT {IDENTITY} FROM workers w WHERE w.id = $4))) \
                 ON CONFLICT DO NOTHING RETURNING id"
            ))
            .bind(g.job as i64)
            .bind(i64::from(g.round))
            .bind(i64::from(g.shard))
            .bind(g.worker as i64)
            .bind(issued_at)
            .bind(instance)
            .bind(i64::from(g.base))
            .bind(i64::from(g.backup))
            .fetch_optional(&mut *tx)
            .await?;
            let Some(row) = row else { continue };
            let id: i64 = row.try_get("id")?;
            let started = sqlx::query(
                "UPDATE jobs SET status = 'running' WHERE id = $1 AND status = 'pending'",
            )
            .bind(g.job as i64)
            .execute(&mut *tx)
            .await?
            .rows_affected()
                == 1;
            granted.push(Granted {
                grant: *g,
                id: id as u64,
                started_job: started,
            });
        }
        let mut changed: Vec<u64> = granted.iter().map(|g| g.grant.job).collect();
        changed.sort_unstable();
        changed.dedup();
        for job in changed {
            self.notify(&mut tx, job).await?;
        }
        tx.commit().await?;
        Ok(granted)
    }

    /// Ends active leases without an update, counting lost and rejected
    /// ones against their workers. Returns how many it ended.
    pub async fn end_leases(
        &self,
        ended: &[(u64, LeaseStatus)],
        reason: &str,
    ) -> Result<u64, sqlx::Error> {
        retrying!(self.end_leases_once(ended, reason))
    }

    /// One attempt of [`Db::end_leases`].
    async fn end_leases_once(
        &self,
        ended: &[(u64, LeaseStatus)],
        reason: &str,
    ) -> Result<u64, sqlx::Error> {
        if ended.is_empty() {
            return Ok(0);
        }
        let mut tx = self.write().await?;
        let mut count = 0;
        let mut changed = Vec::new();
        let at = now();
        for &(id, status) in ended {
            let worker = sqlx::query(
                "UPDATE leases SET status = $2, reason = $3, ended_at = $4 \
                 WHERE id = $1 AND status = 'active' RETURNING worker_id, job_id",
            )
            .bind(id as i64)
            .bind(status.as_str())
            .bind(reason)
            .bind(at)
            .fetch_optional(&mut *tx)
            .await?;
            let Some(worker) = worker else { continue };
            count += 1;
            changed.push(worker.try_get::<i64, _>("job_id")? as u64);
            let counter = match status {
                LeaseStatus::Rejected => "rejected",
                s if s.is_lost() => "lost",
                _ => continue,
            };
            sqlx::query(&format!(
                "UPDATE workers SET {counter} = {counter} + 1 WHERE id = $1"
            ))
            .bind(worker.try_get::<i64, _>("worker_id")?)
            .execute(&mut *tx)
            .await?;
        }
        changed.sort_unstable();
        changed.dedup();
        for job in changed {
            self.notify(&mut tx, job).await?;
        }
        tx.commit().await?;
        Ok(count)
    }

    /// Marks every lease still active as ended (at start-up of the only
    /// instance using this database: its workers' connections died with
    /// the previous process).
    pub async fn end_all_active_leases(&self, reason: &str) -> Result<u64, sqlx::Error> {
        Ok(sqlx::query(
            "UPDATE leases SET status = 'disconnected', reason = $1, ended_at = $2 \
             WHERE status = 'active'",
        )
        .bind(reason)
        .bind(now())
        .execute(&self.pool)
        .await?
        .rows_affected())
    }

    /// Records this instance as alive.
    pub async fn register_instance(&self, id: &str) -> Result<(), sqlx::Error> {
        sqlx::query("INSERT INTO instances (id, started_at, seen_at) VALUES ($1, $2, $2)")
            .bind(id)
            .bind(now())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Records that this instance is still alive.
    pub async fn instance_seen(&self, id: &str) -> Result<(), sqlx::Error> {
        sqlx::query("UPDATE instances SET seen_at = $2 WHERE id = $1")
            .bind(id)
            .bind(now())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Ends the active leases and releases the aggregation claims of
    /// instances not seen since `stale_before` (they died), and forgets
    /// those instances. Returns the jobs whose leases or claims changed.
    pub async fn reap_instances(&self, stale_before: f64) -> Result<Vec<u64>, sqlx::Error> {
        retrying!(self.reap_instances_once(stale_before))
    }

    async fn reap_instances_once(&self, stale_before: f64) -> Result<Vec<u64>, sqlx::Error> {
        const DEAD: &str = "NOT IN (SELECT id FROM instances WHERE seen_at >= $1)";
        let mut tx = self.write().await?;
        let mut rows = sqlx::query(&format!(
            "UPDATE leases SET status = 'disconnected', \
             reason = 'its coordinator instance stopped', ended_at = $2 \
             WHERE status = 'active' AND (instance IS NULL OR instance {DEAD}) RETURNING job_id"
        ))
        .bind(stale_before)
        .bind(now())
        .fetch_all(&mut *tx)
        .await?;
        rows.extend(
            sqlx::query(&format!(
                "UPDATE jobs SET aggregation_claim = NULL, aggregation_claimed_at = NULL \
                 WHERE aggregation_claim IS NOT NULL AND aggregation_claim {DEAD} \
                 RETURNING id AS job_id"
            ))
            .bind(stale_before)
            .fetch_all(&mut *tx)
            .await?,
        );
        let mut jobs = rows
            .iter()
            .map(|r| r.try_get::<i64, _>("job_id").map(|id| id as u64))
            .collect::<Result<Vec<u64>, _>>()?;
        sqlx::query("DELETE FROM instances WHERE seen_at < $1")
            .bind(stale_before)
            .execute(&mut *tx)
            .await?;
        jobs.sort_unstable();
        jobs.dedup();
        for &job in &jobs {
            self.notify(&mut tx, job).await?;
        }
        tx.commit().await?;
        Ok(jobs)
    }

    /// Records an accepted update, completing its lease and crediting its
    /// worker, in one transaction; only while the lease is active, its job
    /// runs that round, and the shard has no update yet. Returns whether
    /// the round now has an update for every shard.
    pub async fn accept_update(
        &self,
        job: u64,
        round: u32,
        u: &UpdateRow,
    ) -> Result<Result<bool, UpdateRefusal>, sqlx::Error> {
        retrying!(self.accept_update_once(job, round, u))
    }

    /// One attempt of [`Db::accept_update`].
    async fn accept_update_once(
        &self,
        job: u64,
        round: u32,
        u: &UpdateRow,
    ) -> Result<Result<bool, UpdateRefusal>, sqlx::Error> {
        let mut tx = self.write().await?;
        // The job row first (locked on PostgreSQL, so that a cancel waits
        // for this commit, and in the same order as a cancel takes them).
        // A round closed on its quorum takes no more updates.
        let current = sqlx::query(&format!(
            "SELECT 1 AS ok FROM jobs WHERE id = $1 AND round = $2 AND status = 'running' \
             AND round_slots > (SELECT COUNT(*) FROM updates WHERE job_id = $1 AND round = $2){}",
            self.share_lock()
        ))
        .bind(job as i64)
        .bind(i64::from(round))
        .fetch_optional(&mut *tx)
        .await?;
        if current.is_none() {
            return Ok(Err(UpdateRefusal::JobMovedOn));
        }
        if let Some(reason) = self.quarantine_of(&mut tx, u.worker_id).await? {
            return Ok(Err(UpdateRefusal::Quarantined(reason)));
        }
        let completed = sqlx::query(
            "UPDATE leases SET status = 'completed', ended_at = $2 \
             WHERE id = $1 AND worker_id = $3 AND job_id = $4 AND round = $5 AND shard = $6 \
             AND status = 'active'",
        )
        .bind(u.lease_id as i64)
        .bind(now())
        .bind(u.worker_id as i64)
        .bind(job as i64)
        .bind(i64::from(round))
        .bind(i64::from(u.shard))
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if completed != 1 {
            return Ok(Err(UpdateRefusal::LeaseNotActive));
        }
        let inserted = sqlx::query(
            "INSERT INTO updates (job_id, round, shard, lease_id, worker_id, update_sha, \
             samples, train_loss, norm, train_millis, accepted_at, verdict) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, 'pending') ON CONFLICT DO NOTHING",
        )
        .bind(job as i64)
        .bind(i64::from(round))
        .bind(i64::from(u.shard))
        .bind(u.lease_id as i64)
        .bind(u.worker_id as i64)
        .bind(&u.update_sha)
        .bind(u.samples as i64)
        .bind(u.train_loss)
        .bind(u.norm)
        .bind(u.train_millis as i64)
        .bind(u.accepted_at)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if inserted != 1 {
            return Ok(Err(UpdateRefusal::Duplicate));
        }
        // The first valid update for a slot wins: a backup lease on it (or
        // the lease it backed up) ends here, with the update.
        sqlx::query(
            "UPDATE leases SET status = 'revoked', ended_at = $5, \
             reason = 'another worker''s update for the shard came first' \
             WHERE job_id = $1 AND round = $2 AND shard = $3 AND id <> $4 AND status = 'active'",
        )
        .bind(job as i64)
        .bind(i64::from(round))
        .bind(i64::from(u.shard))
        .bind(u.lease_id as i64)
        .bind(now())
        .execute(&mut *tx)
        .await?;
        // Its samples are credited once its round verifies it.
        sqlx::query("UPDATE workers SET accepted = accepted + 1 WHERE id = $1")
            .bind(u.worker_id as i64)
            .execute(&mut *tx)
            .await?;
        let complete: i64 = sqlx::query(
            "SELECT CAST(CASE WHEN (SELECT COUNT(*) FROM updates WHERE job_id = $1 AND round = $2) \
             = (SELECT round_slots FROM jobs WHERE id = $1) THEN 1 ELSE 0 END AS BIGINT) AS done",
        )
        .bind(job as i64)
        .bind(i64::from(round))
        .fetch_one(&mut *tx)
        .await?
        .try_get("done")?;
        self.notify(&mut tx, job).await?;
        tx.commit().await?;
        Ok(Ok(complete == 1))
    }

    /// The identities (their accounts, else their connections) holding a
    /// backup lease in `job`'s `round`, or whose backup won its slot (one
    /// each a round: see `grant_leases`).
    pub async fn round_backup_identities(
        &self,
        job: u64,
        round: u32,
    ) -> Result<Vec<String>, sqlx::Error> {
        sqlx::query(&format!(
            "SELECT DISTINCT {IDENTITY} AS identity FROM leases l JOIN workers w \
             ON w.id = l.worker_id \
             WHERE l.job_id = $1 AND l.round = $2 AND l.backup = 1 \
             AND l.status IN ('active', 'completed') ORDER BY identity"
        ))
        .bind(job as i64)
        .bind(i64::from(round))
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(|r| r.try_get::<String, _>("identity"))
        .collect()
    }

    /// Accepted updates of one round, by shard.
    pub async fn round_updates(&self, job: u64, round: u32) -> Result<Vec<UpdateRow>, sqlx::Error> {
        sqlx::query("SELECT * FROM updates WHERE job_id = $1 AND round = $2 ORDER BY shard")
            .bind(job as i64)
            .bind(i64::from(round))
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(|r| {
                Ok(UpdateRow {
                    shard: r.try_get::<i64, _>("shard")? as u32,
                    worker_id: r.try_get::<i64, _>("worker_id")? as u64,
                    lease_id: r.try_get::<i64, _>("lease_id")? as u64,
                    update_sha: r.try_get("update_sha")?,
                    samples: r.try_get::<i64, _>("samples")? as u64,
                    train_loss: r.try_get("train_loss")?,
                    norm: r.try_get("norm")?,
                    train_millis: r.try_get::<i64, _>("train_millis")? as u64,
                    accepted_at: r.try_get("accepted_at")?,
                })
            })
            .collect()
    }

    /// Every status a job has had, oldest first (`None` before creation).
    pub async fn transitions(
        &self,
        job: u64,
    ) -> Result<Vec<(Option<JobStatus>, JobStatus)>, sqlx::Error> {
        sqlx::query(
            "SELECT from_status, to_status FROM job_transitions WHERE job_id = $1 ORDER BY id",
        )
        .bind(job as i64)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(|r| {
            let from: Option<String> = r.try_get("from_status")?;
            let to: String = r.try_get("to_status")?;
            Ok((from.as_deref().map(status_of).transpose()?, status_of(&to)?))
        })
        .collect()
    }

    /// Workers whose updates to `job` were accepted, most samples credited
    /// (verified) first.
    pub async fn contributors(&self, job: u64) -> Result<Vec<Contributor>, sqlx::Error> {
        sqlx::query(
            "SELECT u.worker_id AS id, w.name AS name, w.client AS client, w.device AS device, \
             COUNT(*) AS updates, \
             CAST(SUM(CASE WHEN u.verdict = 'verified' THEN u.samples ELSE 0 END) AS BIGINT) AS samples \
             FROM updates u JOIN workers w ON w.id = u.worker_id WHERE u.job_id = $1 \
             GROUP BY u.worker_id, w.name, w.client, w.device ORDER BY samples DESC, id",
        )
        .bind(job as i64)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(|r| {
            let client: String = r.try_get("client")?;
            let device: String = r.try_get("device")?;
            let device: Option<DeviceInfo> = serde_json::from_str(&device).ok();
            Ok(Contributor {
                worker_id: r.try_get::<i64, _>("id")? as u64,
                name: r.try_get("name")?,
                client: serde_json::from_str(&client).unwrap_or(ClientKind::Native),
                backend: device.map(|d| d.backend).unwrap_or_default(),
                updates: r.try_get::<i64, _>("updates")? as u64,
                samples: r.try_get::<i64, _>("samples")? as u64,
            })
        })
        .collect()
    }

    /// Where a round stands in the database: the shards with an accepted
    /// update (shard, worker), and the active leases (shard, worker,
    /// granting instance).
    pub async fn round_state(
        &self,
        job: u64,
        round: u32,
    ) -> Result<(Vec<(u32, u64)>, Vec<(u32, u64, String)>), sqlx::Error> {
        let done =
            sqlx::query("SELECT shard, worker_id FROM updates WHERE job_id = $1 AND round = $2")
                .bind(job as i64)
                .bind(i64::from(round))
                .fetch_all(&self.pool)
                .await?
                .iter()
                .map(|r| {
                    Ok((
                        r.try_get::<i64, _>("shard")? as u32,
                        r.try_get::<i64, _>("worker_id")? as u64,
                    ))
                })
                .collect::<Result<Vec<_>, sqlx::Error>>()?;
        let leased = sqlx::query(
            "SELECT shard, worker_id, COALESCE(instance, '') AS instance FROM leases \
             WHERE job_id = $1 AND round = $2 AND status = 'active'",
        )
        .bind(job as i64)
        .bind(i64::from(round))
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(|r| {
            Ok((
                r.try_get::<i64, _>("shard")? as u32,
                r.try_get::<i64, _>("worker_id")? as u64,
                r.try_get::<String, _>("instance")?,
            ))
        })
        .collect::<Result<Vec<_>, sqlx::Error>>()?;
        Ok((done, leased))
    }

    /// The active lease `lease` if the worker whose token hashes to
    /// `token_hash` holds it (granted by any instance): (job, round, shard,
    /// worker).
    pub async fn held_lease(
        &self,
        lease: u64,
        token_hash: &str,
    ) -> Result<Option<(u64, u32, u32, u64)>, sqlx::Error> {
        sqlx::query(
            "SELECT l.job_id, l.round, l.shard, l.worker_id FROM leases l \
             JOIN workers w ON w.id = l.worker_id \
             WHERE l.id = $1 AND l.status = 'active' AND w.token_hash = $2",
        )
        .bind(lease as i64)
        .bind(token_hash)
        .fetch_optional(&self.pool)
        .await?
        .map(|r| {
            Ok((
                r.try_get::<i64, _>("job_id")? as u64,
                r.try_get::<i64, _>("round")? as u32,
                r.try_get::<i64, _>("shard")? as u32,
                r.try_get::<i64, _>("worker_id")? as u64,
            ))
        })
        .transpose()
    }

    /// Publishes the workers connected to `instance` (JSON), for the others.
    pub async fn publish_workers(&self, instance: &str, workers: &str) -> Result<(), sqlx::Error> {
        sqlx::query("UPDATE instances SET workers = $2 WHERE id = $1")
            .bind(instance)
            .bind(workers)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// The workers other live instances published (JSON each).
    pub async fn other_instances_workers(
        &self,
        instance: &str,
        stale_before: f64,
    ) -> Result<Vec<String>, sqlx::Error> {
        sqlx::query(
            "SELECT workers FROM instances WHERE id <> $1 AND seen_at >= $2 \
             AND workers IS NOT NULL",
        )
        .bind(instance)
        .bind(stale_before)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(|r| r.try_get("workers"))
        .collect()
    }

    /// Updates of aggregated rounds whose blobs are still to collect:
    /// (job, round, shard, sha), at most `limit`.
    pub async fn collectable_updates(
        &self,
        limit: u32,
    ) -> Result<Vec<(u64, u32, u32, String)>, sqlx::Error> {
        sqlx::query(
            "SELECT u.job_id, u.round, u.shard, u.update_sha FROM updates u \
             WHERE u.collected = 0 AND EXISTS \
             (SELECT 1 FROM rounds r WHERE r.job_id = u.job_id AND r.round = u.round) \
             ORDER BY u.job_id, u.round, u.shard LIMIT $1",
        )
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(|r| {
            Ok((
                r.try_get::<i64, _>("job_id")? as u64,
                r.try_get::<i64, _>("round")? as u32,
                r.try_get::<i64, _>("shard")? as u32,
                r.try_get("update_sha")?,
            ))
        })
        .collect()
    }

    /// Marks an update's blob collected.
    pub async fn update_collected(
        &self,
        job: u64,
        round: u32,
        shard: u32,
    ) -> Result<(), sqlx::Error> {
        sqlx::query(
            "UPDATE updates SET collected = 1 WHERE job_id = $1 AND round = $2 AND shard = $3",
        )
        .bind(job as i64)
        .bind(i64::from(round))
        .bind(i64::from(shard))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Finished jobs whose artifacts are still to collect, with the blobs
    /// they no longer need: data shards, the validation split, every
    /// update, and the weights of all but their last `keep_rounds` rounds
    /// (their current model stays).
    pub async fn collectable_jobs(
        &self,
        keep_rounds: u32,
        limit: u32,
    ) -> Result<Vec<(u64, Vec<String>)>, sqlx::Error> {
        let ids: Vec<(i64, String)> = sqlx::query(&format!(
            "SELECT id, validation_sha FROM jobs WHERE status NOT IN {UNFINISHED} \
             AND collected_at IS NULL ORDER BY id LIMIT $1"
        ))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(|r| Ok((r.try_get("id")?, r.try_get("validation_sha")?)))
        .collect::<Result<_, sqlx::Error>>()?;
        let mut out = Vec::with_capacity(ids.len());
        for (id, validation) in ids {
            let mut shas = vec![validation];
            for r in sqlx::query(
                "SELECT data_sha AS sha FROM job_shards WHERE job_id = $1 \
                 UNION SELECT update_sha AS sha FROM updates WHERE job_id = $1 \
                 UNION SELECT global_sha AS sha FROM rounds WHERE job_id = $1 AND round <= \
                 (SELECT COALESCE(MAX(round), 0) FROM rounds WHERE job_id = $1) - $2",
            )
            .bind(id)
            .bind(i64::from(keep_rounds))
            .fetch_all(&self.pool)
            .await?
            {
                shas.push(r.try_get("sha")?);
            }
            out.push((id as u64, shas));
        }
        Ok(out)
    }

    /// Marks a finished job's artifacts collected.
    pub async fn job_collected(&self, job: u64) -> Result<(), sqlx::Error> {
        sqlx::query("UPDATE jobs SET collected_at = $2 WHERE id = $1")
            .bind(job as i64)
            .bind(now())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Whether anything still needs the blob `sha`: an unfinished job's
    /// shards, validation split or round weights, any job's current
    /// model, the kept round weights of a finished job, or an update of a
    /// round not yet aggregated.
    pub async fn is_referenced(&self, sha: &str, keep_rounds: u32) -> Result<bool, sqlx::Error> {
        let row = sqlx::query(&format!(
            "SELECT CAST(CASE WHEN \
             EXISTS (SELECT 1 FROM job_shards s JOIN jobs j ON j.id = s.job_id \
                     WHERE s.data_sha = $1 AND j.status IN {UNFINISHED}) \
             OR EXISTS (SELECT 1 FROM jobs WHERE global_sha = $1) \
             OR EXISTS (SELECT 1 FROM jobs WHERE validation_sha = $1 AND status IN {UNFINISHED}) \
             OR EXISTS (SELECT 1 FROM rounds r JOIN jobs j ON j.id = r.job_id \
                        WHERE r.global_sha = $1 AND (j.status IN {UNFINISHED} OR r.round > \
                        (SELECT MAX(round) FROM rounds WHERE job_id = j.id) - $2)) \
             OR EXISTS (SELECT 1 FROM updates u WHERE u.update_sha = $1 AND u.collected = 0 \
                        AND NOT EXISTS (SELECT 1 FROM rounds r \
                                        WHERE r.job_id = u.job_id AND r.round = u.round)) \
             THEN 1 ELSE 0 END AS BIGINT) AS used"
        ))
        .bind(sha)
        .bind(i64::from(keep_rounds))
        .fetch_one(&self.pool)
        .await?;
        Ok(row.try_get::<i64, _>("used")? == 1)
    }

    /// Deletes the row of a worker that never held a lease, once it is
    /// gone: a connection that never worked leaves nothing behind, however
    /// often it comes.
    pub async fn forget_idle_worker(&self, id: u64) -> Result<bool, sqlx::Error> {
        Ok(sqlx::query(
            "DELETE FROM workers WHERE id = $1 \
             AND NOT EXISTS (SELECT 1 FROM leases WHERE worker_id = $1)",
        )
        .bind(id as i64)
        .execute(&self.pool)
        .await?
        .rows_affected()
            == 1)
    }

    /// Records a newly connected worker; returns its id (never reused).
    pub async fn insert_worker(
        &self,
        w: &WorkerView,
        payout: Option<&str>,
        token_hash: &str,
        instance: &str,
    ) -> Result<u64, sqlx::Error> {
        let id: i64 = sqlx::query(
            "INSERT INTO workers (name, client, device, benchmark, payout_address, connected_at, \
             token_hash, instance) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id",
        )
        .bind(&w.name)
        .bind(serde_json::to_string(&w.client).map_err(decode_err)?)
        .bind(serde_json::to_string(&w.device).map_err(decode_err)?)
        .bind(w.benchmark)
        .bind(payout)
        .bind(now())
        .bind(token_hash)
        .bind(instance)
        .fetch_one(&self.pool)
        .await?
        .try_get("id")?;
        Ok(id as u64)
    }
}

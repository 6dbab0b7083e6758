//! The embedded database (SQLite through sqlx): the durable record of jobs,
//! rounds, shards, leases, updates and workers, from which a restarted
//! coordinator resumes every job where it was.

use std::path::Path;
use std::str::FromStr;

use oblivion_protocol::JobSpec;
use oblivion_protocol::api::{JobStatus, RoundMetrics};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions};
use sqlx::{Row, SqlitePool};

const SCHEMA: &str = include_str!("schema.sql");

/// Seconds since the Unix epoch, with fractions.
pub fn now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or_default()
}

/// Handle on the database.
#[derive(Clone, Debug)]
pub struct Db {
    pool: SqlitePool,
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
}

/// A finished round as stored.
#[derive(Clone, Debug)]
pub struct RoundRow {
    /// Metrics.
    pub metrics: RoundMetrics,
    /// Weights after the round.
    pub global_sha: String,
}

fn job_from_row(row: &sqlx::sqlite::SqliteRow) -> Result<JobRow, sqlx::Error> {
    let decode = |e: serde_json::Error| sqlx::Error::Decode(Box::new(e));
    let spec: String = row.try_get("spec")?;
    let status: String = row.try_get("status")?;
    let shape: String = row.try_get("input_shape")?;
    Ok(JobRow {
        id: row.try_get::<i64, _>("id")? as u64,
        spec: serde_json::from_str(&spec).map_err(decode)?,
        status: JobStatus::parse(&status)
            .ok_or_else(|| sqlx::Error::Decode(format!("bad status {status}").into()))?,
        round: row.try_get::<i64, _>("round")? as u32,
        global_sha: row.try_get("global_sha")?,
        input_shape: serde_json::from_str(&shape).map_err(decode)?,
        classes: row.try_get::<i64, _>("classes")? as usize,
        normalization: row.try_get("normalization")?,
        validation_sha: row.try_get("validation_sha")?,
        train_samples: row.try_get::<i64, _>("train_samples")? as u64,
        validation_samples: row.try_get::<i64, _>("validation_samples")? as u64,
        round_started_at: row.try_get("round_started_at")?,
        error: row.try_get("error")?,
        created_at: row.try_get("created_at")?,
    })
}

impl Db {
    /// Opens (creating) the database file and its tables.
    pub async fn open(path: &Path) -> Result<Db, sqlx::Error> {
        let options = SqliteConnectOptions::from_str(&format!("sqlite://{}", path.display()))?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .busy_timeout(std::time::Duration::from_secs(10));
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options)
            .await?;
        sqlx::raw_sql(SCHEMA).execute(&pool).await?;
        Ok(Db { pool })
    }

    /// Stores a new job and its shards; returns its id.
    pub async fn insert_job(
        &self,
        job: &JobRow,
        shards: &[(String, u64)],
    ) -> Result<u64, sqlx::Error> {
        let mut tx = self.pool.begin().await?;
        let id = sqlx::query(
            "INSERT INTO jobs (name, spec, status, round, global_sha, input_shape, classes, \
             normalization, validation_sha, train_samples, validation_samples, round_started_at, \
             error, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&job.spec.name)
        .bind(serde_json::to_string(&job.spec).unwrap_or_default())
        .bind(job.status.as_str())
        .bind(i64::from(job.round))
        .bind(&job.global_sha)
        .bind(serde_json::to_string(&job.input_shape).unwrap_or_default())
        .bind(job.classes as i64)
        .bind(&job.normalization)
        .bind(&job.validation_sha)
        .bind(job.train_samples as i64)
        .bind(job.validation_samples as i64)
        .bind(job.round_started_at)
        .bind(&job.error)
        .bind(job.created_at)
        .execute(&mut *tx)
        .await?
        .last_insert_rowid() as u64;
        for (i, (sha, samples)) in shards.iter().enumerate() {
            sqlx::query(
                "INSERT INTO job_shards (job_id, shard, data_sha, samples) VALUES (?, ?, ?, ?)",
            )
            .bind(id as i64)
            .bind(i as i64)
            .bind(sha)
            .bind(*samples as i64)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(id)
    }

    /// One job.
    pub async fn job(&self, id: u64) -> Result<Option<JobRow>, sqlx::Error> {
        sqlx::query("SELECT * FROM jobs WHERE id = ?")
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

    /// Sets a job's status (and error).
    pub async fn set_status(
        &self,
        id: u64,
        status: JobStatus,
        error: Option<&str>,
    ) -> Result<(), sqlx::Error> {
        sqlx::query("UPDATE jobs SET status = ?, error = COALESCE(?, error) WHERE id = ?")
            .bind(status.as_str())
            .bind(error)
            .bind(id as i64)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Records a finished round and moves the job on, atomically.
    pub async fn finish_round(
        &self,
        id: u64,
        round: &RoundRow,
        next_round: u32,
        status: JobStatus,
    ) -> Result<(), sqlx::Error> {
        let m = &round.metrics;
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT OR REPLACE INTO rounds (job_id, round, global_sha, loss, accuracy, train_loss, \
             updates, seconds, train_seconds, aggregate_seconds) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
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
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "UPDATE jobs SET round = ?, global_sha = ?, status = ?, round_started_at = ? WHERE id = ?",
        )
        .bind(i64::from(next_round))
        .bind(&round.global_sha)
        .bind(status.as_str())
        .bind(now())
        .bind(id as i64)
        .execute(&mut *tx)
        .await?;
        tx.commit().await
    }

    /// Finished rounds of a job, in order.
    pub async fn rounds(&self, job: u64) -> Result<Vec<RoundMetrics>, sqlx::Error> {
        let rows = sqlx::query("SELECT * FROM rounds WHERE job_id = ? ORDER BY round")
            .bind(job as i64)
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| {
                Ok(RoundMetrics {
                    round: r.try_get::<i64, _>("round")? as u32,
                    loss: r.try_get("loss")?,
                    accuracy: r.try_get("accuracy")?,
                    train_loss: r.try_get("train_loss")?,
                    updates: r.try_get::<i64, _>("updates")? as u32,
                    seconds: r.try_get("seconds")?,
                    train_seconds: r.try_get("train_seconds")?,
                    aggregate_seconds: r.try_get("aggregate_seconds")?,
                })
            })
            .collect()
    }

    /// A job's data shards: (sha256, samples) by index.
    pub async fn job_shards(&self, job: u64) -> Result<Vec<(String, u64)>, sqlx::Error> {
        let rows =
            sqlx::query("SELECT data_sha, samples FROM job_shards WHERE job_id = ? ORDER BY shard")
                .bind(job as i64)
                .fetch_all(&self.pool)
                .await?;
        rows.iter()
            .map(|r| {
                Ok((
                    r.try_get("data_sha")?,
                    r.try_get::<i64, _>("samples")? as u64,
                ))
            })
            .collect()
    }

    /// Records an issued lease.
    pub async fn insert_lease(
        &self,
        id: u64,
        job: u64,
        round: u32,
        shard: u32,
        worker: u64,
    ) -> Result<(), sqlx::Error> {
        sqlx::query(
            "INSERT INTO leases (id, job_id, round, shard, worker_id, status, issued_at) \
             VALUES (?, ?, ?, ?, ?, 'active', ?)",
        )
        .bind(id as i64)
        .bind(job as i64)
        .bind(i64::from(round))
        .bind(i64::from(shard))
        .bind(worker as i64)
        .bind(now())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Records how a lease ended (`completed`, `rejected`, `expired`,
    /// `returned`, `disconnected`, `revoked`).
    pub async fn end_lease(&self, id: u64, status: &str, reason: &str) -> Result<(), sqlx::Error> {
        sqlx::query("UPDATE leases SET status = ?, reason = ?, ended_at = ? WHERE id = ? AND status = 'active'")
            .bind(status)
            .bind(reason)
            .bind(now())
            .bind(id as i64)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Marks every lease still active as ended (used at start-up: their
    /// workers' connections died with the previous process).
    pub async fn end_all_active_leases(&self, reason: &str) -> Result<u64, sqlx::Error> {
        Ok(sqlx::query("UPDATE leases SET status = 'disconnected', reason = ?, ended_at = ? WHERE status = 'active'")
            .bind(reason)
            .bind(now())
            .execute(&self.pool)
            .await?
            .rows_affected())
    }

    /// Records an accepted update and completes its lease, atomically.
    pub async fn insert_update(
        &self,
        job: u64,
        round: u32,
        u: &UpdateRow,
    ) -> Result<(), sqlx::Error> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT OR REPLACE INTO updates (job_id, round, shard, lease_id, worker_id, update_sha, \
             samples, train_loss, norm, train_millis) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
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
        .execute(&mut *tx)
        .await?;
        sqlx::query("UPDATE leases SET status = 'completed', ended_at = ? WHERE id = ?")
            .bind(now())
            .bind(u.lease_id as i64)
            .execute(&mut *tx)
            .await?;
        tx.commit().await
    }

    /// Accepted updates of one round.
    pub async fn round_updates(&self, job: u64, round: u32) -> Result<Vec<UpdateRow>, sqlx::Error> {
        let rows =
            sqlx::query("SELECT * FROM updates WHERE job_id = ? AND round = ? ORDER BY shard")
                .bind(job as i64)
                .bind(i64::from(round))
                .fetch_all(&self.pool)
                .await?;
        rows.iter()
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
                })
            })
            .collect()
    }

    /// Workers whose updates to `job` were accepted, most samples first.
    pub async fn contributors(
        &self,
        job: u64,
    ) -> Result<Vec<oblivion_protocol::api::Contributor>, sqlx::Error> {
        let rows = sqlx::query(
            "SELECT u.worker_id AS id, w.name AS name, w.client AS client, w.device AS device, \
             COUNT(*) AS updates, SUM(u.samples) AS samples \
             FROM updates u JOIN workers w ON w.id = u.worker_id WHERE u.job_id = ? \
             GROUP BY u.worker_id ORDER BY samples DESC, id",
        )
        .bind(job as i64)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                let client: String = r.try_get("client")?;
                let device: String = r.try_get("device")?;
                let device: Option<oblivion_protocol::wire::DeviceInfo> =
                    serde_json::from_str(&device).ok();
                Ok(oblivion_protocol::api::Contributor {
                    worker_id: r.try_get::<i64, _>("id")? as u64,
                    name: r.try_get("name")?,
                    client: serde_json::from_str(&client)
                        .unwrap_or(oblivion_protocol::wire::ClientKind::Native),
                    backend: device.map(|d| d.backend).unwrap_or_default(),
                    updates: r.try_get::<i64, _>("updates")? as u64,
                    samples: r.try_get::<i64, _>("samples")? as u64,
                })
            })
            .collect()
    }

    /// Largest lease and worker ids used so far (ids never repeat, even
    /// across restarts, so a stale lease can never be mistaken for a new one).
    pub async fn max_ids(&self) -> Result<(u64, u64), sqlx::Error> {
        let row = sqlx::query(
            "SELECT (SELECT COALESCE(MAX(id), 0) FROM leases) AS l, \
             (SELECT COALESCE(MAX(id), 0) FROM workers) AS w",
        )
        .fetch_one(&self.pool)
        .await?;
        Ok((
            row.try_get::<i64, _>("l")? as u64,
            row.try_get::<i64, _>("w")? as u64,
        ))
    }

    /// Records a newly connected worker.
    pub async fn insert_worker(
        &self,
        w: &oblivion_protocol::api::WorkerView,
        payout: Option<&str>,
    ) -> Result<(), sqlx::Error> {
        sqlx::query(
            "INSERT INTO workers (id, name, client, device, benchmark, payout_address, connected_at) \
             VALUES (?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(w.id as i64)
        .bind(&w.name)
        .bind(serde_json::to_string(&w.client).unwrap_or_default())
        .bind(serde_json::to_string(&w.device).unwrap_or_default())
        .bind(w.benchmark)
        .bind(payout)
        .bind(now())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Stores a worker's counters.
    pub async fn update_worker(
        &self,
        w: &oblivion_protocol::api::WorkerView,
    ) -> Result<(), sqlx::Error> {
        sqlx::query(
            "UPDATE workers SET accepted = ?, rejected = ?, lost = ?, samples = ? WHERE id = ?",
        )
        .bind(w.accepted as i64)
        .bind(w.rejected as i64)
        .bind(w.lost as i64)
        .bind(w.samples as i64)
        .bind(w.id as i64)
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}

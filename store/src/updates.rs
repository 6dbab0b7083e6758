//! Updates in the database: accepting one (completing its lease, ending
//! the other lease on its slot), and reading a round's.

use oblivion_protocol::api::Contributor;
use oblivion_protocol::wire::{ClientKind, DeviceInfo};
use oblivion_protocol::{JobId, LeaseId, WorkerId};
use sqlx::Row;

use crate::db::{Db, id, now, transaction};
use crate::error::StoreError;

/// An accepted update as stored.
#[derive(Clone, Debug)]
pub struct UpdateRow {
    /// Shard index.
    pub shard: u32,
    /// Worker that made it.
    pub worker_id: WorkerId,
    /// Lease it answered.
    pub lease_id: LeaseId,
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

impl Db {
    /// Records an accepted update, completing its lease and crediting its
    /// worker, in one transaction; only while the lease is active, its job
    /// runs that round, and the shard has no update yet. Returns whether
    /// the round now has an update for every shard.
    pub async fn accept_update(
        &self,
        job: JobId,
        round: u32,
        u: &UpdateRow,
    ) -> Result<Result<bool, UpdateRefusal>, StoreError> {
        transaction!(self, |tx| {
            // The job row first (locked on PostgreSQL, so that a cancel waits
            // for this commit, and in the same order as a cancel takes them).
            // A round closed on its quorum takes no more updates.
            let current = sqlx::query(&format!(
                "SELECT 1 AS ok FROM jobs WHERE id = $1 AND round = $2 AND status = 'running' \
                 AND round_slots > (SELECT COUNT(*) FROM updates WHERE job_id = $1 AND round = $2){}",
                self.share_lock()
            ))
            .bind(job.db())
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
            .bind(u.lease_id.db())
            .bind(now())
            .bind(u.worker_id.db())
            .bind(job.db())
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
            .bind(job.db())
            .bind(i64::from(round))
            .bind(i64::from(u.shard))
            .bind(u.lease_id.db())
            .bind(u.worker_id.db())
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
            .bind(job.db())
            .bind(i64::from(round))
            .bind(i64::from(u.shard))
            .bind(u.lease_id.db())
            .bind(now())
            .execute(&mut *tx)
            .await?;
            // Its samples are credited once its round verifies it.
            sqlx::query("UPDATE workers SET accepted = accepted + 1 WHERE id = $1")
                .bind(u.worker_id.db())
                .execute(&mut *tx)
                .await?;
            let complete: i64 = sqlx::query(
                "SELECT CAST(CASE WHEN (SELECT COUNT(*) FROM updates WHERE job_id = $1 AND round = $2) \
                 = (SELECT round_slots FROM jobs WHERE id = $1) THEN 1 ELSE 0 END AS BIGINT) AS done",
            )
            .bind(job.db())
            .bind(i64::from(round))
            .fetch_one(&mut *tx)
            .await?
            .try_get("done")?;
            self.notify(&mut tx, job).await?;
            tx.commit().await?;
            Ok(Ok(complete == 1))
        })
    }

    /// Accepted updates of one round, by shard.
    pub async fn round_updates(
        &self,
        job: JobId,
        round: u32,
    ) -> Result<Vec<UpdateRow>, StoreError> {
        sqlx::query("SELECT * FROM updates WHERE job_id = $1 AND round = $2 ORDER BY shard")
            .bind(job.db())
            .bind(i64::from(round))
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(|r| {
                Ok(UpdateRow {
                    shard: r.try_get::<i64, _>("shard")? as u32,
                    worker_id: id::<WorkerId>(r, "worker_id")?,
                    lease_id: id::<LeaseId>(r, "lease_id")?,
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

    /// Workers whose updates to `job` were accepted, most samples credited
    /// (verified) first.
    pub async fn contributors(&self, job: JobId) -> Result<Vec<Contributor>, StoreError> {
        sqlx::query(
            "SELECT u.worker_id AS id, w.name AS name, w.client AS client, w.device AS device, \
             COUNT(*) AS updates, \
             CAST(SUM(CASE WHEN u.verdict = 'verified' THEN u.samples ELSE 0 END) AS BIGINT) AS samples \
             FROM updates u JOIN workers w ON w.id = u.worker_id WHERE u.job_id = $1 \
             GROUP BY u.worker_id, w.name, w.client, w.device ORDER BY samples DESC, id",
        )
        .bind(job.db())
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(|r| {
            let client: String = r.try_get("client")?;
            let device: String = r.try_get("device")?;
            let device: Option<DeviceInfo> = serde_json::from_str(&device).ok();
            Ok(Contributor {
                worker_id: id::<WorkerId>(r, "id")?,
                name: r.try_get("name")?,
                client: serde_json::from_str(&client).unwrap_or(ClientKind::Native),
                backend: device.map(|d| d.backend).unwrap_or_default(),
                updates: r.try_get::<i64, _>("updates")? as u64,
                samples: r.try_get::<i64, _>("samples")? as u64,
            })
        })
        .collect()
    }
}

//! Leases in the database: granting them (guarded so that a slot has one
//! lease and one backup, and an identity one backup a round) and ending
//! them.

use oblivion_protocol::states::LeaseStatus;
use oblivion_protocol::{JobId, LeaseId, WorkerId};
use sqlx::Row;

use crate::backend::Backend;
use crate::db::{Db, TRAINING, id, now, transaction};
use crate::error::StoreError;
use crate::trust::IDENTITY;

/// A lease to record, as the scheduler planned it (its `Grant`, field for
/// field: the store takes its own type so that it never imports the
/// scheduler, and the service maps one to the other).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NewLease {
    /// Job.
    pub job: JobId,
    /// Round.
    pub round: u32,
    /// Slot index (a shard, or a replica).
    pub shard: u32,
    /// The shard the slot trains.
    pub base: u32,
    /// Its holder.
    pub worker: WorkerId,
    /// A backup lease on a slot that is leased already.
    pub backup: bool,
}

/// A lease the database recorded.
#[derive(Clone, Copy, Debug)]
pub struct Granted {
    /// Which of the leases asked for (its index).
    pub index: usize,
    /// The lease's id.
    pub id: LeaseId,
    /// Whether it moved its job from pending to running.
    pub started_job: bool,
}

impl Db {
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
        leases: &[NewLease],
        instance: &str,
    ) -> Result<Vec<Granted>, StoreError> {
        transaction!(self, |tx| {
            let mut jobs: Vec<JobId> = leases.iter().map(|g| g.job).collect();
            jobs.sort_unstable();
            jobs.dedup();
            if self.backend == Backend::Postgres {
                for job in jobs {
                    sqlx::query(&format!(
                        "SELECT 1 AS ok FROM jobs WHERE id = $1{}",
                        self.share_lock()
                    ))
                    .bind(job.db())
                    .fetch_optional(&mut *tx)
                    .await?;
                }
            }
            let mut granted = Vec::with_capacity(leases.len());
            let issued_at = now();
            for (index, g) in leases.iter().enumerate() {
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
                .bind(g.job.db())
                .bind(i64::from(g.round))
                .bind(i64::from(g.shard))
                .bind(g.worker.db())
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
                .bind(g.job.db())
                .execute(&mut *tx)
                .await?
                .rows_affected()
                    == 1;
                granted.push(Granted {
                    index,
                    id: LeaseId::try_from(id)?,
                    started_job: started,
                });
            }
            let mut changed: Vec<JobId> = granted.iter().map(|g| leases[g.index].job).collect();
            changed.sort_unstable();
            changed.dedup();
            for job in changed {
                self.notify(&mut tx, job).await?;
            }
            tx.commit().await?;
            Ok(granted)
        })
    }

    /// Ends active leases without an update, counting lost and rejected
    /// ones against their workers. Returns how many it ended.
    pub async fn end_leases(
        &self,
        ended: &[(LeaseId, LeaseStatus)],
        reason: &str,
    ) -> Result<u64, StoreError> {
        if ended.is_empty() {
            return Ok(0);
        }
        transaction!(self, |tx| {
            let mut count = 0;
            let mut changed = Vec::new();
            let at = now();
            for &(lease, status) in ended {
                let worker = sqlx::query(
                    "UPDATE leases SET status = $2, reason = $3, ended_at = $4 \
                     WHERE id = $1 AND status = 'active' RETURNING worker_id, job_id",
                )
                .bind(lease.db())
                .bind(status.as_str())
                .bind(reason)
                .bind(at)
                .fetch_optional(&mut *tx)
                .await?;
                let Some(worker) = worker else { continue };
                count += 1;
                changed.push(id::<JobId>(&worker, "job_id")?);
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
        })
    }

    /// Marks every lease still active as ended (at start-up of the only
    /// instance using this database: its workers' connections died with
    /// the previous process).
    pub async fn end_all_active_leases(&self, reason: &str) -> Result<u64, StoreError> {
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

    /// The identities (their accounts, else their connections) holding a
    /// backup lease in `job`'s `round`, or whose backup won its slot (one
    /// each a round: see `grant_leases`).
    pub async fn round_backup_identities(
        &self,
        job: JobId,
        round: u32,
    ) -> Result<Vec<String>, StoreError> {
        sqlx::query(&format!(
            "SELECT DISTINCT {IDENTITY} AS identity FROM leases l JOIN workers w \
             ON w.id = l.worker_id \
             WHERE l.job_id = $1 AND l.round = $2 AND l.backup = 1 \
             AND l.status IN ('active', 'completed') ORDER BY identity"
        ))
        .bind(job.db())
        .bind(i64::from(round))
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(|r| Ok(r.try_get::<String, _>("identity")?))
        .collect()
    }

    /// The active lease `lease` if the worker whose token hashes to
    /// `token_hash` holds it (granted by any instance): (job, round, shard,
    /// worker).
    pub async fn held_lease(
        &self,
        lease: LeaseId,
        token_hash: &str,
    ) -> Result<Option<(JobId, u32, u32, WorkerId)>, StoreError> {
        sqlx::query(
            "SELECT l.job_id, l.round, l.shard, l.worker_id FROM leases l \
             JOIN workers w ON w.id = l.worker_id \
             WHERE l.id = $1 AND l.status = 'active' AND w.token_hash = $2",
        )
        .bind(lease.db())
        .bind(token_hash)
        .fetch_optional(&self.pool)
        .await?
        .map(|r| {
            Ok((
                id::<JobId>(&r, "job_id")?,
                r.try_get::<i64, _>("round")? as u32,
                r.try_get::<i64, _>("shard")? as u32,
                id::<WorkerId>(&r, "worker_id")?,
            ))
        })
        .transpose()
    }
}

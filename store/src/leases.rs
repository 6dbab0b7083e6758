//! Leases in the database: granting them (guarded so that a slot has one
//! lease and one backup, and an identity one backup a round) and ending
//! them.

use oblivion_protocol::states::LeaseStatus;
use oblivion_protocol::{JobId, LeaseId, WorkerId};
use std::collections::{BTreeMap, HashMap};

use sqlx::{Any, FromRow, Transaction};

use crate::backend::Backend;
use crate::columns::Int;
use crate::db::{CHUNK, Db, TRAINING, WriteOnce, bound, now, transaction};
use crate::error::StoreError;
use crate::trust::IDENTITY;

/// Which slot a lease is on, as the `leases` table has it.
#[derive(sqlx::FromRow)]
struct LeaseRecord {
    #[sqlx(try_from = "i64")]
    id: LeaseId,
    #[sqlx(try_from = "i64")]
    job_id: JobId,
    #[sqlx(try_from = "i64")]
    round: u32,
    #[sqlx(try_from = "i64")]
    shard: u32,
    #[sqlx(try_from = "i64")]
    worker_id: WorkerId,
}

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
                // The jobs' rows locked, each in id order: a pending job's
                // for update (its first lease starts it below; a share lock
                // upgraded there deadlocked with another instance waiting
                // on this one's new leases), the others' for share.
                for (status, lock) in [
                    ("= 'pending'", self.update_lock()),
                    ("<> 'pending'", self.share_lock()),
                ] {
                    bound(
                        &format!(
                            "SELECT id FROM jobs WHERE id IN ({}) AND status {status} ORDER BY id{lock}",
                            self.placeholders().list(jobs.len()),
                        ),
                        jobs.iter().map(|j| j.db()),
                    )
                    .fetch_all(&mut *tx)
                    .await?;
                }
            }
            let issued_at = now();
            let mut granted = self
                .grant_primaries(&mut tx, leases, instance, issued_at)
                .await?;
            // Backups one at a time: each may only go to an identity that
            // none granted before it holds one for (rare: a round's last
            // slots).
            for (index, g) in leases.iter().enumerate().filter(|(_, g)| g.backup) {
                let lease: Option<Int<LeaseId>> = sqlx::query_scalar(&format!(
                    "INSERT INTO leases (job_id, round, shard, worker_id, status, issued_at, instance, base, \
                     backup) \
                     SELECT $1, $2, $3, $4, 'active', $5, $6, $7, 1 \
                     WHERE EXISTS (SELECT 1 FROM jobs WHERE id = $1 AND round = $2 \
                                   AND status IN {TRAINING} AND round_slots > \
                                   (SELECT COUNT(*) FROM updates WHERE job_id = $1 AND round = $2)) \
                     AND NOT EXISTS (SELECT 1 FROM updates WHERE job_id = $1 AND round = $2 \
                                     AND shard = $3) \
                     AND NOT EXISTS (SELECT 1 FROM leases l JOIN workers w \
                                     ON w.id = l.worker_id \
                                     WHERE l.job_id = $1 AND l.round = $2 \
                                     AND l.backup = 1 \
                                     AND l.status IN ('active', 'completed') \
                                     AND {IDENTITY} = \
                                     (SELECT {IDENTITY} FROM workers w WHERE w.id = $4)) \
                     ON CONFLICT DO NOTHING RETURNING id"
                ))
                .bind(g.job.db())
                .bind(i64::from(g.round))
                .bind(i64::from(g.shard))
                .bind(g.worker.db())
                .bind(issued_at)
                .bind(instance)
                .bind(i64::from(g.base))
                .fetch_optional(&mut *tx)
                .await?;
                let Some(lease) = lease else { continue };
                granted.push(Granted {
                    index,
                    id: lease.get(),
                    started_job: false,
                });
            }
            granted.sort_by_key(|g| g.index);
            // A job's first lease starts it: the batch's pending jobs
            // move to running with one statement, each told with the
            // first lease granted in it.
            let mut first: BTreeMap<JobId, usize> = BTreeMap::new();
            for (n, g) in granted.iter().enumerate() {
                first.entry(leases[g.index].job).or_insert(n);
            }
            for jobs in first.keys().copied().collect::<Vec<_>>().chunks(CHUNK) {
                let started: Vec<(Int<JobId>,)> = bound(
                    &format!(
                        "UPDATE jobs SET status = 'running' \
                         WHERE status = 'pending' AND id IN ({}) RETURNING id",
                        self.placeholders().list(jobs.len())
                    ),
                    jobs.iter().map(|j| j.db()),
                )
                .fetch_all(&mut *tx)
                .await?
                .iter()
                .map(<(Int<JobId>,)>::from_row)
                .collect::<Result<_, _>>()?;
                for (job,) in started {
                    if let Some(&n) = first.get(&job.get()) {
                        granted[n].started_job = true;
                    }
                }
            }
            self.notify(&mut tx, first.into_keys()).await?;
            tx.commit().await?;
            Ok(granted)
        })
    }

    /// The planned leases that are not backups, recorded with one
    /// statement: each only if its job is unfinished in that round, its
    /// slot has no update, and (the unique index) no active lease.
    async fn grant_primaries(
        &self,
        tx: &mut Transaction<'static, Any>,
        leases: &[NewLease],
        instance: &str,
        issued_at: f64,
    ) -> Result<Vec<Granted>, StoreError> {
        let mut primaries: Vec<(usize, &NewLease)> = leases
            .iter()
            .enumerate()
            .filter(|(_, g)| !g.backup)
            .collect();
        // In slot order: two instances planning the same slots then insert
        // them in the same order, and the second waits for the first
        // instead of each waiting on a slot the other holds (PostgreSQL
        // found such deadlocks when three instances granted at once). The
        // statement says the order too (`ORDER BY`): a VALUES list's own
        // order is not promised to be the order its rows are inserted in.
        primaries.sort_by_key(|(_, g)| (g.job, g.round, g.shard));
        let mut granted = Vec::with_capacity(primaries.len());
        for chunk in primaries.chunks(CHUNK) {
            granted.extend(self.grant_chunk(tx, chunk, instance, issued_at).await?);
        }
        Ok(granted)
    }

    /// Up to a thousand of [`Db::grant_primaries`]' leases, one statement.
    async fn grant_chunk(
        &self,
        tx: &mut Transaction<'static, Any>,
        primaries: &[(usize, &NewLease)],
        instance: &str,
        issued_at: f64,
    ) -> Result<Vec<Granted>, StoreError> {
        let mut p = self.placeholders();
        let (at, by) = (p.one(), p.one());
        let values = p.rows(primaries.len(), 5);
        // A VALUES list's columns are column1, column2, … in both
        // databases: job, round, slot, worker, shard trained.
        let sql = format!(
            "INSERT INTO leases (job_id, round, shard, worker_id, status, issued_at, instance, base, \
             backup) \
             SELECT v.column1, v.column2, v.column3, v.column4, 'active', {at}, {by}, v.column5, 0 \
             FROM (VALUES {values}) AS v \
             WHERE EXISTS (SELECT 1 FROM jobs WHERE id = v.column1 AND round = v.column2 \
                           AND status IN {TRAINING} AND round_slots > \
                           (SELECT COUNT(*) FROM updates WHERE job_id = v.column1 AND round = v.column2)) \
             AND NOT EXISTS (SELECT 1 FROM updates WHERE job_id = v.column1 AND round = v.column2 \
                             AND shard = v.column3) \
             ORDER BY v.column1, v.column2, v.column3 \
             ON CONFLICT DO NOTHING RETURNING id, job_id, round, shard, worker_id"
        );
        let mut insert = bound(&sql, std::iter::empty())
            .bind(issued_at)
            .bind(instance.to_string());
        for (_, g) in primaries {
            insert = insert
                .bind(g.job.db())
                .bind(i64::from(g.round))
                .bind(i64::from(g.shard))
                .bind(g.worker.db())
                .bind(i64::from(g.base));
        }
        let mut index: HashMap<(JobId, u32, u32, WorkerId), usize> = HashMap::new();
        for &(i, g) in primaries.iter().rev() {
            index.insert((g.job, g.round, g.shard, g.worker), i);
        }
        let mut granted = Vec::with_capacity(primaries.len());
        for row in insert.fetch_all(&mut **tx).await? {
            let lease = LeaseRecord::from_row(&row)?;
            let key = (lease.job_id, lease.round, lease.shard, lease.worker_id);
            let Some(&i) = index.get(&key) else {
                return Err(StoreError::corrupt(format!(
                    "a lease was recorded that was not asked for: {key:?}"
                )));
            };
            granted.push(Granted {
                index: i,
                id: lease.id,
                started_job: false,
            });
        }
        Ok(granted)
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
                let ended: Option<(Int<WorkerId>, Int<JobId>)> = sqlx::query_as(
                    "UPDATE leases SET status = $2, reason = $3, ended_at = $4 \
                     WHERE id = $1 AND status = 'active' RETURNING worker_id, job_id",
                )
                .bind(lease.db())
                .bind(status.as_str())
                .bind(reason)
                .bind(at)
                .fetch_optional(&mut *tx)
                .await?;
                let Some((worker, job)) = ended else { continue };
                count += 1;
                changed.push(job.get());
                let counter = match status {
                    LeaseStatus::Rejected => "rejected",
                    s if s.is_lost() => "lost",
                    _ => continue,
                };
                sqlx::query(&format!(
                    "UPDATE workers SET {counter} = {counter} + 1 WHERE id = $1"
                ))
                .bind(worker.get().db())
                .execute(&mut *tx)
                .await?;
            }
            self.notify(&mut tx, changed).await?;
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
        .write_once(self)
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
        Ok(sqlx::query_scalar(&format!(
            "SELECT DISTINCT {IDENTITY} AS identity FROM leases l JOIN workers w \
             ON w.id = l.worker_id \
             WHERE l.job_id = $1 AND l.round = $2 AND l.backup = 1 \
             AND l.status IN ('active', 'completed') ORDER BY identity"
        ))
        .bind(job.db())
        .bind(i64::from(round))
        .fetch_all(&self.pool)
        .await?)
    }

    /// The active lease `lease` if the worker whose token hashes to
    /// `token_hash` holds it (granted by any instance): (job, round, shard,
    /// worker).
    pub async fn held_lease(
        &self,
        lease: LeaseId,
        token_hash: &str,
    ) -> Result<Option<(JobId, u32, u32, WorkerId)>, StoreError> {
        let held: Option<LeaseRecord> = sqlx::query_as(
            "SELECT l.id, l.job_id, l.round, l.shard, l.worker_id FROM leases l \
             JOIN workers w ON w.id = l.worker_id \
             WHERE l.id = $1 AND l.status = 'active' AND w.token_hash = $2",
        )
        .bind(lease.db())
        .bind(token_hash)
        .fetch_optional(&self.pool)
        .await?;
        Ok(held.map(|l| (l.job_id, l.round, l.shard, l.worker_id)))
    }
}

//! Updates in the database: accepting them, in batches (completing each
//! one's lease, ending the other lease on its slot), and reading a
//! round's.

use oblivion_protocol::api::{Contributor, JobStatus};
use oblivion_protocol::wire::{ClientKind, DeviceInfo};
use oblivion_protocol::{BlobId, JobId, LeaseId, WorkerId};
use std::collections::{BTreeMap, BTreeSet, HashMap};

use sqlx::{Any, FromRow, Transaction};

use crate::columns::{Int, Text};
use crate::db::{CHUNK, Db, bound, now, transaction};
use crate::error::{ErrorKind, StoreError};
use crate::trust::IDENTITY;

/// An accepted update as stored.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct UpdateRow {
    /// Shard index.
    #[sqlx(try_from = "i64")]
    pub shard: u32,
    /// Worker that made it.
    #[sqlx(try_from = "i64")]
    pub worker_id: WorkerId,
    /// Lease it answered.
    #[sqlx(try_from = "i64")]
    pub lease_id: LeaseId,
    /// The update blob.
    #[sqlx(try_from = "Text<BlobId>")]
    pub update_sha: BlobId,
    /// Samples credited (the shard's size).
    #[sqlx(try_from = "i64")]
    pub samples: u64,
    /// Training loss reported.
    pub train_loss: f64,
    /// L2 norm.
    pub norm: f64,
    /// Training time the worker reported (informative only).
    #[sqlx(try_from = "i64")]
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

/// An update to record: [`UpdateRow`] for a job's round.
#[derive(Clone, Debug)]
pub struct Accepting {
    /// The job.
    pub job: JobId,
    /// The round it answers.
    pub round: u32,
    /// The update.
    pub update: UpdateRow,
}

/// What became of an update: recorded (and whether its round now has an
/// update for every slot), or refused, and why.
pub type Acceptance = Result<bool, UpdateRefusal>;

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
    ) -> Result<Acceptance, StoreError> {
        let one = Accepting {
            job,
            round,
            update: u.clone(),
        };
        self.accept_updates(std::slice::from_ref(&one))
            .await?
            .pop()
            .ok_or_else(|| StoreError::new(ErrorKind::Other, "a batch of one gave no outcome"))
    }

    /// Records a batch of updates in one transaction and one commit (group
    /// commit): each exactly as [`Db::accept_update`] would alone, in the
    /// batch's order, so a later one sees what an earlier one did (the
    /// second update for a slot is refused). A refused update leaves no
    /// trace and the others stand. One outcome per update, in order.
    ///
    /// The batch is checked and written a statement for all of it at a
    /// time ([`Db::accept_together`]); should that meet an update another
    /// instance recorded meanwhile (PostgreSQL), it is undone and done
    /// again one update at a time, which decides such a race exactly.
    pub async fn accept_updates(&self, batch: &[Accepting]) -> Result<Vec<Acceptance>, StoreError> {
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        if batch.len() > CHUNK {
            // A statement takes so many values; larger batches go in turn.
            let mut outcomes = Vec::with_capacity(batch.len());
            for chunk in batch.chunks(CHUNK) {
                outcomes.extend(Box::pin(self.accept_updates(chunk)).await?);
            }
            return Ok(outcomes);
        }
        let together = transaction!(self, |tx| {
            let outcomes = self.accept_together(&mut tx, batch).await?;
            if outcomes.is_some() {
                tx.commit().await?;
            }
            Ok(outcomes)
        })?;
        if let Some(outcomes) = together {
            return Ok(outcomes);
        }
        transaction!(self, |tx| {
            let mut outcomes = Vec::with_capacity(batch.len());
            let mut changed = BTreeSet::new();
            for a in batch {
                let outcome = self.accept_one(&mut tx, a).await?;
                if outcome.is_ok() {
                    changed.insert(a.job);
                }
                outcomes.push(outcome);
            }
            self.notify(&mut tx, changed).await?;
            tx.commit().await?;
            Ok(outcomes)
        })
    }

    /// [`Db::accept_updates`]'s batch with a handful of statements, however
    /// large it is: what the checks need is read for all of it at once, the
    /// checks run here in the batch's order, and the accepted updates are
    /// written together. `None` (the caller rolls back) if a slot turned
    /// out to have an update already, which only another instance's
    /// concurrent commit can cause.
    async fn accept_together(
        &self,
        tx: &mut Transaction<'static, Any>,
        batch: &[Accepting],
    ) -> Result<Option<Vec<Acceptance>>, StoreError> {
        // Each job's current round, its status, its slots and how many of
        // them have an update (its row locked on PostgreSQL, as alone).
        let jobs: BTreeSet<JobId> = batch.iter().map(|a| a.job).collect();
        let mut rounds: HashMap<JobId, JobRound> = HashMap::new();
        for row in bound(
            &format!(
                "SELECT j.id AS id, j.round AS round, j.status AS status, j.round_slots AS slots, \
                 (SELECT COUNT(*) FROM updates u WHERE u.job_id = j.id AND u.round = j.round) AS filled \
                 FROM jobs j WHERE j.id IN ({}){}",
                self.placeholders().list(jobs.len()),
                self.share_lock()
            ),
            jobs.iter().map(|j| j.db()),
        )
        .fetch_all(&mut **tx)
        .await?
        {
            let job = JobRound::from_row(&row)?;
            rounds.insert(job.id, job);
        }
        // Quarantined workers, with the reason.
        let workers: BTreeSet<WorkerId> = batch.iter().map(|a| a.update.worker_id).collect();
        let mut quarantined: HashMap<WorkerId, String> = HashMap::new();
        for row in bound(
            &format!(
                "SELECT w.id AS id, r.reason AS reason FROM workers w \
                 JOIN reputations r ON r.identity = {IDENTITY} \
                 WHERE w.id IN ({}) AND r.quarantined_at IS NOT NULL",
                self.placeholders().list(workers.len())
            ),
            workers.iter().map(|w| w.db()),
        )
        .fetch_all(&mut **tx)
        .await?
        {
            let (worker, reason) = <(Int<WorkerId>, Option<String>)>::from_row(&row)?;
            quarantined.insert(worker.get(), reason.unwrap_or_default());
        }
        // The active leases among the batch's, locked (PostgreSQL; SQLite's
        // writer holds the whole database) until they are completed.
        let leases: BTreeSet<LeaseId> = batch.iter().map(|a| a.update.lease_id).collect();
        let mut active: HashMap<LeaseId, Slot> = HashMap::new();
        for row in bound(
            &format!(
                "SELECT id, worker_id, job_id, round, shard, backup FROM leases \
                 WHERE id IN ({}) AND status = 'active'{}",
                self.placeholders().list(leases.len()),
                self.update_lock()
            ),
            leases.iter().map(|l| l.db()),
        )
        .fetch_all(&mut **tx)
        .await?
        {
            let (lease, worker, job, round, shard, backup) =
                <(Int<LeaseId>, Int<WorkerId>, Int<JobId>, i64, i64, i64)>::from_row(&row)?;
            active.insert(
                lease.get(),
                Slot {
                    worker: worker.get(),
                    job: job.get(),
                    round,
                    shard,
                    backup: backup != 0,
                },
            );
        }
        // The slots of the batch's jobs that have an active backup lease:
        // only on those can an update end another lease (rare: a round's
        // last slots).
        let mut backed_up: BTreeSet<(JobId, i64, i64)> = BTreeSet::new();
        for row in bound(
            &format!(
                "SELECT job_id, round, shard FROM leases \
                 WHERE job_id IN ({}) AND status = 'active' AND backup = 1",
                self.placeholders().list(jobs.len())
            ),
            jobs.iter().map(|j| j.db()),
        )
        .fetch_all(&mut **tx)
        .await?
        {
            let (job, round, shard) = <(Int<JobId>, i64, i64)>::from_row(&row)?;
            backed_up.insert((job.get(), round, shard));
        }

        // The checks, in order, as each update alone would meet them; an
        // accepted update ends every lease on its slot.
        let mut outcomes = Vec::with_capacity(batch.len());
        let mut accepted: Vec<&Accepting> = Vec::new();
        let mut ended_slots: BTreeSet<(JobId, i64, i64)> = BTreeSet::new();
        // Slots whose update came by a backup lease: the lease it backed
        // up ends with it.
        let mut by_backup: BTreeSet<(JobId, i64, i64)> = BTreeSet::new();
        for a in batch {
            let u = &a.update;
            let slot = (a.job, i64::from(a.round), i64::from(u.shard));
            let job = rounds.get_mut(&a.job).filter(|j| {
                j.status == JobStatus::Running && j.round == slot.1 && j.slots > j.filled
            });
            let Some(job) = job else {
                outcomes.push(Err(UpdateRefusal::JobMovedOn));
                continue;
            };
            if let Some(reason) = quarantined.get(&u.worker_id) {
                outcomes.push(Err(UpdateRefusal::Quarantined(reason.clone())));
                continue;
            }
            let holds = active
                .get(&u.lease_id)
                .is_some_and(|l| l.worker == u.worker_id && (l.job, l.round, l.shard) == slot);
            if !holds || ended_slots.contains(&slot) {
                outcomes.push(Err(UpdateRefusal::LeaseNotActive));
                continue;
            }
            job.filled += 1;
            ended_slots.insert(slot);
            if active.get(&u.lease_id).is_some_and(|l| l.backup) {
                by_backup.insert(slot);
            }
            outcomes.push(Ok(job.filled == job.slots));
            accepted.push(a);
        }
        if accepted.is_empty() {
            return Ok(Some(outcomes));
        }

        // One update per slot: the unique index decides. Anything else
        // than all of them recorded is a race with another instance.
        let values = self.placeholders().rows(accepted.len(), 12);
        let sql = format!(
            "INSERT INTO updates (job_id, round, shard, lease_id, worker_id, update_sha, \
             samples, train_loss, norm, train_millis, accepted_at, verdict) \
             VALUES {values} ON CONFLICT DO NOTHING"
        );
        let mut insert = bound(&sql, std::iter::empty());
        for a in &accepted {
            let u = &a.update;
            insert = insert
                .bind(a.job.db())
                .bind(i64::from(a.round))
                .bind(i64::from(u.shard))
                .bind(u.lease_id.db())
                .bind(u.worker_id.db())
                .bind(u.update_sha.hex())
                .bind(u.samples as i64)
                .bind(u.train_loss)
                .bind(u.norm)
                .bind(u.train_millis as i64)
                .bind(u.accepted_at)
                .bind("pending");
        }
        let inserted = insert.execute(&mut **tx).await?.rows_affected();
        if inserted != accepted.len() as u64 {
            return Ok(None);
        }
        let ended = now();
        let ids: Vec<i64> = accepted.iter().map(|a| a.update.lease_id.db()).collect();
        let mut p = self.placeholders();
        let sql = format!(
            "UPDATE leases SET status = 'completed', ended_at = {} \
             WHERE status = 'active' AND id IN ({})",
            p.one(),
            p.list(ids.len())
        );
        let mut complete = bound(&sql, std::iter::empty()).bind(ended);
        for id in &ids {
            complete = complete.bind(*id);
        }
        if complete.execute(&mut **tx).await?.rows_affected() != ids.len() as u64 {
            // Cannot happen under the locks taken above.
            return Ok(None);
        }
        // The first valid update for a slot wins: a backup lease on it (or
        // the lease it backed up) ends here, with the update.
        let contested: Vec<(JobId, i64, i64)> = accepted
            .iter()
            .map(|a| (a.job, i64::from(a.round), i64::from(a.update.shard)))
            .filter(|slot| backed_up.contains(slot) || by_backup.contains(slot))
            .collect();
        // A hundred slots a statement: SQLite refuses an expression over
        // 1,000 deep, which a long chain of ORs is.
        for contested in contested.chunks(100) {
            let mut p = self.placeholders();
            let (at, reason) = (p.one(), p.one());
            let slots = contested
                .iter()
                .map(|_| {
                    format!(
                        "(job_id = {} AND round = {} AND shard = {})",
                        p.one(),
                        p.one(),
                        p.one()
                    )
                })
                .collect::<Vec<_>>()
                .join(" OR ");
            let sql = format!(
                "UPDATE leases SET status = 'revoked', ended_at = {at}, reason = {reason} \
                 WHERE status = 'active' AND ({slots})"
            );
            let mut revoke = bound(&sql, std::iter::empty())
                .bind(ended)
                .bind("another worker's update for the shard came first");
            for (job, round, shard) in contested {
                revoke = revoke.bind(job.db()).bind(*round).bind(*shard);
            }
            revoke.execute(&mut **tx).await?;
        }
        // Its samples are credited once its round verifies it; the count
        // of accepted updates grows now. Workers grouped by how many of
        // theirs the batch holds (one each, nearly always).
        let mut per_worker: BTreeMap<WorkerId, i64> = BTreeMap::new();
        for a in &accepted {
            *per_worker.entry(a.update.worker_id).or_default() += 1;
        }
        let mut by_count: BTreeMap<i64, Vec<i64>> = BTreeMap::new();
        for (worker, n) in per_worker {
            by_count.entry(n).or_default().push(worker.db());
        }
        for (n, workers) in by_count {
            let mut p = self.placeholders();
            let sql = format!(
                "UPDATE workers SET accepted = accepted + {} WHERE id IN ({})",
                p.one(),
                p.list(workers.len())
            );
            bound(&sql, std::iter::once(n).chain(workers))
                .execute(&mut **tx)
                .await?;
        }
        self.notify(tx, accepted.iter().map(|a| a.job)).await?;
        Ok(Some(outcomes))
    }

    /// One update of [`Db::accept_updates`]'s batch. Every check that may
    /// refuse it comes before its first write: the batch needs no
    /// savepoints.
    async fn accept_one(
        &self,
        tx: &mut Transaction<'static, Any>,
        a: &Accepting,
    ) -> Result<Acceptance, StoreError> {
        let (job, round, u) = (a.job, a.round, &a.update);
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
        .fetch_optional(&mut **tx)
        .await?;
        if current.is_none() {
            return Ok(Err(UpdateRefusal::JobMovedOn));
        }
        if let Some(reason) = self.quarantine_of(tx, u.worker_id).await? {
            return Ok(Err(UpdateRefusal::Quarantined(reason)));
        }
        // The lease, locked (PostgreSQL; SQLite's writer holds the whole
        // database), so that it is still active when it is completed below.
        let active = sqlx::query(&format!(
            "SELECT 1 AS ok FROM leases \
             WHERE id = $1 AND worker_id = $2 AND job_id = $3 AND round = $4 AND shard = $5 \
             AND status = 'active'{}",
            self.update_lock()
        ))
        .bind(u.lease_id.db())
        .bind(u.worker_id.db())
        .bind(job.db())
        .bind(i64::from(round))
        .bind(i64::from(u.shard))
        .fetch_optional(&mut **tx)
        .await?;
        if active.is_none() {
            return Ok(Err(UpdateRefusal::LeaseNotActive));
        }
        // One update per slot: the unique index decides, also against
        // another instance's update for the slot's other lease.
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
        .bind(u.update_sha.hex())
        .bind(u.samples as i64)
        .bind(u.train_loss)
        .bind(u.norm)
        .bind(u.train_millis as i64)
        .bind(u.accepted_at)
        .execute(&mut **tx)
        .await?
        .rows_affected();
        if inserted != 1 {
            return Ok(Err(UpdateRefusal::Duplicate));
        }
        let ended = now();
        let completed = sqlx::query(
            "UPDATE leases SET status = 'completed', ended_at = $2 WHERE id = $1 AND status = 'active'",
        )
        .bind(u.lease_id.db())
        .bind(ended)
        .execute(&mut **tx)
        .await?
        .rows_affected();
        if completed != 1 {
            // Cannot happen under the lock taken above; the batch is undone
            // rather than record an update for a lease that ended.
            return Err(StoreError::new(
                ErrorKind::Other,
                format!("lease {} ended under its lock", u.lease_id),
            ));
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
        .bind(ended)
        .execute(&mut **tx)
        .await?;
        // Its samples are credited once its round verifies it.
        sqlx::query("UPDATE workers SET accepted = accepted + 1 WHERE id = $1")
            .bind(u.worker_id.db())
            .execute(&mut **tx)
            .await?;
        let complete: i64 = sqlx::query_scalar(
            "SELECT CAST(CASE WHEN (SELECT COUNT(*) FROM updates WHERE job_id = $1 AND round = $2) \
             = (SELECT round_slots FROM jobs WHERE id = $1) THEN 1 ELSE 0 END AS BIGINT)",
        )
        .bind(job.db())
        .bind(i64::from(round))
        .fetch_one(&mut **tx)
        .await?;
        Ok(Ok(complete == 1))
    }

    /// Accepted updates of one round, by shard.
    pub async fn round_updates(
        &self,
        job: JobId,
        round: u32,
    ) -> Result<Vec<UpdateRow>, StoreError> {
        Ok(
            sqlx::query_as("SELECT * FROM updates WHERE job_id = $1 AND round = $2 ORDER BY shard")
                .bind(job.db())
                .bind(i64::from(round))
                .fetch_all(&self.pool)
                .await?,
        )
    }

    /// Workers whose updates to `job` were accepted, most samples credited
    /// (verified) first.
    pub async fn contributors(&self, job: JobId) -> Result<Vec<Contributor>, StoreError> {
        type Contribution = (Int<WorkerId>, String, String, String, Int<u64>, Int<u64>);
        let rows: Vec<Contribution> = sqlx::query_as(
            "SELECT u.worker_id AS id, w.name AS name, w.client AS client, w.device AS device, \
             COUNT(*) AS updates, \
             CAST(SUM(CASE WHEN u.verdict = 'verified' THEN u.samples ELSE 0 END) AS BIGINT) AS samples \
             FROM updates u JOIN workers w ON w.id = u.worker_id WHERE u.job_id = $1 \
             GROUP BY u.worker_id, w.name, w.client, w.device ORDER BY samples DESC, id",
        )
        .bind(job.db())
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(worker, name, client, device, updates, samples)| {
                // Described by the worker itself: shown as well as it reads.
                let device: Option<DeviceInfo> = serde_json::from_str(&device).ok();
                Contributor {
                    worker_id: worker.get(),
                    name,
                    client: serde_json::from_str(&client).unwrap_or(ClientKind::Native),
                    backend: device.map(|d| d.backend).unwrap_or_default(),
                    updates: updates.get(),
                    samples: samples.get(),
                }
            })
            .collect())
    }
}

/// A job as a batch of updates finds it.
#[derive(sqlx::FromRow)]
struct JobRound {
    #[sqlx(try_from = "i64")]
    id: JobId,
    round: i64,
    #[sqlx(try_from = "Text<JobStatus>")]
    status: JobStatus,
    slots: i64,
    filled: i64,
}

/// What an active lease is for.
struct Slot {
    worker: WorkerId,
    job: JobId,
    round: i64,
    shard: i64,
    backup: bool,
}

//! Rounds in the database: who aggregates one, how it ends (all its slots
//! in, or a quorum), and the record of each finished round.

use std::collections::HashMap;

use crate::columns::Int;
use crate::db::{Db, WriteOnce, now, transaction};
use crate::error::StoreError;
use crate::inference::InferenceResult;
use crate::models::ModelEntry;
use crate::trust::{Judge, Quarantined, UpdateVerdict};
use oblivion_protocol::api::{JobStatus, RoundMetrics};
use oblivion_protocol::{BlobId, JobId, WorkerId};

/// A finished round as stored.
#[derive(Clone, Debug)]
pub struct RoundRow {
    /// Metrics.
    pub metrics: RoundMetrics,
    /// Weights after the round.
    pub global_sha: BlobId,
    /// The verdict on each of the round's updates.
    pub verdicts: Vec<UpdateVerdict>,
    /// The next round's replica slots (see [`JobRow::round_replicas`]).
    pub next_replicas: Vec<u32>,
    /// An inference job's assembled outputs.
    pub outputs: Option<InferenceResult>,
    /// The registry entry of the model a training job completes with.
    pub model: Option<ModelEntry>,
}

/// A finished round as the `rounds` table has it.
#[derive(sqlx::FromRow)]
struct MetricsRecord {
    #[sqlx(try_from = "i64")]
    job_id: JobId,
    #[sqlx(try_from = "i64")]
    round: u32,
    loss: f64,
    accuracy: f64,
    train_loss: f64,
    #[sqlx(try_from = "i64")]
    updates: u32,
    seconds: f64,
    train_seconds: f64,
    aggregate_seconds: f64,
    #[sqlx(try_from = "i64")]
    disputed: u32,
    #[sqlx(try_from = "i64")]
    no_work: u32,
    epsilon: Option<f64>,
}

impl From<MetricsRecord> for RoundMetrics {
    fn from(r: MetricsRecord) -> RoundMetrics {
        RoundMetrics {
            round: r.round,
            loss: r.loss,
            accuracy: r.accuracy,
            train_loss: r.train_loss,
            updates: r.updates,
            seconds: r.seconds,
            train_seconds: r.train_seconds,
            aggregate_seconds: r.aggregate_seconds,
            disputed: r.disputed,
            no_work: r.no_work,
            epsilon: r.epsilon,
        }
    }
}

impl Db {
    /// Claims the aggregation of `job`'s `round` for `instance`: only one
    /// claimant wins, and a claim older than `stale_before` (its instance
    /// died) may be taken over.
    pub async fn claim_aggregation(
        &self,
        job: JobId,
        round: u32,
        instance: &str,
        stale_before: f64,
    ) -> Result<bool, StoreError> {
        transaction!(self, |tx| {
            let claimed = sqlx::query(
                "UPDATE jobs SET aggregation_claim = $3, aggregation_claimed_at = $4 \
                 WHERE id = $1 AND round = $2 AND status = 'running' \
                 AND (aggregation_claim IS NULL OR aggregation_claimed_at < $5)",
            )
            .bind(job.db())
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
        })
    }

    /// Gives up a claim (after a failed attempt), so another may take it.
    pub async fn release_aggregation(&self, job: JobId, instance: &str) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE jobs SET aggregation_claim = NULL, aggregation_claimed_at = NULL \
             WHERE id = $1 AND aggregation_claim = $2",
        )
        .bind(job.db())
        .bind(instance)
        .write_once(self)
        .await?;
        Ok(())
    }

    /// Drops every aggregation claim (at start-up of the only instance that
    /// uses this database: the claimants died with the last process).
    pub async fn release_all_aggregations(&self) -> Result<u64, StoreError> {
        Ok(sqlx::query(
            "UPDATE jobs SET aggregation_claim = NULL, aggregation_claimed_at = NULL \
             WHERE aggregation_claim IS NOT NULL",
        )
        .write_once(self)
        .await?
        .rows_affected())
    }

    /// Records the aggregated round and moves the job on, in one
    /// transaction, if `instance` still holds the claim on this round of a
    /// running job. Returns whether it did.
    pub async fn finish_round(
        &self,
        id: JobId,
        instance: &str,
        round: &RoundRow,
        next_round: u32,
        status: JobStatus,
        judge: &Judge<'_>,
    ) -> Result<Option<Vec<Quarantined>>, StoreError> {
        transaction!(self, |tx| {
            let m = &round.metrics;
            let moved = sqlx::query(
                "UPDATE jobs SET round = $2, global_sha = $3, status = $4, round_started_at = $5, \
                 aggregation_claim = NULL, aggregation_claimed_at = NULL, \
                 round_slots = (SELECT COUNT(*) FROM job_shards WHERE job_id = $1) + $8, \
                 round_replicas = $9 \
                 WHERE id = $1 AND round = $6 AND status = 'running' AND aggregation_claim = $7",
            )
            .bind(id.db())
            .bind(i64::from(next_round))
            .bind(round.global_sha.hex())
            .bind(status.as_str())
            .bind(now())
            .bind(i64::from(m.round))
            .bind(instance)
            .bind(round.next_replicas.len() as i64)
            .bind(serde_json::to_string(&round.next_replicas)?)
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
            .bind(id.db())
            .bind(i64::from(m.round))
            .bind(round.global_sha.hex())
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
            if let Some(outputs) = &round.outputs {
                self.insert_inference_result(&mut tx, id, outputs).await?;
            }
            if let Some(model) = &round.model {
                self.insert_model(&mut tx, Some(id), model).await?;
            }
            let quarantined = self
                .record_verdicts(&mut tx, id, m.round, &round.verdicts, judge)
                .await?;
            self.notify(&mut tx, [id]).await?;
            tx.commit().await?;
            Ok(Some(quarantined))
        })
    }

    /// Finished rounds of a job, in order.
    pub async fn rounds(&self, job: JobId) -> Result<Vec<RoundMetrics>, StoreError> {
        let rounds: Vec<MetricsRecord> =
            sqlx::query_as("SELECT * FROM rounds WHERE job_id = $1 ORDER BY round")
                .bind(job.db())
                .fetch_all(&self.pool)
                .await?;
        Ok(rounds.into_iter().map(RoundMetrics::from).collect())
    }

    /// Finished rounds of every job, by job (one query for the job list).
    pub async fn all_rounds(&self) -> Result<HashMap<JobId, Vec<RoundMetrics>>, StoreError> {
        let mut out: HashMap<JobId, Vec<RoundMetrics>> = HashMap::new();
        let rounds: Vec<MetricsRecord> =
            sqlx::query_as("SELECT * FROM rounds ORDER BY job_id, round")
                .fetch_all(&self.pool)
                .await?;
        for r in rounds {
            out.entry(r.job_id).or_default().push(r.into());
        }
        Ok(out)
    }

    /// Sets `job`'s `round` replica slots to `replicas` (adding a third
    /// opinion when two disagree), while `instance` holds its aggregation
    /// claim, and releases the claim: the round is incomplete again. False
    /// when the claim or the round moved on.
    pub async fn add_replica(
        &self,
        job: JobId,
        round: u32,
        instance: &str,
        replicas: &[u32],
    ) -> Result<bool, StoreError> {
        transaction!(self, |tx| {
            let done = sqlx::query(
                "UPDATE jobs SET round_slots = (SELECT COUNT(*) FROM job_shards WHERE job_id = $1) + $4, \
                 round_replicas = $5, aggregation_claim = NULL, aggregation_claimed_at = NULL \
                 WHERE id = $1 AND round = $2 AND status = 'running' AND aggregation_claim = $3",
            )
            .bind(job.db())
            .bind(i64::from(round))
            .bind(instance)
            .bind(replicas.len() as i64)
            .bind(serde_json::to_string(replicas)?)
            .execute(&mut *tx)
            .await?
            .rows_affected()
                == 1;
            if done {
                self.notify(&mut tx, [job]).await?;
            }
            tx.commit().await?;
            Ok(done)
        })
    }

    /// Closes `job`'s `round` on its quorum when at least `needed` of its
    /// slots have an update: the round then counts exactly those (its
    /// `round_slots`, so it is complete and takes no more leases or
    /// updates), and the leases still out are revoked. One transaction;
    /// whether it closed the round.
    pub async fn close_round_on_quorum(
        &self,
        job: JobId,
        round: u32,
        needed: u32,
    ) -> Result<bool, StoreError> {
        transaction!(self, |tx| {
            // The job row first, locked on PostgreSQL: an update being accepted
            // (which holds it shared) commits before the count below is read.
            let running = sqlx::query(&format!(
                "SELECT 1 AS ok FROM jobs WHERE id = $1 AND round = $2 AND status = 'running'{}",
                self.update_lock()
            ))
            .bind(job.db())
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
            .bind(job.db())
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
            .bind(job.db())
            .bind(i64::from(round))
            .bind(now())
            .execute(&mut *tx)
            .await?;
            self.notify(&mut tx, [job]).await?;
            tx.commit().await?;
            Ok(true)
        })
    }

    /// How many slots the job's current round counts: its shards and
    /// replicas, or the updates it closed on (a quorum).
    pub async fn round_slots(&self, job: JobId) -> Result<u32, StoreError> {
        let slots: Int<u32> = sqlx::query_scalar("SELECT round_slots FROM jobs WHERE id = $1")
            .bind(job.db())
            .fetch_one(&self.pool)
            .await?;
        Ok(slots.get())
    }

    /// Where a round stands in the database: the shards with an accepted
    /// update (shard, worker), and the active leases (shard, worker,
    /// granting instance).
    pub async fn round_state(
        &self,
        job: JobId,
        round: u32,
    ) -> Result<(Vec<(u32, WorkerId)>, Vec<(u32, WorkerId, String)>), StoreError> {
        let done: Vec<(Int<u32>, Int<WorkerId>)> =
            sqlx::query_as("SELECT shard, worker_id FROM updates WHERE job_id = $1 AND round = $2")
                .bind(job.db())
                .bind(i64::from(round))
                .fetch_all(&self.pool)
                .await?;
        let leased: Vec<(Int<u32>, Int<WorkerId>, String)> = sqlx::query_as(
            "SELECT shard, worker_id, COALESCE(instance, '') AS instance FROM leases \
             WHERE job_id = $1 AND round = $2 AND status = 'active'",
        )
        .bind(job.db())
        .bind(i64::from(round))
        .fetch_all(&self.pool)
        .await?;
        Ok((
            done.into_iter().map(|(s, w)| (s.get(), w.get())).collect(),
            leased
                .into_iter()
                .map(|(s, w, i)| (s.get(), w.get(), i))
                .collect(),
        ))
    }
}

//! Workers and coordinator instances in the database: a worker's row, an
//! instance's heartbeat, and what is left of an instance that died.

use crate::columns::Int;
use crate::db::{Db, WriteOnce, now, transaction};
use crate::error::StoreError;
use oblivion_protocol::api::WorkerView;
use oblivion_protocol::{JobId, WorkerId};

impl Db {
    /// Records a newly connected worker; returns its id (never reused).
    pub async fn insert_worker(
        &self,
        w: &WorkerView,
        payout: Option<&str>,
        token_hash: &str,
        instance: &str,
    ) -> Result<WorkerId, StoreError> {
        // A write alone, in the writers' queue (see `WriteOnce`).
        let _writer = self.writer().await;
        let id: Int<WorkerId> = sqlx::query_scalar(
            "INSERT INTO workers (name, client, device, benchmark, payout_address, connected_at, \
             token_hash, instance) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id",
        )
        .bind(&w.name)
        .bind(serde_json::to_string(&w.client)?)
        .bind(serde_json::to_string(&w.device)?)
        .bind(w.benchmark)
        .bind(payout)
        .bind(now())
        .bind(token_hash)
        .bind(instance)
        .fetch_one(&self.writes)
        .await?;
        Ok(id.get())
    }

    /// Deletes the row of a worker that never held a lease, once it is
    /// gone: a connection that never worked leaves nothing behind, however
    /// often it comes.
    pub async fn forget_idle_worker(&self, id: WorkerId) -> Result<bool, StoreError> {
        Ok(sqlx::query(
            "DELETE FROM workers WHERE id = $1 \
             AND NOT EXISTS (SELECT 1 FROM leases WHERE worker_id = $1)",
        )
        .bind(id.db())
        .write_once(self)
        .await?
        .rows_affected()
            == 1)
    }

    /// Records this instance as alive.
    pub async fn register_instance(&self, id: &str) -> Result<(), StoreError> {
        sqlx::query("INSERT INTO instances (id, started_at, seen_at) VALUES ($1, $2, $2)")
            .bind(id)
            .bind(now())
            .write_once(self)
            .await?;
        Ok(())
    }

    /// Records that this instance is still alive.
    pub async fn instance_seen(&self, id: &str) -> Result<(), StoreError> {
        sqlx::query("UPDATE instances SET seen_at = $2 WHERE id = $1")
            .bind(id)
            .bind(now())
            .write_once(self)
            .await?;
        Ok(())
    }

    /// Ends the active leases and releases the aggregation claims of
    /// instances not seen since `stale_before` (they died), and forgets
    /// those instances. Returns the jobs whose leases or claims changed.
    pub async fn reap_instances(&self, stale_before: f64) -> Result<Vec<JobId>, StoreError> {
        transaction!(self, |tx| {
            const DEAD: &str = "NOT IN (SELECT id FROM instances WHERE seen_at >= $1)";
            let mut jobs: Vec<Int<JobId>> = sqlx::query_scalar(&format!(
                "UPDATE leases SET status = 'disconnected', \
                 reason = 'its coordinator instance stopped', ended_at = $2 \
                 WHERE status = 'active' AND (instance IS NULL OR instance {DEAD}) RETURNING job_id"
            ))
            .bind(stale_before)
            .bind(now())
            .fetch_all(&mut *tx)
            .await?;
            jobs.extend(
                sqlx::query_scalar(&format!(
                    "UPDATE jobs SET aggregation_claim = NULL, aggregation_claimed_at = NULL \
                     WHERE aggregation_claim IS NOT NULL AND aggregation_claim {DEAD} \
                     RETURNING id AS job_id"
                ))
                .bind(stale_before)
                .fetch_all(&mut *tx)
                .await?,
            );
            let mut jobs: Vec<JobId> = jobs.into_iter().map(Int::get).collect();
            sqlx::query("DELETE FROM instances WHERE seen_at < $1")
                .bind(stale_before)
                .execute(&mut *tx)
                .await?;
            jobs.sort_unstable();
            jobs.dedup();
            self.notify(&mut tx, jobs.iter().copied()).await?;
            tx.commit().await?;
            Ok(jobs)
        })
    }

    /// Publishes the workers connected to `instance` (JSON), for the others.
    pub async fn publish_workers(&self, instance: &str, workers: &str) -> Result<(), StoreError> {
        sqlx::query("UPDATE instances SET workers = $2 WHERE id = $1")
            .bind(instance)
            .bind(workers)
            .write_once(self)
            .await?;
        Ok(())
    }

    /// The workers other live instances published (JSON each).
    pub async fn other_instances_workers(
        &self,
        instance: &str,
        stale_before: f64,
    ) -> Result<Vec<String>, StoreError> {
        Ok(sqlx::query_scalar(
            "SELECT workers FROM instances WHERE id <> $1 AND seen_at >= $2 \
             AND workers IS NOT NULL",
        )
        .bind(instance)
        .bind(stale_before)
        .fetch_all(&self.pool)
        .await?)
    }
}

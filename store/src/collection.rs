//! What the collector may delete: the blobs of aggregated rounds and of
//! finished jobs, and whether anything still names a blob.

use std::time::Duration;

use crate::columns::{Int, Text};
use crate::db::{Db, UNFINISHED, WriteOnce, now};
use crate::error::StoreError;
use oblivion_protocol::{BlobId, JobId};

/// The default age below which the collector leaves an artifact alone
/// (`gc_grace_secs`): a job being created writes its blobs and records its
/// row within seconds, far inside it.
pub const COLLECTION_GRACE: Duration = Duration::from_secs(120);

impl Db {
    /// Updates of aggregated rounds whose blobs are still to collect:
    /// (job, round, shard, blob), at most `limit`.
    pub async fn collectable_updates(
        &self,
        limit: u32,
    ) -> Result<Vec<(JobId, u32, u32, BlobId)>, StoreError> {
        type Collectable = (Int<JobId>, Int<u32>, Int<u32>, Text<BlobId>);
        let updates: Vec<Collectable> = sqlx::query_as(
            "SELECT u.job_id, u.round, u.shard, u.update_sha FROM updates u \
             WHERE u.collected = 0 AND EXISTS \
             (SELECT 1 FROM rounds r WHERE r.job_id = u.job_id AND r.round = u.round) \
             ORDER BY u.job_id, u.round, u.shard LIMIT $1",
        )
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        Ok(updates
            .into_iter()
            .map(|(job, round, shard, blob)| (job.get(), round.get(), shard.get(), blob.get()))
            .collect())
    }

    /// Marks an update's blob collected.
    pub async fn update_collected(
        &self,
        job: JobId,
        round: u32,
        shard: u32,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE updates SET collected = 1 WHERE job_id = $1 AND round = $2 AND shard = $3",
        )
        .bind(job.db())
        .bind(i64::from(round))
        .bind(i64::from(shard))
        .write_once(self)
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
    ) -> Result<Vec<(JobId, Vec<BlobId>)>, StoreError> {
        let ids: Vec<(Int<JobId>, Text<BlobId>)> = sqlx::query_as(&format!(
            "SELECT id, validation_sha FROM jobs WHERE status NOT IN {UNFINISHED} \
             AND collected_at IS NULL ORDER BY id LIMIT $1"
        ))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        let mut out = Vec::with_capacity(ids.len());
        for (job, validation) in ids {
            let job = job.get();
            let mut blobs = vec![validation.get()];
            // A slot without data (a federated job's) holds empty text.
            let held: Vec<Text<Option<BlobId>>> = sqlx::query_scalar(
                "SELECT data_sha AS sha FROM job_shards WHERE job_id = $1 \
                 UNION SELECT update_sha AS sha FROM updates WHERE job_id = $1 \
                 UNION SELECT global_sha AS sha FROM rounds WHERE job_id = $1 AND round <= \
                 (SELECT COALESCE(MAX(round), 0) FROM rounds WHERE job_id = $1) - $2",
            )
            .bind(job.db())
            .bind(i64::from(keep_rounds))
            .fetch_all(&self.pool)
            .await?;
            blobs.extend(held.into_iter().filter_map(Text::get));
            out.push((job, blobs));
        }
        Ok(out)
    }

    /// Marks a finished job's artifacts collected.
    pub async fn job_collected(&self, job: JobId) -> Result<(), StoreError> {
        sqlx::query("UPDATE jobs SET collected_at = $2 WHERE id = $1")
            .bind(job.db())
            .bind(now())
            .write_once(self)
            .await?;
        Ok(())
    }

    /// Whether anything still needs the blob: an unfinished job's
    /// shards, validation split or round weights, any job's current
    /// model, the kept round weights of a finished job, an update of a
    /// round not yet aggregated, or an inference job's outputs.
    pub async fn is_referenced(&self, blob: BlobId, keep_rounds: u32) -> Result<bool, StoreError> {
        let used: i64 = sqlx::query_scalar(&format!(
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
             OR EXISTS (SELECT 1 FROM inference_results WHERE outputs_sha = $1) \
             THEN 1 ELSE 0 END AS BIGINT)"
        ))
        .bind(blob.hex())
        .bind(i64::from(keep_rounds))
        .fetch_one(&self.pool)
        .await?;
        Ok(used == 1)
    }
}

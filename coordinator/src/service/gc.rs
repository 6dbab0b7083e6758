//! Garbage collection of artifacts nobody references any more: the
//! updates of aggregated rounds, and the data shards, validation split,
//! updates and older round weights of finished jobs (completed, failed or
//! cancelled), keeping each job's current model and the weights of its
//! last `keep_rounds` rounds. Paid jobs never funded within
//! `funding_timeout` are cancelled first (so theirs go too), paid jobs
//! unfinished at their deposit's deadline fail (no settlement can be
//! issued after it), and uploaded
//! datasets no unfinished job names are deleted `unused_upload_ttl` after
//! their upload: neither may fill the disk for ever.
//!
//! Blobs are content-addressed, so one may serve several jobs: a blob is
//! deleted only if the database shows no remaining use of it, and only if
//! it was not written (or re-written, which refreshes it) during the grace
//! period, which covers a job being created with that same blob right now.

use std::time::SystemTime;

use oblivion_protocol::BlobId;
use oblivion_protocol::api::JobStatus;

use super::jobs::Jobs;
use crate::error::AppError;

/// Rows looked at per pass.
const BATCH: u32 = 500;

/// What one pass did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Collected {
    /// Blobs deleted.
    pub deleted: u64,
    /// Blobs kept because something still uses them, or they are recent.
    pub kept: u64,
}

impl Jobs {
    /// Runs passes forever, one every `gc_interval` (none if it is zero).
    pub(super) async fn collect_garbage_forever(&self) {
        if self.config.collection.gc_interval.is_zero() {
            return;
        }
        let mut tick = tokio::time::interval(self.config.collection.gc_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            match self.collect_garbage().await {
                Ok(c) if c.deleted > 0 => tracing::info!(c.deleted, c.kept, "artifacts collected"),
                Ok(_) => {}
                Err(e) => tracing::error!("collecting artifacts: {}", e.message),
            }
        }
    }

    /// One pass.
    pub async fn collect_garbage(&self) -> Result<Collected, AppError> {
        let keep = self.config.collection.keep_rounds;
        let before = SystemTime::now() - self.config.collection.gc_grace;
        let mut done = Collected::default();
        let now = oblivion_store::now();
        for job in self
            .db
            .unfunded_jobs(
                now - self.config.collection.funding_timeout.as_secs_f64(),
                BATCH,
            )
            .await
            .map_err(AppError::db)?
        {
            let why = format!(
                "not funded within {} s of its creation",
                self.config.collection.funding_timeout.as_secs()
            );
            // Funded meanwhile, or cancelled: the guarded transition says no.
            if self
                .rounds
                .finish(job, JobStatus::Cancelled, Some(&why))
                .await
                .is_ok()
            {
                tracing::info!(%job, "{why}: cancelled");
            }
        }
        for job in self
            .db
            .jobs_past_deadline(now, BATCH)
            .await
            .map_err(AppError::db)?
        {
            let why = "its deposit's deadline passed before it finished, so it can no longer be \
                       settled; the deposit goes back to its creator";
            if self
                .rounds
                .finish(job, JobStatus::Failed, Some(why))
                .await
                .is_ok()
            {
                tracing::info!(%job, "{why}: failed");
            }
        }
        // Each batch of blobs is decided, then what the database has
        // committed so far is made durable (`delete_all`), then they go:
        // a power cut cannot bring back a row naming a deleted blob.
        let mut doomed = Vec::new();
        for (file, owner) in self
            .db
            .unused_uploads(
                now - self.config.collection.unused_upload_ttl.as_secs_f64(),
                BATCH,
            )
            .await
            .map_err(AppError::db)?
        {
            let held = self
                .db
                .forget_upload(file, &owner)
                .await
                .map_err(AppError::db)?;
            if !held {
                self.collect(file, keep, before, &mut done, &mut doomed)
                    .await?;
            }
        }
        self.delete_all(&mut doomed, &mut done).await?;
        let updates = self
            .db
            .collectable_updates(BATCH)
            .await
            .map_err(AppError::db)?;
        for &(_, _, _, update) in &updates {
            self.collect(update, keep, before, &mut done, &mut doomed)
                .await?;
        }
        self.delete_all(&mut doomed, &mut done).await?;
        for (job, round, shard, _) in updates {
            self.db
                .update_collected(job, round, shard)
                .await
                .map_err(AppError::db)?;
        }
        let jobs = self
            .db
            .collectable_jobs(keep, BATCH)
            .await
            .map_err(AppError::db)?;
        let mut gone = Vec::with_capacity(jobs.len());
        for (_, blobs) in &jobs {
            let mut all_gone = true;
            for &blob in blobs {
                all_gone &= self
                    .collect(blob, keep, before, &mut done, &mut doomed)
                    .await?;
            }
            gone.push(all_gone);
        }
        self.delete_all(&mut doomed, &mut done).await?;
        for ((job, _), all_gone) in jobs.into_iter().zip(gone) {
            // A job whose blobs were too recent to go is looked at again.
            if all_gone {
                self.db.job_collected(job).await.map_err(AppError::db)?;
            }
        }
        Ok(done)
    }

    /// Deletes `blob` unless it is in use or was written after `before`.
    /// Returns whether it is gone (or is to go: added to `doomed`), or
    /// kept for good (in use).
    async fn collect(
        &self,
        blob: BlobId,
        keep: u32,
        before: SystemTime,
        done: &mut Collected,
        doomed: &mut Vec<BlobId>,
    ) -> Result<bool, AppError> {
        if self
            .db
            .is_referenced(blob, keep)
            .await
            .map_err(AppError::db)?
        {
            done.kept += 1;
            return Ok(true);
        }
        match self.artifacts.modified(blob).await.map_err(AppError::io)? {
            None => Ok(true),
            Some(written) if written > before => {
                done.kept += 1;
                Ok(false)
            }
            Some(_) => {
                doomed.push(blob);
                Ok(true)
            }
        }
    }

    /// Deletes `doomed`, once what the database has committed so far is
    /// durable (the rows that stopped naming them among it).
    async fn delete_all(
        &self,
        doomed: &mut Vec<BlobId>,
        done: &mut Collected,
    ) -> Result<(), AppError> {
        if doomed.is_empty() {
            return Ok(());
        }
        self.db.make_durable().await.map_err(AppError::db)?;
        for blob in doomed.drain(..) {
            self.artifacts.delete(blob).await.map_err(AppError::io)?;
            done.deleted += 1;
        }
        Ok(())
    }
}

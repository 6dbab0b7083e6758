//! Keeping this instance's derived state in step with a database other
//! instances change too (PostgreSQL): every change to a job is announced
//! with NOTIFY; this instance LISTENs, collects the changed jobs for a few
//! milliseconds, and reloads each from the database (a new job starts
//! dispatching here at once, a round another instance aggregated moves on
//! here, shards leased or finished elsewhere are no longer planned). It
//! also publishes its own workers and reads the others', so that every
//! instance shows the whole network.

use oblivion_protocol::{JobId, WorkerId};
use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use oblivion_protocol::api::WorkerView;
use sqlx::postgres::PgListener;

use super::{Coordinator, lock};
use crate::error::AppError;
use oblivion_store::{JOBS_CHANNEL, now};

/// What this instance knows of the others sharing its database.
#[derive(Default)]
pub(super) struct Peers {
    /// Jobs other instances changed, to reload from the database.
    pub(super) dirty: Mutex<BTreeSet<JobId>>,
    /// Wakes the task that reloads them.
    pub(super) dirty_signal: tokio::sync::Notify,
    /// Workers connected to the other instances, as they last published.
    pub(super) workers: Mutex<Vec<WorkerView>>,
}

/// A dirty-set entry meaning "reload every unfinished job" (after missed
/// notifications).
const RESCAN: JobId = JobId(0);

/// How long changes are collected before they are applied together.
const COALESCE: Duration = Duration::from_millis(20);

impl Coordinator {
    /// Marks `job` to be reloaded from the database.
    pub(super) fn mark_dirty(&self, job: JobId) {
        lock(&self.peers.dirty).insert(job);
        self.peers.dirty_signal.notify_one();
    }

    /// Marks every job to be reloaded (a safety net, now and then: the
    /// hub is derived state and may always be rebuilt).
    pub(super) fn resync_all(&self) {
        self.mark_dirty(RESCAN);
    }

    /// Listens for changed jobs (PostgreSQL), forever; after any gap in
    /// listening, everything is reloaded.
    pub(super) async fn listen(self: Arc<Self>, url: String) {
        loop {
            match PgListener::connect(&url).await {
                Ok(mut listener) => match listener.listen(JOBS_CHANNEL).await {
                    Ok(()) => {
                        self.mark_dirty(RESCAN);
                        loop {
                            match listener.recv().await {
                                Ok(n) => {
                                    if let Ok(job) = n.payload().parse::<JobId>() {
                                        self.mark_dirty(job);
                                    }
                                }
                                Err(e) => {
                                    tracing::warn!("listening for job changes: {e}");
                                    self.mark_dirty(RESCAN);
                                    break;
                                }
                            }
                        }
                    }
                    Err(e) => tracing::warn!("cannot listen for job changes: {e}"),
                },
                Err(e) => tracing::warn!("cannot connect to listen for job changes: {e}"),
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }

    /// Applies marked changes, forever.
    pub(super) async fn apply_changes(self: Arc<Self>) {
        loop {
            self.peers.dirty_signal.notified().await;
            tokio::time::sleep(COALESCE).await;
            let jobs: BTreeSet<JobId> = std::mem::take(&mut *lock(&self.peers.dirty));
            if jobs.contains(&RESCAN) {
                if let Err(e) = self.rescan().await {
                    tracing::error!("reloading jobs: {}", e.message);
                }
            } else {
                for job in jobs {
                    if let Err(e) = self.refresh_job(job).await {
                        tracing::error!(%job, "reloading the job: {}", e.message);
                    }
                }
            }
            self.request_pump();
        }
    }

    /// Reloads every unfinished job, and every job the hub holds.
    async fn rescan(self: &Arc<Self>) -> Result<(), AppError> {
        let mut jobs: BTreeSet<JobId> = self.hub().jobs.keys().copied().collect();
        for row in self.db.unfinished_jobs().await.map_err(AppError::db)? {
            jobs.insert(row.id);
        }
        for job in jobs {
            self.refresh_job(job).await?;
        }
        Ok(())
    }

    /// Brings the hub's view of `job` in line with the database.
    pub(super) async fn refresh_job(self: &Arc<Self>, id: JobId) -> Result<(), AppError> {
        let Some(row) = self.db.job(id).await.map_err(AppError::db)? else {
            return Ok(());
        };
        if row.status == oblivion_protocol::api::JobStatus::Funding {
            // Not trained until its deposit is confirmed.
            return Ok(());
        }
        if row.status.is_finished() {
            let ended = self.hub().remove_job(id);
            if !ended.is_empty() {
                lock(&self.data.validation).remove(&id);
                self.settle_ended(ended, &format!("job {}", row.status.as_str()))
                    .await;
                self.jobs_changed();
            }
            return Ok(());
        }
        let known = self.hub().jobs.get(&id).map(|j| j.round);
        match known {
            None => {
                self.resume(row.clone()).await?;
                self.jobs_changed();
            }
            Some(round) if round < row.round => {
                let global = Arc::new(self.weights(row.global_sha).await?);
                self.hub()
                    .next_round(id, row.round, row.global_sha, global, &row.round_replicas);
                self.jobs_changed();
            }
            Some(_) => {
                // Another instance may have asked a third opinion.
                self.hub().set_replicas(id, row.round, &row.round_replicas);
            }
        }
        let (done, leased) = self
            .db
            .round_state(id, row.round)
            .await
            .map_err(AppError::db)?;
        let remote: Vec<(u32, WorkerId)> = leased
            .into_iter()
            .filter(|(_, _, instance)| *instance != self.instance)
            .map(|(shard, worker, _)| (shard, worker))
            .collect();
        let complete = {
            let mut hub = self.hub();
            if let Some(job) = hub.jobs.get_mut(&id) {
                job.status = row.status;
            }
            hub.sync_shards(id, row.round, &done, &remote);
            hub.jobs.get(&id).is_some_and(|j| j.round_complete())
        };
        if complete && !lock(&self.in_flight.aggregating).contains(&id) {
            tokio::spawn(self.clone().aggregate(id, row.round));
        }
        Ok(())
    }

    /// Publishes this instance's workers and reads the other instances'.
    pub(super) async fn exchange_workers(&self) {
        let mine = self.hub().worker_views(self.clock());
        match serde_json::to_string(&mine) {
            Ok(json) => {
                if let Err(e) = self.db.publish_workers(&self.instance, &json).await {
                    tracing::error!("publishing this instance's workers: {e}");
                }
            }
            Err(e) => tracing::error!("encoding this instance's workers: {e}"),
        }
        let stale_before = now() - self.config.leases.instance_timeout.as_secs_f64();
        match self
            .db
            .other_instances_workers(&self.instance, stale_before)
            .await
        {
            Ok(lists) => {
                let others: Vec<WorkerView> = lists
                    .iter()
                    .filter_map(|json| serde_json::from_str::<Vec<WorkerView>>(json).ok())
                    .flatten()
                    .collect();
                *lock(&self.peers.workers) = others;
            }
            Err(e) => tracing::error!("reading the other instances' workers: {e}"),
        }
    }
}

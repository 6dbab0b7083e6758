//! Rounds: a job's life in the hub, from the round it starts at to the
//! end. Updates come in (`updates`), rounds close on their quorum, complete
//! rounds are aggregated (`aggregation`) and the next one starts; jobs
//! stored or changed by another instance are brought into the hub, and a
//! job ends here. Uses dispatch for the leases; no service uses it but the
//! ones above it (jobs, payments, sync).

mod aggregation;
mod updates;

use oblivion_protocol::{JobId, LeaseId, WorkerId};
use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex};

use oblivion_ml::data::Dataset;
use oblivion_protocol::api::JobStatus;

use super::chain_link::ChainLink;
use super::dispatch::Dispatch;
use super::shared::{JobsVersion, Parts, arch_of, lock, scaling_of, weights};
use crate::config::Config;
use crate::error::AppError;
use crate::hub::{Admission, LiveJob, RoundProgress, Shard, ShardState, Weights};
use oblivion_store::{Artifacts, Db, JobRefusal, JobRow, UpdateCommitter};

/// The rounds of the jobs this instance trains.
pub struct Rounds {
    config: Arc<Config>,
    db: Db,
    artifacts: Artifacts,
    /// This process's name in the database (aggregation claims).
    instance: Arc<str>,
    dispatch: Arc<Dispatch>,
    jobs_version: Arc<JobsVersion>,
    /// The chain paid jobs settle on, if any (a paid job's lease horizon).
    chain: Option<Arc<ChainLink>>,
    /// Records accepted updates in batches (group commit).
    committer: UpdateCommitter,
    /// Jobs this instance is aggregating now.
    aggregating: Mutex<HashSet<JobId>>,
    /// Leases whose update is being uploaded now.
    uploads: Mutex<HashSet<LeaseId>>,
    /// Each running job's validation split, decoded.
    validation: Mutex<HashMap<JobId, Arc<Dataset>>>,
}

impl Rounds {
    /// Rounds over `dispatch`, with no job yet.
    pub(super) fn new(parts: &Parts, dispatch: Arc<Dispatch>) -> Rounds {
        let parts = parts.clone();
        let batch = parts.config.storage.update_batch as usize;
        Rounds {
            committer: UpdateCommitter::start(parts.db.clone(), batch),
            config: parts.config,
            db: parts.db,
            artifacts: parts.artifacts,
            instance: parts.instance,
            dispatch,
            jobs_version: parts.jobs_version,
            chain: parts.chain,
            aggregating: Mutex::new(HashSet::new()),
            uploads: Mutex::new(HashSet::new()),
            validation: Mutex::new(HashMap::new()),
        }
    }

    /// Starts training a job just stored: its validation split is kept
    /// decoded, and its slots go out with the next dispatch pass.
    pub(super) fn start_job(&self, live: LiveJob, validation: Arc<Dataset>) {
        let id = live.id;
        lock(&self.validation).insert(id, validation);
        self.dispatch.hub().jobs.insert(id, live);
        self.dispatch.request_pump();
    }

    /// Once a second: closes the rounds whose quorum is in, and aggregates
    /// complete rounds nobody is aggregating (another instance's that
    /// stopped, or one whose aggregation was delayed).
    pub(super) async fn tick(self: &Arc<Self>) {
        self.close_rounds_on_quorum().await;
        let complete: Vec<(JobId, u32)> = self
            .dispatch
            .hub()
            .jobs
            .values()
            .filter(|j| j.round_complete())
            .map(|j| (j.id, j.round))
            .collect();
        for (job, round) in complete {
            if !lock(&self.aggregating).contains(&job) {
                tokio::spawn(self.clone().aggregate(job, round));
            }
        }
    }

    /// Puts a stored, unfinished job into the hub, as the database has it.
    pub(super) async fn resume(self: &Arc<Self>, row: JobRow) -> Result<(), AppError> {
        let arch = Arc::new(arch_of(&row)?);
        let normalization = scaling_of(&row)?;
        let kind =
            crate::kind::kind_of(&row.spec).map_err(|e| AppError::internal(e.to_string()))?;
        let global = Arc::new(weights(&self.artifacts, row.global_sha).await?);
        let done: HashMap<u32, WorkerId> = self
            .db
            .round_updates(row.id, row.round)
            .await
            .map_err(AppError::db)?
            .into_iter()
            .map(|u| (u.shard, u.worker_id))
            .collect();
        let shards: Vec<Shard> = self
            .db
            .job_shards(row.id)
            .await
            .map_err(AppError::db)?
            .into_iter()
            .enumerate()
            .map(|(i, (data, samples))| Shard::pending(i as u32, data, samples))
            .collect();
        let trainers = row.spec.restricted_to(row.creator.as_deref());
        let leases_until = match &self.chain {
            Some(link) if row.spec.reward().is_some() => self
                .db
                .payment(row.id)
                .await
                .map_err(AppError::db)?
                .and_then(|p| p.deadline)
                .map(|d| {
                    link.config
                        .leases_until(d, self.config.leases.lease_max_lifetime)
                }),
            _ => None,
        };
        let mut live = LiveJob {
            id: row.id,
            spec: row.spec,
            arch,
            status: row.status,
            round: row.round,
            global: Weights {
                blob: row.global_sha,
                params: global,
            },
            base_shards: shards.len(),
            shards,
            kind,
            scaling: normalization,
            admission: Admission {
                trainers,
                until: leases_until,
            },
            progress: RoundProgress {
                backed_up_by: self
                    .db
                    .round_backup_identities(row.id, row.round)
                    .await
                    .map_err(AppError::db)?,
                ..RoundProgress::default()
            },
        };
        live.set_replicas(&row.round_replicas);
        for (slot, shard) in live.shards.iter_mut().enumerate() {
            if let Some(&worker) = done.get(&(slot as u32)) {
                shard.state = ShardState::Done { worker };
            }
        }
        // A round closed on its quorum counts only the updates it has.
        let slots = self.db.round_slots(row.id).await.map_err(AppError::db)? as usize;
        live.progress.closed = live.spec.training().is_some_and(|t| t.quorum.is_some())
            && done.len() >= slots
            && slots < live.shards.len();
        let complete = live.round_complete();
        self.dispatch.hub().jobs.insert(row.id, live);
        if complete {
            tokio::spawn(self.clone().aggregate(row.id, row.round));
        }
        Ok(())
    }

    /// Reloads every unfinished job, and every job the hub holds.
    pub(super) async fn rescan(self: &Arc<Self>) -> Result<(), AppError> {
        let mut jobs: BTreeSet<JobId> = self.dispatch.hub().jobs.keys().copied().collect();
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
            let ended = self.dispatch.hub().remove_job(id);
            if !ended.is_empty() {
                lock(&self.validation).remove(&id);
                self.dispatch
                    .settle_ended(ended, &format!("job {}", row.status.as_str()))
                    .await;
                self.jobs_version.bump();
            }
            return Ok(());
        }
        let known = self.dispatch.hub().jobs.get(&id).map(|j| j.round);
        match known {
            None => {
                self.resume(row.clone()).await?;
                self.jobs_version.bump();
            }
            Some(round) if round < row.round => {
                let global = Arc::new(weights(&self.artifacts, row.global_sha).await?);
                self.dispatch.hub().next_round(
                    id,
                    row.round,
                    Weights {
                        blob: row.global_sha,
                        params: global,
                    },
                    &row.round_replicas,
                );
                self.jobs_version.bump();
            }
            Some(_) => {
                // Another instance may have asked a third opinion.
                self.dispatch
                    .hub()
                    .set_replicas(id, row.round, &row.round_replicas);
            }
        }
        let (done, leased) = self
            .db
            .round_state(id, row.round)
            .await
            .map_err(AppError::db)?;
        let remote: Vec<(u32, WorkerId)> = leased
            .into_iter()
            .filter(|(_, _, instance)| **instance != *self.instance)
            .map(|(shard, worker, _)| (shard, worker))
            .collect();
        let complete = {
            let mut hub = self.dispatch.hub();
            if let Some(job) = hub.jobs.get_mut(&id) {
                job.status = row.status;
            }
            hub.sync_shards(id, row.round, &done, &remote);
            hub.jobs.get(&id).is_some_and(|j| j.round_complete())
        };
        if complete && !lock(&self.aggregating).contains(&id) {
            tokio::spawn(self.clone().aggregate(id, row.round));
        }
        Ok(())
    }

    /// Ends an unfinished job as `status` (cancelled or failed) in the
    /// database, then revokes its leases here.
    pub(super) async fn finish(
        &self,
        id: JobId,
        status: JobStatus,
        error: Option<&str>,
    ) -> Result<(), AppError> {
        self.db
            .finish_job(id, status, error)
            .await
            .map_err(AppError::db)?
            .map_err(|refusal| match refusal {
                JobRefusal::Missing => AppError::not_found(format!("no job {id}")),
                JobRefusal::State(s) => {
                    AppError::conflict(format!("job {id} is already {}", s.as_str()))
                }
            })?;
        let ended = self.dispatch.hub().remove_job(id);
        lock(&self.validation).remove(&id);
        self.jobs_version.bump();
        // The database revoked them with the status change; this tells the
        // holders (and is a no-op on the rows).
        self.dispatch
            .settle_ended(ended, &format!("job {}", status.as_str()))
            .await;
        Ok(())
    }

    /// Fails a job for `message` (logged; the job's end recorded).
    pub(super) async fn fail(&self, id: JobId, message: &str) {
        tracing::error!(job = %id, "job failed: {message}");
        if let Err(e) = self.finish(id, JobStatus::Failed, Some(message)).await {
            tracing::error!("recording failure of job {id}: {}", e.message);
        }
    }

    /// Closes the rounds whose quorum is in and has waited its time (see
    /// [`oblivion_protocol::aggregation::QuorumSpec`]): in the database
    /// first, then here; their leases still out are revoked, and they are
    /// aggregated with the updates they have.
    async fn close_rounds_on_quorum(self: &Arc<Self>) {
        let due = self.dispatch.hub().quorum_due(self.dispatch.clock());
        for (job, round, needed) in due {
            match self
                .db
                .close_round_on_quorum(job, round, needed as u32)
                .await
            {
                Ok(true) => {
                    tracing::info!(%job, round, "round closed on its quorum");
                    let ended = self.dispatch.hub().close_round(job, round);
                    self.dispatch
                        .settle_ended(ended, "the round closed on its quorum")
                        .await;
                    self.jobs_version.bump();
                }
                Ok(false) => {}
                Err(e) => tracing::error!(%job, round, "closing a round on its quorum: {e}"),
            }
        }
    }
}

//! The coordinator: the [`Hub`]'s decisions carried out against the
//! database, the artifact store and the workers' connections.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use oblivion_ml::data::{Dataset, Normalization, decode_shard, encode_shard};
use oblivion_ml::model::Architecture;
use oblivion_ml::params::Params;
use oblivion_ml::train::evaluate;
use oblivion_ml::weights::{check_params, initial_params};
use oblivion_ml::{ComputeDevice, export};
use oblivion_protocol::JobSpec;
use oblivion_protocol::api::{JobStatus, JobView, NetworkSnapshot, RoundMetrics, WorkerView};
use oblivion_protocol::wire::{CoordinatorMessage, LeaseProgress};
use tokio::sync::mpsc::UnboundedSender;

use crate::config::Config;
use crate::datasets;
use crate::error::AppError;
use crate::hub::{Ended, Hub, LeasePolicy, LiveJob, Refusal, Shard, ShardState, Worker};
use crate::store::{Artifacts, Db, JobRow, RoundRow, UpdateRow, now};

/// Answer to an accepted update.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct UpdateReceipt {
    /// Always true (rejections are 4xx answers).
    pub accepted: bool,
    /// Samples credited to the worker: the shard's size.
    pub credited_samples: u64,
}

/// Model download formats.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ModelFormat {
    /// safetensors.
    Safetensors,
    /// ONNX.
    Onnx,
    /// burn's record (burnpack).
    Burn,
}

impl ModelFormat {
    /// Parses `onnx`, `safetensors` or `burn`.
    pub fn parse(s: &str) -> Option<ModelFormat> {
        match s {
            "safetensors" => Some(ModelFormat::Safetensors),
            "onnx" => Some(ModelFormat::Onnx),
            "burn" => Some(ModelFormat::Burn),
            _ => None,
        }
    }

    /// File extension.
    pub fn extension(self) -> &'static str {
        match self {
            ModelFormat::Safetensors => "safetensors",
            ModelFormat::Onnx => "onnx",
            ModelFormat::Burn => "bpk",
        }
    }
}

/// The running coordinator.
pub struct Coordinator {
    /// Settings.
    pub config: Config,
    db: Db,
    artifacts: Artifacts,
    hub: Mutex<Hub>,
    validation: Mutex<HashMap<u64, Arc<Dataset>>>,
    /// Bumped whenever stored job state changes (see [`NetworkSnapshot`]).
    jobs_version: AtomicU64,
}

/// Runs CPU-heavy work (decoding, averaging, evaluation) off the async runtime.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, AppError> + Send + 'static,
) -> Result<T, AppError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| AppError::internal(format!("worker thread failed: {e}")))?
}

fn ml_internal(e: oblivion_ml::MlError) -> AppError {
    AppError::internal(e.to_string())
}

impl Coordinator {
    /// Opens storage, resumes unfinished jobs and starts the lease reaper.
    pub async fn start(config: Config) -> anyhow::Result<Arc<Coordinator>> {
        tokio::fs::create_dir_all(&config.data_dir).await?;
        let db = Db::open(&config.data_dir.join("oblivion.db")).await?;
        let artifacts = Artifacts::open(&config.data_dir.join("artifacts")).await?;
        let stale = db.end_all_active_leases("coordinator restarted").await?;
        let (last_lease, last_worker) = db.max_ids().await?;
        let policy = LeasePolicy {
            cap: config.lease_cap,
            ttl: config.lease_ttl,
        };
        let coordinator = Arc::new(Coordinator {
            config,
            db,
            artifacts,
            hub: Mutex::new(Hub::new(policy, last_lease, last_worker)),
            validation: Mutex::new(HashMap::new()),
            jobs_version: AtomicU64::new(0),
        });
        let mut resumed = 0;
        for row in coordinator.db.jobs().await? {
            if row.status.is_finished() {
                continue;
            }
            let id = row.id;
            match coordinator.resume(row).await {
                Ok(()) => resumed += 1,
                Err(e) => coordinator.fail(id, &e.message).await,
            }
        }
        tracing::info!(resumed, stale_leases = stale, "state loaded");
        let reaper = coordinator.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(std::time::Duration::from_millis(500));
            loop {
                tick.tick().await;
                reaper.reap().await;
            }
        });
        Ok(coordinator)
    }

    fn jobs_changed(&self) {
        self.jobs_version.fetch_add(1, Ordering::Relaxed);
    }

    /// The live state of the network, as `GET /api/events` pushes it.
    pub fn snapshot(&self) -> NetworkSnapshot {
        let hub = self.hub();
        let workers = hub.worker_views(now());
        NetworkSnapshot {
            samples_per_second: workers.iter().map(|w| w.samples_per_second).sum::<f64>() + 0.0,
            workers,
            jobs: hub.live_jobs(),
            jobs_version: self.jobs_version.load(Ordering::Relaxed),
        }
    }

    fn hub(&self) -> MutexGuard<'_, Hub> {
        // A panic while holding the lock would be a bug; the state is still
        // consistent enough to keep serving, so recover the guard.
        self.hub.lock().unwrap_or_else(|p| p.into_inner())
    }

    async fn weights(&self, sha: &str) -> Result<Params, AppError> {
        let bytes = self
            .artifacts
            .get(sha)
            .await
            .map_err(AppError::io)?
            .ok_or_else(|| AppError::internal(format!("weights {sha} are missing from storage")))?;
        blocking(move || {
            Params::from_safetensors(&bytes)
                .map(|(p, _)| p)
                .map_err(|e| AppError::internal(format!("stored weights are unreadable: {e}")))
        })
        .await
    }

    fn arch_of(row: &JobRow) -> Result<Architecture, AppError> {
        Architecture::new(row.spec.model.clone(), row.input_shape.clone(), row.classes)
            .map_err(|e| AppError::internal(e.to_string()))
    }

    /// Puts a stored, unfinished job back into the hub.
    async fn resume(self: &Arc<Self>, row: JobRow) -> Result<(), AppError> {
        let arch = Arc::new(Self::arch_of(&row)?);
        let global = Arc::new(self.weights(&row.global_sha).await?);
        let done: HashMap<u32, u64> = self
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
            .map(|(i, (data_sha, samples))| Shard {
                data_sha,
                samples,
                state: match done.get(&(i as u32)) {
                    Some(&worker) => ShardState::Done { worker },
                    None => ShardState::Pending,
                },
                attempts: 0,
                refused_by: Vec::new(),
            })
            .collect();
        let round_done = shards
            .iter()
            .all(|s| matches!(s.state, ShardState::Done { .. }));
        self.hub().jobs.insert(
            row.id,
            LiveJob {
                id: row.id,
                spec: row.spec,
                arch,
                status: row.status,
                round: row.round,
                global_sha: row.global_sha,
                global,
                shards,
                aggregating: round_done,
            },
        );
        if round_done {
            tokio::spawn(self.clone().aggregate(row.id));
        }
        Ok(())
    }

    /// Validates data against a spec, prepares shards and initial weights,
    /// stores the job and starts handing out its shards.
    pub async fn create_job(self: &Arc<Self>, spec: JobSpec) -> Result<u64, AppError> {
        let dataset = datasets::load(&spec.dataset, &self.artifacts).await?;
        let arch = Architecture::new(spec.model.clone(), dataset.shape.clone(), dataset.classes)
            .map_err(|e| AppError::unprocessable(e.to_string()).with_field("dataset"))?;
        let prepared = {
            let spec = spec.clone();
            blocking(move || {
                let (mut train, mut val) = dataset.split(spec.validation_split, spec.seed);
                let normalization = (!train.is_image()).then(|| {
                    let n = train.normalization();
                    train.normalize(&n);
                    val.normalize(&n);
                    n
                });
                if train.len() < spec.shards_per_round as usize {
                    return Err(AppError::unprocessable(format!(
                        "shards_per_round: {} shards but only {} training samples",
                        spec.shards_per_round,
                        train.len()
                    ))
                    .with_field("shards_per_round"));
                }
                let shards: Vec<(Vec<u8>, u64)> = train
                    .chunks(spec.shards_per_round as usize)
                    .iter()
                    .map(|c| (encode_shard(c), c.len() as u64))
                    .collect();
                Ok((shards, encode_shard(&val), val, train.len(), normalization))
            })
            .await?
        };
        let (shard_blobs, val_blob, val, train_len, normalization) = prepared;
        let initial = initial_params(&arch, spec.seed).map_err(ml_internal)?;
        let mut shards = Vec::new();
        for (blob, samples) in &shard_blobs {
            shards.push((
                self.artifacts.put(blob).await.map_err(AppError::io)?,
                *samples,
            ));
        }
        let validation_sha = self.artifacts.put(&val_blob).await.map_err(AppError::io)?;
        let global_sha = self
            .artifacts
            .put(&initial.to_safetensors(None))
            .await
            .map_err(AppError::io)?;
        let row = JobRow {
            id: 0,
            spec: spec.clone(),
            status: JobStatus::Pending,
            round: 1,
            global_sha: global_sha.clone(),
            input_shape: arch.input_shape.clone(),
            classes: arch.classes,
            normalization: normalization.map(|n| serde_json::to_string(&n).unwrap_or_default()),
            validation_sha,
            train_samples: train_len as u64,
            validation_samples: val.len() as u64,
            round_started_at: now(),
            error: None,
            created_at: now() as i64,
        };
        let id = self
            .db
            .insert_job(&row, &shards)
            .await
            .map_err(AppError::db)?;
        self.validation_cache().insert(id, Arc::new(val));
        self.jobs_changed();
        self.hub().jobs.insert(
            id,
            LiveJob {
                id,
                spec,
                arch: Arc::new(arch),
                status: JobStatus::Pending,
                round: 1,
                global_sha,
                global: Arc::new(initial),
                shards: shards
                    .into_iter()
                    .map(|(data_sha, samples)| Shard {
                        data_sha,
                        samples,
                        state: ShardState::Pending,
                        attempts: 0,
                        refused_by: Vec::new(),
                    })
                    .collect(),
                aggregating: false,
            },
        );
        tracing::info!(job = id, "job created");
        self.pump().await;
        Ok(id)
    }

    fn validation_cache(&self) -> MutexGuard<'_, HashMap<u64, Arc<Dataset>>> {
        self.validation.lock().unwrap_or_else(|p| p.into_inner())
    }

    async fn validation_set(&self, row: &JobRow) -> Result<Arc<Dataset>, AppError> {
        if let Some(v) = self.validation_cache().get(&row.id) {
            return Ok(v.clone());
        }
        let bytes = self
            .artifacts
            .get(&row.validation_sha)
            .await
            .map_err(AppError::io)?
            .ok_or_else(|| AppError::internal("validation data is missing from storage"))?;
        let data = Arc::new(decode_shard(&bytes).map_err(ml_internal)?);
        self.validation_cache().insert(row.id, data.clone());
        Ok(data)
    }

    /// The API view of a job.
    pub async fn job_view(&self, id: u64) -> Result<JobView, AppError> {
        let row = self
            .db
            .job(id)
            .await
            .map_err(AppError::db)?
            .ok_or_else(|| AppError::not_found(format!("no job {id}")))?;
        let history = self.db.rounds(id).await.map_err(AppError::db)?;
        let mut view = self.view_of(row, history);
        view.contributors = self.db.contributors(id).await.map_err(AppError::db)?;
        Ok(view)
    }

    fn view_of(&self, row: JobRow, history: Vec<RoundMetrics>) -> JobView {
        let hub = self.hub();
        let status = hub.jobs.get(&row.id).map_or(row.status, |j| j.status);
        JobView {
            id: row.id,
            name: row.spec.name.clone(),
            status,
            round: row.round,
            rounds: row.spec.rounds,
            history,
            shards: hub.shard_views(row.id),
            active_workers: hub.active_workers(row.id),
            contributors: Vec::new(),
            error: row.error,
            spec: row.spec,
            train_samples: row.train_samples,
            validation_samples: row.validation_samples,
            created_at: row.created_at,
        }
    }

    /// All jobs, newest first.
    pub async fn jobs(&self) -> Result<Vec<JobView>, AppError> {
        let rows = self.db.jobs().await.map_err(AppError::db)?;
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            let history = self.db.rounds(row.id).await.map_err(AppError::db)?;
            out.push(self.view_of(row, history));
        }
        Ok(out)
    }

    /// Stops a job; its leases are revoked.
    pub async fn cancel_job(&self, id: u64) -> Result<JobView, AppError> {
        let view = self.job_view(id).await?;
        if view.status.is_finished() {
            return Err(AppError::conflict(format!(
                "job {id} is already {}",
                view.status.as_str()
            )));
        }
        let ended = self.hub().remove_job(id);
        self.settle_ended(ended, "job cancelled").await;
        self.db
            .set_status(id, JobStatus::Cancelled, None)
            .await
            .map_err(AppError::db)?;
        self.jobs_changed();
        self.job_view(id).await
    }

    async fn fail(&self, id: u64, message: &str) {
        tracing::error!(job = id, "job failed: {message}");
        let ended = self.hub().remove_job(id);
        self.settle_ended(ended, "job failed").await;
        if let Err(e) = self
            .db
            .set_status(id, JobStatus::Failed, Some(message))
            .await
        {
            tracing::error!("recording failure of job {id}: {e}");
        }
        self.jobs_changed();
    }

    /// Workers connected now.
    pub fn workers(&self) -> Vec<WorkerView> {
        self.hub().worker_views(now())
    }

    /// Registers a worker connection; returns its id and token.
    pub async fn connect_worker(
        self: &Arc<Self>,
        mut view: WorkerView,
        payout: Option<String>,
        max_leases: u32,
        tx: UnboundedSender<CoordinatorMessage>,
    ) -> Result<(u64, String), AppError> {
        let token = hex::encode(rand::random::<[u8; 24]>());
        view.id = self.hub().next_worker_id();
        self.db
            .insert_worker(&view, payout.as_deref())
            .await
            .map_err(AppError::db)?;
        let id = view.id;
        self.hub()
            .add_worker(Worker::new(view, token.clone(), tx, max_leases, now()));
        tracing::info!(worker = id, "worker connected");
        Ok((id, token))
    }

    /// Hands out work to a worker whose connection is ready.
    pub async fn worker_ready(&self) {
        self.pump().await;
    }

    /// Forgets a disconnected worker; its leases go back to pending.
    pub async fn disconnect_worker(&self, id: u64) {
        let (worker, ended) = self.hub().remove_worker(id);
        if let Some(w) = worker {
            tracing::info!(worker = id, leases = ended.len(), "worker disconnected");
            let mut view = w.view;
            view.connected = false;
            self.persist_worker(&view).await;
        }
        self.settle_ended(ended, "worker disconnected").await;
        self.pump().await;
    }

    /// Renews a worker's leases.
    pub fn heartbeat(&self, id: u64, progress: &[LeaseProgress]) {
        self.hub().heartbeat(id, progress, now());
    }

    /// A worker gives a lease back.
    pub async fn return_lease(&self, id: u64, lease: u64, reason: &str) {
        let ended = self.hub().return_lease(id, lease);
        self.settle_ended(ended.into_iter().collect(), reason).await;
        self.pump().await;
    }

    /// A worker takes no more leases.
    pub fn drain(&self, id: u64) {
        if let Some(w) = self.hub().workers.get_mut(&id) {
            w.draining = true;
        }
    }

    async fn persist_worker(&self, view: &WorkerView) {
        if let Err(e) = self.db.update_worker(view).await {
            tracing::error!("recording worker {}: {e}", view.id);
        }
    }

    /// Records ended leases and tells their holders.
    async fn settle_ended(&self, ended: Vec<Ended>, reason: &str) {
        for e in ended {
            let worker = {
                let hub = self.hub();
                hub.workers.get(&e.lease.worker).map(|w| {
                    let _ = w.tx.send(CoordinatorMessage::Revoke {
                        lease_id: e.lease.id,
                        reason: format!("{}: {reason}", e.status),
                    });
                    w.view.clone()
                })
            };
            tracing::info!(
                lease = e.lease.id,
                job = e.lease.job,
                shard = e.lease.shard,
                status = e.status,
                "lease ended"
            );
            if let Err(err) = self.db.end_lease(e.lease.id, e.status, reason).await {
                tracing::error!("recording lease {}: {err}", e.lease.id);
            }
            if let Some(view) = worker {
                self.persist_worker(&view).await;
            }
        }
    }

    /// Expires leases whose holders stopped sending heartbeats.
    async fn reap(&self) {
        let ended = self.hub().expire(now());
        if !ended.is_empty() {
            self.settle_ended(ended, "no heartbeat before the deadline")
                .await;
            self.pump().await;
        }
    }

    /// Hands pending shards to workers with room, and records the leases.
    async fn pump(&self) {
        let (issued, started) = {
            let mut hub = self.hub();
            let issued = hub.dispatch(now());
            let mut started = Vec::new();
            let mut records = Vec::new();
            for i in issued {
                let task = hub.task(&i.lease);
                if let (Some(task), Some(w)) = (task, hub.workers.get(&i.lease.worker)) {
                    let _ = w.tx.send(CoordinatorMessage::Lease(task));
                }
                if i.started_job {
                    started.push(i.lease.job);
                }
                records.push(i.lease);
            }
            (records, started)
        };
        for lease in issued {
            if let Err(e) = self
                .db
                .insert_lease(lease.id, lease.job, lease.round, lease.shard, lease.worker)
                .await
            {
                tracing::error!("recording lease {}: {e}", lease.id);
            }
        }
        for job in started {
            if let Err(e) = self.db.set_status(job, JobStatus::Running, None).await {
                tracing::error!("recording start of job {job}: {e}");
            }
            self.jobs_changed();
        }
    }

    /// Checks and stores a worker's update for `lease`.
    pub async fn submit_update(
        self: &Arc<Self>,
        token: &str,
        lease: u64,
        body: Vec<u8>,
    ) -> Result<UpdateReceipt, AppError> {
        let ctx = self.hub().update_context(token, lease).map_err(|r| match r {
            Refusal::UnknownWorker => AppError::new(
                axum::http::StatusCode::UNAUTHORIZED,
                "unknown worker token: connect over /api/workers/connect first",
            ),
            Refusal::NotHeld(id) => AppError::conflict(format!(
                "lease {id} is not held by this worker (it expired, was re-issued or never existed)"
            )),
        })?;
        // The body moves to the checking thread and back: no copy of up to
        // max_update_bytes on this path.
        let (checked, body) = {
            let (arch, bound) = (ctx.arch.clone(), ctx.norm_bound);
            blocking(move || Ok((check_update(&arch, bound, &body), body))).await?
        };
        let (delta_norm, train_loss, train_millis) = match checked {
            Ok(v) => v,
            Err(reason) => {
                let ended = self.hub().reject(lease);
                self.settle_ended(ended.into_iter().collect(), &reason)
                    .await;
                self.pump().await;
                tracing::warn!(lease, "update rejected: {reason}");
                return Err(AppError::unprocessable(format!(
                    "update rejected: {reason}"
                )));
            }
        };
        let update_sha = self.artifacts.put(&body).await.map_err(AppError::io)?;
        let (done, view) = {
            let mut hub = self.hub();
            let done = hub.complete(lease, now()).ok_or_else(|| {
                AppError::conflict(format!(
                    "lease {lease} ended while its update was being checked"
                ))
            })?;
            let view = hub.workers.get(&ctx.lease.worker).map(|w| w.view.clone());
            (done, view)
        };
        let (lease_info, round_done) = done;
        self.db
            .insert_update(
                lease_info.job,
                lease_info.round,
                &UpdateRow {
                    shard: lease_info.shard,
                    worker_id: lease_info.worker,
                    lease_id: lease_info.id,
                    update_sha,
                    samples: ctx.samples,
                    train_loss,
                    norm: delta_norm,
                    train_millis,
                },
            )
            .await
            .map_err(AppError::db)?;
        if let Some(view) = view {
            self.persist_worker(&view).await;
        }
        if round_done {
            tokio::spawn(self.clone().aggregate(lease_info.job));
        }
        self.pump().await;
        Ok(UpdateReceipt {
            accepted: true,
            credited_samples: ctx.samples,
        })
    }

    /// Averages the round's updates, evaluates, and starts the next round
    /// or finishes the job.
    async fn aggregate(self: Arc<Self>, job: u64) {
        if let Err(e) = self.try_aggregate(job).await {
            self.fail(job, &format!("aggregation failed: {}", e.message))
                .await;
        }
        self.pump().await;
    }

    async fn try_aggregate(&self, job: u64) -> Result<(), AppError> {
        let row = self
            .db
            .job(job)
            .await
            .map_err(AppError::db)?
            .ok_or_else(|| AppError::internal("job vanished"))?;
        let (arch, global) = {
            let hub = self.hub();
            let live = hub
                .jobs
                .get(&job)
                .ok_or_else(|| AppError::internal("job is not live"))?;
            (live.arch.clone(), live.global.clone())
        };
        let updates = self
            .db
            .round_updates(job, row.round)
            .await
            .map_err(AppError::db)?;
        let mut blobs = Vec::with_capacity(updates.len());
        for u in &updates {
            let bytes = self
                .artifacts
                .get(&u.update_sha)
                .await
                .map_err(AppError::io)?
                .ok_or_else(|| AppError::internal(format!("update {} is missing", u.update_sha)))?;
            blobs.push((bytes, u.samples as f64));
        }
        let validation = self.validation_set(&row).await?;
        let aggregation_started = std::time::Instant::now();
        let (new_global, eval) = {
            let (arch, global) = (arch.clone(), global.clone());
            blocking(move || {
                let mut deltas = Vec::with_capacity(blobs.len());
                for (bytes, weight) in blobs {
                    let (delta, _) = Params::from_compressed(&bytes).map_err(ml_internal)?;
                    deltas.push((delta, weight));
                }
                let mean = Params::weighted_mean(&deltas).map_err(ml_internal)?;
                let new_global = global.plus(&mean);
                let eval = evaluate(&arch, &new_global, &validation, ComputeDevice::Cpu)
                    .map_err(ml_internal)?;
                Ok((new_global, eval))
            })
            .await?
        };
        let global_sha = self
            .artifacts
            .put(&new_global.to_safetensors(None))
            .await
            .map_err(AppError::io)?;
        let metrics = RoundMetrics {
            round: row.round,
            loss: eval.loss,
            accuracy: eval.accuracy,
            train_loss: updates.iter().map(|u| u.train_loss).sum::<f64>()
                / updates.len().max(1) as f64,
            updates: updates.len() as u32,
            seconds: now() - row.round_started_at,
            train_seconds: busiest_worker_seconds(&updates),
            aggregate_seconds: aggregation_started.elapsed().as_secs_f64(),
        };
        let reached = row.spec.target_accuracy.is_some_and(|t| eval.accuracy >= t);
        let finished = reached || row.round >= row.spec.rounds;
        let (next_round, status) = if finished {
            (row.round, JobStatus::Completed)
        } else {
            (row.round + 1, JobStatus::Running)
        };
        tracing::info!(
            job,
            round = row.round,
            loss = eval.loss,
            accuracy = eval.accuracy,
            "round aggregated"
        );
        self.db
            .finish_round(
                job,
                &RoundRow {
                    metrics,
                    global_sha: global_sha.clone(),
                },
                next_round,
                status,
            )
            .await
            .map_err(AppError::db)?;
        self.jobs_changed();
        let mut hub = self.hub();
        if finished {
            hub.remove_job(job);
            self.validation_cache().remove(&job);
        } else {
            hub.next_round(job, next_round, global_sha, Arc::new(new_global));
        }
        Ok(())
    }

    /// The job's current model in `format`, with a file name.
    pub async fn model(&self, id: u64, format: ModelFormat) -> Result<(Vec<u8>, String), AppError> {
        let row = self
            .db
            .job(id)
            .await
            .map_err(AppError::db)?
            .ok_or_else(|| AppError::not_found(format!("no job {id}")))?;
        let arch = Self::arch_of(&row)?;
        let params = self.weights(&row.global_sha).await?;
        let normalization: Option<Normalization> = row
            .normalization
            .as_deref()
            .map(serde_json::from_str)
            .transpose()
            .map_err(|e| AppError::internal(format!("stored normalisation: {e}")))?;
        let bytes = blocking(move || {
            check_params(&arch, &params).map_err(ml_internal)?;
            match format {
                ModelFormat::Safetensors => Ok(export::to_safetensors(
                    &arch,
                    &params,
                    normalization.as_ref(),
                )),
                ModelFormat::Onnx => {
                    export::to_onnx(&arch, &params, normalization.as_ref()).map_err(ml_internal)
                }
                ModelFormat::Burn => export::to_burn_record(&arch, &params).map_err(ml_internal),
            }
        })
        .await?;
        Ok((
            bytes,
            format!("job-{id}-round-{}.{}", row.round, format.extension()),
        ))
    }

    /// A stored blob.
    pub async fn artifact(&self, sha: &str) -> Result<Vec<u8>, AppError> {
        self.artifacts
            .get(sha)
            .await
            .map_err(AppError::io)?
            .ok_or_else(|| AppError::not_found(format!("no artifact {sha}")))
    }

    /// Stores an uploaded dataset file.
    pub async fn upload_dataset(
        &self,
        bytes: &[u8],
    ) -> Result<oblivion_protocol::api::UploadedDataset, AppError> {
        datasets::upload(bytes, &self.artifacts).await
    }
}

/// The longest any one worker spent training in a round, by its reports.
fn busiest_worker_seconds(updates: &[UpdateRow]) -> f64 {
    let mut per_worker: HashMap<u64, u64> = HashMap::new();
    for u in updates {
        *per_worker.entry(u.worker_id).or_default() += u.train_millis;
    }
    per_worker.values().copied().max().unwrap_or(0) as f64 / 1000.0
}

/// Validates an update (a change to the global weights): safetensors that
/// decode, the model's exact names and shapes, finite values, and an L2
/// norm within the bound. Returns the norm, and the training loss and time
/// the worker reported.
fn check_update(arch: &Architecture, bound: f64, body: &[u8]) -> Result<(f64, f64, u64), String> {
    let (delta, meta) = Params::from_compressed(body).map_err(|e| e.to_string())?;
    check_params(arch, &delta).map_err(|e| format!("wrong shape: {e}"))?;
    if !delta.all_finite() {
        return Err("the update has non-finite values (NaN or infinity)".into());
    }
    let norm = delta.l2_norm();
    if norm > bound {
        return Err(format!(
            "update norm {norm:.3} exceeds the job's bound {bound}"
        ));
    }
    let loss = meta
        .get(oblivion_protocol::wire::update_metadata::TRAIN_LOSS)
        .and_then(|v| v.parse::<f64>().ok())
        .filter(|v| v.is_finite())
        .ok_or("the update's metadata lacks a finite train_loss")?;
    let millis = meta
        .get(oblivion_protocol::wire::update_metadata::TRAIN_MILLIS)
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0);
    Ok((norm, loss, millis))
}

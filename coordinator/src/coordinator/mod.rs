//! The coordinator: the database's decisions carried out against the
//! artifact store and the workers' connections.
//!
//! The database decides every state change (one guarded transaction each);
//! the [`Hub`] is this instance's derived, in-memory view for fast
//! dispatch, updated only after the database accepted a change, and
//! rebuilt from it at start-up.
//!
//! - `jobs`: creating (within budgets), reading, cancelling, downloading.
//! - `leasing`: worker connections, planning and granting leases, expiry.
//! - `updates`: checking and recording a worker's update.
//! - `aggregation`: claiming, averaging and evaluating a complete round.

mod accounts;
mod aggregation;
mod budget;
mod gc;
mod jobs;
mod leasing;
mod payments;
mod sync;
mod updates;

use oblivion_protocol::{BlobId, JobId, LeaseId, WorkerId};
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use oblivion_ml::data::Dataset;
use oblivion_ml::model::Architecture;
use oblivion_ml::params::Params;
use oblivion_protocol::api::NetworkSnapshot;
use oblivion_protocol::wire::CoordinatorMessage;
use tokio::sync::mpsc::UnboundedSender;

use crate::blocking::blocking;
use crate::config::Config;
use crate::datasets::DatasetCache;
use crate::error::AppError;
use crate::hub::{Admission, Hub, LeasePolicy, LiveJob, RoundProgress, Shard, ShardState};
use crate::limits::ClientLimits;
use oblivion_store::{Artifacts, Backend, Db, JobRow, UpdateCommitter};

pub use accounts::Viewer;
pub use jobs::ModelFormat;
pub use payments::spec_hash;

/// The running coordinator: its settings and storage, and the state this
/// instance derives from them, grouped by what uses it.
pub struct Coordinator {
    /// Settings.
    pub config: Config,
    db: Db,
    artifacts: Artifacts,
    /// Records accepted updates in batches (group commit).
    committer: UpdateCommitter,
    /// The hub, the workers' queues and the hub's clock.
    dispatch: Dispatch,
    /// Datasets kept decoded.
    data: DataCaches,
    /// What pages are told of the network.
    snapshots: Snapshots,
    /// This process's name in the database (aggregation claims, leases).
    instance: String,
    /// What this instance is doing now.
    in_flight: InFlight,
    /// The per-client limits.
    pub limits: ClientLimits,
    /// What this instance knows of the others sharing its database.
    peers: sync::Peers,
    /// The chain paid jobs settle on, if any.
    pub chain: Option<Arc<payments::ChainLink>>,
}

/// The hub and what is kept beside it.
struct Dispatch {
    hub: Mutex<Hub>,
    /// Each connected worker's outgoing queue, by worker id: the hub owns
    /// no connections. Locked only while the hub is (hub first), so that a
    /// worker's messages leave in the order the hub decided them.
    links: Mutex<HashMap<WorkerId, UnboundedSender<CoordinatorMessage>>>,
    /// Origin of the monotonic clock the hub's deadlines use.
    started: Instant,
}

/// Datasets kept decoded: each running job's validation split, and the
/// named datasets jobs are cut from.
struct DataCaches {
    validation: Mutex<HashMap<JobId, Arc<Dataset>>>,
    datasets: DatasetCache,
}

/// What pages are told of the network.
struct Snapshots {
    /// Bumped whenever stored job state changes (see [`NetworkSnapshot`]).
    jobs_version: AtomicU64,
    /// The latest network snapshot as JSON, shared by every event stream.
    latest: tokio::sync::watch::Sender<Arc<str>>,
}

/// What this instance is doing now.
#[derive(Default)]
struct InFlight {
    /// Wakes the dispatch task (one planner at a time, so that two plans
    /// never race for a shard; the database would refuse the loser anyway).
    pump: tokio::sync::Notify,
    /// Leases whose update is being uploaded now.
    uploads: Mutex<HashSet<LeaseId>>,
    /// Jobs this instance is aggregating now.
    aggregating: Mutex<HashSet<JobId>>,
}

/// How often the snapshot is taken: changes reach pages within this.
pub const SNAPSHOT_TICK: std::time::Duration = std::time::Duration::from_millis(250);

fn ml_internal(e: oblivion_ml::MlError) -> AppError {
    AppError::internal(e.to_string())
}

/// Locks a mutex of derived state. A panic while holding it would be a
/// bug; the state is still consistent enough to keep serving (and can be
/// rebuilt from the database), so recover the guard.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Coordinator {
    /// Opens storage, resumes unfinished jobs and starts the lease reaper.
    pub async fn start(config: Config) -> anyhow::Result<Arc<Coordinator>> {
        tokio::fs::create_dir_all(&config.storage.data_dir).await?;
        let db = Db::connect(&config.database_url(), 8)
            .await
            .map_err(|e| anyhow::anyhow!("cannot open the database: {e}"))?;
        let artifacts = Artifacts::open(&config.artifacts_url())
            .await
            .map_err(|e| anyhow::anyhow!("cannot open the artifact store: {e}"))?;
        let mut stale = 0;
        if db.backend() == Backend::Sqlite {
            // Only one instance uses an SQLite file: whatever the last
            // process held died with it.
            stale = db.end_all_active_leases("coordinator restarted").await?;
            db.release_all_aggregations().await?;
        }
        let policy = LeasePolicy {
            cap: config.leases.lease_cap,
            ttl: config.leases.lease_ttl,
            max_lifetime: config.leases.lease_max_lifetime,
            stall: config.leases.lease_stall,
        };
        let coordinator = Arc::new(Coordinator {
            data: DataCaches {
                validation: Mutex::new(HashMap::new()),
                datasets: DatasetCache::new(config.uploads.dataset_cache_entries),
            },
            snapshots: Snapshots {
                jobs_version: AtomicU64::new(0),
                latest: tokio::sync::watch::Sender::new(Arc::from("")),
            },
            limits: ClientLimits::new(&config),
            peers: sync::Peers::default(),
            chain: config
                .chain()
                .and_then(|c| c.map(payments::ChainLink::new).transpose())
                .map_err(anyhow::Error::msg)?
                .map(Arc::new),
            committer: UpdateCommitter::start(db.clone(), config.storage.update_batch as usize),
            config,
            db,
            artifacts,
            dispatch: Dispatch {
                hub: Mutex::new(Hub::new(policy)),
                links: Mutex::new(HashMap::new()),
                started: Instant::now(),
            },
            instance: hex::encode(rand::random::<[u8; 8]>()),
            in_flight: InFlight::default(),
        });
        coordinator
            .db
            .register_instance(&coordinator.instance)
            .await?;
        let mut resumed = 0;
        for row in coordinator.db.unfinished_jobs().await? {
            let id = row.id;
            match coordinator.resume(row).await {
                Ok(()) => resumed += 1,
                Err(e) => coordinator.fail(id, &e.message).await,
            }
        }
        tracing::info!(resumed, stale_leases = stale, instance = %coordinator.instance, "state loaded");
        if coordinator.db.backend() == Backend::Postgres {
            let url = coordinator.config.database_url();
            tokio::spawn(coordinator.clone().listen(url));
            tokio::spawn(coordinator.clone().apply_changes());
        }
        tokio::spawn(coordinator.clone().pump_loop());
        if let Some(link) = coordinator.chain.clone() {
            tokio::spawn(coordinator.clone().watch_chain(link));
        }
        let collector = coordinator.clone();
        tokio::spawn(async move { collector.collect_garbage_forever().await });
        let reaper = coordinator.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(std::time::Duration::from_millis(500));
            for n in 0u64.. {
                tick.tick().await;
                reaper.reap().await;
                if n % 2 == 0 {
                    reaper.keep_alive().await;
                }
                if n % 10 == 5 && reaper.db.backend() == Backend::Postgres {
                    reaper.resync_all();
                }
                if n % 120 == 0 {
                    reaper.limits.uploads.forget_idle();
                    reaper.limits.sign_ins.forget_idle();
                    if let Err(e) = reaper
                        .db
                        .forget_expired_sign_ins(oblivion_store::now())
                        .await
                    {
                        tracing::warn!("forgetting expired sessions: {e}");
                    }
                }
            }
        });
        let publisher = coordinator.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(SNAPSHOT_TICK);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            loop {
                tick.tick().await;
                publisher.publish_snapshot();
            }
        });
        Ok(coordinator)
    }

    /// Takes the snapshot once for every event stream, when anyone listens,
    /// and wakes them only if it changed.
    fn publish_snapshot(&self) {
        if self.snapshots.latest.receiver_count() == 0 {
            return;
        }
        let Ok(json) = serde_json::to_string(&self.snapshot()) else {
            return;
        };
        self.snapshots.latest.send_if_modified(|last| {
            if **last == *json {
                return false;
            }
            *last = Arc::from(json);
            true
        });
    }

    /// The shared snapshot stream: the current one first, then each change.
    pub fn subscribe_snapshots(&self) -> tokio::sync::watch::Receiver<Arc<str>> {
        let mut rx = self.snapshots.latest.subscribe();
        // Up to date now, rather than as of the last tick anyone listened.
        self.publish_snapshot();
        rx.mark_changed();
        rx
    }

    /// Seconds on this process's monotonic clock (for deadlines).
    fn clock(&self) -> f64 {
        self.dispatch.started.elapsed().as_secs_f64()
    }

    fn jobs_changed(&self) {
        self.snapshots.jobs_version.fetch_add(1, Ordering::Relaxed);
    }

    /// The live state of the network, as `GET /api/events` pushes it.
    pub fn snapshot(&self) -> NetworkSnapshot {
        let hub = self.hub();
        let mut workers = hub.worker_views(self.clock());
        workers.extend(lock(&self.peers.workers).iter().cloned());
        workers.sort_by_key(|w| w.id);
        NetworkSnapshot {
            samples_per_second: workers.iter().map(|w| w.samples_per_second).sum::<f64>() + 0.0,
            workers,
            jobs: hub.live_jobs(),
            jobs_version: self.snapshots.jobs_version.load(Ordering::Relaxed),
        }
    }

    fn hub(&self) -> MutexGuard<'_, Hub> {
        lock(&self.dispatch.hub)
    }

    /// The workers' outgoing queues; take the hub's lock first.
    fn links(&self) -> MutexGuard<'_, HashMap<WorkerId, UnboundedSender<CoordinatorMessage>>> {
        lock(&self.dispatch.links)
    }

    async fn weights(&self, blob: BlobId) -> Result<Params, AppError> {
        let bytes = self
            .artifacts
            .get(blob)
            .await
            .map_err(AppError::io)?
            .ok_or_else(|| {
                AppError::internal(format!("weights {blob} are missing from storage"))
            })?;
        blocking(move || {
            Params::from_safetensors(&bytes)
                .map(|(p, _)| p)
                .map_err(|e| AppError::internal(format!("stored weights are unreadable: {e}")))
        })
        .await
    }

    fn arch_of(row: &JobRow) -> Result<Architecture, AppError> {
        Architecture::new(
            row.spec.model.clone(),
            row.data.input_shape.clone(),
            row.data.classes,
        )
        .map_err(|e| AppError::internal(e.to_string()))
    }

    /// Puts a stored, unfinished job into the hub, as the database has it.
    async fn resume(self: &Arc<Self>, row: JobRow) -> Result<(), AppError> {
        let arch = Arc::new(Self::arch_of(&row)?);
        let normalization: Option<oblivion_ml::data::FeatureScaling> = row
            .data
            .normalization
            .as_deref()
            .map(serde_json::from_str)
            .transpose()
            .map_err(|e| AppError::internal(format!("stored normalisation: {e}")))?;
        let kind =
            crate::kind::kind_of(&row.spec).map_err(|e| AppError::internal(e.to_string()))?;
        let global = Arc::new(self.weights(row.global_sha).await?);
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
            Some(link) if row.spec.reward.is_some() => self
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
            global_blob: row.global_sha,
            global,
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
        live.progress.closed =
            live.spec.quorum.is_some() && done.len() >= slots && slots < live.shards.len();
        let complete = live.round_complete();
        self.hub().jobs.insert(row.id, live);
        if complete {
            tokio::spawn(self.clone().aggregate(row.id, row.round));
        }
        Ok(())
    }
}

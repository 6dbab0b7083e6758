//! The live state of the network and its scheduling rules: connected
//! workers, running jobs with their shards, and active leases.
//!
//! Pure and synchronous: no I/O, time passed in, so every rule (fairness,
//! the per-worker cap, expiry, re-issue, who may post which update) is
//! tested deterministically. The [`crate::coordinator`] wraps it in a lock
//! and does the I/O each decision calls for.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use oblivion_ml::model::Architecture;
use oblivion_ml::params::Params;
use oblivion_protocol::JobSpec;
use oblivion_protocol::api::{JobStatus, LiveJobView, ShardView, WorkerLease, WorkerView};
use oblivion_protocol::wire::{CoordinatorMessage, LeaseProgress, LeaseTask};
use tokio::sync::mpsc::UnboundedSender;

/// Lease rules.
#[derive(Clone, Copy, Debug)]
pub struct LeasePolicy {
    /// Most leases one worker holds at once.
    pub cap: u32,
    /// A lease not renewed by a heartbeat for this long expires.
    pub ttl: Duration,
}

/// A connected worker.
#[derive(Debug)]
pub struct Worker {
    /// What the API shows (counters included).
    pub view: WorkerView,
    /// Secret it must quote when posting updates.
    pub token: String,
    /// Its connection's outgoing queue.
    pub tx: UnboundedSender<CoordinatorMessage>,
    /// Takes no new leases.
    pub draining: bool,
    /// When it connected, in the hub's clock (seconds).
    pub connected_at: f64,
    /// Most leases it asked to hold at once.
    pub max_leases: u32,
    /// Samples credited, with when, over the last [`RATE_WINDOW`] seconds.
    pub credits: VecDeque<(f64, u64)>,
}

/// Seconds over which a worker's throughput is measured.
pub const RATE_WINDOW: f64 = 60.0;

impl Worker {
    /// A newly connected worker.
    pub fn new(
        view: WorkerView,
        token: String,
        tx: UnboundedSender<CoordinatorMessage>,
        max_leases: u32,
        now: f64,
    ) -> Worker {
        Worker {
            view,
            token,
            tx,
            draining: false,
            connected_at: now,
            max_leases,
            credits: VecDeque::new(),
        }
    }

    /// Samples credited per second over the window (or since connecting).
    fn samples_per_second(&self, now: f64) -> f64 {
        let since = (now - RATE_WINDOW).max(self.connected_at);
        let samples: u64 = self
            .credits
            .iter()
            .filter(|(t, _)| *t >= since)
            .map(|(_, n)| n)
            .sum();
        samples as f64 / (now - since).max(1.0)
    }
}

/// State of one shard in the current round.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum ShardState {
    /// Waiting for a worker.
    Pending,
    /// Leased.
    Leased {
        /// The lease.
        lease: u64,
        /// Its holder.
        worker: u64,
    },
    /// Its update is in.
    Done {
        /// Who did it.
        worker: u64,
    },
}

/// One shard of a running job.
#[derive(Clone, Debug)]
pub struct Shard {
    /// Data shard blob.
    pub data_sha: String,
    /// Samples in it (what a worker is credited for).
    pub samples: u64,
    /// Where it is.
    pub state: ShardState,
    /// Times leased this round.
    pub attempts: u32,
    /// Workers whose update for it was rejected this round: asked last.
    pub refused_by: Vec<u64>,
}

/// A job being trained.
#[derive(Debug)]
pub struct LiveJob {
    /// Id.
    pub id: u64,
    /// Its spec.
    pub spec: JobSpec,
    /// Its network.
    pub arch: Arc<Architecture>,
    /// `Pending` until the first lease, then `Running`.
    pub status: JobStatus,
    /// Current round, from 1.
    pub round: u32,
    /// Global weights of this round.
    pub global_sha: String,
    /// The same, decoded.
    pub global: Arc<Params>,
    /// This round's shards.
    pub shards: Vec<Shard>,
    /// All shards are in and the round is being aggregated.
    pub aggregating: bool,
}

/// An active lease.
#[derive(Clone, Debug, PartialEq)]
pub struct Lease {
    /// Id.
    pub id: u64,
    /// Job.
    pub job: u64,
    /// Round it belongs to.
    pub round: u32,
    /// Shard index.
    pub shard: u32,
    /// Holder.
    pub worker: u64,
    /// Deadline, in the caller's clock (seconds).
    pub expires_at: f64,
    /// Last reported progress.
    pub progress: f32,
}

/// A lease handed out by [`Hub::dispatch`].
#[derive(Clone, Debug)]
pub struct Issued {
    /// The lease.
    pub lease: Lease,
    /// Whether it started its job (pending to running).
    pub started_job: bool,
}

/// A lease that ended without an update.
#[derive(Clone, Debug, PartialEq)]
pub struct Ended {
    /// The lease.
    pub lease: Lease,
    /// `expired`, `returned`, `disconnected`, `rejected` or `revoked`.
    pub status: &'static str,
}

/// Why an update cannot be taken.
#[derive(Clone, Debug, PartialEq)]
pub enum Refusal {
    /// No connected worker has this token.
    UnknownWorker,
    /// The lease is not active, or another worker holds it.
    NotHeld(u64),
}

/// What an update must match, for a lease a worker holds.
#[derive(Clone, Debug)]
pub struct UpdateContext {
    /// The lease.
    pub lease: Lease,
    /// The job's network.
    pub arch: Arc<Architecture>,
    /// Largest accepted update norm.
    pub norm_bound: f64,
    /// Samples of the shard.
    pub samples: u64,
}

/// The live state.
#[derive(Debug)]
pub struct Hub {
    policy: LeasePolicy,
    /// Connected workers by id.
    pub workers: BTreeMap<u64, Worker>,
    /// Running jobs by id.
    pub jobs: BTreeMap<u64, LiveJob>,
    leases: HashMap<u64, Lease>,
    next_lease: u64,
    next_worker: u64,
}

impl Hub {
    /// An empty hub; ids continue after the given ones.
    pub fn new(policy: LeasePolicy, last_lease: u64, last_worker: u64) -> Hub {
        Hub {
            policy,
            workers: BTreeMap::new(),
            jobs: BTreeMap::new(),
            leases: HashMap::new(),
            next_lease: last_lease + 1,
            next_worker: last_worker + 1,
        }
    }

    /// Allocates a worker id.
    pub fn next_worker_id(&mut self) -> u64 {
        let id = self.next_worker;
        self.next_worker += 1;
        id
    }

    /// Registers a connected worker.
    pub fn add_worker(&mut self, worker: Worker) {
        self.workers.insert(worker.view.id, worker);
    }

    /// Active leases of a worker.
    pub fn leases_of(&self, worker: u64) -> impl Iterator<Item = &Lease> {
        self.leases.values().filter(move |l| l.worker == worker)
    }

    fn active_count(&self, worker: u64) -> u32 {
        self.leases_of(worker).count() as u32
    }

    /// An active lease.
    pub fn lease(&self, id: u64) -> Option<&Lease> {
        self.leases.get(&id)
    }

    /// Ends a lease without an update; its shard goes back to pending.
    fn end(&mut self, id: u64, status: &'static str) -> Option<Ended> {
        let lease = self.leases.remove(&id)?;
        if let Some(shard) = self
            .jobs
            .get_mut(&lease.job)
            .and_then(|j| j.shards.get_mut(lease.shard as usize))
            && shard.state
                == (ShardState::Leased {
                    lease: id,
                    worker: lease.worker,
                })
        {
            shard.state = ShardState::Pending;
        }
        if let Some(w) = self.workers.get_mut(&lease.worker) {
            w.view.active_leases = w.view.active_leases.saturating_sub(1);
            if matches!(status, "expired" | "disconnected") {
                w.view.lost += 1;
            }
        }
        Some(Ended { lease, status })
    }

    /// Removes a worker that disconnected; its leases are re-issued.
    pub fn remove_worker(&mut self, id: u64) -> (Option<Worker>, Vec<Ended>) {
        let ids: Vec<u64> = self.leases_of(id).map(|l| l.id).collect();
        let ended = ids
            .iter()
            .filter_map(|l| self.end(*l, "disconnected"))
            .collect();
        (self.workers.remove(&id), ended)
    }

    /// A worker's heartbeat: renews all its leases until `now + ttl`.
    pub fn heartbeat(&mut self, worker: u64, progress: &[LeaseProgress], now: f64) {
        let ttl = self.policy.ttl.as_secs_f64();
        for lease in self.leases.values_mut().filter(|l| l.worker == worker) {
            lease.expires_at = now + ttl;
            if let Some(p) = progress.iter().find(|p| p.lease_id == lease.id) {
                lease.progress = p.progress.clamp(0.0, 1.0);
            }
        }
    }

    /// A worker gives a lease back.
    pub fn return_lease(&mut self, worker: u64, lease: u64) -> Option<Ended> {
        match self.leases.get(&lease) {
            Some(l) if l.worker == worker => self.end(lease, "returned"),
            _ => None,
        }
    }

    /// Ends every lease whose deadline passed.
    pub fn expire(&mut self, now: f64) -> Vec<Ended> {
        let mut stale: Vec<u64> = self
            .leases
            .values()
            .filter(|l| l.expires_at < now)
            .map(|l| l.id)
            .collect();
        stale.sort_unstable();
        stale
            .iter()
            .filter_map(|id| self.end(*id, "expired"))
            .collect()
    }

    /// Ends every lease of a job (it was cancelled or failed) and forgets it.
    pub fn remove_job(&mut self, job: u64) -> Vec<Ended> {
        let mut ids: Vec<u64> = self
            .leases
            .values()
            .filter(|l| l.job == job)
            .map(|l| l.id)
            .collect();
        ids.sort_unstable();
        let ended = ids
            .iter()
            .filter_map(|id| self.end(*id, "revoked"))
            .collect();
        self.jobs.remove(&job);
        ended
    }

    /// Hands pending shards to workers: shards of all jobs interleaved
    /// (oldest job first within each turn); each to the eligible worker
    /// with the fewest active leases (then the best benchmark, then the
    /// lowest id), never past the per-worker cap, and a worker whose update
    /// for that shard was rejected only when no one else can take it.
    pub fn dispatch(&mut self, now: f64) -> Vec<Issued> {
        let mut queue: Vec<(usize, u64, u32)> = Vec::new();
        for job in self.jobs.values().filter(|j| !j.aggregating) {
            let mut turn = 0;
            for (i, shard) in job.shards.iter().enumerate() {
                if shard.state == ShardState::Pending {
                    queue.push((turn, job.id, i as u32));
                    turn += 1;
                }
            }
        }
        queue.sort();
        let mut issued = Vec::new();
        for (_, job_id, shard_index) in queue {
            let refused = &self.jobs[&job_id].shards[shard_index as usize].refused_by;
            let mut candidates: Vec<(bool, u32, f64, u64)> = self
                .workers
                .values()
                .filter(|w| !w.draining)
                .filter_map(|w| {
                    let active = self.active_count(w.view.id);
                    (active < self.policy.cap.min(w.max_leases)).then(|| {
                        (
                            refused.contains(&w.view.id),
                            active,
                            w.view.benchmark,
                            w.view.id,
                        )
                    })
                })
                .collect();
            candidates.sort_by(|a, b| {
                (a.0, a.1)
                    .cmp(&(b.0, b.1))
                    .then(b.2.total_cmp(&a.2))
                    .then(a.3.cmp(&b.3))
            });
            let Some(&(_, _, _, worker)) = candidates.first() else {
                continue;
            };
            let id = self.next_lease;
            self.next_lease += 1;
            let job = self.jobs.get_mut(&job_id).expect("queued from jobs");
            let started_job = job.status == JobStatus::Pending;
            job.status = JobStatus::Running;
            let shard = &mut job.shards[shard_index as usize];
            shard.state = ShardState::Leased { lease: id, worker };
            shard.attempts += 1;
            let lease = Lease {
                id,
                job: job_id,
                round: job.round,
                shard: shard_index,
                worker,
                expires_at: now + self.policy.ttl.as_secs_f64(),
                progress: 0.0,
            };
            self.leases.insert(id, lease.clone());
            if let Some(w) = self.workers.get_mut(&worker) {
                w.view.active_leases += 1;
            }
            issued.push(Issued { lease, started_job });
        }
        issued
    }

    /// The message telling a worker what to do for `lease`.
    pub fn task(&self, lease: &Lease) -> Option<LeaseTask> {
        let job = self.jobs.get(&lease.job)?;
        let shard = job.shards.get(lease.shard as usize)?;
        let spec = &job.spec;
        Some(LeaseTask {
            lease_id: lease.id,
            job_id: job.id,
            round: lease.round,
            shard: lease.shard,
            model: spec.model.clone(),
            input_shape: job.arch.input_shape.clone(),
            classes: job.arch.classes,
            optimizer: spec.optimizer.clone(),
            batch_size: spec.batch_size,
            work: spec.local_work(),
            seed: spec
                .seed
                .wrapping_mul(0x9E37_79B9)
                .wrapping_add(u64::from(lease.round) << 20)
                .wrapping_add(u64::from(lease.shard)),
            weights: job.global_sha.clone(),
            data: shard.data_sha.clone(),
            expires_in_secs: self.policy.ttl.as_secs(),
        })
    }

    /// Checks that the worker with `token` holds `lease`; returns what its
    /// update must match.
    pub fn update_context(&self, token: &str, lease: u64) -> Result<UpdateContext, Refusal> {
        let worker = self
            .workers
            .values()
            .find(|w| w.token == token)
            .ok_or(Refusal::UnknownWorker)?;
        let held = self
            .leases
            .get(&lease)
            .filter(|l| l.worker == worker.view.id)
            .ok_or(Refusal::NotHeld(lease))?;
        let job = self.jobs.get(&held.job).ok_or(Refusal::NotHeld(lease))?;
        Ok(UpdateContext {
            lease: held.clone(),
            arch: job.arch.clone(),
            norm_bound: job.spec.update_norm_bound,
            samples: job.shards[held.shard as usize].samples,
        })
    }

    /// An update for `lease` failed validation: the lease ends and the
    /// shard goes to someone else.
    pub fn reject(&mut self, lease: u64) -> Option<Ended> {
        let ended = self.end(lease, "rejected")?;
        if let Some(job) = self.jobs.get_mut(&ended.lease.job) {
            job.shards[ended.lease.shard as usize]
                .refused_by
                .push(ended.lease.worker);
        }
        if let Some(w) = self.workers.get_mut(&ended.lease.worker) {
            w.view.rejected += 1;
        }
        Some(ended)
    }

    /// An update for `lease` was accepted and stored. Returns the job id
    /// when this completed its round (the job is then marked aggregating).
    pub fn complete(&mut self, lease: u64, now: f64) -> Option<(Lease, bool)> {
        let lease = self.leases.remove(&lease)?;
        let job = self.jobs.get_mut(&lease.job)?;
        let shard = &mut job.shards[lease.shard as usize];
        shard.state = ShardState::Done {
            worker: lease.worker,
        };
        let samples = shard.samples;
        let round_done = job
            .shards
            .iter()
            .all(|s| matches!(s.state, ShardState::Done { .. }));
        if round_done {
            job.aggregating = true;
        }
        if let Some(w) = self.workers.get_mut(&lease.worker) {
            w.view.active_leases = w.view.active_leases.saturating_sub(1);
            w.view.accepted += 1;
            w.view.samples += samples;
            w.credits.push_back((now, samples));
            while w
                .credits
                .front()
                .is_some_and(|(t, _)| *t < now - RATE_WINDOW)
            {
                w.credits.pop_front();
            }
        }
        Some((lease, round_done))
    }

    /// Starts the job's next round from new global weights.
    pub fn next_round(&mut self, job: u64, round: u32, global_sha: String, global: Arc<Params>) {
        if let Some(j) = self.jobs.get_mut(&job) {
            j.round = round;
            j.global_sha = global_sha;
            j.global = global;
            j.aggregating = false;
            for s in &mut j.shards {
                s.state = ShardState::Pending;
                s.attempts = 0;
                s.refused_by.clear();
            }
        }
    }

    /// Connected workers with their state, leases and measured throughput.
    pub fn worker_views(&self, now: f64) -> Vec<WorkerView> {
        self.workers
            .values()
            .map(|w| {
                let mut view = w.view.clone();
                let mut leases: Vec<WorkerLease> = self
                    .leases_of(w.view.id)
                    .map(|l| WorkerLease {
                        lease_id: l.id,
                        job_id: l.job,
                        round: l.round,
                        shard: l.shard,
                        progress: l.progress,
                    })
                    .collect();
                leases.sort_by_key(|l| l.lease_id);
                view.state = if !leases.is_empty() {
                    "training"
                } else if w.draining {
                    "draining"
                } else {
                    "idle"
                }
                .to_string();
                view.leases = leases;
                view.samples_per_second = w.samples_per_second(now);
                view
            })
            .collect()
    }

    /// Running jobs with their current round's shards.
    pub fn live_jobs(&self) -> Vec<LiveJobView> {
        self.jobs
            .values()
            .map(|j| LiveJobView {
                id: j.id,
                name: j.spec.name.clone(),
                status: j.status,
                round: j.round,
                rounds: j.spec.rounds,
                shards: self.shard_views(j.id),
                aggregating: j.aggregating,
            })
            .collect()
    }

    /// Distinct workers holding a lease of `job`.
    pub fn active_workers(&self, job: u64) -> u32 {
        let mut ids: Vec<u64> = self
            .leases
            .values()
            .filter(|l| l.job == job)
            .map(|l| l.worker)
            .collect();
        ids.sort_unstable();
        ids.dedup();
        ids.len() as u32
    }

    /// The current round's shards of a running job, for the API.
    pub fn shard_views(&self, job: u64) -> Vec<ShardView> {
        let Some(j) = self.jobs.get(&job) else {
            return Vec::new();
        };
        j.shards
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let (state, worker_id) = match s.state {
                    ShardState::Pending => ("pending", None),
                    ShardState::Leased { worker, .. } => ("leased", Some(worker)),
                    ShardState::Done { worker } => ("done", Some(worker)),
                };
                let progress = match s.state {
                    ShardState::Pending => 0.0,
                    ShardState::Leased { lease, .. } => {
                        self.leases.get(&lease).map_or(0.0, |l| l.progress)
                    }
                    ShardState::Done { .. } => 1.0,
                };
                ShardView {
                    shard: i as u32,
                    state: state.to_string(),
                    attempts: s.attempts,
                    worker_id,
                    progress,
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use oblivion_protocol::api::WorkerView;
    use oblivion_protocol::wire::{ClientKind, DeviceInfo};
    use tokio::sync::mpsc;

    fn hub() -> Hub {
        Hub::new(
            LeasePolicy {
                cap: 2,
                ttl: Duration::from_secs(30),
            },
            0,
            0,
        )
    }

    fn add_worker(hub: &mut Hub, benchmark: f64) -> u64 {
        let id = hub.next_worker_id();
        let (tx, _rx) = mpsc::unbounded_channel();
        hub.add_worker(Worker {
            view: WorkerView {
                id,
                name: format!("w{id}"),
                client: ClientKind::Native,
                device: DeviceInfo {
                    backend: "cpu".into(),
                    name: "test".into(),
                    detail: String::new(),
                },
                benchmark,
                connected: true,
                active_leases: 0,
                accepted: 0,
                rejected: 0,
                lost: 0,
                samples: 0,
                state: String::new(),
                samples_per_second: 0.0,
                leases: Vec::new(),
            },
            token: format!("token{id}"),
            tx,
            draining: false,
            connected_at: 0.0,
            max_leases: u32::MAX,
            credits: VecDeque::new(),
        });
        id
    }

    fn add_job(hub: &mut Hub, id: u64, shards: usize) {
        let spec: JobSpec = serde_json::from_value(serde_json::json!({
            "name": "t", "model": {"kind": "mlp", "hidden": []}, "dataset": {"builtin": "iris"},
            "rounds": 2, "shards_per_round": shards, "batch_size": 8,
            "optimizer": {"kind": "adam", "learning_rate": 0.01}
        }))
        .unwrap();
        let arch = Architecture::new(spec.model.clone(), vec![4], 3).unwrap();
        hub.jobs.insert(
            id,
            LiveJob {
                id,
                spec,
                arch: Arc::new(arch),
                status: JobStatus::Pending,
                round: 1,
                global_sha: "g".into(),
                global: Arc::new(Params::default()),
                shards: (0..shards)
                    .map(|i| Shard {
                        data_sha: format!("d{i}"),
                        samples: 10,
                        state: ShardState::Pending,
                        attempts: 0,
                        refused_by: vec![],
                    })
                    .collect(),
                aggregating: false,
            },
        );
    }

    fn holders(issued: &[Issued]) -> Vec<u64> {
        issued.iter().map(|i| i.lease.worker).collect()
    }

    #[test]
    fn fewest_leases_first_and_cap_respected() {
        let mut h = hub();
        let slow = add_worker(&mut h, 10.0);
        let fast = add_worker(&mut h, 100.0);
        add_job(&mut h, 1, 5);
        let issued = h.dispatch(0.0);
        // Alternates between workers (fast first on ties), stops at the cap.
        assert_eq!(holders(&issued), vec![fast, slow, fast, slow]);
        assert!(issued[0].started_job && !issued[1].started_job);
        assert_eq!(h.jobs[&1].status, JobStatus::Running);
        assert!(h.dispatch(0.0).is_empty(), "both workers are at the cap");
        let (lease, done) = h.complete(issued[0].lease.id, 0.0).unwrap();
        assert_eq!((lease.worker, done), (fast, false));
        assert_eq!(holders(&h.dispatch(0.0)), vec![fast]);
    }

    #[test]
    fn vanished_worker_loses_its_leases_and_shards_are_reissued() {
        let mut h = hub();
        let a = add_worker(&mut h, 1.0);
        add_job(&mut h, 1, 2);
        assert_eq!(h.dispatch(0.0).len(), 2);
        let b = add_worker(&mut h, 1.0);
        let (_, ended) = h.remove_worker(a);
        assert_eq!(ended.len(), 2);
        assert!(ended.iter().all(|e| e.status == "disconnected"));
        let again = h.dispatch(1.0);
        assert_eq!(holders(&again), vec![b, b]);
        assert!(
            again
                .iter()
                .all(|i| h.jobs[&1].shards[i.lease.shard as usize].attempts == 2)
        );
    }

    #[test]
    fn leases_expire_without_heartbeats() {
        let mut h = hub();
        let a = add_worker(&mut h, 1.0);
        add_job(&mut h, 1, 1);
        let lease = h.dispatch(0.0)[0].lease.id;
        h.heartbeat(
            a,
            &[LeaseProgress {
                lease_id: lease,
                progress: 0.5,
            }],
            20.0,
        );
        assert!(h.expire(45.0).is_empty(), "renewed at 20 s until 50 s");
        assert_eq!(h.lease(lease).unwrap().progress, 0.5);
        let ended = h.expire(51.0);
        assert_eq!(ended[0].status, "expired");
        assert_eq!(h.workers[&a].view.lost, 1);
        assert_eq!(h.jobs[&1].shards[0].state, ShardState::Pending);
        let reissued = h.dispatch(52.0);
        assert_ne!(reissued[0].lease.id, lease, "a fresh lease id");
    }

    #[test]
    fn only_the_holder_may_post_and_rejected_shards_go_elsewhere() {
        let mut h = hub();
        let a = add_worker(&mut h, 100.0);
        let b = add_worker(&mut h, 1.0);
        add_job(&mut h, 1, 1);
        let lease = h.dispatch(0.0)[0].lease.clone();
        assert_eq!(lease.worker, a);
        assert_eq!(
            h.update_context("token2", lease.id).unwrap_err(),
            Refusal::NotHeld(lease.id)
        );
        assert_eq!(
            h.update_context("nope", lease.id).unwrap_err(),
            Refusal::UnknownWorker
        );
        assert!(h.update_context("token1", lease.id).is_ok());
        h.reject(lease.id).unwrap();
        assert_eq!(h.workers[&a].view.rejected, 1);
        // The faster worker was refused: the shard goes to the other one.
        assert_eq!(holders(&h.dispatch(1.0)), vec![b]);
        assert!(
            h.update_context("token1", lease.id).is_err(),
            "the old lease is gone"
        );
    }

    #[test]
    fn round_completes_when_every_shard_is_in() {
        let mut h = hub();
        add_worker(&mut h, 1.0);
        add_job(&mut h, 1, 2);
        let issued = h.dispatch(0.0);
        assert!(!h.complete(issued[0].lease.id, 0.0).unwrap().1);
        assert!(h.complete(issued[1].lease.id, 0.0).unwrap().1);
        assert!(h.jobs[&1].aggregating);
        assert!(h.dispatch(0.0).is_empty());
        h.next_round(1, 2, "g2".into(), Arc::new(Params::default()));
        let next = h.dispatch(0.0);
        assert_eq!(next.len(), 2);
        assert_eq!(h.task(&next[0].lease).unwrap().weights, "g2");
    }

    #[test]
    fn jobs_share_workers_in_turns() {
        let mut h = hub();
        for _ in 0..2 {
            add_worker(&mut h, 1.0);
        }
        add_job(&mut h, 1, 3);
        add_job(&mut h, 2, 3);
        let jobs: Vec<u64> = h.dispatch(0.0).iter().map(|i| i.lease.job).collect();
        assert_eq!(jobs, vec![1, 2, 1, 2]);
    }
}

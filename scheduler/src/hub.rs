//! The live state of this instance's part of the network and its
//! scheduling rules: connected workers, running jobs with their shards, and
//! the leases this instance granted.
//!
//! Pure and synchronous: no I/O, time passed in (seconds on a monotonic
//! clock), so every rule (fairness, the per-worker cap, expiry, the lease
//! lifetime, re-issue, backups for a round's last slots, who may post
//! which update) is tested
//! deterministically. It is derived state: the database decides, and a hub
//! can be rebuilt from it at any time. The coordinator service plans with
//! [`Hub::plan`], records the plan in the database, and applies only what
//! the database accepted with [`Hub::grant`].
//!
//! Dispatch is indexed so that nothing under the lock costs
//! O(workers × leases): workers with room sit in an ordered set keyed by
//! (active leases, benchmark, id), leases are indexed by holder, and
//! workers by token.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use oblivion_ml::model::Architecture;
use oblivion_ml::params::Params;
use oblivion_protocol::JobSpec;
use oblivion_protocol::api::{
    JobStatus, LiveJobView, ShardStatus, ShardView, WorkerLease, WorkerState, WorkerView,
};
use oblivion_protocol::wire::{LeaseProgress, LeaseTask, LocalDataOffer, LocalTask, TrainingData};

use crate::states::LeaseStatus;

/// Lease rules.
#[derive(Clone, Copy, Debug)]
pub struct LeasePolicy {
    /// Most leases one worker holds at once.
    pub cap: u32,
    /// A lease not renewed by a heartbeat for this long expires.
    pub ttl: Duration,
    /// A lease ends this long after it was granted, whatever its heartbeats.
    pub max_lifetime: Duration,
    /// A lease whose reported progress has not grown for this long ends
    /// (overdue), however diligent its heartbeats.
    pub stall: Duration,
}

/// A connected worker.
#[derive(Debug)]
pub struct Worker {
    /// What the API shows (counters included).
    pub view: WorkerView,
    /// Secret it must quote when posting updates.
    pub token: String,
    /// Takes no new leases.
    pub draining: bool,
    /// When it connected, in the hub's clock (seconds).
    pub connected_at: f64,
    /// Most leases it asked to hold at once.
    pub max_leases: u32,
    /// Samples credited, with when, over the last [`RATE_WINDOW`] seconds.
    pub credits: VecDeque<(f64, u64)>,
    /// Why it is quarantined (it then takes no leases), if it is.
    pub quarantine: Option<String>,
    /// Federated jobs it will not train (its contributor's privacy limits
    /// refuse them): offered none of their work on this connection.
    pub declined: HashSet<u64>,
    /// Its speed as the coordinator measured it: samples a second from
    /// grant to accepted update, smoothed over its leases. `None` until one
    /// is in, and again after a result of it is disputed (measured afresh).
    /// What a worker says of its own speed decides nothing.
    pub measured: Option<f64>,
}

/// Seconds over which a worker's throughput is measured.
pub const RATE_WINDOW: f64 = 60.0;

impl Worker {
    /// A newly connected worker.
    pub fn new(view: WorkerView, token: String, max_leases: u32, now: f64) -> Worker {
        Worker {
            view,
            token,
            draining: false,
            connected_at: now,
            max_leases,
            credits: VecDeque::new(),
            quarantine: None,
            declined: HashSet::new(),
            measured: None,
        }
    }

    /// Who the worker is for its record and for the one-backup rule: its
    /// payout account when signed in, else this connection
    /// ([`crate::reputation::identity`]).
    pub fn identity(&self) -> String {
        crate::reputation::identity(self.view.payout_address.as_deref(), self.view.id)
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
    /// Leased by another coordinator instance (sharing the database) to
    /// one of its workers.
    Remote {
        /// The holder.
        worker: u64,
    },
}

/// One slot of work in a running job's round: one of its shards, or a
/// replica of one (the same shard trained again by another worker).
#[derive(Clone, Debug)]
pub struct Shard {
    /// The shard it trains (its own index, unless it is a replica).
    pub base: u32,
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
    /// A second lease on the same work while it is leased (see
    /// [`Backup`]).
    pub backup: Option<Backup>,
}

/// A backup lease: the same slot, granted to an idle worker while its
/// lease is still out and nothing of the round is left pending, so that
/// the round need not wait for a straggler. The first valid update wins
/// and the other lease is revoked; if either lease ends without an update,
/// the other carries on alone.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Backup {
    /// The backup lease.
    pub lease: u64,
    /// Its holder.
    pub worker: u64,
}

impl Shard {
    /// Marks the slot done by `worker`'s update under lease `lease`;
    /// returns the other lease it had (see [`Backup`]), which lost.
    fn finish(&mut self, worker: u64, lease: u64) -> Option<u64> {
        let other = match self.state {
            ShardState::Leased { lease: l, .. } if l != lease => Some(l),
            _ => self.backup.map(|b| b.lease).filter(|&l| l != lease),
        };
        self.state = ShardState::Done { worker };
        self.backup = None;
        other
    }

    /// A slot training shard `base` that no one has leased yet this round.
    pub fn pending(base: u32, data_sha: String, samples: u64) -> Shard {
        Shard {
            base,
            data_sha,
            samples,
            state: ShardState::Pending,
            attempts: 0,
            refused_by: Vec::new(),
            backup: None,
        }
    }
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
    /// This round's slots: its shards, in order, then their replicas.
    pub shards: Vec<Shard>,
    /// How many of the slots are the job's own shards.
    pub base_shards: usize,
    /// Federated mode: each slot trains a contributor's own data, this
    /// way. `None`: slots train the job's shards.
    pub local: Option<LocalTask>,
    /// A private job is leased only to workers signed in as one of these
    /// accounts (see [`JobSpec::restricted_to`]). `None`: to anyone.
    pub trainers: Option<Vec<String>>,
    /// A paid job is leased only until then (Unix seconds): later work
    /// could not be settled before its deadline. `None`: no end.
    pub leases_until: Option<f64>,
    /// When this instance granted the round's first lease, in the hub's
    /// clock: a quorum's wait counts from there.
    pub round_opened: Option<f64>,
    /// The round closed on its quorum (see
    /// [`QuorumSpec`](oblivion_protocol::aggregation::QuorumSpec)): it takes no
    /// more work, and is aggregated with the updates it has.
    pub closed: bool,
    /// The identities ([`Worker::identity`]) holding a backup lease this
    /// round, or whose backup won its slot: one each, so that a fast
    /// worker cannot race the honest holders for slot after slot of a
    /// round (a liar posting worthless updates at once would otherwise
    /// hold most of it before its results are judged). A backup that lost
    /// counts no more (it took nothing). Keyed on the identity, not the
    /// connection: an account connected several times has one.
    pub backed_up_by: Vec<String>,
}

impl LiveJob {
    /// A new job, pending, at round 1 with every shard pending, and a
    /// replica of each shard in `replicas`.
    pub fn new(
        id: u64,
        spec: JobSpec,
        arch: Arc<Architecture>,
        global_sha: String,
        global: Arc<Params>,
        shards: Vec<(String, u64)>,
        replicas: &[u32],
    ) -> LiveJob {
        let base_shards = shards.len();
        let mut job = LiveJob {
            id,
            spec,
            arch,
            status: JobStatus::Pending,
            round: 1,
            global_sha,
            global,
            shards: shards
                .into_iter()
                .enumerate()
                .map(|(i, (data_sha, samples))| Shard::pending(i as u32, data_sha, samples))
                .collect(),
            base_shards,
            local: None,
            trainers: None,
            leases_until: None,
            round_opened: None,
            closed: false,
            backed_up_by: Vec::new(),
        };
        job.set_replicas(replicas);
        job
    }

    /// The same job, leased only to workers paid to one of `accounts`
    /// when it is `Some`.
    pub fn trained_by(mut self, accounts: Option<Vec<String>>) -> LiveJob {
        self.trainers = accounts;
        self
    }

    /// Whether `worker` may be leased this job's work: the right account
    /// for a private job, and fitting local data for a federated one.
    fn admits(&self, worker: &Worker) -> bool {
        if worker.declined.contains(&self.id) {
            return false;
        }
        let account_ok = self.trainers.as_ref().is_none_or(|accounts| {
            worker
                .view
                .payout_address
                .as_ref()
                .is_some_and(|a| accounts.binary_search(a).is_ok())
        });
        let data_ok =
            self.local.as_ref().is_none_or(|local| {
                worker.view.local_data.as_ref().is_some_and(|d| {
                    d.fits(&self.arch.input_shape, self.arch.classes, local.columns())
                })
            });
        account_ok && data_ok
    }

    /// The same job in federated mode: its slots train contributors' data.
    pub fn federated(mut self, local: LocalTask) -> LiveJob {
        self.local = Some(local);
        self
    }

    /// The workers holding, or done with, a slot this round that trains a
    /// shard `which` picks.
    fn holders(&self, which: impl Fn(u32) -> bool) -> Vec<u64> {
        self.shards
            .iter()
            .filter(|s| which(s.base))
            .flat_map(|s| {
                let holder = match s.state {
                    ShardState::Leased { worker, .. }
                    | ShardState::Done { worker }
                    | ShardState::Remote { worker } => Some(worker),
                    ShardState::Pending => None,
                };
                holder.into_iter().chain(s.backup.map(|b| b.worker))
            })
            .collect()
    }

    /// Makes the slots beyond the shards replicas of `replicas`, all
    /// pending (a new round's, or a round given a third opinion: slots
    /// already there keep their state).
    pub fn set_replicas(&mut self, replicas: &[u32]) {
        for (k, &base) in replicas.iter().enumerate() {
            let slot = self.base_shards + k;
            let Some(original) = self.shards.get(base as usize) else {
                continue;
            };
            let copy = Shard::pending(base, original.data_sha.clone(), original.samples);
            match self.shards.get(slot) {
                Some(existing) if existing.base == base => {}
                Some(_) => self.shards[slot] = copy,
                None => self.shards.push(copy),
            }
        }
        self.shards.truncate(self.base_shards + replicas.len());
    }

    /// Whether this round has replica slots.
    fn has_replicas(&self) -> bool {
        self.shards.len() > self.base_shards
    }

    /// Whether every shard of the round is in, or the round closed on its
    /// quorum (it is then aggregated).
    pub fn round_complete(&self) -> bool {
        self.closed
            || self
                .shards
                .iter()
                .all(|s| matches!(s.state, ShardState::Done { .. }))
    }

    /// This instance's leases on the round's slots, backups too.
    fn leases(&self) -> Vec<u64> {
        self.shards
            .iter()
            .flat_map(|s| {
                let lease = match s.state {
                    ShardState::Leased { lease, .. } => Some(lease),
                    _ => None,
                };
                lease.into_iter().chain(s.backup.map(|b| b.lease))
            })
            .collect()
    }

    /// Whether the round takes leases at `now` (Unix seconds): not
    /// complete, and not past a paid job's last lease time.
    fn open_at(&self, now: f64) -> bool {
        !self.round_complete() && self.leases_until.is_none_or(|t| now < t)
    }

    /// Slots of the round with an update in.
    pub fn slots_done(&self) -> usize {
        self.shards
            .iter()
            .filter(|s| matches!(s.state, ShardState::Done { .. }))
            .count()
    }
}

/// An active lease.
#[derive(Clone, Debug, PartialEq)]
pub struct Lease {
    /// Id (assigned by the database).
    pub id: u64,
    /// Job.
    pub job: u64,
    /// Round it belongs to.
    pub round: u32,
    /// Shard index.
    pub shard: u32,
    /// Holder.
    pub worker: u64,
    /// Deadline for the next heartbeat, in the hub's clock (seconds).
    pub expires_at: f64,
    /// When it ends whatever its heartbeats, in the hub's clock.
    pub overdue_at: f64,
    /// Last reported progress.
    pub progress: f32,
    /// When its progress last grew (or it was granted), in the hub's clock.
    pub progressed_at: f64,
    /// When it was granted, in the hub's clock.
    pub granted_at: f64,
}

/// A lease [`Hub::plan`] proposes: shard `shard` of `job`'s round `round`
/// to `worker`. It exists once the database records it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Grant {
    /// Job.
    pub job: u64,
    /// Round.
    pub round: u32,
    /// Slot index (a shard, or a replica).
    pub shard: u32,
    /// The shard the slot trains.
    pub base: u32,
    /// Proposed holder.
    pub worker: u64,
    /// A backup lease on a slot that is leased already (see [`Backup`]).
    pub backup: bool,
}

/// What an accepted update did (see [`Hub::complete`]).
#[derive(Clone, Debug, PartialEq)]
pub struct Completed {
    /// The lease it completed.
    pub lease: Lease,
    /// Whether its round is now complete.
    pub round_done: bool,
    /// The other lease on the same slot, which lost the race: revoked.
    pub superseded: Option<Ended>,
}

/// A lease that ended without an update.
#[derive(Clone, Debug, PartialEq)]
pub struct Ended {
    /// The lease.
    pub lease: Lease,
    /// How it ended.
    pub status: LeaseStatus,
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
    /// The job's fixed bound on an update's norm, if it sets one.
    pub fixed_bound: Option<f64>,
    /// The round's global weights (an update's norm is bounded relative
    /// to theirs when the job sets no fixed bound).
    pub global: Arc<Params>,
    /// Samples of the shard.
    pub samples: u64,
    /// Whether it trains a contributor's own data (federated): its update
    /// carries no figures.
    pub federated: bool,
}

/// Order of workers with room for another lease: fewest active leases,
/// then the best measured speed (a worker not measured yet first, so that
/// a newcomer is tried at once), then the lowest id (the longest
/// connected). Never the speed a worker claims: a liar would be served
/// first for ever.
type RoomKey = (u32, Reverse<u64>, u64);

/// Weight of a lease's speed in a worker's measured speed.
const SPEED_SMOOTHING: f64 = 0.5;

/// The live state.
#[derive(Debug)]
pub struct Hub {
    policy: LeasePolicy,
    /// Connected workers by id.
    pub workers: BTreeMap<u64, Worker>,
    /// Running jobs by id.
    pub jobs: BTreeMap<u64, LiveJob>,
    leases: HashMap<u64, Lease>,
    leases_by_worker: HashMap<u64, BTreeSet<u64>>,
    workers_by_token: HashMap<String, u64>,
    with_room: BTreeSet<RoomKey>,
}

/// A total order on measured speeds (finite and non-negative by
/// construction, whose bit patterns then sort like the numbers); not
/// measured yet sorts above all.
fn speed_key(speed: Option<f64>) -> u64 {
    match speed {
        None => u64::MAX,
        Some(s) if s.is_finite() && s > 0.0 => s.to_bits(),
        Some(_) => 0,
    }
}

impl Hub {
    /// An empty hub.
    pub fn new(policy: LeasePolicy) -> Hub {
        Hub {
            policy,
            workers: BTreeMap::new(),
            jobs: BTreeMap::new(),
            leases: HashMap::new(),
            leases_by_worker: HashMap::new(),
            workers_by_token: HashMap::new(),
            with_room: BTreeSet::new(),
        }
    }

    fn active_count(&self, worker: u64) -> u32 {
        self.leases_by_worker
            .get(&worker)
            .map_or(0, |s| s.len() as u32)
    }

    /// The worker's place in the dispatch order, if it has room.
    fn room_key(&self, worker: u64) -> Option<RoomKey> {
        let w = self.workers.get(&worker)?;
        let active = self.active_count(worker);
        (!w.draining && w.quarantine.is_none() && active < self.policy.cap.min(w.max_leases))
            .then(|| (active, Reverse(speed_key(w.measured)), w.view.id))
    }

    /// Runs `change` on the worker's leases or flags, keeping the dispatch
    /// index in step.
    fn reindexed<T>(&mut self, worker: u64, change: impl FnOnce(&mut Hub) -> T) -> T {
        if let Some(key) = self.room_key(worker) {
            self.with_room.remove(&key);
        }
        let out = change(self);
        if let Some(key) = self.room_key(worker) {
            self.with_room.insert(key);
        }
        out
    }

    /// Registers a connected worker.
    pub fn add_worker(&mut self, worker: Worker) {
        let id = worker.view.id;
        self.workers_by_token.insert(worker.token.clone(), id);
        self.reindexed(id, |hub| {
            hub.workers.insert(id, worker);
        });
    }

    /// A worker takes no new leases.
    pub fn drain(&mut self, worker: u64) {
        self.reindexed(worker, |hub| {
            if let Some(w) = hub.workers.get_mut(&worker) {
                w.draining = true;
            }
        });
    }

    /// Quarantines the connected workers of `identity` (a payout account,
    /// or `worker:<id>`): they take no new leases, and the ones they hold
    /// end and go to others.
    pub fn quarantine(&mut self, identity: &str, reason: &str) -> Vec<Ended> {
        let ids: Vec<u64> = self
            .workers
            .values()
            .filter(|w| {
                crate::reputation::identity(w.view.payout_address.as_deref(), w.view.id) == identity
            })
            .map(|w| w.view.id)
            .collect();
        let mut ended = Vec::new();
        for id in ids {
            self.reindexed(id, |hub| {
                if let Some(w) = hub.workers.get_mut(&id) {
                    w.quarantine = Some(reason.to_string());
                }
            });
            let leases: Vec<u64> = self.leases_of(id).map(|l| l.id).collect();
            ended.extend(
                leases
                    .into_iter()
                    .filter_map(|l| self.end(l, LeaseStatus::Revoked)),
            );
        }
        ended
    }

    /// Active leases of a worker.
    pub fn leases_of(&self, worker: u64) -> impl Iterator<Item = &Lease> {
        self.leases_by_worker
            .get(&worker)
            .into_iter()
            .flatten()
            .filter_map(|id| self.leases.get(id))
    }

    /// An active lease.
    pub fn lease(&self, id: u64) -> Option<&Lease> {
        self.leases.get(&id)
    }

    /// Removes a lease from the indexes; the caller decides about its shard.
    fn take_lease(&mut self, id: u64) -> Option<Lease> {
        let worker = self.leases.get(&id)?.worker;
        self.reindexed(worker, |hub| {
            if let Some(set) = hub.leases_by_worker.get_mut(&worker) {
                set.remove(&id);
                if set.is_empty() {
                    hub.leases_by_worker.remove(&worker);
                }
            }
            hub.leases.remove(&id)
        })
    }

    /// Ends a lease without an update; its shard goes back to pending.
    /// A backup lease ending leaves the slot to its lease; a lease ending
    /// leaves it to its backup, if it has one.
    fn end(&mut self, id: u64, status: LeaseStatus) -> Option<Ended> {
        let lease = self.take_lease(id)?;
        if let Some(shard) = self
            .jobs
            .get_mut(&lease.job)
            .and_then(|j| j.shards.get_mut(lease.shard as usize))
        {
            if shard.backup.is_some_and(|b| b.lease == id) {
                shard.backup = None;
                self.forget_backup(lease.job, lease.worker);
            } else if shard.state
                == (ShardState::Leased {
                    lease: id,
                    worker: lease.worker,
                })
            {
                shard.state = match shard.backup.take() {
                    Some(b) => ShardState::Leased {
                        lease: b.lease,
                        worker: b.worker,
                    },
                    None => ShardState::Pending,
                };
            }
        }
        if let Some(w) = self.workers.get_mut(&lease.worker) {
            w.view.active_leases = w.view.active_leases.saturating_sub(1);
            if status.is_lost() {
                w.view.lost += 1;
            }
        }
        Some(Ended { lease, status })
    }

    /// A backup lease of `worker` on `job` ended without winning its slot:
    /// its identity may take another this round. Only a won backup, or one
    /// still out, counts against it (see [`LiveJob::backed_up_by`]).
    fn forget_backup(&mut self, job: u64, worker: u64) {
        let Some(identity) = self.workers.get(&worker).map(Worker::identity) else {
            return;
        };
        if let Some(j) = self.jobs.get_mut(&job)
            && let Some(at) = j.backed_up_by.iter().position(|i| *i == identity)
        {
            j.backed_up_by.swap_remove(at);
        }
    }

    /// Removes a worker that disconnected; its leases are re-issued.
    pub fn remove_worker(&mut self, id: u64) -> (Option<Worker>, Vec<Ended>) {
        let ids: Vec<u64> = self.leases_of(id).map(|l| l.id).collect();
        let ended = ids
            .iter()
            .filter_map(|l| self.end(*l, LeaseStatus::Disconnected))
            .collect();
        if let Some(key) = self.room_key(id) {
            self.with_room.remove(&key);
        }
        let worker = self.workers.remove(&id);
        if let Some(w) = &worker {
            self.workers_by_token.remove(&w.token);
        }
        (worker, ended)
    }

    /// A worker's heartbeat: renews all its leases until `now + ttl` (never
    /// past their lifetime).
    pub fn heartbeat(&mut self, worker: u64, progress: &[LeaseProgress], now: f64) {
        let ttl = self.policy.ttl.as_secs_f64();
        let ids: Vec<u64> = self.leases_of(worker).map(|l| l.id).collect();
        for id in ids {
            if let Some(lease) = self.leases.get_mut(&id) {
                lease.expires_at = now + ttl;
                if let Some(p) = progress.iter().find(|p| p.lease_id == id)
                    && p.progress.is_finite()
                {
                    let reported = p.progress.clamp(0.0, 1.0);
                    if reported > lease.progress {
                        lease.progressed_at = now;
                    }
                    lease.progress = reported;
                }
            }
        }
    }

    /// A worker gives a lease back.
    pub fn return_lease(&mut self, worker: u64, lease: u64, decline_job: bool) -> Option<Ended> {
        let job = match self.leases.get(&lease) {
            Some(l) if l.worker == worker => l.job,
            _ => return None,
        };
        if decline_job && let Some(w) = self.workers.get_mut(&worker) {
            w.declined.insert(job);
        }
        self.end(lease, LeaseStatus::Returned)
    }

    /// Ends every lease whose heartbeat deadline or lifetime passed, or
    /// whose progress stalled for [`LeasePolicy::stall`] (then, as past its
    /// lifetime, overdue: held without work, by the holder's fault).
    pub fn expire(&mut self, now: f64) -> Vec<Ended> {
        let stall = self.policy.stall.as_secs_f64();
        let mut stale: Vec<(u64, LeaseStatus)> = self
            .leases
            .values()
            .filter_map(|l| {
                if l.overdue_at < now || now - l.progressed_at > stall {
                    Some((l.id, LeaseStatus::Overdue))
                } else if l.expires_at < now {
                    Some((l.id, LeaseStatus::Expired))
                } else {
                    None
                }
            })
            .collect();
        stale.sort_unstable_by_key(|(id, _)| *id);
        stale
            .into_iter()
            .filter_map(|(id, status)| self.end(id, status))
            .collect()
    }

    /// Ends every lease of a job (it was cancelled or failed) and forgets it.
    pub fn remove_job(&mut self, job: u64) -> Vec<Ended> {
        let ids = self.jobs.get(&job).map_or_else(Vec::new, LiveJob::leases);
        let ended = ids
            .iter()
            .filter_map(|id| self.end(*id, LeaseStatus::Revoked))
            .collect();
        self.jobs.remove(&job);
        ended
    }

    /// Proposes leases for pending shards at `now`, without changing
    /// anything: shards of all jobs still open to leases interleaved (oldest job first within each turn);
    /// each to the eligible worker with the fewest active leases (then the
    /// best benchmark, then the lowest id), never past the per-worker cap,
    /// and to a worker whose update for that shard was rejected only when
    /// no one else can take it.
    pub fn plan(&self, now: f64) -> Vec<Grant> {
        let mut queue: Vec<(usize, u64, u32)> = Vec::new();
        let open = |j: &&LiveJob| j.open_at(now);
        for job in self.jobs.values().filter(open) {
            let mut turn = 0;
            for (i, shard) in job.shards.iter().enumerate() {
                if shard.state == ShardState::Pending {
                    queue.push((turn, job.id, i as u32));
                    turn += 1;
                }
            }
        }
        if self.with_room.is_empty() {
            return Vec::new();
        }
        queue.sort_unstable();
        // A private copy of the dispatch order, advanced as grants are
        // planned; `room` is each planned worker's remaining room.
        let mut order = self.with_room.clone();
        let mut room: HashMap<u64, u32> = HashMap::new();
        let mut grants: Vec<Grant> = Vec::new();
        for (_, job_id, shard_index) in queue {
            let Some(job) = self.jobs.get(&job_id) else {
                continue;
            };
            let slot = &job.shards[shard_index as usize];
            let refused = &slot.refused_by;
            // Every slot of one shard goes to a different worker (a
            // replica is worth nothing from the same one), counting the
            // grants planned so far. Only a round with replicas needs the
            // check, so that dispatch stays O(pending × log workers)
            // without them. In federated mode, one slot a round per
            // contributor, and only to one whose data fits. `exclusive`
            // says which slots a worker may hold only one of.
            let exclusive = |base: u32| job.local.is_some() || base == slot.base;
            let busy: Vec<u64> = if job.local.is_some() || job.has_replicas() {
                let mut busy = job.holders(exclusive);
                busy.extend(
                    grants
                        .iter()
                        .filter(|g| g.job == job_id && exclusive(g.base))
                        .map(|g| g.worker),
                );
                busy
            } else {
                Vec::new()
            };
            let restricted = job.local.is_some() || job.trainers.is_some();
            let fits = |worker: u64| {
                !restricted || self.workers.get(&worker).is_some_and(|w| job.admits(w))
            };
            let free = |k: &&RoomKey| !busy.contains(&k.2) && fits(k.2);
            let pick = order
                .iter()
                .filter(free)
                .find(|k| !refused.contains(&k.2))
                .or_else(|| order.iter().find(free))
                .copied();
            let Some(key) = pick else {
                continue;
            };
            let worker = key.2;
            order.remove(&key);
            let left = room.entry(worker).or_insert_with(|| {
                let w = &self.workers[&worker];
                self.policy.cap.min(w.max_leases) - key.0
            });
            *left -= 1;
            if *left > 0 {
                order.insert((key.0 + 1, key.1, key.2));
            }
            grants.push(Grant {
                job: job_id,
                round: job.round,
                shard: shard_index,
                base: slot.base,
                worker,
                backup: false,
            });
        }
        let backups = self.plan_backups(now, &order);
        grants.extend(backups);
        grants
    }

    /// Backup leases (see [`Backup`]) for the rounds with nothing left
    /// pending, to the workers still idle in `order` (no lease held or
    /// planned), the fastest as measured first, for the oldest leases
    /// first. Only to a worker whose speed was measured on this connection
    /// (a new connection gets none, so reconnecting buys no backup); never
    /// to a worker holding any slot of the same shard, whose update for
    /// the slot was rejected, or whose identity had a backup lease of the
    /// round already (see [`LiveJob::backed_up_by`]); never for a federated slot,
    /// which trains a contributor's own data that no one else can stand in
    /// for.
    fn plan_backups(&self, now: f64, order: &BTreeSet<RoomKey>) -> Vec<Grant> {
        let mut idle: Vec<u64> = order
            .iter()
            .filter(|k| k.0 == 0)
            .map(|k| k.2)
            .filter(|w| self.workers.get(w).is_some_and(|w| w.measured.is_some()))
            .collect();
        if idle.is_empty() {
            return Vec::new();
        }
        let mut slots: Vec<(f64, u64, u32)> = Vec::new();
        for job in self.jobs.values() {
            if !job.open_at(now) || job.local.is_some() {
                continue;
            }
            if job.shards.iter().any(|s| s.state == ShardState::Pending) {
                continue;
            }
            for (i, shard) in job.shards.iter().enumerate() {
                if let (ShardState::Leased { lease, .. }, None) = (shard.state, shard.backup)
                    && let Some(l) = self.leases.get(&lease)
                {
                    slots.push((l.granted_at, job.id, i as u32));
                }
            }
        }
        slots.sort_unstable_by(|a, b| a.0.total_cmp(&b.0).then((a.1, a.2).cmp(&(b.1, b.2))));
        let mut grants: Vec<Grant> = Vec::new();
        // Identities planned a backup in this batch, by job.
        let mut planned: Vec<(u64, String)> = Vec::new();
        for (_, job_id, slot_index) in slots {
            let job = &self.jobs[&job_id];
            let slot = &job.shards[slot_index as usize];
            let mut busy = job.holders(|base| base == slot.base);
            busy.extend(
                grants
                    .iter()
                    .filter(|g| g.job == job_id && g.base == slot.base)
                    .map(|g| g.worker),
            );
            let eligible = |worker: &u64| {
                let Some(w) = self.workers.get(worker) else {
                    return false;
                };
                let identity = w.identity();
                !busy.contains(worker)
                    && !slot.refused_by.contains(worker)
                    && !job.backed_up_by.contains(&identity)
                    && !planned.contains(&(job_id, identity))
                    && (job.trainers.is_none() || job.admits(w))
            };
            let Some(at) = idle.iter().position(eligible) else {
                continue;
            };
            if let Some(w) = self.workers.get(&idle[at]) {
                planned.push((job_id, w.identity()));
            }
            grants.push(Grant {
                job: job_id,
                round: job.round,
                shard: slot_index,
                base: slot.base,
                worker: idle.remove(at),
                backup: true,
            });
            if idle.is_empty() {
                break;
            }
        }
        grants
    }

    /// Applies a lease the database recorded (as `id`). Returns `None`
    /// when the hub moved on meanwhile (the job, round, shard or worker is
    /// gone or taken): the caller then ends the recorded lease.
    pub fn grant(&mut self, grant: Grant, id: u64, now: f64) -> Option<Lease> {
        let job = self.jobs.get(&grant.job)?;
        let shard = job.shards.get(grant.shard as usize)?;
        let identity = self.workers.get(&grant.worker)?.identity();
        let open = if grant.backup {
            matches!(shard.state, ShardState::Leased { worker, .. } if worker != grant.worker)
                && shard.backup.is_none()
                && !job.backed_up_by.contains(&identity)
        } else {
            shard.state == ShardState::Pending
        };
        if job.round != grant.round || !open {
            return None;
        }
        self.room_key(grant.worker)?;
        let lease = Lease {
            id,
            job: grant.job,
            round: grant.round,
            shard: grant.shard,
            worker: grant.worker,
            expires_at: now + self.policy.ttl.as_secs_f64(),
            overdue_at: now + self.policy.max_lifetime.as_secs_f64(),
            progress: 0.0,
            progressed_at: now,
            granted_at: now,
        };
        self.reindexed(grant.worker, |hub| {
            hub.leases.insert(id, lease.clone());
            hub.leases_by_worker
                .entry(grant.worker)
                .or_default()
                .insert(id);
        });
        if let Some(job) = self.jobs.get_mut(&grant.job) {
            job.status = JobStatus::Running;
            job.round_opened.get_or_insert(now);
            let shard = &mut job.shards[grant.shard as usize];
            if grant.backup {
                shard.backup = Some(Backup {
                    lease: id,
                    worker: grant.worker,
                });
                job.backed_up_by.push(identity);
            } else {
                shard.state = ShardState::Leased {
                    lease: id,
                    worker: grant.worker,
                };
            }
            shard.attempts += 1;
        }
        if let Some(w) = self.workers.get_mut(&grant.worker) {
            w.view.active_leases += 1;
        }
        Some(lease)
    }

    /// The message telling a worker what to do for `lease`.
    pub fn task(&self, lease: &Lease) -> Option<LeaseTask> {
        let job = self.jobs.get(&lease.job)?;
        let shard = job.shards.get(lease.shard as usize)?;
        let spec = &job.spec;
        // A replica looks exactly like its shard: same number, same seed,
        // so that its worker cannot tell it is being checked.
        Some(LeaseTask {
            lease_id: lease.id,
            job_id: job.id,
            round: lease.round,
            shard: shard.base,
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
                .wrapping_add(u64::from(shard.base)),
            weights: job.global_sha.clone(),
            data: match &job.local {
                Some(local) => TrainingData::Local(Box::new(local.clone())),
                None => TrainingData::Shard(shard.data_sha.clone()),
            },
            expires_in_secs: self.policy.ttl.as_secs(),
        })
    }

    /// Checks that the worker with `token` holds `lease`; returns what its
    /// update must match.
    pub fn update_context(&self, token: &str, lease: u64) -> Result<UpdateContext, Refusal> {
        let worker = *self
            .workers_by_token
            .get(token)
            .ok_or(Refusal::UnknownWorker)?;
        let held = self
            .leases
            .get(&lease)
            .filter(|l| l.worker == worker)
            .ok_or(Refusal::NotHeld(lease))?;
        let job = self.jobs.get(&held.job).ok_or(Refusal::NotHeld(lease))?;
        Ok(UpdateContext {
            lease: held.clone(),
            arch: job.arch.clone(),
            fixed_bound: job.spec.update_norm_bound,
            global: job.global.clone(),
            samples: job.shards[held.shard as usize].samples,
            federated: job.local.is_some(),
        })
    }

    /// An update for `lease` failed validation: the lease ends and the
    /// shard goes to someone else.
    pub fn reject(&mut self, lease: u64) -> Option<Ended> {
        let ended = self.end(lease, LeaseStatus::Rejected)?;
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

    /// An update for `lease` was accepted and recorded: its slot is done,
    /// and the other lease on the slot, if any, lost (see [`Backup`]).
    pub fn complete(&mut self, lease: u64, now: f64) -> Option<Completed> {
        let lease = self.take_lease(lease)?;
        let job = self.jobs.get_mut(&lease.job)?;
        let shard = &mut job.shards[lease.shard as usize];
        // The slot's lease won: the backup on it lost.
        let lost_backup = shard
            .backup
            .filter(|b| b.lease != lease.id)
            .map(|b| b.worker);
        let other = shard.finish(lease.worker, lease.id);
        let samples = shard.samples;
        let round_done = job.round_complete();
        let superseded = other.and_then(|l| self.supersede(l, samples, now));
        if let Some(worker) = lost_backup {
            self.forget_backup(lease.job, worker);
        }
        let speed = samples as f64 / (now - lease.granted_at).max(1e-3);
        self.reindexed(lease.worker, |hub| {
            if let Some(w) = hub.workers.get_mut(&lease.worker) {
                w.measured = Some(match w.measured {
                    Some(m) => SPEED_SMOOTHING * speed + (1.0 - SPEED_SMOOTHING) * m,
                    None => speed,
                });
            }
        });
        if let Some(w) = self.workers.get_mut(&lease.worker) {
            w.view.active_leases = w.view.active_leases.saturating_sub(1);
            w.view.accepted += 1;
            // Throughput counts accepted work; the samples are credited
            // only once the round verifies the update (`credit`).
            w.credits.push_back((now, samples));
            while w
                .credits
                .front()
                .is_some_and(|(t, _)| *t < now - RATE_WINDOW)
            {
                w.credits.pop_front();
            }
        }
        Some(Completed {
            lease,
            round_done,
            superseded,
        })
    }

    /// Revokes a lease whose slot another worker's update completed. Its
    /// holder had not finished `samples` in the time it held the lease, so
    /// its measured speed is at most that: a straggler that always loses
    /// the race is not taken for a newcomer, served first for ever.
    fn supersede(&mut self, lease: u64, samples: u64, now: f64) -> Option<Ended> {
        let ended = self.end(lease, LeaseStatus::Revoked)?;
        let bound = samples as f64 / (now - ended.lease.granted_at).max(1e-3);
        let worker = ended.lease.worker;
        self.reindexed(worker, |hub| {
            if let Some(w) = hub.workers.get_mut(&worker) {
                w.measured = Some(w.measured.map_or(bound, |m| m.min(bound)));
            }
        });
        Some(ended)
    }

    /// Records a judged result of a connected worker: agreed ones credit
    /// their samples.
    pub fn record_result(&mut self, worker: u64, agreed: bool, samples: u64) {
        self.reindexed(worker, |hub| {
            if let Some(w) = hub.workers.get_mut(&worker) {
                if agreed {
                    w.view.agreed += 1;
                    w.view.samples += samples;
                } else {
                    w.view.disputed += 1;
                    // Fast at posting what is not work is not fast: its
                    // speed is measured afresh.
                    w.measured = None;
                }
            }
        });
    }

    /// Marks a shard done whose update the database accepted after the
    /// hub had ended its lease (it expired while the update was checked).
    /// The database refuses any other lease on a shard with an update, and
    /// revoked any other lease on the slot with it: a lease the hub still
    /// has there (its backup, which took over) is revoked and returned.
    pub fn shard_done(&mut self, lease: &Lease) -> Option<Ended> {
        let j = self
            .jobs
            .get_mut(&lease.job)
            .filter(|j| j.round == lease.round)?;
        let s = j.shards.get_mut(lease.shard as usize)?;
        if matches!(s.state, ShardState::Done { .. }) {
            return None;
        }
        let other = s.finish(lease.worker, lease.id);
        other.and_then(|l| self.end(l, LeaseStatus::Revoked))
    }

    /// Brings a job's round in line with the database, which other
    /// instances change too: `done` shards have an accepted update,
    /// `remote` ones an active lease granted by another instance, and any
    /// other shard that is not leased here is pending.
    pub fn sync_shards(
        &mut self,
        job: u64,
        round: u32,
        done: &[(u32, u64)],
        remote: &[(u32, u64)],
    ) {
        let mut stale_leases = Vec::new();
        if let Some(j) = self.jobs.get_mut(&job)
            && j.round == round
        {
            for (i, s) in j.shards.iter_mut().enumerate() {
                let i = i as u32;
                if let Some(&(_, worker)) = done.iter().find(|(d, _)| *d == i) {
                    if let ShardState::Leased { lease, .. } = s.state {
                        stale_leases.push(lease);
                    }
                    stale_leases.extend(s.backup.take().map(|b| b.lease));
                    s.state = ShardState::Done { worker };
                } else if let Some(&(_, worker)) = remote.iter().find(|(r, _)| *r == i) {
                    if s.state == ShardState::Pending {
                        s.state = ShardState::Remote { worker };
                    }
                } else if matches!(s.state, ShardState::Remote { .. }) {
                    s.state = ShardState::Pending;
                }
            }
        }
        for lease in stale_leases {
            self.take_lease(lease);
        }
    }

    /// Starts the job's next round from new global weights.
    pub fn next_round(
        &mut self,
        job: u64,
        round: u32,
        global_sha: String,
        global: Arc<Params>,
        replicas: &[u32],
    ) {
        if let Some(j) = self.jobs.get_mut(&job) {
            j.round = round;
            j.global_sha = global_sha;
            j.global = global;
            j.round_opened = None;
            j.closed = false;
            j.backed_up_by.clear();
            j.shards.truncate(j.base_shards);
            for s in &mut j.shards {
                s.state = ShardState::Pending;
                s.attempts = 0;
                s.refused_by.clear();
                s.backup = None;
            }
            j.set_replicas(replicas);
        }
    }

    /// Gives `job`'s `round` the replica slots `replicas` (a third opinion
    /// added to those it has).
    pub fn set_replicas(&mut self, job: u64, round: u32, replicas: &[u32]) {
        if let Some(j) = self.jobs.get_mut(&job)
            && j.round == round
        {
            j.set_replicas(replicas);
        }
    }

    /// The rounds due to close on their quorum at `now`: their job's
    /// quorum has waited its time since the round's first lease, and
    /// enough of the round's slots are in (but not all). With the updates
    /// each needs.
    pub fn quorum_due(&self, now: f64) -> Vec<(u64, u32, usize)> {
        self.jobs
            .values()
            .filter_map(|j| {
                let quorum = j.spec.quorum.as_ref()?;
                let waited = j
                    .round_opened
                    .is_some_and(|t| now - t >= quorum.after_secs as f64);
                let needed = quorum.needed(j.shards.len());
                (waited && !j.round_complete() && j.slots_done() >= needed)
                    .then_some((j.id, j.round, needed))
            })
            .collect()
    }

    /// Closes `job`'s `round` on its quorum (the database did): the leases
    /// still out end, revoked, and the round is complete.
    pub fn close_round(&mut self, job: u64, round: u32) -> Vec<Ended> {
        let Some(j) = self.jobs.get_mut(&job).filter(|j| j.round == round) else {
            return Vec::new();
        };
        j.closed = true;
        j.leases()
            .into_iter()
            .filter_map(|l| self.end(l, LeaseStatus::Revoked))
            .collect()
    }

    /// Connected workers with their state, leases and measured throughput.
    pub fn worker_views(&self, now: f64) -> Vec<WorkerView> {
        self.workers
            .values()
            .map(|w| {
                let mut view = w.view.clone();
                let public = |job: u64| {
                    self.jobs
                        .get(&job)
                        .is_some_and(|j| j.spec.visibility == oblivion_protocol::Visibility::Public)
                };
                let leases: Vec<WorkerLease> = self
                    .leases_of(w.view.id)
                    .filter(|l| public(l.job))
                    .map(|l| WorkerLease {
                        lease_id: l.id,
                        job_id: l.job,
                        round: l.round,
                        progress: l.progress,
                    })
                    .collect();
                view.quarantine = w.quarantine.clone();
                view.state = if w.quarantine.is_some() {
                    WorkerState::Quarantined
                } else if !leases.is_empty() {
                    WorkerState::Training
                } else if w.draining {
                    WorkerState::Draining
                } else {
                    WorkerState::Idle
                };
                view.leases = leases;
                view.samples_per_second = w.samples_per_second(now);
                // What federated jobs need to match it stays here; the
                // public sees the fit only: no column names (they can
                // describe the data) and the size to a power of two.
                view.local_data = view.local_data.map(|d| LocalDataOffer {
                    columns: None,
                    samples: d.samples.checked_ilog2().map_or(0, |b| 1 << b),
                    ..d
                });
                view
            })
            .collect()
    }

    /// Running public jobs with their current round's shards (the
    /// snapshot is shared by every viewer, so private jobs stay out).
    pub fn live_jobs(&self) -> Vec<LiveJobView> {
        self.jobs
            .values()
            .filter(|j| j.spec.visibility == oblivion_protocol::Visibility::Public)
            .map(|j| LiveJobView {
                id: j.id,
                name: j.spec.name.clone(),
                status: j.status,
                round: j.round,
                rounds: j.spec.rounds,
                shards: self.shard_views(j.id, ShardDetail::Public),
                aggregating: j.round_complete(),
            })
            .collect()
    }

    /// The current round's shards of a running job, for the API (see
    /// [`ShardDetail`]).
    pub fn shard_views(&self, job: u64, detail: ShardDetail) -> Vec<ShardView> {
        let Some(j) = self.jobs.get(&job) else {
            return Vec::new();
        };
        let view = |i: usize, s: &Shard| {
            let (state, worker_id) = match s.state {
                ShardState::Pending => (ShardStatus::Pending, None),
                ShardState::Leased { worker, .. } | ShardState::Remote { worker } => {
                    (ShardStatus::Leased, Some(worker))
                }
                ShardState::Done { worker } => (ShardStatus::Done, Some(worker)),
            };
            let progress = match s.state {
                ShardState::Pending | ShardState::Remote { .. } => 0.0,
                ShardState::Leased { lease, .. } => {
                    self.leases.get(&lease).map_or(0.0, |l| l.progress)
                }
                ShardState::Done { .. } => 1.0,
            };
            ShardView {
                shard: i as u32,
                state,
                attempts: s.attempts,
                worker_id,
                progress,
            }
        };
        if detail == ShardDetail::Owner {
            return j
                .shards
                .iter()
                .enumerate()
                .map(|(i, s)| view(i, s))
                .collect();
        }
        j.shards[..j.base_shards]
            .iter()
            .enumerate()
            .map(|(i, base)| {
                let slots = j.shards.iter().filter(|s| s.base == base.base);
                let done = slots
                    .clone()
                    .all(|s| matches!(s.state, ShardState::Done { .. }));
                let pending = slots.clone().all(|s| s.state == ShardState::Pending);
                let mut shown = view(i, base);
                if !done {
                    // Neither holder nor progress: either would differ
                    // between a shard trained once and one trained twice.
                    shown.worker_id = None;
                    shown.progress = 0.0;
                    shown.state = if pending {
                        ShardStatus::Pending
                    } else {
                        ShardStatus::Leased
                    };
                }
                shown
            })
            .collect()
    }

    /// Distinct workers holding a lease of `job` (in public, of its
    /// shards' first slots only: replicas are not counted).
    pub fn active_workers(&self, job: u64, detail: ShardDetail) -> u32 {
        let Some(j) = self.jobs.get(&job) else {
            return 0;
        };
        let slots = match detail {
            ShardDetail::Owner => &j.shards[..],
            ShardDetail::Public => &j.shards[..j.base_shards],
        };
        let mut ids: Vec<u64> = slots
            .iter()
            .filter_map(|s| match s.state {
                ShardState::Leased { worker, .. } | ShardState::Remote { worker } => Some(worker),
                _ => None,
            })
            .collect();
        ids.sort_unstable();
        ids.dedup();
        ids.len() as u32
    }
}

/// How much of a round a view shows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ShardDetail {
    /// The job's owner: every slot, replicas too, with its holder and
    /// progress.
    Owner,
    /// Everyone else: one entry per shard, whose holder and progress show
    /// only once all its slots are done. Nothing tells a worker whether
    /// the shard it trains is replicated: it must train every one honestly.
    Public,
}

#[cfg(test)]
mod tests {
    use super::*;
    use oblivion_protocol::api::WorkerView;
    use oblivion_protocol::wire::{ClientKind, DeviceInfo, LeaseProgress};

    struct Net {
        hub: Hub,
        next_worker: u64,
        next_lease: u64,
    }

    impl Net {
        fn new() -> Net {
            Net {
                hub: Hub::new(LeasePolicy {
                    cap: 2,
                    ttl: Duration::from_secs(30),
                    max_lifetime: Duration::from_secs(600),
                    stall: Duration::from_secs(120),
                }),
                next_worker: 0,
                next_lease: 0,
            }
        }

        /// Plans and grants everything, as the database would accept it.
        fn dispatch(&mut self, now: f64) -> Vec<Lease> {
            let plan = self.hub.plan(now);
            plan.into_iter()
                .filter_map(|g| {
                    self.next_lease += 1;
                    self.hub.grant(g, self.next_lease, now)
                })
                .collect()
        }

        fn add_worker(&mut self, benchmark: f64) -> u64 {
            self.add_worker_as(benchmark, None)
        }

        /// A worker signed in as `account` (its payout address), if any.
        fn add_worker_as(&mut self, benchmark: f64, account: Option<String>) -> u64 {
            self.next_worker += 1;
            let id = self.next_worker;
            let mut view = WorkerView::connected(
                format!("w{id}"),
                ClientKind::Native,
                DeviceInfo {
                    backend: "cpu".into(),
                    name: "test".into(),
                    detail: String::new(),
                },
                benchmark,
            );
            view.id = id;
            view.payout_address = account;
            self.hub.add_worker(Worker {
                view,
                token: format!("token{id}"),
                draining: false,
                connected_at: 0.0,
                max_leases: u32::MAX,
                credits: VecDeque::new(),
                quarantine: None,
                declined: HashSet::new(),
                measured: None,
            });
            id
        }

        fn add_job(&mut self, id: u64, shards: usize) {
            let spec: JobSpec = serde_json::from_value(serde_json::json!({
                "name": "t", "model": {"kind": "mlp", "hidden": []}, "dataset": {"builtin": "iris"},
                "rounds": 2, "shards_per_round": shards, "batch_size": 8,
                "optimizer": {"kind": "adam", "learning_rate": 0.01}
            }))
            .unwrap();
            let arch = Architecture::new(spec.model.clone(), vec![4], 3).unwrap();
            self.hub.jobs.insert(
                id,
                LiveJob::new(
                    id,
                    spec,
                    Arc::new(arch),
                    "g".into(),
                    Arc::new(Params::default()),
                    (0..shards).map(|i| (format!("d{i}"), 10)).collect(),
                    &[],
                ),
            );
        }
    }

    fn holders(leases: &[Lease]) -> Vec<u64> {
        leases.iter().map(|l| l.worker).collect()
    }

    #[test]
    fn fewest_leases_first_then_measured_speed_and_cap_respected() {
        let mut n = Net::new();
        let honest = n.add_worker(10.0);
        // Claims to be the fastest: it decides nothing.
        let liar = n.add_worker(1e9);
        n.add_job(1, 6);
        let issued = n.dispatch(0.0);
        // Alternates between workers (the longest connected first on ties),
        // stops at the cap.
        assert_eq!(holders(&issued), vec![honest, liar, honest, liar]);
        assert_eq!(n.hub.jobs[&1].status, JobStatus::Running);
        assert!(n.dispatch(0.0).is_empty(), "both workers are at the cap");
        // The liar's shard of 10 samples takes it 5 s, the honest one's 1 s.
        let Completed {
            lease,
            round_done: done,
            ..
        } = n.hub.complete(issued[1].id, 5.0).unwrap();
        assert_eq!((lease.worker, done), (liar, false));
        n.hub.complete(issued[0].id, 1.0).unwrap();
        // Both have room for one: the faster as measured goes first.
        assert_eq!(holders(&n.dispatch(5.0)), vec![honest, liar]);
        // A disputed result forgets the speed: fast at posting what is
        // not work is not fast.
        n.hub.record_result(honest, false, 0);
        assert_eq!(n.hub.workers[&honest].measured, None);
    }

    #[test]
    fn a_paid_job_is_not_leased_near_its_deadline() {
        let mut n = Net::new();
        n.add_worker(1.0);
        n.add_job(1, 4);
        n.hub.jobs.get_mut(&1).unwrap().leases_until = Some(100.0);
        assert_eq!(n.dispatch(99.0).len(), 2, "before the cut-off, leased");
        n.add_worker(1.0);
        assert!(
            n.dispatch(100.0).is_empty(),
            "from the cut-off on, no lease whatever the room"
        );
    }

    #[test]
    fn a_plan_changes_nothing_until_granted_and_stale_grants_are_refused() {
        let mut n = Net::new();
        let a = n.add_worker(1.0);
        n.add_job(1, 1);
        let plan = n.hub.plan(0.0);
        assert_eq!(plan.len(), 1);
        assert_eq!(n.hub.plan(0.0), plan, "planning is pure");
        assert_eq!(n.hub.jobs[&1].shards[0].state, ShardState::Pending);
        assert!(n.hub.grant(plan[0], 7, 0.0).is_some());
        assert!(
            n.hub.grant(plan[0], 8, 0.0).is_none(),
            "shard already leased"
        );
        n.hub.remove_worker(a);
        let b = n.add_worker(1.0);
        let again = n.hub.plan(0.0);
        n.hub.remove_worker(b);
        assert!(n.hub.grant(again[0], 9, 0.0).is_none(), "worker gone");
        n.hub.remove_job(1);
        assert!(n.hub.grant(plan[0], 10, 0.0).is_none(), "job gone");
    }

    #[test]
    fn vanished_worker_loses_its_leases_and_shards_are_reissued() {
        let mut n = Net::new();
        let a = n.add_worker(1.0);
        n.add_job(1, 2);
        assert_eq!(n.dispatch(0.0).len(), 2);
        let b = n.add_worker(1.0);
        let (_, ended) = n.hub.remove_worker(a);
        assert_eq!(ended.len(), 2);
        assert!(ended.iter().all(|e| e.status == LeaseStatus::Disconnected));
        let again = n.dispatch(1.0);
        assert_eq!(holders(&again), vec![b, b]);
        assert!(
            again
                .iter()
                .all(|l| n.hub.jobs[&1].shards[l.shard as usize].attempts == 2)
        );
        assert!(n.hub.update_context("token1", again[0].id).is_err());
    }

    #[test]
    fn federated_slots_go_one_a_round_to_contributors_whose_data_fits() {
        let mut n = Net::new();
        let offer = |shape: Vec<usize>, classes| {
            Some(oblivion_protocol::wire::LocalDataOffer {
                shape,
                classes,
                samples: 50,
                columns: None,
            })
        };
        let none = n.add_worker(1000.0);
        let wrong = n.add_worker(900.0);
        let a = n.add_worker(10.0);
        let b = n.add_worker(5.0);
        let late = n.add_worker(1.0);
        for (w, data) in [
            (wrong, offer(vec![5], 3)),
            (a, offer(vec![4], 3)),
            (b, offer(vec![4], 2)),
            (late, offer(vec![4], 3)),
        ] {
            n.hub.workers.get_mut(&w).unwrap().view.local_data = data;
        }
        n.add_job(1, 2);
        let local = LocalTask {
            scaling: None,
            clip_norm: 1.0,
            noise_std: 0.1,
            rounds: 2,
        };
        let job = n.hub.jobs.remove(&1).unwrap().federated(local.clone());
        n.hub.jobs.insert(1, job);
        let first = n.dispatch(0.0);
        assert_eq!(
            holders(&first),
            vec![a, b],
            "neither the worker without data nor the one whose data does not fit"
        );
        let task = n.hub.task(&first[0]).unwrap();
        assert_eq!(task.data, TrainingData::Local(Box::new(local)));
        // a's update refused: its slot goes to another contributor first.
        n.hub.reject(first[0].id).unwrap();
        let again = n.dispatch(0.0);
        assert_eq!(holders(&again), vec![late]);
        assert!(none != late && n.dispatch(0.0).is_empty());
    }

    #[test]
    fn a_contributor_that_declines_a_job_is_offered_none_of_it() {
        let mut n = Net::new();
        let alice = n.add_worker(1.0);
        n.hub.workers.get_mut(&alice).unwrap().view.local_data =
            Some(oblivion_protocol::wire::LocalDataOffer {
                shape: vec![4],
                classes: 3,
                samples: 64,
                columns: None,
            });
        n.add_job(1, 1);
        let local = LocalTask {
            scaling: None,
            clip_norm: 1.0,
            noise_std: 1e-9,
            rounds: 20,
        };
        let job = n.hub.jobs.remove(&1).unwrap().federated(local);
        n.hub.jobs.insert(1, job);
        let first = n.dispatch(0.0);
        assert_eq!(holders(&first), vec![alice]);
        // Returned without declining: offered again at once.
        n.hub.return_lease(alice, first[0].id, false).unwrap();
        let again = n.dispatch(0.0);
        assert_eq!(holders(&again), vec![alice]);
        // Declined (its limits refuse the job): never offered again.
        n.hub.return_lease(alice, again[0].id, true).unwrap();
        assert!(n.dispatch(0.0).is_empty());
        n.add_job(2, 1);
        assert_eq!(holders(&n.dispatch(0.0)), vec![alice], "other jobs still");
    }

    #[test]
    fn a_replica_goes_to_another_worker_and_looks_like_its_shard() {
        let mut n = Net::new();
        let a = n.add_worker(100.0);
        n.add_job(1, 2);
        n.hub.jobs.get_mut(&1).unwrap().set_replicas(&[1]);
        assert_eq!(n.hub.jobs[&1].shards.len(), 3);
        // Alone, the worker gets both shards but never the replica.
        let first = n.dispatch(0.0);
        assert_eq!(
            first.iter().map(|l| l.shard).collect::<Vec<_>>(),
            vec![0, 1]
        );
        n.hub.complete(first[1].id, 0.0).unwrap();
        assert!(
            n.dispatch(0.0).is_empty(),
            "the replica waits for someone else"
        );
        let b = n.add_worker(1.0);
        let replica = n.dispatch(0.0);
        assert_eq!(replica.len(), 1);
        assert_eq!((replica[0].shard, replica[0].worker), (2, b));
        let (original, copy) = (
            n.hub.task(&first[1]).unwrap(),
            n.hub.task(&replica[0]).unwrap(),
        );
        assert_eq!(
            (copy.shard, copy.seed, &copy.data),
            (original.shard, original.seed, &original.data)
        );
        assert_ne!(a, b);
        // A third opinion for the same shard needs a third worker.
        n.hub.set_replicas(1, 1, &[1, 1]);
        assert!(n.dispatch(0.0).is_empty());
        let c = n.add_worker(1.0);
        assert_eq!(n.dispatch(0.0)[0].worker, c);
        // The next round starts without replicas unless given some.
        n.hub
            .next_round(1, 2, "g2".into(), Arc::new(Params::default()), &[]);
        assert_eq!(n.hub.jobs[&1].shards.len(), 2);
    }

    #[test]
    fn only_the_owner_sees_which_shards_are_replicated() {
        let mut n = Net::new();
        let a = n.add_worker(100.0);
        let b = n.add_worker(1.0);
        n.add_job(1, 2);
        n.hub.jobs.get_mut(&1).unwrap().set_replicas(&[1]);
        let leases = n.dispatch(0.0);
        assert_eq!(leases.len(), 3);
        let public = |n: &Net| n.hub.shard_views(1, ShardDetail::Public);
        // Every lease shows the same: a leased shard, no holder, no progress.
        let shown = public(&n);
        assert_eq!(shown.len(), 2);
        assert!(
            shown
                .iter()
                .all(|s| s.state == ShardStatus::Leased && s.worker_id.is_none())
        );
        assert_eq!(n.hub.shard_views(1, ShardDetail::Owner).len(), 3);
        // Shard 0 is trained once and shard 1 twice; one holder of each is
        // done. Nothing public tells the other holder of shard 1 apart from
        // the holder of an unreplicated shard.
        let by = |shard: usize| leases.iter().find(|l| l.shard as usize == shard).unwrap();
        n.hub.complete(by(1).id, 0.0).unwrap();
        let shown = public(&n);
        assert_eq!(shown[1].state, ShardStatus::Leased);
        assert_eq!((shown[1].worker_id, shown[1].progress), (None, 0.0));
        n.hub.complete(by(2).id, 0.0).unwrap();
        n.hub.complete(by(0).id, 0.0).unwrap();
        assert!(public(&n).iter().all(|s| s.state == ShardStatus::Done));
        // The network view names no shard of a lease.
        let _ = (a, b);
        let json = serde_json::to_string(&n.hub.worker_views(0.0)).unwrap();
        assert!(!json.contains("\"shard\""), "{json}");
    }

    #[test]
    fn a_private_job_goes_only_to_its_owner_and_trainers() {
        let mut n = Net::new();
        let account = |c: char| format!("0x{}", c.to_string().repeat(40));
        let signed_in = |n: &mut Net, who: Option<String>| n.add_worker_as(100.0, who);
        let anonymous = signed_in(&mut n, None);
        let stranger = signed_in(&mut n, Some(account('c')));
        let owner = signed_in(&mut n, Some(account('a')));
        let trainer = signed_in(&mut n, Some(account('b')));
        n.add_job(1, 6);
        let mut spec = n.hub.jobs[&1].spec.clone();
        spec.visibility = oblivion_protocol::Visibility::Private;
        spec.trainers = vec![account('b').to_uppercase().replace("0X", "0x")];
        let job = n.hub.jobs.remove(&1).unwrap();
        let trainers = spec.restricted_to(Some(&account('a')));
        n.hub
            .jobs
            .insert(1, LiveJob { spec, ..job }.trained_by(trainers));
        let issued = n.dispatch(0.0);
        let mut who = holders(&issued);
        who.sort_unstable();
        who.dedup();
        assert_eq!(who, vec![owner, trainer], "{issued:?}");
        assert!(!who.contains(&anonymous) && !who.contains(&stranger));
        // Nor does the network view show the private job's leases.
        assert!(n.hub.worker_views(0.0).iter().all(|w| w.leases.is_empty()));
    }

    #[test]
    fn a_quarantined_worker_loses_its_leases_and_gets_no_more() {
        let mut n = Net::new();
        let liar = n.add_worker(100.0);
        let honest = n.add_worker(1.0);
        n.add_job(1, 4);
        let issued = n.dispatch(0.0);
        assert_eq!(issued.len(), 4);
        let ended = n.hub.quarantine(&format!("worker:{liar}"), "disputed");
        assert_eq!(ended.len(), 2);
        assert!(
            ended
                .iter()
                .all(|e| e.lease.worker == liar && e.status == LeaseStatus::Revoked)
        );
        n.hub.complete(issued[1].id, 0.0).unwrap();
        let again = n.dispatch(1.0);
        assert!(
            !again.is_empty() && again.iter().all(|l| l.worker == honest),
            "{again:?}"
        );
        let view = n
            .hub
            .worker_views(1.0)
            .into_iter()
            .find(|w| w.id == liar)
            .unwrap();
        assert_eq!(view.state, WorkerState::Quarantined);
        assert_eq!(view.quarantine.as_deref(), Some("disputed"));
        assert!(n.hub.quarantine("0xnobody", "x").is_empty());
    }

    #[test]
    fn leases_expire_without_heartbeats() {
        let mut n = Net::new();
        let a = n.add_worker(1.0);
        n.add_job(1, 1);
        let lease = n.dispatch(0.0)[0].id;
        n.hub.heartbeat(
            a,
            &[LeaseProgress {
                lease_id: lease,
                progress: 0.5,
            }],
            20.0,
        );
        assert!(n.hub.expire(45.0).is_empty(), "renewed at 20 s until 50 s");
        assert_eq!(n.hub.lease(lease).unwrap().progress, 0.5);
        let ended = n.hub.expire(51.0);
        assert_eq!(ended[0].status, LeaseStatus::Expired);
        assert_eq!(n.hub.workers[&a].view.lost, 1);
        assert_eq!(n.hub.jobs[&1].shards[0].state, ShardState::Pending);
        let reissued = n.dispatch(52.0);
        assert_ne!(reissued[0].id, lease, "a fresh lease id");
    }

    #[test]
    fn a_lease_ends_at_its_lifetime_whatever_its_heartbeats() {
        let mut n = Net::new();
        let a = n.add_worker(1.0);
        n.add_job(1, 1);
        let lease = n.dispatch(0.0)[0].id;
        let mut t = 0.0;
        let at = |t: f64| {
            [LeaseProgress {
                lease_id: lease,
                progress: (t / 1000.0) as f32,
            }]
        };
        while t < 590.0 {
            t += 10.0;
            n.hub.heartbeat(a, &at(t), t);
            assert!(n.hub.expire(t).is_empty(), "alive at {t} s");
        }
        n.hub.heartbeat(a, &at(601.0), 601.0);
        let ended = n.hub.expire(601.0);
        assert_eq!(ended.len(), 1);
        assert_eq!(
            (ended[0].lease.id, ended[0].status),
            (lease, LeaseStatus::Overdue)
        );
    }

    #[test]
    fn a_lease_whose_progress_stalls_ends_however_diligent_its_heartbeats() {
        let mut n = Net::new();
        let a = n.add_worker(1.0);
        n.add_job(1, 1);
        let lease = n.dispatch(0.0)[0].id;
        let stuck = [LeaseProgress {
            lease_id: lease,
            progress: 0.5,
        }];
        // Progress grows to one half by 10 s, then never again.
        let mut t = 0.0;
        while t < 130.0 {
            t += 10.0;
            n.hub.heartbeat(a, &stuck, t);
            assert!(n.hub.expire(t).is_empty(), "alive at {t} s");
        }
        n.hub.heartbeat(a, &stuck, 131.0);
        let ended = n.hub.expire(131.0);
        assert_eq!(
            ended
                .iter()
                .map(|e| (e.lease.id, e.status))
                .collect::<Vec<_>>(),
            vec![(lease, LeaseStatus::Overdue)]
        );
    }

    #[test]
    fn only_the_holder_may_post_and_rejected_shards_go_elsewhere() {
        let mut n = Net::new();
        let a = n.add_worker(100.0);
        let b = n.add_worker(1.0);
        n.add_job(1, 1);
        let lease = n.dispatch(0.0)[0].clone();
        assert_eq!(lease.worker, a);
        assert_eq!(
            n.hub.update_context("token2", lease.id).unwrap_err(),
            Refusal::NotHeld(lease.id)
        );
        assert_eq!(
            n.hub.update_context("nope", lease.id).unwrap_err(),
            Refusal::UnknownWorker
        );
        assert!(n.hub.update_context("token1", lease.id).is_ok());
        n.hub.reject(lease.id).unwrap();
        assert_eq!(n.hub.workers[&a].view.rejected, 1);
        // The faster worker was refused: the shard goes to the other one.
        assert_eq!(holders(&n.dispatch(1.0)), vec![b]);
        assert!(
            n.hub.update_context("token1", lease.id).is_err(),
            "the old lease is gone"
        );
    }

    #[test]
    fn a_refused_worker_still_gets_the_shard_when_alone() {
        let mut n = Net::new();
        n.add_worker(1.0);
        n.add_job(1, 1);
        let lease = n.dispatch(0.0)[0].id;
        n.hub.reject(lease).unwrap();
        assert_eq!(n.dispatch(1.0).len(), 1);
    }

    #[test]
    fn shards_other_instances_hold_or_finished_are_not_planned() {
        let mut n = Net::new();
        let a = n.add_worker(1.0);
        n.add_job(1, 3);
        let mine = n.dispatch(0.0);
        assert_eq!(mine.len(), 2);
        let (first, second) = (mine[0].shard, mine[1].shard);
        // The database says: this instance's first shard was finished
        // elsewhere (its lease here is void) and shard 2 is leased by
        // another instance's worker 77.
        n.hub.sync_shards(1, 1, &[(first, 55)], &[(2, 77)]);
        assert_eq!(n.hub.leases_of(a).count(), 1);
        let views = n.hub.shard_views(1, ShardDetail::Owner);
        assert_eq!(views[first as usize].state, ShardStatus::Done);
        assert_eq!(views[2].worker_id, Some(77));
        assert!(n.hub.plan(0.0).is_empty(), "nothing left to plan here");
        // The other instance's lease ends: the shard is free again.
        n.hub.sync_shards(1, 1, &[(first, 55)], &[]);
        assert_eq!(n.dispatch(1.0).len(), 1);
        assert!(!n.hub.complete(mine[1].id, 1.0).unwrap().round_done);
        assert_eq!(
            n.hub.jobs[&1].shards[second as usize].state,
            ShardState::Done { worker: a }
        );
    }

    #[test]
    fn draining_workers_get_nothing() {
        let mut n = Net::new();
        let a = n.add_worker(100.0);
        let b = n.add_worker(1.0);
        n.hub.drain(a);
        n.add_job(1, 3);
        assert_eq!(holders(&n.dispatch(0.0)), vec![b, b]);
    }

    #[test]
    fn the_last_slots_of_a_round_get_backups_and_the_first_update_wins() {
        let mut n = Net::new();
        let (a, b, c) = (n.add_worker(1.0), n.add_worker(1.0), n.add_worker(1.0));
        n.add_job(1, 3);
        let issued = n.dispatch(0.0);
        assert_eq!(holders(&issued), vec![a, b, c]);
        assert!(n.dispatch(1.0).is_empty(), "no one is idle: no backup");
        // b finishes; nothing is pending, so idle b backs up the oldest
        // lease still out (a's, the lowest slot of those granted first).
        n.hub.complete(issued[1].id, 2.0).unwrap();
        let backup = n.dispatch(2.0);
        assert_eq!(holders(&backup), vec![b]);
        assert_eq!(backup[0].shard, 0);
        let slot = &n.hub.jobs[&1].shards[0];
        assert_eq!(
            slot.state,
            ShardState::Leased {
                lease: issued[0].id,
                worker: a
            }
        );
        assert_eq!(
            slot.backup,
            Some(Backup {
                lease: backup[0].id,
                worker: b
            })
        );
        // One backup a slot: b is busy now and nobody else is idle.
        assert!(n.dispatch(2.5).is_empty());
        // The backup's update comes first: a's lease is revoked, and a,
        // which had not finished 10 samples in 3 s, is measured at most
        // that fast (never again a newcomer served first).
        let done = n.hub.complete(backup[0].id, 3.0).unwrap();
        assert!(!done.round_done);
        let lost = done.superseded.unwrap();
        assert_eq!(
            (lost.lease.id, lost.status),
            (issued[0].id, LeaseStatus::Revoked)
        );
        assert_eq!(
            n.hub.jobs[&1].shards[0].state,
            ShardState::Done { worker: b }
        );
        assert_eq!(n.hub.workers[&a].measured, Some(10.0 / 3.0));
        assert!(
            n.hub.update_context("token1", issued[0].id).is_err(),
            "a may not post now"
        );
        // Both idle now, but b had its backup of the round: a backs up
        // c's slot.
        let backup = n.dispatch(3.0);
        assert_eq!(holders(&backup), vec![a]);
        // c goes away: its slot carries on with its backup alone, and no
        // one backs that up in turn (a holds it, b had its backup).
        n.hub.remove_worker(c);
        assert_eq!(
            n.hub.jobs[&1].shards[2].state,
            ShardState::Leased {
                lease: backup[0].id,
                worker: a
            }
        );
        assert!(n.dispatch(3.5).is_empty());
        let done = n.hub.complete(backup[0].id, 4.0).unwrap();
        assert!(done.round_done);
        assert!(done.superseded.is_none());
        assert!(n.hub.leases.is_empty());
        // A new round: backups again, one each.
        n.hub
            .next_round(1, 2, "g2".into(), Arc::new(Params::default()), &[]);
        assert!(n.hub.jobs[&1].backed_up_by.is_empty());
    }

    #[test]
    fn a_fast_liar_takes_one_backup_a_round_not_the_round() {
        // The liar posts at once; three honest workers take a while. It
        // finishes its slot before anyone, and would otherwise back up
        // every slot still out, one after another, winning each.
        let mut n = Net::new();
        let liar = n.add_worker(1000.0);
        let honest = [n.add_worker(1.0), n.add_worker(1.0), n.add_worker(1.0)];
        n.add_job(1, 4);
        let issued = n.dispatch(0.0);
        assert_eq!(issued.len(), 4);
        let mut won = 0;
        let mut t = 0.0;
        for _ in 0..4 {
            t += 0.1;
            let Some(l) = n
                .hub
                .leases
                .values()
                .find(|l| l.worker == liar)
                .map(|l| l.id)
            else {
                break;
            };
            let done = n.hub.complete(l, t).unwrap();
            won += usize::from(done.superseded.is_some());
            n.dispatch(t);
        }
        let slots = &n.hub.jobs[&1].shards;
        let by_liar = slots
            .iter()
            .filter(|s| s.state == ShardState::Done { worker: liar })
            .count();
        assert_eq!(won, 1, "one honest holder beaten, not three");
        assert!(by_liar <= 2, "its own slot and one backup: {by_liar}");
        let liar_id = n.hub.workers[&liar].identity();
        let liars_backups = n.hub.jobs[&1]
            .backed_up_by
            .iter()
            .filter(|&w| *w == liar_id);
        assert_eq!(liars_backups.count(), 1);
        // The honest holders' slots are theirs to finish.
        let still_theirs = slots
            .iter()
            .filter(|s| matches!(s.state, ShardState::Leased { worker, .. } if honest.contains(&worker)))
            .count();
        assert_eq!(by_liar + still_theirs, 4);
    }

    #[test]
    fn reconnecting_buys_no_second_backup() {
        // A liar, signed in, posts at once and wins a backup; then it
        // comes back as a new connection, anonymous or as its account.
        let mut n = Net::new();
        let liar = n.add_worker_as(1000.0, Some("0xliar".into()));
        let honest = [n.add_worker(1.0), n.add_worker(1.0), n.add_worker(1.0)];
        n.add_job(1, 4);
        let issued = n.dispatch(0.0);
        let own = issued.iter().find(|l| l.worker == liar).unwrap().id;
        n.hub.complete(own, 0.1).unwrap();
        let backup = n.dispatch(0.1);
        assert_eq!(holders(&backup), vec![liar], "measured now, and idle");
        assert!(
            n.hub
                .complete(backup[0].id, 0.2)
                .unwrap()
                .superseded
                .is_some()
        );
        n.hub.remove_worker(liar);
        // Anonymous: a new connection, never measured, gets no backup
        // (it would be served first, as a newcomer). The honest worker it
        // beat, idle and measured, may back up another slot.
        let anonymous = n.add_worker(1000.0);
        let planned = n.dispatch(0.3);
        assert!(
            planned.iter().all(|l| honest.contains(&l.worker)),
            "{planned:?}"
        );
        n.hub.remove_worker(anonymous);
        // As its account, however fast it was measured: it had its backup.
        let again = n.add_worker_as(1000.0, Some("0xliar".into()));
        n.hub.reindexed(again, |hub| {
            if let Some(w) = hub.workers.get_mut(&again) {
                w.measured = Some(1e6);
            }
        });
        let planned = n.dispatch(0.4);
        assert!(planned.iter().all(|l| l.worker != again), "{planned:?}");
        assert_eq!(
            n.hub.jobs[&1]
                .backed_up_by
                .iter()
                .filter(|i| *i == "0xliar")
                .count(),
            1
        );
    }

    #[test]
    fn a_round_closes_on_its_quorum_once_it_has_waited_and_enough_is_in() {
        let mut n = Net::new();
        let (a, b, c, d) = (
            n.add_worker(1.0),
            n.add_worker(1.0),
            n.add_worker(1.0),
            n.add_worker(1.0),
        );
        n.add_job(1, 4);
        n.hub.jobs.get_mut(&1).unwrap().spec.quorum =
            Some(oblivion_protocol::aggregation::QuorumSpec {
                share: 0.75,
                after_secs: 10,
            });
        let issued = n.dispatch(2.0);
        assert_eq!(holders(&issued), vec![a, b, c, d]);
        n.hub.complete(issued[0].id, 3.0).unwrap();
        n.hub.complete(issued[1].id, 4.0).unwrap();
        assert!(n.hub.quorum_due(20.0).is_empty(), "two of four: short of 3");
        n.hub.complete(issued[2].id, 5.0).unwrap();
        assert_eq!(n.dispatch(5.0).len(), 1, "a backup of d's slot");
        assert!(n.hub.quorum_due(11.9).is_empty(), "not yet waited 10 s");
        assert_eq!(n.hub.quorum_due(12.0), vec![(1, 1, 3)]);
        // Closed: d's lease (and the backup an idle worker took) end, and
        // the round is complete with three updates of four.
        let ended = n.hub.close_round(1, 1);
        assert_eq!(ended.len(), 2, "{ended:?}");
        assert!(ended.iter().all(|e| e.status == LeaseStatus::Revoked));
        assert!(ended.iter().any(|e| e.lease.worker == d));
        assert!(n.hub.jobs[&1].round_complete());
        assert!(n.hub.quorum_due(30.0).is_empty());
        assert!(n.dispatch(30.0).is_empty(), "a closed round takes no work");
        n.hub
            .next_round(1, 2, "g2".into(), Arc::new(Params::default()), &[]);
        assert!(!n.hub.jobs[&1].round_complete());
        assert_eq!(n.dispatch(31.0).len(), 4);
        assert!(n.hub.quorum_due(40.0).is_empty(), "nothing in yet");
    }

    #[test]
    fn federated_slots_get_no_backups() {
        let mut n = Net::new();
        let workers = [n.add_worker(1.0), n.add_worker(1.0)];
        n.add_job(1, 1);
        assert_eq!(n.dispatch(0.0).len(), 1);
        // The idle one has been measured (only such a worker backs up).
        for w in workers {
            n.hub.reindexed(w, |hub| {
                if let Some(w) = hub.workers.get_mut(&w) {
                    w.measured = Some(1.0);
                }
            });
        }
        assert_eq!(n.hub.plan(1.0).len(), 1, "a backup, were it a shard");
        // A contributor's own data: no one else can stand in for it.
        n.hub.jobs.get_mut(&1).unwrap().local = Some(LocalTask {
            scaling: None,
            clip_norm: 1.0,
            noise_std: 1.0,
            rounds: 2,
        });
        assert!(n.hub.plan(1.0).is_empty());
    }

    #[test]
    fn round_completes_when_every_shard_is_in() {
        let mut n = Net::new();
        n.add_worker(1.0);
        n.add_job(1, 2);
        let issued = n.dispatch(0.0);
        assert!(!n.hub.complete(issued[0].id, 0.0).unwrap().round_done);
        assert!(n.hub.complete(issued[1].id, 0.0).unwrap().round_done);
        assert!(n.hub.jobs[&1].round_complete());
        assert!(n.dispatch(0.0).is_empty());
        n.hub
            .next_round(1, 2, "g2".into(), Arc::new(Params::default()), &[]);
        let next = n.dispatch(0.0);
        assert_eq!(next.len(), 2);
        assert_eq!(n.hub.task(&next[0]).unwrap().weights, "g2");
    }

    #[test]
    fn jobs_share_workers_in_turns() {
        let mut n = Net::new();
        for _ in 0..2 {
            n.add_worker(1.0);
        }
        n.add_job(1, 3);
        n.add_job(2, 3);
        let jobs: Vec<u64> = n.dispatch(0.0).iter().map(|l| l.job).collect();
        assert_eq!(jobs, vec![1, 2, 1, 2]);
    }

    #[test]
    fn many_workers_are_served_fairly() {
        let mut n = Net::new();
        for i in 0..1000 {
            n.add_worker(f64::from(i % 7));
        }
        n.add_job(1, 256);
        n.add_job(2, 256);
        let issued = n.dispatch(0.0);
        assert_eq!(issued.len(), 512);
        let mut per_worker: HashMap<u64, u32> = HashMap::new();
        for l in &issued {
            *per_worker.entry(l.worker).or_default() += 1;
        }
        assert_eq!(per_worker.len(), 512, "one lease each before any second");
        // Nobody measured yet: the longest connected go first, whatever
        // they claim.
        assert!(issued.iter().all(|l| l.worker <= 512));
    }
}

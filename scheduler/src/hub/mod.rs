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

mod dispatch;
mod job;
mod lease;
mod results;
mod rounds;
#[cfg(test)]
mod tests;
mod views;
mod worker;

use oblivion_protocol::{BlobId, JobId, LeaseId, WorkerId};
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
use oblivion_protocol::wire::{FeatureScaling, LeaseProgress, LeaseTask, LocalDataOffer};

use crate::kind::{JobKind, ResultCheck};

use crate::states::LeaseStatus;

pub use job::{Admission, Backup, LiveJob, RoundProgress, Shard, ShardState, Weights};
pub use lease::{Completed, Ended, Grant, Lease, Refusal, UpdateContext};
pub use views::ShardDetail;
pub use worker::{LeasePolicy, RATE_WINDOW, Worker};

/// Order of workers with room for another lease: fewest active leases,
/// then the best measured speed (a worker not measured yet first, so that
/// a newcomer is tried at once), then the lowest id (the longest
/// connected). Never the speed a worker claims: a liar would be served
/// first for ever.
type RoomKey = (u32, Reverse<u64>, WorkerId);

/// Weight of a lease's speed in a worker's measured speed.
const SPEED_SMOOTHING: f64 = 0.5;

/// The live state.
#[derive(Debug)]
pub struct Hub {
    policy: LeasePolicy,
    /// Connected workers by id.
    pub workers: BTreeMap<WorkerId, Worker>,
    /// Running jobs by id.
    pub jobs: BTreeMap<JobId, LiveJob>,
    leases: HashMap<LeaseId, Lease>,
    leases_by_worker: HashMap<WorkerId, BTreeSet<LeaseId>>,
    workers_by_token: HashMap<String, WorkerId>,
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

    fn active_count(&self, worker: WorkerId) -> u32 {
        self.leases_by_worker
            .get(&worker)
            .map_or(0, |s| s.len() as u32)
    }

    /// The worker's place in the dispatch order, if it has room.
    fn room_key(&self, worker: WorkerId) -> Option<RoomKey> {
        let w = self.workers.get(&worker)?;
        let active = self.active_count(worker);
        (!w.draining && w.quarantine.is_none() && active < self.policy.cap.min(w.max_leases))
            .then(|| (active, Reverse(speed_key(w.measured)), w.view.id))
    }

    /// Runs `change` on the worker's leases or flags, keeping the dispatch
    /// index in step.
    fn reindexed<T>(&mut self, worker: WorkerId, change: impl FnOnce(&mut Hub) -> T) -> T {
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
    pub fn drain(&mut self, worker: WorkerId) {
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
        let ids: Vec<WorkerId> = self
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
            let leases: Vec<LeaseId> = self.leases_of(id).map(|l| l.id).collect();
            ended.extend(
                leases
                    .into_iter()
                    .filter_map(|l| self.end(l, LeaseStatus::Revoked)),
            );
        }
        ended
    }

    /// Active leases of a worker.
    pub fn leases_of(&self, worker: WorkerId) -> impl Iterator<Item = &Lease> {
        self.leases_by_worker
            .get(&worker)
            .into_iter()
            .flatten()
            .filter_map(|id| self.leases.get(id))
    }

    /// An active lease.
    pub fn lease(&self, id: LeaseId) -> Option<&Lease> {
        self.leases.get(&id)
    }

    /// Removes a lease from the indexes; the caller decides about its shard.
    fn take_lease(&mut self, id: LeaseId) -> Option<Lease> {
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
    fn end(&mut self, id: LeaseId, status: LeaseStatus) -> Option<Ended> {
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
    fn forget_backup(&mut self, job: JobId, worker: WorkerId) {
        let Some(identity) = self.workers.get(&worker).map(Worker::identity) else {
            return;
        };
        if let Some(j) = self.jobs.get_mut(&job)
            && let Some(at) = j.progress.backed_up_by.iter().position(|i| *i == identity)
        {
            j.progress.backed_up_by.swap_remove(at);
        }
    }

    /// Removes a worker that disconnected; its leases are re-issued.
    pub fn remove_worker(&mut self, id: WorkerId) -> (Option<Worker>, Vec<Ended>) {
        let ids: Vec<LeaseId> = self.leases_of(id).map(|l| l.id).collect();
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
    pub fn heartbeat(&mut self, worker: WorkerId, progress: &[LeaseProgress], now: f64) {
        let ttl = self.policy.ttl.as_secs_f64();
        let ids: Vec<LeaseId> = self.leases_of(worker).map(|l| l.id).collect();
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
    pub fn return_lease(
        &mut self,
        worker: WorkerId,
        lease: LeaseId,
        decline_job: bool,
    ) -> Option<Ended> {
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
        let mut stale: Vec<(LeaseId, LeaseStatus)> = self
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
    pub fn remove_job(&mut self, job: JobId) -> Vec<Ended> {
        let ids = self.jobs.get(&job).map_or_else(Vec::new, LiveJob::leases);
        let ended = ids
            .iter()
            .filter_map(|id| self.end(*id, LeaseStatus::Revoked))
            .collect();
        self.jobs.remove(&job);
        ended
    }
}

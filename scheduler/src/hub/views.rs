//! What the hub shows: workers, live jobs and their slots, to an owner
//! or to everyone.

use super::*;

impl Hub {
    /// Connected workers with their state, leases and measured throughput.
    pub fn worker_views(&self, now: f64) -> Vec<WorkerView> {
        self.workers
            .values()
            .map(|w| {
                let mut view = w.view.clone();
                let public = |job: JobId| {
                    self.jobs.get(&job).is_some_and(|j| {
                        j.spec.visibility() == oblivion_protocol::Visibility::Public
                    })
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
            .filter(|j| j.spec.visibility() == oblivion_protocol::Visibility::Public)
            .map(|j| LiveJobView {
                id: j.id,
                name: j.spec.name().to_string(),
                status: j.status,
                round: j.round,
                rounds: j.spec.rounds(),
                shards: self.shard_views(j.id, ShardDetail::Public),
                aggregating: j.round_complete(),
            })
            .collect()
    }

    /// The current round's shards of a running job, for the API (see
    /// [`ShardDetail`]).
    pub fn shard_views(&self, job: JobId, detail: ShardDetail) -> Vec<ShardView> {
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
    pub fn active_workers(&self, job: JobId, detail: ShardDetail) -> u32 {
        let Some(j) = self.jobs.get(&job) else {
            return 0;
        };
        let slots = match detail {
            ShardDetail::Owner => &j.shards[..],
            ShardDetail::Public => &j.shards[..j.base_shards],
        };
        let mut ids: Vec<WorkerId> = slots
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

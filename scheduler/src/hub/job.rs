//! A running job as the hub sees it: its slots this round, their
//! leases and backups, and who may train it.

use super::*;

/// State of one shard in the current round.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum ShardState {
    /// Waiting for a worker.
    Pending,
    /// Leased.
    Leased {
        /// The lease.
        lease: LeaseId,
        /// Its holder.
        worker: WorkerId,
    },
    /// Its update is in.
    Done {
        /// Who did it.
        worker: WorkerId,
    },
    /// Leased by another coordinator instance (sharing the database) to
    /// one of its workers.
    Remote {
        /// The holder.
        worker: WorkerId,
    },
}

/// One slot of work in a running job's round: one of its shards, or a
/// replica of one (the same shard trained again by another worker).
#[derive(Clone, Debug)]
pub struct Shard {
    /// The shard it trains (its own index, unless it is a replica).
    pub base: u32,
    /// Its data shard, for a kind whose slots have one.
    pub data: Option<BlobId>,
    /// Samples in it (what a worker is credited for).
    pub samples: u64,
    /// Where it is.
    pub state: ShardState,
    /// Times leased this round.
    pub attempts: u32,
    /// Workers whose update for it was rejected this round: asked last.
    pub refused_by: Vec<WorkerId>,
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
    pub lease: LeaseId,
    /// Its holder.
    pub worker: WorkerId,
}

impl Shard {
    /// Marks the slot done by `worker`'s update under lease `lease`;
    /// returns the other lease it had (see [`Backup`]), which lost.
    pub(super) fn finish(&mut self, worker: WorkerId, lease: LeaseId) -> Option<LeaseId> {
        let other = match self.state {
            ShardState::Leased { lease: l, .. } if l != lease => Some(l),
            _ => self.backup.map(|b| b.lease).filter(|&l| l != lease),
        };
        self.state = ShardState::Done { worker };
        self.backup = None;
        other
    }

    /// A slot training shard `base` that no one has leased yet this round.
    pub fn pending(base: u32, data: Option<BlobId>, samples: u64) -> Shard {
        Shard {
            base,
            data,
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
    pub id: JobId,
    /// Its spec.
    pub spec: JobSpec,
    /// Its network.
    pub arch: Arc<Architecture>,
    /// `Pending` until the first lease, then `Running`.
    pub status: JobStatus,
    /// Current round, from 1.
    pub round: u32,
    /// Global weights of this round.
    pub global: Weights,
    /// This round's slots: its shards, in order, then their replicas.
    pub shards: Vec<Shard>,
    /// How many of the slots are the job's own shards.
    pub base_shards: usize,
    /// What its slots are and how they are leased (see [`JobKind`]).
    pub kind: Arc<dyn JobKind>,
    /// Its feature scaling (tabular data), which some kinds' leases carry.
    pub scaling: Option<FeatureScaling>,
    /// Who may be leased it, and until when.
    pub admission: Admission,
    /// How its current round stands, beyond its slots.
    pub progress: RoundProgress,
}

/// A round's global weights: where they are stored, and decoded.
#[derive(Clone, Debug)]
pub struct Weights {
    /// Their blob (what a lease names).
    pub blob: BlobId,
    /// Decoded (what an update is checked against).
    pub params: Arc<Params>,
}

/// Who may be leased a job, and until when.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Admission {
    /// A private job is leased only to workers signed in as one of these
    /// accounts (see [`JobSpec::restricted_to`]). `None`: to anyone.
    pub trainers: Option<Vec<String>>,
    /// A paid job is leased only until then (Unix seconds): later work
    /// could not be settled before its deadline. `None`: no end.
    pub until: Option<f64>,
}

/// How a job's current round stands, beyond its slots; reset with each
/// new round.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RoundProgress {
    /// When this instance granted the round's first lease, in the hub's
    /// clock: a quorum's wait counts from there.
    pub opened: Option<f64>,
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
    /// A new job of `kind`, pending, at round 1 with every shard pending,
    /// and a replica of each shard in `replicas`.
    pub fn new(
        id: JobId,
        spec: JobSpec,
        kind: Arc<dyn JobKind>,
        arch: Arc<Architecture>,
        global: Weights,
        shards: Vec<(Option<BlobId>, u64)>,
        replicas: &[u32],
    ) -> LiveJob {
        let base_shards = shards.len();
        let mut job = LiveJob {
            id,
            spec,
            arch,
            status: JobStatus::Pending,
            round: 1,
            global,
            shards: shards
                .into_iter()
                .enumerate()
                .map(|(i, (data, samples))| Shard::pending(i as u32, data, samples))
                .collect(),
            base_shards,
            kind,
            scaling: None,
            admission: Admission::default(),
            progress: RoundProgress::default(),
        };
        job.set_replicas(replicas);
        job
    }

    /// The same job, leased only to workers paid to one of `accounts`
    /// when it is `Some`.
    pub fn trained_by(mut self, accounts: Option<Vec<String>>) -> LiveJob {
        self.admission.trainers = accounts;
        self
    }

    /// Whether `worker` may be leased this job's work: it has not declined
    /// the job (whatever its kind), it is the right account for a private
    /// job, and it is what the job's kind asks of a worker (see
    /// [`JobKind::admits`]).
    pub(super) fn admits(&self, worker: &Worker) -> bool {
        if worker.declined.contains(&self.id) {
            return false;
        }
        let account_ok = self.admission.trainers.as_ref().is_none_or(|accounts| {
            worker
                .view
                .payout_address
                .as_ref()
                .is_some_and(|a| accounts.binary_search(a).is_ok())
        });
        let data_ok = self.kind.admits(
            &self.arch,
            self.scaling.as_ref(),
            worker.view.local_data.as_ref(),
        );
        account_ok && data_ok
    }

    /// The same job with its feature scaling (tabular data), which some
    /// kinds' leases carry.
    pub fn scaled_by(mut self, scaling: Option<FeatureScaling>) -> LiveJob {
        self.scaling = scaling;
        self
    }

    /// The workers holding, or done with, a slot this round that trains a
    /// shard `which` picks.
    pub(super) fn holders(&self, which: impl Fn(u32) -> bool) -> Vec<WorkerId> {
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
            let copy = Shard::pending(base, original.data, original.samples);
            match self.shards.get(slot) {
                Some(existing) if existing.base == base => {}
                Some(_) => self.shards[slot] = copy,
                None => self.shards.push(copy),
            }
        }
        self.shards.truncate(self.base_shards + replicas.len());
    }

    /// Whether this round has replica slots.
    pub(super) fn has_replicas(&self) -> bool {
        self.shards.len() > self.base_shards
    }

    /// Whether every shard of the round is in, or the round closed on its
    /// quorum (it is then aggregated).
    pub fn round_complete(&self) -> bool {
        self.progress.closed
            || self
                .shards
                .iter()
                .all(|s| matches!(s.state, ShardState::Done { .. }))
    }

    /// This instance's leases on the round's slots, backups too.
    pub(super) fn leases(&self) -> Vec<LeaseId> {
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
    pub(super) fn open_at(&self, now: f64) -> bool {
        !self.round_complete() && self.admission.until.is_none_or(|t| now < t)
    }

    /// Slots of the round with an update in.
    pub fn slots_done(&self) -> usize {
        self.shards
            .iter()
            .filter(|s| matches!(s.state, ShardState::Done { .. }))
            .count()
    }
}

//! Leases and what the hub says of them: planned (`Grant`), held
//! (`Lease`), finished (`Completed`, `Ended`), refused (`Refusal`).

use super::*;

/// An active lease.
#[derive(Clone, Debug, PartialEq)]
pub struct Lease {
    /// Id (assigned by the database).
    pub id: LeaseId,
    /// Job.
    pub job: JobId,
    /// Round it belongs to.
    pub round: u32,
    /// Shard index.
    pub shard: u32,
    /// Holder.
    pub worker: WorkerId,
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
    pub job: JobId,
    /// Round.
    pub round: u32,
    /// Slot index (a shard, or a replica).
    pub shard: u32,
    /// The shard the slot trains.
    pub base: u32,
    /// Proposed holder.
    pub worker: WorkerId,
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
    NotHeld(LeaseId),
}

/// What a result must match, for a lease a worker holds.
#[derive(Clone, Debug)]
pub struct UpdateContext {
    /// The lease.
    pub lease: Lease,
    /// The job's network.
    pub arch: Arc<Architecture>,
    /// The round's global weights (an update's norm is bounded relative
    /// to theirs when the job sets no fixed bound; outputs are recomputed
    /// with them).
    pub global: Arc<Params>,
    /// Samples (or rows) of the shard.
    pub samples: u64,
    /// What the result is, and how it is checked (see
    /// [`JobKind::result_check`](crate::kind::JobKind::result_check)).
    pub check: ResultCheck,
}

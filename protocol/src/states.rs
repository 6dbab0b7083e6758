//! States of the stored records, as enums; the database holds their names.

/// How a lease stands. Every lease starts [`LeaseStatus::Active`] and ends
/// exactly once, by a guarded update (`… WHERE status = 'active'`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LeaseStatus {
    /// Held by a worker.
    Active,
    /// Its update was accepted.
    Completed,
    /// Its update failed validation.
    Rejected,
    /// No heartbeat before the deadline.
    Expired,
    /// Held longer than the lease lifetime allows, whatever its heartbeats.
    Overdue,
    /// Given back by its worker.
    Returned,
    /// Its worker's connection closed (or its coordinator instance died).
    Disconnected,
    /// Its job was cancelled or failed.
    Revoked,
}

impl LeaseStatus {
    /// The name stored in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            LeaseStatus::Active => "active",
            LeaseStatus::Completed => "completed",
            LeaseStatus::Rejected => "rejected",
            LeaseStatus::Expired => "expired",
            LeaseStatus::Overdue => "overdue",
            LeaseStatus::Returned => "returned",
            LeaseStatus::Disconnected => "disconnected",
            LeaseStatus::Revoked => "revoked",
        }
    }

    /// Whether the worker lost it (counted against the worker).
    pub fn is_lost(self) -> bool {
        matches!(
            self,
            LeaseStatus::Expired | LeaseStatus::Overdue | LeaseStatus::Disconnected
        )
    }
}

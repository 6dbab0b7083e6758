//! A connected worker as the hub sees it, and the lease rules.

use super::*;

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
    pub declined: HashSet<JobId>,
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
    pub(super) fn samples_per_second(&self, now: f64) -> f64 {
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

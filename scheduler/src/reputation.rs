//! Reputation and quarantine: the pure rule deciding, from a worker's
//! record of agreed and disputed results, whether it may go on working.
//!
//! A worker is known by the account it is paid to (its signed-in address),
//! so its record survives reconnections; an anonymous worker is known by
//! its connection alone, and is paid nothing anyway.

use oblivion_protocol::WorkerId;

/// When a worker is quarantined.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ReputationPolicy {
    /// Quarantined when its score falls below this (0 to 1).
    pub min_score: f64,
    /// ...once it has at least this many results on record, so that one
    /// unlucky first result does not decide.
    pub min_results: u64,
    /// Quarantined, whatever its score, once this many of its results are
    /// refuted by replicas (proof rather than suspicion).
    pub max_refuted: u64,
    /// A quarantine ends this long after it began; the record starts
    /// afresh (a repeat offender is caught again by the same rules).
    pub quarantine_for: std::time::Duration,
    /// Agreed results an account needs before its results may refute
    /// another's: accounts are free, so two new ones agreeing prove
    /// nothing (see [`ReputationPolicy::may_refute`]).
    pub established_after: u64,
    /// ...and whose record began at least this long ago: a new account
    /// earns agreed results quickly by agreeing with its own sybils, but
    /// cannot make itself old.
    pub established_age: std::time::Duration,
}

impl Default for ReputationPolicy {
    fn default() -> Self {
        ReputationPolicy {
            min_score: 0.5,
            min_results: 2,
            max_refuted: 2,
            quarantine_for: std::time::Duration::from_secs(7 * 24 * 3600),
            established_after: 10,
            established_age: std::time::Duration::from_secs(24 * 3600),
        }
    }
}

/// The weight of a disputed result against an agreed one in [`score`].
/// With equal weights a worker that alternates good and bad results sits
/// at one half for ever, never under the bar; at two it falls under it.
pub const DISPUTE_WEIGHT: u64 = 2;

/// The weighted share of a worker's results that agreed, smoothed
/// towards one half (Laplace's rule: one agreed and one disputed result
/// are assumed), so that a newcomer starts neither trusted nor condemned.
/// A disputed result weighs [`DISPUTE_WEIGHT`] agreed ones.
pub fn score(agreed: u64, disputed: u64) -> f64 {
    (agreed as f64 + 1.0) / ((agreed + DISPUTE_WEIGHT * disputed) as f64 + 2.0)
}

impl ReputationPolicy {
    /// Whether this many refuted results quarantine a worker.
    pub fn refuted_too_often(&self, refuted: u64) -> bool {
        refuted >= self.max_refuted
    }

    /// Whether a worker with this record is quarantined. One dispute
    /// alone never does it: an honest worker's odd result is forgiven.
    pub fn quarantines(&self, agreed: u64, disputed: u64) -> bool {
        disputed >= 2
            && agreed + disputed >= self.min_results
            && score(agreed, disputed) < self.min_score
    }

    /// Why a record of `agreed`, `disputed` and `refuted` results (the
    /// last dispute's reason being `last`) is quarantined, or `None`.
    pub fn quarantine_reason(
        &self,
        agreed: u64,
        disputed: u64,
        refuted: u64,
        last: &str,
    ) -> Option<String> {
        if self.refuted_too_often(refuted) {
            Some(format!(
                "{refuted} results refuted by replicas; last: {last}"
            ))
        } else if self.quarantines(agreed, disputed) {
            Some(format!(
                "{disputed} of {} results disputed; last: {last}",
                agreed + disputed
            ))
        } else {
            None
        }
    }

    /// Whether an account with this many agreed results is established:
    /// its result, with another established account's, may refute a third.
    pub fn may_refute(&self, agreed: u64) -> bool {
        agreed >= self.established_after
    }
}

/// The identity a worker's record is kept under: its payout account, or
/// its connection for an anonymous worker.
pub fn identity(payout_address: Option<&str>, worker_id: WorkerId) -> String {
    match payout_address {
        Some(a) => a.to_ascii_lowercase(),
        None => format!("worker:{worker_id}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_liar_is_quarantined_on_its_second_dispute() {
        let p = ReputationPolicy::default();
        assert!(!p.quarantines(0, 1), "one result decides nothing");
        assert!(p.quarantines(0, 2));
        assert!(p.quarantines(1, 3));
    }

    #[test]
    fn an_honest_worker_survives_an_odd_dispute() {
        let p = ReputationPolicy::default();
        assert!(!p.quarantines(1, 1));
        assert!(!p.quarantines(10, 2));
        assert!(!p.quarantines(5, 0));
        assert!(p.quarantines(2, 5), "mostly disputed");
        assert!(!p.quarantines(5, 2), "mostly agreed");
        assert!(!p.refuted_too_often(1));
        assert!(
            p.refuted_too_often(2),
            "refuted twice, however much else agreed"
        );
    }

    #[test]
    fn alternating_good_and_bad_results_is_caught() {
        let p = ReputationPolicy::default();
        let (mut agreed, mut disputed) = (0, 0);
        let caught = (0..100).position(|i| {
            if i % 2 == 0 {
                agreed += 1;
            } else {
                disputed += 1;
            }
            p.quarantines(agreed, disputed)
        });
        assert_eq!(caught, Some(3), "at two good and two bad results");
        assert!(!p.may_refute(9) && p.may_refute(10));
    }

    #[test]
    fn the_score_starts_at_one_half() {
        assert_eq!(score(0, 0), 0.5);
        assert!(score(9, 1) > 0.75);
    }

    #[test]
    fn identities_follow_the_account() {
        assert_eq!(identity(Some("0xAbC"), WorkerId(7)), "0xabc");
        assert_eq!(identity(None, WorkerId(7)), "worker:7");
    }
}

//! Reputation and quarantine: the pure rule deciding, from a worker's
//! record of agreed and disputed results, whether it may go on working.
//!
//! A worker is known by the account it is paid to (its signed-in address),
//! so its record survives reconnections; an anonymous worker is known by
//! its connection alone, and is paid nothing anyway.

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
}

impl Default for ReputationPolicy {
    fn default() -> Self {
        ReputationPolicy {
            min_score: 0.5,
            min_results: 2,
            max_refuted: 2,
        }
    }
}

/// The share of a worker's results that agreed, smoothed towards one half
/// (Laplace's rule: one agreed and one disputed result are assumed), so
/// that a newcomer starts neither trusted nor condemned.
pub fn score(agreed: u64, disputed: u64) -> f64 {
    (agreed as f64 + 1.0) / ((agreed + disputed) as f64 + 2.0)
}

impl ReputationPolicy {
    /// Whether this many refuted results quarantine a worker.
    pub fn refuted_too_often(&self, refuted: u64) -> bool {
        refuted >= self.max_refuted
    }

    /// Whether a worker with this record is quarantined.
    pub fn quarantines(&self, agreed: u64, disputed: u64) -> bool {
        disputed > 0
            && agreed + disputed >= self.min_results
            && score(agreed, disputed) < self.min_score
    }
}

/// The identity a worker's record is kept under: its payout account, or
/// its connection for an anonymous worker.
pub fn identity(payout_address: Option<&str>, worker_id: u64) -> String {
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
        assert!(!p.refuted_too_often(1));
        assert!(
            p.refuted_too_often(2),
            "refuted twice, however much else agreed"
        );
    }

    #[test]
    fn the_score_starts_at_one_half() {
        assert_eq!(score(0, 0), 0.5);
        assert!(score(9, 1) > 0.8);
    }

    #[test]
    fn identities_follow_the_account() {
        assert_eq!(identity(Some("0xAbC"), 7), "0xabc");
        assert_eq!(identity(None, 7), "worker:7");
    }
}

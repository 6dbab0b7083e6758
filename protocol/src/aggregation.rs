//! How a job's round combines its workers' updates, and what it checks
//! first: part of the job spec. The rules are named as Flower names its
//! strategies. The defaults survive a minority of broken or lying workers,
//! so a spec that says nothing here is safe.

use serde::{Deserialize, Serialize};

use crate::SpecError;

/// Default of [`AggregationSpec::clip_factor`].
pub const DEFAULT_CLIP_FACTOR: f64 = 3.0;
/// Default of [`AggregationSpec::min_norm_factor`].
pub const DEFAULT_MIN_NORM_FACTOR: f64 = 0.05;
/// Default of [`AggregationSpec::min_cosine`].
pub const DEFAULT_MIN_COSINE: f64 = 0.05;
/// Default of [`AggregationSpec::dispute_factor`].
pub const DEFAULT_DISPUTE_FACTOR: f64 = 10.0;
/// Default of [`AggregationSpec::min_round_agreement`].
pub const DEFAULT_MIN_ROUND_AGREEMENT: f64 = 0.2;
/// Default of [`AggregationRule::FedTrimmedAvg`]'s `beta` (Flower's).
pub const DEFAULT_TRIM_BETA: f64 = 0.2;
/// Largest [`AggregationSpec::clip_factor`].
pub const MAX_CLIP_FACTOR: f64 = 100.0;

/// Screening and combination of a round's updates.
///
/// Every round, the coordinator measures each update's L2 norm and takes
/// the median over the round. Then:
/// - an update under `min_norm_factor` × that median does no work, as
///   does a near copy of another shard's update: neither is credited;
/// - one over `dispute_factor` × the median is disputed;
/// - in a round whose updates share a direction (the median of their
///   cosine similarities with the others is at least
///   `min_round_agreement`), one whose cosine similarity with the
///   coordinate-wise median of the others is under `min_cosine`, and far
///   below the round's (three scaled median absolute deviations), is
///   disputed: noise, or a step the wrong way. Late in training, or on
///   tiny shards, honest updates scatter widely, and then no one is
///   disputed for it;
/// - the rest, each clipped to `clip_factor` × the median, are combined by
///   `rule`.
///
/// Only updates that pass are credited; disputed ones count against
/// their worker's reputation.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AggregationSpec {
    /// How the updates that pass screening are combined.
    #[serde(default)]
    pub rule: AggregationRule,
    /// Updates are clipped to this multiple of the round's median update
    /// norm; 1 to [`MAX_CLIP_FACTOR`].
    #[serde(default = "default_clip_factor")]
    pub clip_factor: f64,
    /// Updates over this multiple of the round's median norm are disputed
    /// (honest ones vary, clipping bounds them); from `clip_factor` to
    /// [`MAX_CLIP_FACTOR`].
    #[serde(default = "default_dispute_factor")]
    pub dispute_factor: f64,
    /// Updates smaller than this fraction of the round's median norm (or
    /// this close to another one) do no work; in [0, 1).
    #[serde(default = "default_min_norm_factor")]
    pub min_norm_factor: f64,
    /// Updates whose cosine similarity with the round's combined update is
    /// below this are disputed; in [-1, 1).
    #[serde(default = "default_min_cosine")]
    pub min_cosine: f64,
    /// Direction disputes are raised only in rounds whose median cosine
    /// similarity is at least this; in [0, 1].
    #[serde(default = "default_min_round_agreement")]
    pub min_round_agreement: f64,
}

impl Default for AggregationSpec {
    fn default() -> Self {
        AggregationSpec {
            rule: AggregationRule::default(),
            clip_factor: DEFAULT_CLIP_FACTOR,
            dispute_factor: DEFAULT_DISPUTE_FACTOR,
            min_norm_factor: DEFAULT_MIN_NORM_FACTOR,
            min_cosine: DEFAULT_MIN_COSINE,
            min_round_agreement: DEFAULT_MIN_ROUND_AGREEMENT,
        }
    }
}

fn default_clip_factor() -> f64 {
    DEFAULT_CLIP_FACTOR
}

fn default_min_norm_factor() -> f64 {
    DEFAULT_MIN_NORM_FACTOR
}

fn default_min_cosine() -> f64 {
    DEFAULT_MIN_COSINE
}

fn default_dispute_factor() -> f64 {
    DEFAULT_DISPUTE_FACTOR
}

fn default_min_round_agreement() -> f64 {
    DEFAULT_MIN_ROUND_AGREEMENT
}

fn default_beta() -> f64 {
    DEFAULT_TRIM_BETA
}

fn default_keep() -> u32 {
    1
}

/// The combination rule, named as Flower names its strategies.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum AggregationRule {
    /// Sample-weighted mean (FedAvg): the most efficient with honest
    /// workers, steered by a single liar.
    FedAvg,
    /// Coordinate-wise median (FedMedian).
    FedMedian,
    /// Coordinate-wise mean after cutting the `beta` fraction of values at
    /// each end (FedTrimmedAvg); the default, with beta 0.2.
    FedTrimmedAvg {
        /// Fraction cut at each end, in [0, 0.5).
        #[serde(default = "default_beta")]
        beta: f64,
    },
    /// Krum (`keep` = 1) or Multi-Krum (`keep` > 1): the `keep` updates
    /// closest to their nearest neighbours, averaged by samples. Needs more
    /// than 2 × `byzantine` + 2 updates; with fewer it takes the median.
    Krum {
        /// Updates assumed malicious.
        byzantine: u32,
        /// Updates kept.
        #[serde(default = "default_keep")]
        keep: u32,
    },
}

impl Default for AggregationRule {
    fn default() -> Self {
        AggregationRule::FedTrimmedAvg {
            beta: DEFAULT_TRIM_BETA,
        }
    }
}

impl AggregationRule {
    /// The name written in the spec.
    pub fn kind(&self) -> &'static str {
        match self {
            AggregationRule::FedAvg => "fed_avg",
            AggregationRule::FedMedian => "fed_median",
            AggregationRule::FedTrimmedAvg { .. } => "fed_trimmed_avg",
            AggregationRule::Krum { .. } => "krum",
        }
    }
}

impl AggregationSpec {
    /// Whether this is what a spec that says nothing gets (then it is left
    /// out when the spec is written back).
    pub fn is_default(&self) -> bool {
        *self == AggregationSpec::default()
    }

    /// Checks every rule for a job with `shards` shards a round; the error
    /// names the field.
    pub fn validate(&self, shards: u32) -> Result<(), SpecError> {
        match self.rule {
            AggregationRule::FedAvg | AggregationRule::FedMedian => {}
            AggregationRule::FedTrimmedAvg { beta } => {
                if !(beta.is_finite() && (0.0..0.5).contains(&beta)) {
                    return Err(SpecError::new(
                        "aggregation.rule.beta",
                        "must be in [0, 0.5)",
                    ));
                }
            }
            AggregationRule::Krum { byzantine, keep } => {
                if keep == 0 || keep > shards {
                    return Err(SpecError::new(
                        "aggregation.rule.keep",
                        format!("must be between 1 and shards_per_round ({shards})"),
                    ));
                }
                if u64::from(shards) <= 2 * u64::from(byzantine) + 2 {
                    return Err(SpecError::new(
                        "aggregation.rule.byzantine",
                        format!("Krum needs shards_per_round ({shards}) above 2 × byzantine + 2"),
                    ));
                }
            }
        }
        if !(self.clip_factor.is_finite() && (1.0..=MAX_CLIP_FACTOR).contains(&self.clip_factor)) {
            return Err(SpecError::new(
                "aggregation.clip_factor",
                format!("must be between 1 and {MAX_CLIP_FACTOR}"),
            ));
        }
        if !(self.dispute_factor.is_finite()
            && (self.clip_factor..=MAX_CLIP_FACTOR).contains(&self.dispute_factor))
        {
            return Err(SpecError::new(
                "aggregation.dispute_factor",
                format!("must be between clip_factor and {MAX_CLIP_FACTOR}"),
            ));
        }
        if !(self.min_round_agreement.is_finite()
            && (0.0..=1.0).contains(&self.min_round_agreement))
        {
            return Err(SpecError::new(
                "aggregation.min_round_agreement",
                "must be in [0, 1]",
            ));
        }
        if !(self.min_norm_factor.is_finite() && (0.0..1.0).contains(&self.min_norm_factor)) {
            return Err(SpecError::new(
                "aggregation.min_norm_factor",
                "must be in [0, 1)",
            ));
        }
        if !(self.min_cosine.is_finite() && (-1.0..1.0).contains(&self.min_cosine)) {
            return Err(SpecError::new(
                "aggregation.min_cosine",
                "must be in [-1, 1)",
            ));
        }
        Ok(())
    }
}

/// Default of [`ReplicationSpec::tolerance`].
pub const DEFAULT_REPLICA_TOLERANCE: f64 = 0.05;

fn default_tolerance() -> f64 {
    DEFAULT_REPLICA_TOLERANCE
}

/// Verification by replicas: a fraction of each round's shards is trained
/// twice, by two different workers, and the two updates compared. When
/// they disagree, a third worker trains the shard and the majority stands.
///
/// Training is deterministic given the weights, the data, the seed and the
/// optimizer, but not bit-exact across devices: GPUs sum in another order
/// than CPUs, SIMD widths and fused multiply-adds differ, and the
/// differences grow over a shard's steps. Two honest updates of one shard
/// therefore agree to within a small relative distance, not exactly; one
/// trained on other data, with another seed, or made up, is far off.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReplicationSpec {
    /// The share of each round's shards trained twice, in [0, 1] (each
    /// shard is picked at random with this probability, unseen by the
    /// workers).
    #[serde(default)]
    pub fraction: f64,
    /// Two updates agree when ‖a − b‖ ≤ tolerance × max(‖a‖, ‖b‖); in
    /// (0, 1).
    #[serde(default = "default_tolerance")]
    pub tolerance: f64,
}

impl Default for ReplicationSpec {
    fn default() -> Self {
        ReplicationSpec {
            fraction: 0.0,
            tolerance: DEFAULT_REPLICA_TOLERANCE,
        }
    }
}

impl ReplicationSpec {
    /// Whether this is what a spec that says nothing gets.
    pub fn is_default(&self) -> bool {
        *self == ReplicationSpec::default()
    }

    /// Checks every rule; the error names the field.
    pub fn validate(&self) -> Result<(), SpecError> {
        if !(self.fraction.is_finite() && (0.0..=1.0).contains(&self.fraction)) {
            return Err(SpecError::new("replication.fraction", "must be in [0, 1]"));
        }
        if !(self.tolerance.is_finite() && self.tolerance > 0.0 && self.tolerance < 1.0) {
            return Err(SpecError::new("replication.tolerance", "must be in (0, 1)"));
        }
        Ok(())
    }
}

/// Most a quorum may make a round wait, seconds (a day).
pub const MAX_QUORUM_SECS: u64 = 86_400;

/// A round that may close before every slot is in: once `after_secs` have
/// passed since it opened, and at least `share` of its slots have an
/// update, it closes with those; the leases still out are revoked, unpaid.
/// For slots no one else can stand in for (a federated contributor's own
/// data), where backup leases cannot help.
///
/// The noised combination of a private job divides by the round's slot
/// count whoever took part, and its noise is added to the sum: a round
/// closed on a quorum has the noise, and costs the ε, of a full one, with
/// a step shortened in proportion. A contributor's ledger counts what its
/// update spent when it left, taken or not.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuorumSpec {
    /// The least share of a round's slots that closes it, in (0, 1].
    pub share: f64,
    /// Seconds from the round's start before a quorum may close it, 1 to
    /// [`MAX_QUORUM_SECS`].
    pub after_secs: u64,
}

impl QuorumSpec {
    /// Updates of a round of `slots` slots that close it.
    pub fn needed(&self, slots: usize) -> usize {
        ((self.share * slots as f64).ceil() as usize).clamp(1, slots.max(1))
    }

    /// Checks every rule; the error names the field.
    pub fn validate(&self) -> Result<(), SpecError> {
        if !(self.share.is_finite() && self.share > 0.0 && self.share <= 1.0) {
            return Err(SpecError::new("quorum.share", "must be in (0, 1]"));
        }
        if !(1..=MAX_QUORUM_SECS).contains(&self.after_secs) {
            return Err(SpecError::new(
                "quorum.after_secs",
                format!("must be between 1 and {MAX_QUORUM_SECS}"),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_quorum_needs_at_least_one_update_and_at_most_every_slot() {
        let q = |share| QuorumSpec {
            share,
            after_secs: 10,
        };
        assert_eq!(q(0.75).needed(4), 3);
        assert_eq!(q(0.7).needed(4), 3);
        assert_eq!(q(0.01).needed(4), 1);
        assert_eq!(q(1.0).needed(3), 3);
        assert!(q(0.0).validate().is_err());
        assert!(q(1.5).validate().is_err());
        assert!(q(f64::NAN).validate().is_err());
        assert!(
            QuorumSpec {
                share: 0.5,
                after_secs: 0
            }
            .validate()
            .is_err()
        );
    }

    fn parse(v: serde_json::Value) -> AggregationSpec {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn rules_are_written_as_flower_names_them() {
        assert_eq!(
            parse(serde_json::json!({})),
            AggregationSpec::default(),
            "nothing said: the robust default"
        );
        assert_eq!(
            parse(serde_json::json!({"rule": {"kind": "fed_trimmed_avg"}})).rule,
            AggregationRule::FedTrimmedAvg { beta: 0.2 }
        );
        assert_eq!(
            parse(serde_json::json!({"rule": {"kind": "krum", "byzantine": 2}})).rule,
            AggregationRule::Krum {
                byzantine: 2,
                keep: 1
            }
        );
        for kind in ["fed_avg", "fed_median"] {
            assert_eq!(
                parse(serde_json::json!({"rule": {"kind": kind}}))
                    .rule
                    .kind(),
                kind
            );
        }
    }

    #[test]
    fn bad_settings_name_their_field() {
        let field = |v: serde_json::Value, shards| parse(v).validate(shards).unwrap_err().field;
        assert_eq!(
            field(
                serde_json::json!({"rule": {"kind": "fed_trimmed_avg", "beta": 0.5}}),
                10
            ),
            "aggregation.rule.beta"
        );
        assert_eq!(
            field(
                serde_json::json!({"rule": {"kind": "krum", "byzantine": 4}}),
                10
            ),
            "aggregation.rule.byzantine"
        );
        assert_eq!(
            field(
                serde_json::json!({"rule": {"kind": "krum", "byzantine": 1, "keep": 11}}),
                10
            ),
            "aggregation.rule.keep"
        );
        assert_eq!(
            field(serde_json::json!({"clip_factor": 0.5}), 10),
            "aggregation.clip_factor"
        );
        assert_eq!(
            field(serde_json::json!({"min_norm_factor": 1.0}), 10),
            "aggregation.min_norm_factor"
        );
        assert_eq!(
            field(serde_json::json!({"min_cosine": 1.0}), 10),
            "aggregation.min_cosine"
        );
        parse(serde_json::json!({"rule": {"kind": "krum", "byzantine": 3, "keep": 4}}))
            .validate(9)
            .unwrap();
    }
}

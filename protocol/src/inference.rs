//! The inference spec: run a trained model over rows of data, shard by
//! shard, on the network's workers, and assemble its outputs in row order.
//!
//! Like a training spec it is data only, and [`InferenceSpec::validate`]
//! names the field that breaks a rule.

use serde::{Deserialize, Serialize};

use crate::SpecError;
use crate::blob::BlobId;
use crate::ids::JobId;
pub use crate::model_ref::ModelRef;
use crate::spec::{MAX_BATCH_SIZE, MAX_SHARDS_PER_ROUND, MAX_TRAINERS, RewardSpec, Visibility};

/// Rows of each shard the coordinator recomputes itself when none is
/// named (see [`VerificationSpec`]).
pub const DEFAULT_SAMPLE_ROWS: u32 = 16;
/// Largest verification sample a spec may ask for, rows a shard.
pub const MAX_SAMPLE_ROWS: u32 = 1_024;
/// Largest difference in any one class probability between a worker's
/// output and the coordinator's recomputation when none is named: well
/// above what two devices' float sums differ by (about 1e-6), far below
/// any change that alters an answer.
pub const DEFAULT_OUTPUT_TOLERANCE: f64 = 1e-3;
/// Default rows a worker runs at once.
pub const DEFAULT_INFERENCE_BATCH: u32 = 256;

/// An inference job.
///
/// ```
/// use oblivion_protocol::JobSpec;
/// let spec = JobSpec::from_json(r#"{
///     "task": "inference",
///     "name": "digits",
///     "model": {"job": 4},
///     "inputs": {"held_out_by": 4},
///     "shards": 3
/// }"#).unwrap();
/// let JobSpec::Inference(inference) = spec else { unreachable!() };
/// assert_eq!(inference.verification.sample_rows, 16);
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InferenceSpec {
    /// Always `"inference"`: what tells this spec from a training one.
    pub task: InferenceTask,
    /// A short human name for the job.
    pub name: String,
    /// The model to run.
    pub model: ModelRef,
    /// The rows to run it on.
    pub inputs: InputsSpec,
    /// Number of shards the rows are cut into (each a piece of work).
    pub shards: u32,
    /// Rows a worker runs through the model at once.
    #[serde(default = "default_batch")]
    pub batch_size: u32,
    /// How the coordinator checks each shard's outputs.
    #[serde(default, skip_serializing_if = "VerificationSpec::is_default")]
    pub verification: VerificationSpec,
    /// The share of shards run twice, by two different workers, whose
    /// outputs must agree within the verification tolerance (a third
    /// decides when they do not); in [0, 1]. Default 0: the sample the
    /// coordinator recomputes is the check.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub replicas: f64,
    /// Who may read the job, its outputs and its inputs (see [`Visibility`]).
    #[serde(default, skip_serializing_if = "Visibility::is_public")]
    pub visibility: Visibility,
    /// A private job's workers' accounts, besides its owner's (see
    /// [`crate::TrainingSpec::trainers`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub trainers: Vec<String>,
    /// Payment for the work, escrowed on chain, split by the rows each
    /// worker ran (see [`crate::TrainingSpec::reward`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reward: Option<RewardSpec>,
}

fn is_zero(v: &f64) -> bool {
    *v == 0.0
}

fn default_batch() -> u32 {
    DEFAULT_INFERENCE_BATCH
}

/// The one value of [`InferenceSpec::task`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InferenceTask {
    /// Run a model over rows.
    Inference,
}

/// The rows an inference job runs its model on. Tabular rows are scaled
/// as the model's training data was; their columns must be the model's.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum InputsSpec {
    /// Every row of a built-in dataset.
    Builtin(String),
    /// The validation split a training job held out (rows its model never
    /// trained on, with their labels).
    HeldOutBy(JobId),
    /// An uploaded CSV file, by the address the upload returned.
    Csv(BlobId),
    /// An uploaded pair of IDX files (images and labels), by address.
    Idx {
        /// The images file (magic 2051).
        images: BlobId,
        /// The labels file (magic 2049).
        labels: BlobId,
    },
}

/// How each shard's outputs are checked: the coordinator recomputes
/// `sample_rows` rows of it, chosen at random when the outputs arrive (so
/// no worker knows which), and refuses the shard when any class
/// probability differs from its own by more than `tolerance`. A worker
/// that falsifies `k` of a shard's `n` rows escapes a sample of `s` rows
/// with chance C(n−k, s) / C(n, s), below (1 − k/n)^s.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VerificationSpec {
    /// Rows recomputed per shard, 1 to [`MAX_SAMPLE_ROWS`] (all of a
    /// smaller shard).
    #[serde(default = "default_sample_rows")]
    pub sample_rows: u32,
    /// Largest difference allowed in any class probability, in (0, 0.5).
    #[serde(default = "default_output_tolerance")]
    pub tolerance: f64,
}

fn default_sample_rows() -> u32 {
    DEFAULT_SAMPLE_ROWS
}

fn default_output_tolerance() -> f64 {
    DEFAULT_OUTPUT_TOLERANCE
}

impl Default for VerificationSpec {
    fn default() -> Self {
        VerificationSpec {
            sample_rows: DEFAULT_SAMPLE_ROWS,
            tolerance: DEFAULT_OUTPUT_TOLERANCE,
        }
    }
}

impl VerificationSpec {
    /// Whether this is what a spec that says nothing gets.
    pub fn is_default(&self) -> bool {
        *self == VerificationSpec::default()
    }

    /// The chance that a shard of `rows` rows, `wrong` of them falsified,
    /// passes its check: every sampled row is one of the others
    /// (sampling without replacement).
    pub fn escape_chance(&self, rows: u64, wrong: u64) -> f64 {
        let sample = u64::from(self.sample_rows).min(rows);
        (0..sample)
            .map(|i| (rows.saturating_sub(wrong + i)) as f64 / (rows - i) as f64)
            .product()
    }
}

impl InferenceSpec {
    /// Checks every rule; the error names the first field that breaks one.
    pub fn validate(&self) -> Result<(), SpecError> {
        if self.name.trim().is_empty() || self.name.len() > 100 {
            return Err(SpecError::new("name", "must be 1 to 100 characters"));
        }
        if let InputsSpec::Builtin(name) = &self.inputs
            && !crate::spec::BUILTIN_DATASETS.contains(&name.as_str())
        {
            return Err(SpecError::new(
                "inputs.builtin",
                format!(
                    "unknown dataset {name:?}; built-in datasets are {}",
                    crate::spec::BUILTIN_DATASETS.join(", ")
                ),
            ));
        }
        if self.shards == 0 || self.shards > MAX_SHARDS_PER_ROUND {
            return Err(SpecError::new(
                "shards",
                format!("must be between 1 and {MAX_SHARDS_PER_ROUND}"),
            ));
        }
        if self.batch_size == 0 || self.batch_size > MAX_BATCH_SIZE {
            return Err(SpecError::new(
                "batch_size",
                format!("must be between 1 and {MAX_BATCH_SIZE}"),
            ));
        }
        let v = &self.verification;
        if v.sample_rows == 0 || v.sample_rows > MAX_SAMPLE_ROWS {
            return Err(SpecError::new(
                "verification.sample_rows",
                format!("must be between 1 and {MAX_SAMPLE_ROWS}"),
            ));
        }
        if !(v.tolerance.is_finite() && v.tolerance > 0.0 && v.tolerance < 0.5) {
            return Err(SpecError::new(
                "verification.tolerance",
                "must be in (0, 0.5)",
            ));
        }
        if !(self.replicas.is_finite() && (0.0..=1.0).contains(&self.replicas)) {
            return Err(SpecError::new("replicas", "must be in [0, 1]"));
        }
        crate::spec::check_access(
            self.visibility,
            &self.trainers,
            self.reward.as_ref(),
            MAX_TRAINERS,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::JobSpec;

    fn base() -> serde_json::Value {
        serde_json::json!({
            "task": "inference",
            "name": "t",
            "model": {"job": 3},
            "inputs": {"builtin": "mnist"},
            "shards": 4
        })
    }

    fn field_of(v: serde_json::Value) -> String {
        JobSpec::from_json(&v.to_string()).unwrap_err().field
    }

    #[test]
    fn an_inference_spec_parses_with_its_defaults_and_round_trips() {
        let spec = JobSpec::from_json(&base().to_string()).unwrap();
        let JobSpec::Inference(inf) = &spec else {
            panic!("{spec:?}")
        };
        assert_eq!(inf.model, ModelRef::Job(JobId(3)));
        assert_eq!((inf.batch_size, inf.replicas), (256, 0.0));
        assert!(inf.verification.is_default());
        let text = serde_json::to_string(&spec).unwrap();
        assert_eq!(JobSpec::from_json(&text).unwrap(), spec);
        assert!(text.contains(r#""task":"inference""#), "{text}");
    }

    #[test]
    fn its_errors_name_the_field() {
        let mut v = base();
        v["shards"] = 0.into();
        assert_eq!(field_of(v), "shards");
        let mut v = base();
        v["inputs"] = serde_json::json!({"builtin": "cifar"});
        assert_eq!(field_of(v), "inputs.builtin");
        let mut v = base();
        v["verification"] = serde_json::json!({"tolerance": 0.7});
        assert_eq!(field_of(v), "verification.tolerance");
        let mut v = base();
        v["verification"] = serde_json::json!({"sample_rows": 0});
        assert_eq!(field_of(v), "verification.sample_rows");
        let mut v = base();
        v["rounds"] = 3.into();
        assert_eq!(field_of(v), "rounds", "a training field is unknown here");
        let mut v = base();
        v["trainers"] = serde_json::json!(["0x0000000000000000000000000000000000000001"]);
        assert_eq!(field_of(v), "trainers", "only a private job names them");
        let mut v = base();
        v["task"] = "painting".into();
        assert_eq!(field_of(v), "task");
    }

    #[test]
    fn the_escape_chance_is_that_of_sampling_only_honest_rows() {
        let v = VerificationSpec::default();
        assert_eq!(v.escape_chance(100, 0), 1.0);
        assert_eq!(v.escape_chance(100, 100), 0.0);
        // One row in 100 wrong: 84 of 100 samples of 16 miss it.
        assert!((v.escape_chance(100, 1) - 0.84).abs() < 1e-12);
        // A shard smaller than the sample is checked whole.
        assert_eq!(v.escape_chance(10, 1), 0.0);
        let bound = (1.0 - 10.0 / 267.0f64).powi(16);
        assert!(v.escape_chance(267, 10) <= bound);
    }
}

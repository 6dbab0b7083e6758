//! The job specification: declarative JSON that says what to train and how.
//!
//! A spec is data only. [`TrainingSpec::validate`] checks every rule and names the
//! offending field, so the API and the web form can show one precise message.

use serde::{Deserialize, Serialize};

use crate::SpecError;
use crate::aggregation::{AggregationSpec, QuorumSpec, ReplicationSpec};
use crate::blob::BlobId;
use crate::privacy::PrivacySpec;
use crate::wei::Wei;

/// Share of a paid job's shards trained twice when its spec says nothing:
/// all of them. Paid work is verified by default; a creator may ask for
/// less (`replication.fraction`) and accept that unchecked shards are paid
/// on trust.
pub const PAID_REPLICATION: f64 = 1.0;

/// Largest number of rounds a job may ask for.
pub const MAX_ROUNDS: u32 = 1_000;
/// Largest number of shards a round may be split into.
pub const MAX_SHARDS_PER_ROUND: u32 = 256;
/// Largest batch size.
pub const MAX_BATCH_SIZE: u32 = 4_096;
/// Largest number of local epochs per shard.
pub const MAX_LOCAL_EPOCHS: u32 = 100;
/// Largest number of local steps per shard.
pub const MAX_LOCAL_STEPS: u32 = 100_000;
/// Largest width of any layer (hidden units or channels).
pub const MAX_LAYER_WIDTH: u32 = 4_096;
/// Largest number of hidden layers.
pub const MAX_HIDDEN_LAYERS: usize = 8;

/// A complete, declarative description of a training job (one kind of
/// [`crate::JobSpec`]).
///
/// ```
/// use oblivion_protocol::TrainingSpec;
/// let spec: TrainingSpec = serde_json::from_str(r#"{
///     "name": "iris",
///     "model": {"kind": "mlp", "hidden": [16]},
///     "dataset": {"builtin": "iris"},
///     "rounds": 5,
///     "shards_per_round": 2,
///     "batch_size": 16,
///     "local_epochs": 5,
///     "optimizer": {"kind": "adam", "learning_rate": 0.01}
/// }"#).unwrap();
/// spec.validate().unwrap();
/// assert_eq!(spec.validation_split, 0.2);
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainingSpec {
    /// A short human name for the job.
    pub name: String,
    /// The model to train.
    pub model: ModelSpec,
    /// Where the training data comes from.
    pub dataset: DatasetSpec,
    /// Number of federated rounds.
    pub rounds: u32,
    /// Number of shards (independent pieces of work) per round.
    pub shards_per_round: u32,
    /// Mini-batch size used by workers.
    pub batch_size: u32,
    /// Passes over its shard each worker makes per round. Exactly one of
    /// `local_epochs` and `local_steps` is given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local_epochs: Option<u32>,
    /// Mini-batch steps each worker takes per round.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local_steps: Option<u32>,
    /// The local optimizer.
    pub optimizer: OptimizerSpec,
    /// Fraction of the data held out for validation, in (0, 0.5].
    #[serde(default = "default_validation_split")]
    pub validation_split: f64,
    /// Seed for the data split, the initial model and local shuffles.
    #[serde(default)]
    pub seed: u64,
    /// End the job early once validation accuracy reaches this, in (0, 1].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_accuracy: Option<f64>,
    /// A fixed upper bound on the L2 norm of an update (the change a worker
    /// makes to the global weights): larger updates are rejected as they
    /// arrive. `None` (the default): no fixed bound; each round bounds its
    /// updates relative to its median one (see [`AggregationSpec`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub update_norm_bound: Option<f64>,
    /// How the round's updates are screened and combined; the default is
    /// robust to a minority of poisoned updates.
    #[serde(default, skip_serializing_if = "AggregationSpec::is_default")]
    pub aggregation: AggregationSpec,
    /// Verification by replicas, as asked; what applies is
    /// [`TrainingSpec::replication`] (a paid job replicates every shard unless
    /// its spec says otherwise).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replication: Option<ReplicationSpec>,
    /// A round may close on a quorum of its slots by a deadline (see
    /// [`QuorumSpec`]). `None`: a round waits for every slot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quorum: Option<QuorumSpec>,
    /// Client-level differential privacy: clipped updates, a noised
    /// aggregate and an accountant. `None`: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub privacy: Option<PrivacySpec>,
    /// Who may read the job's spec, model and data: anyone (`public`, the
    /// default) or its owner alone (`private`).
    #[serde(default, skip_serializing_if = "Visibility::is_public")]
    pub visibility: Visibility,
    /// A private job's trainers: the accounts, besides its owner's, whose
    /// signed-in workers may be leased its work (and so read its data and
    /// weights). A private job is never leased to anyone else, anonymous
    /// workers included. Only with `visibility: private`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub trainers: Vec<String>,
    /// Payment for the work, escrowed on chain: the job opens once its
    /// deposit is seen there. `None`: an unpaid job, open at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reward: Option<RewardSpec>,
    /// Start from a trained model's weights rather than fresh ones (to
    /// fine-tune it): `{"model": id}` of the registry, or `{"job": id}`.
    /// Its architecture must be this spec's model on this dataset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub init: Option<crate::model_ref::ModelRef>,
}

/// Most accounts a private job may name as its trainers.
pub const MAX_TRAINERS: usize = 256;

/// Largest settlement deadline a job may ask for, hours (a year).
pub const MAX_DEADLINE_HOURS: u32 = 24 * 365;

/// What a paid job pays, and by when it is settled.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RewardSpec {
    /// The deposit, in the chain currency's smallest unit (a decimal
    /// string: JSON numbers cannot hold 256 bits).
    pub amount: Wei,
    /// Hours from funding by which the creator settles; unsettled by then,
    /// the deposit can be refunded.
    pub deadline_hours: u32,
}

/// Who may read a job.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Visibility {
    /// Anyone, signed in or not: status, curves, spec, model and data.
    #[default]
    Public,
    /// Its owner alone (and, for a data shard or the current weights, the
    /// worker leasing it). Others see neither the job nor its artifacts.
    Private,
}

impl Visibility {
    /// The name used in the API and the database.
    pub fn as_str(self) -> &'static str {
        match self {
            Visibility::Public => "public",
            Visibility::Private => "private",
        }
    }

    /// Parses [`Visibility::as_str`]'s output.
    pub fn parse(s: &str) -> Option<Visibility> {
        match s {
            "public" => Some(Visibility::Public),
            "private" => Some(Visibility::Private),
            _ => None,
        }
    }

    /// Serde's `skip_serializing_if` helper.
    pub fn is_public(&self) -> bool {
        *self == Visibility::Public
    }
}

fn default_validation_split() -> f64 {
    0.2
}

/// The model architecture.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum ModelSpec {
    /// Multi-layer perceptron: dense layers with ReLU between them.
    Mlp {
        /// Widths of the hidden layers, in order (may be empty: a linear model).
        hidden: Vec<u32>,
    },
    /// Small CNN for images: conv-pool-conv-pool, then dense layers.
    Cnn {
        /// Output channels of the two convolutions.
        channels: [u32; 2],
        /// Side of the square convolution kernels (odd, 3 to 7).
        #[serde(default = "default_kernel_size")]
        kernel_size: u32,
        /// Widths of hidden dense layers after the convolutions.
        #[serde(default)]
        hidden: Vec<u32>,
    },
}

fn default_kernel_size() -> u32 {
    5
}

impl ModelSpec {
    /// The name of the architecture, as written in the spec.
    pub fn kind(&self) -> &'static str {
        match self {
            ModelSpec::Mlp { .. } => "mlp",
            ModelSpec::Cnn { .. } => "cnn",
        }
    }
}

/// Where a job's data comes from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum DatasetSpec {
    /// One of the datasets shipped with the coordinator (see [`BUILTIN_DATASETS`]).
    Builtin(String),
    /// An uploaded CSV file, by the address the upload returned.
    Csv(BlobId),
    /// An uploaded pair of IDX files (images and labels), by address.
    Idx {
        /// The images file (magic 2051).
        images: BlobId,
        /// The labels file (magic 2049).
        labels: BlobId,
    },
    /// Federated mode: the training data stays with the contributors.
    /// Each trains on a local file of its own (the same columns, or the
    /// same image size, as `validation`) and sends only a clipped, noised
    /// update; the job's `privacy` is required and sets both.
    Federated {
        /// The held-out data the coordinator evaluates on (all of it: no
        /// split), and whose features define the inputs. Any dataset but
        /// another federated one.
        validation: Box<DatasetSpec>,
    },
}

impl DatasetSpec {
    /// Whether the data stays with the contributors.
    pub fn is_federated(&self) -> bool {
        matches!(self, DatasetSpec::Federated { .. })
    }

    /// The data the coordinator itself holds: all of it, or in federated
    /// mode the validation data.
    pub fn held_by_coordinator(&self) -> &DatasetSpec {
        match self {
            DatasetSpec::Federated { validation } => validation.held_by_coordinator(),
            other => other,
        }
    }
}

/// The names accepted by [`DatasetSpec::Builtin`].
pub const BUILTIN_DATASETS: [&str; 4] = ["mnist", "iris", "wine", "breast_cancer"];

/// The local optimizer each worker runs on its shard.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum OptimizerSpec {
    /// Stochastic gradient descent, optionally with momentum.
    Sgd {
        /// Step size.
        learning_rate: f64,
        /// Momentum in [0, 1).
        #[serde(default)]
        momentum: f64,
    },
    /// Adam with the usual betas (0.9, 0.999).
    Adam {
        /// Step size.
        learning_rate: f64,
    },
}

impl OptimizerSpec {
    /// The step size.
    pub fn learning_rate(&self) -> f64 {
        match self {
            OptimizerSpec::Sgd { learning_rate, .. } | OptimizerSpec::Adam { learning_rate } => {
                *learning_rate
            }
        }
    }
}

/// How long each worker trains on its shard.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LocalWork {
    /// Whole passes over the shard.
    Epochs(u32),
    /// A number of mini-batch steps (cycling through the shard).
    Steps(u32),
}

fn check_width(field: String, width: u32) -> Result<(), SpecError> {
    if width == 0 || width > MAX_LAYER_WIDTH {
        return Err(SpecError::new(
            field,
            format!("must be between 1 and {MAX_LAYER_WIDTH}"),
        ));
    }
    Ok(())
}

/// Checks a dataset (under `field`) and that `model` can train on it.
fn check_dataset(dataset: &DatasetSpec, field: &str, model: &ModelSpec) -> Result<(), SpecError> {
    let cnn = matches!(model, ModelSpec::Cnn { .. });
    match dataset {
        DatasetSpec::Builtin(name) => {
            if !BUILTIN_DATASETS.contains(&name.as_str()) {
                return Err(SpecError::new(
                    format!("{field}.builtin"),
                    format!(
                        "unknown dataset {name:?}; built-in datasets are {}",
                        BUILTIN_DATASETS.join(", ")
                    ),
                ));
            }
            if cnn && name != "mnist" {
                return Err(SpecError::new(
                    "model.kind",
                    format!("a cnn needs an image dataset; {name:?} is tabular"),
                ));
            }
        }
        DatasetSpec::Csv(_) => {
            if cnn {
                return Err(SpecError::new(
                    "model.kind",
                    "a cnn needs an image dataset; CSV data is tabular",
                ));
            }
        }
        DatasetSpec::Idx { .. } => {}
        DatasetSpec::Federated { validation } => {
            let inner = format!("{field}.federated.validation");
            if validation.is_federated() {
                return Err(SpecError::new(
                    inner,
                    "the validation data is held by the coordinator: it cannot be federated",
                ));
            }
            check_dataset(validation, &inner, model)?;
        }
    }
    Ok(())
}

/// Checks who may read and work on a job, and what it pays: the rules a
/// training and an inference spec share.
pub(crate) fn check_access(
    visibility: Visibility,
    trainers: &[String],
    reward: Option<&RewardSpec>,
    max_trainers: usize,
) -> Result<(), SpecError> {
    if !trainers.is_empty() && visibility == Visibility::Public {
        return Err(SpecError::new(
            "trainers",
            "only a private job names its trainers: a public one is trained by anyone",
        ));
    }
    if trainers.len() > max_trainers {
        return Err(SpecError::new(
            "trainers",
            format!("at most {max_trainers} accounts"),
        ));
    }
    for (i, t) in trainers.iter().enumerate() {
        if crate::auth::normalize_address(t).is_none() {
            return Err(SpecError::new(
                format!("trainers[{i}]"),
                format!("{t:?} is not a 0x address"),
            ));
        }
    }
    if let Some(reward) = reward {
        // Below 10^77 (every such number fits the escrow's 256 bits
        // with room for the sums built on it).
        if reward.amount.is_zero() || reward.amount.as_str().len() > 77 {
            return Err(SpecError::new(
                "reward.amount",
                "must be a positive whole number of wei, as a decimal string",
            ));
        }
        if !(1..=MAX_DEADLINE_HOURS).contains(&reward.deadline_hours) {
            return Err(SpecError::new(
                "reward.deadline_hours",
                format!("must be between 1 and {MAX_DEADLINE_HOURS}"),
            ));
        }
    }
    Ok(())
}

impl TrainingSpec {
    /// The verification by replicas that applies: the spec's, else for a
    /// paid job that trains the job's shards [`PAID_REPLICATION`] (every
    /// shard trained by two workers, as a quorum of two: a worker that
    /// posts anything but the training of its shard is outvoted and paid
    /// nothing), else none.
    pub fn replication(&self) -> ReplicationSpec {
        self.replication.clone().unwrap_or_else(|| ReplicationSpec {
            fraction: if self.reward.is_some() && !self.dataset.is_federated() {
                PAID_REPLICATION
            } else {
                0.0
            },
            ..ReplicationSpec::default()
        })
    }

    /// How long each worker trains per round.
    pub fn local_work(&self) -> LocalWork {
        match (self.local_epochs, self.local_steps) {
            (_, Some(steps)) => LocalWork::Steps(steps),
            (Some(epochs), None) => LocalWork::Epochs(epochs),
            (None, None) => LocalWork::Epochs(1),
        }
    }

    /// Checks every rule; the error names the first field that breaks one.
    pub fn validate(&self) -> Result<(), SpecError> {
        if self.name.trim().is_empty() || self.name.len() > 100 {
            return Err(SpecError::new("name", "must be 1 to 100 characters"));
        }
        match &self.model {
            ModelSpec::Mlp { hidden } => {
                if hidden.len() > MAX_HIDDEN_LAYERS {
                    return Err(SpecError::new(
                        "model.hidden",
                        format!("at most {MAX_HIDDEN_LAYERS} hidden layers"),
                    ));
                }
                for (i, w) in hidden.iter().enumerate() {
                    check_width(format!("model.hidden[{i}]"), *w)?;
                }
            }
            ModelSpec::Cnn {
                channels,
                kernel_size,
                hidden,
            } => {
                for (i, c) in channels.iter().enumerate() {
                    if *c == 0 || *c > 256 {
                        return Err(SpecError::new(
                            format!("model.channels[{i}]"),
                            "must be between 1 and 256",
                        ));
                    }
                }
                if !(3..=7).contains(kernel_size) || kernel_size % 2 == 0 {
                    return Err(SpecError::new("model.kernel_size", "must be 3, 5 or 7"));
                }
                if hidden.len() > MAX_HIDDEN_LAYERS {
                    return Err(SpecError::new(
                        "model.hidden",
                        format!("at most {MAX_HIDDEN_LAYERS} hidden layers"),
                    ));
                }
                for (i, w) in hidden.iter().enumerate() {
                    check_width(format!("model.hidden[{i}]"), *w)?;
                }
            }
        }
        check_dataset(&self.dataset, "dataset", &self.model)?;
        if self.dataset.is_federated() {
            if self.privacy.is_none() {
                return Err(SpecError::new(
                    "privacy",
                    "federated mode needs privacy: contributors send only clipped, noised \
                     updates, and the noise and clip norm are set here",
                ));
            }
            if self.replication().fraction > 0.0 {
                return Err(SpecError::new(
                    "replication.fraction",
                    "replicas cannot check federated work: each contributor trains data \
                     no one else has",
                ));
            }
        }
        if self.rounds == 0 || self.rounds > MAX_ROUNDS {
            return Err(SpecError::new(
                "rounds",
                format!("must be between 1 and {MAX_ROUNDS}"),
            ));
        }
        if self.shards_per_round == 0 || self.shards_per_round > MAX_SHARDS_PER_ROUND {
            return Err(SpecError::new(
                "shards_per_round",
                format!("must be between 1 and {MAX_SHARDS_PER_ROUND}"),
            ));
        }
        if self.batch_size == 0 || self.batch_size > MAX_BATCH_SIZE {
            return Err(SpecError::new(
                "batch_size",
                format!("must be between 1 and {MAX_BATCH_SIZE}"),
            ));
        }
        match (self.local_epochs, self.local_steps) {
            (Some(_), Some(_)) => {
                return Err(SpecError::new(
                    "local_steps",
                    "give either local_epochs or local_steps, not both",
                ));
            }
            (Some(e), None) if e == 0 || e > MAX_LOCAL_EPOCHS => {
                return Err(SpecError::new(
                    "local_epochs",
                    format!("must be between 1 and {MAX_LOCAL_EPOCHS}"),
                ));
            }
            (None, Some(s)) if s == 0 || s > MAX_LOCAL_STEPS => {
                return Err(SpecError::new(
                    "local_steps",
                    format!("must be between 1 and {MAX_LOCAL_STEPS}"),
                ));
            }
            _ => {}
        }
        let lr = self.optimizer.learning_rate();
        if !(lr.is_finite() && lr > 0.0 && lr <= 10.0) {
            return Err(SpecError::new(
                "optimizer.learning_rate",
                "must be a number in (0, 10]",
            ));
        }
        if let OptimizerSpec::Sgd { momentum, .. } = self.optimizer
            && !(momentum.is_finite() && (0.0..1.0).contains(&momentum))
        {
            return Err(SpecError::new("optimizer.momentum", "must be in [0, 1)"));
        }
        if !(self.validation_split > 0.0 && self.validation_split <= 0.5) {
            return Err(SpecError::new("validation_split", "must be in (0, 0.5]"));
        }
        if let Some(t) = self.target_accuracy
            && !(t > 0.0 && t <= 1.0)
        {
            return Err(SpecError::new("target_accuracy", "must be in (0, 1]"));
        }
        if let Some(bound) = self.update_norm_bound
            && !(bound.is_finite() && bound > 0.0)
        {
            return Err(SpecError::new(
                "update_norm_bound",
                "must be a positive number",
            ));
        }
        check_access(
            self.visibility,
            &self.trainers,
            self.reward.as_ref(),
            MAX_TRAINERS,
        )?;
        self.aggregation.validate(self.shards_per_round)?;
        if let Some(replication) = &self.replication {
            replication.validate()?;
        }
        if let Some(quorum) = &self.quorum {
            quorum.validate()?;
            if self.replication().fraction > 0.0 {
                return Err(SpecError::new(
                    "quorum",
                    "a round closed on a quorum would leave replicas unjudged: set \
                     replication.fraction to 0 (a paid job replicates every shard unless \
                     told otherwise)",
                ));
            }
        }
        if let Some(privacy) = &self.privacy {
            privacy.validate()?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::JobSpec;

    fn base() -> serde_json::Value {
        serde_json::json!({
            "name": "t",
            "model": {"kind": "cnn", "channels": [8, 16]},
            "dataset": {"builtin": "mnist"},
            "rounds": 3,
            "shards_per_round": 3,
            "batch_size": 32,
            "local_epochs": 1,
            "optimizer": {"kind": "sgd", "learning_rate": 0.05, "momentum": 0.9}
        })
    }

    fn field_of(v: serde_json::Value) -> String {
        JobSpec::from_json(&v.to_string()).unwrap_err().field
    }

    /// A training spec from JSON, parsed and validated as the API does.
    fn training(text: &str) -> Result<TrainingSpec, SpecError> {
        match JobSpec::from_json(text)? {
            JobSpec::Training(t) => Ok(t),
            other => panic!("not a training spec: {other:?}"),
        }
    }

    #[test]
    fn valid_spec_parses_with_defaults() {
        let spec = training(&base().to_string()).unwrap();
        assert_eq!(spec.validation_split, 0.2);
        assert_eq!(spec.local_work(), LocalWork::Epochs(1));
        assert_eq!(
            spec.model,
            ModelSpec::Cnn {
                channels: [8, 16],
                kernel_size: 5,
                hidden: vec![]
            }
        );
    }

    #[test]
    fn a_quorum_is_checked_and_refused_beside_replicas() {
        let mut v = base();
        v["quorum"] = serde_json::json!({"share": 0.75, "after_secs": 30});
        assert!(training(&v.to_string()).unwrap().quorum.is_some());
        v["quorum"] = serde_json::json!({"share": 0, "after_secs": 30});
        assert_eq!(field_of(v.clone()), "quorum.share");
        v["quorum"] = serde_json::json!({"share": 0.5, "after_secs": 0});
        assert_eq!(field_of(v.clone()), "quorum.after_secs");
        v["quorum"] = serde_json::json!({"share": 0.5, "after_secs": 30});
        v["replication"] = serde_json::json!({"fraction": 0.5});
        assert_eq!(field_of(v.clone()), "quorum");
    }

    #[test]
    fn federated_mode_needs_privacy_and_no_replicas() {
        let mut v = base();
        v["dataset"] = serde_json::json!({"federated": {"validation": {"builtin": "mnist"}}});
        assert_eq!(field_of(v.clone()), "privacy");
        v["privacy"] = serde_json::json!({"clip_norm": 1.0, "noise_multiplier": 0.5});
        let spec = training(&v.to_string()).unwrap();
        assert!(spec.dataset.is_federated());
        v["replication"] = serde_json::json!({"fraction": 0.1});
        assert_eq!(field_of(v.clone()), "replication.fraction");
        v["replication"] = serde_json::json!({"fraction": 0.0});
        v["dataset"] = serde_json::json!({"federated": {"validation": {"builtin": "iris"}}});
        assert_eq!(
            field_of(v.clone()),
            "model.kind",
            "a cnn on tabular validation data"
        );
        v["dataset"] = serde_json::json!({"federated": {"validation":
            {"federated": {"validation": {"builtin": "mnist"}}}}});
        assert_eq!(field_of(v), "dataset.federated.validation");
    }

    #[test]
    fn errors_name_the_field() {
        let mut v = base();
        v["rounds"] = 0.into();
        assert_eq!(field_of(v), "rounds");
        let mut v = base();
        v["rounds"] = (-3).into();
        assert_eq!(field_of(v), "rounds");
        let mut v = base();
        v["dataset"] = serde_json::json!({"builtin": "cifar"});
        assert_eq!(field_of(v), "dataset.builtin");
        let mut v = base();
        v["model"] = serde_json::json!({"kind": "transformer"});
        assert_eq!(field_of(v), "model.kind");
        let mut v = base();
        v["dataset"] = serde_json::json!({"builtin": "iris"});
        assert_eq!(field_of(v), "model.kind");
        let mut v = base();
        v["local_steps"] = 10.into();
        assert_eq!(field_of(v), "local_steps");
        let mut v = base();
        v["optimizer"]["momentum"] = 1.5.into();
        assert_eq!(field_of(v), "optimizer.momentum");
        let mut v = base();
        v["bogus"] = 1.into();
        assert_eq!(field_of(v), "bogus");
        let mut v = base();
        v["dataset"] = serde_json::json!({"federated": {"validation": {"csv": "abc"}}});
        assert_eq!(field_of(v), "dataset.federated.validation.csv");
        let mut v = base();
        v["dataset"] = serde_json::json!({"idx": {"images": "../x", "labels": "abc"}});
        let err = JobSpec::from_json(&v.to_string()).unwrap_err();
        assert_eq!(err.field, "dataset.idx.images");
        assert!(err.message.contains("64 lowercase hex digits"), "{err}");
        let err = JobSpec::from_json("{\"name\": ").unwrap_err();
        assert_eq!(err.field, "", "malformed JSON blames no field");
        assert!(err.message.starts_with("malformed JSON"), "{err}");
    }
}

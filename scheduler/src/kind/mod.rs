//! Job kinds: what a job's slots are, what a lease of one carries, how its
//! updates are read, and how its rounds are protected and credited. The
//! hub, the service and a round's maths ask the job's kind instead of
//! branching on it, so that a new kind of work is one more implementation
//! of [`JobKind`], not branches through the coordinator.
//!
//! Every kind states every rule (no defaults): a new kind decides each.

pub mod federated;
mod inference;
mod training;

use std::fmt;
use std::sync::Arc;

use oblivion_ml::data::{Dataset, FeatureScaling};
use oblivion_ml::model::Architecture;
use oblivion_protocol::inference::VerificationSpec;
use oblivion_protocol::wire::{LeaseWork, LocalDataOffer, TrainTask, TrainingData};
use oblivion_protocol::{BlobId, JobSpec, SpecError, TrainingSpec};

pub use federated::Federated;
pub use inference::Inference;
pub use training::Training;

/// A job's kind, chosen by its spec ([`kind_of`]), whose settings it
/// holds.
pub trait JobKind: fmt::Debug + Send + Sync {
    /// How many of a dataset's `samples` the coordinator keeps to
    /// validate the model on (budgets are checked against it before the
    /// data is divided).
    fn held_out(&self, samples: usize) -> u64;

    /// Divides the job's dataset into the round's slots and the
    /// validation set, both scaled (tabular data). Heavy: the service
    /// calls it on a blocking thread.
    fn divide(&self, data: &Dataset) -> Result<Division, SpecError>;

    /// Whether the job's scaling must name its feature columns: true when
    /// workers scale data of their own, which must have the same columns.
    fn names_columns(&self) -> bool;

    /// What a lease of shard `shard`'s slot in `round` asks of its worker:
    /// `slot_data` is the slot's stored data, `scaling` the job's. `None`
    /// when the slot lacks what the kind needs (never so as stored): its
    /// lease is sent to no one, and expires.
    fn lease_work(
        &self,
        round: u32,
        shard: u32,
        slot_data: Option<BlobId>,
        scaling: Option<&FeatureScaling>,
    ) -> Option<LeaseWork>;

    /// Whether a worker offering `offer` can do the job's work.
    fn admits(
        &self,
        arch: &Architecture,
        scaling: Option<&FeatureScaling>,
        offer: Option<&LocalDataOffer>,
    ) -> bool;

    /// Whether a worker holds at most one slot of a round, whatever its
    /// shard (otherwise, at most one slot of each shard).
    fn one_slot_each(&self) -> bool;

    /// Whether a slot's lease may be backed up by another worker (see
    /// [`crate::hub::Backup`]).
    fn backs_up(&self) -> bool;

    /// What a slot's result is and how it is checked on arrival;
    /// `slot_data` is the slot's stored data. `None` when the slot lacks
    /// what the kind needs (never so as stored; see
    /// [`JobKind::lease_work`]).
    fn result_check(&self, slot_data: Option<BlobId>) -> Option<ResultCheck>;

    /// Whether the coordinator adds a round's differential-privacy noise
    /// (when the spec asks for privacy), rather than each worker to its
    /// own update.
    fn noises_rounds(&self) -> bool;

    /// What a complete round makes of its results.
    fn product(&self) -> Product;
}

/// What a complete round makes of its results.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Product {
    /// New weights: the updates combined (`crate::round`); more rounds
    /// may follow.
    Weights,
    /// The outputs, assembled in row order (`crate::assembly`); the job
    /// ends with its one round.
    Outputs,
}

/// What a slot's result is, and what it is checked against when it
/// arrives.
#[derive(Clone, Debug, PartialEq)]
pub enum ResultCheck {
    /// A change to the round's weights: it must have the model's layout,
    /// be finite and within the bound (the spec's fixed one, else relative
    /// to the weights).
    Update {
        /// The spec's fixed bound on its norm, if any.
        fixed_bound: Option<f64>,
        /// Whether it reports its training loss and time.
        figures: bool,
    },
    /// The model's outputs for the slot's rows, of which the coordinator
    /// recomputes a sample.
    Outputs {
        /// The rows (the slot's data).
        rows: BlobId,
        /// How many rows are recomputed, and how close they must be.
        verification: VerificationSpec,
    },
}

/// A job's dataset divided into its slots and its validation set.
#[derive(Debug)]
pub struct Division {
    /// The round's slots, in order.
    pub slots: Vec<SlotPlan>,
    /// The held-out validation set, scaled (for inference: every row, with
    /// its label).
    pub validation: Dataset,
    /// Samples the slots train in all, when the coordinator holds them.
    pub train_samples: usize,
    /// The job's feature scaling (tabular data), without column names.
    pub scaling: Option<FeatureScaling>,
}

/// One slot of a round, as created.
#[derive(Debug)]
pub struct SlotPlan {
    /// The slot's encoded data, stored by the service; `None` when its
    /// worker brings its own.
    pub data: Option<Vec<u8>>,
    /// What one verified result of it is credited (samples or rows, or one
    /// contribution).
    pub credit: u64,
}

/// The kind of the job `spec` describes. Refuses a spec whose kind's own
/// settings do not resolve (a federated job without noise), naming the
/// field.
pub fn kind_of(spec: &JobSpec) -> Result<Arc<dyn JobKind>, SpecError> {
    match spec {
        JobSpec::Training(t) if t.dataset.is_federated() => Ok(Arc::new(Federated::of(t)?)),
        JobSpec::Training(t) => Ok(Arc::new(Training(t.clone()))),
        JobSpec::Inference(i) => Ok(Arc::new(Inference(i.clone()))),
    }
}

/// A training lease of shard `shard` in `round` of `spec`, on `data`. A
/// replica looks exactly like its shard (same number, same seed), so that
/// its worker cannot tell it is being checked.
fn train_task(spec: &TrainingSpec, round: u32, shard: u32, data: TrainingData) -> LeaseWork {
    LeaseWork::Train(TrainTask {
        optimizer: spec.optimizer.clone(),
        batch_size: spec.batch_size,
        local_work: spec.local_work(),
        seed: spec
            .seed
            .wrapping_mul(0x9E37_79B9)
            .wrapping_add(u64::from(round) << 20)
            .wrapping_add(u64::from(shard)),
        data,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use oblivion_ml::data::{decode_shard, parse_csv};

    fn spec(dataset: serde_json::Value) -> TrainingSpec {
        serde_json::from_value(serde_json::json!({
            "name": "t", "model": {"kind": "mlp", "hidden": []}, "dataset": dataset,
            "rounds": 4, "shards_per_round": 3, "batch_size": 8, "validation_split": 0.25,
            "optimizer": {"kind": "adam", "learning_rate": 0.01},
            "privacy": {"clip_norm": 2.0, "noise_multiplier": 0.5}
        }))
        .unwrap()
    }

    /// Twenty samples of two features, the second ten times the first.
    fn data() -> Dataset {
        let rows: String = (0..20)
            .map(|i| format!("{i},{},{}\n", i * 10, i % 2))
            .collect();
        parse_csv(format!("a,b,label\n{rows}").as_bytes()).unwrap()
    }

    fn data_of(work: Option<LeaseWork>) -> Option<TrainingData> {
        match work? {
            LeaseWork::Train(t) => Some(t.data),
            LeaseWork::Infer(_) => None,
        }
    }

    #[test]
    fn training_shards_the_coordinators_data_and_credits_samples() {
        let spec = spec(serde_json::json!({"builtin": "iris"}));
        let kind = kind_of(&spec.clone().into()).unwrap();
        assert_eq!(kind.held_out(20), 5);
        let division = kind.divide(&data()).unwrap();
        assert_eq!((division.validation.len(), division.train_samples), (5, 15));
        let credits: Vec<u64> = division.slots.iter().map(|s| s.credit).collect();
        assert_eq!(credits, vec![5, 5, 5]);
        let shard = decode_shard(division.slots[0].data.as_ref().unwrap()).unwrap();
        assert_eq!(shard.len(), 5, "each slot's data is its shard");
        // Scaled by the training part's statistics: its mean is zero.
        let scaling = division.scaling.unwrap();
        let trained: Vec<f32> = division
            .slots
            .iter()
            .flat_map(|s| decode_shard(s.data.as_ref().unwrap()).unwrap().features)
            .collect();
        let mean = trained.iter().step_by(2).sum::<f32>() / 15.0;
        assert!(mean.abs() < 1e-5 && scaling.mean.len() == 2, "{mean}");
        assert!(kind.noises_rounds() && kind.backs_up());
        assert_eq!(
            kind.result_check(None),
            Some(ResultCheck::Update {
                fixed_bound: None,
                figures: true
            })
        );
        assert_eq!(
            data_of(kind.lease_work(1, 0, Some(BlobId::of(b"abc")), Some(&scaling))),
            Some(TrainingData::Shard(BlobId::of(b"abc")))
        );
        let mut few = spec.clone();
        few.shards_per_round = 16;
        let refused = kind_of(&few.into()).unwrap().divide(&data()).unwrap_err();
        assert_eq!(refused.field, "shards_per_round");
    }

    #[test]
    fn federated_slots_hold_no_data_and_credit_one_contribution() {
        let spec = spec(serde_json::json!({"federated": {"validation": {"builtin": "iris"}}}));
        let kind = kind_of(&spec.clone().into()).unwrap();
        assert_eq!(kind.held_out(20), 20, "all of it validates");
        let division = kind.divide(&data()).unwrap();
        assert_eq!((division.validation.len(), division.train_samples), (20, 0));
        assert!(
            division
                .slots
                .iter()
                .all(|s| s.data.is_none() && s.credit == federated::CONTRIBUTION)
        );
        assert_eq!(division.slots.len(), 3);
        assert!(kind.names_columns() && kind.one_slot_each());
        assert!(!kind.noises_rounds() && !kind.backs_up());
        assert!(matches!(
            kind.result_check(None),
            Some(ResultCheck::Update { figures: false, .. })
        ));
        let Some(TrainingData::Local(task)) =
            data_of(kind.lease_work(1, 0, None, division.scaling.as_ref()))
        else {
            panic!("a federated lease carries instructions, not a shard");
        };
        assert_eq!((task.clip_norm, task.noise_std), (2.0, 1.0));
        let mut no_privacy = spec.clone();
        no_privacy.privacy = None;
        assert_eq!(kind_of(&no_privacy.into()).unwrap_err().field, "privacy");
    }
}

//! Job kinds: what a job's slots are, what a lease of one carries, how its
//! updates are read, and how its rounds are protected and credited. The
//! hub, the service and a round's maths ask the job's kind instead of
//! branching on it, so that a new kind of work is one more implementation
//! of [`JobKind`], not branches through the coordinator.
//!
//! Every kind states every rule (no defaults): a new kind decides each.

pub mod federated;
mod training;

use std::fmt;
use std::sync::Arc;

use oblivion_ml::data::{Dataset, FeatureScaling};
use oblivion_ml::model::Architecture;
use oblivion_protocol::wire::{LocalDataOffer, TrainingData};
use oblivion_protocol::{BlobId, JobSpec, SpecError};

pub use federated::Federated;
pub use training::Training;

/// A job's kind, chosen by its spec ([`kind_of`]).
pub trait JobKind: fmt::Debug + Send + Sync {
    /// How many of a dataset's `samples` the coordinator keeps to
    /// validate the model on (budgets are checked against it before the
    /// data is divided).
    fn held_out(&self, spec: &JobSpec, samples: usize) -> u64;

    /// Divides the job's dataset into the round's slots and the
    /// validation set, both scaled (tabular data). Heavy: the service
    /// calls it on a blocking thread.
    fn divide(&self, spec: &JobSpec, data: &Dataset) -> Result<Division, SpecError>;

    /// Whether the job's scaling must name its feature columns: true when
    /// workers scale data of their own, which must have the same columns.
    fn names_columns(&self) -> bool;

    /// What a lease of a slot carries as its data: `slot_data` is the
    /// slot's stored data, `scaling` the job's. `None` when the slot lacks
    /// what the kind needs (never so as stored): its lease is sent to no
    /// one, and expires.
    fn lease_data(
        &self,
        slot_data: Option<BlobId>,
        scaling: Option<&FeatureScaling>,
    ) -> Option<TrainingData>;

    /// Whether a worker offering `offer` can train the job's slots.
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

    /// Whether an update reports its training loss and time, checked on
    /// receipt.
    fn reports_figures(&self) -> bool;

    /// Whether the coordinator adds a round's differential-privacy noise
    /// (when the spec asks for privacy), rather than each worker to its
    /// own update.
    fn noises_rounds(&self) -> bool;
}

/// A job's dataset divided into its slots and its validation set.
#[derive(Debug)]
pub struct Division {
    /// The round's slots, in order.
    pub slots: Vec<SlotPlan>,
    /// The held-out validation set, scaled.
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
    /// What one verified update of it is credited (samples, or one
    /// contribution).
    pub credit: u64,
}

/// The kind of the job `spec` describes. Refuses a spec whose kind's own
/// settings do not resolve (a federated job without noise), naming the
/// field.
pub fn kind_of(spec: &JobSpec) -> Result<Arc<dyn JobKind>, SpecError> {
    if spec.dataset.is_federated() {
        Ok(Arc::new(Federated::of(spec)?))
    } else {
        Ok(Arc::new(Training))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use oblivion_ml::data::{decode_shard, parse_csv};

    fn spec(dataset: serde_json::Value) -> JobSpec {
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

    #[test]
    fn training_shards_the_coordinators_data_and_credits_samples() {
        let spec = spec(serde_json::json!({"builtin": "iris"}));
        let kind = kind_of(&spec).unwrap();
        assert_eq!(kind.held_out(&spec, 20), 5);
        let division = kind.divide(&spec, &data()).unwrap();
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
        assert!(kind.reports_figures() && kind.noises_rounds() && kind.backs_up());
        assert_eq!(
            kind.lease_data(Some(BlobId::of(b"abc")), Some(&scaling)),
            Some(TrainingData::Shard(BlobId::of(b"abc")))
        );
        let mut few = spec.clone();
        few.shards_per_round = 16;
        let refused = kind.divide(&few, &data()).unwrap_err();
        assert_eq!(refused.field, "shards_per_round");
    }

    #[test]
    fn federated_slots_hold_no_data_and_credit_one_contribution() {
        let spec = spec(serde_json::json!({"federated": {"validation": {"builtin": "iris"}}}));
        let kind = kind_of(&spec).unwrap();
        assert_eq!(kind.held_out(&spec, 20), 20, "all of it validates");
        let division = kind.divide(&spec, &data()).unwrap();
        assert_eq!((division.validation.len(), division.train_samples), (20, 0));
        assert!(
            division
                .slots
                .iter()
                .all(|s| s.data.is_none() && s.credit == federated::CONTRIBUTION)
        );
        assert_eq!(division.slots.len(), 3);
        assert!(kind.names_columns() && kind.one_slot_each());
        assert!(!kind.reports_figures() && !kind.noises_rounds() && !kind.backs_up());
        let Some(TrainingData::Local(task)) = kind.lease_data(None, division.scaling.as_ref())
        else {
            panic!("a federated lease carries instructions, not a shard");
        };
        assert_eq!((task.clip_norm, task.noise_std), (2.0, 1.0));
        let mut no_privacy = spec.clone();
        no_privacy.privacy = None;
        assert_eq!(kind_of(&no_privacy).unwrap_err().field, "privacy");
    }
}

//! Federated mode: a job whose training data stays with its contributors.
//!
//! The coordinator holds only the validation data. Each round's slots go
//! to connected workers that offer local data of the job's shape, one slot
//! a round per contributor (see [`crate::hub`]); the lease tells the
//! worker how to scale its features (the validation data's statistics) and
//! how to protect its update: clip it to the job's `clip_norm`, add
//! Gaussian noise of `noise_multiplier × clip_norm`. So each update is
//! private on its own, before it leaves the contributor, and whatever the
//! coordinator does with it (screening, a robust rule) is post-processing:
//! the accountant's ε holds against the coordinator too. The price is
//! noise on every update rather than once on their sum.
//!
//! A contributor's sample count cannot be checked, so a verified update is
//! credited as one contribution ([`CONTRIBUTION`]), whatever it claims.

use oblivion_ml::data::Dataset;
use oblivion_ml::model::Architecture;
use oblivion_protocol::wire::{FeatureScaling, LeaseWork, LocalDataOffer, LocalTask, TrainingData};
use oblivion_protocol::{BlobId, SpecError, TrainingSpec};

use super::{Division, JobKind, Product, ResultCheck, SlotPlan, train_task};

/// What one verified federated update is credited: one contribution.
pub const CONTRIBUTION: u64 = 1;

/// Largest sample rank, dimension, class count and sample count a worker
/// may describe its local data with (it is shown to every visitor).
const MAX_RANK: usize = 3;
const MAX_DIMENSION: usize = 100_000;
const MAX_CLASSES: usize = 1_000;
const MAX_SAMPLES: u64 = 1_000_000_000;
const MAX_COLUMN_NAME: usize = 128;

/// The federated kind: each slot trains a contributor's own data, clipped
/// and noised by the contributor as the job's privacy settings say.
#[derive(Clone, Debug, PartialEq)]
pub struct Federated {
    /// Each update's L2 bound.
    pub clip_norm: f64,
    /// The noise each contributor adds to every coordinate.
    pub noise_std: f64,
    /// The job's rounds (the contributor's accountant counts them).
    pub rounds: u32,
    /// The job's spec (what each contributor trains, and how).
    pub spec: TrainingSpec,
}

impl Federated {
    /// The federated kind of `spec`, whose privacy settings must resolve
    /// to some noise.
    pub fn of(spec: &TrainingSpec) -> Result<Federated, SpecError> {
        let privacy = spec
            .privacy
            .as_ref()
            .ok_or_else(|| SpecError::new("privacy", "a federated job needs privacy settings"))?;
        let noise_multiplier = oblivion_protocol::job_privacy::noise_multiplier(spec)
            .map_err(|(field, message)| SpecError::new(field, message))?
            .ok_or_else(|| SpecError::new("privacy", "a federated job needs noise"))?;
        Ok(Federated {
            clip_norm: privacy.clip_norm,
            noise_std: noise_multiplier * privacy.clip_norm,
            rounds: spec.rounds,
            spec: spec.clone(),
        })
    }

    /// A lease's instructions, with the job's feature `scaling`.
    pub fn task(&self, scaling: Option<&FeatureScaling>) -> LocalTask {
        LocalTask {
            scaling: scaling.cloned(),
            clip_norm: self.clip_norm,
            noise_std: self.noise_std,
            rounds: self.rounds,
        }
    }
}

impl JobKind for Federated {
    /// All of it: the coordinator holds only validation data.
    fn held_out(&self, samples: usize) -> u64 {
        samples as u64
    }

    /// Every sample validates, scaled by its own statistics (which every
    /// contributor's lease carries); the slots hold no data and credit one
    /// contribution each.
    fn divide(&self, data: &Dataset) -> Result<Division, SpecError> {
        let mut validation = data.clone();
        let scaling = (!data.is_image()).then(|| validation.normalization());
        if let Some(n) = &scaling {
            validation.normalize(n);
        }
        let slots = (0..self.spec.shards_per_round)
            .map(|_| SlotPlan {
                data: None,
                credit: CONTRIBUTION,
            })
            .collect();
        Ok(Division {
            slots,
            validation,
            train_samples: 0,
            scaling,
        })
    }

    fn names_columns(&self) -> bool {
        true
    }

    fn lease_work(
        &self,
        round: u32,
        shard: u32,
        _: Option<BlobId>,
        scaling: Option<&FeatureScaling>,
    ) -> Option<LeaseWork> {
        let data = TrainingData::Local(Box::new(self.task(scaling)));
        Some(train_task(&self.spec, round, shard, data))
    }

    /// Only a contributor whose data has the job's shape, classes and
    /// (when both name them) columns.
    fn admits(
        &self,
        arch: &Architecture,
        scaling: Option<&FeatureScaling>,
        offer: Option<&LocalDataOffer>,
    ) -> bool {
        let columns = scaling.and_then(|s| s.columns.as_deref());
        offer.is_some_and(|d| d.fits(&arch.input_shape, arch.classes, columns))
    }

    /// One slot a round per contributor.
    fn one_slot_each(&self) -> bool {
        true
    }

    /// Never: no one else can stand in for a contributor's own data.
    fn backs_up(&self) -> bool {
        false
    }

    /// An update without figures: a federated update carries none at all
    /// (see `oblivion_worker_engine`).
    fn result_check(&self, _: Option<BlobId>) -> Option<ResultCheck> {
        Some(ResultCheck::Update {
            fixed_bound: self.spec.update_norm_bound,
            figures: false,
        })
    }

    /// No: updates arrive clipped and noised by their contributors.
    fn noises_rounds(&self) -> bool {
        false
    }

    fn product(&self) -> Product {
        Product::Weights
    }
}

/// Checks a worker's description of its local data.
pub fn check_offer(offer: &LocalDataOffer) -> Result<(), String> {
    let rank = offer.shape.len();
    if !(rank == 1 || rank == MAX_RANK) || offer.shape.iter().any(|&d| d == 0 || d > MAX_DIMENSION)
    {
        return Err(format!(
            "local data: a sample's shape must be [features] or [channels, height, width], \
             each from 1 to {MAX_DIMENSION}; got {:?}",
            offer.shape
        ));
    }
    if offer.classes == 0 || offer.classes > MAX_CLASSES {
        return Err(format!(
            "local data: classes must be from 1 to {MAX_CLASSES}; got {}",
            offer.classes
        ));
    }
    if let Some(columns) = &offer.columns
        && (rank != 1
            || columns.len() != offer.shape[0]
            || columns
                .iter()
                .any(|c| c.is_empty() || c.len() > MAX_COLUMN_NAME))
    {
        return Err(format!(
            "local data: one column name per feature, each 1 to {MAX_COLUMN_NAME} bytes"
        ));
    }
    if offer.samples == 0 || offer.samples > MAX_SAMPLES {
        return Err(format!(
            "local data: samples must be from 1 to {MAX_SAMPLES}; got {}",
            offer.samples
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(dataset: serde_json::Value, privacy: serde_json::Value) -> TrainingSpec {
        serde_json::from_value(serde_json::json!({
            "name": "t", "model": {"kind": "mlp", "hidden": []}, "dataset": dataset,
            "rounds": 10, "shards_per_round": 2, "batch_size": 8,
            "optimizer": {"kind": "adam", "learning_rate": 0.01}, "privacy": privacy
        }))
        .unwrap()
    }

    #[test]
    fn a_federated_lease_carries_the_scaling_and_the_noise() {
        let privacy = serde_json::json!({"clip_norm": 2.0, "noise_multiplier": 0.5});
        let norm = FeatureScaling {
            mean: vec![1.0],
            std: vec![2.0],
            columns: Some(vec!["x".into()]),
        };
        let fed = spec(
            serde_json::json!({"federated": {"validation": {"builtin": "iris"}}}),
            privacy.clone(),
        );
        let task = Federated::of(&fed).unwrap().task(Some(&norm));
        assert_eq!((task.clip_norm, task.noise_std), (2.0, 1.0));
        assert_eq!(task.columns(), Some(&["x".to_string()][..]));
        assert_eq!(task.scaling.unwrap().std, vec![2.0]);
        let central = spec(serde_json::json!({"builtin": "iris"}), privacy);
        assert!(
            !crate::kind::kind_of(&central.into())
                .unwrap()
                .one_slot_each()
        );
    }

    #[test]
    fn offers_are_bounded() {
        let offer = |shape: Vec<usize>, classes, samples| LocalDataOffer {
            shape,
            classes,
            samples,
            columns: None,
        };
        assert!(check_offer(&offer(vec![4], 3, 75)).is_ok());
        assert!(check_offer(&offer(vec![1, 28, 28], 10, 30_000)).is_ok());
        assert!(check_offer(&offer(vec![1, 28], 10, 5)).is_err());
        assert!(check_offer(&offer(vec![0], 3, 5)).is_err());
        assert!(check_offer(&offer(vec![4], 0, 5)).is_err());
        assert!(check_offer(&offer(vec![4], 3, 0)).is_err());
        let named = |names: &[&str]| LocalDataOffer {
            columns: Some(names.iter().map(|n| n.to_string()).collect()),
            ..offer(vec![2], 3, 5)
        };
        assert!(check_offer(&named(&["a", "b"])).is_ok());
        assert!(check_offer(&named(&["a"])).is_err(), "one name per feature");
        assert!(check_offer(&named(&["a", ""])).is_err());
        let fits = |names: &[&str], job: &[&str]| {
            let job: Vec<String> = job.iter().map(|n| n.to_string()).collect();
            named(names).fits(&[2], 3, Some(&job))
        };
        assert!(fits(&["a", "b"], &["a", "b"]));
        assert!(
            !fits(&["b", "a"], &["a", "b"]),
            "the same columns, in order"
        );
    }
}

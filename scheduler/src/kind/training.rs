//! Training: the coordinator holds the data. Each slot trains one shard of
//! the training split, which the lease names by its address; the rest of
//! the dataset is held out to validate on.

use oblivion_ml::data::{Dataset, FeatureScaling, encode_shard};
use oblivion_ml::model::Architecture;
use oblivion_protocol::wire::{LeaseWork, LocalDataOffer, TrainingData};
use oblivion_protocol::{BlobId, SpecError, TrainingSpec};

use super::{Division, JobKind, Product, ResultCheck, SlotPlan, train_task};

/// The training kind: shards of the coordinator's data, as its spec says.
#[derive(Clone, Debug)]
pub struct Training(pub TrainingSpec);

impl JobKind for Training {
    fn held_out(&self, samples: usize) -> u64 {
        Dataset::held_out(samples, self.0.validation_split) as u64
    }

    /// A seeded split, scaled by the training part's statistics; one slot
    /// per shard of the training part, credited its samples.
    fn divide(&self, data: &Dataset) -> Result<Division, SpecError> {
        let spec = &self.0;
        let (mut train, mut validation) = data.split(spec.validation_split, spec.seed);
        let scaling = (!data.is_image()).then(|| train.normalization());
        if let Some(n) = &scaling {
            train.normalize(n);
            validation.normalize(n);
        }
        let shards = spec.shards_per_round as usize;
        if train.len() < shards {
            return Err(SpecError::new(
                "shards_per_round",
                format!("{shards} shards but only {} training samples", train.len()),
            ));
        }
        let slots = train
            .chunks(shards)
            .iter()
            .map(|c| SlotPlan {
                data: Some(encode_shard(c)),
                credit: c.len() as u64,
            })
            .collect();
        Ok(Division {
            slots,
            validation,
            train_samples: train.len(),
            scaling,
        })
    }

    fn names_columns(&self) -> bool {
        false
    }

    /// Its shard; a slot without one cannot be leased.
    fn lease_work(
        &self,
        round: u32,
        shard: u32,
        slot_data: Option<BlobId>,
        _: Option<&FeatureScaling>,
    ) -> Option<LeaseWork> {
        let data = TrainingData::Shard(slot_data?);
        Some(train_task(&self.0, round, shard, data))
    }

    fn admits(
        &self,
        _: &Architecture,
        _: Option<&FeatureScaling>,
        _: Option<&LocalDataOffer>,
    ) -> bool {
        true
    }

    fn one_slot_each(&self) -> bool {
        false
    }

    fn backs_up(&self) -> bool {
        true
    }

    fn result_check(&self, _: Option<BlobId>) -> Option<ResultCheck> {
        Some(ResultCheck::Update {
            fixed_bound: self.0.update_norm_bound,
            figures: true,
        })
    }

    fn noises_rounds(&self) -> bool {
        true
    }

    fn product(&self) -> Product {
        Product::Weights
    }
}

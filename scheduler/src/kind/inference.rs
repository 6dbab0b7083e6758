//! Inference: a trained model run over rows the coordinator holds. Each
//! slot is a contiguous run of the rows, in order, sent without its
//! labels; its result is the model's outputs for them, which the
//! coordinator checks by recomputing a sample (see
//! [`oblivion_protocol::inference::VerificationSpec`]) and assembles in row
//! order once every slot is in. One round; a slot is credited its rows.

use oblivion_ml::data::{Dataset, FeatureScaling, encode_shard};
use oblivion_ml::model::Architecture;
use oblivion_protocol::wire::{InferTask, LeaseWork, LocalDataOffer};
use oblivion_protocol::{BlobId, InferenceSpec, SpecError};

use super::{Division, JobKind, Product, ResultCheck, SlotPlan};

/// The inference kind, as its spec says.
#[derive(Clone, Debug)]
pub struct Inference(pub InferenceSpec);

impl JobKind for Inference {
    /// Every row: the coordinator keeps them all (with their labels, to
    /// score the outputs, and to recompute samples).
    fn held_out(&self, samples: usize) -> u64 {
        samples as u64
    }

    /// The rows, already scaled as the model's training data was, cut in
    /// order into the spec's shards; each slot's copy has its labels
    /// withheld (a worker has no use for them).
    fn divide(&self, data: &Dataset) -> Result<Division, SpecError> {
        let shards = self.0.shards as usize;
        if data.len() < shards {
            return Err(SpecError::new(
                "shards",
                format!("{shards} shards but only {} rows", data.len()),
            ));
        }
        let slots = data
            .chunks(shards)
            .into_iter()
            .map(|mut rows| {
                rows.labels.iter_mut().for_each(|l| *l = 0);
                SlotPlan {
                    credit: rows.len() as u64,
                    data: Some(encode_shard(&rows)),
                }
            })
            .collect();
        Ok(Division {
            slots,
            validation: data.clone(),
            train_samples: 0,
            scaling: None,
        })
    }

    fn names_columns(&self) -> bool {
        false
    }

    /// Its rows; a slot without them cannot be leased.
    fn lease_work(
        &self,
        _: u32,
        _: u32,
        slot_data: Option<BlobId>,
        _: Option<&FeatureScaling>,
    ) -> Option<LeaseWork> {
        Some(LeaseWork::Infer(InferTask {
            rows: slot_data?,
            batch_size: self.0.batch_size,
        }))
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

    /// Yes: any worker can run the same rows.
    fn backs_up(&self) -> bool {
        true
    }

    fn result_check(&self, slot_data: Option<BlobId>) -> Option<ResultCheck> {
        Some(ResultCheck::Outputs {
            rows: slot_data?,
            verification: self.0.verification.clone(),
        })
    }

    /// Never: inference adds no noise (and spends no ε).
    fn noises_rounds(&self) -> bool {
        false
    }

    fn product(&self) -> Product {
        Product::Outputs
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kind::kind_of;
    use oblivion_ml::data::decode_shard;
    use oblivion_protocol::JobSpec;

    #[test]
    fn rows_are_cut_in_order_without_their_labels_and_credited_each() {
        let spec = JobSpec::from_json(
            r#"{"task": "inference", "name": "t", "model": {"job": 1},
                "inputs": {"builtin": "iris"}, "shards": 3, "batch_size": 4}"#,
        )
        .unwrap();
        let kind = kind_of(&spec).unwrap();
        let data = Dataset {
            shape: vec![2],
            features: (0..20).map(|i| i as f32).collect(),
            labels: (0..10).map(|i| i % 3).collect(),
            classes: 3,
        };
        assert_eq!(kind.held_out(10), 10);
        let division = kind.divide(&data).unwrap();
        assert_eq!(division.validation, data, "every row, labelled, stays");
        let credits: Vec<u64> = division.slots.iter().map(|s| s.credit).collect();
        assert_eq!(credits, vec![3, 3, 4]);
        let features: Vec<f32> = division
            .slots
            .iter()
            .flat_map(|s| {
                let rows = decode_shard(s.data.as_ref().unwrap()).unwrap();
                assert!(rows.labels.iter().all(|l| *l == 0), "labels withheld");
                rows.features
            })
            .collect();
        assert_eq!(features, data.features, "in row order");
        let rows = BlobId::of(b"rows");
        let Some(LeaseWork::Infer(task)) = kind.lease_work(1, 2, Some(rows), None) else {
            panic!("an inference lease");
        };
        assert_eq!((task.rows, task.batch_size), (rows, 4));
        assert_eq!(kind.lease_work(1, 2, None, None), None);
        assert!(matches!(
            kind.result_check(Some(rows)),
            Some(ResultCheck::Outputs { verification, .. }) if verification.sample_rows == 16
        ));
        let few = Dataset {
            features: vec![0.0; 4],
            labels: vec![0; 2],
            ..data
        };
        assert_eq!(kind.divide(&few).unwrap_err().field, "shards");
    }
}

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

use oblivion_protocol::JobSpec;
use oblivion_protocol::wire::{FeatureScaling, LocalDataOffer, LocalTask};

/// What one verified federated update is credited: one contribution.
pub const CONTRIBUTION: u64 = 1;

/// Largest sample rank, dimension, class count and sample count a worker
/// may describe its local data with (it is shown to every visitor).
const MAX_RANK: usize = 3;
const MAX_DIMENSION: usize = 100_000;
const MAX_CLASSES: usize = 1_000;
const MAX_SAMPLES: u64 = 1_000_000_000;
const MAX_COLUMN_NAME: usize = 128;

/// The lease's instructions for a federated job: `None` for any other.
/// `normalization` is the job's stored feature scaling (tabular data).
pub fn local_task(
    spec: &JobSpec,
    normalization: Option<&FeatureScaling>,
) -> Result<Option<LocalTask>, String> {
    if !spec.dataset.is_federated() {
        return Ok(None);
    }
    let privacy = spec
        .privacy
        .as_ref()
        .ok_or("a federated job without privacy settings")?;
    let noise_multiplier = oblivion_protocol::job_privacy::noise_multiplier(spec)
        .map_err(|(field, message)| format!("{field}: {message}"))?
        .ok_or("a federated job without noise")?;
    Ok(Some(LocalTask {
        scaling: normalization.cloned(),
        clip_norm: privacy.clip_norm,
        noise_std: noise_multiplier * privacy.clip_norm,
        rounds: spec.rounds,
    }))
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

    fn spec(dataset: serde_json::Value, privacy: serde_json::Value) -> JobSpec {
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
        let task = local_task(&fed, Some(&norm)).unwrap().unwrap();
        assert_eq!((task.clip_norm, task.noise_std), (2.0, 1.0));
        assert_eq!(task.columns(), Some(&["x".to_string()][..]));
        assert_eq!(task.scaling.unwrap().std, vec![2.0]);
        let central = spec(serde_json::json!({"builtin": "iris"}), privacy);
        assert_eq!(local_task(&central, Some(&norm)).unwrap(), None);
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

//! What a job may cost, checked when it is created, before anything is
//! allocated for it: each limit refused with a 422 naming the spec field
//! and the limit.

use oblivion_ml::model::Architecture;
use oblivion_protocol::{InferenceSpec, TrainingSpec};

use crate::config::JobBudgets;
use crate::error::AppError;

/// Checks `spec`, bound to `arch` with `validation_samples` held out,
/// against `budgets`.
pub fn check(
    budgets: &JobBudgets,
    spec: &TrainingSpec,
    arch: &Architecture,
    validation_samples: u64,
) -> Result<(), AppError> {
    if let Err((field, message)) = oblivion_protocol::job_privacy::noise_multiplier(spec) {
        return Err(AppError::unprocessable(format!("{field}: {message}")).with_field(&field));
    }
    let shard_rounds = u64::from(spec.shards_per_round) * u64::from(spec.rounds);
    if shard_rounds > budgets.max_shard_rounds {
        return Err(AppError::unprocessable(format!(
            "shards_per_round: {} shards x {} rounds = {shard_rounds} exceeds the budget of {} \
             (max_shard_rounds)",
            spec.shards_per_round, spec.rounds, budgets.max_shard_rounds
        ))
        .with_field("shards_per_round"));
    }
    let params = check_params(budgets, arch)?;
    let memory = aggregation_bytes(spec, params);
    if memory > budgets.max_aggregation_bytes {
        return Err(AppError::unprocessable(format!(
            "shards_per_round: aggregating a round of {} shards of a {params}-parameter model \
             holds about {memory} bytes, over the budget of {} (max_aggregation_bytes)",
            spec.shards_per_round, budgets.max_aggregation_bytes
        ))
        .with_field("shards_per_round"));
    }
    let eval = arch.forward_macs().saturating_mul(validation_samples);
    if eval > budgets.max_eval_macs {
        return Err(AppError::unprocessable(format!(
            "validation_split: evaluating {validation_samples} held-out samples costs {eval} \
             multiply-adds per round, over the budget of {} (max_eval_macs)",
            budgets.max_eval_macs
        ))
        .with_field("validation_split"));
    }
    Ok(())
}

/// The model's parameters, within `max_params`.
fn check_params(budgets: &JobBudgets, arch: &Architecture) -> Result<u64, AppError> {
    let params = arch.num_params() as u64;
    if params > budgets.max_params {
        return Err(AppError::unprocessable(format!(
            "model: {params} parameters exceed the budget of {} (max_params)",
            budgets.max_params
        ))
        .with_field("model"));
    }
    Ok(params)
}

/// Checks an inference job of `rows` rows through `arch` against
/// `budgets`: the model's size, its shards, and the coordinator's share
/// of the work (each shard's verification sample, run through the model,
/// within `max_eval_macs`).
pub fn check_inference(
    budgets: &JobBudgets,
    spec: &InferenceSpec,
    arch: &Architecture,
    rows: u64,
) -> Result<(), AppError> {
    check_params(budgets, arch)?;
    if u64::from(spec.shards) > budgets.max_shard_rounds {
        return Err(AppError::unprocessable(format!(
            "shards: {} shards exceed the budget of {} (max_shard_rounds)",
            spec.shards, budgets.max_shard_rounds
        ))
        .with_field("shards"));
    }
    let sample = u64::from(spec.verification.sample_rows).min(rows);
    let verify = arch.forward_macs().saturating_mul(sample);
    if verify > budgets.max_eval_macs {
        return Err(AppError::unprocessable(format!(
            "verification.sample_rows: recomputing {sample} rows of a shard costs {verify} \
             multiply-adds, over the budget of {} (max_eval_macs)",
            budgets.max_eval_macs
        ))
        .with_field("verification.sample_rows"));
    }
    Ok(())
}

/// Copies of each update a round's aggregation holds at once: the posted
/// bytes, the decoded weights, the screened candidate and its clipped copy.
pub const AGGREGATION_COPIES: u64 = 4;

/// The memory aggregating one round of `spec` holds, bytes: every slot's
/// update (its shards, each replica, and a third opinion for each replica
/// at worst), [`AGGREGATION_COPIES`] times, at four bytes a parameter.
pub fn aggregation_bytes(spec: &TrainingSpec, params: u64) -> u64 {
    let shards = u64::from(spec.shards_per_round);
    let replicas = (shards as f64 * spec.replication().fraction).ceil() as u64;
    (shards + 2 * replicas)
        .saturating_mul(params)
        .saturating_mul(4 * AGGREGATION_COPIES)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Failure;

    fn spec(hidden: &[u32], shards: u32, rounds: u32) -> TrainingSpec {
        serde_json::from_value(serde_json::json!({
            "name": "t", "model": {"kind": "mlp", "hidden": hidden}, "dataset": {"builtin": "mnist"},
            "rounds": rounds, "shards_per_round": shards, "batch_size": 8,
            "optimizer": {"kind": "adam", "learning_rate": 0.01}
        }))
        .unwrap()
    }

    fn arch(spec: &TrainingSpec) -> Architecture {
        Architecture::new(spec.model.clone(), vec![1, 28, 28], 10).unwrap()
    }

    #[test]
    fn a_small_model_fits_and_a_120m_parameter_one_does_not() {
        let budgets = JobBudgets::default();
        let small = spec(&[128], 4, 6);
        assert!(check(&budgets, &small, &arch(&small), 1600).is_ok());
        let huge = spec(&[4096; 8], 4, 6);
        assert_eq!(arch(&huge).num_params(), 120_725_514);
        let e = check(&budgets, &huge, &arch(&huge), 1600).unwrap_err();
        assert_eq!(
            (e.kind, e.field.as_deref()),
            (Failure::Unprocessable, Some("model"))
        );
        assert!(e.message.contains("120725514 parameters"), "{}", e.message);
    }

    #[test]
    fn evaluation_cost_and_shard_rounds_are_bounded() {
        let budgets = JobBudgets {
            max_params: u64::MAX,
            max_eval_macs: 1_000_000_000,
            max_shard_rounds: 100,
            max_aggregation_bytes: u64::MAX,
        };
        let s = spec(&[512, 512], 4, 6);
        let e = check(&budgets, &s, &arch(&s), 10_000).unwrap_err();
        assert_eq!(
            e.field.as_deref(),
            Some("validation_split"),
            "{}",
            e.message
        );
        let many = spec(&[16], 20, 6);
        let e = check(&budgets, &many, &arch(&many), 10).unwrap_err();
        assert_eq!(
            e.field.as_deref(),
            Some("shards_per_round"),
            "{}",
            e.message
        );
        assert!(e.message.contains("120"), "{}", e.message);
    }

    #[test]
    fn a_round_s_aggregation_memory_is_bounded() {
        let budgets = JobBudgets::default();
        // 256 shards of a 16 M-parameter model would hold about 64 GiB.
        let wide = spec(&[16_000], 256, 1);
        let params = arch(&wide).num_params() as u64;
        assert!(params > 12_000_000 && params <= budgets.max_params);
        let e = check(&budgets, &wide, &arch(&wide), 10).unwrap_err();
        assert_eq!(
            e.field.as_deref(),
            Some("shards_per_round"),
            "{}",
            e.message
        );
        assert!(e.message.contains("max_aggregation_bytes"), "{}", e.message);
        // Four shards of it fit; the examples' models fit at 256 shards.
        assert!(check(&budgets, &spec(&[16_000], 4, 1), &arch(&wide), 10).is_ok());
        let example = spec(&[128], 256, 1);
        assert!(check(&budgets, &example, &arch(&example), 10).is_ok());
        // Replicas and their third opinions count.
        let mut replicated = spec(&[128], 8, 1);
        replicated.replication = Some(oblivion_protocol::aggregation::ReplicationSpec {
            fraction: 0.5,
            ..Default::default()
        });
        assert_eq!(
            aggregation_bytes(&replicated, 1),
            (8 + 2 * 4) * 4 * AGGREGATION_COPIES
        );
    }
}

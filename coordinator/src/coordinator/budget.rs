//! What a job may cost, checked when it is created, before anything is
//! allocated for it: each limit refused with a 422 naming the spec field
//! and the limit.

use oblivion_ml::model::Architecture;
use oblivion_protocol::JobSpec;

use crate::config::JobBudgets;
use crate::error::AppError;

/// Checks `spec`, bound to `arch` with `validation_samples` held out,
/// against `budgets`.
pub fn check(
    budgets: &JobBudgets,
    spec: &JobSpec,
    arch: &Architecture,
    validation_samples: u64,
) -> Result<(), AppError> {
    if let Err((field, message)) = crate::privacy::noise_multiplier(spec) {
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
    let params = arch.num_params() as u64;
    if params > budgets.max_params {
        return Err(AppError::unprocessable(format!(
            "model: {params} parameters exceed the budget of {} (max_params)",
            budgets.max_params
        ))
        .with_field("model"));
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

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(hidden: &[u32], shards: u32, rounds: u32) -> JobSpec {
        serde_json::from_value(serde_json::json!({
            "name": "t", "model": {"kind": "mlp", "hidden": hidden}, "dataset": {"builtin": "mnist"},
            "rounds": rounds, "shards_per_round": shards, "batch_size": 8,
            "optimizer": {"kind": "adam", "learning_rate": 0.01}
        }))
        .unwrap()
    }

    fn arch(spec: &JobSpec) -> Architecture {
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
            (e.status.as_u16(), e.field.as_deref()),
            (422, Some("model"))
        );
        assert!(e.message.contains("120725514 parameters"), "{}", e.message);
    }

    #[test]
    fn evaluation_cost_and_shard_rounds_are_bounded() {
        let budgets = JobBudgets {
            max_params: u64::MAX,
            max_eval_macs: 1_000_000_000,
            max_shard_rounds: 100,
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
}

//! A job's differential privacy, resolved: the noise its rounds add and
//! the ε they have spent. Pure, so that every coordinator instance, every
//! re-run and the web app agree.
//!
//! Each shard is one client, and every round trains every shard: the
//! sampling rate is 1, and the guarantee covers a whole shard's data.
//!
//! In federated mode each contributor noises its own update, which the
//! coordinator sees alone: one record moves it by up to twice the clip
//! norm, so the figure here is the one each contributor's worker computes
//! for itself (`oblivion_privacy::contributor`), and only a display: the
//! worker decides.

use oblivion_privacy::{RdpAccountant, noise_multiplier_for};

use crate::TrainingSpec;
use crate::privacy::MAX_NOISE_MULTIPLIER;

/// The share of clients (shards) that take part in a round.
pub const SAMPLING_RATE: f64 = 1.0;

/// The sensitivity of one release over the clip norm: 1 for the noised
/// sum of a round's updates, 2 for a contributor's own noised update.
fn sensitivity(spec: &TrainingSpec) -> f64 {
    if spec.dataset.is_federated() {
        2.0
    } else {
        1.0
    }
}

/// The noise multiplier `spec`'s rounds use: as given, or the least that
/// keeps all its rounds within its target ε. `Ok(None)` without privacy;
/// an error (naming the field) for a target no noise reaches.
pub fn noise_multiplier(spec: &TrainingSpec) -> Result<Option<f64>, (String, String)> {
    let Some(p) = &spec.privacy else {
        return Ok(None);
    };
    match (p.noise_multiplier, p.target_epsilon) {
        (Some(z), _) => Ok(Some(z)),
        (None, Some(target)) => {
            let field = || "privacy.target_epsilon".to_string();
            let z = noise_multiplier_for(target, SAMPLING_RATE, u64::from(spec.rounds), p.delta)
                .map_err(|e| (field(), e.to_string()))?
                * sensitivity(spec);
            if z > MAX_NOISE_MULTIPLIER {
                return Err((
                    field(),
                    format!(
                        "ε = {target} over {} rounds needs a noise multiplier of {z:.0}, over \
                         the most allowed ({MAX_NOISE_MULTIPLIER}): nothing would be learnt",
                        spec.rounds
                    ),
                ));
            }
            Ok(Some(z))
        }
        (None, None) => Err((
            "privacy.noise_multiplier".into(),
            "give noise_multiplier or target_epsilon".into(),
        )),
    }
}

/// The ε `spec`'s job has spent after `rounds` rounds, at its δ; `None`
/// without privacy.
pub fn epsilon_after(spec: &TrainingSpec, rounds: u32) -> Option<f64> {
    let p = spec.privacy.as_ref()?;
    let z = noise_multiplier(spec).ok()??;
    let mut accountant = RdpAccountant::new();
    accountant
        .compose_poisson_gaussian(SAMPLING_RATE, z / sensitivity(spec), u64::from(rounds))
        .ok()?;
    accountant.epsilon(p.delta).ok().map(|e| e.epsilon)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(privacy: serde_json::Value) -> TrainingSpec {
        serde_json::from_value(serde_json::json!({
            "name": "t", "model": {"kind": "mlp", "hidden": []}, "dataset": {"builtin": "iris"},
            "rounds": 10, "shards_per_round": 4, "batch_size": 8,
            "optimizer": {"kind": "adam", "learning_rate": 0.01},
            "privacy": privacy
        }))
        .unwrap()
    }

    #[test]
    fn a_target_epsilon_is_met_by_the_last_round() {
        let s = spec(serde_json::json!({"clip_norm": 1.0, "target_epsilon": 5.0}));
        let z = noise_multiplier(&s).unwrap().unwrap();
        assert!(z > 0.5 && z < 20.0, "{z}");
        let spent = epsilon_after(&s, 10).unwrap();
        assert!(spent <= 5.0 && spent > 4.99, "{spent}");
        let early = epsilon_after(&s, 3).unwrap();
        assert!(
            early < spent,
            "ε grows with the rounds: {early} then {spent}"
        );
    }

    #[test]
    fn more_noise_spends_less() {
        let a = spec(serde_json::json!({"clip_norm": 1.0, "noise_multiplier": 1.0}));
        let b = spec(serde_json::json!({"clip_norm": 1.0, "noise_multiplier": 4.0}));
        assert!(epsilon_after(&b, 10).unwrap() < epsilon_after(&a, 10).unwrap());
        assert_eq!(epsilon_after(&spec(serde_json::Value::Null), 10), None);
    }

    #[test]
    fn a_target_no_noise_meets_is_an_error_naming_the_field() {
        let s = spec(serde_json::json!({"clip_norm": 1.0, "target_epsilon": 1e-9}));
        let (field, message) = noise_multiplier(&s).unwrap_err();
        assert_eq!(field, "privacy.target_epsilon", "{message}");
    }

    #[test]
    fn a_federated_job_is_priced_as_its_contributors_price_it() {
        let mut s = spec(serde_json::json!({"clip_norm": 1.0, "noise_multiplier": 8.0}));
        s.dataset = serde_json::from_value(
            serde_json::json!({"federated": {"validation": {"builtin": "iris"}}}),
        )
        .unwrap();
        let shown = epsilon_after(&s, 3).unwrap();
        let worker = oblivion_privacy::contributor::job_epsilon(8.0, 3, 1e-5).unwrap();
        assert!((shown - worker).abs() < 1e-9, "{shown} against {worker}");
        s.privacy =
            serde_json::from_value(serde_json::json!({"clip_norm": 1.0, "target_epsilon": 5.0}))
                .unwrap();
        let z = noise_multiplier(&s).unwrap().unwrap();
        let spent = oblivion_privacy::contributor::job_epsilon(z, 10, 1e-5).unwrap();
        assert!(spent <= 5.0 && spent > 4.99, "{spent}");
    }
}

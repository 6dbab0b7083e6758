//! Checking a shard's inference outputs as they arrive: their form, that
//! each predicted class is the most probable one, and a sample of rows,
//! picked when the outputs are in (no worker can know which), recomputed
//! by the coordinator itself and compared within the job's tolerance.
//! Pure but for the randomness, which the caller passes in.

use oblivion_ml::ComputeDevice;
use oblivion_ml::data::Dataset;
use oblivion_ml::inference::{Outputs, infer};
use oblivion_ml::model::Architecture;
use oblivion_ml::params::Params;
use oblivion_protocol::inference::VerificationSpec;
use rand::Rng;

/// Checks `body`, a worker's outputs for `rows` through `arch` with
/// `weights`; `Err` says what is wrong, for the worker and its record.
pub fn check_outputs(
    arch: &Architecture,
    weights: &Params,
    rows: &Dataset,
    body: &[u8],
    verification: &VerificationSpec,
    rng: &mut impl Rng,
) -> Result<Outputs, String> {
    let tolerance = verification.tolerance;
    let outputs =
        Outputs::decode(body, rows.len(), arch.classes, tolerance).map_err(|e| e.to_string())?;
    for i in 0..outputs.rows() {
        let row = outputs.row(i);
        let best = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        if f64::from(best - row[outputs.predicted[i] as usize]) > tolerance {
            return Err(format!(
                "row {i}: predicted class {} is not the most probable",
                outputs.predicted[i]
            ));
        }
    }
    let sample = (verification.sample_rows as usize).min(rows.len());
    let mut picked = rand::seq::index::sample(rng, rows.len(), sample).into_vec();
    picked.sort_unstable();
    let recomputed = infer(arch, weights, &rows.select(&picked), ComputeDevice::Cpu)
        .map_err(|e| format!("the coordinator could not recompute the sample: {e}"))?;
    let claimed = outputs.select(&picked);
    for (k, &row) in picked.iter().enumerate() {
        let one = |o: &Outputs| o.select(&[k]);
        let difference = one(&claimed).max_difference(&one(&recomputed));
        if difference > tolerance {
            return Err(format!(
                "row {row}'s probabilities differ from the coordinator's by {difference:.2e} \
                 (tolerance {tolerance:e})"
            ));
        }
    }
    Ok(outputs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use oblivion_ml::weights::initial_params;
    use oblivion_protocol::ModelSpec;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    fn setup() -> (Architecture, Params, Dataset) {
        let arch = Architecture::new(ModelSpec::Mlp { hidden: vec![8] }, vec![3], 4).unwrap();
        let params = initial_params(&arch, 5).unwrap();
        let rows = Dataset {
            shape: vec![3],
            features: (0..300)
                .map(|i| ((i * 13) % 17) as f32 / 4.0 - 2.0)
                .collect(),
            labels: vec![0; 100],
            classes: 4,
        };
        (arch, params, rows)
    }

    #[test]
    fn honest_outputs_pass_and_a_changed_row_is_caught_when_sampled() {
        let (arch, params, rows) = setup();
        let honest = infer(&arch, &params, &rows, ComputeDevice::Cpu).unwrap();
        let v = VerificationSpec::default();
        let mut rng = StdRng::seed_from_u64(1);
        let body = honest.to_compressed();
        assert_eq!(
            check_outputs(&arch, &params, &rows, &body, &v, &mut rng).unwrap(),
            honest
        );
        // Row 7 answered with another row's outputs: caught whenever it is
        // among the 16 of 100 sampled, about 16% of the time.
        let mut liar = honest.clone();
        let other = honest.row(8).to_vec();
        liar.probabilities[7 * 4..8 * 4].copy_from_slice(&other);
        liar.predicted[7] = honest.predicted[8];
        let body = liar.to_compressed();
        let caught = (0..400)
            .filter(|_| check_outputs(&arch, &params, &rows, &body, &v, &mut rng).is_err())
            .count();
        assert!((40..=90).contains(&caught), "{caught} of 400");
        // Everything sampled when the sample covers the shard.
        let all = VerificationSpec {
            sample_rows: 100,
            ..v
        };
        let err = check_outputs(&arch, &params, &rows, &body, &all, &mut rng).unwrap_err();
        assert!(err.starts_with("row 7's probabilities differ"), "{err}");
    }

    #[test]
    fn a_predicted_class_must_be_the_most_probable() {
        let (arch, params, rows) = setup();
        let mut outputs = infer(&arch, &params, &rows, ComputeDevice::Cpu).unwrap();
        let row = outputs.row(3).to_vec();
        let worst = (0..4).min_by(|&a, &b| row[a].total_cmp(&row[b])).unwrap();
        outputs.predicted[3] = worst as u32;
        let mut rng = StdRng::seed_from_u64(2);
        let err = check_outputs(
            &arch,
            &params,
            &rows,
            &outputs.to_compressed(),
            &VerificationSpec::default(),
            &mut rng,
        )
        .unwrap_err();
        assert!(err.contains("row 3: predicted class"), "{err}");
    }
}

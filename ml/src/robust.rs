//! Robust aggregation of updates (deltas from the round's global weights):
//! rules that a minority of broken or lying workers cannot steer, named as
//! Flower names its strategies. Each takes `(update, weight)` pairs with one
//! layout (weights are credited samples; the order-statistic rules ignore
//! them, as Flower's do) and gives the aggregate update.
//!
//! Pure and deterministic: the same updates in any order give the same bits.

use crate::MlError;
use crate::params::{NamedTensor, Params};

/// How a round's updates are combined.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Rule {
    /// Weighted mean (federated averaging): efficient, not robust.
    FedAvg,
    /// Coordinate-wise median.
    FedMedian,
    /// Coordinate-wise mean after cutting the `beta` fraction of values at
    /// each end (0 ≤ beta < 0.5), and at least one value at each end when
    /// beta > 0 and there are three or more (see [`trimmed_cut`]).
    FedTrimmedAvg {
        /// Fraction cut at each end.
        beta: f64,
    },
    /// Krum (keep = 1) or Multi-Krum (keep > 1): the `keep` updates closest
    /// to their `n - byzantine - 2` nearest neighbours, averaged by weight.
    Krum {
        /// Updates assumed malicious.
        byzantine: usize,
        /// Updates kept.
        keep: usize,
    },
}

/// `update` scaled down so that its L2 norm is at most `bound` (unchanged
/// when it already is).
pub fn clip(update: &Params, bound: f64) -> Params {
    let norm = update.l2_norm();
    if norm.is_nan() || norm <= bound || norm == 0.0 {
        return update.clone();
    }
    let scale = (bound / norm) as f32;
    Params {
        tensors: update
            .tensors
            .iter()
            .map(|t| NamedTensor {
                name: t.name.clone(),
                shape: t.shape.clone(),
                values: t.values.iter().map(|v| v * scale).collect(),
            })
            .collect(),
    }
}

/// Combines `updates` by `rule`.
pub fn aggregate(rule: Rule, updates: &[(Params, f64)]) -> Result<Params, MlError> {
    let (first, _) = updates
        .first()
        .ok_or_else(|| MlError::Update("nothing to aggregate".into()))?;
    for (u, _) in updates {
        first.check_layout(u)?;
    }
    match rule {
        Rule::FedAvg => Params::weighted_mean(updates),
        Rule::FedMedian => Ok(coordinate_wise(first, updates, |column| {
            let n = column.len();
            if n % 2 == 1 {
                column[n / 2]
            } else {
                (column[n / 2 - 1] + column[n / 2]) / 2.0
            }
        })),
        Rule::FedTrimmedAvg { beta } => {
            if !(0.0..0.5).contains(&beta) {
                return Err(MlError::Update(format!(
                    "trimmed mean: beta {beta} is not in [0, 0.5)"
                )));
            }
            let cut = trimmed_cut(beta, updates.len());
            Ok(coordinate_wise(first, updates, |column| {
                let kept = &column[cut..column.len() - cut];
                kept.iter().sum::<f64>() / kept.len() as f64
            }))
        }
        Rule::Krum { byzantine, keep } => krum(updates, byzantine, keep),
    }
}

/// How many of `n` values the trimmed mean cuts at each end: the `beta`
/// fraction, rounded down, but at least one when `beta` > 0 and at least
/// one value stays. Rounding alone cuts nothing below 1 / beta updates
/// (n ≤ 4 at the default 0.2), which would make the default rule a plain
/// mean, steered by one liar, in exactly the small rounds most jobs run;
/// with the floor of one it is the median at n = 3 and 4.
pub fn trimmed_cut(beta: f64, n: usize) -> usize {
    if beta <= 0.0 || n < 3 {
        return 0;
    }
    ((beta * n as f64).floor() as usize).clamp(1, (n - 1) / 2)
}

/// Applies `f` to every coordinate's values across the updates, sorted
/// (a total order, so NaN cannot make it depend on the input's order).
fn coordinate_wise(first: &Params, updates: &[(Params, f64)], f: impl Fn(&[f64]) -> f64) -> Params {
    let mut column = Vec::with_capacity(updates.len());
    Params {
        tensors: first
            .tensors
            .iter()
            .enumerate()
            .map(|(ti, t)| NamedTensor {
                name: t.name.clone(),
                shape: t.shape.clone(),
                values: (0..t.values.len())
                    .map(|i| {
                        column.clear();
                        column.extend(
                            updates
                                .iter()
                                .map(|(u, _)| f64::from(u.tensors[ti].values[i])),
                        );
                        column.sort_by(f64::total_cmp);
                        f(&column) as f32
                    })
                    .collect(),
            })
            .collect(),
    }
}

fn squared_distance(a: &Params, b: &Params) -> f64 {
    a.tensors
        .iter()
        .zip(&b.tensors)
        .flat_map(|(x, y)| x.values.iter().zip(&y.values))
        .map(|(p, q)| {
            let d = f64::from(*p) - f64::from(*q);
            d * d
        })
        .sum()
}

fn krum(updates: &[(Params, f64)], byzantine: usize, keep: usize) -> Result<Params, MlError> {
    let n = updates.len();
    if keep == 0 || keep > n {
        return Err(MlError::Update(format!(
            "Krum: keep {keep} of {n} updates is not possible"
        )));
    }
    // Each scored against its n - f - 2 nearest neighbours (at least one).
    let neighbours = n.saturating_sub(byzantine + 2).max(1).min(n - 1);
    let mut distances = vec![vec![0.0; n]; n];
    for i in 0..n {
        for j in i + 1..n {
            let d = squared_distance(&updates[i].0, &updates[j].0);
            distances[i][j] = d;
            distances[j][i] = d;
        }
    }
    let mut scores: Vec<(f64, usize)> = (0..n)
        .map(|i| {
            let mut row: Vec<f64> = (0..n)
                .filter(|&j| j != i)
                .map(|j| distances[i][j])
                .collect();
            row.sort_by(f64::total_cmp);
            (row.iter().take(neighbours).sum(), i)
        })
        .collect();
    // Ties go to the update with the smaller first values, whatever the
    // order the updates came in.
    scores.sort_by(|a, b| {
        a.0.total_cmp(&b.0)
            .then_with(|| first_values(&updates[a.1].0).total_cmp(&first_values(&updates[b.1].0)))
    });
    let chosen: Vec<(Params, f64)> = scores
        .iter()
        .take(keep)
        .map(|&(_, i)| updates[i].clone())
        .collect();
    Params::weighted_mean(&chosen)
}

fn first_values(p: &Params) -> f64 {
    p.tensors
        .iter()
        .flat_map(|t| t.values.iter())
        .take(16)
        .map(|v| f64::from(*v))
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn update(values: &[f32]) -> Params {
        Params {
            tensors: vec![NamedTensor {
                name: "w".into(),
                shape: vec![values.len()],
                values: values.to_vec(),
            }],
        }
    }

    /// Four honest updates near (1, -1, 0.5) and one attacker far away.
    fn poisoned() -> Vec<(Params, f64)> {
        vec![
            (update(&[1.0, -1.0, 0.5]), 10.0),
            (update(&[1.1, -0.9, 0.4]), 10.0),
            (update(&[0.9, -1.1, 0.6]), 10.0),
            (update(&[1.05, -1.0, 0.55]), 10.0),
            (update(&[100.0, 100.0, -100.0]), 10.0),
        ]
    }

    fn close(p: &Params, want: &[f32], tolerance: f32) -> bool {
        p.tensors[0]
            .values
            .iter()
            .zip(want)
            .all(|(a, b)| (a - b).abs() <= tolerance)
    }

    #[test]
    fn the_mean_is_steered_and_robust_rules_are_not() {
        let ups = poisoned();
        let honest = [1.0, -1.0, 0.5];
        let mean = aggregate(Rule::FedAvg, &ups).unwrap();
        assert!(!close(&mean, &honest, 1.0), "{mean:?}");
        for rule in [
            Rule::FedMedian,
            Rule::FedTrimmedAvg { beta: 0.2 },
            Rule::Krum {
                byzantine: 1,
                keep: 1,
            },
            Rule::Krum {
                byzantine: 1,
                keep: 3,
            },
        ] {
            let out = aggregate(rule, &ups).unwrap();
            assert!(close(&out, &honest, 0.15), "{rule:?}: {out:?}");
        }
    }

    #[test]
    fn rules_are_exact_on_small_cases_and_order_free() {
        let ups = vec![
            (update(&[3.0]), 1.0),
            (update(&[1.0]), 1.0),
            (update(&[2.0]), 1.0),
            (update(&[10.0]), 1.0),
        ];
        let median = aggregate(Rule::FedMedian, &ups).unwrap();
        assert_eq!(median.tensors[0].values, vec![2.5]);
        let trimmed = aggregate(Rule::FedTrimmedAvg { beta: 0.25 }, &ups).unwrap();
        assert_eq!(trimmed.tensors[0].values, vec![2.5]);
        let mut reversed = ups.clone();
        reversed.reverse();
        for rule in [
            Rule::FedMedian,
            Rule::FedTrimmedAvg { beta: 0.25 },
            Rule::Krum {
                byzantine: 1,
                keep: 2,
            },
        ] {
            assert_eq!(
                aggregate(rule, &ups).unwrap(),
                aggregate(rule, &reversed).unwrap(),
                "{rule:?}"
            );
        }
    }

    #[test]
    fn one_liar_in_a_small_round_cannot_steer_the_default_rule() {
        // Three honest updates and one liar: floor(0.2 × 4) would cut
        // nothing, and the liar would move the mean by a quarter of its value.
        let ups = vec![
            (update(&[1.0, -1.0]), 1.0),
            (update(&[1.1, -0.9]), 1.0),
            (update(&[0.9, -1.1]), 1.0),
            (update(&[50.0, 50.0]), 1.0),
        ];
        let out = aggregate(Rule::FedTrimmedAvg { beta: 0.2 }, &ups).unwrap();
        assert!(close(&out, &[1.05, -0.95], 1e-6), "{out:?}");
        for (n, cut) in [
            (1, 0),
            (2, 0),
            (3, 1),
            (4, 1),
            (5, 1),
            (9, 1),
            (10, 2),
            (256, 51),
        ] {
            assert_eq!(trimmed_cut(0.2, n), cut, "n = {n}");
        }
        assert_eq!(trimmed_cut(0.0, 10), 0);
        assert_eq!(trimmed_cut(0.49, 4), 1);
    }

    #[test]
    fn clipping_bounds_the_norm_and_keeps_the_direction() {
        let u = update(&[3.0, 4.0]);
        let c = clip(&u, 1.0);
        assert!((c.l2_norm() - 1.0).abs() < 1e-6);
        assert!((c.tensors[0].values[0] / c.tensors[0].values[1] - 0.75).abs() < 1e-6);
        assert_eq!(clip(&u, 10.0), u);
        assert_eq!(clip(&update(&[0.0, 0.0]), 1.0), update(&[0.0, 0.0]));
    }

    #[test]
    fn impossible_settings_are_refused() {
        let ups = poisoned();
        assert!(aggregate(Rule::FedTrimmedAvg { beta: 0.5 }, &ups).is_err());
        assert!(
            aggregate(
                Rule::Krum {
                    byzantine: 1,
                    keep: 6
                },
                &ups
            )
            .is_err()
        );
        assert!(aggregate(Rule::FedMedian, &[]).is_err());
        let mixed = vec![(update(&[1.0]), 1.0), (update(&[1.0, 2.0]), 1.0)];
        assert!(aggregate(Rule::FedMedian, &mixed).is_err());
    }
}

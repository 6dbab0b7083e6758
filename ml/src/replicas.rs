//! Verification by replicas: several workers' results for one shard,
//! compared. Honest results agree to within a tolerance (training is not
//! bit-exact across devices); a result made up, or trained on anything
//! else, does not.

use crate::params::Params;

/// Whether two results of one shard agree: ‖a − b‖ ≤ tolerance ×
/// max(‖a‖, ‖b‖).
pub fn agree(a: &Params, b: &Params, tolerance: f64) -> bool {
    let scale = a.l2_norm().max(b.l2_norm());
    a.minus(b).l2_norm() <= tolerance * scale
}

/// What a shard's results say, by their indices.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ShardOutcome {
    /// One result: nothing to compare it with.
    Single,
    /// These results agree (the first stands for them all); the odd ones
    /// disagree with them.
    Agreed {
        /// The agreeing results, in order.
        agreeing: Vec<usize>,
        /// The others.
        odd: Vec<usize>,
    },
    /// Two results that disagree: a third must decide.
    Undecided,
    /// Three or more results of which no two agree.
    Split,
}

/// Compares a shard's `results`: the largest group that agrees with one
/// of its members (the earliest such member on a tie) wins.
pub fn judge(results: &[&Params], tolerance: f64) -> ShardOutcome {
    judge_by(results.len(), |i, j| {
        agree(results[i], results[j], tolerance)
    })
}

/// [`judge`] for `n` results of any form, `agree(i, j)` saying whether
/// results `i` and `j` agree.
pub fn judge_by(n: usize, agree: impl Fn(usize, usize) -> bool) -> ShardOutcome {
    if n <= 1 {
        return ShardOutcome::Single;
    }
    let best = (0..n)
        .map(|i| {
            (0..n)
                .filter(|&j| j == i || agree(i, j))
                .collect::<Vec<usize>>()
        })
        .max_by(|a, b| a.len().cmp(&b.len()).then(b[0].cmp(&a[0])))
        .unwrap_or_default();
    if best.len() >= 2 {
        let odd = (0..n).filter(|i| !best.contains(i)).collect();
        ShardOutcome::Agreed {
            agreeing: best,
            odd,
        }
    } else if n == 2 {
        ShardOutcome::Undecided
    } else {
        ShardOutcome::Split
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(values: &[f32]) -> Params {
        Params::vector(values)
    }

    #[test]
    fn close_results_agree_and_far_ones_do_not() {
        let a = p(&[1.0, 2.0, 3.0]);
        assert!(agree(&a, &p(&[1.01, 2.0, 2.99]), 0.05));
        assert!(!agree(&a, &p(&[1.5, 2.0, 3.0]), 0.05));
        assert!(agree(&p(&[0.0]), &p(&[0.0]), 0.05));
    }

    #[test]
    fn a_shards_results_are_judged_by_majority() {
        let (honest, twin, liar) = (p(&[1.0, 1.0]), p(&[1.001, 1.0]), p(&[-1.0, 3.0]));
        assert_eq!(judge(&[&honest], 0.05), ShardOutcome::Single);
        assert_eq!(
            judge(&[&honest, &twin], 0.05),
            ShardOutcome::Agreed {
                agreeing: vec![0, 1],
                odd: vec![]
            }
        );
        assert_eq!(judge(&[&honest, &liar], 0.05), ShardOutcome::Undecided);
        assert_eq!(
            judge(&[&liar, &honest, &twin], 0.05),
            ShardOutcome::Agreed {
                agreeing: vec![1, 2],
                odd: vec![0]
            }
        );
        assert_eq!(
            judge(&[&liar, &honest, &p(&[9.0, 9.0])], 0.05),
            ShardOutcome::Split
        );
    }
}

//! Screening a round's updates before they are combined: which did no
//! work, which disagree with the round, and the combination of the rest.
//! The bounds are relative to the round's median update norm, so they
//! follow the model and the stage of training rather than a fixed number.
//!
//! Pure and deterministic: the coordinator re-runs it after a crash and
//! gets the same verdicts and bits.

use oblivion_protocol::aggregation::{AggregationRule, AggregationSpec};

use crate::MlError;
use crate::params::Params;
use crate::robust::{Rule, aggregate, clip};

/// Random projections used to find near copies (each pair of updates
/// that matches on all of them is then compared in full).
const SKETCH_DIMENSIONS: usize = 8;
/// A projection of two copies differs by at most this many times the
/// copy tolerance, but for odds of about 6e-5 per projection (a Gaussian
/// beyond four standard deviations).
const SKETCH_SLACK: f64 = 4.0;

/// One update of the round.
#[derive(Clone, Debug)]
pub struct Candidate {
    /// The change to the global weights.
    pub params: Params,
    /// Its weight in a mean (the samples it trained on).
    pub weight: f64,
    /// The shard it was trained on (a copy of another shard's update is
    /// no work; two updates of one shard are replicas, not copies).
    pub shard: u32,
}

/// What screening concluded about one update.
#[derive(Clone, Debug, PartialEq)]
pub enum Verdict {
    /// Combined into the round and credited.
    Verified,
    /// Did no work (zero, or a copy of another update): not combined, not
    /// credited.
    NoWork(String),
    /// Disagrees with the round (too large, or pointing elsewhere): not
    /// combined, not credited, and held against its worker.
    Disputed(String),
    /// Contradicted by the agreeing results of other workers for the same
    /// shard: near-certain proof of a wrong result (honest ones agree
    /// within the tolerance). Not combined, not credited, and held
    /// heavily against its worker.
    Refuted(String),
    /// Its shard's results disagree and the agreeing ones are no proof
    /// (they may all be one person's): not combined, not credited, and
    /// held against no one.
    Unresolved(String),
}

impl Verdict {
    /// Whether the update is combined and credited.
    pub fn is_verified(&self) -> bool {
        matches!(self, Verdict::Verified)
    }

    /// The verdict's name as stored with its update: an unresolved one is
    /// stored as `no_work` (it counts for no one and against no one).
    pub fn stored_name(&self) -> &'static str {
        match self {
            Verdict::Verified => "verified",
            Verdict::NoWork(_) | Verdict::Unresolved(_) => "no_work",
            Verdict::Disputed(_) => "disputed",
            Verdict::Refuted(_) => "refuted",
        }
    }

    /// Why, unless verified.
    pub fn reason(&self) -> Option<&str> {
        match self {
            Verdict::Verified => None,
            Verdict::NoWork(r)
            | Verdict::Disputed(r)
            | Verdict::Refuted(r)
            | Verdict::Unresolved(r) => Some(r),
        }
    }
}

/// The screened round.
#[derive(Clone, Debug)]
pub struct Screened {
    /// The combined update of the verified ones (zeros when none is).
    pub aggregate: Params,
    /// One verdict per candidate, in the candidates' order.
    pub verdicts: Vec<Verdict>,
    /// The round's median update norm.
    pub median_norm: f64,
    /// The bound every combined update was clipped to.
    pub clip_bound: f64,
}

/// The combination rule a spec names.
pub fn rule_of(spec: &AggregationRule) -> Rule {
    match *spec {
        AggregationRule::FedAvg => Rule::FedAvg,
        AggregationRule::FedMedian => Rule::FedMedian,
        AggregationRule::FedTrimmedAvg { beta } => Rule::FedTrimmedAvg { beta },
        AggregationRule::Krum { byzantine, keep } => Rule::Krum {
            byzantine: byzantine as usize,
            keep: keep as usize,
        },
    }
}

/// Screens `candidates` (in the order they were accepted: of a copy and
/// its original, the later is the copy) and combines those that pass.
pub fn screen(spec: &AggregationSpec, candidates: &[Candidate]) -> Result<Screened, MlError> {
    let first = &candidates
        .first()
        .ok_or_else(|| MlError::Update("nothing to screen".into()))?
        .params;
    for c in candidates {
        first.check_layout(&c.params)?;
        if !c.params.all_finite() {
            return Err(MlError::Update(format!(
                "the update for shard {} has non-finite values",
                c.shard
            )));
        }
    }
    let norms: Vec<f64> = candidates.iter().map(|c| c.params.l2_norm()).collect();
    let median_norm = median(&norms);
    let clip_bound = spec.clip_factor * median_norm;
    let tiny = spec.min_norm_factor * median_norm;
    let mut verdicts = vec![Verdict::Verified; candidates.len()];

    for (i, &norm) in norms.iter().enumerate() {
        if norm <= tiny {
            verdicts[i] = Verdict::NoWork(format!(
                "norm {norm:.4} is at most {:.0}% of the round's median {median_norm:.4}",
                spec.min_norm_factor * 100.0
            ));
        }
    }
    for (i, j) in near_copies(candidates, tiny, &verdicts) {
        verdicts[i] = Verdict::NoWork(format!(
            "a copy of the update for shard {}",
            candidates[j].shard
        ));
    }
    let dispute_bound = spec.dispute_factor * median_norm;
    for (i, &norm) in norms.iter().enumerate() {
        if verdicts[i].is_verified() && norm > dispute_bound {
            verdicts[i] = Verdict::Disputed(format!(
                "norm {norm:.4} is over {} × the round's median {median_norm:.4}",
                spec.dispute_factor
            ));
        }
    }
    let cosines = agreement(candidates, &norms, &verdicts, clip_bound);
    let known: Vec<f64> = cosines.iter().flatten().copied().collect();
    let round_agreement = median(&known);
    // Honest updates of small shards scatter widely around the round's
    // direction: only one far outside that scatter (three scaled median
    // absolute deviations) is disputed, and only when it also falls under
    // `min_cosine`.
    let spread = 1.4826
        * median(
            &known
                .iter()
                .map(|c| (c - round_agreement).abs())
                .collect::<Vec<_>>(),
        );
    let outlier_below = round_agreement - 3.0 * spread;
    if !known.is_empty() && round_agreement >= spec.min_round_agreement {
        for (i, cosine) in cosines.into_iter().enumerate() {
            if let Some(cosine) = cosine
                && cosine < spec.min_cosine
                && cosine < outlier_below
            {
                verdicts[i] = Verdict::Disputed(format!(
                    "points away from the other updates (cosine {cosine:.3} with their median, \
                     under {}; the round's median cosine is {round_agreement:.3})",
                    spec.min_cosine
                ));
            }
        }
    }
    let rule = rule_of(&spec.rule);
    let aggregate = match combine(rule, candidates, &verdicts, clip_bound)? {
        Some(a) => a,
        None => first.zeros_like(),
    };
    Ok(Screened {
        aggregate,
        verdicts,
        median_norm,
        clip_bound,
    })
}

/// The rule over the verified candidates, each clipped to `bound`; `None`
/// when none is verified. Krum falls back to the median when too few are
/// left for its assumption (more than 2 × byzantine + 2).
fn combine(
    rule: Rule,
    candidates: &[Candidate],
    verdicts: &[Verdict],
    bound: f64,
) -> Result<Option<Params>, MlError> {
    let kept: Vec<(Params, f64)> = candidates
        .iter()
        .zip(verdicts)
        .filter(|(_, v)| v.is_verified())
        .map(|(c, _)| (clip(&c.params, bound), c.weight))
        .collect();
    if kept.is_empty() {
        return Ok(None);
    }
    let rule = match rule {
        Rule::Krum { byzantine, keep } if kept.len() <= 2 * byzantine + 2 => {
            let _ = keep;
            Rule::FedMedian
        }
        Rule::Krum { byzantine, keep } => Rule::Krum {
            byzantine,
            keep: keep.min(kept.len()),
        },
        other => other,
    };
    aggregate(rule, &kept).map(Some)
}

/// For each verified candidate, the cosine similarity of its update with
/// the coordinate-wise median of the other verified ones, all clipped to
/// `bound` (`norms` are theirs, already measured): a reference that a
/// minority cannot steer and that the update
/// itself does not pull towards it (against the round's own combination,
/// large noise would agree with itself). `None` where there is nothing to
/// compare with.
fn agreement(
    candidates: &[Candidate],
    norms: &[f64],
    verdicts: &[Verdict],
    bound: f64,
) -> Vec<Option<f64>> {
    let kept: Vec<usize> = (0..candidates.len())
        .filter(|&i| verdicts[i].is_verified())
        .collect();
    let mut out = vec![None; candidates.len()];
    if kept.len() < 2 {
        return out;
    }
    let scale: Vec<f64> = kept
        .iter()
        .map(|&i| {
            let norm = norms[i];
            if norm > bound && norm > 0.0 {
                bound / norm
            } else {
                1.0
            }
        })
        .collect();
    let n = kept.len();
    let rest = n - 1;
    let mut dots = vec![0.0; n];
    let mut squares = vec![0.0; n];
    let mut own = vec![0.0; n];
    let mut column: Vec<(f64, usize)> = Vec::with_capacity(n);
    let first = &candidates[kept[0]].params;
    for (ti, t) in first.tensors.iter().enumerate() {
        for vi in 0..t.values.len() {
            column.clear();
            column.extend(kept.iter().enumerate().map(|(k, &i)| {
                (
                    f64::from(candidates[i].params.tensors[ti].values[vi]) * scale[k],
                    k,
                )
            }));
            column.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
            for (rank, &(value, k)) in column.iter().enumerate() {
                // The i-th of the other values sits at i, or i + 1 past
                // this one's rank.
                let other = |i: usize| column[i + usize::from(i >= rank)].0;
                let median = if rest % 2 == 1 {
                    other(rest / 2)
                } else {
                    (other(rest / 2 - 1) + other(rest / 2)) / 2.0
                };
                dots[k] += value * median;
                squares[k] += median * median;
                own[k] += value * value;
            }
        }
    }
    for (k, &i) in kept.iter().enumerate() {
        let denominator = (own[k] * squares[k]).sqrt();
        if denominator > 0.0 {
            out[i] = Some(dots[k] / denominator);
        }
    }
    out
}

/// Pairs (copy, original) of candidates of different shards closer than
/// `tolerance`, the copy being the later one; each copy named once.
fn near_copies(
    candidates: &[Candidate],
    tolerance: f64,
    verdicts: &[Verdict],
) -> Vec<(usize, usize)> {
    let sketches: Vec<[f64; SKETCH_DIMENSIONS]> =
        candidates.iter().map(|c| sketch(&c.params)).collect();
    let mut copies = Vec::new();
    for i in 0..candidates.len() {
        if !verdicts[i].is_verified() {
            continue;
        }
        let original = (0..i).find(|&j| {
            verdicts[j].is_verified()
                && candidates[j].shard != candidates[i].shard
                && sketches[i]
                    .iter()
                    .zip(&sketches[j])
                    .all(|(a, b)| (a - b).abs() <= SKETCH_SLACK * tolerance)
                && distance(&candidates[i].params, &candidates[j].params) <= tolerance
        });
        if let Some(j) = original {
            copies.push((i, j));
        }
    }
    copies
}

/// Projections of `p` on fixed pseudo-random ±1 directions: two updates
/// at distance d differ on each by a value of standard deviation d.
fn sketch(p: &Params) -> [f64; SKETCH_DIMENSIONS] {
    let mut out = [0.0; SKETCH_DIMENSIONS];
    for (index, v) in p.tensors.iter().flat_map(|t| &t.values).enumerate() {
        let bits = splitmix64(index as u64);
        for (k, o) in out.iter_mut().enumerate() {
            let sign = if bits >> k & 1 == 1 { 1.0 } else { -1.0 };
            *o += sign * f64::from(*v);
        }
    }
    out
}

/// A well-mixed hash of the coordinate's index (SplitMix64's finaliser),
/// so that the directions need no stored state.
fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn distance(a: &Params, b: &Params) -> f64 {
    a.minus(b).l2_norm()
}

fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let n = sorted.len();
    if n == 0 {
        0.0
    } else if n % 2 == 1 {
        sorted[n / 2]
    } else {
        (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::params::NamedTensor;

    /// A deterministic pseudo-random vector of `n` values in [-1, 1].
    fn noise(seed: u64, n: usize) -> Vec<f32> {
        (0..n)
            .map(|i| {
                let bits = splitmix64(seed.wrapping_mul(1_000_003).wrapping_add(i as u64));
                (bits >> 11) as f32 / (1u64 << 53) as f32 * 2.0 - 1.0
            })
            .collect()
    }

    fn candidate(values: Vec<f32>, shard: u32) -> Candidate {
        Candidate {
            params: Params {
                tensors: vec![NamedTensor {
                    name: "w".into(),
                    shape: vec![values.len()],
                    values,
                }],
            },
            weight: 100.0,
            shard,
        }
    }

    /// Eight honest updates: a shared direction plus each its own noise.
    fn honest(n: usize, dims: usize) -> (Vec<f32>, Vec<Candidate>) {
        let direction = noise(0, dims);
        let updates = (0..n)
            .map(|i| {
                let own = noise(i as u64 + 1, dims);
                let v = direction
                    .iter()
                    .zip(&own)
                    .map(|(d, o)| d + 0.5 * o)
                    .collect();
                candidate(v, i as u32)
            })
            .collect();
        (direction, updates)
    }

    fn cosine(a: &Params, b: &[f32]) -> f64 {
        let b = Params {
            tensors: vec![NamedTensor {
                name: "w".into(),
                shape: vec![b.len()],
                values: b.to_vec(),
            }],
        };
        let dot: f64 = a.tensors[0]
            .values
            .iter()
            .zip(&b.tensors[0].values)
            .map(|(p, q)| f64::from(*p) * f64::from(*q))
            .sum();
        dot / (a.l2_norm() * b.l2_norm())
    }

    #[test]
    fn honest_updates_all_pass() {
        let (direction, updates) = honest(8, 2_000);
        let out = screen(&AggregationSpec::default(), &updates).unwrap();
        assert!(
            out.verdicts.iter().all(Verdict::is_verified),
            "{:?}",
            out.verdicts
        );
        assert!(cosine(&out.aggregate, &direction) > 0.95);
    }

    #[test]
    fn each_kind_of_poison_is_caught_and_left_out() {
        let dims = 2_000;
        let (direction, mut updates) = honest(8, dims);
        let typical = updates[0].params.l2_norm() as f32;
        let scaled: Vec<f32> = updates[1].params.tensors[0]
            .values
            .iter()
            .map(|v| v * 100.0)
            .collect();
        let flipped: Vec<f32> = updates[2].params.tensors[0]
            .values
            .iter()
            .map(|v| -v)
            .collect();
        let mut near_bound = noise(99, dims);
        let scale = 2.9 * typical / candidate(near_bound.clone(), 0).params.l2_norm() as f32;
        near_bound.iter_mut().for_each(|v| *v *= scale);
        let copied: Vec<f32> = updates[3].params.tensors[0]
            .values
            .iter()
            .map(|v| v + 1e-6)
            .collect();
        updates.push(candidate(scaled, 8));
        updates.push(candidate(flipped, 9));
        updates.push(candidate(near_bound, 10));
        updates.push(candidate(vec![0.0; dims], 11));
        updates.push(candidate(copied, 12));
        let out = screen(&AggregationSpec::default(), &updates).unwrap();
        assert!(
            out.verdicts[..8].iter().all(Verdict::is_verified),
            "{:?}",
            out.verdicts
        );
        assert!(
            matches!(&out.verdicts[8], Verdict::Disputed(r) if r.contains("median")),
            "{:?}",
            out.verdicts[8]
        );
        assert!(
            matches!(&out.verdicts[9], Verdict::Disputed(r) if r.contains("cosine")),
            "{:?}",
            out.verdicts[9]
        );
        assert!(
            matches!(&out.verdicts[10], Verdict::Disputed(r) if r.contains("cosine")),
            "{:?}",
            out.verdicts[10]
        );
        assert!(
            matches!(&out.verdicts[11], Verdict::NoWork(_)),
            "{:?}",
            out.verdicts[11]
        );
        assert!(
            matches!(&out.verdicts[12], Verdict::NoWork(r) if r.contains("shard 3")),
            "{:?}",
            out.verdicts[12]
        );
        let clean = screen(&AggregationSpec::default(), &updates[..8]).unwrap();
        assert_eq!(out.aggregate, clean.aggregate, "the poison changed nothing");
        assert!(cosine(&out.aggregate, &direction) > 0.95);
    }

    #[test]
    fn a_round_without_a_shared_direction_disputes_no_one_for_it() {
        // Late in training: updates are mostly each their own noise.
        let updates: Vec<Candidate> = (0..8)
            .map(|i| candidate(noise(50 + i, 1_000), i as u32))
            .collect();
        let out = screen(&AggregationSpec::default(), &updates).unwrap();
        assert!(
            out.verdicts.iter().all(Verdict::is_verified),
            "{:?}",
            out.verdicts
        );
        // Five times the median is clipped, not disputed.
        let mut updates = honest(6, 1_000).1;
        let big: Vec<f32> = updates[0].params.tensors[0]
            .values
            .iter()
            .map(|v| v * 5.0)
            .collect();
        updates.push(candidate(big, 6));
        let out = screen(&AggregationSpec::default(), &updates).unwrap();
        assert!(
            out.verdicts.iter().all(Verdict::is_verified),
            "{:?}",
            out.verdicts
        );
    }

    #[test]
    fn replicas_of_one_shard_are_not_copies() {
        let (_, mut updates) = honest(4, 500);
        let mut replica = updates[2].clone();
        replica.params.tensors[0].values[0] += 1e-6;
        updates.push(replica);
        let out = screen(&AggregationSpec::default(), &updates).unwrap();
        assert!(
            out.verdicts.iter().all(Verdict::is_verified),
            "{:?}",
            out.verdicts
        );
    }

    #[test]
    fn verdicts_and_bits_do_not_depend_on_luck() {
        let (_, updates) = honest(6, 1_000);
        let a = screen(&AggregationSpec::default(), &updates).unwrap();
        let b = screen(&AggregationSpec::default(), &updates).unwrap();
        assert_eq!(a.aggregate, b.aggregate);
        assert_eq!(a.verdicts, b.verdicts);
    }

    #[test]
    fn a_round_of_nothing_changes_nothing() {
        let updates = vec![candidate(vec![0.0; 10], 0), candidate(vec![0.0; 10], 1)];
        let out = screen(&AggregationSpec::default(), &updates).unwrap();
        assert!(out.verdicts.iter().all(|v| matches!(v, Verdict::NoWork(_))));
        assert_eq!(out.aggregate.l2_norm(), 0.0);
    }

    #[test]
    fn krum_with_too_few_left_takes_the_median() {
        let spec = AggregationSpec {
            rule: AggregationRule::Krum {
                byzantine: 1,
                keep: 1,
            },
            ..AggregationSpec::default()
        };
        let (_, updates) = honest(3, 100);
        let out = screen(&spec, &updates).unwrap();
        assert!(out.verdicts.iter().all(Verdict::is_verified));
    }
}

//! One round's maths: replicas judged, updates screened and combined (with
//! differential privacy's noise when the job asks for it), and the checks
//! that a round holds the updates it should. Pure: no I/O, no clock, and
//! the same inputs give the same bits (see `coordinator/src/service/rounds/aggregation.rs` for
//! the claim, the storage and the transaction around it).

use oblivion_ml::ComputeDevice;
use oblivion_ml::MlError;
use oblivion_ml::data::Dataset;
use oblivion_ml::dp::noised_mean;
use oblivion_ml::model::Architecture;
use oblivion_ml::params::Params;
use oblivion_ml::replicas::{ShardOutcome, agree, judge_by};
use oblivion_ml::screening::{Candidate, Verdict, screen};
use oblivion_ml::train::{Evaluation, evaluate};
use oblivion_protocol::JobSpec;
use oblivion_protocol::aggregation::AggregationSpec;

use crate::kind::JobKind;

/// One update of the round, in the order they were accepted.
#[derive(Clone, Debug)]
pub struct RoundBlob {
    /// The update, as posted.
    pub bytes: Vec<u8>,
    /// Samples of its shard.
    pub samples: f64,
    /// The shard it trained.
    pub base: u32,
    /// The account it came from, when that account may refute others'
    /// results (signed in, established, not quarantined).
    pub refuter: Option<String>,
}

/// Differential privacy for a round: every update clipped to `clip_norm`,
/// noise of `noise_multiplier × clip_norm` added to the sum, divided by
/// `clients`.
#[derive(Clone, Copy, Debug)]
pub struct RoundPrivacy {
    /// The clipping bound.
    pub clip_norm: f64,
    /// Noise over the bound.
    pub noise_multiplier: f64,
    /// The fixed divisor (the round's shards).
    pub clients: f64,
}

/// How a job's rounds are judged and combined.
#[derive(Clone, Debug)]
pub struct RoundRules {
    /// Screening and the combination rule.
    pub aggregation: AggregationSpec,
    /// Replicas of a shard agree within this relative distance.
    pub tolerance: f64,
    /// Differential privacy, if the job asks for it.
    pub privacy: Option<RoundPrivacy>,
}

/// What aggregating a round came to.
#[derive(Debug)]
pub enum RoundOutcome {
    /// The two results of each of these shards disagree: a third result
    /// must decide before the round can be combined.
    NeedsThird(Vec<u32>),
    /// The new global weights, their evaluation on the validation split,
    /// and a verdict per update, in the order given.
    Aggregated(Params, Evaluation, Vec<Verdict>),
}

/// Judges and combines a complete round: replicas of a shard are
/// compared first (the agreeing ones stand together, odd ones out are
/// disputed), then one result per shard is screened and the verified ones
/// combined. The same inputs always give the same bits and the same
/// verdicts, unless `privacy` adds noise from `gaussian`.
pub fn aggregate_round(
    arch: &Architecture,
    global: &Params,
    updates: Vec<RoundBlob>,
    rules: &RoundRules,
    validation: &Dataset,
    gaussian: &mut dyn FnMut() -> f64,
) -> Result<RoundOutcome, MlError> {
    let limit = arch.num_params().saturating_mul(4) + 1024 * 1024;
    let mut decoded = Vec::with_capacity(updates.len());
    for u in &updates {
        let (params, _) = Params::from_compressed_within(&u.bytes, limit)?;
        decoded.push(params);
    }
    let Judged {
        mut verdicts,
        mut standing,
        undecided,
    } = judge_shards(&updates, |i, j| {
        agree(&decoded[i], &decoded[j], rules.tolerance)
    });
    if !undecided.is_empty() {
        return Ok(RoundOutcome::NeedsThird(undecided));
    }
    standing.sort_by_key(|(representative, _)| *representative);
    let candidates: Vec<Candidate> = standing
        .iter()
        .map(|&(i, _)| Candidate {
            params: decoded[i].clone(),
            weight: updates[i].samples,
            shard: updates[i].base,
        })
        .collect();
    let (combined, judged) = if candidates.is_empty() {
        (global.zeros_like(), Vec::new())
    } else {
        let screened = screen(&rules.aggregation, &candidates)?;
        let combined = match rules.privacy {
            None => screened.aggregate,
            // Under differential privacy screening decides credit and
            // reputation, not what is combined: leaving an update out for
            // how it compares with other clients' would make the choice
            // depend on their data, which the accountant does not cover.
            // Clipping already bounds what any one update can do.
            Some(p) => {
                let every: Vec<&Params> = candidates.iter().map(|c| &c.params).collect();
                noised_mean(
                    &every,
                    global,
                    p.clip_norm,
                    p.noise_multiplier,
                    p.clients,
                    gaussian,
                )?
            }
        };
        (combined, screened.verdicts)
    };
    for ((representative, twins), verdict) in standing.iter().zip(judged) {
        for &t in twins {
            verdicts[t] = Some(verdict.clone());
        }
        verdicts[*representative] = Some(verdict);
    }
    let new_global = global.plus(&combined);
    let eval = evaluate(arch, &new_global, validation, ComputeDevice::Cpu)?;
    let verdicts = verdicts
        .into_iter()
        .map(|v| v.unwrap_or_else(|| Verdict::NoWork("not judged".into())))
        .collect();
    Ok(RoundOutcome::Aggregated(new_global, eval, verdicts))
}

/// Checks that the slots of a round's updates (`got`, sorted) are exactly
/// one for each of `shards` slots.
pub fn one_update_per_shard(got: &[u32], shards: usize) -> Result<(), String> {
    if got.len() != shards || got.iter().enumerate().any(|(i, &s)| s as usize != i) {
        return Err(format!(
            "the round has updates for shards {got:?}, not exactly one for each of {shards}"
        ));
    }
    Ok(())
}

/// Checks that a round closed on its quorum has some updates, at most one
/// for each of its `slots` slots, in slot order (`got`: their slots).
pub fn distinct_slots(got: &[u32], slots: usize) -> Result<(), String> {
    let ordered = got.windows(2).all(|w| w[0] < w[1]);
    if got.is_empty() || !ordered || got.iter().any(|&s| s as usize >= slots) {
        return Err(format!(
            "the round closed on its quorum with updates for slots {got:?}, not distinct \
             slots of {slots}"
        ));
    }
    Ok(())
}

/// What comparing each shard's results came to, by the results' indices.
pub(crate) struct Judged {
    /// The verdicts given so far (to results outvoted or split).
    pub verdicts: Vec<Option<Verdict>>,
    /// Each shard's standing result, and the others that agree with it.
    pub standing: Vec<(usize, Vec<usize>)>,
    /// The shards whose two results disagree: a third must decide.
    pub undecided: Vec<u32>,
}

/// Compares the results of each shard (`agree(i, j)`: whether results
/// `i` and `j` agree): the agreeing ones stand together, odd ones out
/// are refuted or unresolved, and a shard of which no two agree is
/// disputed.
pub(crate) fn judge_shards(updates: &[RoundBlob], agree: impl Fn(usize, usize) -> bool) -> Judged {
    // Each shard's results, in acceptance order.
    let mut groups: Vec<(u32, Vec<usize>)> = Vec::new();
    for (i, u) in updates.iter().enumerate() {
        match groups.iter_mut().find(|(base, _)| *base == u.base) {
            Some((_, members)) => members.push(i),
            None => groups.push((u.base, vec![i])),
        }
    }
    let mut verdicts: Vec<Option<Verdict>> = vec![None; updates.len()];
    // (representative, the other results that agree with it)
    let mut standing: Vec<(usize, Vec<usize>)> = Vec::new();
    let mut undecided = Vec::new();
    for (base, members) in &groups {
        match judge_by(members.len(), |a, b| agree(members[a], members[b])) {
            ShardOutcome::Single => standing.push((members[0], Vec::new())),
            ShardOutcome::Agreed { agreeing, odd } => {
                let stand: Vec<usize> = agreeing.iter().map(|&k| members[k]).collect();
                // Agreement refutes (on the record, towards quarantine)
                // only when two distinct established accounts agree: free
                // accounts would frame anyone. Otherwise the majority still
                // stands, and the odd one out is unpaid but not on record:
                // a free rider outvoted by new honest accounts earns
                // nothing, and costs them nothing. (Two sybils that outvote
                // an honest worker gain no more than holding both slots of
                // a shard would give them.)
                let mut accounts: Vec<&str> = stand
                    .iter()
                    .filter_map(|&i| updates[i].refuter.as_deref())
                    .collect();
                accounts.sort_unstable();
                accounts.dedup();
                let established = accounts.len() >= 2;
                for k in odd {
                    verdicts[members[k]] = Some(if established {
                        Verdict::Refuted(format!(
                            "disagrees with {} other results for shard {base}",
                            stand.len()
                        ))
                    } else {
                        Verdict::Unresolved(format!(
                            "disagrees with {} other results for shard {base}, which are not \
                             two established accounts",
                            stand.len()
                        ))
                    });
                }
                standing.push((stand[0], stand[1..].to_vec()));
            }
            ShardOutcome::Undecided => undecided.push(*base),
            ShardOutcome::Split => {
                for &i in members {
                    verdicts[i] = Some(Verdict::Disputed(format!(
                        "no two of {} results for shard {base} agree",
                        members.len()
                    )));
                }
            }
        }
    }
    Judged {
        verdicts,
        standing,
        undecided,
    }
}

/// The differential privacy a job's rounds of `shards` shards run under,
/// if any: none when its kind's updates arrive noised by their
/// contributors (see [`JobKind::noises_rounds`]).
pub fn round_privacy(
    kind: &dyn JobKind,
    spec: &JobSpec,
    shards: usize,
) -> Result<Option<RoundPrivacy>, String> {
    let Some(spec) = spec.training().filter(|_| kind.noises_rounds()) else {
        return Ok(None);
    };
    match (
        &spec.privacy,
        oblivion_protocol::job_privacy::noise_multiplier(spec),
    ) {
        (Some(p), Ok(Some(noise_multiplier))) => Ok(Some(RoundPrivacy {
            clip_norm: p.clip_norm,
            noise_multiplier,
            clients: shards as f64,
        })),
        (Some(_), _) => Err("the job's privacy settings do not resolve".into()),
        (None, _) => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use oblivion_ml::data::parse_csv;
    use oblivion_ml::params::NamedTensor;
    use oblivion_ml::weights::initial_params;

    /// A shared direction plus the seed's own noise, as honest updates
    /// of one round look.
    fn update(arch: &Architecture, seed: u64) -> Vec<u8> {
        let shared = initial_params(arch, 1_000).unwrap();
        let own = initial_params(arch, seed).unwrap();
        Params {
            tensors: shared
                .tensors
                .into_iter()
                .zip(own.tensors)
                .map(|(s, o)| NamedTensor {
                    values: s
                        .values
                        .iter()
                        .zip(&o.values)
                        .map(|(a, b)| 0.1 * a + 0.03 * b)
                        .collect(),
                    ..s
                })
                .collect(),
        }
        .to_compressed(None)
    }

    #[test]
    fn aggregating_the_same_round_again_gives_the_same_bits() {
        let (data, arch, global) = iris();
        let updates = || {
            vec![
                blob(update(&arch, 2), 0),
                blob(update(&arch, 3), 1),
                blob(update(&arch, 4), 2),
            ]
        };
        let no_noise = &mut || 0.0;
        let (a, eval_a, verdicts) = aggregated(
            aggregate_round(&arch, &global, updates(), &rules(), &data, no_noise).unwrap(),
        );
        let (b, eval_b, _) = aggregated(
            aggregate_round(&arch, &global, updates(), &rules(), &data, no_noise).unwrap(),
        );
        assert!(verdicts.iter().all(Verdict::is_verified), "{verdicts:?}");
        assert_eq!(a.to_safetensors(None), b.to_safetensors(None));
        assert_eq!(eval_a.accuracy.to_bits(), eval_b.accuracy.to_bits());
        assert_ne!(a.to_safetensors(None), global.to_safetensors(None));
    }

    /// Iris for validation, a small MLP for it, and its initial weights.
    fn iris() -> (Dataset, Architecture, Params) {
        let data = parse_csv(include_bytes!("../../datasets/tabular/iris.csv")).unwrap();
        let spec = oblivion_protocol::ModelSpec::Mlp { hidden: vec![8] };
        let arch = Architecture::new(spec, data.shape.clone(), data.classes).unwrap();
        let global = initial_params(&arch, 1).unwrap();
        (data, arch, global)
    }

    fn blob(bytes: Vec<u8>, base: u32) -> RoundBlob {
        RoundBlob {
            bytes,
            samples: 40.0,
            base,
            refuter: None,
        }
    }

    /// `b`, from an established account.
    fn from_account(b: RoundBlob, account: &str) -> RoundBlob {
        RoundBlob {
            refuter: Some(account.into()),
            ..b
        }
    }

    fn rules() -> RoundRules {
        RoundRules {
            aggregation: AggregationSpec::default(),
            tolerance: 0.05,
            privacy: None,
        }
    }

    fn aggregated(outcome: RoundOutcome) -> (Params, Evaluation, Vec<Verdict>) {
        match outcome {
            RoundOutcome::Aggregated(g, e, v) => (g, e, v),
            other => panic!("not aggregated: {other:?}"),
        }
    }

    #[test]
    fn replicas_that_disagree_ask_a_third_and_the_majority_stands() {
        let (data, arch, global) = iris();
        let no_noise = &mut || 0.0;
        let honest = |s| blob(update(&arch, 10 + u64::from(s)), s);
        // Shard 1 done twice, alike: both stand, one is combined.
        let round = vec![honest(0), honest(1), honest(2), honest(1)];
        let (_, _, verdicts) =
            aggregated(aggregate_round(&arch, &global, round, &rules(), &data, no_noise).unwrap());
        assert!(verdicts.iter().all(Verdict::is_verified), "{verdicts:?}");
        // A liar's result for shard 2 differs from the honest one: a
        // third opinion is asked, then the liar alone is disputed.
        let lie = blob(update(&arch, 99), 2);
        let round = vec![honest(0), honest(1), honest(2), lie.clone()];
        let outcome = aggregate_round(&arch, &global, round, &rules(), &data, no_noise).unwrap();
        assert!(
            matches!(&outcome, RoundOutcome::NeedsThird(b) if b == &[2]),
            "{outcome:?}"
        );
        let round = vec![
            honest(0),
            honest(1),
            from_account(honest(2), "alice"),
            lie,
            from_account(honest(2), "bob"),
        ];
        let (_, _, verdicts) =
            aggregated(aggregate_round(&arch, &global, round, &rules(), &data, no_noise).unwrap());
        assert!(
            matches!(&verdicts[3], Verdict::Refuted(r) if r.contains("shard 2")),
            "{verdicts:?}"
        );
        assert!(
            verdicts
                .iter()
                .enumerate()
                .all(|(i, v)| i == 3 || v.is_verified()),
            "{verdicts:?}"
        );
    }

    #[test]
    fn two_new_accounts_agreeing_cannot_refute_a_third() {
        let (data, arch, global) = iris();
        let no_noise = &mut || 0.0;
        let honest = |s| blob(update(&arch, 10 + u64::from(s)), s);
        let framed = from_account(honest(2), "honest");
        // Two sybils post the same wrong result for shard 2.
        let lie = || blob(update(&arch, 99), 2);
        for sybils in [
            [lie(), lie()],
            // One of them established, the other new: still one account.
            [from_account(lie(), "veteran"), lie()],
            // Both "established", but the same account.
            [
                from_account(lie(), "veteran"),
                from_account(lie(), "veteran"),
            ],
        ] {
            let [a, b] = sybils;
            let round = vec![honest(0), honest(1), framed.clone(), a, b];
            let (_, _, verdicts) = aggregated(
                aggregate_round(&arch, &global, round, &rules(), &data, no_noise).unwrap(),
            );
            // The honest third is unpaid for this shard, but not refuted:
            // nothing goes on its record.
            assert!(
                matches!(verdicts[2], Verdict::Unresolved(_)),
                "{verdicts:?}"
            );
            assert!(verdicts[..2].iter().all(Verdict::is_verified));
        }
    }

    #[test]
    fn under_privacy_every_update_is_combined_clipped_whatever_its_verdict() {
        let (data, arch, global) = iris();
        let decode = |b: &[u8]| Params::from_compressed_within(b, 1 << 24).unwrap().0;
        let mut bytes: Vec<Vec<u8>> = (0..4).map(|s| update(&arch, 20 + s)).collect();
        // A fifth, sign-flipped and scaled: disputed by screening.
        let mut flipped = decode(&bytes[0]);
        for t in &mut flipped.tensors {
            t.values.iter_mut().for_each(|v| *v *= -100.0);
        }
        bytes.push(flipped.to_compressed(None));
        let round: Vec<RoundBlob> = bytes
            .iter()
            .enumerate()
            .map(|(s, b)| blob(b.clone(), s as u32))
            .collect();
        let clip_norm = 0.5;
        let private = RoundRules {
            privacy: Some(RoundPrivacy {
                clip_norm,
                noise_multiplier: 1.0,
                clients: 5.0,
            }),
            ..rules()
        };
        let (new_global, _, verdicts) = aggregated(
            aggregate_round(&arch, &global, round, &private, &data, &mut || 0.0).unwrap(),
        );
        assert!(matches!(verdicts[4], Verdict::Disputed(_)), "{verdicts:?}");
        let every: Vec<Params> = bytes.iter().map(|b| decode(b)).collect();
        let refs: Vec<&Params> = every.iter().collect();
        let want = noised_mean(&refs, &global, clip_norm, 1.0, 5.0, &mut || 0.0).unwrap();
        assert_eq!(
            new_global.to_safetensors(None),
            global.plus(&want).to_safetensors(None),
            "the disputed update is in the sum, clipped like the others"
        );
    }

    #[test]
    fn a_round_needs_exactly_one_update_per_shard() {
        assert!(one_update_per_shard(&[0, 1], 2).is_ok());
        assert!(one_update_per_shard(&[0], 2).is_err());
        assert!(one_update_per_shard(&[0, 0], 2).is_err());
        assert!(one_update_per_shard(&[1, 2], 2).is_err());
        assert!(distinct_slots(&[0, 2], 3).is_ok());
        assert!(distinct_slots(&[], 3).is_err());
        assert!(distinct_slots(&[2, 0], 3).is_err());
        assert!(distinct_slots(&[0, 3], 3).is_err());
    }
}

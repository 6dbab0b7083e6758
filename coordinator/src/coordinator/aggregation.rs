//! Aggregating a complete round: claimed in the database by exactly one
//! instance, checked to hold exactly one accepted update per shard,
//! computed deterministically (so a re-run after a crash gives the same
//! weights), and recorded with the job's move to its next round in one
//! guarded transaction.

use std::collections::HashMap;
use std::sync::Arc;

use oblivion_ml::ComputeDevice;
use oblivion_ml::data::{Dataset, decode_shard};
use oblivion_ml::dp::{SecureGaussian, noised_mean};
use oblivion_ml::model::Architecture;
use oblivion_ml::params::Params;
use oblivion_ml::replicas::{ShardOutcome, judge};
use oblivion_ml::screening::{Candidate, Verdict, screen};
use oblivion_ml::train::{Evaluation, evaluate};
use oblivion_protocol::aggregation::AggregationSpec;
use oblivion_protocol::api::{JobStatus, RoundMetrics};

use super::{Coordinator, blocking, lock, ml_internal};
use crate::error::AppError;
use crate::store::{JobRow, RoundRow, UpdateRow, UpdateVerdict, VerdictKind, now};

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
) -> Result<RoundOutcome, AppError> {
    let limit = arch.num_params().saturating_mul(4) + 1024 * 1024;
    let mut decoded = Vec::with_capacity(updates.len());
    for u in &updates {
        let (params, _) = Params::from_compressed_within(&u.bytes, limit).map_err(ml_internal)?;
        decoded.push(params);
    }
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
        let results: Vec<&Params> = members.iter().map(|&i| &decoded[i]).collect();
        match judge(&results, rules.tolerance) {
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
        let screened = screen(&rules.aggregation, &candidates).map_err(ml_internal)?;
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
                )
                .map_err(ml_internal)?
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
    let eval = evaluate(arch, &new_global, validation, ComputeDevice::Cpu).map_err(ml_internal)?;
    let verdicts = verdicts
        .into_iter()
        .map(|v| v.unwrap_or_else(|| Verdict::NoWork("not judged".into())))
        .collect();
    Ok(RoundOutcome::Aggregated(new_global, eval, verdicts))
}

/// Checks that `updates` (sorted by slot) hold exactly one update for
/// each of `shards` slots.
pub fn one_update_per_shard(updates: &[UpdateRow], shards: usize) -> Result<(), String> {
    if updates.len() != shards
        || updates
            .iter()
            .enumerate()
            .any(|(i, u)| u.shard as usize != i)
    {
        let got: Vec<u32> = updates.iter().map(|u| u.shard).collect();
        return Err(format!(
            "the round has updates for shards {got:?}, not exactly one for each of {shards}"
        ));
    }
    Ok(())
}

/// Checks that a round closed on its quorum has some updates, at most one
/// for each of its `slots` slots, in slot order.
pub fn distinct_slots(updates: &[UpdateRow], slots: usize) -> Result<(), String> {
    let ordered = updates.windows(2).all(|w| w[0].shard < w[1].shard);
    if updates.is_empty() || !ordered || updates.iter().any(|u| u.shard as usize >= slots) {
        let got: Vec<u32> = updates.iter().map(|u| u.shard).collect();
        return Err(format!(
            "the round closed on its quorum with updates for slots {got:?}, not distinct \
             slots of {slots}"
        ));
    }
    Ok(())
}

/// First wait before a round whose aggregation met a transient fault is
/// tried again; each further wait doubles.
pub const RETRY_FIRST: std::time::Duration = std::time::Duration::from_millis(500);
/// Longest wait between two tries.
pub const RETRY_MAX: std::time::Duration = std::time::Duration::from_secs(30);

impl Coordinator {
    /// Aggregates `round` of `job` if this instance wins the claim, then
    /// starts the next round or finishes the job.
    /// A transient fault (storage or the database away, busy or slow)
    /// delays the round: it is tried again, waiting longer each time up to
    /// [`RETRY_MAX`], for as long as it takes. Only a deterministic failure
    /// fails the job.
    pub(super) async fn aggregate(self: Arc<Self>, job: u64, round: u32) {
        if !lock(&self.aggregating).insert(job) {
            return;
        }
        let mut wait = RETRY_FIRST;
        let failure = loop {
            let Err(e) = self.try_aggregate(job, round).await else {
                break None;
            };
            if let Err(db) = self.db.release_aggregation(job, &self.instance).await {
                tracing::error!(job, "releasing the aggregation claim: {db}");
            }
            if !e.transient {
                break Some(e);
            }
            tracing::warn!(
                job,
                round,
                "aggregation delayed by a transient fault; again in {wait:?}: {}",
                e.message
            );
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(RETRY_MAX);
        };
        lock(&self.aggregating).remove(&job);
        if let Some(e) = failure {
            self.fail(job, &format!("aggregation failed: {}", e.message))
                .await;
        }
        self.request_pump();
    }

    async fn try_aggregate(&self, job: u64, round: u32) -> Result<(), AppError> {
        let stale_before = now() - self.config.aggregation_timeout.as_secs_f64();
        let claimed = self
            .db
            .claim_aggregation(job, round, &self.instance, stale_before)
            .await
            .map_err(AppError::db)?;
        if !claimed {
            // Another instance has it, or the job moved on (cancelled,
            // or this round was already recorded).
            return Ok(());
        }
        let started = std::time::Instant::now();
        let row = self
            .db
            .job(job)
            .await
            .map_err(AppError::db)?
            .ok_or_else(|| AppError::internal("job vanished"))?;
        let shards = self.db.job_shards(job).await.map_err(AppError::db)?;
        let updates = self
            .db
            .round_updates(job, round)
            .await
            .map_err(AppError::db)?;
        let slots = shards.len() + row.round_replicas.len();
        // A round closed on its quorum is combined from the updates it has.
        let closed_early = row.spec.quorum.is_some()
            && updates.len() < slots
            && updates.len() as u32 >= self.db.round_slots(job).await.map_err(AppError::db)?;
        let checked = if closed_early {
            distinct_slots(&updates, slots)
        } else {
            one_update_per_shard(&updates, slots)
        };
        if let Err(e) = checked {
            tracing::error!(job, round, "not aggregating: {e}");
            self.db
                .release_aggregation(job, &self.instance)
                .await
                .map_err(AppError::db)?;
            return Ok(());
        }
        let arch = Arc::new(Self::arch_of(&row)?);
        let global = Arc::new(self.weights(&row.global_sha).await?);
        // In the order they were accepted: of a copy and its original, the
        // later is the copy.
        let mut order: Vec<&UpdateRow> = updates.iter().collect();
        order.sort_by(|a, b| {
            a.accepted_at
                .total_cmp(&b.accepted_at)
                .then(a.shard.cmp(&b.shard))
        });
        // Who may refute: only asked when a shard has replicas.
        let refuters = if row.round_replicas.is_empty() {
            HashMap::new()
        } else {
            let workers: Vec<u64> = order.iter().map(|u| u.worker_id).collect();
            self.db
                .refuters(
                    &workers,
                    self.config.reputation.established_after,
                    now() - self.config.reputation.established_age.as_secs_f64(),
                )
                .await
                .map_err(AppError::db)?
        };
        let mut blobs = Vec::with_capacity(updates.len());
        for u in &order {
            let bytes = self
                .artifacts
                .get(&u.update_sha)
                .await
                .map_err(AppError::io)?
                .ok_or_else(|| AppError::internal(format!("update {} is missing", u.update_sha)))?;
            let base = (u.shard as usize)
                .checked_sub(shards.len())
                .and_then(|k| row.round_replicas.get(k).copied())
                .unwrap_or(u.shard);
            blobs.push(RoundBlob {
                bytes,
                samples: u.samples as f64,
                base,
                refuter: refuters.get(&u.worker_id).cloned(),
            });
        }
        let validation = self.validation_set(&row).await?;
        let privacy = match (
            &row.spec.privacy,
            oblivion_protocol::job_privacy::noise_multiplier(&row.spec),
        ) {
            // Federated updates arrive clipped and noised by their
            // contributors (see `crate::federated`).
            _ if row.spec.dataset.is_federated() => None,
            (Some(p), Ok(Some(noise_multiplier))) => Some(RoundPrivacy {
                clip_norm: p.clip_norm,
                noise_multiplier,
                clients: shards.len() as f64,
            }),
            (Some(_), _) => {
                return Err(AppError::internal(
                    "the job's privacy settings do not resolve",
                ));
            }
            (None, _) => None,
        };
        let rules = RoundRules {
            aggregation: row.spec.aggregation.clone(),
            tolerance: row.spec.replication().tolerance,
            privacy,
        };
        let outcome = {
            let (arch, global) = (arch.clone(), global.clone());
            blocking(move || {
                let mut secure = SecureGaussian::new();
                let outcome =
                    aggregate_round(&arch, &global, blobs, &rules, &validation, &mut || {
                        secure.draw()
                    });
                // Noise that was not random is no noise: nothing is kept.
                secure.finish().map_err(ml_internal)?;
                outcome
            })
            .await?
        };
        let (new_global, eval, judged) = match outcome {
            RoundOutcome::Aggregated(g, e, v) => (g, e, v),
            RoundOutcome::NeedsThird(bases) => {
                let mut replicas = row.round_replicas.clone();
                replicas.extend(bases.iter().copied());
                let added = self
                    .db
                    .add_replica(job, round, &self.instance, &replicas)
                    .await
                    .map_err(AppError::db)?;
                if added {
                    tracing::info!(
                        job,
                        round,
                        ?bases,
                        "replicas disagree: a third opinion asked"
                    );
                    self.hub().set_replicas(job, round, &replicas);
                    self.jobs_changed();
                }
                return Ok(());
            }
        };
        let verdicts: Vec<UpdateVerdict> = order
            .iter()
            .zip(judged)
            .map(|(u, v)| {
                let (kind, reason) = match v {
                    Verdict::Verified => (VerdictKind::Verified, None),
                    Verdict::NoWork(r) => (VerdictKind::NoWork, Some(r)),
                    Verdict::Disputed(r) => (VerdictKind::Disputed, Some(r)),
                    Verdict::Refuted(r) => (VerdictKind::Refuted, Some(r)),
                    Verdict::Unresolved(r) => (VerdictKind::Unresolved, Some(r)),
                };
                UpdateVerdict {
                    shard: u.shard,
                    worker_id: u.worker_id,
                    samples: u.samples,
                    kind,
                    reason,
                }
            })
            .collect();
        let encoded = {
            let new_global = new_global.clone();
            blocking(move || Ok(new_global.to_safetensors(None))).await?
        };
        let global_sha = self.artifacts.put(encoded).await.map_err(AppError::io)?;
        let metrics = round_metrics(
            &row,
            &updates,
            &verdicts,
            &eval,
            started.elapsed().as_secs_f64(),
        );
        let reached = row.spec.target_accuracy.is_some_and(|t| eval.accuracy >= t);
        let finished = reached || round >= row.spec.rounds;
        let next_replicas = if finished {
            Vec::new()
        } else {
            crate::replication::pick_secretly(shards.len(), row.spec.replication().fraction)
        };
        let (next_round, status) = if finished {
            (round, JobStatus::Completed)
        } else {
            (round + 1, JobStatus::Running)
        };
        let recorded = self
            .db
            .finish_round(
                job,
                &self.instance,
                &RoundRow {
                    metrics,
                    global_sha: global_sha.clone(),
                    verdicts: verdicts.clone(),
                    next_replicas: next_replicas.clone(),
                },
                next_round,
                status,
                &self.config.reputation,
            )
            .await
            .map_err(AppError::db)?;
        let Some(quarantined) = recorded else {
            // Cancelled meanwhile (or the claim was taken over): nothing
            // of this aggregation is kept.
            tracing::info!(job, round, "aggregation discarded: the job moved on");
            return Ok(());
        };
        {
            let mut hub = self.hub();
            for v in verdicts
                .iter()
                .filter(|v| v.kind != VerdictKind::Unresolved)
            {
                hub.record_result(v.worker_id, v.kind == VerdictKind::Verified, v.samples);
            }
        }
        self.apply_quarantines(&quarantined).await;
        tracing::info!(
            job,
            round,
            loss = eval.loss,
            accuracy = eval.accuracy,
            "round aggregated"
        );
        self.jobs_changed();
        let mut hub = self.hub();
        if finished {
            hub.remove_job(job);
            lock(&self.validation).remove(&job);
        } else {
            hub.next_round(
                job,
                next_round,
                global_sha,
                Arc::new(new_global),
                &next_replicas,
            );
        }
        Ok(())
    }

    pub(super) async fn validation_set(&self, row: &JobRow) -> Result<Arc<Dataset>, AppError> {
        if let Some(v) = lock(&self.validation).get(&row.id) {
            return Ok(v.clone());
        }
        let bytes = self
            .artifacts
            .get(&row.validation_sha)
            .await
            .map_err(AppError::io)?
            .ok_or_else(|| AppError::internal("validation data is missing from storage"))?;
        let data = Arc::new(blocking(move || decode_shard(&bytes).map_err(ml_internal)).await?);
        lock(&self.validation).insert(row.id, data.clone());
        Ok(data)
    }
}

fn round_metrics(
    row: &JobRow,
    updates: &[UpdateRow],
    verdicts: &[UpdateVerdict],
    eval: &Evaluation,
    aggregate_seconds: f64,
) -> RoundMetrics {
    let count = |kind| verdicts.iter().filter(|v| v.kind == kind).count() as u32;
    let verified: Vec<f64> = updates
        .iter()
        .filter(|u| {
            verdicts
                .iter()
                .any(|v| v.shard == u.shard && v.kind == VerdictKind::Verified)
        })
        .map(|u| u.train_loss)
        .collect();
    RoundMetrics {
        round: row.round,
        loss: eval.loss,
        accuracy: eval.accuracy,
        // As reported by the workers whose updates were combined.
        train_loss: verified.iter().sum::<f64>() / verified.len().max(1) as f64,
        updates: count(VerdictKind::Verified),
        seconds: now() - row.round_started_at,
        train_seconds: busiest_worker_seconds(updates),
        aggregate_seconds,
        disputed: count(VerdictKind::Disputed),
        no_work: count(VerdictKind::NoWork) + count(VerdictKind::Unresolved),
        epsilon: oblivion_protocol::job_privacy::epsilon_after(&row.spec, row.round),
    }
}

/// The longest any one worker spent training in a round, by its reports.
fn busiest_worker_seconds(updates: &[UpdateRow]) -> f64 {
    let mut per_worker: HashMap<u64, u64> = HashMap::new();
    for u in updates {
        *per_worker.entry(u.worker_id).or_default() += u.train_millis;
    }
    per_worker.values().copied().max().unwrap_or(0) as f64 / 1000.0
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
        let data = parse_csv(include_bytes!("../../../datasets/tabular/iris.csv")).unwrap();
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
        let row = |shard| UpdateRow {
            shard,
            worker_id: 1,
            lease_id: 1,
            update_sha: String::new(),
            samples: 1,
            train_loss: 0.0,
            norm: 0.0,
            train_millis: 0,
            accepted_at: 0.0,
        };
        assert!(one_update_per_shard(&[row(0), row(1)], 2).is_ok());
        assert!(one_update_per_shard(&[row(0)], 2).is_err());
        assert!(one_update_per_shard(&[row(0), row(0)], 2).is_err());
        assert!(one_update_per_shard(&[row(1), row(2)], 2).is_err());
    }
}

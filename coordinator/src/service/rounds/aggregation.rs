//! Aggregating a complete round: claimed in the database by exactly one
//! instance, checked to hold exactly one accepted update per shard,
//! computed deterministically (so a re-run after a crash gives the same
//! weights), and recorded with the job's move to its next round in one
//! guarded transaction.

use oblivion_protocol::{JobId, WorkerId};
use std::collections::HashMap;
use std::sync::Arc;

use oblivion_ml::data::{Dataset, decode_shard};
use oblivion_ml::dp::SecureGaussian;
use oblivion_ml::screening::Verdict;
use oblivion_ml::train::Evaluation;
use oblivion_protocol::api::{JobStatus, RoundMetrics};

use super::Rounds;
use crate::assembly::{Assembly, Score, assemble_outputs};
use crate::blocking::blocking;
use crate::error::AppError;
use crate::hub::Weights;
use crate::kind::Product;
use crate::round::{
    RoundBlob, RoundOutcome, RoundRules, aggregate_round, distinct_slots, one_update_per_shard,
    round_privacy,
};
use crate::service::shared::{arch_of, judge, lock, ml_internal, quarantine_rule, weights};
use oblivion_ml::inference::Outputs;
use oblivion_ml::params::Params;
use oblivion_store::{
    InferenceResult, JobRow, ModelEntry, RoundRow, UpdateRow, UpdateVerdict, now,
};

/// What a round's results came to, by its kind's product.
enum Combined {
    /// Some shards' results disagree: a third opinion each.
    NeedsThird(Vec<u32>),
    /// New weights, their evaluation, and the verdicts.
    Weights(Params, Evaluation, Vec<Verdict>),
    /// The outputs assembled, as stored (safetensors), their score, and
    /// the verdicts.
    Outputs(Outputs, Vec<u8>, Score, Vec<Verdict>),
}

/// First wait before a round whose aggregation met a transient fault is
/// tried again; each further wait doubles.
pub const RETRY_FIRST: std::time::Duration = std::time::Duration::from_millis(500);
/// Longest wait between two tries.
pub const RETRY_MAX: std::time::Duration = std::time::Duration::from_secs(30);

impl Rounds {
    /// Aggregates `round` of `job` if this instance wins the claim, then
    /// starts the next round or finishes the job.
    /// A transient fault (storage or the database away, busy or slow)
    /// delays the round: it is tried again, waiting longer each time up to
    /// [`RETRY_MAX`], for as long as it takes. Only a deterministic failure
    /// fails the job.
    pub(super) async fn aggregate(self: Arc<Self>, job: JobId, round: u32) {
        if !lock(&self.aggregating).insert(job) {
            return;
        }
        let mut wait = RETRY_FIRST;
        let failure = loop {
            let Err(e) = self.try_aggregate(job, round).await else {
                break None;
            };
            if let Err(db) = self.db.release_aggregation(job, &self.instance).await {
                tracing::error!(%job, "releasing the aggregation claim: {db}");
            }
            if !e.transient {
                break Some(e);
            }
            tracing::warn!(
                %job,
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
        self.dispatch.request_pump();
    }

    async fn try_aggregate(&self, job: JobId, round: u32) -> Result<(), AppError> {
        let stale_before = now() - self.config.leases.aggregation_timeout.as_secs_f64();
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
        let quorum = row.spec.training().and_then(|t| t.quorum.as_ref());
        let closed_early = quorum.is_some()
            && updates.len() < slots
            && updates.len() as u32 >= self.db.round_slots(job).await.map_err(AppError::db)?;
        let got: Vec<u32> = updates.iter().map(|u| u.shard).collect();
        let checked = if closed_early {
            distinct_slots(&got, slots)
        } else {
            one_update_per_shard(&got, slots)
        };
        if let Err(e) = checked {
            tracing::error!(%job, round, "not aggregating: {e}");
            self.db
                .release_aggregation(job, &self.instance)
                .await
                .map_err(AppError::db)?;
            return Ok(());
        }
        let arch = Arc::new(arch_of(&row)?);
        let global = Arc::new(weights(&self.artifacts, row.global_sha).await?);
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
            let workers: Vec<WorkerId> = order.iter().map(|u| u.worker_id).collect();
            self.db
                .refuters(
                    &workers,
                    self.config.reputation().established_after,
                    now() - self.config.reputation().established_age.as_secs_f64(),
                )
                .await
                .map_err(AppError::db)?
        };
        let mut blobs = Vec::with_capacity(updates.len());
        for u in &order {
            let bytes = self
                .artifacts
                .get(u.update_sha)
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
        let kind =
            crate::kind::kind_of(&row.spec).map_err(|e| AppError::internal(e.to_string()))?;
        let tolerance = row.spec.replication().tolerance;
        let combined = match (kind.product(), row.spec.training()) {
            (Product::Weights, Some(training)) => {
                let privacy = round_privacy(kind.as_ref(), &row.spec, shards.len())
                    .map_err(AppError::internal)?;
                let rules = RoundRules {
                    aggregation: training.aggregation.clone(),
                    tolerance,
                    privacy,
                };
                let (arch, global) = (arch.clone(), global.clone());
                blocking(move || {
                    let mut secure = SecureGaussian::new();
                    let outcome =
                        aggregate_round(&arch, &global, blobs, &rules, &validation, &mut || {
                            secure.draw()
                        });
                    // Noise that was not random is no noise: nothing is kept.
                    secure.finish().map_err(ml_internal)?;
                    Ok(match outcome.map_err(ml_internal)? {
                        RoundOutcome::NeedsThird(bases) => Combined::NeedsThird(bases),
                        RoundOutcome::Aggregated(g, e, v) => Combined::Weights(g, e, v),
                    })
                })
                .await?
            }
            _ => {
                let shard_rows: Vec<u64> = shards.iter().map(|s| s.1).collect();
                let classes = arch.classes;
                blocking(move || {
                    let assembled =
                        assemble_outputs(&blobs, &shard_rows, tolerance, &validation, classes)
                            .map_err(ml_internal)?;
                    Ok(match assembled {
                        Assembly::NeedsThird(bases) => Combined::NeedsThird(bases),
                        Assembly::Assembled(outputs, verdicts, score) => {
                            let stored = outputs.to_safetensors(None);
                            Combined::Outputs(outputs, stored, score, verdicts)
                        }
                    })
                })
                .await?
            }
        };
        let (new_global, eval, judged, outputs) = match combined {
            Combined::Weights(g, e, v) => (Some(g), e, v, None),
            Combined::Outputs(outputs, stored, score, verdicts) => {
                let eval = Evaluation {
                    loss: score.loss,
                    accuracy: score.accuracy,
                    samples: outputs.rows(),
                };
                let outputs_sha = self.artifacts.put(stored).await.map_err(AppError::io)?;
                let result = InferenceResult {
                    outputs_sha,
                    rows: outputs.rows() as u64,
                    classes: outputs.classes as u64,
                    accuracy: Some(score.accuracy),
                    confusion: Some(score.confusion),
                };
                (None, eval, verdicts, Some(result))
            }
            Combined::NeedsThird(bases) => {
                let mut replicas = row.round_replicas.clone();
                replicas.extend(bases.iter().copied());
                let added = self
                    .db
                    .add_replica(job, round, &self.instance, &replicas)
                    .await
                    .map_err(AppError::db)?;
                if added {
                    tracing::info!(
                        %job,
                        round,
                        ?bases,
                        "replicas disagree: a third opinion asked"
                    );
                    self.dispatch.hub().set_replicas(job, round, &replicas);
                    self.jobs_version.bump();
                }
                return Ok(());
            }
        };
        let verdicts: Vec<UpdateVerdict> = order
            .iter()
            .zip(judged)
            .map(|(u, verdict)| UpdateVerdict {
                shard: u.shard,
                worker_id: u.worker_id,
                samples: u.samples,
                verdict,
            })
            .collect();
        // An inference round leaves the weights as they were.
        let global_sha = match &new_global {
            Some(new_global) => {
                let new_global = new_global.clone();
                let encoded = blocking(move || Ok(new_global.to_safetensors(None))).await?;
                self.artifacts.put(encoded).await.map_err(AppError::io)?
            }
            None => row.global_sha,
        };
        let metrics = round_metrics(
            &row,
            &updates,
            &verdicts,
            &eval,
            started.elapsed().as_secs_f64(),
        );
        let reached = row
            .spec
            .training()
            .and_then(|t| t.target_accuracy)
            .is_some_and(|t| eval.accuracy >= t);
        let finished = reached || round >= row.spec.rounds();
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
        // A training job's last weights enter the registry with it.
        let model = match (row.spec.training(), finished && new_global.is_some()) {
            (Some(training), true) => Some(ModelEntry {
                name: training.name.clone(),
                owner: row.creator.clone(),
                visibility: training.visibility,
                model: row.data.model.clone(),
                input_shape: row.data.input_shape.clone(),
                classes: row.data.classes,
                normalization: row.data.normalization.clone(),
                weights_sha: global_sha,
                dataset: serde_json::to_string(&training.dataset)
                    .map_err(|e| AppError::internal(format!("dataset: {e}")))?,
                accuracy: Some(eval.accuracy),
                loss: Some(eval.loss),
                epsilon: metrics.epsilon,
                rounds: round,
                created_at: now() as i64,
            }),
            _ => None,
        };
        let rule = quarantine_rule(&self.config);
        let recorded = self
            .db
            .finish_round(
                job,
                &self.instance,
                &RoundRow {
                    metrics,
                    global_sha,
                    verdicts: verdicts.clone(),
                    next_replicas: next_replicas.clone(),
                    outputs,
                    model,
                },
                next_round,
                status,
                &judge(&self.config, &rule),
            )
            .await
            .map_err(AppError::db)?;
        let Some(quarantined) = recorded else {
            // Cancelled meanwhile (or the claim was taken over): nothing
            // of this aggregation is kept.
            tracing::info!(%job, round, "aggregation discarded: the job moved on");
            return Ok(());
        };
        {
            let mut hub = self.dispatch.hub();
            for v in verdicts
                .iter()
                .filter(|v| !matches!(v.verdict, Verdict::Unresolved(_)))
            {
                hub.record_result(v.worker_id, v.verdict.is_verified(), v.samples);
            }
        }
        self.dispatch.apply_quarantines(&quarantined).await;
        tracing::info!(
            %job,
            round,
            loss = eval.loss,
            accuracy = eval.accuracy,
            "round aggregated"
        );
        self.jobs_version.bump();
        let mut hub = self.dispatch.hub();
        match new_global {
            Some(new_global) if !finished => hub.next_round(
                job,
                next_round,
                Weights {
                    blob: global_sha,
                    params: Arc::new(new_global),
                },
                &next_replicas,
            ),
            _ => {
                hub.remove_job(job);
                lock(&self.validation).remove(&job);
            }
        }
        Ok(())
    }

    pub(super) async fn validation_set(&self, row: &JobRow) -> Result<Arc<Dataset>, AppError> {
        if let Some(v) = lock(&self.validation).get(&row.id) {
            return Ok(v.clone());
        }
        let bytes = self
            .artifacts
            .get(row.data.validation_sha)
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
    let count = |judged: fn(&Verdict) -> bool| {
        verdicts.iter().filter(|v| judged(&v.verdict)).count() as u32
    };
    let verified: Vec<f64> = updates
        .iter()
        .filter(|u| {
            verdicts
                .iter()
                .any(|v| v.shard == u.shard && v.verdict.is_verified())
        })
        .map(|u| u.train_loss)
        .collect();
    RoundMetrics {
        round: row.round,
        loss: eval.loss,
        accuracy: eval.accuracy,
        // As reported by the workers whose updates were combined.
        train_loss: verified.iter().sum::<f64>() / verified.len().max(1) as f64,
        updates: count(Verdict::is_verified),
        seconds: now() - row.round_started_at,
        train_seconds: busiest_worker_seconds(updates),
        aggregate_seconds,
        disputed: count(|v| matches!(v, Verdict::Disputed(_))),
        no_work: count(|v| matches!(v, Verdict::NoWork(_) | Verdict::Unresolved(_))),
        epsilon: row
            .spec
            .training()
            .and_then(|t| oblivion_protocol::job_privacy::epsilon_after(t, row.round)),
    }
}

/// The longest any one worker spent training in a round, by its reports.
fn busiest_worker_seconds(updates: &[UpdateRow]) -> f64 {
    let mut per_worker: HashMap<WorkerId, u64> = HashMap::new();
    for u in updates {
        *per_worker.entry(u.worker_id).or_default() += u.train_millis;
    }
    per_worker.values().copied().max().unwrap_or(0) as f64 / 1000.0
}

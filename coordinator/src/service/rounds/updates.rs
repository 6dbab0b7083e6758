//! A worker's update: who may post it, what it must look like, and how it
//! is recorded (durably stored, then in a guarded transaction with the
//! other updates of its batch: `oblivion_store::UpdateCommitter`).

use oblivion_protocol::LeaseId;
use std::sync::Arc;

use oblivion_ml::data::decode_shard;
use oblivion_ml::model::Architecture;
use oblivion_ml::params::Params;
use oblivion_ml::weights::check_params;
use oblivion_protocol::inference::VerificationSpec;
use oblivion_protocol::wire::{UpdateReceipt, update_metadata};

use super::Rounds;
use crate::blocking::blocking;
use crate::error::{AppError, Failure};
use crate::hub::{Lease, Refusal, UpdateContext};
use crate::kind::ResultCheck;
use crate::service::shared::{lock, token_hash};
use crate::verification::check_outputs;
use oblivion_store::{Accepting, Stored, UpdateRefusal, UpdateRow, now};

/// Largest training loss an update may report (cross-entropy of a sane
/// model is far below; the bound keeps nonsense out of the database).
const MAX_TRAIN_LOSS: f64 = 1e6;
/// Longest training time an update may report, in milliseconds (a week).
const MAX_TRAIN_MILLIS: u64 = 7 * 24 * 3600 * 1000;
/// Room for the safetensors header beyond the weights themselves.
const HEADER_ALLOWANCE: usize = 1024 * 1024;

/// The right to upload an update for one lease; one at a time per lease.
pub struct UploadSlot<'a> {
    rounds: &'a Rounds,
    lease: LeaseId,
}

impl Drop for UploadSlot<'_> {
    fn drop(&mut self) {
        lock(&self.rounds.uploads).remove(&self.lease);
    }
}

impl Rounds {
    /// Reserves the upload of `lease`'s update, refusing a second one while
    /// the first is in flight.
    pub fn upload_slot(&self, lease: LeaseId) -> Result<UploadSlot<'_>, AppError> {
        if !lock(&self.uploads).insert(lease) {
            return Err(AppError::conflict(format!(
                "an update for lease {lease} is already being uploaded"
            )));
        }
        Ok(UploadSlot {
            rounds: self,
            lease,
        })
    }

    /// What the update for `lease` must match, if the worker with `token`
    /// holds it: from the hub for leases granted here, else from the
    /// database (granted by another instance, or before a reconnection).
    /// 401 for an unknown token, 409 for a lease it does not hold: asked
    /// before an upload takes the lease's slot or a byte of it is read.
    pub async fn update_context(
        self: &Arc<Self>,
        token: &str,
        lease: LeaseId,
    ) -> Result<UpdateContext, AppError> {
        let refusal = match self.dispatch.hub().update_context(token, lease) {
            Ok(ctx) => return Ok(ctx),
            Err(r) => r,
        };
        let held = self
            .db
            .held_lease(lease, &token_hash(token))
            .await
            .map_err(AppError::db)?;
        if let Some((job, round, shard, worker)) = held {
            let known = |hub: &crate::hub::Hub| {
                let j = hub.jobs.get(&job).filter(|j| j.round == round)?;
                let s = j.shards.get(shard as usize)?;
                Some((
                    j.arch.clone(),
                    j.global.params.clone(),
                    s.samples,
                    j.kind.result_check(s.data)?,
                ))
            };
            let mut found = known(&self.dispatch.hub());
            if found.is_none() {
                // Granted by another instance for a round this one has not
                // caught up with yet.
                self.refresh_job(job).await?;
                found = known(&self.dispatch.hub());
            }
            if let Some((arch, global, samples, check)) = found {
                return Ok(UpdateContext {
                    lease: Lease {
                        id: lease,
                        job,
                        round,
                        shard,
                        worker,
                        expires_at: 0.0,
                        overdue_at: 0.0,
                        progress: 0.0,
                        progressed_at: 0.0,
                        granted_at: 0.0,
                    },
                    arch,
                    global,
                    samples,
                    check,
                });
            }
        }
        Err(match refusal {
            Refusal::UnknownWorker if held.is_none() => AppError::new(
                Failure::NotSignedIn,
                "unknown worker token: connect over /api/workers/connect first",
            ),
            _ => AppError::conflict(format!(
                "lease {lease} is not held by this worker (it expired, was re-issued or never existed)"
            )),
        })
    }

    /// Checks and records a worker's update for the lease `ctx` (from
    /// [`Rounds::update_context`]) says it holds.
    pub async fn submit_update(
        self: &Arc<Self>,
        ctx: UpdateContext,
        body: Vec<u8>,
    ) -> Result<UpdateReceipt, AppError> {
        let lease = ctx.lease.id;
        // Checked, hashed and (to a directory) written on one blocking
        // thread; the body moves there and, for object storage, back: no
        // copy of up to max_update_bytes on this path.
        // Outputs are checked against their rows, fetched first.
        let rows = match &ctx.check {
            ResultCheck::Outputs { rows, .. } => Some(
                self.artifacts
                    .get(*rows)
                    .await
                    .map_err(AppError::io)?
                    .ok_or_else(|| AppError::internal(format!("the rows {rows} are missing")))?,
            ),
            ResultCheck::Update { .. } => None,
        };
        let (checked, blob) = {
            let (arch, global, check) = (ctx.arch.clone(), ctx.global.clone(), ctx.check.clone());
            let artifacts = self.artifacts.clone();
            blocking(move || {
                let checked = match (&check, rows) {
                    (ResultCheck::Outputs { verification, .. }, Some(rows)) => {
                        check_outputs_against(&arch, &global, &rows, &body, verification)
                    }
                    (
                        ResultCheck::Update {
                            fixed_bound,
                            figures,
                        },
                        _,
                    ) => {
                        let bound = arrival_bound(*fixed_bound, &global);
                        check_update(&arch, bound, &body, *figures)
                    }
                    (ResultCheck::Outputs { .. }, None) => {
                        Err("the slot's rows could not be read".to_string())
                    }
                };
                let blob = match &checked {
                    Ok(_) if artifacts.writes_here() => Blob::Written(artifacts.write_here(&body)),
                    _ => Blob::Unwritten(body),
                };
                Ok((checked, blob))
            })
            .await?
        };
        let checked = match checked {
            Ok(v) => v,
            Err(reason) => {
                // A malformed update is a disputed result of its worker.
                self.dispatch
                    .fault_lease(
                        lease,
                        ctx.lease.worker,
                        &format!("update rejected: {reason}"),
                    )
                    .await;
                return Err(AppError::unprocessable(format!(
                    "update rejected: {reason}"
                )));
            }
        };
        // Stored before the row that names it commits; it is made durable
        // with the rest of its batch.
        let blob = match blob {
            Blob::Written(stored) => stored,
            Blob::Unwritten(body) => self.artifacts.put_unsynced(body).await,
        }
        .map_err(AppError::io)?;
        // Recorded, and the hub told, on a task of its own: a client that
        // disconnects now cannot leave its update recorded and the hub
        // unaware of it.
        let this = self.clone();
        tokio::spawn(async move { this.record_update(ctx, checked, blob).await })
            .await
            .map_err(|e| AppError::internal(format!("recording an update failed: {e}")))?
    }

    /// Records a checked update whose blob is stored (with the next batch
    /// of updates), then completes its lease in the hub.
    async fn record_update(
        self: Arc<Self>,
        ctx: UpdateContext,
        checked: CheckedUpdate,
        blob: Stored,
    ) -> Result<UpdateReceipt, AppError> {
        let lease = ctx.lease.id;
        let l = &ctx.lease;
        let update = UpdateRow {
            shard: l.shard,
            worker_id: l.worker,
            lease_id: l.id,
            update_sha: blob.id,
            samples: ctx.samples,
            train_loss: checked.train_loss,
            norm: checked.norm,
            train_millis: checked.train_millis,
            accepted_at: now(),
        };
        let accepting = Accepting {
            job: l.job,
            round: l.round,
            update,
        };
        let round_complete = match self
            .committer
            .accept(accepting, blob)
            .await
            .map_err(AppError::db)?
        {
            Ok(complete) => complete,
            Err(refusal) => {
                let conflict = |message: String| Err(AppError::conflict(message));
                return match refusal {
                    UpdateRefusal::LeaseNotActive => conflict(format!(
                        "lease {lease} is no longer active (it expired, was re-issued, or its job ended)"
                    )),
                    UpdateRefusal::JobMovedOn => conflict(format!(
                        "job {} is no longer training round {}",
                        l.job, l.round
                    )),
                    UpdateRefusal::Duplicate => conflict(format!(
                        "shard {} of round {} already has an accepted update",
                        l.shard, l.round
                    )),
                    UpdateRefusal::Quarantined(reason) => {
                        let ended = self.dispatch.hub().reject(lease);
                        self.dispatch
                            .settle_ended(ended.into_iter().collect(), "worker quarantined")
                            .await;
                        Err(AppError::new(
                            Failure::Forbidden,
                            format!("this worker is quarantined: {reason}"),
                        ))
                    }
                };
            }
        };
        let superseded = {
            let now = self.dispatch.clock();
            let mut hub = self.dispatch.hub();
            match hub.complete(lease, now) {
                Some(done) => done.superseded,
                // The hub ended the lease meanwhile (expiry), but the
                // database took the update first: the shard is done.
                None => hub.shard_done(l),
            }
        };
        // The database revoked the other lease on the slot with the
        // update; its holder is told to stop.
        self.dispatch
            .settle_ended(
                superseded.into_iter().collect(),
                "another worker's update for the shard came first",
            )
            .await;
        if round_complete {
            tokio::spawn(self.clone().aggregate(l.job, l.round));
        }
        self.dispatch.request_pump();
        Ok(UpdateReceipt {
            accepted: true,
            credited_samples: ctx.samples,
        })
    }
}

/// An update's blob after its check: written by the checking thread (a
/// directory store), or still to upload (object storage, or a refused
/// update, which is never stored).
enum Blob {
    Written(std::io::Result<Stored>),
    Unwritten(Vec<u8>),
}

/// Without a fixed bound, an update is refused on arrival when its norm is
/// over this many times the norm of the weights it changes: training never
/// moves a model a hundred times its own size, and such junk need not be
/// stored. The finer bound comes at aggregation, relative to the round's
/// median update (see `AggregationSpec`).
pub const ARRIVAL_FACTOR: f64 = 100.0;

/// The bound an update's norm is checked against on arrival: the job's
/// fixed bound, else [`ARRIVAL_FACTOR`] × the norm of the round's weights.
pub fn arrival_bound(fixed: Option<f64>, global: &Params) -> f64 {
    fixed.unwrap_or_else(|| {
        let norm = global.l2_norm();
        // Weights of no size give no scale to judge by.
        if norm > 0.0 {
            ARRIVAL_FACTOR * norm
        } else {
            f64::INFINITY
        }
    })
}

/// Checks outputs for the rows `rows` (an encoded shard) with the job's
/// weights, recomputing a sample picked now (see
/// [`crate::verification::check_outputs`]). Outputs carry no figures: they
/// report loss 0, time 0 and norm 0.
fn check_outputs_against(
    arch: &Architecture,
    weights: &Params,
    rows: &[u8],
    body: &[u8],
    verification: &VerificationSpec,
) -> Result<CheckedUpdate, String> {
    let rows = decode_shard(rows).map_err(|e| format!("the slot's rows: {e}"))?;
    check_outputs(arch, weights, &rows, body, verification, &mut rand::rng())?;
    Ok(CheckedUpdate {
        norm: 0.0,
        train_loss: 0.0,
        train_millis: 0,
    })
}

/// What a valid update says about itself.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CheckedUpdate {
    /// Its L2 norm (measured).
    pub norm: f64,
    /// Training loss it reports.
    pub train_loss: f64,
    /// Training time it reports, milliseconds.
    pub train_millis: u64,
}

/// Validates an update (a change to the global weights): gzip that
/// decompresses to no more than the model's size, safetensors that decode,
/// the model's exact names and shapes, finite values, an L2 norm within the
/// bound, and metadata in range. Without `figures` (see
/// [`ResultCheck::Update`]) the
/// update carries none at all: it reports loss 0 and time 0.
pub fn check_update(
    arch: &Architecture,
    bound: f64,
    body: &[u8],
    figures: bool,
) -> Result<CheckedUpdate, String> {
    let limit = arch.num_params().saturating_mul(4) + HEADER_ALLOWANCE;
    let (delta, meta) = Params::from_compressed_within(body, limit).map_err(|e| e.to_string())?;
    check_params(arch, &delta).map_err(|e| format!("wrong shape: {e}"))?;
    if !delta.all_finite() {
        return Err("the update has non-finite values (NaN or infinity)".into());
    }
    let norm = delta.l2_norm();
    if norm > bound {
        return Err(format!(
            "update norm {norm:.3} exceeds the bound {bound:.3} for this round"
        ));
    }
    if !figures {
        return Ok(CheckedUpdate {
            norm,
            train_loss: 0.0,
            train_millis: 0,
        });
    }
    let train_loss = meta
        .get(update_metadata::TRAIN_LOSS)
        .and_then(|v| v.parse::<f64>().ok())
        .filter(|v| v.is_finite())
        .ok_or("the update's metadata lacks a finite train_loss")?;
    if !(0.0..=MAX_TRAIN_LOSS).contains(&train_loss) {
        return Err(format!(
            "train_loss {train_loss:e} is outside 0 to {MAX_TRAIN_LOSS:e}"
        ));
    }
    let train_millis = match meta.get(update_metadata::TRAIN_MILLIS) {
        None => 0,
        Some(v) => v
            .parse::<u64>()
            .ok()
            .filter(|m| *m <= MAX_TRAIN_MILLIS)
            .ok_or_else(|| {
                format!("train_millis {v:?} is not a whole number from 0 to {MAX_TRAIN_MILLIS}")
            })?,
    };
    Ok(CheckedUpdate {
        norm,
        train_loss,
        train_millis,
    })
}

//! What the services share and none of them owns: reading a stored job
//! and its weights, how tokens are stored, the reputation policy's rule,
//! and the counter pages watch to know that stored jobs changed. Uses no
//! service.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use oblivion_ml::data::FeatureScaling;
use oblivion_ml::model::Architecture;
use oblivion_ml::params::Params;
use oblivion_protocol::{BlobId, JobId};
use oblivion_store::{Artifacts, Db, JobRow, Judge, Record, now};

use super::chain_link::ChainLink;
use crate::blocking::blocking;
use crate::config::Config;
use crate::error::AppError;

/// What every service is built from, each taking the parts it uses.
#[derive(Clone)]
pub(super) struct Parts {
    pub config: Arc<Config>,
    pub db: Db,
    pub artifacts: Artifacts,
    /// This process's name in the database.
    pub instance: Arc<str>,
    pub jobs_version: Arc<JobsVersion>,
    /// The chain paid jobs settle on, if any.
    pub chain: Option<Arc<ChainLink>>,
}

/// Locks a mutex of derived state. A panic while holding it would be a
/// bug; the state is still consistent enough to keep serving (and can be
/// rebuilt from the database), so recover the guard.
pub(super) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

pub(super) fn ml_internal(e: oblivion_ml::MlError) -> AppError {
    AppError::internal(e.to_string())
}

/// How a worker's or a session's token is stored (so that any instance
/// can check it, and a database dump does not hand it out).
pub(super) fn token_hash(token: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(token.as_bytes()))
}

/// Refuses a paid job's product (a training job's model, an inference
/// job's outputs) until its settlement is seen on chain (its contributors
/// are paid first), wherever it is read: the job's download, the
/// registry's, an inference or a fine-tune, a listing, the outputs.
pub(super) async fn check_released(db: &Db, row: &JobRow) -> Result<(), AppError> {
    if row.spec.reward().is_none() {
        return Ok(());
    }
    let settled = db
        .payment(row.id)
        .await
        .map_err(AppError::db)?
        .is_some_and(|p| p.state == oblivion_protocol::api::PaymentState::Settled);
    if settled {
        return Ok(());
    }
    Err(AppError::new(
        crate::error::Failure::Forbidden,
        format!(
            "job {} is paid: its {} released once its settlement is seen on chain, \
             so that its contributors are paid first",
            row.id,
            if row.spec.inference().is_some() {
                "outputs are"
            } else {
                "model is"
            }
        ),
    ))
}

/// A job's paid work as `Db::paid_work` stores it (payout address,
/// credited samples), in the payout rule's terms; an address that does not
/// parse (none should) is left out.
pub(super) fn work_by_account(work: Vec<(String, u64)>) -> Vec<(alloy::primitives::Address, u64)> {
    work.into_iter()
        .filter_map(|(a, n)| Some((a.parse().ok()?, n)))
        .collect()
}

/// A stored job, or 404.
pub(super) async fn job_row(db: &Db, id: JobId) -> Result<JobRow, AppError> {
    db.job(id)
        .await
        .map_err(AppError::db)?
        .ok_or_else(|| AppError::not_found(format!("no job {id}")))
}

/// Stored weights, decoded on a blocking thread.
pub(super) async fn weights(artifacts: &Artifacts, blob: BlobId) -> Result<Params, AppError> {
    let bytes = artifacts
        .get(blob)
        .await
        .map_err(AppError::io)?
        .ok_or_else(|| AppError::internal(format!("weights {blob} are missing from storage")))?;
    blocking(move || {
        Params::from_safetensors(&bytes)
            .map(|(p, _)| p)
            .map_err(|e| AppError::internal(format!("stored weights are unreadable: {e}")))
    })
    .await
}

/// A stored job's network.
pub(super) fn arch_of(row: &JobRow) -> Result<Architecture, AppError> {
    Architecture::new(
        row.data.model.clone(),
        row.data.input_shape.clone(),
        row.data.classes,
    )
    .map_err(|e| AppError::internal(e.to_string()))
}

/// A stored job's feature scaling (tabular data), if it has one.
pub(super) fn scaling_of(row: &JobRow) -> Result<Option<FeatureScaling>, AppError> {
    row.data
        .normalization
        .as_deref()
        .map(serde_json::from_str)
        .transpose()
        .map_err(|e| AppError::internal(format!("stored normalisation: {e}")))
}

/// Why a worker's record is quarantined, under this coordinator's
/// reputation policy (the store applies it as results come in).
pub(super) fn quarantine_rule(config: &Config) -> impl Fn(&Record<'_>) -> Option<String> + Sync {
    let policy = config.reputation();
    move |r| policy.quarantine_reason(r.agreed, r.disputed, r.refuted, r.last_dispute)
}

/// The store's judge of records under `rule` (see [`quarantine_rule`]),
/// now.
pub(super) fn judge<'a>(
    config: &Config,
    rule: &'a (dyn Fn(&Record<'_>) -> Option<String> + Sync),
) -> Judge<'a> {
    let now = now();
    Judge {
        rule,
        now,
        released_before: now - config.reputation().quarantine_for.as_secs_f64(),
    }
}

/// Bumped whenever stored job state changes (a job submitted, a round
/// aggregated, a job ended): pages refetch their job lists when it moves
/// (see `NetworkSnapshot::jobs_version`).
#[derive(Default)]
pub struct JobsVersion(AtomicU64);

impl JobsVersion {
    /// Stored job state changed.
    pub(super) fn bump(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }

    /// The current version.
    pub(super) fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

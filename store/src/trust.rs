//! Trust in the database: each update's verdict, the credit that follows
//! from it, and each worker's reputation and quarantine. Verdicts are
//! written in the transaction that records their round, so a round is
//! never aggregated without its judgements, nor judged twice.

use std::collections::HashMap;

use oblivion_protocol::{JobId, WorkerId};
use sqlx::{Any, Row, Transaction};

use oblivion_ml::screening::Verdict;

use crate::db::{Db, transaction};
use crate::error::StoreError;

/// A worker's identity as SQL over `workers w`: its payout account, else
/// its connection (as the scheduling core's `reputation::identity` spells it).
pub(crate) const IDENTITY: &str = "COALESCE(w.payout_address, 'worker:' || CAST(w.id AS TEXT))";

/// Ends a quarantine (`$1` the identity) that began before `$2`: the
/// record starts afresh.
const RELEASE_QUARANTINE: &str = "UPDATE reputations SET agreed = 0, disputed = 0, refuted = 0, \
     last_dispute = NULL, quarantined_at = NULL, reason = NULL, since = NULL \
     WHERE identity = $1 AND quarantined_at IS NOT NULL AND quarantined_at <= $2";

/// The verdict on one shard's update of a round.
#[derive(Clone, Debug, PartialEq)]
pub struct UpdateVerdict {
    /// The shard.
    pub shard: u32,
    /// The worker that posted it.
    pub worker_id: WorkerId,
    /// Samples credited if verified.
    pub samples: u64,
    /// The verdict, with why unless verified.
    pub verdict: Verdict,
}

/// A worker identity newly put in quarantine, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Quarantined {
    /// The identity (an account, else `worker:<id>`).
    pub identity: String,
    /// Why, for the API and the Network page.
    pub reason: String,
}

/// An identity's record, as a quarantine rule reads it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Record<'a> {
    /// Results that agreed with their round.
    pub agreed: u64,
    /// Results disputed or rejected.
    pub disputed: u64,
    /// Results refuted by replicas.
    pub refuted: u64,
    /// Why the last disputed one was.
    pub last_dispute: &'a str,
}

/// How records are judged as results come in. The rule is the scheduling
/// core's reputation policy; the store keeps the records and applies it in
/// the transaction that adds a result.
#[derive(Clone, Copy)]
pub struct Judge<'a> {
    /// Why a record is quarantined, or `None` while it is not.
    pub rule: &'a (dyn Fn(&Record<'_>) -> Option<String> + Sync),
    /// Now (Unix seconds).
    pub now: f64,
    /// A quarantine begun before this has ended: its record starts afresh.
    pub released_before: f64,
}

/// One result for a worker's record.
#[derive(Clone, Copy, Debug)]
enum Outcome<'a> {
    Agreed,
    Disputed(&'a str),
    Refuted(&'a str),
}

/// A worker identity's record.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Reputation {
    /// Results that agreed with their round.
    pub agreed: u64,
    /// Results disputed or rejected.
    pub disputed: u64,
    /// Why it is quarantined, if it is.
    pub quarantined: Option<String>,
}

impl Db {
    /// Writes `verdicts` of `job`'s `round`, credits the verified work and
    /// updates the reputations within `tx`; returns the identities this
    /// quarantines.
    pub(crate) async fn record_verdicts(
        &self,
        tx: &mut Transaction<'static, Any>,
        job: JobId,
        round: u32,
        verdicts: &[UpdateVerdict],
        judge: &Judge<'_>,
    ) -> Result<Vec<Quarantined>, StoreError> {
        let mut quarantined = Vec::new();
        for v in verdicts {
            sqlx::query(
                "UPDATE updates SET verdict = $4, verdict_reason = $5 \
                 WHERE job_id = $1 AND round = $2 AND shard = $3",
            )
            .bind(job.db())
            .bind(i64::from(round))
            .bind(i64::from(v.shard))
            .bind(v.verdict.stored_name())
            .bind(v.verdict.reason())
            .execute(&mut **tx)
            .await?;
            if v.verdict.is_verified() {
                sqlx::query("UPDATE workers SET samples = samples + $2 WHERE id = $1")
                    .bind(v.worker_id.db())
                    .bind(v.samples as i64)
                    .execute(&mut **tx)
                    .await?;
            }
            let reason = v
                .verdict
                .reason()
                .map(|r| format!("job {job} round {round} shard {}: {r}", v.shard));
            if matches!(v.verdict, Verdict::Unresolved(_)) {
                continue;
            }
            let result = match (&v.verdict, reason.as_deref()) {
                (Verdict::Verified, _) | (_, None) => Outcome::Agreed,
                (Verdict::Refuted(_), Some(r)) => Outcome::Refuted(r),
                (_, Some(r)) => Outcome::Disputed(r),
            };
            if let Some(q) = self.add_result(tx, v.worker_id, result, judge).await? {
                quarantined.push(q);
            }
        }
        Ok(quarantined)
    }

    /// Records an update rejected on arrival (malformed, non-finite, over a
    /// fixed bound) against its worker; returns the quarantine it causes.
    pub async fn record_rejection(
        &self,
        worker_id: WorkerId,
        reason: &str,
        judge: &Judge<'_>,
    ) -> Result<Option<Quarantined>, StoreError> {
        transaction!(self, |tx| {
            let q = self
                .add_result(&mut tx, worker_id, Outcome::Disputed(reason), judge)
                .await?;
            tx.commit().await?;
            Ok(q)
        })
    }

    /// Adds one result to the worker's record, and quarantines it when
    /// the policy says so.
    async fn add_result(
        &self,
        tx: &mut Transaction<'static, Any>,
        worker_id: WorkerId,
        result: Outcome<'_>,
        judge: &Judge<'_>,
    ) -> Result<Option<Quarantined>, StoreError> {
        let Some(identity) = sqlx::query(&format!(
            "SELECT {IDENTITY} AS identity FROM workers w WHERE w.id = $1"
        ))
        .bind(worker_id.db())
        .fetch_optional(&mut **tx)
        .await?
        .map(|r| r.try_get::<String, _>("identity"))
        .transpose()?
        else {
            return Ok(None);
        };
        sqlx::query(RELEASE_QUARANTINE)
            .bind(&identity)
            .bind(judge.released_before)
            .execute(&mut **tx)
            .await?;
        let (agreed, disputed, refuted, why): (i64, i64, i64, Option<&str>) = match result {
            Outcome::Agreed => (1, 0, 0, None),
            Outcome::Disputed(r) => (0, 1, 0, Some(r)),
            Outcome::Refuted(r) => (0, 1, 1, Some(r)),
        };
        sqlx::query(
            "INSERT INTO reputations (identity, agreed, disputed, refuted, last_dispute, since) \
             VALUES ($1, $2, $3, $4, $5, $6) \
             ON CONFLICT (identity) DO UPDATE SET agreed = reputations.agreed + $2, \
             disputed = reputations.disputed + $3, refuted = reputations.refuted + $4, \
             last_dispute = COALESCE($5, reputations.last_dispute), \
             since = COALESCE(reputations.since, $6)",
        )
        .bind(&identity)
        .bind(agreed)
        .bind(disputed)
        .bind(refuted)
        .bind(why)
        .bind(judge.now)
        .execute(&mut **tx)
        .await?;
        let row = sqlx::query(
            "SELECT agreed, disputed, refuted, last_dispute FROM reputations \
             WHERE identity = $1 AND quarantined_at IS NULL",
        )
        .bind(&identity)
        .fetch_optional(&mut **tx)
        .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        let agreed = row.try_get::<i64, _>("agreed")? as u64;
        let disputed = row.try_get::<i64, _>("disputed")? as u64;
        let refuted = row.try_get::<i64, _>("refuted")? as u64;
        let last: Option<String> = row.try_get("last_dispute")?;
        let last = last.unwrap_or_default();
        let record = Record {
            agreed,
            disputed,
            refuted,
            last_dispute: &last,
        };
        let Some(reason) = (judge.rule)(&record) else {
            return Ok(None);
        };
        sqlx::query(
            "UPDATE reputations SET quarantined_at = $2, reason = $3 \
             WHERE identity = $1 AND quarantined_at IS NULL",
        )
        .bind(&identity)
        .bind(judge.now)
        .bind(&reason)
        .execute(&mut **tx)
        .await?;
        Ok(Some(Quarantined { identity, reason }))
    }

    /// Ends `identity`'s quarantine if it began before `released_before`:
    /// its record starts afresh.
    pub async fn release_quarantine(
        &self,
        identity: &str,
        released_before: f64,
    ) -> Result<(), StoreError> {
        sqlx::query(RELEASE_QUARANTINE)
            .bind(identity)
            .bind(released_before)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Which of `workers` may refute others' results: each that is signed
    /// in as an account with a record begun by `since` and at least
    /// `min_agreed` agreed results, and not quarantined; with its account
    /// (workers of one account count once).
    pub async fn refuters(
        &self,
        workers: &[WorkerId],
        min_agreed: u64,
        since: f64,
    ) -> Result<HashMap<WorkerId, String>, StoreError> {
        let mut workers = workers.to_vec();
        workers.sort_unstable();
        workers.dedup();
        let mut out = HashMap::new();
        for worker in workers {
            let row = sqlx::query(
                "SELECT w.payout_address AS account, r.agreed AS agreed FROM workers w \
                 JOIN reputations r ON r.identity = w.payout_address \
                 WHERE w.id = $1 AND r.quarantined_at IS NULL AND r.since <= $2",
            )
            .bind(worker.db())
            .bind(since)
            .fetch_optional(&self.pool)
            .await?;
            if let Some(row) = row {
                let agreed: i64 = row.try_get("agreed")?;
                if agreed >= 0 && agreed as u64 >= min_agreed {
                    out.insert(worker, row.try_get::<String, _>("account")?);
                }
            }
        }
        Ok(out)
    }

    /// The record of `identity`, if it has one.
    pub async fn reputation(&self, identity: &str) -> Result<Option<Reputation>, StoreError> {
        sqlx::query(
            "SELECT agreed, disputed, reason, quarantined_at FROM reputations WHERE identity = $1",
        )
        .bind(identity)
        .fetch_optional(&self.pool)
        .await?
        .map(|r| {
            let at: Option<f64> = r.try_get("quarantined_at")?;
            let reason: Option<String> = r.try_get("reason")?;
            Ok(Reputation {
                agreed: r.try_get::<i64, _>("agreed")? as u64,
                disputed: r.try_get::<i64, _>("disputed")? as u64,
                quarantined: at.map(|_| reason.unwrap_or_default()),
            })
        })
        .transpose()
    }

    /// Why the worker's identity is quarantined, if it is (checked in the
    /// transaction that accepts an update, so every instance refuses one).
    pub(crate) async fn quarantine_of(
        &self,
        tx: &mut Transaction<'static, Any>,
        worker_id: WorkerId,
    ) -> Result<Option<String>, StoreError> {
        Ok(sqlx::query(&format!(
            "SELECT r.reason AS reason FROM workers w JOIN reputations r ON r.identity = {IDENTITY} \
             WHERE w.id = $1 AND r.quarantined_at IS NOT NULL"
        ))
        .bind(worker_id.db())
        .fetch_optional(&mut **tx)
        .await?
        .map(|r| r.try_get::<Option<String>, _>("reason"))
        .transpose()?
        .map(Option::unwrap_or_default))
    }
}

//! Trust in the database: each update's verdict, the credit that follows
//! from it, and each worker's reputation and quarantine. Verdicts are
//! written in the transaction that records their round, so a round is
//! never aggregated without its judgements, nor judged twice.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use oblivion_protocol::{JobId, WorkerId};
use sqlx::{Any, FromRow, Transaction};

use oblivion_ml::screening::Verdict;

use crate::columns::Int;
use crate::db::{CHUNK, Db, WriteOnce, bound, transaction};
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

/// A reputation row as stored, while results are added to it.
#[derive(Clone, Debug, Default, sqlx::FromRow)]
struct StoredRecord {
    identity: String,
    agreed: i64,
    disputed: i64,
    refuted: i64,
    last_dispute: Option<String>,
    quarantined_at: Option<f64>,
    reason: Option<String>,
    since: Option<f64>,
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
        if verdicts.is_empty() {
            return Ok(Vec::new());
        }
        // The verdicts, a statement for each kind and reason (one for all
        // the verified, nearly always).
        let mut by_kind: BTreeMap<(&str, Option<&str>), Vec<i64>> = BTreeMap::new();
        for v in verdicts {
            by_kind
                .entry((v.verdict.stored_name(), v.verdict.reason()))
                .or_default()
                .push(i64::from(v.shard));
        }
        for ((kind, reason), shards) in by_kind {
            for shards in shards.chunks(CHUNK) {
                let mut p = self.placeholders();
                let sql = format!(
                    "UPDATE updates SET verdict = {}, verdict_reason = {} \
                     WHERE job_id = {} AND round = {} AND shard IN ({})",
                    p.one(),
                    p.one(),
                    p.one(),
                    p.one(),
                    p.list(shards.len())
                );
                let mut write = bound(&sql, std::iter::empty())
                    .bind(kind)
                    .bind(reason)
                    .bind(job.db())
                    .bind(i64::from(round));
                for shard in shards {
                    write = write.bind(*shard);
                }
                write.execute(&mut **tx).await?;
            }
        }
        // Verified work's samples, workers grouped by what they earn.
        let mut earned: BTreeMap<WorkerId, i64> = BTreeMap::new();
        for v in verdicts.iter().filter(|v| v.verdict.is_verified()) {
            *earned.entry(v.worker_id).or_default() += v.samples as i64;
        }
        let mut by_amount: BTreeMap<i64, Vec<i64>> = BTreeMap::new();
        for (worker, samples) in earned {
            by_amount.entry(samples).or_default().push(worker.db());
        }
        for (samples, workers) in by_amount {
            for workers in workers.chunks(CHUNK) {
                let mut p = self.placeholders();
                let sql = format!(
                    "UPDATE workers SET samples = samples + {} WHERE id IN ({})",
                    p.one(),
                    p.list(workers.len())
                );
                bound(
                    &sql,
                    std::iter::once(samples).chain(workers.iter().copied()),
                )
                .execute(&mut **tx)
                .await?;
            }
        }
        // The results, in order, each with its reason as the record keeps it.
        let reasons: Vec<Option<String>> = verdicts
            .iter()
            .map(|v| {
                v.verdict
                    .reason()
                    .map(|r| format!("job {job} round {round} shard {}: {r}", v.shard))
            })
            .collect();
        let results: Vec<(WorkerId, Outcome<'_>)> = verdicts
            .iter()
            .zip(&reasons)
            .filter(|(v, _)| !matches!(v.verdict, Verdict::Unresolved(_)))
            .map(|(v, reason)| {
                let outcome = match (&v.verdict, reason.as_deref()) {
                    (Verdict::Verified, _) | (_, None) => Outcome::Agreed,
                    (Verdict::Refuted(_), Some(r)) => Outcome::Refuted(r),
                    (_, Some(r)) => Outcome::Disputed(r),
                };
                (v.worker_id, outcome)
            })
            .collect();
        self.add_results(tx, &results, judge).await
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
                .add_results(&mut tx, &[(worker_id, Outcome::Disputed(reason))], judge)
                .await?;
            tx.commit().await?;
            Ok(q.into_iter().next())
        })
    }

    /// Adds results to their workers' records, in order, and quarantines
    /// each identity the policy says to as its record grows: exactly as
    /// adding them one at a time would (a quarantine that began before
    /// `released_before` ends first, and its record starts afresh), with
    /// a handful of statements for all of them. The records are read
    /// whole and locked (PostgreSQL) before they are written back.
    async fn add_results(
        &self,
        tx: &mut Transaction<'static, Any>,
        results: &[(WorkerId, Outcome<'_>)],
        judge: &Judge<'_>,
    ) -> Result<Vec<Quarantined>, StoreError> {
        // Each worker's identity (a worker gone from the table adds nothing).
        let workers: Vec<i64> = results
            .iter()
            .map(|(w, _)| w.db())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let mut identity_of: HashMap<WorkerId, String> = HashMap::new();
        for chunk in workers.chunks(CHUNK) {
            let sql = format!(
                "SELECT w.id AS id, {IDENTITY} AS identity FROM workers w WHERE w.id IN ({})",
                self.placeholders().list(chunk.len())
            );
            for row in bound(&sql, chunk.iter().copied())
                .fetch_all(&mut **tx)
                .await?
            {
                let (worker, identity) = <(Int<WorkerId>, String)>::from_row(&row)?;
                identity_of.insert(worker.get(), identity);
            }
        }
        let identities: Vec<&str> = identity_of
            .values()
            .map(String::as_str)
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        // Every identity gets a row, and every row is read locked.
        let mut records: HashMap<String, StoredRecord> = HashMap::new();
        for chunk in identities.chunks(CHUNK) {
            let rows = self.placeholders().rows(chunk.len(), 1);
            let sql = format!(
                "INSERT INTO reputations (identity) VALUES {rows} ON CONFLICT (identity) DO NOTHING"
            );
            let mut insert = bound(&sql, std::iter::empty());
            for identity in chunk {
                insert = insert.bind(*identity);
            }
            insert.execute(&mut **tx).await?;
            let sql = format!(
                "SELECT identity, agreed, disputed, refuted, last_dispute, quarantined_at, reason, \
                 since FROM reputations WHERE identity IN ({}){}",
                self.placeholders().list(chunk.len()),
                self.update_lock()
            );
            let mut select = bound(&sql, std::iter::empty());
            for identity in chunk {
                select = select.bind(*identity);
            }
            for row in select.fetch_all(&mut **tx).await? {
                let record = StoredRecord::from_row(&row)?;
                records.insert(record.identity.clone(), record);
            }
        }
        // The results, one at a time, in memory.
        let mut quarantined = Vec::new();
        for (worker, outcome) in results {
            let Some(identity) = identity_of.get(worker) else {
                continue;
            };
            let Some(record) = records.get_mut(identity) else {
                continue;
            };
            if record
                .quarantined_at
                .is_some_and(|at| at <= judge.released_before)
            {
                *record = StoredRecord {
                    since: None,
                    ..StoredRecord::default()
                };
            }
            let (agreed, disputed, refuted, why) = match *outcome {
                Outcome::Agreed => (1, 0, 0, None),
                Outcome::Disputed(r) => (0, 1, 0, Some(r)),
                Outcome::Refuted(r) => (0, 1, 1, Some(r)),
            };
            record.agreed += agreed;
            record.disputed += disputed;
            record.refuted += refuted;
            if let Some(why) = why {
                record.last_dispute = Some(why.to_string());
            }
            record.since.get_or_insert(judge.now);
            if record.quarantined_at.is_some() {
                continue;
            }
            let last = record.last_dispute.clone().unwrap_or_default();
            let read = Record {
                agreed: record.agreed.max(0) as u64,
                disputed: record.disputed.max(0) as u64,
                refuted: record.refuted.max(0) as u64,
                last_dispute: &last,
            };
            if let Some(reason) = (judge.rule)(&read) {
                record.quarantined_at = Some(judge.now);
                record.reason = Some(reason.clone());
                quarantined.push(Quarantined {
                    identity: identity.clone(),
                    reason,
                });
            }
        }
        // The records written back whole (each row exists, and is locked).
        let touched: Vec<(&String, &StoredRecord)> = records.iter().collect();
        for chunk in touched.chunks(CHUNK) {
            let rows = self.placeholders().rows(chunk.len(), 8);
            let sql = format!(
                "INSERT INTO reputations (identity, agreed, disputed, refuted, last_dispute, \
                 quarantined_at, reason, since) VALUES {rows} \
                 ON CONFLICT (identity) DO UPDATE SET agreed = excluded.agreed, \
                 disputed = excluded.disputed, refuted = excluded.refuted, \
                 last_dispute = excluded.last_dispute, quarantined_at = excluded.quarantined_at, \
                 reason = excluded.reason, since = excluded.since"
            );
            let mut write = bound(&sql, std::iter::empty());
            for (identity, r) in chunk {
                write = write
                    .bind(identity.as_str())
                    .bind(r.agreed)
                    .bind(r.disputed)
                    .bind(r.refuted)
                    .bind(r.last_dispute.clone())
                    .bind(r.quarantined_at)
                    .bind(r.reason.clone())
                    .bind(r.since);
            }
            write.execute(&mut **tx).await?;
        }
        Ok(quarantined)
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
            .write_once(self)
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
            let row: Option<(String, i64)> = sqlx::query_as(
                "SELECT w.payout_address AS account, r.agreed AS agreed FROM workers w \
                 JOIN reputations r ON r.identity = w.payout_address \
                 WHERE w.id = $1 AND r.quarantined_at IS NULL AND r.since <= $2",
            )
            .bind(worker.db())
            .bind(since)
            .fetch_optional(&self.pool)
            .await?;
            if let Some((account, agreed)) = row
                && u64::try_from(agreed).is_ok_and(|a| a >= min_agreed)
            {
                out.insert(worker, account);
            }
        }
        Ok(out)
    }

    /// The record of `identity`, if it has one.
    pub async fn reputation(&self, identity: &str) -> Result<Option<Reputation>, StoreError> {
        type Standing = (Int<u64>, Int<u64>, Option<String>, Option<f64>);
        let record: Option<Standing> = sqlx::query_as(
            "SELECT agreed, disputed, reason, quarantined_at FROM reputations WHERE identity = $1",
        )
        .bind(identity)
        .fetch_optional(&self.pool)
        .await?;
        Ok(record.map(|(agreed, disputed, reason, at)| Reputation {
            agreed: agreed.get(),
            disputed: disputed.get(),
            quarantined: at.map(|_| reason.unwrap_or_default()),
        }))
    }

    /// Why the worker's identity is quarantined, if it is (checked in the
    /// transaction that accepts an update, so every instance refuses one).
    pub(crate) async fn quarantine_of(
        &self,
        tx: &mut Transaction<'static, Any>,
        worker_id: WorkerId,
    ) -> Result<Option<String>, StoreError> {
        let reason: Option<Option<String>> = sqlx::query_scalar(&format!(
            "SELECT r.reason AS reason FROM workers w JOIN reputations r ON r.identity = {IDENTITY} \
             WHERE w.id = $1 AND r.quarantined_at IS NOT NULL"
        ))
        .bind(worker_id.db())
        .fetch_optional(&mut **tx)
        .await?;
        Ok(reason.map(Option::unwrap_or_default))
    }
}

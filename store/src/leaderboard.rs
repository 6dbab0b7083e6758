//! What standings are made of: the verified work of each identity (its
//! payout account, else its connection) by day, the reputations on record,
//! and the payouts signed and claimed. Only verified work counts: updates
//! disputed, refuted or of no work are not in it.

use oblivion_protocol::{JobId, Wei};

use crate::columns::{Int, Text};
use crate::db::Db;
use crate::error::StoreError;
use crate::trust::IDENTITY;

/// An identity's verified work on one day.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DayOfWork {
    /// Its payout account, else `worker:<id>`.
    pub identity: String,
    /// Days since the Unix epoch (UTC).
    pub day: i64,
    /// Training samples of its verified updates.
    pub samples: u64,
    /// Inference rows of its verified outputs.
    pub rows: u64,
}

/// A payout leaf.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Payout {
    /// Its account.
    pub account: String,
    /// Its amount.
    pub amount: Wei,
    /// Whether the chain showed it claimed.
    pub claimed: bool,
}

/// An identity's record, as standings show it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Standing {
    /// The identity.
    pub identity: String,
    /// Results that agreed with their round.
    pub agreed: u64,
    /// Results disputed (or rejected on arrival).
    pub disputed: u64,
    /// Results refuted by replicas.
    pub refuted: u64,
    /// Whether it is in quarantine now.
    pub quarantined: bool,
}

impl Db {
    /// Every identity's verified work by day, of `job` alone or of all.
    pub async fn verified_work(&self, job: Option<JobId>) -> Result<Vec<DayOfWork>, StoreError> {
        // An inference job's results are rows; a job's results are
        // verified when its round is recorded, with its outputs.
        let sql = format!(
            "SELECT {IDENTITY} AS identity, CAST(u.accepted_at AS BIGINT) / 86400 AS day, \
             CAST(SUM(CASE WHEN r.job_id IS NULL THEN u.samples ELSE 0 END) AS BIGINT) AS samples, \
             CAST(SUM(CASE WHEN r.job_id IS NULL THEN 0 ELSE u.samples END) AS BIGINT) AS rows \
             FROM updates u JOIN workers w ON w.id = u.worker_id \
             LEFT JOIN inference_results r ON r.job_id = u.job_id \
             WHERE u.verdict = 'verified' {} GROUP BY 1, 2 ORDER BY 1, 2",
            if job.is_some() {
                "AND u.job_id = $1"
            } else {
                ""
            }
        );
        let mut query = sqlx::query_as::<_, (String, i64, Int<u64>, Int<u64>)>(&sql);
        if let Some(job) = job {
            query = query.bind(job.db());
        }
        Ok(query
            .fetch_all(&self.pool)
            .await?
            .into_iter()
            .map(|(identity, day, samples, rows)| DayOfWork {
                identity,
                day,
                samples: samples.get(),
                rows: rows.get(),
            })
            .collect())
    }

    /// Every payout leaf signed, of `job` alone or of all.
    pub async fn all_payouts(&self, job: Option<JobId>) -> Result<Vec<Payout>, StoreError> {
        let sql = format!(
            "SELECT account, amount, claimed FROM payouts {}",
            if job.is_some() {
                "WHERE job_id = $1"
            } else {
                ""
            }
        );
        let mut query = sqlx::query_as::<_, (String, Text<Wei>, i64)>(&sql);
        if let Some(job) = job {
            query = query.bind(job.db());
        }
        Ok(query
            .fetch_all(&self.pool)
            .await?
            .into_iter()
            .map(|(account, amount, claimed)| Payout {
                account,
                amount: amount.into(),
                claimed: claimed != 0,
            })
            .collect())
    }

    /// Every identity's record.
    pub async fn standings(&self) -> Result<Vec<Standing>, StoreError> {
        /// identity, agreed, disputed, refuted, quarantined_at.
        type Row = (String, Int<u64>, Int<u64>, Int<u64>, Option<f64>);
        let rows: Vec<Row> = sqlx::query_as(
            "SELECT identity, agreed, disputed, refuted, quarantined_at FROM reputations",
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(
                |(identity, agreed, disputed, refuted, quarantined_at)| Standing {
                    identity,
                    agreed: agreed.get(),
                    disputed: disputed.get(),
                    refuted: refuted.get(),
                    quarantined: quarantined_at.is_some(),
                },
            )
            .collect())
    }
}

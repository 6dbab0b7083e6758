//! Paid jobs in the database: their escrow state as the chain shows it,
//! what the coordinator signed for them, every payout leaf, and how far
//! the chain has been read. Amounts are decimal strings of wei.

use crate::columns::{Int, Text};
use crate::db::{Db, WriteOnce, transaction};
use crate::error::StoreError;
use crate::market::LogPlace;
use oblivion_protocol::api::{PaymentState, PaymentView, PayoutView, SettlementView};
use oblivion_protocol::{JobId, Wei};

/// A paid job's payment row, before its id exists.
pub struct NewPayment<'a> {
    /// The escrow key for a job id.
    pub job_key: &'a (dyn Fn(JobId) -> String + Send + Sync),
    /// keccak256 of the stored spec, `0x` hex.
    pub spec_hash: &'a str,
    /// The deposit asked for.
    pub amount: &'a Wei,
}

/// A paid job's escrow as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PaymentRow {
    /// The job.
    pub job_id: JobId,
    /// Its view (without the settlement).
    pub view: PaymentView,
}

/// What a deposit seen on chain says.
#[derive(Clone, Debug)]
pub struct Deposit {
    /// What was deposited.
    pub amount: Wei,
    /// The settlement deadline, Unix seconds.
    pub deadline: i64,
    /// Block it was in.
    pub block: u64,
    /// Its transaction.
    pub tx: String,
}

/// A payout leaf for an account, with its job.
#[derive(Clone, Debug)]
pub struct AccountPayout {
    /// The job.
    pub job_id: JobId,
    /// The job's name.
    pub job_name: String,
    /// The job's escrow key.
    pub job_key: String,
    /// Its leaf.
    pub payout: PayoutView,
    /// Whether the job is settled on chain.
    pub settled: bool,
    /// Whether the leaf was claimed.
    pub claimed: bool,
}

/// A payment row as the table has it.
#[derive(sqlx::FromRow)]
struct PaymentRecord {
    #[sqlx(try_from = "i64")]
    job_id: JobId,
    job_key: String,
    spec_hash: String,
    #[sqlx(try_from = "Text<Wei>")]
    amount: Wei,
    #[sqlx(try_from = "Text<PaymentState>")]
    state: PaymentState,
    deposit: Option<Text<Wei>>,
    deadline: Option<i64>,
    refusal: Option<String>,
}

impl From<PaymentRecord> for PaymentRow {
    fn from(r: PaymentRecord) -> PaymentRow {
        PaymentRow {
            job_id: r.job_id,
            view: PaymentView {
                job_key: r.job_key,
                spec_hash: r.spec_hash,
                amount: r.amount,
                state: r.state,
                deposit: r.deposit.map(Text::get),
                deadline: r.deadline,
                settlement: None,
                refusal: r.refusal,
            },
        }
    }
}

/// A settlement row as the table has it (its leaves are rows of their own).
#[derive(sqlx::FromRow)]
struct SettlementRecord {
    root: String,
    #[sqlx(try_from = "Text<Wei>")]
    total: Wei,
    model_hash: String,
    #[sqlx(try_from = "i64")]
    nonce: u64,
    #[sqlx(try_from = "i64")]
    issued_at: u64,
    signature: String,
}

impl Db {
    /// A paid job's payment, with its settlement once signed.
    pub async fn payment(&self, job: JobId) -> Result<Option<PaymentView>, StoreError> {
        let Some(row) =
            sqlx::query_as::<_, PaymentRecord>("SELECT * FROM payments WHERE job_id = $1")
                .bind(job.db())
                .fetch_optional(&self.pool)
                .await?
        else {
            return Ok(None);
        };
        let mut view = PaymentRow::from(row).view;
        view.settlement = self.settlement(job).await?;
        Ok(Some(view))
    }

    /// The payment whose escrow key is `key`.
    pub async fn payment_by_key(&self, key: &str) -> Result<Option<PaymentRow>, StoreError> {
        Ok(
            sqlx::query_as::<_, PaymentRecord>("SELECT * FROM payments WHERE job_key = $1")
                .bind(key)
                .fetch_optional(&self.pool)
                .await?
                .map(PaymentRow::from),
        )
    }

    /// Records a confirmed deposit and opens the job (funding → pending),
    /// in one guarded transaction: true when it did, false when the job was
    /// no longer waiting (opened already, or cancelled).
    pub async fn fund_job(&self, job: JobId, deposit: &Deposit) -> Result<bool, StoreError> {
        transaction!(self, |tx| {
            let opened = sqlx::query(
                "UPDATE jobs SET status = 'pending' WHERE id = $1 AND status = 'funding'",
            )
            .bind(job.db())
            .execute(&mut *tx)
            .await?
            .rows_affected()
                == 1;
            if !opened {
                return Ok(false);
            }
            sqlx::query(
                "UPDATE payments SET state = 'funded', deposit = $2, deadline = $3, \
                 funded_block = $4, funded_tx = $5 WHERE job_id = $1 AND state = 'awaiting_deposit'",
            )
            .bind(job.db())
            .bind(deposit.amount.as_str())
            .bind(deposit.deadline)
            .bind(deposit.block as i64)
            .bind(&deposit.tx)
            .execute(&mut *tx)
            .await?;
            self.notify(&mut tx, [job]).await?;
            tx.commit().await?;
            Ok(true)
        })
    }

    /// Records why a deposit seen for `job` was refused (the first reason
    /// stays: the escrow key admits one deposit).
    pub async fn refuse_deposit(&self, job: JobId, why: &str) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE payments SET refusal = $2 WHERE job_id = $1 AND refusal IS NULL \
             AND state = 'awaiting_deposit'",
        )
        .bind(job.db())
        .bind(why)
        .write_once(self)
        .await?;
        Ok(())
    }

    /// Paid jobs whose settlement is signed but not yet seen on chain, with
    /// its escrow key, issue time and settlement: what the coordinator
    /// sends itself once the grace has passed.
    pub async fn unsent_settlements(
        &self,
    ) -> Result<Vec<(JobId, String, SettlementView)>, StoreError> {
        let rows: Vec<(Int<JobId>, String)> = sqlx::query_as(
            "SELECT p.job_id, p.job_key FROM payments p JOIN settlements s ON s.job_id = p.job_id \
             WHERE p.state = 'funded' ORDER BY p.job_id",
        )
        .fetch_all(&self.pool)
        .await?;
        let mut out = Vec::with_capacity(rows.len());
        for (job, key) in rows {
            let job = job.get();
            if let Some(s) = self.settlement(job).await? {
                out.push((job, key, s));
            }
        }
        Ok(out)
    }

    /// Funded paid jobs still unfinished whose deadline is before `now`:
    /// they can no longer be settled, so they fail.
    pub async fn jobs_past_deadline(&self, now: f64, limit: u32) -> Result<Vec<JobId>, StoreError> {
        let jobs: Vec<Int<JobId>> = sqlx::query_scalar(
            "SELECT p.job_id FROM payments p JOIN jobs j ON j.id = p.job_id \
             WHERE p.state = 'funded' AND p.deadline < $1 \
             AND j.status IN ('pending', 'running') ORDER BY p.job_id LIMIT $2",
        )
        .bind(now as i64)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        Ok(jobs.into_iter().map(Int::get).collect())
    }

    /// Completed paid jobs that have no settlement yet.
    pub async fn unsettled_jobs(&self) -> Result<Vec<JobId>, StoreError> {
        let jobs: Vec<Int<JobId>> = sqlx::query_scalar(
            "SELECT p.job_id FROM payments p JOIN jobs j ON j.id = p.job_id \
             WHERE j.status = 'completed' AND p.state = 'funded' \
             AND NOT EXISTS (SELECT 1 FROM settlements s WHERE s.job_id = p.job_id) \
             ORDER BY p.job_id",
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(jobs.into_iter().map(Int::get).collect())
    }

    /// Credited samples of `job`'s verified updates, per proven payout
    /// address (anonymous workers' work is unpaid; work that did nothing
    /// or was disputed is unpaid).
    pub async fn paid_work(&self, job: JobId) -> Result<Vec<(String, u64)>, StoreError> {
        let work: Vec<(String, Int<u64>)> = sqlx::query_as(
            "SELECT w.payout_address AS account, CAST(SUM(u.samples) AS BIGINT) AS samples \
             FROM updates u JOIN workers w ON w.id = u.worker_id \
             WHERE u.job_id = $1 AND u.verdict = 'verified' AND w.payout_address IS NOT NULL \
             GROUP BY w.payout_address ORDER BY w.payout_address",
        )
        .bind(job.db())
        .fetch_all(&self.pool)
        .await?;
        Ok(work.into_iter().map(|(a, s)| (a, s.get())).collect())
    }

    /// Stores what was signed for `job` and its leaves; the first stored
    /// stays (signing is deterministic, so a second signer agrees anyway).
    pub async fn store_settlement(
        &self,
        job: JobId,
        s: &SettlementView,
        signed_at: f64,
    ) -> Result<(), StoreError> {
        transaction!(self, |tx| {
            let inserted = sqlx::query(
                "INSERT INTO settlements \
                 (job_id, root, total, model_hash, nonce, signature, signed_at, issued_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT DO NOTHING",
            )
            .bind(job.db())
            .bind(&s.root)
            .bind(s.total.as_str())
            .bind(&s.model_hash)
            .bind(s.nonce as i64)
            .bind(&s.signature)
            .bind(signed_at)
            .bind(s.issued_at as i64)
            .execute(&mut *tx)
            .await?
            .rows_affected()
                == 1;
            if inserted {
                for p in &s.payouts {
                    sqlx::query(
                        "INSERT INTO payouts (job_id, idx, account, amount) VALUES ($1, $2, $3, $4)",
                    )
                    .bind(job.db())
                    .bind(p.index as i64)
                    .bind(&p.account)
                    .bind(p.amount.as_str())
                    .execute(&mut *tx)
                    .await?;
                }
            }
            self.notify(&mut tx, [job]).await?;
            tx.commit().await?;
            Ok(())
        })
    }

    /// What was signed for `job`, with its leaves.
    pub async fn settlement(&self, job: JobId) -> Result<Option<SettlementView>, StoreError> {
        let Some(r): Option<SettlementRecord> =
            sqlx::query_as("SELECT * FROM settlements WHERE job_id = $1")
                .bind(job.db())
                .fetch_optional(&self.pool)
                .await?
        else {
            return Ok(None);
        };
        let leaves: Vec<(Int<u64>, String, Text<Wei>)> = sqlx::query_as(
            "SELECT idx, account, amount FROM payouts WHERE job_id = $1 ORDER BY idx",
        )
        .bind(job.db())
        .fetch_all(&self.pool)
        .await?;
        let payouts = leaves
            .into_iter()
            .map(|(index, account, amount)| PayoutView {
                index: index.get(),
                account,
                amount: amount.get(),
            })
            .collect();
        Ok(Some(SettlementView {
            root: r.root,
            total: r.total,
            model_hash: r.model_hash,
            nonce: r.nonce,
            issued_at: r.issued_at,
            signature: r.signature,
            payouts,
        }))
    }

    /// Moves a payment from `from` to `to` as the chain showed (settled,
    /// refunded); false when it was not in `from`.
    pub async fn set_payment_state(
        &self,
        key: &str,
        from: PaymentState,
        to: PaymentState,
    ) -> Result<bool, StoreError> {
        Ok(
            sqlx::query("UPDATE payments SET state = $3 WHERE job_key = $1 AND state = $2")
                .bind(key)
                .bind(from.as_str())
                .bind(to.as_str())
                .write_once(self)
                .await?
                .rows_affected()
                == 1,
        )
    }

    /// Marks a leaf claimed, as the chain showed, by the transaction `at`.
    pub async fn mark_claimed(
        &self,
        key: &str,
        index: u64,
        at: &LogPlace,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE payouts SET claimed = 1, claimed_tx = $3, claimed_block = $4 WHERE idx = $2 \
             AND job_id = (SELECT job_id FROM payments WHERE job_key = $1)",
        )
        .bind(key)
        .bind(index as i64)
        .bind(&at.tx)
        .bind(at.block as i64)
        .write_once(self)
        .await?;
        Ok(())
    }

    /// Records the transaction `at` that settled the job with key `key`.
    pub async fn mark_settled_by(&self, key: &str, at: &LogPlace) -> Result<(), StoreError> {
        sqlx::query("UPDATE payments SET settled_tx = $2, settled_block = $3 WHERE job_key = $1")
            .bind(key)
            .bind(&at.tx)
            .bind(at.block as i64)
            .write_once(self)
            .await?;
        Ok(())
    }

    /// Every payout leaf of `account` (lower-case hex), newest job first.
    pub async fn payouts_of(&self, account: &str) -> Result<Vec<AccountPayout>, StoreError> {
        type Leaf = (
            Int<JobId>,
            String,
            String,
            Int<u64>,
            String,
            Text<Wei>,
            i64,
            Text<PaymentState>,
        );
        let leaves: Vec<Leaf> = sqlx::query_as(
            "SELECT o.job_id, j.name, p.job_key, o.idx, o.account, o.amount, o.claimed, p.state \
             FROM payouts o JOIN payments p ON p.job_id = o.job_id JOIN jobs j ON j.id = o.job_id \
             WHERE o.account = $1 ORDER BY o.job_id DESC, o.idx",
        )
        .bind(account)
        .fetch_all(&self.pool)
        .await?;
        Ok(leaves
            .into_iter()
            .map(
                |(job, job_name, job_key, index, account, amount, claimed, state)| AccountPayout {
                    job_id: job.get(),
                    job_name,
                    job_key,
                    payout: PayoutView {
                        index: index.get(),
                        account,
                        amount: amount.get(),
                    },
                    settled: state.get() == PaymentState::Settled,
                    claimed: claimed != 0,
                },
            )
            .collect())
    }

    /// The last block read on `chain` and its hash.
    pub async fn chain_cursor(&self, chain: u64) -> Result<Option<(u64, String)>, StoreError> {
        let cursor: Option<(Int<u64>, String)> =
            sqlx::query_as("SELECT block, block_hash FROM chain_cursor WHERE chain_id = $1")
                .bind(chain as i64)
                .fetch_optional(&self.pool)
                .await?;
        Ok(cursor.map(|(block, hash)| (block.get(), hash)))
    }

    /// Moves the cursor of `chain` to `block` (its hash `hash`).
    pub async fn set_chain_cursor(
        &self,
        chain: u64,
        block: u64,
        hash: &str,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO chain_cursor (chain_id, block, block_hash) VALUES ($1, $2, $3) \
             ON CONFLICT (chain_id) DO UPDATE SET block = excluded.block, \
             block_hash = excluded.block_hash",
        )
        .bind(chain as i64)
        .bind(block as i64)
        .bind(hash)
        .write_once(self)
        .await?;
        Ok(())
    }
}

//! An account's escrow transactions, gathered from what the chain watcher
//! recorded: deposits and settlements of the jobs it created, its reward
//! claims, its purchases and sales, its shares of sales and withdrawals.

use oblivion_protocol::profile::{ChainEvent, ChainEventKind};
use oblivion_protocol::{JobId, ModelId, Wei};

use crate::columns::Text;
use crate::db::Db;
use crate::error::StoreError;

/// A row of the history query.
#[derive(sqlx::FromRow)]
struct EventRow {
    #[sqlx(try_from = "Text<ChainEventKind>")]
    kind: ChainEventKind,
    job_id: Option<i64>,
    model_id: Option<i64>,
    amount: Option<String>,
    tx: String,
    block: i64,
}

/// Every branch names its columns alike; the sums and the order are the
/// caller's.
const HISTORY: &str = "\
    SELECT 'funded' AS kind, p.job_id AS job_id, CAST(NULL AS BIGINT) AS model_id, \
           p.deposit AS amount, p.funded_tx AS tx, p.funded_block AS block \
      FROM payments p JOIN jobs j ON j.id = p.job_id \
     WHERE j.creator = $1 AND p.funded_tx IS NOT NULL \
    UNION ALL \
    SELECT 'settled', p.job_id, NULL, s.total, p.settled_tx, p.settled_block \
      FROM payments p JOIN jobs j ON j.id = p.job_id JOIN settlements s ON s.job_id = p.job_id \
     WHERE j.creator = $1 AND p.settled_tx IS NOT NULL \
    UNION ALL \
    SELECT 'claimed', o.job_id, NULL, o.amount, o.claimed_tx, o.claimed_block \
      FROM payouts o WHERE o.account = $1 AND o.claimed_tx IS NOT NULL \
    UNION ALL \
    SELECT 'bought', NULL, u.model_id, u.price, u.tx, u.block \
      FROM purchases u WHERE u.buyer = $1 \
    UNION ALL \
    SELECT 'sold', NULL, u.model_id, u.owner_part, u.tx, u.block \
      FROM purchases u JOIN listings l ON l.listing_key = u.listing_key WHERE l.owner = $1 \
    UNION ALL \
    SELECT m.kind, NULL, l.model_id, m.amount, m.tx, m.block \
      FROM market_payouts m LEFT JOIN listings l ON l.listing_key = m.listing_key \
     WHERE m.account = $1";

impl Db {
    /// `account`'s escrow transactions (lower-case hex), newest first.
    pub async fn account_history(&self, account: &str) -> Result<Vec<ChainEvent>, StoreError> {
        let rows: Vec<EventRow> = sqlx::query_as(&format!(
            "SELECT kind, job_id, model_id, amount, tx, block FROM ({HISTORY}) h \
             ORDER BY block DESC, tx"
        ))
        .bind(account)
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(|r| {
                Ok(ChainEvent {
                    kind: r.kind,
                    job: r.job_id.map(JobId::try_from).transpose().map_err(corrupt)?,
                    model: r
                        .model_id
                        .map(ModelId::try_from)
                        .transpose()
                        .map_err(corrupt)?,
                    amount: r
                        .amount
                        .as_deref()
                        .map(Wei::parse)
                        .transpose()
                        .map_err(corrupt)?,
                    tx: r.tx,
                    block: u64::try_from(r.block).map_err(corrupt)?,
                })
            })
            .collect()
    }
}

fn corrupt(e: impl std::fmt::Display) -> StoreError {
    StoreError::corrupt(format!("an account's history: {e}"))
}

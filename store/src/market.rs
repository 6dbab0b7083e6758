//! The model market as the coordinator knows it: the listings it signed,
//! and the purchases, share claims and withdrawals the chain showed.
//! Every chain event is written once (purchases by listing and buyer, as
//! the escrow sells them; payouts by their log), so reading a range of
//! blocks again changes nothing.

use oblivion_protocol::market::{ListingState, ShareLeaf};
use oblivion_protocol::{ModelId, Wei};

use crate::columns::{Int, Text};
use crate::db::{Db, WriteOnce};
use crate::error::StoreError;

/// A listing the coordinator signed.
#[derive(Clone, Debug, PartialEq, sqlx::FromRow)]
pub struct ListingRow {
    /// Its escrow key.
    pub listing_key: String,
    /// The model.
    #[sqlx(try_from = "i64")]
    pub model_id: ModelId,
    /// The seller.
    pub owner: String,
    /// keccak256 of the weights sold.
    pub model_hash: String,
    /// Root of the share tree.
    pub shares_root: String,
    /// The share tree's leaves.
    #[sqlx(try_from = "Text<Vec<ShareLeaf>>")]
    pub shares: Vec<ShareLeaf>,
    /// The latest signed terms.
    #[sqlx(flatten)]
    pub terms: ListingTerms,
    /// Where it stands on chain.
    #[sqlx(try_from = "Text<ListingState>")]
    pub state: ListingState,
    /// The price on chain, from its last `Listed`.
    pub listed_price: Option<String>,
    /// The contributors' part on chain, from its last `Listed`.
    pub listed_bps: Option<i64>,
}

/// The terms the coordinator signed last for a listing.
#[derive(Clone, Debug, PartialEq, sqlx::FromRow)]
pub struct ListingTerms {
    /// Price of one purchase.
    #[sqlx(try_from = "Text<Wei>")]
    pub price: Wei,
    /// The contributors' part, in basis points.
    #[sqlx(try_from = "i64")]
    pub contributors_bps: u16,
    /// The escrow's listing nonce they were signed for.
    #[sqlx(try_from = "i64")]
    pub nonce: u64,
    /// The coordinator's signature, `0x` hex.
    pub signature: String,
}

/// A purchase the chain showed.
#[derive(Clone, Debug, PartialEq, sqlx::FromRow)]
pub struct PurchaseRow {
    /// The listing bought.
    pub listing_key: String,
    /// The buyer.
    pub buyer: String,
    /// The model.
    #[sqlx(try_from = "i64")]
    pub model_id: ModelId,
    /// What was paid.
    #[sqlx(try_from = "Text<Wei>")]
    pub price: Wei,
    /// The owner's part.
    #[sqlx(try_from = "Text<Wei>")]
    pub owner_part: Wei,
    /// The contributors' part.
    #[sqlx(try_from = "Text<Wei>")]
    pub contributors_part: Wei,
    /// The transaction.
    pub tx: String,
    /// Its block.
    #[sqlx(try_from = "i64")]
    pub block: u64,
    /// When it was seen (Unix seconds).
    pub seen_at: f64,
}

/// A payout the escrow's market made: a share claim or a withdrawal.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MarketPayout {
    /// `ShareClaimed`: leaf `index` of `listing` was paid.
    Share {
        /// The listing.
        listing: String,
        /// The leaf.
        index: u64,
    },
    /// `Withdrawn`: an owner took its proceeds.
    Withdrawal,
}

/// Where a chain event was: its transaction, log index and block.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogPlace {
    /// The transaction, `0x` hex.
    pub tx: String,
    /// The log's index in its block.
    pub log_index: u64,
    /// The block.
    pub block: u64,
}

const LISTING_COLUMNS: &str = "listing_key, model_id, owner, model_hash, shares_root, shares, \
                               price, contributors_bps, nonce, signature, state, listed_price, \
                               listed_bps";

const PURCHASE_COLUMNS: &str = "listing_key, buyer, model_id, price, owner_part, \
                                contributors_part, tx, block, seen_at";

impl Db {
    /// Stores a listing's newly signed terms: a new row, or new terms for
    /// the row of the same key (its shares and model hash stay, as on
    /// chain).
    pub async fn offer_listing(&self, row: &ListingRow, now: f64) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO listings (listing_key, model_id, owner, model_hash, shares_root, shares, \
             price, contributors_bps, nonce, signature, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) \
             ON CONFLICT (listing_key) DO UPDATE SET price = excluded.price, \
             contributors_bps = excluded.contributors_bps, nonce = excluded.nonce, \
             signature = excluded.signature",
        )
        .bind(&row.listing_key)
        .bind(row.model_id.db())
        .bind(&row.owner)
        .bind(&row.model_hash)
        .bind(&row.shares_root)
        .bind(serde_json::to_string(&row.shares)?)
        .bind(row.terms.price.as_str())
        .bind(i64::from(row.terms.contributors_bps))
        .bind(row.terms.nonce as i64)
        .bind(&row.terms.signature)
        .bind(now)
        .write_once(self)
        .await?;
        Ok(())
    }

    /// The listing with key `key`.
    pub async fn listing(&self, key: &str) -> Result<Option<ListingRow>, StoreError> {
        Ok(sqlx::query_as(&format!(
            "SELECT {LISTING_COLUMNS} FROM listings WHERE listing_key = $1"
        ))
        .bind(key)
        .fetch_optional(&self.pool)
        .await?)
    }

    /// Listings in `state`, newest first.
    pub async fn listings_in(&self, state: ListingState) -> Result<Vec<ListingRow>, StoreError> {
        Ok(sqlx::query_as(&format!(
            "SELECT {LISTING_COLUMNS} FROM listings WHERE state = $1 ORDER BY created_at DESC"
        ))
        .bind(state.as_str())
        .fetch_all(&self.pool)
        .await?)
    }

    /// Listings of `owner`, newest first.
    pub async fn listings_of(&self, owner: &str) -> Result<Vec<ListingRow>, StoreError> {
        Ok(sqlx::query_as(&format!(
            "SELECT {LISTING_COLUMNS} FROM listings WHERE owner = $1 ORDER BY created_at DESC"
        ))
        .bind(owner)
        .fetch_all(&self.pool)
        .await?)
    }

    /// Listings with a share leaf of `account` (its JSON names it; the
    /// caller checks the leaf).
    pub async fn listings_sharing(&self, account: &str) -> Result<Vec<ListingRow>, StoreError> {
        Ok(sqlx::query_as(&format!(
            "SELECT {LISTING_COLUMNS} FROM listings WHERE state <> 'offered' \
             AND shares LIKE $1 ORDER BY created_at DESC"
        ))
        .bind(format!("%\"{account}\"%"))
        .fetch_all(&self.pool)
        .await?)
    }

    /// The chain listed `key` at `price`, giving `bps` to contributors: on
    /// sale.
    pub async fn mark_listed(&self, key: &str, price: &Wei, bps: u16) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE listings SET state = 'listed', listed_price = $2, listed_bps = $3 \
             WHERE listing_key = $1",
        )
        .bind(key)
        .bind(price.as_str())
        .bind(i64::from(bps))
        .write_once(self)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// The chain delisted `key`.
    pub async fn mark_delisted(&self, key: &str) -> Result<(), StoreError> {
        sqlx::query("UPDATE listings SET state = 'delisted' WHERE listing_key = $1")
            .bind(key)
            .write_once(self)
            .await?;
        Ok(())
    }

    /// Records a purchase once; whether it was new. A purchase of a
    /// listing this coordinator did not sign is not recorded.
    pub async fn record_purchase(&self, p: &PurchaseRow) -> Result<bool, StoreError> {
        let done = sqlx::query(&format!(
            "INSERT INTO purchases ({PURCHASE_COLUMNS}) \
             SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9 \
             WHERE EXISTS (SELECT 1 FROM listings WHERE listing_key = $1) \
             ON CONFLICT (listing_key, buyer) DO NOTHING"
        ))
        .bind(&p.listing_key)
        .bind(&p.buyer)
        .bind(p.model_id.db())
        .bind(p.price.as_str())
        .bind(p.owner_part.as_str())
        .bind(p.contributors_part.as_str())
        .bind(&p.tx)
        .bind(p.block as i64)
        .bind(p.seen_at)
        .write_once(self)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Purchases of `key`.
    pub async fn purchases_of_listing(&self, key: &str) -> Result<Vec<PurchaseRow>, StoreError> {
        Ok(sqlx::query_as(&format!(
            "SELECT {PURCHASE_COLUMNS} FROM purchases WHERE listing_key = $1 ORDER BY block"
        ))
        .bind(key)
        .fetch_all(&self.pool)
        .await?)
    }

    /// Purchases by `buyer`, newest first.
    pub async fn purchases_by(&self, buyer: &str) -> Result<Vec<PurchaseRow>, StoreError> {
        Ok(sqlx::query_as(&format!(
            "SELECT {PURCHASE_COLUMNS} FROM purchases WHERE buyer = $1 ORDER BY block DESC"
        ))
        .bind(buyer)
        .fetch_all(&self.pool)
        .await?)
    }

    /// Whether `buyer` has bought model `model`.
    pub async fn has_bought(&self, model: ModelId, buyer: &str) -> Result<bool, StoreError> {
        let n: Int<u64> =
            sqlx::query_scalar("SELECT COUNT(*) FROM purchases WHERE model_id = $1 AND buyer = $2")
                .bind(model.db())
                .bind(buyer)
                .fetch_one(&self.pool)
                .await?;
        Ok(n.get() > 0)
    }

    /// Records a payout once (by its log).
    pub async fn record_market_payout(
        &self,
        at: &LogPlace,
        payout: &MarketPayout,
        account: &str,
        amount: &Wei,
    ) -> Result<(), StoreError> {
        let (kind, listing, index) = match payout {
            MarketPayout::Share { listing, index } => {
                ("share", Some(listing.as_str()), Some(*index as i64))
            }
            MarketPayout::Withdrawal => ("withdrawal", None, None),
        };
        // A share of a listing this coordinator did not sign is none of its
        // accounts' history.
        sqlx::query(
            "INSERT INTO market_payouts (tx, log_index, kind, listing_key, idx, account, amount, \
             block) SELECT $1, $2, $3, $4, $5, $6, $7, $8 WHERE $4 IS NULL \
             OR EXISTS (SELECT 1 FROM listings WHERE listing_key = $4) \
             ON CONFLICT (tx, log_index) DO NOTHING",
        )
        .bind(&at.tx)
        .bind(at.log_index as i64)
        .bind(kind)
        .bind(listing)
        .bind(index)
        .bind(account)
        .bind(amount.as_str())
        .bind(at.block as i64)
        .write_once(self)
        .await?;
        Ok(())
    }
}

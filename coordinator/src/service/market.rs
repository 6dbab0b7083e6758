//! The model market: the coordinator signs an owner's listing (vouching
//! that the owner owns the model, and committing to the contributors'
//! shares of its sales by their verified work on its training job), and
//! shows what the chain says of the listing's sales. The escrow holds the
//! money; the database only mirrors its events (read by `payments`' chain
//! watcher, with the same confirmations), and a purchase seen there is what
//! lets a buyer read a private model.

use std::collections::BTreeMap;
use std::sync::Arc;

use alloy::primitives::{Address, B256, U256, keccak256};
use alloy::rpc::types::Log;
use alloy::sol_types::SolEvent;
use oblivion_chain::escrow::{self, Delisted, Listed, Purchased, ShareClaimed, Withdrawn};
use oblivion_chain::listing::{self, Listing};
use oblivion_chain::{PayoutTree, calls};
use oblivion_protocol::market::{
    ListingRequest, ListingState, ListingView, MAX_CONTRIBUTORS_BPS, MarketAccount, PurchaseView,
    ShareLeaf, ShareView,
};
use oblivion_protocol::{ModelId, Visibility, Wei};
use oblivion_store::{
    Artifacts, Db, ListingRow, ListingTerms, MarketPayout, ModelRow, PurchaseRow, now,
};

use super::chain_link::{ChainLink, chain_err, hex32, log_place};
use super::shared::{JobsVersion, work_by_account};
use crate::blocking::blocking;
use crate::error::{AppError, Failure};

/// Listings, purchases and the shares of sales.
pub struct Market {
    db: Db,
    artifacts: Artifacts,
    chain: Option<Arc<ChainLink>>,
    jobs_version: Arc<JobsVersion>,
}

fn sum(amounts: impl IntoIterator<Item = Wei>) -> U256 {
    amounts.into_iter().map(|w| calls::u256(&w)).sum()
}

impl Market {
    pub(super) fn new(
        db: Db,
        artifacts: Artifacts,
        chain: Option<Arc<ChainLink>>,
        jobs_version: Arc<JobsVersion>,
    ) -> Market {
        Market {
            db,
            artifacts,
            chain,
            jobs_version,
        }
    }

    fn link(&self) -> Result<&ChainLink, AppError> {
        self.chain
            .as_deref()
            .ok_or_else(|| AppError::not_found("this coordinator settles on no chain: no market"))
    }

    /// The escrow key of `model`'s listing by its owner under this
    /// coordinator's key.
    fn key_of(&self, link: &ChainLink, model: &ModelRow) -> Option<String> {
        let owner: Address = model.entry.owner.as_deref()?.parse().ok()?;
        Some(hex32(listing::listing_key(
            owner,
            link.key.address_bytes(),
            model.id,
        )))
    }

    /// `POST /api/models/{id}/listing`: signs `owner`'s terms for `model`
    /// (as `Models::owned` gives it: the owner's, and released), for the
    /// owner's wallet to send to the escrow's `list`.
    pub async fn offer(
        &self,
        owner: &str,
        model: &ModelRow,
        terms: &ListingRequest,
    ) -> Result<ListingView, AppError> {
        let link = self.link()?;
        let id = model.id;
        if model.entry.visibility == Visibility::Public {
            return Err(AppError::unprocessable(format!(
                "visibility: model {id} is public, free to everyone; only a private model is sold"
            ))
            .with_field("visibility"));
        }
        if terms.price.is_zero() {
            return Err(
                AppError::unprocessable("price: must be more than zero").with_field("price")
            );
        }
        if terms.contributors_bps > MAX_CONTRIBUTORS_BPS {
            return Err(AppError::unprocessable(format!(
                "contributors_bps: {} is more than the escrow's cap of {MAX_CONTRIBUTORS_BPS} ({}%)",
                terms.contributors_bps,
                MAX_CONTRIBUTORS_BPS / 100
            ))
            .with_field("contributors_bps"));
        }
        let key = self
            .key_of(link, model)
            .ok_or_else(|| AppError::internal("a model owner that is not an address"))?;
        let (model_hash, shares) = match self.db.listing(&key).await.map_err(AppError::db)? {
            // Fixed once listed: the escrow refuses other shares or weights.
            Some(row) => (row.model_hash, row.shares),
            None => (self.model_hash(model).await?, self.shares(model).await?),
        };
        let least = link.config.min_contributors_bps;
        if !shares.is_empty() && terms.contributors_bps < least {
            return Err(AppError::unprocessable(format!(
                "contributors_bps: model {id}'s contributors get at least {least} basis points \
                 of each sale (min_contributors_bps)"
            ))
            .with_field("contributors_bps"));
        }
        if shares.is_empty() && terms.contributors_bps != 0 {
            return Err(AppError::unprocessable(format!(
                "contributors_bps: model {id} has no paid contributors (no verified work of an \
                 account with a payout address) to give a part to; use 0"
            ))
            .with_field("contributors_bps"));
        }
        let tree = share_tree(&shares)?;
        let shares_root = tree.as_ref().map_or(B256::ZERO, PayoutTree::root);
        let key_bytes: B256 = key.parse().map_err(stored)?;
        let nonce = escrow::at(link.escrow, &link.provider)
            .listings(key_bytes)
            .call()
            .await
            .map_err(chain_away)?
            .nonce;
        let statement = Listing {
            modelId: U256::from(id.0),
            owner: owner.parse().map_err(stored)?,
            modelHash: model_hash.parse().map_err(stored)?,
            price: calls::u256(&terms.price),
            contributorsBps: terms.contributors_bps,
            sharesRoot: shares_root,
            nonce: U256::from(nonce),
        };
        let signature = listing::sign(&link.key, &statement, link.config.chain_id, link.escrow)
            .map_err(|e| AppError::internal(e.to_string()))?;
        let row = ListingRow {
            listing_key: key.clone(),
            model_id: id,
            owner: owner.to_string(),
            model_hash,
            shares_root: hex32(shares_root),
            shares,
            terms: ListingTerms {
                price: terms.price.clone(),
                contributors_bps: terms.contributors_bps,
                nonce: u64::from(nonce),
                signature: format!("0x{}", hex::encode(signature)),
            },
            state: ListingState::Offered,
            listed_price: None,
            listed_bps: None,
        };
        self.db
            .offer_listing(&row, now())
            .await
            .map_err(AppError::db)?;
        let stored = self
            .db
            .listing(&key)
            .await
            .map_err(AppError::db)?
            .ok_or_else(|| AppError::internal("a listing gone once stored"))?;
        self.view(stored, &model.entry.name).await
    }

    /// keccak256 of the model's weights blob: what a settlement of its job
    /// names as `modelHash`, and what its listing sells.
    async fn model_hash(&self, model: &ModelRow) -> Result<String, AppError> {
        let blob = self
            .artifacts
            .get(model.entry.weights_sha)
            .await
            .map_err(AppError::io)?
            .ok_or_else(|| {
                AppError::internal(format!("model {}'s weights are missing", model.id))
            })?;
        blocking(move || Ok(hex32(keccak256(&blob)))).await
    }

    /// The contributors' shares of `model`'s sales: the payout rule over
    /// the verified work of its training job (none for registered weights).
    async fn shares(&self, model: &ModelRow) -> Result<Vec<ShareLeaf>, AppError> {
        let Some(job) = model.job_id else {
            return Ok(Vec::new());
        };
        let work = work_by_account(self.db.paid_work(job).await.map_err(AppError::db)?);
        // Numbered in order, as `PayoutTree::from_shares` numbers its leaves.
        Ok(listing::share_weights(&work)
            .into_iter()
            .enumerate()
            .map(|(i, (account, weight))| ShareLeaf {
                index: i as u64,
                account: format!("{account:#x}"),
                weight: weight.to(),
            })
            .collect())
    }

    /// A stored listing as the API shows it, with its sales.
    async fn view(&self, row: ListingRow, model_name: &str) -> Result<ListingView, AppError> {
        let purchases = self
            .db
            .purchases_of_listing(&row.listing_key)
            .await
            .map_err(AppError::db)?;
        let pool = sum(purchases.iter().map(|p| p.contributors_part.clone()));
        let signer = self
            .chain
            .as_ref()
            .map(|l| l.key.address().to_lowercase())
            .unwrap_or_default();
        Ok(ListingView {
            key: row.listing_key,
            model_id: row.model_id,
            model_name: model_name.to_string(),
            owner: row.owner,
            signer,
            model_hash: row.model_hash,
            price: row.terms.price,
            contributors_bps: row.terms.contributors_bps,
            shares_root: row.shares_root,
            nonce: row.terms.nonce,
            signature: row.terms.signature,
            state: row.state,
            listed_price: row.listed_price.and_then(|p| Wei::parse(&p).ok()),
            listed_bps: row.listed_bps.and_then(|b| u16::try_from(b).ok()),
            sales: purchases.len() as u64,
            pool: calls::wei(pool),
            shares: row.shares,
        })
    }

    /// `model`'s listing by its owner, if the owner ever asked for one.
    pub async fn listing_of(&self, model: &ModelRow) -> Result<Option<ListingView>, AppError> {
        let Some(link) = self.chain.as_deref() else {
            return Ok(None);
        };
        let Some(key) = self.key_of(link, model) else {
            return Ok(None);
        };
        match self.db.listing(&key).await.map_err(AppError::db)? {
            Some(row) => Ok(Some(self.view(row, &model.entry.name).await?)),
            None => Ok(None),
        }
    }

    /// The models on sale (id → listing key).
    pub async fn on_sale(&self) -> Result<BTreeMap<ModelId, String>, AppError> {
        Ok(self
            .db
            .listings_in(ListingState::Listed)
            .await
            .map_err(AppError::db)?
            .into_iter()
            .map(|l| (l.model_id, l.listing_key))
            .collect())
    }

    /// `GET /api/market`: every listing on sale.
    pub async fn listed(&self) -> Result<Vec<ListingView>, AppError> {
        let rows = self
            .db
            .listings_in(ListingState::Listed)
            .await
            .map_err(AppError::db)?;
        self.views(rows).await
    }

    async fn views(&self, rows: Vec<ListingRow>) -> Result<Vec<ListingView>, AppError> {
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            let name = self.model_name(row.model_id).await?;
            out.push(self.view(row, &name).await?);
        }
        Ok(out)
    }

    async fn model_name(&self, id: ModelId) -> Result<String, AppError> {
        Ok(self
            .db
            .model(id)
            .await
            .map_err(AppError::db)?
            .map(|m| m.entry.name)
            .unwrap_or_default())
    }

    /// `GET /api/market/account`: what `account` bought, sells, is owed
    /// and may claim.
    pub async fn account(&self, account: &str) -> Result<MarketAccount, AppError> {
        let mut purchases = Vec::new();
        for p in self.db.purchases_by(account).await.map_err(AppError::db)? {
            let name = self.model_name(p.model_id).await?;
            purchases.push(purchase_view(p, name));
        }
        let listings = self
            .views(self.db.listings_of(account).await.map_err(AppError::db)?)
            .await?;
        // What the escrow owes and has paid, read from it: its own record
        // of every listing of this owner's, whoever signed them.
        let link = self.link()?;
        let escrow = escrow::at(link.escrow, &link.provider);
        let proceeds = escrow
            .proceeds(account.parse().map_err(stored)?)
            .call()
            .await
            .map_err(chain_away)?;
        let mut shares = Vec::new();
        for row in self
            .db
            .listings_sharing(account)
            .await
            .map_err(AppError::db)?
        {
            shares.extend(self.shares_of(account, &row).await?);
        }
        Ok(MarketAccount {
            purchases,
            listings,
            proceeds: calls::wei(proceeds),
            shares,
        })
    }

    /// `account`'s leaves of `row`'s share tree, with proofs and what each
    /// may claim now.
    async fn shares_of(&self, account: &str, row: &ListingRow) -> Result<Vec<ShareView>, AppError> {
        let Some(tree) = share_tree(&row.shares)? else {
            return Ok(Vec::new());
        };
        let link = self.link()?;
        let escrow = escrow::at(link.escrow, &link.provider);
        let key: B256 = row.listing_key.parse().map_err(stored)?;
        let pool = escrow.listings(key).call().await.map_err(chain_away)?.pool;
        let name = self.model_name(row.model_id).await?;
        let mut out = Vec::new();
        for leaf in row.shares.iter().filter(|l| l.account == account) {
            let proof = tree
                .proof(leaf.index)
                .ok_or_else(|| AppError::internal("a share outside its tree"))?;
            let paid = escrow
                .sharePaid(key, U256::from(leaf.index))
                .call()
                .await
                .map_err(chain_away)?;
            let owed = listing::share_owed(pool, leaf.weight);
            out.push(ShareView {
                listing: row.listing_key.clone(),
                model_id: row.model_id,
                model_name: name.clone(),
                leaf: leaf.clone(),
                proof: proof.into_iter().map(hex32).collect(),
                paid: calls::wei(paid),
                claimable: calls::wei(owed.saturating_sub(paid)),
            });
        }
        Ok(out)
    }

    /// Applies one of the market's escrow events (any other is left
    /// alone, as are listings this coordinator did not sign).
    pub(super) async fn apply_log(&self, log: &Log) -> Result<(), String> {
        let Some(topic) = log.topic0() else {
            return Ok(());
        };
        let place = log_place(log);
        if *topic == Listed::SIGNATURE_HASH {
            let e = log.log_decode::<Listed>().map_err(chain_err)?.inner.data;
            let key = hex32(e.listing);
            if self
                .db
                .mark_listed(&key, &calls::wei(e.price), e.contributorsBps)
                .await
                .map_err(chain_err)?
            {
                tracing::info!(listing = key, model = %e.modelId, "model listed");
            }
        } else if *topic == Delisted::SIGNATURE_HASH {
            let e = log.log_decode::<Delisted>().map_err(chain_err)?.inner.data;
            self.db
                .mark_delisted(&hex32(e.listing))
                .await
                .map_err(chain_err)?;
        } else if *topic == Purchased::SIGNATURE_HASH {
            let e = log.log_decode::<Purchased>().map_err(chain_err)?.inner.data;
            let Ok(model) = u64::try_from(e.modelId) else {
                return Ok(());
            };
            let row = PurchaseRow {
                listing_key: hex32(e.listing),
                buyer: format!("{:#x}", e.buyer),
                model_id: ModelId(model),
                price: calls::wei(e.price),
                owner_part: calls::wei(e.ownerPart),
                contributors_part: calls::wei(e.contributorsPart),
                tx: place.tx.clone(),
                block: place.block,
                seen_at: now(),
            };
            if self.db.record_purchase(&row).await.map_err(chain_err)? {
                tracing::info!(model, buyer = row.buyer, "model bought");
                self.jobs_version.bump();
            }
        } else if *topic == ShareClaimed::SIGNATURE_HASH {
            let e = log
                .log_decode::<ShareClaimed>()
                .map_err(chain_err)?
                .inner
                .data;
            let payout = MarketPayout::Share {
                listing: hex32(e.listing),
                index: u64::try_from(e.index).unwrap_or(u64::MAX),
            };
            self.db
                .record_market_payout(
                    &place,
                    &payout,
                    &format!("{:#x}", e.account),
                    &calls::wei(e.amount),
                )
                .await
                .map_err(chain_err)?;
        } else if *topic == Withdrawn::SIGNATURE_HASH {
            let e = log.log_decode::<Withdrawn>().map_err(chain_err)?.inner.data;
            self.db
                .record_market_payout(
                    &place,
                    &MarketPayout::Withdrawal,
                    &format!("{:#x}", e.owner),
                    &calls::wei(e.amount),
                )
                .await
                .map_err(chain_err)?;
        }
        Ok(())
    }
}

fn purchase_view(p: PurchaseRow, model_name: String) -> PurchaseView {
    PurchaseView {
        listing: p.listing_key,
        model_id: p.model_id,
        model_name,
        buyer: p.buyer,
        price: p.price,
        tx: p.tx,
        at: p.seen_at as i64,
    }
}

/// The node could not be read: the same request may succeed later.
fn chain_away(e: impl std::fmt::Display) -> AppError {
    tracing::warn!("{}", chain_err(e));
    AppError::new(
        Failure::Unavailable,
        "the chain's node is unreachable; try again shortly",
    )
}

/// A stored key, address or hash that does not parse: the coordinator
/// wrote it, so a fault of its own.
fn stored(e: impl std::fmt::Display) -> AppError {
    AppError::internal(format!("a stored market value: {e}"))
}

/// The share tree of stored leaves; `None` when there are none.
fn share_tree(shares: &[ShareLeaf]) -> Result<Option<PayoutTree>, AppError> {
    if shares.is_empty() {
        return Ok(None);
    }
    let payouts = shares
        .iter()
        .map(|l| {
            Ok(oblivion_chain::Payout {
                index: l.index,
                account: l.account.parse().map_err(stored)?,
                amount: U256::from(l.weight),
            })
        })
        .collect::<Result<Vec<_>, AppError>>()?;
    PayoutTree::new(payouts)
        .map(Some)
        .map_err(|e| AppError::internal(format!("stored share tree: {e}")))
}

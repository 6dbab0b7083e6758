//! The model market's wire types: a model's listing, a purchase, and what
//! an account has bought, sold and may claim from sales.
//!
//! A listing is signed by the coordinator ([`ListingView::signature`]) and
//! sent to the escrow's `list` by the model's owner; purchases, share
//! claims and withdrawals happen on chain, and the coordinator shows what
//! it has seen there. Amounts in [`Wei`]; keys, hashes and accounts
//! lower-case `0x` hex.

use serde::{Deserialize, Serialize};

use crate::{ModelId, Wei};

/// The most of a sale a listing may give the model's contributors, in
/// basis points (the escrow's `MAX_CONTRIBUTORS_BPS`).
pub const MAX_CONTRIBUTORS_BPS: u16 = 5_000;

/// What the weights of a listing's shares add up to (the escrow's
/// `SHARE_UNIT`).
pub const SHARE_UNIT: u64 = 1_000_000;

/// `POST /api/models/{id}/listing`: the terms an owner asks the coordinator
/// to sign.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListingRequest {
    /// The price of one purchase.
    pub price: Wei,
    /// The contributors' part of each sale, in basis points, at most
    /// [`MAX_CONTRIBUTORS_BPS`].
    pub contributors_bps: u16,
}

/// Where a listing stands on chain.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ListingState {
    /// Signed by the coordinator; the owner has not sent it to the escrow
    /// (or the escrow's `Listed` is not confirmed yet).
    Offered,
    /// On sale.
    Listed,
    /// Taken off sale by its owner; claims go on.
    Delisted,
}

impl ListingState {
    /// The name used in the API and the database.
    pub fn as_str(self) -> &'static str {
        match self {
            ListingState::Offered => "offered",
            ListingState::Listed => "listed",
            ListingState::Delisted => "delisted",
        }
    }

    /// Parses [`ListingState::as_str`]'s output.
    pub fn parse(s: &str) -> Option<ListingState> {
        Some(match s {
            "offered" => ListingState::Offered,
            "listed" => ListingState::Listed,
            "delisted" => ListingState::Delisted,
            _ => return None,
        })
    }
}

/// A model's listing: the signed terms (what the owner's wallet sends to
/// `list`) and what the chain shows of its sales.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListingView {
    /// The escrow's key of the listing: keccak256(abi.encode(owner,
    /// signer, model id)).
    pub key: String,
    /// The model.
    pub model_id: ModelId,
    /// Its name.
    pub model_name: String,
    /// Its owner, the seller.
    pub owner: String,
    /// The coordinator key that signed it.
    pub signer: String,
    /// keccak256 of the weights sold (as a settlement's `modelHash`).
    pub model_hash: String,
    /// The price of the latest signed terms.
    pub price: Wei,
    /// The contributors' part of each sale, in basis points.
    pub contributors_bps: u16,
    /// Root of the contributors' share tree (zero when there are none).
    pub shares_root: String,
    /// The escrow's listing nonce these terms were signed for.
    pub nonce: u64,
    /// The coordinator's EIP-712 signature of the terms, 65 bytes.
    pub signature: String,
    /// Where it stands on chain.
    pub state: ListingState,
    /// The price on chain, once listed (a buyer pays exactly this).
    #[serde(default)]
    pub listed_price: Option<Wei>,
    /// The contributors' part on chain, once listed.
    #[serde(default)]
    pub listed_bps: Option<u16>,
    /// Purchases seen.
    pub sales: u64,
    /// The contributors' pool: their parts of every sale so far.
    pub pool: Wei,
    /// Every share, by verified work on the model's training job.
    #[serde(default)]
    pub shares: Vec<ShareLeaf>,
}

/// One leaf of a listing's share tree.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShareLeaf {
    /// Leaf index.
    pub index: u64,
    /// The contributor.
    pub account: String,
    /// Its weight, out of [`SHARE_UNIT`].
    pub weight: u64,
}

/// A contributor's share of a model's sales, with what the escrow's
/// `claimShare` needs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShareView {
    /// The listing's key.
    pub listing: String,
    /// The model.
    pub model_id: ModelId,
    /// Its name.
    pub model_name: String,
    /// The leaf.
    #[serde(flatten)]
    pub leaf: ShareLeaf,
    /// Merkle proof of the leaf.
    pub proof: Vec<String>,
    /// What the leaf has been paid.
    pub paid: Wei,
    /// What the sales seen so far owe it beyond that:
    /// `pool × weight / SHARE_UNIT − paid`.
    pub claimable: Wei,
}

/// A purchase seen on chain.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PurchaseView {
    /// The listing's key.
    pub listing: String,
    /// The model bought.
    pub model_id: ModelId,
    /// Its name.
    pub model_name: String,
    /// The buyer.
    pub buyer: String,
    /// What was paid.
    pub price: Wei,
    /// The transaction.
    pub tx: String,
    /// When it was seen (Unix seconds).
    pub at: i64,
}

/// `GET /api/market/account`: the signed-in account's side of the market.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MarketAccount {
    /// Models it bought (its library).
    pub purchases: Vec<PurchaseView>,
    /// Its listings.
    pub listings: Vec<ListingView>,
    /// The proceeds of its sales it has not withdrawn.
    pub proceeds: Wei,
    /// Its shares of the sales of models it helped train.
    pub shares: Vec<ShareView>,
}

//! An account's profile (`GET /api/accounts/{address}`): what it created,
//! owns and did, and its history on chain.

use serde::{Deserialize, Serialize};

use crate::api::{ContributorStanding, JobView, ModelView};
use crate::{JobId, ModelId, Wei};

/// An account's profile, as the viewer may see it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AccountProfile {
    /// The account, lower-case hex.
    pub address: String,
    /// Jobs it created that the viewer may read, newest first.
    pub jobs: Vec<JobView>,
    /// Models it owns that the viewer may see, newest first.
    pub models: Vec<ModelView>,
    /// Its standing as a contributor (verified work, rewards, record);
    /// `None` when it has done no verified work, or is in quarantine.
    pub standing: Option<ContributorStanding>,
    /// Its escrow transactions, newest first.
    pub history: Vec<ChainEvent>,
}

/// What an escrow transaction did for the account.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChainEventKind {
    /// It funded a job it created.
    Funded,
    /// A job it created was settled.
    Settled,
    /// It was paid its reward for a job.
    Claimed,
    /// It bought a model.
    Bought,
    /// A model it sells was bought (the amount is its part).
    Sold,
    /// It was paid its share of a model's sales.
    Share,
    /// It withdrew the proceeds of its sales.
    Withdrawal,
}

impl ChainEventKind {
    /// The name used in the API and the database.
    pub fn as_str(self) -> &'static str {
        match self {
            ChainEventKind::Funded => "funded",
            ChainEventKind::Settled => "settled",
            ChainEventKind::Claimed => "claimed",
            ChainEventKind::Bought => "bought",
            ChainEventKind::Sold => "sold",
            ChainEventKind::Share => "share",
            ChainEventKind::Withdrawal => "withdrawal",
        }
    }

    /// Parses [`ChainEventKind::as_str`]'s output.
    pub fn parse(s: &str) -> Option<ChainEventKind> {
        Some(match s {
            "funded" => ChainEventKind::Funded,
            "settled" => ChainEventKind::Settled,
            "claimed" => ChainEventKind::Claimed,
            "bought" => ChainEventKind::Bought,
            "sold" => ChainEventKind::Sold,
            "share" => ChainEventKind::Share,
            "withdrawal" => ChainEventKind::Withdrawal,
            _ => return None,
        })
    }
}

/// One escrow transaction of an account's history.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChainEvent {
    /// What it did.
    pub kind: ChainEventKind,
    /// The job it concerned.
    #[serde(default)]
    pub job: Option<JobId>,
    /// The model it concerned.
    #[serde(default)]
    pub model: Option<ModelId>,
    /// The amount it moved.
    #[serde(default)]
    pub amount: Option<Wei>,
    /// The transaction, `0x` hex.
    pub tx: String,
    /// Its block.
    pub block: u64,
}

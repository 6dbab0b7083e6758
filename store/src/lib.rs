//! Durable state: the database (jobs, rounds, leases, updates, workers,
//! trust, accounts, payments) and the artifact store, with one error type
//! that says whether trying again may help. It knows nothing of
//! scheduling or HTTP: the service above it plans and decides, and the
//! store records what was decided, each change in one guarded,
//! retried transaction.

mod accounts;
mod artifacts;
mod backend;
mod blob_dir;
mod collection;
mod columns;
mod db;
mod error;
mod group_commit;
mod history;
mod inference;
mod jobs;
mod leaderboard;
mod leases;
mod market;
mod migrations;
mod models;
mod payments;
mod rounds;
mod trust;
mod updates;
mod workers;

pub use accounts::Readers;
pub use artifacts::{Artifacts, Stored};
pub use backend::Backend;
pub use collection::COLLECTION_GRACE;
pub use db::{Db, JOBS_CHANNEL, now};
pub use error::{ErrorKind, StoreError};
pub use group_commit::UpdateCommitter;
pub use inference::InferenceResult;
pub use jobs::{JobData, JobRefusal, JobRow, NewJob};
pub use leaderboard::{DayOfWork, Payout, Standing};
pub use leases::{Granted, NewLease};
pub use market::{ListingRow, ListingTerms, LogPlace, MarketPayout, PurchaseRow};
pub use models::{ModelEntry, ModelRow};
pub use payments::{AccountPayout, Deposit, NewPayment, PaymentRow};
pub use rounds::RoundRow;
pub use trust::{Judge, Quarantined, Record, Reputation, UpdateVerdict};
pub use updates::{Acceptance, Accepting, UpdateRefusal, UpdateRow};

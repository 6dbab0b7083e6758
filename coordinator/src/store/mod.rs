//! Durable state: the database and the artifact store.

mod accounts;
mod artifacts;
mod db;
mod migrations;
mod payments;
mod trust;

pub use accounts::Readers;
pub use artifacts::Artifacts;
pub use db::{
    Backend, Db, Granted, JOBS_CHANNEL, JobRefusal, JobRow, RoundRow, UpdateRefusal, UpdateRow, now,
};
pub use payments::{AccountPayout, Deposit, NewPayment, PaymentRow};
pub use trust::{Quarantined, Reputation, UpdateVerdict};

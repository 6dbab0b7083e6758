//! Durable state: the database and the artifact store.

mod artifacts;
mod db;

pub use artifacts::Artifacts;
pub use db::{Db, JobRow, RoundRow, UpdateRow, now};

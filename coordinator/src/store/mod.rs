//! Durable state: the database and the artifact store.

mod artifacts;
mod db;
mod migrations;

pub use artifacts::Artifacts;
pub use db::{
    Backend, Db, Granted, JOBS_CHANNEL, JobRefusal, JobRow, RoundRow, UpdateRefusal, UpdateRow, now,
};

//! The coordinator's scheduling core: what to lease to whom, when a round
//! is complete, and how it is judged and combined. It owns no sockets, no
//! clock and no database: the service passes time in, applies what the
//! database recorded, and sends what the hub decided. So it builds and
//! tests without tokio, sqlx or axum (`cargo tree -p oblivion-scheduler`).

pub mod assembly;
pub mod hub;
pub mod kind;
pub mod replication;
pub mod reputation;
pub mod round;
pub mod verification;
/// The states of leases, which the store records.
pub use oblivion_protocol::states;

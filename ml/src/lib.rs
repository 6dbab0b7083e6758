//! Oblivion's ML core, on burn: the models ([`model`]), local training and
//! evaluation ([`train`]), weights as plain tensors and their federated
//! average ([`params`]), datasets ([`data`]) and model export ([`export`]).
//!
//! It runs natively and in wasm (no threads, files or sockets); the
//! backend is chosen at run time through [`ComputeDevice`].

pub mod data;
mod device;
pub mod export;
pub mod model;
pub mod params;
pub mod train;
pub mod weights;

pub use device::ComputeDevice;

/// What can go wrong in the ML core.
#[derive(Debug, thiserror::Error)]
pub enum MlError {
    /// Input data is malformed.
    #[error("{0}")]
    Data(String),
    /// Weights or an update are malformed or do not fit the model.
    #[error("{0}")]
    Update(String),
    /// The compute backend failed.
    #[error("compute backend: {0}")]
    Backend(String),
}

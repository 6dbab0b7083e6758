//! Oblivion's ML core, on burn: the models ([`model`]), local training and
//! evaluation ([`train`]), weights as plain tensors and their federated
//! average ([`params`]), datasets ([`data`]) and model export ([`export`]).
//!
//! It runs natively and in wasm (no threads, files or sockets); the
//! backend is chosen at run time through [`ComputeDevice`].

pub mod data;
mod device;
pub mod dp;
pub mod export;
pub mod inference;
pub mod model;
pub mod params;
pub mod replicas;
pub mod robust;
pub mod screening;
pub mod train;
pub mod weights;

/// Polls a future to completion where the platform allows it (natively; in
/// wasm only if it is already ready); `None` if it cannot.
pub use burn::tensor::try_read_sync;
pub use device::ComputeDevice;
#[cfg(all(feature = "wgpu", target_family = "wasm"))]
pub use device::init_webgpu;

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

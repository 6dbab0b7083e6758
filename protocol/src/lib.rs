//! The words Oblivion's parts speak to each other: the declarative
//! [`JobSpec`], the worker protocol in [`wire`], and the REST answers in
//! [`api`]. Small and dependency-light, so that every other crate (native
//! or wasm) can share it without cycles.

pub mod aggregation;
pub mod api;
pub mod auth;
mod blob;
mod error;
pub mod ids;
pub mod inference;
pub mod job_privacy;
mod job_spec;
pub mod market;
mod model_ref;
pub mod privacy;
pub mod profile;
pub mod spec;
pub mod states;
pub mod tab;
mod wei;
pub mod wire;

pub use blob::{BlobId, NotBlobId};
pub use error::SpecError;
pub use ids::{JobId, LeaseId, ModelId, WorkerId};
pub use inference::{InferenceSpec, InputsSpec};
pub use job_spec::JobSpec;
pub use model_ref::ModelRef;
pub use spec::{DatasetSpec, LocalWork, ModelSpec, OptimizerSpec, TrainingSpec, Visibility};
pub use wei::{NotWei, Wei};

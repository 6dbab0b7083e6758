//! How a spec names a trained model: a training job's, or the registry's.

use serde::{Deserialize, Serialize};

use crate::ids::{JobId, ModelId};

/// A trained model, as a spec names it (the model an inference job
/// runs, or the weights a training job starts from).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum ModelRef {
    /// The model a completed training job produced.
    Job(JobId),
    /// A model of the registry.
    Model(ModelId),
}

//! Differential privacy for a job, in the spec: client-level, DP-FedAvg
//! style. Every update is clipped to `clip_norm` and Gaussian noise of
//! standard deviation `noise_multiplier × clip_norm` is added to their sum
//! before it is averaged. The noise is set directly or by the ε the whole
//! job may spend, and a Rényi-DP accountant reports the ε spent after every
//! round.

use serde::{Deserialize, Serialize};

use crate::SpecError;

/// Default of [`PrivacySpec::delta`].
pub const DEFAULT_DELTA: f64 = 1e-5;
/// Largest noise multiplier a spec may ask for (beyond it nothing is
/// learnt).
pub const MAX_NOISE_MULTIPLIER: f64 = 1_000.0;

fn default_delta() -> f64 {
    DEFAULT_DELTA
}

/// A job's privacy settings. Exactly one of `noise_multiplier` and
/// `target_epsilon` is given.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrivacySpec {
    /// The L2 bound every update is clipped to (the sensitivity of the
    /// sum to one client).
    pub clip_norm: f64,
    /// Noise standard deviation over `clip_norm`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub noise_multiplier: Option<f64>,
    /// The ε the whole job may spend (at `delta`): the noise is the least
    /// that keeps every round within it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_epsilon: Option<f64>,
    /// The δ of the (ε, δ) guarantee; should be below one over the number
    /// of clients.
    #[serde(default = "default_delta")]
    pub delta: f64,
}

impl PrivacySpec {
    /// Checks every rule; the error names the field.
    pub fn validate(&self) -> Result<(), SpecError> {
        if !(self.clip_norm.is_finite() && self.clip_norm > 0.0) {
            return Err(SpecError::new(
                "privacy.clip_norm",
                "must be a positive number",
            ));
        }
        if !(self.delta > 0.0 && self.delta <= 0.1) {
            return Err(SpecError::new("privacy.delta", "must be in (0, 0.1]"));
        }
        match (self.noise_multiplier, self.target_epsilon) {
            (Some(_), Some(_)) | (None, None) => Err(SpecError::new(
                "privacy.noise_multiplier",
                "give exactly one of noise_multiplier and target_epsilon",
            )),
            (Some(z), None) if !(z.is_finite() && z > 0.0 && z <= MAX_NOISE_MULTIPLIER) => {
                Err(SpecError::new(
                    "privacy.noise_multiplier",
                    format!("must be in (0, {MAX_NOISE_MULTIPLIER}]"),
                ))
            }
            (None, Some(e)) if !(e.is_finite() && e > 0.0) => Err(SpecError::new(
                "privacy.target_epsilon",
                "must be a positive number",
            )),
            _ => Ok(()),
        }
    }
}

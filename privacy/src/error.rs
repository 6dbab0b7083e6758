//! Why an accounting request was refused.

use std::fmt;

/// An input outside the domain where the accountant's bound holds, or a
/// target that no noise level in the searched range meets. Each message
/// names the offending value.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub enum PrivacyError {
    /// The sampling rate was not in (0, 1].
    SamplingRate(f64),
    /// The noise multiplier was negative or not finite.
    NoiseMultiplier(f64),
    /// δ was not in (0, 1).
    Delta(f64),
    /// The target ε was not a positive finite number.
    TargetEpsilon(f64),
    /// Even the largest noise multiplier searched gives a larger ε than the
    /// target.
    TargetTooStrict {
        /// The requested ε.
        target_epsilon: f64,
        /// The largest noise multiplier tried.
        max_noise_multiplier: f64,
    },
    /// Even the smallest noise multiplier searched meets the target, so the
    /// target bounds nothing in practice.
    TargetTooLoose {
        /// The requested ε.
        target_epsilon: f64,
        /// The smallest noise multiplier tried.
        min_noise_multiplier: f64,
    },
}

impl fmt::Display for PrivacyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::SamplingRate(q) => write!(f, "sampling rate must be in (0, 1], got {q}"),
            Self::NoiseMultiplier(s) => {
                write!(f, "noise multiplier must be finite and >= 0, got {s}")
            }
            Self::Delta(d) => write!(f, "delta must be in (0, 1), got {d}"),
            Self::TargetEpsilon(e) => {
                write!(f, "target epsilon must be positive and finite, got {e}")
            }
            Self::TargetTooStrict {
                target_epsilon,
                max_noise_multiplier,
            } => write!(
                f,
                "target epsilon {target_epsilon} is not reached even with noise multiplier \
                 {max_noise_multiplier}"
            ),
            Self::TargetTooLoose {
                target_epsilon,
                min_noise_multiplier,
            } => write!(
                f,
                "target epsilon {target_epsilon} is met even with noise multiplier \
                 {min_noise_multiplier}; it bounds nothing"
            ),
        }
    }
}

impl std::error::Error for PrivacyError {}

//! Differential-privacy accounting for client-level DP-FedAvg.
//!
//! Each training round samples every client independently with probability
//! `q` (Poisson sampling), clips each client's update to a fixed L2 bound and
//! adds Gaussian noise of standard deviation `noise_multiplier × bound` to
//! the sum. One round is thus a Poisson-subsampled Gaussian mechanism, and a
//! job is many of them composed. [`RdpAccountant`] tracks the job's Rényi
//! divergence (Mironov 2017) at a fixed set of orders, using the subsampled
//! Gaussian analysis of Mironov, Talwar and Zhang 2019, and converts it to
//! an (ε, δ) guarantee with the bound of Balle et al. 2020.
//!
//! The numbers match Google's `dp_accounting` (0.6.0) `RdpAccountant` on the
//! same events; `tests/dp_accounting.rs` checks this against the Python
//! package over a grid of settings.

#![warn(missing_docs)]

pub mod contributor;
mod error;
mod rdp;
mod special;

pub use error::PrivacyError;

/// An ε guarantee together with the Rényi order that gave the tightest
/// bound (useful to see whether the default orders cover the setting: an
/// optimum at the first or last order suggests they do not).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Epsilon {
    /// The smallest ε for which (ε, δ)-DP holds; `+∞` if the releases were
    /// not private (zero noise).
    pub epsilon: f64,
    /// The Rényi order α at which that ε was attained.
    pub order: f64,
}

/// Rényi-DP accountant for composed Poisson-subsampled Gaussian releases.
///
/// Composition adds divergences order by order, so the state is one number
/// per order and compositions may arrive in any grouping: composing `n`
/// identical rounds in one call gives the same result as `n` calls, at the
/// cost of one. A caller that keeps the rounds' parameters can therefore
/// rebuild the accountant cheaply instead of storing it.
#[derive(Debug, Clone, PartialEq)]
pub struct RdpAccountant {
    orders: Vec<f64>,
    rdp: Vec<f64>,
}

impl Default for RdpAccountant {
    fn default() -> Self {
        Self::new()
    }
}

impl RdpAccountant {
    /// An accountant with nothing composed yet, tracking dp_accounting's
    /// default orders.
    pub fn new() -> Self {
        let orders = rdp::default_orders();
        let rdp = vec![0.0; orders.len()];
        Self { orders, rdp }
    }

    /// Adds `steps` releases, each of which samples records with probability
    /// `sampling_rate` and adds Gaussian noise of `noise_multiplier` times
    /// the sensitivity. Accumulates across calls.
    ///
    /// A zero noise multiplier is allowed and makes ε infinite: it records
    /// honestly that a round ran without privacy.
    pub fn compose_poisson_gaussian(
        &mut self,
        sampling_rate: f64,
        noise_multiplier: f64,
        steps: u64,
    ) -> Result<(), PrivacyError> {
        check_sampling_rate(sampling_rate)?;
        check_noise_multiplier(noise_multiplier)?;
        if steps == 0 {
            // Nothing released; also avoids 0 × ∞ for noiseless rounds.
            return Ok(());
        }
        let steps = steps as f64;
        for (r, &alpha) in self.rdp.iter_mut().zip(&self.orders) {
            *r += steps * rdp::rdp_poisson_gaussian(sampling_rate, noise_multiplier, alpha);
        }
        Ok(())
    }

    /// The (ε, δ) guarantee of everything composed so far, for the given δ.
    pub fn epsilon(&self, delta: f64) -> Result<Epsilon, PrivacyError> {
        check_delta(delta)?;
        let (epsilon, order) = rdp::epsilon_from_rdp(&self.orders, &self.rdp, delta);
        Ok(Epsilon { epsilon, order })
    }

    /// The Rényi orders tracked, in the same order as [`Self::rdp`].
    pub fn orders(&self) -> &[f64] {
        &self.orders
    }

    /// The accumulated Rényi divergence at each of [`Self::orders`]
    /// (`+∞` where a release was not private or a series did not converge).
    pub fn rdp(&self) -> &[f64] {
        &self.rdp
    }
}

/// ε after `steps` rounds with the given sampling rate and noise multiplier:
/// a one-shot [`RdpAccountant`].
pub fn epsilon_for(
    sampling_rate: f64,
    noise_multiplier: f64,
    steps: u64,
    delta: f64,
) -> Result<f64, PrivacyError> {
    check_delta(delta)?;
    let mut accountant = RdpAccountant::new();
    accountant.compose_poisson_gaussian(sampling_rate, noise_multiplier, steps)?;
    Ok(accountant.epsilon(delta)?.epsilon)
}

/// The noise multipliers [`noise_multiplier_for`] searches between: at the
/// lower end even a single round at any sampling rate costs ε ≈ 5·10⁵, and
/// above the upper end the noise drowns any update.
const MIN_NOISE_MULTIPLIER: f64 = 1.0 / 1024.0;
const MAX_NOISE_MULTIPLIER: f64 = 1024.0 * 1024.0;

/// Relative width at which the search stops; well below the 1e-4 that
/// matters when choosing a noise level.
const NOISE_PRECISION: f64 = 1e-7;

/// The smallest noise multiplier for which `steps` rounds at `sampling_rate`
/// stay within `target_epsilon` at `delta`, to a relative precision of 1e-7.
/// The answer always satisfies the target (it is the upper end of the final
/// bracket).
///
/// ε falls monotonically as the noise grows, so this brackets the answer by
/// doubling or halving from 1 and then bisects. With `steps == 0` nothing is
/// released and the answer is 0.
pub fn noise_multiplier_for(
    target_epsilon: f64,
    sampling_rate: f64,
    steps: u64,
    delta: f64,
) -> Result<f64, PrivacyError> {
    if !(target_epsilon.is_finite() && target_epsilon > 0.0) {
        return Err(PrivacyError::TargetEpsilon(target_epsilon));
    }
    check_sampling_rate(sampling_rate)?;
    check_delta(delta)?;
    if steps == 0 {
        return Ok(0.0);
    }
    let meets = |sigma: f64| -> Result<bool, PrivacyError> {
        Ok(epsilon_for(sampling_rate, sigma, steps, delta)? <= target_epsilon)
    };

    // Bracket: ε(lo) > target ≥ ε(hi).
    let (mut lo, mut hi) = if meets(1.0)? {
        let mut hi = 1.0;
        loop {
            let lo = hi / 2.0;
            if lo < MIN_NOISE_MULTIPLIER {
                return Err(PrivacyError::TargetTooLoose {
                    target_epsilon,
                    min_noise_multiplier: hi,
                });
            }
            if !meets(lo)? {
                break (lo, hi);
            }
            hi = lo;
        }
    } else {
        let mut lo = 1.0;
        loop {
            let hi = lo * 2.0;
            if hi > MAX_NOISE_MULTIPLIER {
                return Err(PrivacyError::TargetTooStrict {
                    target_epsilon,
                    max_noise_multiplier: lo,
                });
            }
            if meets(hi)? {
                break (lo, hi);
            }
            lo = hi;
        }
    };

    while hi - lo > NOISE_PRECISION * hi {
        let mid = 0.5 * (lo + hi);
        if meets(mid)? {
            hi = mid;
        } else {
            lo = mid;
        }
    }
    Ok(hi)
}

fn check_sampling_rate(q: f64) -> Result<(), PrivacyError> {
    // Written so that NaN fails too.
    if q > 0.0 && q <= 1.0 {
        Ok(())
    } else {
        Err(PrivacyError::SamplingRate(q))
    }
}

fn check_noise_multiplier(sigma: f64) -> Result<(), PrivacyError> {
    // Infinite noise would meet ∞ × 0 inside the series; it is also useless.
    if sigma.is_finite() && sigma >= 0.0 {
        Ok(())
    } else {
        Err(PrivacyError::NoiseMultiplier(sigma))
    }
}

fn check_delta(delta: f64) -> Result<(), PrivacyError> {
    if delta > 0.0 && delta < 1.0 {
        Ok(())
    } else {
        Err(PrivacyError::Delta(delta))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_rel(got: f64, want: f64, rel: f64) {
        assert!(
            (got - want).abs() <= rel * want.abs(),
            "got {got}, want {want} (relative tolerance {rel})"
        );
    }

    /// Values printed by dp_accounting 0.6.0's `RdpAccountant` for
    /// `SelfComposedDpEvent(PoissonSampledDpEvent(q, GaussianDpEvent(σ)), steps)`.
    #[test]
    fn known_values_from_dp_accounting() {
        // (q, σ, steps, δ, ε, optimal order)
        let cases = [
            // The classic DP-SGD setting: 1% sampling, ~100 epochs.
            (0.01, 1.1, 10_000, 1e-5, 5.632_010_670_081_592, 4.7),
            (0.01, 1.1, 1, 1e-5, 0.775_103_125_587_970_7, 12.0),
            (0.001, 5.0, 1, 1e-5, 0.019_494_313_489_209_36, 256.0),
            // No subsampling.
            (1.0, 1.0, 1, 1e-5, 4.728_507_067_217_623, 5.4),
            // Some fractional series do not converge here; those orders
            // are dropped on both sides.
            (0.1, 0.3, 10, 1e-5, 41.171_466_168_625_64, 1.4),
        ];
        for (q, sigma, steps, delta, eps, order) in cases {
            let mut accountant = RdpAccountant::new();
            accountant
                .compose_poisson_gaussian(q, sigma, steps)
                .unwrap();
            let got = accountant.epsilon(delta).unwrap();
            assert_rel(got.epsilon, eps, 1e-9);
            assert_eq!(got.order, order, "optimal order for q={q} σ={sigma}");
        }
    }

    #[test]
    fn zero_noise_is_not_private() {
        let empty = RdpAccountant::new();
        let mut noiseless = empty.clone();
        noiseless.compose_poisson_gaussian(0.01, 0.0, 10).unwrap();
        assert_eq!(noiseless.epsilon(1e-5).unwrap().epsilon, f64::INFINITY);
        // Nothing composed: nothing leaked.
        assert_eq!(empty.epsilon(1e-5).unwrap().epsilon, 0.0);
    }

    #[test]
    fn more_steps_cost_more_epsilon() {
        let eps: Vec<f64> = [1, 10, 100, 1000, 10_000]
            .iter()
            .map(|&steps| epsilon_for(0.01, 1.0, steps, 1e-5).unwrap())
            .collect();
        assert!(eps.windows(2).all(|w| w[0] < w[1]), "{eps:?}");
    }

    #[test]
    fn more_noise_costs_less_epsilon() {
        let eps: Vec<f64> = [0.5, 0.8, 1.0, 2.0, 5.0]
            .iter()
            .map(|&sigma| epsilon_for(0.05, sigma, 100, 1e-5).unwrap())
            .collect();
        assert!(eps.windows(2).all(|w| w[0] > w[1]), "{eps:?}");
    }

    #[test]
    fn composition_accumulates_across_calls() {
        let mut rounds = RdpAccountant::new();
        for _ in 0..5 {
            rounds.compose_poisson_gaussian(0.02, 1.2, 20).unwrap();
        }
        rounds.compose_poisson_gaussian(1.0, 3.0, 1).unwrap();
        let mut grouped = RdpAccountant::new();
        grouped.compose_poisson_gaussian(0.02, 1.2, 100).unwrap();
        grouped.compose_poisson_gaussian(1.0, 3.0, 1).unwrap();
        let (a, b) = (
            rounds.epsilon(1e-6).unwrap(),
            grouped.epsilon(1e-6).unwrap(),
        );
        assert_rel(a.epsilon, b.epsilon, 1e-12);
        assert_eq!(a.order, b.order);
        assert!(a.epsilon > epsilon_for(0.02, 1.2, 100, 1e-6).unwrap());
    }

    #[test]
    fn noise_multiplier_round_trip() {
        for (target, q, steps) in [(1.0, 0.01, 1000), (8.0, 0.1, 100), (3.0, 1.0, 1)] {
            let sigma = noise_multiplier_for(target, q, steps, 1e-5).unwrap();
            let eps = epsilon_for(q, sigma, steps, 1e-5).unwrap();
            assert!(eps <= target, "ε({sigma}) = {eps} > {target}");
            // Slightly less noise no longer meets the target.
            let below = epsilon_for(q, sigma * (1.0 - 1e-4), steps, 1e-5).unwrap();
            assert!(
                below > target,
                "ε({}) = {below} ≤ {target}",
                sigma * (1.0 - 1e-4)
            );
        }
    }

    #[test]
    fn noise_multiplier_for_zero_steps_is_zero() {
        assert_eq!(noise_multiplier_for(1.0, 0.1, 0, 1e-5), Ok(0.0));
    }

    #[test]
    fn unreachable_targets_are_errors() {
        assert!(matches!(
            noise_multiplier_for(1e-12, 1.0, 1000, 1e-5),
            Err(PrivacyError::TargetTooStrict { .. })
        ));
        assert!(matches!(
            noise_multiplier_for(1e9, 0.01, 1, 1e-5),
            Err(PrivacyError::TargetTooLoose { .. })
        ));
    }

    #[test]
    fn invalid_inputs_are_errors() {
        let mut acc = RdpAccountant::new();
        for q in [0.0, -0.1, 1.5, f64::NAN] {
            assert!(matches!(
                acc.compose_poisson_gaussian(q, 1.0, 1),
                Err(PrivacyError::SamplingRate(_))
            ));
        }
        for sigma in [-1.0, f64::INFINITY, f64::NAN] {
            assert!(matches!(
                acc.compose_poisson_gaussian(0.1, sigma, 1),
                Err(PrivacyError::NoiseMultiplier(_))
            ));
        }
        for delta in [0.0, 1.0, -1e-5, f64::NAN] {
            assert!(matches!(acc.epsilon(delta), Err(PrivacyError::Delta(_))));
            assert!(matches!(
                epsilon_for(0.1, 1.0, 1, delta),
                Err(PrivacyError::Delta(_))
            ));
        }
        for target in [0.0, -1.0, f64::INFINITY, f64::NAN] {
            assert!(matches!(
                noise_multiplier_for(target, 0.1, 10, 1e-5),
                Err(PrivacyError::TargetEpsilon(_))
            ));
        }
        // A refused composition leaves the state alone.
        assert_eq!(acc, RdpAccountant::new());
        assert_eq!(
            PrivacyError::SamplingRate(1.5).to_string(),
            "sampling rate must be in (0, 1], got 1.5"
        );
    }
}

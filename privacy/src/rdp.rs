//! Rényi divergences of the Poisson-subsampled Gaussian mechanism and their
//! conversion to (ε, δ).
//!
//! This follows `dp_accounting.rdp.rdp_privacy_accountant` (version 0.6.0)
//! step for step, including its iteration limit and its special cases, so
//! that the two report the same ε for the same events.

use crate::special::{log_add, log_comb, log_erfc};

/// The Rényi orders α at which the divergence is tracked: dense near 1,
/// where small-ε accounting finds its optimum, then integers, then a few
/// large orders for very noisy settings. Identical to dp_accounting's
/// `DEFAULT_RDP_ORDERS`.
pub(crate) fn default_orders() -> Vec<f64> {
    // `1 + x / 10` rounds exactly as the Python expression does, so the
    // orders that are whole numbers (2.0, 3.0, …) take the integer path there
    // and here alike.
    let fine = (1..100).map(|x| 1.0 + f64::from(x) / 10.0);
    let integers = (11..64).map(f64::from);
    let large = [128.0, 256.0, 512.0, 1024.0];
    fine.chain(integers).chain(large).collect()
}

/// RDP at order `alpha` of one Poisson-subsampled Gaussian release, with
/// sampling rate `q` in (0, 1] and noise multiplier `sigma` ≥ 0.
pub(crate) fn rdp_poisson_gaussian(q: f64, sigma: f64, alpha: f64) -> f64 {
    if sigma == 0.0 {
        // No noise: the release is not private at any order.
        return f64::INFINITY;
    }
    if q == 1.0 {
        // No subsampling: the plain Gaussian mechanism, α/(2σ²).
        return alpha / (2.0 * sigma * sigma);
    }
    log_a(q, sigma, alpha) / (alpha - 1.0)
}

/// `ln A_α`, where `A_α` is the α-th moment of the likelihood ratio between
/// the subsampled mixture and the unshifted Gaussian (Mironov, Talwar and
/// Zhang 2019); the RDP at order α is `ln A_α / (α − 1)`.
fn log_a(q: f64, sigma: f64, alpha: f64) -> f64 {
    if alpha.fract() == 0.0 {
        // Exact: orders here are at most 1024, far below u64's range.
        log_a_int(q, sigma, alpha as u64)
    } else {
        log_a_frac(q, sigma, alpha)
    }
}

/// `ln A_α` for integer α: the binomial expansion of `((1−q) + q·e^{…})^α`
/// under the Gaussian, a finite sum of α + 1 terms.
fn log_a_int(q: f64, sigma: f64, alpha: u64) -> f64 {
    let log_q = q.ln();
    let log_1mq = (-q).ln_1p();
    let two_var = 2.0 * sigma * sigma;
    let a = alpha as f64;
    let mut log_sum = f64::NEG_INFINITY;
    for i in 0..=alpha {
        let i = i as f64;
        let log_coef = log_comb(a, i) + i * log_q + (a - i) * log_1mq;
        log_sum = log_add(log_sum, log_coef + (i * i - i) / two_var);
    }
    log_sum
}

/// The series for fractional α is infinite; the reference gives up after
/// this many terms and drops the order (its RDP becomes +∞).
const MAX_STEPS_LOG_A_FRAC: u32 = 1000;

/// `ln A_α` for fractional α, as in Section 3.3 of Mironov, Talwar and Zhang
/// (arXiv:1908.10530): the integral is split at `z0`, where the two
/// densities' ratio crosses one, and each half becomes a convergent series of
/// generalised binomial terms weighted by Gaussian tail masses.
fn log_a_frac(q: f64, sigma: f64, alpha: f64) -> f64 {
    let var = sigma * sigma;
    let z0 = var * (1.0 / q - 1.0).ln() + 0.5;
    let log_q = q.ln();
    let log_1mq = (-q).ln_1p();
    let log_half = 0.5f64.ln();
    let sqrt2_sigma = std::f64::consts::SQRT_2 * sigma;

    let (mut log_a0, mut log_a1) = (f64::NEG_INFINITY, f64::NEG_INFINITY);
    let (mut last_s0, mut last_s1) = (f64::NEG_INFINITY, f64::NEG_INFINITY);
    for i in 0..MAX_STEPS_LOG_A_FRAC {
        let i = f64::from(i);
        let log_coef = log_comb(alpha, i);
        let j = alpha - i;

        let log_t0 = log_coef + i * log_q + j * log_1mq;
        let log_t1 = log_coef + j * log_q + i * log_1mq;

        let log_e0 = log_half + log_erfc((i - z0) / sqrt2_sigma);
        let log_e1 = log_half + log_erfc((z0 - j) / sqrt2_sigma);

        let log_s0 = log_t0 + (i * i - i) / (2.0 * var) + log_e0;
        let log_s1 = log_t1 + (j * j - j) / (2.0 * var) + log_e1;

        log_a0 = log_add(log_a0, log_s0);
        log_a1 = log_add(log_a1, log_s1);
        let total = log_add(log_a0, log_a1);

        // Stop once both halves' terms are falling and negligible (below
        // e⁻³⁰ of the total).
        if log_s0 < last_s0 && log_s1 < last_s1 && log_s0.max(log_s1) < total - 30.0 {
            return total;
        }
        last_s0 = log_s0;
        last_s1 = log_s1;
    }
    // Not converged: exclude this order rather than report a wrong bound.
    f64::INFINITY
}

/// The smallest ε such that the accumulated RDP curve implies (ε, δ)-DP,
/// with the order that attains it.
///
/// Uses the conversion of Balle et al. 2020 (arXiv:2004.00010, Prop. 12),
/// `ε = r + ln(1 − 1/α) − ln(δ·α)/(α − 1)`, which is tighter than Mironov's
/// original `r − ln δ/(α − 1)`; an order whose divergence is so small that
/// the KL bound `δ ≥ √(1 − e^{−r})` already holds gives ε = 0. Orders at or
/// below 1.01 are skipped, where the formula is numerically unstable.
/// `delta` must lie in (0, 1).
pub(crate) fn epsilon_from_rdp(orders: &[f64], rdp: &[f64], delta: f64) -> (f64, f64) {
    // If every order gives +∞, the first order is reported, as numpy's
    // argmin does.
    let mut best = (f64::INFINITY, orders.first().copied().unwrap_or(f64::NAN));
    for (&a, &r) in orders.iter().zip(rdp) {
        let eps = if r < 0.0 {
            // Only reachable through rounding in extreme settings; the
            // reference treats it as no privacy loss at this order.
            0.0
        } else if delta * delta + (-r).exp_m1() > 0.0 {
            0.0
        } else if a > 1.01 {
            r + (-1.0 / a).ln_1p() - (delta * a).ln() / (a - 1.0)
        } else {
            f64::INFINITY
        };
        // Strictly smaller: ties keep the first order, as argmin does.
        if eps < best.0 {
            best = (eps, a);
        }
    }
    (best.0.max(0.0), best.1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_orders_match_the_reference_list() {
        let orders = default_orders();
        assert_eq!(orders.len(), 99 + 53 + 4);
        assert_eq!(orders[0], 1.1);
        assert_eq!(orders[9], 2.0);
        assert_eq!(orders[98], 10.9);
        assert_eq!(orders[99], 11.0);
        assert_eq!(orders[151], 63.0);
        assert_eq!(orders[155], 1024.0);
        // Exactly the whole numbers take the integer path.
        let whole = orders.iter().filter(|a| a.fract() == 0.0).count();
        assert_eq!(whole, 9 + 53 + 4);
    }

    #[test]
    fn integer_order_without_subsampling_limit() {
        // At q → 1 the subsampled divergence tends to the Gaussian α/(2σ²).
        let (sigma, alpha) = (1.5, 4.0);
        let got = rdp_poisson_gaussian(1.0 - 1e-12, sigma, alpha);
        let want = alpha / (2.0 * sigma * sigma);
        assert!((got - want).abs() < 1e-9, "{got} vs {want}");
    }

    #[test]
    fn fractional_orders_interpolate_integer_neighbours() {
        // The divergence is increasing in α, so a fractional order lies
        // between its integer neighbours: a check that the two series agree.
        let (q, sigma) = (0.05, 1.0);
        let lo = rdp_poisson_gaussian(q, sigma, 3.0);
        let mid = rdp_poisson_gaussian(q, sigma, 3.5);
        let hi = rdp_poisson_gaussian(q, sigma, 4.0);
        assert!(lo < mid && mid < hi, "{lo} < {mid} < {hi}");
    }

    #[test]
    fn small_divergence_gives_zero_epsilon() {
        let orders = default_orders();
        let rdp = vec![0.0; orders.len()];
        assert_eq!(epsilon_from_rdp(&orders, &rdp, 1e-5), (0.0, 1.1));
    }
}

//! Log-space arithmetic and the special functions the accountant needs.
//!
//! The Rényi divergences of the subsampled Gaussian are sums of terms that
//! overflow `f64` long before the sum itself does (e.g. `exp(α²/2σ²)` at
//! α = 1024), so every sum is carried as its logarithm.

/// `ln(eˣ + eʸ)` without forming either exponential.
pub(crate) fn log_add(log_x: f64, log_y: f64) -> f64 {
    let (a, b) = if log_x < log_y {
        (log_x, log_y)
    } else {
        (log_y, log_x)
    };
    if a == f64::NEG_INFINITY {
        // Adding zero.
        return b;
    }
    // eᵃ + eᵇ = (eᵃ⁻ᵇ + 1)·eᵇ, with a − b ≤ 0 so the exponential cannot overflow.
    (a - b).exp().ln_1p() + b
}

/// `ln C(n, k)`, the generalised binomial coefficient through the gamma
/// function, so that `n` may be fractional.
///
/// For fractional `n` and `k > n + 1` the coefficient is negative; like the
/// reference implementation this returns the logarithm of its magnitude
/// (`lgamma` is `ln |Γ|`).
pub(crate) fn log_comb(n: f64, k: f64) -> f64 {
    libm::lgamma(n + 1.0) - libm::lgamma(k + 1.0) - libm::lgamma(n - k + 1.0)
}

/// Above this `erfc` comes within a few orders of magnitude of the smallest
/// normal `f64` (erfc(26) ≈ 5·10⁻²⁹⁶) and soon loses relative precision in
/// subnormals, so the asymptotic series takes over.
const ERFC_TAIL: f64 = 26.0;

/// `ln erfc(x)`, accurate also far in the tail where `erfc(x)` underflows.
pub(crate) fn log_erfc(x: f64) -> f64 {
    if x < ERFC_TAIL {
        return libm::erfc(x).ln();
    }
    // The Laurent series of ln(erfc(x)·x·√π·e^{x²}) at infinity. At x ≥ 26
    // the first omitted term (≈ 25·x⁻¹⁰) is below 2·10⁻¹³.
    let x2 = x * x;
    let inv2 = 1.0 / x2;
    -0.5 * std::f64::consts::PI.ln() - x.ln() - x2
        + inv2 * (-0.5 + inv2 * (0.625 + inv2 * (-37.0 / 24.0 + inv2 * (353.0 / 64.0))))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_close(got: f64, want: f64, rel: f64) {
        assert!(
            (got - want).abs() <= rel * want.abs(),
            "got {got}, want {want} (relative tolerance {rel})"
        );
    }

    #[test]
    fn log_add_matches_direct_sum() {
        assert_close(log_add(1.0f64.ln(), 2.0f64.ln()), 3.0f64.ln(), 1e-15);
        assert_eq!(log_add(f64::NEG_INFINITY, 0.5), 0.5);
        assert_eq!(log_add(0.5, f64::NEG_INFINITY), 0.5);
        // Far beyond what exp can represent.
        assert_close(log_add(1000.0, 1000.0), 1000.0 + 2.0f64.ln(), 1e-15);
    }

    #[test]
    fn log_comb_of_integers_and_fractions() {
        assert_close(log_comb(10.0, 3.0), 120.0f64.ln(), 1e-13);
        // C(2.5, 1) = 2.5.
        assert_close(log_comb(2.5, 1.0), 2.5f64.ln(), 1e-13);
        // C(2.5, 4) = 2.5·1.5·0.5·(−0.5)/24; the magnitude is returned.
        assert_close(
            log_comb(2.5, 4.0),
            (2.5 * 1.5 * 0.5 * 0.5 / 24.0f64).ln(),
            1e-12,
        );
    }

    #[test]
    fn log_erfc_across_the_range() {
        // Reference values from mpmath at 30 digits.
        let cases = [
            (-3.0, 0.693_136_135_250_446_8),
            (0.0, 0.0),
            (1.0, -1.849_605_509_933_248_2),
            (5.0, -27.200_889_545_537_434),
            (25.9, -674.637_351_895_319_2),
            (26.1, -685.045_032_903_309_4),
            (100.0, -10_005.177_585_122_664),
            (1e4, -100_000_009.782_705_32),
        ];
        for (x, want) in cases {
            let got = log_erfc(x);
            assert!(
                (got - want).abs() <= 1e-12 * want.abs().max(1.0),
                "log_erfc({x}) = {got}, want {want}"
            );
        }
    }
}

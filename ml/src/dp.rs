//! The differentially private combination of a round (DP-FedAvg, client
//! level): each update clipped to a fixed bound, their sum plus Gaussian
//! noise of standard deviation `noise_multiplier × bound` in every
//! coordinate, divided by a fixed number of clients (so that the divisor
//! reveals nothing about who took part).
//!
//! In federated mode the contributor does the same to its own update
//! before it leaves ([`privatize`]): then the coordinator never sees an
//! unclipped or noiseless update, and everything it computes from them is
//! post-processing.
//!
//! The noise source is passed in: the coordinator draws it from a
//! cryptographic generator (noise a participant could predict, it could
//! subtract), tests from a seeded one.

use crate::MlError;
use crate::params::{NamedTensor, Params};
use crate::robust::clip;

/// `(Σ clip(u, bound) + N(0, (noise_multiplier · bound)²)) / clients`.
/// `gaussian` yields independent standard normal values.
pub fn noised_mean(
    updates: &[&Params],
    layout: &Params,
    bound: f64,
    noise_multiplier: f64,
    clients: f64,
    gaussian: &mut dyn FnMut() -> f64,
) -> Result<Params, MlError> {
    if !(clients > 0.0 && bound > 0.0 && noise_multiplier >= 0.0) {
        return Err(MlError::Update(format!(
            "noised mean: clients {clients}, bound {bound} and noise {noise_multiplier} \
             must be positive"
        )));
    }
    let mut sums: Vec<Vec<f64>> = layout
        .tensors
        .iter()
        .map(|t| vec![0.0; t.values.len()])
        .collect();
    for u in updates {
        layout.check_layout(u)?;
        let clipped = clip(u, bound);
        for (sum, t) in sums.iter_mut().zip(&clipped.tensors) {
            for (s, v) in sum.iter_mut().zip(&t.values) {
                *s += f64::from(*v);
            }
        }
    }
    let deviation = noise_multiplier * bound;
    Ok(Params {
        tensors: layout
            .tensors
            .iter()
            .zip(sums)
            .map(|(t, sum)| NamedTensor {
                name: t.name.clone(),
                shape: t.shape.clone(),
                values: sum
                    .into_iter()
                    .map(|s| ((s + deviation * gaussian()) / clients) as f32)
                    .collect(),
            })
            .collect(),
    })
}

/// Federated mode: a contributor's update clipped to `bound`, plus
/// Gaussian noise of standard deviation `deviation` in every coordinate.
/// `gaussian` yields independent standard normal values.
pub fn privatize(
    update: &Params,
    bound: f64,
    deviation: f64,
    gaussian: &mut dyn FnMut() -> f64,
) -> Params {
    let mut out = clip(update, bound);
    for t in &mut out.tensors {
        for v in &mut t.values {
            *v = (f64::from(*v) + deviation * gaussian()) as f32;
        }
    }
    out
}

/// Standard normal values from the operating system's (or browser's)
/// cryptographic generator, by Box–Muller: noise a participant could
/// predict, it could subtract. Random bytes are drawn in blocks.
///
/// Noise sources are `FnMut() -> f64`, so [`SecureGaussian::draw`] cannot
/// fail: it keeps the first failure, and [`SecureGaussian::finish`] reports
/// it. Whatever was computed from the draws must then be thrown away.
pub struct SecureGaussian {
    block: Vec<u8>,
    used: usize,
    failure: Option<MlError>,
}

impl Default for SecureGaussian {
    fn default() -> Self {
        SecureGaussian::new()
    }
}

impl SecureGaussian {
    /// A generator with nothing drawn yet.
    pub fn new() -> SecureGaussian {
        SecureGaussian {
            block: vec![0; 4096],
            used: 4096,
            failure: None,
        }
    }

    /// The next standard normal value, or NaN once randomness failed (see
    /// [`SecureGaussian::finish`]).
    pub fn draw(&mut self) -> f64 {
        if self.failure.is_some() {
            return f64::NAN;
        }
        self.sample().unwrap_or_else(|e| {
            self.failure = Some(e);
            f64::NAN
        })
    }

    /// Whether every draw was random: the error when one was not.
    pub fn finish(self) -> Result<(), MlError> {
        self.failure.map_or(Ok(()), Err)
    }

    fn uniform(&mut self) -> Result<f64, MlError> {
        if self.used + 8 > self.block.len() {
            getrandom::fill(&mut self.block)
                .map_err(|e| MlError::Backend(format!("no secure randomness: {e}")))?;
            self.used = 0;
        }
        let mut word = [0u8; 8];
        word.copy_from_slice(&self.block[self.used..self.used + 8]);
        self.used += 8;
        // 53 random bits in [0, 1).
        Ok((u64::from_le_bytes(word) >> 11) as f64 / (1u64 << 53) as f64)
    }

    /// The next standard normal value.
    pub fn sample(&mut self) -> Result<f64, MlError> {
        let u = 1.0 - self.uniform()?;
        let v = self.uniform()?;
        Ok((-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(values: &[f32]) -> Params {
        Params::vector(values)
    }

    #[test]
    fn without_noise_it_is_the_clipped_mean_over_all_clients() {
        let (a, b) = (p(&[3.0, 4.0]), p(&[0.3, 0.4]));
        let out = noised_mean(&[&a, &b], &a, 1.0, 0.0, 4.0, &mut || 0.0).unwrap();
        // a is clipped to norm 1: (0.6, 0.8); plus b; over four clients.
        let want = [(0.6 + 0.3) / 4.0, (0.8 + 0.4) / 4.0];
        for (got, want) in out.tensors[0].values.iter().zip(want) {
            assert!((got - want).abs() < 1e-6, "{got} vs {want}");
        }
    }

    #[test]
    fn the_noise_has_the_promised_deviation() {
        let zero = p(&[0.0; 4_000]);
        // A deterministic stand-in for a normal source: ±1 alternating has
        // variance 1.
        let mut sign = 1.0;
        let mut source = || {
            sign = -sign;
            sign
        };
        let out = noised_mean(&[&zero], &zero, 2.0, 1.5, 3.0, &mut source).unwrap();
        let rms = (out.tensors[0].values.iter().map(|v| v * v).sum::<f32>() / 4_000.0).sqrt();
        assert!((rms - 1.0).abs() < 1e-6, "{rms}: 1.5 × 2 / 3");
    }

    #[test]
    fn a_contributor_sends_its_update_clipped_and_noised() {
        let u = p(&[3.0, 4.0]);
        let quiet = privatize(&u, 1.0, 0.5, &mut || 0.0);
        assert!((quiet.l2_norm() - 1.0).abs() < 1e-6);
        let mut secure = SecureGaussian::new();
        let noisy = privatize(&p(&[0.0; 20_000]), 1.0, 0.5, &mut || secure.draw());
        secure.finish().unwrap();
        let values = &noisy.tensors[0].values;
        let mean = values.iter().map(|&v| f64::from(v)).sum::<f64>() / 20_000.0;
        let sd = (values.iter().map(|&v| f64::from(v).powi(2)).sum::<f64>() / 20_000.0).sqrt();
        assert!(
            mean.abs() < 0.02 && (sd - 0.5).abs() < 0.02,
            "mean {mean}, sd {sd}"
        );
    }

    #[test]
    fn nonsense_settings_are_refused() {
        let a = p(&[1.0]);
        assert!(noised_mean(&[&a], &a, 1.0, 1.0, 0.0, &mut || 0.0).is_err());
        assert!(noised_mean(&[&a], &a, 0.0, 1.0, 1.0, &mut || 0.0).is_err());
    }
}

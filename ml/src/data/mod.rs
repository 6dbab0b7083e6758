//! Datasets: loading (IDX, CSV), splitting, normalising, and the compact
//! shard encoding that travels from the coordinator to workers.

mod csv;
mod idx;
mod local;
mod shard;

pub use csv::{csv_columns, parse_csv};
pub use idx::{parse_idx_images, parse_idx_labels};
pub use local::{LocalData, MAX_LOCAL_BYTES, read_local};
pub use shard::{decode_shard, encode_shard};

use crate::MlError;

/// Labelled samples, row-major: sample `i` is
/// `features[i * sample_len() .. (i + 1) * sample_len()]`.
#[derive(Clone, Debug, PartialEq)]
pub struct Dataset {
    /// Shape of one sample: `[1, 28, 28]` for images, `[F]` for tabular rows.
    pub shape: Vec<usize>,
    /// All features, `len() * sample_len()` values.
    pub features: Vec<f32>,
    /// Class index of each sample.
    pub labels: Vec<u32>,
    /// Number of classes (labels are below it).
    pub classes: usize,
}

/// Feature mean and standard deviation, per column (tabular data): the
/// protocol's type, since federated leases carry it to contributors.
pub use oblivion_protocol::wire::FeatureScaling;

impl Dataset {
    /// Values per sample.
    pub fn sample_len(&self) -> usize {
        self.shape.iter().product()
    }

    /// Number of samples.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether there are no samples.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Whether samples are images (`[channels, height, width]`).
    pub fn is_image(&self) -> bool {
        self.shape.len() == 3
    }

    /// Builds a dataset from images and labels parsed from IDX files.
    pub fn from_idx(images: &[u8], labels: &[u8]) -> Result<Dataset, MlError> {
        Dataset::from_idx_within(images, labels, usize::MAX)
    }

    /// [`Dataset::from_idx`], refusing before it decodes any pixel when the
    /// decoded features (four bytes a pixel) would exceed `max_bytes`.
    pub fn from_idx_within(
        images: &[u8],
        labels: &[u8],
        max_bytes: usize,
    ) -> Result<Dataset, MlError> {
        let (shape, pixels) = parse_idx_images(images)?;
        let decoded = pixels.len().saturating_mul(std::mem::size_of::<f32>());
        if decoded > max_bytes {
            return Err(MlError::Data(format!(
                "the images would take {decoded} bytes decoded, over the limit of {max_bytes}"
            )));
        }
        let labels = parse_idx_labels(labels)?;
        let n = labels.len();
        let per = shape.iter().product::<usize>();
        if pixels.len() != n * per {
            return Err(MlError::Data(format!(
                "{} images but {n} labels",
                pixels.len() / per.max(1)
            )));
        }
        let classes = labels.iter().map(|&l| l as usize + 1).max().unwrap_or(0);
        Ok(Dataset {
            shape,
            features: pixels.into_iter().map(|p| f32::from(p) / 255.0).collect(),
            labels,
            classes,
        })
    }

    /// The samples at `indices`, in that order.
    pub fn select(&self, indices: &[usize]) -> Dataset {
        let per = self.sample_len();
        let mut features = Vec::with_capacity(indices.len() * per);
        let mut labels = Vec::with_capacity(indices.len());
        for &i in indices {
            features.extend_from_slice(&self.features[i * per..(i + 1) * per]);
            labels.push(self.labels[i]);
        }
        Dataset {
            shape: self.shape.clone(),
            features,
            labels,
            classes: self.classes,
        }
    }

    /// How many of `len` samples [`Dataset::split`] holds out for
    /// `fraction`: `ceil(len * fraction)`, at least one.
    pub fn held_out(len: usize, fraction: f64) -> usize {
        ((len as f64 * fraction).ceil() as usize).clamp(1, len)
    }

    /// Splits into (train, validation) after a seeded shuffle; the
    /// validation part holds [`Dataset::held_out`] samples.
    pub fn split(&self, fraction: f64, seed: u64) -> (Dataset, Dataset) {
        let mut order: Vec<usize> = (0..self.len()).collect();
        shuffle(&mut order, seed);
        let n_val = Dataset::held_out(self.len(), fraction);
        let (val, train) = order.split_at(n_val);
        (self.select(train), self.select(val))
    }

    /// Splits into `parts` contiguous pieces of near-equal size.
    pub fn chunks(&self, parts: usize) -> Vec<Dataset> {
        let n = self.len();
        let parts = parts.max(1);
        (0..parts)
            .map(|p| {
                let (lo, hi) = (p * n / parts, (p + 1) * n / parts);
                self.select(&(lo..hi).collect::<Vec<_>>())
            })
            .collect()
    }

    /// Per-feature mean and standard deviation.
    pub fn normalization(&self) -> FeatureScaling {
        let per = self.sample_len();
        let n = self.len().max(1) as f64;
        let mut mean = vec![0f64; per];
        for row in self.features.chunks_exact(per) {
            for (m, v) in mean.iter_mut().zip(row) {
                *m += f64::from(*v);
            }
        }
        mean.iter_mut().for_each(|m| *m /= n);
        let mut var = vec![0f64; per];
        for row in self.features.chunks_exact(per) {
            for ((s, v), m) in var.iter_mut().zip(row).zip(&mean) {
                *s += (f64::from(*v) - m).powi(2);
            }
        }
        FeatureScaling {
            mean: mean.iter().map(|m| *m as f32).collect(),
            std: var
                .iter()
                .map(|s| {
                    let sd = (s / n).sqrt() as f32;
                    if sd > 1e-6 { sd } else { 1.0 }
                })
                .collect(),
            columns: None,
        }
    }

    /// Applies `(x - mean) / std` to every sample, in place.
    pub fn normalize(&mut self, norm: &FeatureScaling) {
        let per = self.sample_len();
        for row in self.features.chunks_exact_mut(per) {
            for ((v, m), s) in row.iter_mut().zip(&norm.mean).zip(&norm.std) {
                *v = (*v - m) / s;
            }
        }
    }
}

/// A small seeded generator (SplitMix64): identical streams on every
/// platform, for shuffles and initial weights.
pub struct SplitMix64(u64);

impl SplitMix64 {
    /// A generator for `seed`.
    pub fn new(seed: u64) -> SplitMix64 {
        SplitMix64(seed ^ 0x9E37_79B9_7F4A_7C15)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Seeded Fisher-Yates shuffle, identical on every platform.
pub fn shuffle<T>(items: &mut [T], seed: u64) {
    let mut rng = SplitMix64::new(seed);
    for i in (1..items.len()).rev() {
        let j = (rng.next_u64() % (i as u64 + 1)) as usize;
        items.swap(i, j);
    }
}

/// Decompresses gzip data, or returns it as is when it is not gzip.
pub fn maybe_gunzip(bytes: &[u8], limit: usize) -> Result<Vec<u8>, MlError> {
    use std::io::Read;
    if bytes.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(bytes)
            .take(limit as u64 + 1)
            .read_to_end(&mut out)
            .map_err(|e| MlError::Data(format!("bad gzip data: {e}")))?;
        if out.len() > limit {
            return Err(MlError::Data(format!(
                "data is larger than {limit} bytes once decompressed"
            )));
        }
        Ok(out)
    } else {
        Ok(bytes.to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toy(n: usize) -> Dataset {
        Dataset {
            shape: vec![2],
            features: (0..n * 2).map(|v| v as f32).collect(),
            labels: (0..n as u32).map(|i| i % 3).collect(),
            classes: 3,
        }
    }

    #[test]
    fn split_is_seeded_and_disjoint() {
        let d = toy(10);
        let (t1, v1) = d.split(0.2, 7);
        let (t2, v2) = d.split(0.2, 7);
        assert_eq!((t1.len(), v1.len()), (8, 2));
        assert_eq!(t1, t2);
        assert_eq!(v1, v2);
        let mut all: Vec<f32> = t1.features.iter().chain(&v1.features).copied().collect();
        all.sort_by(f32::total_cmp);
        assert_eq!(all, d.features);
    }

    #[test]
    fn chunks_cover_everything() {
        let parts = toy(10).chunks(3);
        assert_eq!(
            parts.iter().map(Dataset::len).collect::<Vec<_>>(),
            [3, 3, 4]
        );
    }

    #[test]
    fn normalization_centres_and_scales() {
        let mut d = toy(5);
        let n = d.normalization();
        d.normalize(&n);
        let n2 = d.normalization();
        assert!(n2.mean.iter().all(|m| m.abs() < 1e-5));
        assert!(n2.std.iter().all(|s| (s - 1.0).abs() < 1e-4));
    }
}

//! Model weights as plain named f32 tensors: the form in which they are
//! stored, sent, checked and averaged, independent of any backend.
//!
//! On the wire and on disk they are safetensors (F32, little-endian), with
//! optional string metadata; updates are additionally gzip-compressed.

use std::collections::HashMap;

use safetensors::{Dtype, SafeTensors, View};

use crate::MlError;

/// One named tensor.
#[derive(Clone, Debug, PartialEq)]
pub struct NamedTensor {
    /// Name, e.g. `conv1.weight`.
    pub name: String,
    /// Dimensions.
    pub shape: Vec<usize>,
    /// Row-major values.
    pub values: Vec<f32>,
}

/// All weights of a model, sorted by name (the one canonical order, so
/// that weights from any source line up tensor by tensor).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Params {
    /// The tensors.
    pub tensors: Vec<NamedTensor>,
}

/// Largest decompressed weights file accepted.
pub const MAX_PARAMS_BYTES: usize = 512 * 1024 * 1024;

impl Params {
    /// Total number of values.
    pub fn len(&self) -> usize {
        self.tensors.iter().map(|t| t.values.len()).sum()
    }

    /// Whether there are no values.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether `other` has the same names and shapes in the same order.
    pub fn check_layout(&self, other: &Params) -> Result<(), MlError> {
        if self.tensors.len() != other.tensors.len() {
            return Err(MlError::Update(format!(
                "update has {} tensors, the model has {}",
                other.tensors.len(),
                self.tensors.len()
            )));
        }
        for (a, b) in self.tensors.iter().zip(&other.tensors) {
            if a.name != b.name || a.shape != b.shape {
                return Err(MlError::Update(format!(
                    "update tensor {} {:?} does not match the model's {} {:?}",
                    b.name, b.shape, a.name, a.shape
                )));
            }
        }
        Ok(())
    }

    /// One tensor `w` holding `values` (for tests).
    #[cfg(test)]
    pub(crate) fn vector(values: &[f32]) -> Params {
        Params {
            tensors: vec![NamedTensor {
                name: "w".into(),
                shape: vec![values.len()],
                values: values.to_vec(),
            }],
        }
    }

    /// Whether every value is finite.
    pub fn all_finite(&self) -> bool {
        self.tensors
            .iter()
            .all(|t| t.values.iter().all(|v| v.is_finite()))
    }

    /// L2 norm over all values.
    pub fn l2_norm(&self) -> f64 {
        self.tensors
            .iter()
            .flat_map(|t| &t.values)
            .map(|v| f64::from(*v) * f64::from(*v))
            .sum::<f64>()
            .sqrt()
    }

    /// The same layout, every value zero (a change that changes nothing).
    pub fn zeros_like(&self) -> Params {
        Params {
            tensors: self
                .tensors
                .iter()
                .map(|t| NamedTensor {
                    name: t.name.clone(),
                    shape: t.shape.clone(),
                    values: vec![0.0; t.values.len()],
                })
                .collect(),
        }
    }

    /// `self - base`, tensor by tensor (layouts must match).
    pub fn minus(&self, base: &Params) -> Params {
        self.zip_with(base, |a, b| a - b)
    }

    /// `self + delta`, tensor by tensor (layouts must match).
    pub fn plus(&self, delta: &Params) -> Params {
        self.zip_with(delta, |a, b| a + b)
    }

    fn zip_with(&self, other: &Params, f: impl Fn(f32, f32) -> f32) -> Params {
        Params {
            tensors: self
                .tensors
                .iter()
                .zip(&other.tensors)
                .map(|(a, b)| NamedTensor {
                    name: a.name.clone(),
                    shape: a.shape.clone(),
                    values: a
                        .values
                        .iter()
                        .zip(&b.values)
                        .map(|(x, y)| f(*x, *y))
                        .collect(),
                })
                .collect(),
        }
    }

    /// Weighted mean of several parameter sets with the same layout
    /// (federated averaging: weights are usually sample counts).
    ///
    /// ```
    /// use oblivion_ml::params::{NamedTensor, Params};
    /// let p = |v: f32| Params { tensors: vec![NamedTensor { name: "w".into(), shape: vec![1], values: vec![v] }] };
    /// let mean = Params::weighted_mean(&[(p(1.0), 1.0), (p(4.0), 2.0)]).unwrap();
    /// assert_eq!(mean.tensors[0].values, vec![3.0]);
    /// ```
    pub fn weighted_mean(sets: &[(Params, f64)]) -> Result<Params, MlError> {
        let (first, _) = sets
            .first()
            .ok_or_else(|| MlError::Update("nothing to average".into()))?;
        let total: f64 = sets.iter().map(|(_, w)| *w).sum();
        if total.is_nan() || total <= 0.0 {
            return Err(MlError::Update("weights of the average sum to zero".into()));
        }
        let mut acc: Vec<Vec<f64>> = first
            .tensors
            .iter()
            .map(|t| vec![0.0; t.values.len()])
            .collect();
        for (set, weight) in sets {
            first.check_layout(set)?;
            for (a, t) in acc.iter_mut().zip(&set.tensors) {
                for (x, v) in a.iter_mut().zip(&t.values) {
                    *x += f64::from(*v) * weight;
                }
            }
        }
        Ok(Params {
            tensors: first
                .tensors
                .iter()
                .zip(acc)
                .map(|(t, a)| NamedTensor {
                    name: t.name.clone(),
                    shape: t.shape.clone(),
                    values: a.into_iter().map(|x| (x / total) as f32).collect(),
                })
                .collect(),
        })
    }

    /// Serialises as safetensors with `metadata`.
    pub fn to_safetensors(&self, metadata: Option<HashMap<String, String>>) -> Vec<u8> {
        let views: Vec<(&str, F32View<'_>)> = self
            .tensors
            .iter()
            .map(|t| (t.name.as_str(), F32View(t)))
            .collect();
        let with_metadata = metadata.is_some();
        // Serialising well-formed F32 views into memory does not fail.
        let bytes = safetensors::serialize(views, metadata).unwrap_or_default();
        if with_metadata {
            sorted_header(bytes)
        } else {
            bytes
        }
    }

    /// Parses safetensors holding only F32 tensors; returns them sorted by
    /// name, and the metadata.
    pub fn from_safetensors(bytes: &[u8]) -> Result<(Params, HashMap<String, String>), MlError> {
        let bad =
            |e: safetensors::SafeTensorError| MlError::Update(format!("bad safetensors: {e}"));
        let (_, meta) = SafeTensors::read_metadata(bytes).map_err(bad)?;
        let st = SafeTensors::deserialize(bytes).map_err(bad)?;
        let mut tensors = Vec::new();
        for (name, view) in st.tensors() {
            if view.dtype() != Dtype::F32 {
                return Err(MlError::Update(format!(
                    "tensor {name} is {:?}, expected F32",
                    view.dtype()
                )));
            }
            tensors.push(NamedTensor {
                name,
                shape: view.shape().to_vec(),
                values: view
                    .data()
                    .chunks_exact(4)
                    .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                    .collect(),
            });
        }
        tensors.sort_by(|a, b| a.name.cmp(&b.name));
        let metadata = meta.metadata().clone().unwrap_or_default();
        Ok((Params { tensors }, metadata))
    }

    /// safetensors, then gzip: the form of an uploaded update.
    pub fn to_compressed(&self, metadata: Option<HashMap<String, String>>) -> Vec<u8> {
        use std::io::Write;
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        let _ = gz.write_all(&self.to_safetensors(metadata));
        gz.finish().unwrap_or_default()
    }

    /// Reverses [`Params::to_compressed`] (plain safetensors is accepted too).
    pub fn from_compressed(bytes: &[u8]) -> Result<(Params, HashMap<String, String>), MlError> {
        Params::from_compressed_within(bytes, MAX_PARAMS_BYTES)
    }

    /// [`Params::from_compressed`], refusing anything that decompresses to
    /// more than `limit` bytes (size it to the model: a gzip bomb then
    /// costs no more memory than a genuine update).
    pub fn from_compressed_within(
        bytes: &[u8],
        limit: usize,
    ) -> Result<(Params, HashMap<String, String>), MlError> {
        let raw = crate::data::maybe_gunzip(bytes, limit.min(MAX_PARAMS_BYTES))
            .map_err(|e| MlError::Update(e.to_string()))?;
        Params::from_safetensors(&raw)
    }
}

/// safetensors' view of one of our tensors.
struct F32View<'a>(&'a NamedTensor);

impl View for F32View<'_> {
    fn dtype(&self) -> Dtype {
        Dtype::F32
    }
    fn shape(&self) -> &[usize] {
        &self.0.shape
    }
    fn data(&self) -> std::borrow::Cow<'_, [u8]> {
        self.0
            .values
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect::<Vec<u8>>()
            .into()
    }
    fn data_len(&self) -> usize {
        self.0.values.len() * 4
    }
}

/// `bytes` (safetensors) with its header's keys, and its metadata's, in
/// sorted order, so that the same weights and metadata always make the
/// same file (and the same hash): the safetensors crate writes a metadata
/// map in hash order. Written here because the crate takes no ordered
/// map. The header keeps its length (the same keys, reordered), so the
/// data offsets stay as they are.
fn sorted_header(bytes: Vec<u8>) -> Vec<u8> {
    use std::collections::BTreeMap;
    let Some(len) = bytes
        .get(..8)
        .and_then(|b| b.try_into().ok())
        .map(u64::from_le_bytes)
        .and_then(|n| usize::try_from(n).ok())
    else {
        return bytes;
    };
    let Some(header) = bytes.get(8..8 + len) else {
        return bytes;
    };
    let Ok(map) = serde_json::from_slice::<BTreeMap<String, serde_json::Value>>(header) else {
        return bytes;
    };
    let sorted: BTreeMap<String, serde_json::Value> = map
        .into_iter()
        .map(|(k, v)| match v {
            serde_json::Value::Object(inner) => {
                let inner: BTreeMap<String, serde_json::Value> = inner.into_iter().collect();
                (k, serde_json::to_value(inner).unwrap_or_default())
            }
            other => (k, other),
        })
        .collect();
    let Ok(mut text) = serde_json::to_vec(&sorted) else {
        return bytes;
    };
    if text.len() > len {
        return bytes;
    }
    // The crate pads with spaces to its alignment; so does this.
    text.resize(len, b' ');
    let mut out = bytes;
    out[8..8 + len].copy_from_slice(&text);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_weights_and_metadata_make_the_same_bytes() {
        let keys = [
            "oblivion.model",
            "oblivion.classes",
            "oblivion.input_shape",
            "z",
            "a",
        ];
        let files: Vec<Vec<u8>> = (0..8)
            .map(|i| {
                // Fresh maps, filled in different orders: their hash orders differ.
                let mut meta = HashMap::new();
                for k in keys.iter().cycle().skip(i).take(keys.len()) {
                    meta.insert(k.to_string(), format!("value of {k}"));
                }
                sample().to_safetensors(Some(meta))
            })
            .collect();
        assert!(files.windows(2).all(|w| w[0] == w[1]));
        let (back, meta) = Params::from_safetensors(&files[0]).unwrap();
        assert_eq!(back.tensors.len(), 2);
        assert_eq!(meta["z"], "value of z");
    }

    fn sample() -> Params {
        Params {
            tensors: vec![
                NamedTensor {
                    name: "b.weight".into(),
                    shape: vec![2, 2],
                    values: vec![1.0, -2.0, 3.5, 0.0],
                },
                NamedTensor {
                    name: "a.bias".into(),
                    shape: vec![2],
                    values: vec![0.25, 9.0],
                },
            ],
        }
    }

    #[test]
    fn safetensors_round_trip_sorts_by_name_and_keeps_metadata() {
        let mut p = sample();
        p.tensors.sort_by(|a, b| a.name.cmp(&b.name));
        let meta = HashMap::from([("samples".to_string(), "12".to_string())]);
        let (back, m) = Params::from_compressed(&p.to_compressed(Some(meta.clone()))).unwrap();
        assert_eq!(back, p);
        assert_eq!(m, meta);
    }

    #[test]
    fn layout_and_finiteness_checks() {
        let p = sample();
        let mut q = p.clone();
        q.tensors[0].shape = vec![4];
        assert!(p.check_layout(&q).is_err());
        let mut r = p.clone();
        r.tensors[1].values[0] = f32::NAN;
        assert!(!r.all_finite());
        assert!((p.minus(&p).l2_norm()).abs() < 1e-12);
    }
}

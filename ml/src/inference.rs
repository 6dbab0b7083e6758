//! Running a model over rows: the class probabilities and predicted class
//! of each, as a worker posts them and the coordinator checks and
//! assembles them (see `oblivion_protocol::wire::outputs` for the form).

use std::collections::HashMap;

use safetensors::tensor::{Dtype, SafeTensors, TensorView};

use crate::data::Dataset;
use crate::model::Architecture;
use crate::params::Params;
use crate::train::{batch_tensors, image_shape};
use crate::weights::network_with;
use crate::{ComputeDevice, MlError};
use oblivion_protocol::wire::outputs::{PREDICTED, PROBABILITIES};

/// A model's outputs for rows, in row order.
#[derive(Clone, Debug, PartialEq)]
pub struct Outputs {
    /// Number of classes.
    pub classes: usize,
    /// `[rows, classes]`, row-major: each row's class probabilities.
    pub probabilities: Vec<f32>,
    /// Each row's most probable class.
    pub predicted: Vec<u32>,
}

impl Outputs {
    /// Probabilities (a softmax, computed in f64) and the most probable
    /// class (the first of equals) of each row of `logits`.
    pub fn from_logits(logits: &[f32], classes: usize) -> Outputs {
        let mut probabilities = Vec::with_capacity(logits.len());
        let mut predicted = Vec::with_capacity(logits.len() / classes.max(1));
        for row in logits.chunks_exact(classes.max(1)) {
            let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let exps: Vec<f64> = row.iter().map(|v| f64::from(v - max).exp()).collect();
            let sum: f64 = exps.iter().sum();
            probabilities.extend(exps.iter().map(|e| (e / sum) as f32));
            predicted.push(argmax(row));
        }
        Outputs {
            classes,
            probabilities,
            predicted,
        }
    }

    /// Number of rows.
    pub fn rows(&self) -> usize {
        self.predicted.len()
    }

    /// Row `i`'s probabilities.
    pub fn row(&self, i: usize) -> &[f32] {
        &self.probabilities[i * self.classes..(i + 1) * self.classes]
    }

    /// Rows `rows`, in that order.
    pub fn select(&self, rows: &[usize]) -> Outputs {
        Outputs {
            classes: self.classes,
            probabilities: rows.iter().flat_map(|&i| self.row(i)).copied().collect(),
            predicted: rows.iter().map(|&i| self.predicted[i]).collect(),
        }
    }

    /// These rows, then `other`'s.
    pub fn append(&mut self, other: &Outputs) {
        self.probabilities.extend_from_slice(&other.probabilities);
        self.predicted.extend_from_slice(&other.predicted);
    }

    /// The largest difference in any class probability from `other`'s
    /// (infinite when their shapes differ).
    pub fn max_difference(&self, other: &Outputs) -> f64 {
        if self.classes != other.classes || self.rows() != other.rows() {
            return f64::INFINITY;
        }
        self.probabilities
            .iter()
            .zip(&other.probabilities)
            .map(|(a, b)| f64::from((a - b).abs()))
            .fold(0.0, f64::max)
    }

    /// Safetensors of the two tensors, with `metadata`.
    pub fn to_safetensors(&self, metadata: Option<HashMap<String, String>>) -> Vec<u8> {
        let probabilities: Vec<u8> = self
            .probabilities
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        let predicted: Vec<u8> = self
            .predicted
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        let views = [
            (
                PROBABILITIES,
                TensorView::new(Dtype::F32, vec![self.rows(), self.classes], &probabilities),
            ),
            (
                PREDICTED,
                TensorView::new(Dtype::U32, vec![self.rows()], &predicted),
            ),
        ];
        let views: Vec<(&str, TensorView<'_>)> = views
            .into_iter()
            .filter_map(|(name, view)| view.ok().map(|v| (name, v)))
            .collect();
        // Views whose sizes match their shapes serialise without fail.
        safetensors::serialize(views, metadata).unwrap_or_default()
    }

    /// safetensors, then gzip: the form a worker posts.
    pub fn to_compressed(&self) -> Vec<u8> {
        use std::io::Write;
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        let _ = gz.write_all(&self.to_safetensors(None));
        gz.finish().unwrap_or_default()
    }

    /// Reads a worker's outputs for `rows` rows of `classes` classes:
    /// gzip (or plain) safetensors holding exactly the two tensors, of
    /// those shapes and types, with finite probabilities in [0, 1] that
    /// sum to 1 within `tolerance` a row, and predicted classes below
    /// `classes`. Refuses anything that decompresses beyond what that
    /// size needs.
    pub fn decode(
        bytes: &[u8],
        rows: usize,
        classes: usize,
        tolerance: f64,
    ) -> Result<Outputs, MlError> {
        let bad = |m: String| MlError::Update(m);
        let limit = rows.saturating_mul(classes + 1).saturating_mul(4) + 64 * 1024;
        let raw = crate::data::maybe_gunzip(bytes, limit).map_err(|e| bad(e.to_string()))?;
        let st =
            SafeTensors::deserialize(&raw).map_err(|e| bad(format!("bad safetensors: {e}")))?;
        if st.len() != 2 {
            return Err(bad(format!(
                "{} tensors; outputs hold exactly {PROBABILITIES} and {PREDICTED}",
                st.len()
            )));
        }
        let tensor = |name: &str, dtype: Dtype, shape: Vec<usize>| {
            let view = st
                .tensor(name)
                .map_err(|_| bad(format!("no tensor named {name}")))?;
            if view.dtype() != dtype || view.shape() != shape.as_slice() {
                return Err(bad(format!(
                    "{name} is {:?} {:?}; expected {dtype:?} {shape:?}",
                    view.dtype(),
                    view.shape()
                )));
            }
            Ok(view
                .data()
                .chunks_exact(4)
                .map(|c| [c[0], c[1], c[2], c[3]])
                .collect::<Vec<[u8; 4]>>())
        };
        let probabilities: Vec<f32> = tensor(PROBABILITIES, Dtype::F32, vec![rows, classes])?
            .into_iter()
            .map(f32::from_le_bytes)
            .collect();
        let predicted: Vec<u32> = tensor(PREDICTED, Dtype::U32, vec![rows])?
            .into_iter()
            .map(u32::from_le_bytes)
            .collect();
        let outputs = Outputs {
            classes,
            probabilities,
            predicted,
        };
        for i in 0..rows {
            let row = outputs.row(i);
            if !row.iter().all(|p| p.is_finite() && (0.0..=1.0).contains(p)) {
                return Err(bad(format!(
                    "row {i}: probabilities must be finite, from 0 to 1"
                )));
            }
            let sum: f64 = row.iter().map(|&p| f64::from(p)).sum();
            if (sum - 1.0).abs() > tolerance {
                return Err(bad(format!("row {i}: probabilities sum to {sum}, not 1")));
            }
            if outputs.predicted[i] as usize >= classes {
                return Err(bad(format!(
                    "row {i}: predicted class {} of {classes}",
                    outputs.predicted[i]
                )));
            }
        }
        Ok(outputs)
    }
}

/// The index of the largest value (the first of equals).
fn argmax(row: &[f32]) -> u32 {
    let mut best = 0;
    for (i, v) in row.iter().enumerate() {
        if *v > row[best] {
            best = i;
        }
    }
    best as u32
}

/// Runs `params` over every row of `data`, `batch` rows at a time, reading
/// each batch back asynchronously (as a browser's GPU requires);
/// `progress` gets the fraction done and returns false to stop (then
/// `None`).
pub async fn infer_async(
    arch: &Architecture,
    params: &Params,
    data: &Dataset,
    device: ComputeDevice,
    batch: usize,
    progress: &mut impl AsyncFnMut(f32) -> bool,
) -> Result<Option<Outputs>, MlError> {
    let backend = device.device_for(arch)?;
    let network = network_with(arch, params, &backend)?;
    let mut logits = Vec::with_capacity(data.len() * arch.classes);
    let all: Vec<usize> = (0..data.len()).collect();
    let total = data.len().max(1) as f32;
    for chunk in all.chunks(batch.max(1)) {
        let (x, _) = batch_tensors(data, chunk, &backend);
        let out = network
            .forward(x, image_shape(arch))
            .into_data_async()
            .await
            .map_err(|e| MlError::Backend(format!("{e:?}")))?;
        logits.extend(
            out.try_into_vec_as::<f32>()
                .map_err(|e| MlError::Backend(format!("{e:?}")))?,
        );
        if !progress(logits.len() as f32 / arch.classes as f32 / total).await {
            return Ok(None);
        }
    }
    Ok(Some(Outputs::from_logits(&logits, arch.classes)))
}

/// [`infer_async`] to the end, blocking (natively, or on a browser's CPU).
pub fn infer(
    arch: &Architecture,
    params: &Params,
    data: &Dataset,
    device: ComputeDevice,
) -> Result<Outputs, MlError> {
    let mut go_on = async |_| true;
    let run = infer_async(arch, params, data, device, 512, &mut go_on);
    match crate::try_read_sync(run) {
        Some(Ok(Some(outputs))) => Ok(outputs),
        Some(Ok(None)) => Err(MlError::Backend("inference stopped".into())),
        Some(Err(e)) => Err(e),
        None => Err(MlError::Backend(
            "this device reads back asynchronously: use infer_async".into(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::train::predict;
    use crate::weights::initial_params;
    use oblivion_protocol::ModelSpec;

    fn data() -> Dataset {
        Dataset {
            shape: vec![3],
            features: (0..60).map(|i| ((i * 7) % 11) as f32 / 5.0 - 1.0).collect(),
            labels: vec![0; 20],
            classes: 4,
        }
    }

    #[test]
    fn outputs_are_the_softmax_of_the_logits_and_survive_their_encoding() {
        let arch = Architecture::new(ModelSpec::Mlp { hidden: vec![5] }, vec![3], 4).unwrap();
        let params = initial_params(&arch, 3).unwrap();
        let outputs = infer(&arch, &params, &data(), ComputeDevice::Cpu).unwrap();
        let logits = predict(&arch, &params, &data(), ComputeDevice::Cpu).unwrap();
        assert_eq!(outputs, Outputs::from_logits(&logits, 4));
        assert_eq!(outputs.rows(), 20);
        for i in 0..20 {
            let sum: f32 = outputs.row(i).iter().sum();
            assert!((sum - 1.0).abs() < 1e-5);
            let best = outputs.row(i)[outputs.predicted[i] as usize];
            assert!(outputs.row(i).iter().all(|p| *p <= best));
        }
        let bytes = outputs.to_compressed();
        assert_eq!(Outputs::decode(&bytes, 20, 4, 1e-3).unwrap(), outputs);
        let err = Outputs::decode(&bytes, 21, 4, 1e-3).unwrap_err();
        assert!(err.to_string().contains("expected F32 [21, 4]"), "{err}");
    }

    #[test]
    fn malformed_outputs_are_refused_with_the_reason() {
        let good = Outputs::from_logits(&[0.0, 1.0, 2.0, 0.5], 2);
        let mut unnormal = good.clone();
        unnormal.probabilities[0] = 0.9;
        let err = Outputs::decode(&unnormal.to_compressed(), 2, 2, 1e-3).unwrap_err();
        assert!(err.to_string().contains("sum to"), "{err}");
        let mut out_of_range = good.clone();
        out_of_range.predicted[1] = 2;
        let err = Outputs::decode(&out_of_range.to_compressed(), 2, 2, 1e-3).unwrap_err();
        assert!(err.to_string().contains("predicted class 2"), "{err}");
        let mut nan = good.clone();
        nan.probabilities[3] = f32::NAN;
        assert!(Outputs::decode(&nan.to_compressed(), 2, 2, 1e-3).is_err());
        let weights = Params::default().to_compressed(None);
        assert!(Outputs::decode(&weights, 2, 2, 1e-3).is_err());
        assert_eq!(good.max_difference(&good), 0.0);
        assert_eq!(
            good.max_difference(&unnormal),
            f64::from(0.9 - good.row(0)[0])
        );
    }
}

//! Trained models in the formats users download: safetensors, ONNX, and
//! burn's own record (burnpack).

mod onnx;
mod protobuf;

use std::collections::HashMap;

use burn::module::Module;
use burn::store::ModuleRecord;
use burn::tensor::Bytes;

pub use onnx::to_onnx;

use crate::data::FeatureScaling;
use crate::model::Architecture;
use crate::params::{NamedTensor, Params};
use crate::weights::{network_with, read_params};
use crate::{ComputeDevice, MlError};

/// The model as safetensors: the weights under their network names, the
/// tabular normalisation (if any) as `normalization.mean` and
/// `normalization.std`, and metadata describing the architecture
/// (`oblivion.model`, `oblivion.input_shape`, `oblivion.classes`,
/// `oblivion.layout`).
pub fn to_safetensors(
    arch: &Architecture,
    params: &Params,
    normalization: Option<&FeatureScaling>,
) -> Vec<u8> {
    let mut all = params.clone();
    if let Some(norm) = normalization {
        for (name, values) in [
            ("normalization.mean", &norm.mean),
            ("normalization.std", &norm.std),
        ] {
            all.tensors.push(NamedTensor {
                name: name.into(),
                shape: vec![values.len()],
                values: values.clone(),
            });
        }
    }
    let metadata = HashMap::from([
        (
            "oblivion.model".to_string(),
            serde_json::to_string(&arch.model).unwrap_or_default(),
        ),
        (
            "oblivion.input_shape".to_string(),
            serde_json::to_string(&arch.input_shape).unwrap_or_default(),
        ),
        ("oblivion.classes".to_string(), arch.classes.to_string()),
        (
            "oblivion.layout".to_string(),
            "dense weights [in, out] (y = x W + b); conv weights [out, in, k, k], same padding, \
             each conv followed by ReLU and 2x2 max-pooling; ReLU between dense layers"
                .to_string(),
        ),
    ]);
    all.to_safetensors(Some(metadata))
}

/// Reads a model in [`to_safetensors`]'s form: the architecture its
/// metadata declares, the weights checked against it (exact names and
/// shapes, finite), and the normalisation when there is one (one mean and
/// one positive standard deviation per feature). Refuses anything else,
/// saying what.
pub fn from_safetensors(
    bytes: &[u8],
) -> Result<(Architecture, Params, Option<FeatureScaling>), MlError> {
    let (mut all, metadata) = Params::from_safetensors(bytes)?;
    let bad = |m: String| MlError::Update(m);
    let field = |key: &str| {
        metadata
            .get(key)
            .ok_or_else(|| bad(format!("the file's metadata lacks {key}")))
    };
    let model = serde_json::from_str(field("oblivion.model")?)
        .map_err(|e| bad(format!("oblivion.model: {e}")))?;
    let input_shape: Vec<usize> = serde_json::from_str(field("oblivion.input_shape")?)
        .map_err(|e| bad(format!("oblivion.input_shape: {e}")))?;
    let classes: usize = field("oblivion.classes")?
        .parse()
        .map_err(|e| bad(format!("oblivion.classes: {e}")))?;
    if input_shape.is_empty() || input_shape.len() > 3 || input_shape.contains(&0) {
        return Err(bad(format!(
            "oblivion.input_shape {input_shape:?} is no sample shape"
        )));
    }
    let arch = Architecture::new(model, input_shape, classes)?;
    let mut take = |name: &str| {
        let i = all.tensors.iter().position(|t| t.name == name)?;
        Some(all.tensors.remove(i).values)
    };
    let normalization = match (take("normalization.mean"), take("normalization.std")) {
        (None, None) => None,
        (Some(mean), Some(std)) => {
            let features = arch.input_len();
            if mean.len() != features || std.len() != features {
                return Err(bad(format!(
                    "the normalisation has {} means and {} deviations for {features} features",
                    mean.len(),
                    std.len()
                )));
            }
            if !mean.iter().all(|v| v.is_finite()) || !std.iter().all(|v| v.is_finite() && *v > 0.0)
            {
                return Err(bad(
                    "the normalisation must be finite, its deviations positive".into(),
                ));
            }
            Some(FeatureScaling {
                mean,
                std,
                columns: None,
            })
        }
        _ => {
            return Err(bad(
                "the normalisation needs both its mean and its std".into()
            ));
        }
    };
    crate::weights::check_params(&arch, &all)?;
    if !all.all_finite() {
        return Err(bad("the weights have non-finite values".into()));
    }
    Ok((arch, all, normalization))
}

/// The model as burn's own record (burnpack bytes), loadable with
/// `Architecture::build(..).load_record(ModuleRecord::from_bytes(..))`.
pub fn to_burn_record(arch: &Architecture, params: &Params) -> Result<Vec<u8>, MlError> {
    let network = network_with(arch, params, &ComputeDevice::Cpu.device()?)?;
    let bytes = network
        .into_record()
        .into_bytes()
        .map_err(|e| MlError::Backend(format!("writing the burn record: {e:?}")))?;
    Ok(bytes.to_vec())
}

/// Reads weights back from a burn record made by [`to_burn_record`].
pub fn from_burn_record(arch: &Architecture, bytes: &[u8]) -> Result<Params, MlError> {
    let bad = |e| MlError::Update(format!("not a burn record of this model: {e:?}"));
    let record = ModuleRecord::from_bytes(Bytes::from_bytes_vec(bytes.to_vec())).map_err(bad)?;
    let network = arch
        .build(&ComputeDevice::Cpu.device()?)
        .try_load_record(record)
        .map_err(bad)?;
    read_params(&network)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::weights::initial_params;
    use oblivion_protocol::ModelSpec;

    #[test]
    fn an_exported_model_reads_back_and_a_mismatch_is_refused() {
        let arch = Architecture::new(ModelSpec::Mlp { hidden: vec![4] }, vec![3], 2).unwrap();
        let params = initial_params(&arch, 1).unwrap();
        let scaling = FeatureScaling {
            mean: vec![1.0, 2.0, 3.0],
            std: vec![0.5, 1.0, 2.0],
            columns: None,
        };
        let bytes = to_safetensors(&arch, &params, Some(&scaling));
        let (read, weights, norm) = from_safetensors(&bytes).unwrap();
        assert_eq!(
            (read, weights, norm),
            (arch.clone(), params.clone(), Some(scaling))
        );
        // Weights of another architecture than the one declared.
        let other = Architecture::new(ModelSpec::Mlp { hidden: vec![5] }, vec![3], 2).unwrap();
        let mut metadata = HashMap::new();
        metadata.insert(
            "oblivion.model".to_string(),
            serde_json::to_string(&other.model).unwrap(),
        );
        metadata.insert("oblivion.input_shape".to_string(), "[3]".to_string());
        metadata.insert("oblivion.classes".to_string(), "2".to_string());
        let lying = params.to_safetensors(Some(metadata));
        assert!(from_safetensors(&lying).is_err());
        let bare = params.to_safetensors(None);
        let err = from_safetensors(&bare).unwrap_err().to_string();
        assert!(err.contains("oblivion.model"), "{err}");
    }
}

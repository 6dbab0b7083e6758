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

//! Moving weights between a burn [`Network`] and plain [`Params`].

use std::collections::HashMap;

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param};
use burn::tensor::{Device, Tensor, TensorData};

use crate::MlError;
use crate::model::{Architecture, Network};
use crate::params::{NamedTensor, Params};

/// Collects every float parameter (flattened) with its dotted path and
/// shape, without reading it back yet.
#[derive(Default)]
struct Collector {
    path: Vec<String>,
    out: Vec<(String, Vec<usize>, Tensor<1>)>,
}

impl ModuleVisitor for Collector {
    fn enter_module(&mut self, name: &str, _: &str) {
        self.path.push(name.to_string());
    }
    fn exit_module(&mut self, _: &str, _: &str) {
        self.path.pop();
    }
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let tensor = param.val();
        let shape = tensor.dims().to_vec();
        let len = shape.iter().product::<usize>();
        self.out
            .push((self.path.join("."), shape, tensor.reshape([len])));
    }
}

fn collect(network: &Network) -> Vec<(String, Vec<usize>, Tensor<1>)> {
    let mut collector = Collector::default();
    network.visit(&mut collector);
    let mut out = collector.out;
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

fn read_error(e: impl std::fmt::Debug) -> MlError {
    MlError::Backend(format!("reading weights: {e:?}"))
}

/// Replaces every float parameter by the values of the same name.
struct Writer {
    path: Vec<String>,
    values: HashMap<String, Vec<f32>>,
}

impl ModuleMapper for Writer {
    fn enter_module(&mut self, name: &str, _: &str) {
        self.path.push(name.to_string());
    }
    fn exit_module(&mut self, _: &str, _: &str) {
        self.path.pop();
    }
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        // Names and sizes were checked against the architecture beforehand.
        let Some(values) = self.values.remove(&self.path.join(".")) else {
            return param;
        };
        let shape = param.lazy_shape();
        let device = param.lazy_device();
        let tensor = Tensor::<D>::from_data(TensorData::new(values, shape), &device);
        let id = param.id;
        param.transform_for_load(tensor, id)
    }
}

/// The network's current weights, sorted by name (reads back
/// synchronously: a browser GPU needs [`read_params_async`]).
pub fn read_params(network: &Network) -> Result<Params, MlError> {
    let tensors = collect(network)
        .into_iter()
        .map(|(name, shape, tensor)| {
            Ok(NamedTensor {
                name,
                shape,
                values: tensor.try_into_vec_as::<f32>().map_err(read_error)?,
            })
        })
        .collect::<Result<_, MlError>>()?;
    Ok(Params { tensors })
}

/// [`read_params`] without blocking: what WebGPU in a browser requires.
pub async fn read_params_async(network: &Network) -> Result<Params, MlError> {
    let mut tensors = Vec::new();
    for (name, shape, tensor) in collect(network) {
        let data = tensor.into_data_async().await.map_err(read_error)?;
        tensors.push(NamedTensor {
            name,
            shape,
            values: data.try_into_vec_as::<f32>().map_err(read_error)?,
        });
    }
    Ok(Params { tensors })
}

/// Checks that `params` has exactly the architecture's names and shapes.
pub fn check_params(arch: &Architecture, params: &Params) -> Result<(), MlError> {
    let expected = arch.param_shapes();
    if expected.len() != params.tensors.len() {
        return Err(MlError::Update(format!(
            "{} tensors given, the model has {}",
            params.tensors.len(),
            expected.len()
        )));
    }
    for ((name, shape), t) in expected.iter().zip(&params.tensors) {
        if *name != t.name || *shape != t.shape || t.values.len() != shape.iter().product::<usize>()
        {
            return Err(MlError::Update(format!(
                "tensor {} {:?} does not match the model's {name} {shape:?}",
                t.name, t.shape
            )));
        }
    }
    Ok(())
}

/// Builds the network on `device` with `params` as its weights.
pub fn network_with(
    arch: &Architecture,
    params: &Params,
    device: &Device,
) -> Result<Network, MlError> {
    check_params(arch, params)?;
    let mut writer = Writer {
        path: Vec::new(),
        values: params
            .tensors
            .iter()
            .map(|t| (t.name.clone(), t.values.clone()))
            .collect(),
    };
    Ok(arch.build(device).map(&mut writer))
}

/// Fresh random weights for `arch`, the same for a given seed on every
/// platform: uniform in ±1/sqrt(fan_in) for weights and biases (burn's and
/// PyTorch's default), drawn from our own generator rather than the
/// backend's process-wide one.
pub fn initial_params(arch: &Architecture, seed: u64) -> Result<Params, MlError> {
    let mut rng = crate::data::SplitMix64::new(seed);
    let tensors = arch
        .param_shapes()
        .into_iter()
        .map(|(name, shape)| {
            let layer = name.rsplit_once('.').map_or(name.as_str(), |(l, _)| l);
            let fan_in = arch
                .param_shapes()
                .iter()
                .find(|(n, _)| *n == format!("{layer}.weight"))
                .map_or(1, |(_, s)| match s.as_slice() {
                    [_, cin, kh, kw] => cin * kh * kw,
                    [din, _] => *din,
                    _ => 1,
                });
            let bound = 1.0 / (fan_in.max(1) as f64).sqrt();
            let n = shape.iter().product();
            let values = (0..n)
                .map(|_| ((rng.next_f64() * 2.0 - 1.0) * bound) as f32)
                .collect();
            NamedTensor {
                name,
                shape,
                values,
            }
        })
        .collect();
    Ok(Params { tensors })
}

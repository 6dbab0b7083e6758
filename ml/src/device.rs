//! The compute device training runs on, chosen at run time.

use burn::tensor::Device;

use oblivion_protocol::ModelSpec;

use crate::MlError;
use crate::model::Architecture;

/// Where tensors live.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ComputeDevice {
    /// The CPU: always available, natively and in wasm. Its kernels are
    /// chosen per model (see [`ComputeDevice::device_for`]).
    Cpu,
    /// burn's wgpu backend (Vulkan, Metal, DX12 or WebGPU).
    #[cfg(feature = "wgpu")]
    Wgpu,
}

impl ComputeDevice {
    /// The burn device (without autodiff), with the CPU kernels that suit
    /// every model (burn-flex).
    pub fn device(self) -> Result<Device, MlError> {
        match self {
            // flex, not ndarray: its im2col + gemm convolutions train the
            // MNIST CNN 14x faster (3,008 vs 212 samples/s, one core, release).
            ComputeDevice::Cpu => Ok(Device::flex()),
            #[cfg(feature = "wgpu")]
            ComputeDevice::Wgpu => wgpu_device(),
        }
    }

    /// The burn device to train or evaluate `arch` on: on the CPU, the
    /// faster kernels for that model.
    pub fn device_for(self, arch: &Architecture) -> Result<Device, MlError> {
        match self {
            ComputeDevice::Cpu => Ok(cpu_kernels(&arch.model)),
            #[cfg(feature = "wgpu")]
            ComputeDevice::Wgpu => wgpu_device(),
        }
    }
}

/// In wasm, burn-ndarray for models of dense layers alone and burn-flex
/// for convolutions, as measured in the browser (bench/browser/README.md):
/// with simd128, ndarray trains the MNIST MLP 1.48x faster than flex, and
/// flex the CNN 12.5x faster than ndarray. Natively, flex throughout.
///
/// burn 0.22 deprecates ndarray in favour of flex; while flex's dense
/// layers trail, the speed is worth the one deprecated call, which goes
/// when they catch up (the benchmark's `kernels-flex` build tells).
#[cfg(all(target_family = "wasm", not(feature = "kernels-flex")))]
#[allow(deprecated)]
fn cpu_kernels(model: &ModelSpec) -> Device {
    match model {
        ModelSpec::Mlp { .. } => Device::ndarray(),
        ModelSpec::Cnn { .. } => Device::flex(),
    }
}

#[cfg(any(not(target_family = "wasm"), feature = "kernels-flex"))]
fn cpu_kernels(_: &ModelSpec) -> Device {
    Device::flex()
}

#[cfg(all(feature = "wgpu", not(target_family = "wasm")))]
fn wgpu_device() -> Result<Device, MlError> {
    use std::sync::OnceLock;
    // wgpu may be initialised once per process; keep the device.
    static DEVICE: OnceLock<Result<Device, String>> = OnceLock::new();
    DEVICE
        .get_or_init(|| Device::wgpu_options().init().map_err(|e| format!("{e:?}")))
        .clone()
        .map_err(MlError::Backend)
}

#[cfg(all(feature = "wgpu", target_family = "wasm"))]
thread_local! {
    static BROWSER_GPU: std::cell::RefCell<Option<Device>> = const { std::cell::RefCell::new(None) };
}

#[cfg(all(feature = "wgpu", target_family = "wasm"))]
fn wgpu_device() -> Result<Device, MlError> {
    BROWSER_GPU
        .with(|d| d.borrow().clone())
        .ok_or_else(|| MlError::Backend("WebGPU is not initialised (call init_webgpu)".into()))
}

/// Acquires the browser's WebGPU device for [`ComputeDevice::Wgpu`]
/// (a browser cannot do it synchronously). Idempotent.
#[cfg(all(feature = "wgpu", target_family = "wasm"))]
pub async fn init_webgpu() -> Result<(), MlError> {
    if BROWSER_GPU.with(|d| d.borrow().is_some()) {
        return Ok(());
    }
    // The autotune cache lives in the origin's private file system, which a
    // browser opens only asynchronously: it must be open before the first
    // kernel is tuned, or the results stay in memory. Another tab holding it
    // leaves this one with a cache in memory (a warning, not a failure).
    #[cfg(feature = "autotune")]
    cubecl_environment::environment::open().await;
    let device = Device::wgpu_options()
        .init_async()
        .await
        .map_err(|e| MlError::Backend(format!("{e}")))?;
    BROWSER_GPU.with(|d| *d.borrow_mut() = Some(device));
    Ok(())
}

//! The compute device training runs on, chosen at run time.

use burn::tensor::Device;

use crate::MlError;

/// Where tensors live.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ComputeDevice {
    /// The CPU backend (burn-flex): always available, natively and in wasm.
    Cpu,
    /// burn's wgpu backend (Vulkan, Metal, DX12 or WebGPU).
    #[cfg(feature = "wgpu")]
    Wgpu,
}

impl ComputeDevice {
    /// The burn device (without autodiff).
    pub fn device(self) -> Result<Device, MlError> {
        match self {
            // flex, not ndarray: its im2col + gemm convolutions train the
            // MNIST CNN 14x faster (3,008 vs 212 samples/s, one core, release).
            #[cfg(not(feature = "ndarray"))]
            ComputeDevice::Cpu => Ok(Device::flex()),
            #[cfg(feature = "ndarray")]
            ComputeDevice::Cpu => Ok(Device::ndarray()),
            #[cfg(feature = "wgpu")]
            ComputeDevice::Wgpu => wgpu_device(),
        }
    }
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
    let device = Device::wgpu_options()
        .init_async()
        .await
        .map_err(|e| MlError::Backend(format!("{e}")))?;
    BROWSER_GPU.with(|d| *d.borrow_mut() = Some(device));
    Ok(())
}

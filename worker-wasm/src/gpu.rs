//! Choosing the device: WebGPU when the page found a working adapter and
//! loaded the build that has it, the CPU otherwise, with the reason. Which
//! of the two trains a model faster is then measured, model by model (see
//! the session).

use oblivion_ml::ComputeDevice;
use oblivion_protocol::tab::{AdapterInfo, BackendChoice};

/// Bytes, for people.
pub fn mib(bytes: f64) -> String {
    format!("{:.0} MiB", bytes / (1024.0 * 1024.0))
}

/// The device to train on, the adapter (if any) and why it is the CPU.
/// `adapter` is what the page was offered (it asks the browser before it
/// picks the build: see `WorkerBuild::choose`).
pub async fn choose(
    choice: BackendChoice,
    adapter: Option<AdapterInfo>,
) -> (ComputeDevice, Option<AdapterInfo>, Option<String>) {
    if choice == BackendChoice::Cpu {
        return (
            ComputeDevice::Cpu,
            adapter,
            Some("the CPU was chosen".into()),
        );
    }
    let Some(adapter) = adapter else {
        let reason = "the browser offers no WebGPU adapter".to_string();
        return (ComputeDevice::Cpu, None, Some(reason));
    };
    match webgpu().await {
        Ok(device) => (device, Some(adapter), None),
        Err(e) => (ComputeDevice::Cpu, Some(adapter), Some(e)),
    }
}

/// The browser's WebGPU as burn's device.
#[cfg(feature = "webgpu")]
pub async fn webgpu() -> Result<ComputeDevice, String> {
    oblivion_ml::init_webgpu()
        .await
        .map(|()| ComputeDevice::Wgpu)
        .map_err(|e| format!("WebGPU could not start: {e}"))
}

/// This build has no GPU kernels.
#[cfg(not(feature = "webgpu"))]
pub async fn webgpu() -> Result<ComputeDevice, String> {
    Err("this build of the worker is for the CPU only".into())
}

/// Whether a shard of `arch` at `batch` fits the adapter's binding limit;
/// if not, why (that shard then trains on the CPU).
pub fn fits(
    adapter: &AdapterInfo,
    arch: &oblivion_ml::model::Architecture,
    batch: usize,
) -> Result<(), String> {
    let need = arch.largest_buffer_bytes(batch) as f64;
    let limit = adapter.max_storage_binding.min(adapter.max_buffer_size);
    if limit > 0.0 && need > limit {
        return Err(format!(
            "this shard needs {} buffers; the adapter binds at most {}",
            mib(need),
            mib(limit)
        ));
    }
    Ok(())
}

//! Choosing the device: WebGPU when the browser offers a working adapter
//! that is not a software one (or when asked for it), the CPU otherwise,
//! with the reason. Which of the two trains a model faster is then
//! measured, model by model (see the session).

use js_sys::{Function, Promise, Reflect};
use oblivion_ml::ComputeDevice;
use oblivion_protocol::tab::{AdapterInfo, BackendChoice};
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;

use crate::net::{js_error, scope};

fn get(target: &JsValue, key: &str) -> JsValue {
    Reflect::get(target, &JsValue::from_str(key)).unwrap_or(JsValue::UNDEFINED)
}

fn text(target: &JsValue, key: &str) -> String {
    get(target, key).as_string().unwrap_or_default()
}

fn number(target: &JsValue, key: &str) -> f64 {
    get(target, key).as_f64().unwrap_or(0.0)
}

/// Asks the browser for a WebGPU adapter and reads its identity and limits
/// (burn acquires its own device from the same browser afterwards).
pub async fn probe_adapter() -> Result<AdapterInfo, String> {
    let gpu = get(&scope().navigator().into(), "gpu");
    if gpu.is_undefined() || gpu.is_null() {
        return Err("this browser has no WebGPU (navigator.gpu is missing)".into());
    }
    let request: Function = get(&gpu, "requestAdapter")
        .dyn_into()
        .map_err(|_| "navigator.gpu.requestAdapter is missing".to_string())?;
    let promise: Promise = request
        .call0(&gpu)
        .map_err(js_error)?
        .dyn_into()
        .map_err(|_| "requestAdapter did not return a promise".to_string())?;
    let adapter = JsFuture::from(promise).await.map_err(js_error)?;
    if adapter.is_null() || adapter.is_undefined() {
        return Err("the browser offers no WebGPU adapter".into());
    }
    let info = get(&adapter, "info");
    let name = ["vendor", "architecture", "device", "description"]
        .iter()
        .map(|k| text(&info, k))
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join(" ");
    let limits = get(&adapter, "limits");
    Ok(AdapterInfo {
        name: if name.is_empty() {
            "unnamed WebGPU adapter".into()
        } else {
            name
        },
        fallback: get(&info, "isFallbackAdapter").as_bool().unwrap_or(false)
            || get(&adapter, "isFallbackAdapter")
                .as_bool()
                .unwrap_or(false),
        max_buffer_size: number(&limits, "maxBufferSize"),
        max_storage_binding: number(&limits, "maxStorageBufferBindingSize"),
        max_workgroup_storage: number(&limits, "maxComputeWorkgroupStorageSize"),
    })
}

/// Bytes, for people.
pub fn mib(bytes: f64) -> String {
    format!("{:.0} MiB", bytes / (1024.0 * 1024.0))
}

/// Whether an adapter renders in software: the browser says so, or it is
/// SwiftShader (which Chromium does not always flag). On one, our MLP
/// trains over 100 times slower than on the CPU.
fn software(adapter: &AdapterInfo) -> bool {
    adapter.fallback || adapter.name.to_lowercase().contains("swiftshader")
}

/// The device to train on, the adapter (if any) and why it is the CPU.
pub async fn choose(choice: BackendChoice) -> (ComputeDevice, Option<AdapterInfo>, Option<String>) {
    if choice == BackendChoice::Cpu {
        return (ComputeDevice::Cpu, None, Some("the CPU was chosen".into()));
    }
    let adapter = match probe_adapter().await {
        Ok(a) => a,
        Err(reason) => return (ComputeDevice::Cpu, None, Some(reason)),
    };
    if choice == BackendChoice::Auto && software(&adapter) {
        let reason = format!(
            "the only WebGPU adapter is a software one ({}), slower than this CPU",
            adapter.name
        );
        return (ComputeDevice::Cpu, Some(adapter), Some(reason));
    }
    match oblivion_ml::init_webgpu().await {
        Ok(()) => (ComputeDevice::Wgpu, Some(adapter), None),
        Err(e) => (
            ComputeDevice::Cpu,
            Some(adapter),
            Some(format!("WebGPU could not start: {e}")),
        ),
    }
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

//! Asks the browser for a WebGPU adapter before the Contribute page picks
//! which build of the worker to load: a tab that will not train on a GPU
//! never downloads wgpu.

use js_sys::{Function, Promise, Reflect};
use oblivion_protocol::tab::AdapterInfo;
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;

fn get(target: &JsValue, key: &str) -> JsValue {
    Reflect::get(target, &JsValue::from_str(key)).unwrap_or(JsValue::UNDEFINED)
}

fn text(target: &JsValue, key: &str) -> String {
    get(target, key).as_string().unwrap_or_default()
}

fn number(target: &JsValue, key: &str) -> f64 {
    get(target, key).as_f64().unwrap_or(0.0)
}

fn js_error(e: JsValue) -> String {
    e.as_string()
        .or_else(|| js_sys::JSON::stringify(&e).ok().and_then(|s| s.as_string()))
        .unwrap_or_else(|| "unknown error".into())
}

/// The adapter's identity and limits, or why there is none. (The worker
/// that trains on it requests its own adapter and device from the same
/// browser; the page's is only looked at.)
pub async fn probe() -> Result<AdapterInfo, String> {
    let navigator: JsValue = web_sys::window().ok_or("no window")?.navigator().into();
    let gpu = get(&navigator, "gpu");
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

//! Reporting to the page that owns this worker.

use oblivion_protocol::tab::TabReport;
use wasm_bindgen::JsValue;

use crate::net::scope;

/// Posts `report` to the page as JSON text.
pub fn report(report: &TabReport) {
    if let Ok(text) = serde_json::to_string(report) {
        let _ = scope().post_message(&JsValue::from_str(&text));
    }
}

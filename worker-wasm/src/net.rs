//! The worker's I/O through the browser: the coordinator's WebSocket,
//! artifact downloads, update uploads, timers.

use std::cell::RefCell;
use std::rc::Rc;

use futures_channel::{mpsc, oneshot};
use js_sys::{Date, Promise, Uint8Array};
use oblivion_protocol::wire::{WORKER_TOKEN_HEADER, WorkerMessage};
use wasm_bindgen::JsCast;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::JsFuture;
use web_sys::{DedicatedWorkerGlobalScope, MessageEvent, RequestInit, Response, WebSocket};

thread_local! {
    /// The open coordinator connection, so Stop can close it.
    static CURRENT: RefCell<Option<WebSocket>> = const { RefCell::new(None) };
}

/// This Web Worker's global scope.
pub fn scope() -> DedicatedWorkerGlobalScope {
    js_sys::global().unchecked_into()
}

/// Milliseconds on a monotonic-enough clock.
pub fn now_ms() -> f64 {
    Date::now()
}

/// The best clock available: `performance.now()` (sub-millisecond).
pub fn precise_ms() -> f64 {
    scope().performance().map_or_else(Date::now, |p| p.now())
}

/// Closes the current connection (the session then ends or reconnects).
pub fn close_current() {
    CURRENT.with(|c| {
        if let Some(ws) = c.borrow_mut().take() {
            let _ = ws.close();
        }
    });
}

/// Waits `ms` milliseconds, letting the event loop run meanwhile.
pub async fn sleep(ms: i32) {
    let promise = Promise::new(&mut |resolve, _| {
        let _ = scope().set_timeout_with_callback_and_timeout_and_arguments_0(&resolve, ms);
    });
    let _ = JsFuture::from(promise).await;
}

/// A JS error as one line.
pub fn js_error(e: JsValue) -> String {
    e.as_string()
        .or_else(|| js_sys::JSON::stringify(&e).ok().and_then(|s| s.as_string()))
        .unwrap_or_else(|| "unknown error".into())
}

/// Sends a protocol message (dropped if the socket is closing: the
/// session notices the close itself).
pub fn send(ws: &WebSocket, msg: &WorkerMessage) {
    if let Ok(text) = serde_json::to_string(msg) {
        let _ = ws.send_with_str(&text);
    }
}

/// Opens the worker socket; yields its text messages until it closes.
pub async fn connect(url: &str) -> Result<(WebSocket, mpsc::UnboundedReceiver<String>), String> {
    let ws = WebSocket::new(url).map_err(js_error)?;
    let (tx, rx) = mpsc::unbounded::<String>();
    let (open_tx, open_rx) = oneshot::channel::<bool>();
    let open_tx = Rc::new(RefCell::new(Some(open_tx)));
    let on_message = Closure::<dyn FnMut(MessageEvent)>::new({
        let tx = tx.clone();
        move |e: MessageEvent| {
            if let Some(text) = e.data().as_string() {
                let _ = tx.unbounded_send(text);
            }
        }
    });
    let on_open = Closure::<dyn FnMut()>::new({
        let open_tx = open_tx.clone();
        move || {
            if let Some(tx) = open_tx.borrow_mut().take() {
                let _ = tx.send(true);
            }
        }
    });
    let on_close = Closure::<dyn FnMut()>::new(move || {
        if let Some(t) = open_tx.borrow_mut().take() {
            let _ = t.send(false);
        }
        tx.close_channel();
    });
    ws.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
    ws.set_onopen(Some(on_open.as_ref().unchecked_ref()));
    ws.set_onclose(Some(on_close.as_ref().unchecked_ref()));
    ws.set_onerror(Some(on_close.as_ref().unchecked_ref()));
    // The socket owns its callbacks for as long as it lives.
    on_message.forget();
    on_open.forget();
    on_close.forget();
    match open_rx.await {
        Ok(true) => {
            CURRENT.with(|c| *c.borrow_mut() = Some(ws.clone()));
            Ok((ws, rx))
        }
        _ => Err(format!("cannot connect to {url}")),
    }
}

/// GETs `url`'s bytes, showing the worker's token (a private job's data
/// is served to the lease holder only).
pub async fn fetch_bytes(url: &str, token: &str) -> Result<Vec<u8>, String> {
    let init = RequestInit::new();
    let headers = web_sys::Headers::new().map_err(js_error)?;
    headers.set(WORKER_TOKEN_HEADER, token).map_err(js_error)?;
    init.set_headers(&headers);
    let response: Response = JsFuture::from(scope().fetch_with_str_and_init(url, &init))
        .await
        .map_err(js_error)?
        .unchecked_into();
    if !response.ok() {
        return Err(format!("GET {url}: {}", response.status()));
    }
    let buffer = JsFuture::from(response.array_buffer().map_err(js_error)?)
        .await
        .map_err(js_error)?;
    Ok(Uint8Array::new(&buffer).to_vec())
}

/// POSTs an update; the coordinator's answer (JSON), or its error.
pub async fn post_update(url: &str, token: &str, body: &[u8]) -> Result<serde_json::Value, String> {
    let init = RequestInit::new();
    init.set_method("POST");
    let headers = web_sys::Headers::new().map_err(js_error)?;
    headers.set(WORKER_TOKEN_HEADER, token).map_err(js_error)?;
    headers
        .set("content-type", "application/octet-stream")
        .map_err(js_error)?;
    init.set_headers(&headers);
    let array = Uint8Array::from(body);
    init.set_body(&array);
    let response: Response = JsFuture::from(scope().fetch_with_str_and_init(url, &init))
        .await
        .map_err(js_error)?
        .unchecked_into();
    let status = response.status();
    let text = JsFuture::from(response.text().map_err(js_error)?)
        .await
        .map_err(js_error)?
        .as_string()
        .unwrap_or_default();
    let body: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
    if response.ok() {
        Ok(body)
    } else {
        Err(format!(
            "update refused ({status}): {}",
            body["error"].as_str().unwrap_or("")
        ))
    }
}

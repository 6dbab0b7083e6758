//! The Web Worker side: connection, leases, training, uploads.

use std::cell::RefCell;
use std::rc::Rc;

use futures_channel::{mpsc, oneshot};
use futures_util::StreamExt;
use js_sys::{Date, Uint8Array};
use oblivion_ml::ComputeDevice;
use oblivion_protocol::wire::{
    ClientKind, CoordinatorMessage, DeviceInfo, LeaseProgress, LeaseTask, PROTOCOL_VERSION,
    WORKER_TOKEN_HEADER, WorkerMessage,
};
use oblivion_worker_engine::{Engine, benchmark};
use wasm_bindgen::JsCast;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::JsFuture;
use web_sys::{DedicatedWorkerGlobalScope, MessageEvent, RequestInit, Response, WebSocket};

fn scope() -> DedicatedWorkerGlobalScope {
    js_sys::global().unchecked_into()
}

fn elapsed_since(start: f64) -> impl Fn() -> u64 {
    move || (Date::now() - start).max(0.0) as u64
}

/// Tells the page something (`{"type": ..., ...}`).
fn report(value: serde_json::Value) {
    let _ = scope().post_message(&JsValue::from_str(&value.to_string()));
}

fn send(ws: &WebSocket, msg: &WorkerMessage) {
    if let Ok(text) = serde_json::to_string(msg) {
        let _ = ws.send_with_str(&text);
    }
}

fn js_error(e: JsValue) -> String {
    e.as_string()
        .or_else(|| js_sys::JSON::stringify(&e).ok().and_then(|s| s.as_string()))
        .unwrap_or_else(|| "unknown error".into())
}

/// Opens the worker socket; yields its text messages until it closes.
async fn connect(url: &str) -> Result<(WebSocket, mpsc::UnboundedReceiver<String>), String> {
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
        Ok(true) => Ok((ws, rx)),
        _ => Err(format!("cannot connect to {url}")),
    }
}

async fn fetch_bytes(url: &str) -> Result<Vec<u8>, String> {
    let response: Response = JsFuture::from(scope().fetch_with_str(url))
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

async fn post_update(url: &str, token: &str, body: &[u8]) -> Result<serde_json::Value, String> {
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

/// Connects to `coordinator` (an http(s) URL) and trains leases until the
/// connection closes; the page restarts it to reconnect.
#[wasm_bindgen]
pub async fn run_worker(
    coordinator: String,
    name: String,
    payout_address: Option<String>,
) -> Result<(), JsValue> {
    run(coordinator.trim_end_matches('/'), name, payout_address)
        .await
        .map_err(|e| JsValue::from_str(&e))
}

async fn run(base: &str, name: String, payout_address: Option<String>) -> Result<(), String> {
    let device = ComputeDevice::Cpu;
    let start = Date::now();
    let score = benchmark(device, 20, &elapsed_since(start)).map_err(|e| e.to_string())?;
    let info = DeviceInfo {
        backend: "cpu".into(),
        name: "browser CPU (wasm)".into(),
        detail: "CPU backend (burn-flex in WebAssembly)".into(),
    };
    report(serde_json::json!({"type": "device", "device": info, "benchmark": score}));
    let ws_url = format!("{}/api/workers/connect", base.replacen("http", "ws", 1));
    let (ws, mut inbox) = connect(&ws_url).await?;
    send(
        &ws,
        &WorkerMessage::Hello {
            protocol: PROTOCOL_VERSION,
            name,
            client: ClientKind::Browser,
            device: info,
            benchmark: score,
            payout_address,
        },
    );
    let (token, heartbeat_ms) = match inbox.next().await.map(|t| serde_json::from_str(&t)) {
        Some(Ok(CoordinatorMessage::Welcome {
            token,
            heartbeat_secs,
            worker_id,
            ..
        })) => {
            report(serde_json::json!({"type": "connected", "worker_id": worker_id}));
            (token, heartbeat_secs as f64 * 1000.0)
        }
        Some(Ok(CoordinatorMessage::Error { message })) => return Err(message),
        _ => return Err("no welcome from the coordinator".into()),
    };
    let mut engine = Engine::new(device);
    let (mut accepted, mut rejected) = (0u64, 0u64);
    let mut queue: Vec<LeaseTask> = Vec::new();
    loop {
        let task = match queue.pop() {
            Some(t) => t,
            None => match inbox
                .next()
                .await
                .map(|t| serde_json::from_str::<CoordinatorMessage>(&t))
            {
                Some(Ok(CoordinatorMessage::Lease(task))) => task,
                Some(Ok(_)) | Some(Err(_)) => continue,
                None => return Err("the coordinator closed the connection".into()),
            },
        };
        report(
            serde_json::json!({"type": "lease", "lease": task.lease_id, "job": task.job_id, "round": task.round, "shard": task.shard}),
        );
        for (kind, sha) in engine.missing(&task) {
            let bytes = fetch_bytes(&format!("{base}/api/artifacts/{sha}")).await?;
            engine
                .insert(kind, &sha, &bytes)
                .map_err(|e| e.to_string())?;
        }
        // Training runs to completion on this thread; heartbeats go out
        // from the progress callback (WebSocket sends need no event loop).
        let mut last_beat = Date::now();
        let lease_id = task.lease_id;
        let t0 = Date::now();
        let update = engine
            .train(
                &task,
                &mut |p| {
                    let now = Date::now();
                    if now - last_beat >= heartbeat_ms / 3.0 {
                        last_beat = now;
                        send(&ws, &WorkerMessage::Heartbeat {
                            leases: vec![LeaseProgress { lease_id, progress: p }],
                        });
                        report(serde_json::json!({"type": "progress", "lease": lease_id, "progress": p}));
                    }
                    true
                },
                &elapsed_since(t0),
            )
            .map_err(|e| e.to_string())?;
        let Some(update) = update else { continue };
        let seconds = (Date::now() - t0) / 1000.0;
        match post_update(
            &format!("{base}/api/leases/{lease_id}/update"),
            &token,
            &update.body,
        )
        .await
        {
            Ok(_) => accepted += 1,
            Err(e) => {
                rejected += 1;
                report(serde_json::json!({"type": "warning", "message": e}));
            }
        }
        report(serde_json::json!({
            "type": "done", "lease": lease_id, "accepted": accepted, "rejected": rejected,
            "samples_per_second": update.samples as f64 / seconds.max(1e-3),
        }));
        // Leases that arrived meanwhile are waiting in the inbox.
        while let Ok(text) = inbox.try_recv() {
            match serde_json::from_str::<CoordinatorMessage>(&text) {
                Ok(CoordinatorMessage::Lease(t)) => queue.insert(0, t),
                Ok(CoordinatorMessage::Revoke { lease_id, .. }) => {
                    queue.retain(|t| t.lease_id != lease_id)
                }
                _ => {}
            }
        }
    }
}

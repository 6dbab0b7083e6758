//! The browser worker: the [worker engine](oblivion_worker_engine) in a
//! dedicated Web Worker, on WebGPU when the browser has it and on the CPU
//! otherwise, speaking the coordinator's worker protocol.
//!
//! The page talks to it with JSON messages
//! ([`TabCommand`](oblivion_protocol::tab::TabCommand) in,
//! [`TabReport`](oblivion_protocol::tab::TabReport) out); the worker owns the connection, reconnects on its
//! own, and never blocks the page.
#![cfg(target_arch = "wasm32")]

mod bench;
mod gpu;
mod net;
mod page;
mod sandbox;
mod session;

use std::cell::{Cell, RefCell};

use oblivion_ml::data::{LocalData, read_local};
use oblivion_protocol::tab::{TabCommand, TabReport};
use wasm_bindgen::JsCast;
use wasm_bindgen::prelude::*;
use web_sys::MessageEvent;

thread_local! {
    /// Set by the page's Stop: the session ends at its next check.
    static STOPPING: Cell<bool> = const { Cell::new(false) };
    /// A session or benchmark is running.
    static BUSY: Cell<bool> = const { Cell::new(false) };
    /// The contributor's own data for federated jobs, read from the files
    /// the page handed over; the next session trains on it.
    static LOCAL_DATA: RefCell<Option<LocalData>> = const { RefCell::new(None) };
}

/// Takes the local data the page handed over, if any.
pub(crate) fn take_local_data() -> Option<LocalData> {
    LOCAL_DATA.with(|d| d.borrow_mut().take())
}

/// Reads local files (an array of `Uint8Array`s) and keeps the data.
fn receive_local_files(files: &js_sys::Array) {
    let bytes: Vec<Vec<u8>> = files
        .iter()
        .map(|f| js_sys::Uint8Array::new(&f).to_vec())
        .collect();
    let slices: Vec<&[u8]> = bytes.iter().map(Vec::as_slice).collect();
    let report = match read_local(&slices) {
        Ok(local) => {
            let offer = local.offer();
            LOCAL_DATA.with(|d| *d.borrow_mut() = Some(local));
            TabReport::LocalData {
                offer: Some(offer),
                error: None,
            }
        }
        Err(e) => {
            LOCAL_DATA.with(|d| *d.borrow_mut() = None);
            TabReport::LocalData {
                offer: None,
                error: Some(e.to_string()),
            }
        }
    };
    page::report(&report);
}

pub(crate) fn stopping() -> bool {
    STOPPING.with(Cell::get)
}

/// Installs the message handler; the page may send commands once it has
/// received `TabReport::Ready`.
pub fn start() {
    std::panic::set_hook(Box::new(|info| {
        // A panic leaves the module unusable: tell the page, which restarts
        // the worker (on the CPU, if the GPU was in use).
        page::report(&TabReport::Panic {
            message: info.to_string(),
        });
    }));
    let on_message = Closure::<dyn FnMut(MessageEvent)>::new(|e: MessageEvent| {
        let data = e.data();
        if let Some(files) = data.dyn_ref::<js_sys::Array>() {
            receive_local_files(files);
            return;
        }
        let Some(text) = data.as_string() else {
            return;
        };
        match serde_json::from_str::<TabCommand>(&text) {
            Ok(TabCommand::Stop) => {
                STOPPING.with(|s| s.set(true));
                net::close_current();
            }
            // Predictions run beside a session: they hold the worker for
            // milliseconds.
            Ok(TabCommand::Predict(request)) => {
                wasm_bindgen_futures::spawn_local(async move {
                    page::report(&sandbox::predict(request).await);
                });
            }
            Ok(command) if BUSY.with(Cell::get) => page::report(&TabReport::Warning {
                message: format!("busy: {command:?} ignored"),
            }),
            Ok(TabCommand::Start(config)) => {
                BUSY.with(|b| b.set(true));
                STOPPING.with(|s| s.set(false));
                wasm_bindgen_futures::spawn_local(async move {
                    session::run(config).await;
                    BUSY.with(|b| b.set(false));
                });
            }
            Ok(TabCommand::Bench(test)) => {
                BUSY.with(|b| b.set(true));
                wasm_bindgen_futures::spawn_local(async move {
                    page::report(&bench::run(test).await);
                    BUSY.with(|b| b.set(false));
                });
            }
            Err(e) => page::report(&TabReport::Warning {
                message: format!("unreadable command: {e}"),
            }),
        }
    });
    net::scope().set_onmessage(Some(on_message.as_ref().unchecked_ref()));
    on_message.forget();
    page::report(&TabReport::Ready);
}

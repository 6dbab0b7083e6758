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
mod session;

use std::cell::Cell;

use oblivion_protocol::tab::{TabCommand, TabReport};
use wasm_bindgen::JsCast;
use wasm_bindgen::prelude::*;
use web_sys::MessageEvent;

thread_local! {
    /// Set by the page's Stop: the session ends at its next check.
    static STOPPING: Cell<bool> = const { Cell::new(false) };
    /// A session or benchmark is running.
    static BUSY: Cell<bool> = const { Cell::new(false) };
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
        let Some(text) = e.data().as_string() else {
            return;
        };
        match serde_json::from_str::<TabCommand>(&text) {
            Ok(TabCommand::Stop) => {
                STOPPING.with(|s| s.set(true));
                net::close_current();
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

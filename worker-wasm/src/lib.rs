//! The browser worker: the same [`oblivion_worker_engine`] the native
//! binary runs, hosted in a dedicated Web Worker so the page never stalls.
//! It speaks the coordinator's worker protocol over the browser's
//! WebSocket and fetch, and reports its state to the page with
//! `postMessage` (JSON objects with a `type` field).

#![cfg(target_arch = "wasm32")]

mod host;

pub use host::run_worker;

//! Entry point of the browser worker's wasm module (built by Trunk as a
//! Web Worker; see `index.html`).

#[cfg(target_arch = "wasm32")]
fn main() {
    oblivion_worker_wasm::start();
}

#[cfg(not(target_arch = "wasm32"))]
fn main() {
    eprintln!("oblivion-worker-wasm runs in a browser; natively, use oblivion-worker");
    std::process::exit(1);
}

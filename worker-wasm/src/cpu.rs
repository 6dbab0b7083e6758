//! Entry point of the browser worker's CPU build: the same module as
//! `main.rs`, built without WebGPU (see `index.html`).

#[cfg(target_arch = "wasm32")]
fn main() {
    oblivion_worker_wasm::start();
}

#[cfg(not(target_arch = "wasm32"))]
fn main() {
    eprintln!("oblivion-worker-cpu runs in a browser; natively, use oblivion-worker");
    std::process::exit(1);
}

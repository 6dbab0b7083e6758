//! The web app in headless Chromium (`tests/browser/scenarios.mjs`): tabs
//! contribute (WebGPU through SwiftShader, and the CPU fallback), a job is
//! created through the form and watched to completion, a tab closed
//! mid-shard costs only its lease, and the form shows the server's errors.
//! Each scenario's claims are re-checked here through the API.

use std::process::Command;

use oblivion_e2e::{Network, root};
use oblivion_protocol::api::JobView;
use oblivion_protocol::wire::ClientKind;

/// Runs one scenario against a fresh coordinator serving `dist/`; returns
/// the network (still running) and the scenario's result.
fn scenario(name: &str) -> (Network, serde_json::Value) {
    let dist = root().join("dist");
    assert!(
        dist.join("index.html").exists(),
        "the web build is missing: run `cargo xtask web` (cargo xtask test does)"
    );
    let net = Network::start(&["--web-dir", dist.to_str().unwrap()]).unwrap();
    let out = Command::new("node")
        .arg(root().join("tests/browser/scenarios.mjs"))
        .arg(&net.url)
        .arg(name)
        .current_dir(root())
        .output()
        .expect("node runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    print!("{stdout}");
    eprint!("{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "scenario {name} failed");
    let result = stdout
        .lines()
        .find_map(|l| l.strip_prefix("RESULT "))
        .expect("the scenario prints its result");
    (net, serde_json::from_str(result).unwrap())
}

async fn job(net: &Network, id: u64) -> JobView {
    net.api().job(id).await.unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn two_tabs_webgpu_and_cpu_train_a_job_created_in_the_form() {
    let (net, result) = scenario("two-tabs");
    let job = job(&net, result["job"].as_u64().unwrap()).await;
    assert_eq!(job.status.as_str(), "completed");
    assert_eq!(job.spec.name, "mnist-mlp", "the example was submitted");
    assert!(job.history.last().unwrap().accuracy > 0.85, "{job:?}");
    let browsers: Vec<_> = job
        .contributors
        .iter()
        .filter(|c| c.client == ClientKind::Browser)
        .collect();
    assert!(
        browsers
            .iter()
            .any(|c| c.backend == "webgpu" && c.updates >= 1),
        "a WebGPU tab contributed accepted updates: {browsers:?}"
    );
    assert!(
        browsers
            .iter()
            .any(|c| c.backend == "cpu" && c.updates >= 1),
        "a CPU tab contributed accepted updates: {browsers:?}"
    );
    assert!(
        result["cpuReason"].as_str().unwrap().contains("no WebGPU"),
        "the CPU tab says why: {result}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tab_closed_mid_shard_costs_only_its_lease() {
    let (net, result) = scenario("tab-closed");
    let job = job(&net, result["job"].as_u64().unwrap()).await;
    assert_eq!(job.status.as_str(), "completed");
    assert_eq!(job.history.len(), 2);
    assert_ne!(result["closedHolder"], result["reissuedTo"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_form_shows_the_servers_error_for_an_invalid_spec() {
    let (net, result) = scenario("invalid-spec");
    assert!(net.api().get("/api/jobs").await.unwrap().1 == serde_json::json!([]));
    assert!(result["zero"].as_str().unwrap().contains("rounds"));
}

//! The web app in headless Chromium (`tests/browser/scenarios.mjs`): tabs
//! contribute (WebGPU through SwiftShader, and the CPU fallback), a job is
//! created through the form and watched to completion, a tab closed
//! mid-shard costs only its lease, a tab reconnects after a coordinator
//! restart, the form shows the server's errors, two tabs train a
//! federated job on files that never leave them, a tab trains with a
//! pool of workers, one per core, a tab runs an inference job, and a
//! visitor draws a digit that a model's page answers in the tab.
//! Each scenario's claims are re-checked here through the API.

use oblivion_protocol::JobId;
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};

use alloy::primitives::{B256, U256};
use alloy::providers::Provider;
use oblivion_chain::Key;
use oblivion_chain::escrow;
use oblivion_e2e::anvil::Anvil;
use oblivion_e2e::{CREATOR_KEY, Network, root};
use oblivion_protocol::api::JobView;
use oblivion_protocol::wire::ClientKind;

/// Runs one scenario against a fresh coordinator serving `dist/`; returns
/// the network (still running) and the scenario's result. When the script
/// prints `READY`, `on_ready` acts on the network and the script is told
/// `RESTARTED` on its standard input.
fn scenario_with(name: &str, on_ready: impl FnOnce(&mut Network)) -> (Network, serde_json::Value) {
    // The tabs' wallets sign with anvil's development accounts.
    let anvil = Anvil::start().unwrap();
    let net = Network::start(&["--web-dir", dist().to_str().unwrap()]).unwrap();
    run_scenario(name, net, &anvil, &[], on_ready)
}

fn dist() -> std::path::PathBuf {
    let dist = root().join("dist");
    assert!(
        dist.join("index.html").exists(),
        "the web build is missing: run `cargo xtask web` (cargo xtask test does)"
    );
    dist
}

/// Runs scenario `name` with `env` set for it.
fn run_scenario(
    name: &str,
    mut net: Network,
    anvil: &Anvil,
    env: &[(&str, &std::path::Path)],
    on_ready: impl FnOnce(&mut Network),
) -> (Network, serde_json::Value) {
    let mut child = Command::new("node")
        .arg(root().join("tests/browser/scenarios.mjs"))
        .arg(&net.url)
        .arg(name)
        .env("ANVIL_URL", &anvil.url)
        .envs(env.iter().copied())
        .current_dir(root())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("node runs");
    let mut stdin = child.stdin.take().unwrap();
    let stdout = BufReader::new(child.stdout.take().unwrap());
    let (mut on_ready, mut result) = (Some(on_ready), None);
    for line in stdout.lines() {
        let line = line.unwrap();
        println!("{line}");
        if line == "READY"
            && let Some(act) = on_ready.take()
        {
            act(&mut net);
            writeln!(stdin, "RESTARTED").unwrap();
        }
        if let Some(json) = line.strip_prefix("RESULT ") {
            result = Some(serde_json::from_str(json).unwrap());
        }
    }
    assert!(child.wait().unwrap().success(), "scenario {name} failed");
    (net, result.expect("the scenario prints its result"))
}

fn scenario(name: &str) -> (Network, serde_json::Value) {
    scenario_with(name, |_| {})
}

async fn job(net: &Network, id: u64) -> JobView {
    net.api().job(JobId(id)).await.unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn two_tabs_webgpu_and_cpu_train_a_job_created_in_the_form() {
    let (net, result) = scenario("two-tabs");
    let job = job(&net, result["job"].as_u64().unwrap()).await;
    assert_eq!(job.status.as_str(), "completed");
    assert_eq!(job.spec.name(), "mnist-mlp", "the example was submitted");
    let creator = oblivion_chain::Key::parse(CREATOR_KEY).unwrap().address();
    assert_eq!(
        job.owner,
        Some(creator.to_lowercase()),
        "the wallet that signed in owns the job"
    );
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
    assert!(
        result["softwareReason"]
            .as_str()
            .unwrap()
            .contains("software"),
        "a tab whose only adapter is a software one starts on the CPU, and says why: {result}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tab_runs_an_inference_job_over_a_models_held_out_rows() {
    let (net, result) = scenario("inference");
    let run = job(&net, result["run"].as_u64().unwrap()).await;
    assert_eq!(run.status.as_str(), "completed", "{run:?}");
    let outputs = run.outputs.expect("the outputs' summary");
    assert_eq!(outputs.rows, 30, "iris holds out 30 rows");
    assert!(outputs.accuracy.unwrap() > 0.8, "{outputs:?}");
    let tab_rows: u64 = run
        .contributors
        .iter()
        .filter(|c| c.client == ClientKind::Browser)
        .map(|c| c.samples)
        .sum();
    assert_eq!(
        tab_rows, 30,
        "the tab ran every row: {:?}",
        run.contributors
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_visitor_draws_a_digit_and_the_model_answers_in_the_tab() {
    // The MNIST CNN example, trained by native workers: model 1.
    let anvil = Anvil::start().unwrap();
    let mut net = Network::start(&["--web-dir", dist().to_str().unwrap()]).unwrap();
    for i in 0..3 {
        net.add_worker(&format!("w{i}")).unwrap();
    }
    let api = net.api();
    let (job, _) = api
        .train_example("mnist-cnn.json", std::time::Duration::from_secs(900))
        .await
        .unwrap();
    // The network comes back out: the checks below ask it.
    let (_net, result) =
        tokio::task::spawn_blocking(move || run_scenario("sandbox", net, &anvil, &[], |_| {}))
            .await
            .unwrap();
    assert_eq!(
        result["predicted"], 1,
        "a vertical stroke is a one: {result}"
    );
    // What the page showed is the model's answer for what was drawn.
    let input: Vec<f32> = serde_json::from_value(result["input"].clone()).unwrap();
    let shown: Vec<f32> = serde_json::from_value(result["probabilities"].clone()).unwrap();
    let weights = api
        .get_bytes(&format!("/api/jobs/{job}/model?format=safetensors"))
        .await
        .unwrap();
    let (arch, params, _) = oblivion_ml::export::from_safetensors(&weights).unwrap();
    let rows = oblivion_ml::data::Dataset {
        shape: vec![1, 28, 28],
        features: input,
        labels: vec![0],
        classes: 10,
    };
    let native =
        oblivion_ml::inference::infer(&arch, &params, &rows, oblivion_ml::ComputeDevice::Cpu)
            .unwrap();
    let most = native.max_difference(&oblivion_ml::inference::Outputs {
        classes: 10,
        probabilities: shown,
        predicted: native.predicted.clone(),
    });
    assert!(
        most < 1e-4,
        "the tab and the native engine differ by {most}"
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

#[tokio::test(flavor = "multi_thread")]
async fn a_tab_reconnects_after_a_coordinator_restart() {
    let (net, result) = scenario_with("reconnect", |net| net.restart_coordinator().unwrap());
    let job = job(&net, result["job"].as_u64().unwrap()).await;
    assert_eq!(job.status.as_str(), "completed");
    assert!(
        job.contributors
            .iter()
            .any(|c| c.client == ClientKind::Browser && c.updates >= 1),
        "the reconnected tab contributed: {:?}",
        job.contributors
    );
}

/// anvil's development account #1: the contributor tab's wallet.
const CONTRIBUTOR_KEY: &str = oblivion_e2e::OTHER_KEY;

#[tokio::test(flavor = "multi_thread")]
async fn a_paid_job_is_funded_settled_and_claimed_in_the_browser() {
    // A block a second, so that deposits gather confirmations.
    let anvil = Anvil::start_with(&["--block-time", "1"]).unwrap();
    let url: alloy::transports::http::reqwest::Url = anvil.url.parse().unwrap();
    let provider = escrow::connect(url, &Key::parse(oblivion_e2e::anvil::DEPLOYER_KEY).unwrap());
    let contract = escrow::deploy(provider.clone(), 86_400, 3_600)
        .await
        .unwrap();
    let mut flags = vec!["--web-dir".to_string(), dist().display().to_string()];
    flags.extend(oblivion_e2e::anvil::chain_flags(
        &anvil.url,
        *contract.address(),
        1,
    ));
    let net = Network::start(&flags.iter().map(String::as_str).collect::<Vec<_>>()).unwrap();
    // anvil comes back out: the checks below read the chain.
    let ((net, result), _anvil) = tokio::task::spawn_blocking(move || {
        let outcome = run_scenario("paid", net, &anvil, &[], |_| {});
        (outcome, anvil)
    })
    .await
    .unwrap();
    let job = job(&net, result["job"].as_u64().unwrap()).await;
    let contributor = Key::parse(CONTRIBUTOR_KEY)
        .unwrap()
        .address()
        .to_lowercase();
    let creator = Key::parse(CREATOR_KEY).unwrap().address().to_lowercase();
    assert_eq!(job.owner.as_deref(), Some(creator.as_str()));
    let payment = job.payment.unwrap();
    let settlement = payment.settlement.unwrap();
    assert_eq!(settlement.payouts.len(), 1, "the tab did all the work");
    assert_eq!(settlement.payouts[0].account, contributor);
    // On chain: the whole deposit was claimed and the escrow holds nothing.
    let key: B256 = payment.job_key.parse().unwrap();
    let on_chain = contract.jobs(key).call().await.unwrap();
    let half_ether = U256::from(500_000_000_000_000_000u64);
    assert_eq!(on_chain.deposit, half_ether);
    assert_eq!(on_chain.claimed, half_ether);
    assert_eq!(
        provider.get_balance(*contract.address()).await.unwrap(),
        U256::ZERO
    );
}

/// anvil's development accounts #2 and #3: the market scenario's trainers.
const TRAINERS: [&str; 2] = [
    "0x5de4111afa1a4b94908f83103eb1f1706367c2e68ca870fc3fb9a804cdab365a",
    "0x7c852118294e51e653712a81e05800f419141751be58f605c371e15141b007a6",
];

#[tokio::test(flavor = "multi_thread")]
async fn a_model_is_listed_and_bought_in_the_browser() {
    // A block a second, so that chain events gather confirmations.
    let anvil = Anvil::start_with(&["--block-time", "1"]).unwrap();
    let escrow = oblivion_e2e::anvil::deploy_escrow(&anvil.url, 3_600)
        .await
        .unwrap();
    let mut flags = vec!["--web-dir".to_string(), dist().display().to_string()];
    flags.extend(oblivion_e2e::anvil::chain_flags(&anvil.url, escrow, 1));
    let mut net = Network::start(&flags.iter().map(String::as_str).collect::<Vec<_>>()).unwrap();
    for (i, key) in TRAINERS.iter().enumerate() {
        net.add_paid_worker(&format!("trainer-{i}"), Some(key))
            .unwrap();
    }
    // Model 1: private, trained by the two paid workers.
    let api = net.api();
    let mut spec = oblivion_e2e::example("iris-mlp.json").unwrap();
    spec["visibility"] = serde_json::json!("private");
    spec["trainers"] =
        serde_json::json!(TRAINERS.map(|k| Key::parse(k).unwrap().address().to_lowercase()));
    let job = api.submit(&spec).await.unwrap();
    let done = api
        .wait_finished(job, std::time::Duration::from_secs(300), |_| {})
        .await
        .unwrap();
    assert_eq!(done.status.as_str(), "completed");
    let ((net, result), _anvil) = tokio::task::spawn_blocking(move || {
        let outcome = run_scenario("market", net, &anvil, &[], |_| {});
        (outcome, anvil)
    })
    .await
    .unwrap();
    assert_eq!(result["price"], "0.25 ETH", "{result}");
    // The coordinator saw the app's purchase: the buyer reads the model,
    // an account that did not buy it does not.
    let (status, body) = net
        .api_as(CONTRIBUTOR_KEY)
        .get("/api/market/account")
        .await
        .unwrap();
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["purchases"][0]["model_id"], 1, "{body}");
    assert_eq!(body["purchases"][0]["tx"], result["tx"], "{body}");
    let stranger = net.api_as(TRAINERS[0]);
    let (status, _) = stranger
        .get("/api/models/1/weights?format=safetensors")
        .await
        .unwrap();
    assert_eq!(status, 403, "a trainer that did not buy it");
    // Each trainer's share of the 0.075 ETH pool is there to claim.
    let (_, body) = stranger.get("/api/market/account").await.unwrap();
    let claimable =
        oblivion_protocol::Wei::parse(body["shares"][0]["claimable"].as_str().unwrap()).unwrap();
    assert!(!claimable.is_zero(), "{body}");
}

#[tokio::test(flavor = "multi_thread")]
async fn two_tabs_train_a_federated_job_on_files_that_never_leave_them() {
    let dir = oblivion_e2e::ScratchDir::new("federated-tabs").unwrap();
    oblivion_e2e::split_iris_federated(&dir.0).unwrap();
    let anvil = Anvil::start().unwrap();
    let net = Network::start(&["--web-dir", dist().to_str().unwrap()]).unwrap();
    let (net, result) = tokio::task::spawn_blocking(move || {
        run_scenario(
            "federated",
            net,
            &anvil,
            &[("FEDERATED_DIR", dir.0.as_path())],
            |_| {},
        )
    })
    .await
    .unwrap();
    let job = job(&net, result["job"].as_u64().unwrap()).await;
    assert_eq!(job.status.as_str(), "completed", "{job:?}");
    let accuracy = job.history.last().unwrap().accuracy;
    assert!(accuracy >= 0.9, "the job reached its target: {accuracy}");
    assert!(job.spec.training().unwrap().dataset.is_federated());
    assert_eq!(
        job.train_samples, 0,
        "the coordinator holds no training data"
    );
    // Both tabs, and only they, trained it: once a round each.
    assert_eq!(job.contributors.len(), 2, "{:?}", job.contributors);
    for c in &job.contributors {
        assert_eq!(c.client, ClientKind::Browser);
        assert_eq!(c.updates, job.history.len() as u64, "{c:?}");
    }
    assert!(job.history.last().unwrap().epsilon.is_some());
    let quorum = job
        .spec
        .training()
        .unwrap()
        .quorum
        .clone()
        .expect("the form's quorum");
    assert_eq!((quorum.share, quorum.after_secs), (0.5, 600));
}

/// The worker's wasm as a browser asks for it: brotli-compressed from the
/// copy `cargo xtask web` wrote, typed for streaming compilation, under a
/// content-hashed name and kept for good; the page and the worker's loader
/// are checked on every use.
#[tokio::test(flavor = "multi_thread")]
async fn the_app_s_files_are_served_compressed_and_cached_by_name() {
    let dist = dist();
    let net = Network::start(&["--web-dir", dist.to_str().unwrap()]).unwrap();
    let wasm = std::fs::read_dir(&dist)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .find(|n| n.starts_with("oblivion-worker-wasm-") && n.ends_with("_bg.wasm"))
        .expect("a content-hashed worker wasm");
    let http = reqwest::Client::builder()
        .no_gzip()
        .no_brotli()
        .build()
        .unwrap();
    let get = |path: String, encoding: &'static str| {
        let http = http.clone();
        let url = format!("{}/{path}", net.url);
        async move {
            http.get(url)
                .header("accept-encoding", encoding)
                .send()
                .await
                .unwrap()
        }
    };
    let r = get(wasm.clone(), "gzip, deflate, br").await;
    assert_eq!(r.status(), 200);
    let headers = r.headers().clone();
    assert_eq!(headers["content-encoding"], "br");
    assert_eq!(headers["content-type"], "application/wasm");
    assert!(
        headers["cache-control"]
            .to_str()
            .unwrap()
            .contains("immutable")
    );
    let body = r.bytes().await.unwrap();
    let on_disk = std::fs::read(dist.join(&wasm)).unwrap();
    assert_eq!(
        body.len(),
        std::fs::read(dist.join(format!("{wasm}.br")))
            .unwrap()
            .len()
    );
    println!(
        "worker wasm: {} bytes, {} on the wire (brotli)",
        on_disk.len(),
        body.len()
    );
    let r = get(wasm.clone(), "gzip").await;
    assert_eq!(r.headers()["content-encoding"], "gzip");
    let r = get(wasm, "identity").await;
    assert!(r.headers().get("content-encoding").is_none());
    assert_eq!(r.bytes().await.unwrap().len(), on_disk.len());
    for path in ["", "oblivion-worker-wasm_loader.js", "jobs/3"] {
        let r = get(path.to_string(), "br").await;
        assert_eq!(r.status(), 200, "{path}");
        assert_eq!(r.headers()["cache-control"], "no-cache", "{path}");
    }
}

/// A contributor opening the Contribute page while a job runs: how long
/// until its tab has trained its first shard, and how many bytes it fetched
/// to get there, cold (a fresh browser) and warm (its cache holding the
/// app's and worker's files). Measured on loopback and printed; a
/// benchmark more than a test, it fails only when a tab never gets there,
/// or when a tab without WebGPU downloads the worker's WebGPU build.
#[tokio::test(flavor = "multi_thread")]
async fn a_tab_opened_on_a_running_job_trains_its_first_shard() {
    let anvil = Anvil::start().unwrap();
    let mut net = Network::start(&["--web-dir", dist().to_str().unwrap()]).unwrap();
    // The example runs, on native workers, when the tab opens.
    net.add_worker("native-1").unwrap();
    net.add_worker("native-2").unwrap();
    let mut job = oblivion_e2e::example("mnist-mlp.json").unwrap();
    job["rounds"] = 20.into();
    let id = net.api().submit(&job).await.unwrap();
    let started = std::time::Instant::now();
    while net.api().job(id).await.unwrap().history.is_empty() {
        assert!(started.elapsed().as_secs() < 120, "the example never ran");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    let ((_net, result), _anvil) = tokio::task::spawn_blocking(move || {
        let outcome = run_scenario("first-shard", net, &anvil, &[], |_| {});
        (outcome, anvil)
    })
    .await
    .unwrap();
    for run in ["cold", "warm"] {
        let r = &result[run];
        println!(
            "{run}: first shard trained {:.1} s after opening the page; {:.2} MB fetched, \
             {:.2} MB of them the app's and worker's files",
            r["ms"].as_f64().unwrap() / 1000.0,
            r["bytes"].as_f64().unwrap() / 1e6,
            r["code"].as_f64().unwrap() / 1e6
        );
    }
    let (cold, warm) = (&result["cold"], &result["warm"]);
    // A tab without WebGPU never downloads wgpu: only the CPU build.
    let modules = cold["wasm"].as_array().unwrap();
    println!("cold: wasm fetched {modules:?}");
    assert!(
        modules.iter().any(|m| {
            let path = m["path"].as_str().unwrap();
            path.starts_with("/oblivion-worker-cpu-") && path.ends_with("_bg.wasm")
        }),
        "the tab fetched the worker's CPU build: {modules:?}"
    );
    assert!(
        !modules.iter().any(|m| m["path"]
            .as_str()
            .unwrap()
            .starts_with("/oblivion-worker-wasm-")),
        "a tab without WebGPU fetched the WebGPU build: {modules:?}"
    );
    assert!(
        warm["code"].as_f64().unwrap() < cold["code"].as_f64().unwrap() / 10.0,
        "a warm tab fetches the files again: {result}"
    );
}

/// A tab trains with a pool of workers, one per core the browser reports:
/// each pool worker is a worker of the network with leases of its own, and
/// the page sums their figures.
#[tokio::test(flavor = "multi_thread")]
async fn a_tab_trains_with_a_worker_per_core() {
    let (net, result) = scenario("pool");
    let job = job(&net, result["job"].as_u64().unwrap()).await;
    assert_eq!(job.status.as_str(), "completed", "{job:?}");
    let size = result["size"].as_u64().unwrap();
    let name = result["name"].as_str().unwrap();
    let mine: Vec<_> = job
        .contributors
        .iter()
        .filter(|c| c.client == ClientKind::Browser && c.name.starts_with(name))
        .collect();
    assert_eq!(mine.len() as u64, size, "one worker a pool slot: {mine:?}");
    assert!(mine.iter().all(|c| c.updates >= 1), "{mine:?}");
    let total: u64 = mine.iter().map(|c| c.updates).sum();
    assert_eq!(total, result["accepted"].as_u64().unwrap(), "{result}");
}

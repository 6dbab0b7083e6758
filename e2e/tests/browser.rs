//! A browser tab trains for the network: the Contribute page in headless
//! Chromium runs the wasm worker in a Web Worker, and its updates are
//! accepted like any other worker's.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use oblivion_e2e::{Network, example, root};
use oblivion_protocol::wire::ClientKind;

#[tokio::test(flavor = "multi_thread")]
async fn a_browser_tab_trains_accepted_shards() {
    let dist = root().join("dist");
    assert!(
        dist.join("oblivion_worker_wasm_bg.wasm").exists(),
        "the web build is missing: run `cargo xtask web` (cargo xtask test does)"
    );
    let net = Network::start(&["--web-dir", dist.to_str().unwrap()]).unwrap();
    let api = net.api();
    let mut spec = example("iris-mlp.json").unwrap();
    spec["rounds"] = 3.into();
    let id = api.submit(&spec).await.unwrap();
    let mut tab = Command::new("node")
        .arg(root().join("tests/browser/contribute.mjs"))
        .arg(&net.url)
        .current_dir(root())
        .stdout(Stdio::inherit())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(300);
    let mut browser_accepted = 0;
    let job = loop {
        let job = api.job(id).await.unwrap();
        for w in api.workers().await.unwrap() {
            if w.client == ClientKind::Browser {
                browser_accepted = browser_accepted.max(w.accepted);
            }
        }
        if job.status.is_finished() {
            break job;
        }
        if let Ok(Some(status)) = tab.try_wait() {
            panic!("the browser script exited early: {status}");
        }
        assert!(Instant::now() < deadline, "the job did not finish: {job:?}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let _ = tab.kill();
    let _ = tab.wait();
    assert_eq!(job.status.as_str(), "completed");
    assert_eq!(
        browser_accepted, 6,
        "the tab trained every shard of 3 rounds"
    );
}

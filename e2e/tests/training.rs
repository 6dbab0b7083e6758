//! The training network end to end: a coordinator and three native worker
//! processes train the MNIST CNN example to at least 97% on held-out digits;
//! the exported models agree with the project's own predictions; and a
//! worker killed mid-round costs only its shard.

use std::time::Duration;

use oblivion_e2e::{Network, ScratchDir, example, root};
use oblivion_ml::ComputeDevice;
use oblivion_ml::data::Dataset;
use oblivion_ml::export::from_burn_record;
use oblivion_ml::model::Architecture;
use oblivion_ml::train::{evaluate, predict};
use oblivion_protocol::JobSpec;

const TIMEOUT: Duration = Duration::from_secs(900);

/// The digits the job held out, rebuilt exactly as the coordinator split them.
fn held_out(spec: &JobSpec) -> Dataset {
    let dir = root().join("datasets/mnist");
    let images = std::fs::read(dir.join("train-images-idx3-ubyte.gz")).unwrap();
    let labels = std::fs::read(dir.join("train-labels-idx1-ubyte.gz")).unwrap();
    let all = Dataset::from_idx(&images, &labels).unwrap();
    all.split(spec.validation_split, spec.seed).1
}

fn network(workers: usize) -> Network {
    let mut net = Network::start(&[]).unwrap();
    for i in 0..workers {
        net.add_worker(&format!("w{i}")).unwrap();
    }
    net
}

#[tokio::test(flavor = "multi_thread")]
async fn mnist_cnn_reaches_97_percent_and_exports_agree() {
    let net = network(3);
    let api = net.api();
    let spec_json = example("mnist-cnn.json").unwrap();
    let spec: JobSpec = serde_json::from_value(spec_json.clone()).unwrap();
    let id = api.submit(&spec_json).await.unwrap();
    let job = api.wait_finished(id, TIMEOUT, |_| {}).await.unwrap();
    assert_eq!(job.status.as_str(), "completed", "{job:?}");
    assert!(
        job.history.len() >= 3,
        "at least 3 rounds: {:?}",
        job.history
    );
    let last = job.history.last().unwrap();
    assert!(
        last.accuracy >= 0.97,
        "validation accuracy {}",
        last.accuracy
    );
    for r in &job.history {
        assert_eq!(
            r.updates, spec.shards_per_round,
            "round {} aggregated every shard",
            r.round
        );
    }
    // Every worker did accepted work.
    let workers = api.workers().await.unwrap();
    assert_eq!(workers.len(), 3);
    assert!(workers.iter().all(|w| w.accepted > 0), "{workers:?}");

    // Check the claim independently: the downloaded burn model, on digits
    // held out from training.
    let val = held_out(&spec);
    assert_eq!(val.len() as u64, job.validation_samples);
    let arch = Architecture::new(spec.model.clone(), vec![1, 28, 28], 10).unwrap();
    let burn = api
        .get_bytes(&format!("/api/jobs/{id}/model?format=burn"))
        .await
        .unwrap();
    let params = from_burn_record(&arch, &burn).unwrap();
    let eval = evaluate(&arch, &params, &val, ComputeDevice::Cpu).unwrap();
    assert!(eval.accuracy >= 0.97, "held-out accuracy {}", eval.accuracy);
    assert!(
        (eval.accuracy - last.accuracy).abs() < 1e-9,
        "the API reports what the model does"
    );

    // ONNX (onnxruntime) and safetensors (numpy) give the same predictions.
    let dir = ScratchDir::new("export").unwrap();
    for format in ["onnx", "safetensors"] {
        let bytes = api
            .get_bytes(&format!("/api/jobs/{id}/model?format={format}"))
            .await
            .unwrap();
        std::fs::write(dir.0.join(format!("model.{format}")), bytes).unwrap();
    }
    let sample = val.select(&(0..500).collect::<Vec<_>>());
    let logits = predict(&arch, &params, &sample, ComputeDevice::Cpu).unwrap();
    let to_bytes = |v: &[f32]| v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>();
    std::fs::write(dir.0.join("inputs.f32"), to_bytes(&sample.features)).unwrap();
    std::fs::write(dir.0.join("logits.f32"), to_bytes(&logits)).unwrap();
    let python = std::env::var("OBLIVION_PYTHON")
        .expect("OBLIVION_PYTHON must name a Python with onnxruntime (cargo xtask test sets it)");
    let out = std::process::Command::new(python)
        .arg(root().join("tests/python/check_models.py"))
        .arg(&dir.0)
        .args(["--input-shape", "1,28,28", "--classes", "10"])
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{report}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        report.contains("onnx: 500/500 predictions agree"),
        "{report}"
    );
    assert!(
        report.contains("safetensors: 500/500 predictions agree"),
        "{report}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_worker_killed_mid_round_costs_only_its_shard() {
    let mut net = network(3);
    let api = net.api();
    let spec = example("mnist-cnn.json").unwrap();
    let id = api.submit(&spec).await.unwrap();
    // Wait until the first worker is training a shard, then kill it.
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    let victim = loop {
        let job = api.job(id).await.unwrap();
        let workers = api.workers().await.unwrap();
        let first = workers.iter().find(|w| w.name == "w0");
        if let Some(w) = first
            && job
                .shards
                .iter()
                .any(|s| s.state == "leased" && s.worker_id == Some(w.id))
        {
            break w.id;
        }
        assert!(std::time::Instant::now() < deadline, "w0 never got a lease");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    net.kill_worker(0).unwrap();
    let mut reissued = false;
    let job = api
        .wait_finished(id, TIMEOUT, |job| {
            reissued |= job
                .shards
                .iter()
                .any(|s| s.attempts >= 2 && s.worker_id != Some(victim));
        })
        .await
        .unwrap();
    assert_eq!(job.status.as_str(), "completed", "{job:?}");
    assert!(
        reissued,
        "the killed worker's shard was re-issued to another worker"
    );
    assert!(job.history.last().unwrap().accuracy >= 0.97);
    let workers = api.workers().await.unwrap();
    assert_eq!(workers.len(), 2, "the killed worker is gone: {workers:?}");
}

//! The training network end to end: a coordinator and three native worker
//! processes train the MNIST CNN example to at least 97% on held-out digits;
//! the exported models agree with the project's own predictions; the model
//! runs as an inference job over those digits, and its outputs agree with
//! onnxruntime's; and a worker killed mid-round costs only its shard.

use oblivion_protocol::JobId;
use std::time::Duration;

use oblivion_e2e::{Network, ScratchDir, example, python_check, root, save_outputs};
use oblivion_ml::ComputeDevice;
use oblivion_ml::data::{Dataset, parse_csv};
use oblivion_ml::export::from_burn_record;
use oblivion_ml::model::Architecture;
use oblivion_ml::params::Params;
use oblivion_ml::train::{evaluate, predict};
use oblivion_protocol::TrainingSpec;
use oblivion_protocol::api::{JobView, ShardStatus};

const TIMEOUT: Duration = Duration::from_secs(900);

/// The digits the job held out, rebuilt exactly as the coordinator split them.
fn held_out(spec: &TrainingSpec) -> Dataset {
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

/// The job's model, downloaded in burn's format and read back.
async fn downloaded_weights(api: &oblivion_e2e::Api, id: JobId, arch: &Architecture) -> Params {
    let burn = api
        .get_bytes(&format!("/api/jobs/{id}/model?format=burn"))
        .await
        .unwrap();
    from_burn_record(arch, &burn).unwrap()
}

/// Submits an example spec and waits until it completes.
async fn train_example(api: &oblivion_e2e::Api, name: &str) -> (TrainingSpec, JobId, JobView) {
    let spec_json = example(name).unwrap();
    let spec: TrainingSpec = serde_json::from_value(spec_json.clone()).unwrap();
    let id = api.submit(&spec_json).await.unwrap();
    let job = api.wait_finished(id, TIMEOUT, |_| {}).await.unwrap();
    assert_eq!(job.status.as_str(), "completed", "{job:?}");
    (spec, id, job)
}

#[tokio::test(flavor = "multi_thread")]
async fn mnist_cnn_reaches_97_percent_and_exports_agree() {
    let net = network(3);
    let api = net.api();
    let (spec, id, job) = train_example(&api, "mnist-cnn.json").await;
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
    let params = downloaded_weights(&api, id, &arch).await;
    let eval = evaluate(&arch, &params, &val, ComputeDevice::Cpu).unwrap();
    assert!(eval.accuracy >= 0.97, "held-out accuracy {}", eval.accuracy);
    assert!(
        (eval.accuracy - last.accuracy).abs() < 1e-9,
        "the API reports what the model does"
    );

    // ONNX (onnxruntime) and safetensors (numpy) give the same predictions.
    let sample = val.select(&(0..500).collect::<Vec<_>>());
    let logits = predict(&arch, &params, &sample, ComputeDevice::Cpu).unwrap();
    let report = check_exports(&api, id, &sample.features, &logits, "1,28,28", 10).await;
    assert!(
        report.contains("onnx: 500/500 predictions agree"),
        "{report}"
    );
    assert!(
        report.contains("safetensors: 500/500 predictions agree"),
        "{report}"
    );

    // The model runs as an inference job over the same held-out digits,
    // on the same three workers; its outputs match onnxruntime's, row for
    // row.
    let inference = serde_json::json!({
        "task": "inference",
        "name": "mnist-cnn digits",
        "model": {"job": id},
        "inputs": {"held_out_by": id},
        "shards": 6,
    });
    let run = api.submit(&inference).await.unwrap();
    let done = api.wait_finished(run, TIMEOUT, |_| {}).await.unwrap();
    assert_eq!(done.status.as_str(), "completed", "{done:?}");
    let outputs = done.outputs.expect("the outputs' summary");
    assert_eq!((outputs.rows, outputs.classes), (val.len() as u64, 10));
    let accuracy = outputs.accuracy.expect("the rows are labelled");
    assert!(
        (accuracy - eval.accuracy).abs() <= 1.0 / val.len() as f64,
        "the outputs score as the model does: {accuracy} against {}",
        eval.accuracy
    );
    let confusion = outputs.confusion.expect("a confusion matrix");
    let counted: u64 = confusion.iter().flatten().sum();
    let diagonal: u64 = (0..10).map(|i| confusion[i][i]).sum();
    assert_eq!(counted, val.len() as u64);
    assert!((diagonal as f64 / counted as f64 - accuracy).abs() < 1e-12);
    let rows_by: Vec<u64> = done.contributors.iter().map(|c| c.samples).collect();
    assert_eq!(
        rows_by.iter().sum::<u64>(),
        val.len() as u64,
        "every row credited once: {:?}",
        done.contributors
    );
    let report = check_outputs(&api, id, run, &val.features, "1,28,28", 10, &params).await;
    assert!(report.contains("onnx: 1600/1600 rows agree"), "{report}");
}

/// Downloads the ONNX model of `model` and the outputs of the inference
/// job `run` over `inputs`, checks that the outputs name the model's
/// weights, and runs `tests/python/check_outputs.py` on them.
async fn check_outputs(
    api: &oblivion_e2e::Api,
    model: JobId,
    run: JobId,
    inputs: &[f32],
    shape: &str,
    classes: usize,
    params: &Params,
) -> String {
    let dir = ScratchDir::new("outputs").unwrap();
    save_outputs(api, model, run, &dir).await.unwrap();
    // The CSV names the weights that made it: the model's.
    let csv = std::fs::read_to_string(dir.0.join("outputs.csv")).unwrap();
    let named = csv
        .lines()
        .find_map(|l| l.strip_prefix("# model_sha256: "))
        .expect("the model's hash in the header");
    let weights = api
        .get_bytes(&format!("/api/artifacts/{named}"))
        .await
        .unwrap();
    assert_eq!(&Params::from_safetensors(&weights).unwrap().0, params);
    let to_bytes = |v: &[f32]| v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>();
    std::fs::write(dir.0.join("inputs.f32"), to_bytes(inputs)).unwrap();
    python_check("check_outputs.py", &dir, shape, classes)
}

/// Downloads the ONNX and safetensors models of `job` and runs
/// `tests/python/check_models.py` on `inputs` against `logits`.
async fn check_exports(
    api: &oblivion_e2e::Api,
    job: JobId,
    inputs: &[f32],
    logits: &[f32],
    shape: &str,
    classes: usize,
) -> String {
    let dir = ScratchDir::new("export").unwrap();
    for format in ["onnx", "safetensors"] {
        let bytes = api
            .get_bytes(&format!("/api/jobs/{job}/model?format={format}"))
            .await
            .unwrap();
        std::fs::write(dir.0.join(format!("model.{format}")), bytes).unwrap();
    }
    let to_bytes = |v: &[f32]| v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>();
    std::fs::write(dir.0.join("inputs.f32"), to_bytes(inputs)).unwrap();
    std::fs::write(dir.0.join("logits.f32"), to_bytes(logits)).unwrap();
    python_check("check_models.py", &dir, shape, classes)
}

#[tokio::test(flavor = "multi_thread")]
async fn tabular_exports_take_raw_features() {
    let net = network(2);
    let api = net.api();
    let (spec, id, job) = train_example(&api, "iris-mlp.json").await;
    // The held-out rows, raw and normalised as the coordinator did.
    let csv = std::fs::read(root().join("datasets/tabular/iris.csv")).unwrap();
    let (mut train, raw_val) = parse_csv(&csv)
        .unwrap()
        .split(spec.validation_split, spec.seed);
    let norm = train.normalization();
    train.normalize(&norm);
    let mut val = raw_val.clone();
    val.normalize(&norm);
    let arch = Architecture::new(spec.model.clone(), vec![4], 3).unwrap();
    let params = downloaded_weights(&api, id, &arch).await;
    let eval = evaluate(&arch, &params, &val, ComputeDevice::Cpu).unwrap();
    assert!((eval.accuracy - job.history.last().unwrap().accuracy).abs() < 1e-9);
    assert!(eval.accuracy >= 0.9, "iris accuracy {}", eval.accuracy);
    let logits = predict(&arch, &params, &val, ComputeDevice::Cpu).unwrap();
    // The exported models get raw features: normalisation is inside them.
    let report = check_exports(&api, id, &raw_val.features, &logits, "4", 3).await;
    let n = raw_val.len();
    assert!(
        report.contains(&format!("onnx: {n}/{n} predictions agree")),
        "{report}"
    );
    assert!(
        report.contains(&format!("safetensors: {n}/{n} predictions agree")),
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
                .any(|s| s.state == ShardStatus::Leased && s.worker_id == Some(w.id))
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

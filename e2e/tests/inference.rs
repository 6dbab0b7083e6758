//! Inference against a liar: a worker that answers each of its shards with
//! outputs of the right shape but wrong for some rows is caught on arrival
//! at the rate the verification's sample promises, its refused shards go
//! to others, its record shows each refusal, and with replicas the lies
//! that escaped the sample are outvoted: the job's outputs still agree with
//! onnxruntime's on every row.

use std::time::Duration;

use oblivion_e2e::{Network, ScratchDir, ScriptedWorker, python_check, root, save_outputs};
use oblivion_ml::ComputeDevice;
use oblivion_ml::data::{Dataset, decode_shard, shuffle};
use oblivion_ml::inference::infer;
use oblivion_ml::model::Architecture;
use oblivion_ml::params::Params;
use oblivion_protocol::inference::VerificationSpec;
use oblivion_protocol::wire::{LeaseTask, LeaseWork};

const TIMEOUT: Duration = Duration::from_secs(600);
/// Rows of each shard: MNIST's 8,000 in 80 shards.
const ROWS: u64 = 100;
/// Rows the liar falsifies in each shard.
const WRONG: usize = 10;
/// Outputs the liar posts while it is alone.
const LIES: usize = 60;

/// What an honest worker would post for `task`, with `WRONG` of its rows
/// (picked by the lease id) answered as another class, with certainty: the
/// right shape, probabilities that sum to one, each predicted class the
/// most probable.
async fn lie(liar: &ScriptedWorker, api: &oblivion_e2e::Api, task: &LeaseTask) -> Vec<u8> {
    let LeaseWork::Infer(work) = &task.work else {
        panic!("an inference lease: {task:?}");
    };
    let weights = liar.fetch(api, task.weights).await.unwrap();
    let rows = liar.fetch(api, work.rows).await.unwrap();
    let task = task.clone();
    tokio::task::spawn_blocking(move || {
        let (params, _) = Params::from_safetensors(&weights).unwrap();
        let rows = decode_shard(&rows).unwrap();
        let arch = Architecture::new(task.model, task.input_shape, task.classes).unwrap();
        let mut outputs = infer(&arch, &params, &rows, ComputeDevice::Cpu).unwrap();
        let mut order: Vec<usize> = (0..outputs.rows()).collect();
        shuffle(&mut order, task.lease_id.0);
        for &i in &order[..WRONG] {
            let wrong = (outputs.predicted[i] as usize + 1) % arch.classes;
            let row = &mut outputs.probabilities[i * arch.classes..(i + 1) * arch.classes];
            row.iter_mut()
                .enumerate()
                .for_each(|(c, p)| *p = f32::from(u8::from(c == wrong)));
            outputs.predicted[i] = wrong as u32;
        }
        outputs.to_compressed()
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_lying_inference_worker_is_caught_at_the_stated_rate_and_outvoted() {
    // No quarantine during the measurement: the liar is counted, not
    // stopped (its record is checked below).
    let mut net = Network::start(&["--quarantine-after", "100000"]).unwrap();
    net.add_worker("trainer0").unwrap();
    net.add_worker("trainer1").unwrap();
    let api = net.api();
    // A small model, quickly trained.
    let model = api
        .submit(&serde_json::json!({
            "name": "mnist-mlp small",
            "model": {"kind": "mlp", "hidden": [32]},
            "dataset": {"builtin": "mnist"},
            "rounds": 1, "shards_per_round": 2, "local_steps": 40, "batch_size": 32,
            "optimizer": {"kind": "adam", "learning_rate": 0.005}
        }))
        .await
        .unwrap();
    let trained = api.wait_finished(model, TIMEOUT, |_| {}).await.unwrap();
    assert_eq!(trained.status.as_str(), "completed", "{trained:?}");
    net.kill_worker(0).unwrap();
    net.kill_worker(1).unwrap();
    while !api.workers().await.unwrap().is_empty() {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Every shard run twice; the liar alone at first.
    let run = api
        .submit(&serde_json::json!({
            "task": "inference",
            "name": "digits, checked",
            "model": {"job": model},
            "inputs": {"builtin": "mnist"},
            "shards": 80,
            "replicas": 1.0
        }))
        .await
        .unwrap();
    let mut liar = ScriptedWorker::connect(&net.url, "liar").await.unwrap();
    let (mut caught, mut escaped) = (0usize, 0usize);
    while caught + escaped < LIES {
        let task = liar.next_lease().await.unwrap();
        let body = lie(&liar, &api, &task).await;
        let (status, reply) = liar.post_update(&api, task.lease_id, body).await.unwrap();
        match status {
            200 => escaped += 1,
            422 => {
                let why = reply["error"].as_str().unwrap_or_default();
                assert!(why.contains("differ from the coordinator's"), "{reply}");
                caught += 1;
            }
            other => panic!("{other}: {reply}"),
        }
    }
    // The rate the verification states, for these shards and lies.
    let escape = VerificationSpec::default().escape_chance(ROWS, WRONG as u64);
    let expected = LIES as f64 * (1.0 - escape);
    let spread = 4.0 * (LIES as f64 * escape * (1.0 - escape)).sqrt();
    println!("caught {caught} of {LIES} lies; {expected:.1} expected (escape chance {escape:.3})");
    assert!(
        (caught as f64 - expected).abs() <= spread,
        "caught {caught} of {LIES}, expected {expected:.1} ± {spread:.1}"
    );
    let record = api.worker(liar.id).await.unwrap();
    assert_eq!(
        record.rejected as usize, caught,
        "every refusal on its record"
    );
    drop(liar);

    // Honest workers finish the job: the refused shards are run again,
    // and each lie that escaped the sample meets an honest replica and a
    // third opinion.
    for i in 0..3 {
        net.add_worker(&format!("honest{i}")).unwrap();
    }
    let done = api.wait_finished(run, TIMEOUT, |_| {}).await.unwrap();
    assert_eq!(done.status.as_str(), "completed", "{done:?}");
    let outputs = done.outputs.expect("the outputs' summary");
    assert_eq!(outputs.rows, 8_000);
    let liars_rows: u64 = done
        .contributors
        .iter()
        .filter(|c| c.name == "liar")
        .map(|c| c.samples)
        .sum();
    assert_eq!(liars_rows, 0, "no lie is credited: {:?}", done.contributors);

    // Row for row, what onnxruntime says of the model on the same rows.
    let dir = ScratchDir::new("liar").unwrap();
    save_outputs(&api, model, run, &dir).await.unwrap();
    let mnist = root().join("datasets/mnist");
    let images = std::fs::read(mnist.join("train-images-idx3-ubyte.gz")).unwrap();
    let labels = std::fs::read(mnist.join("train-labels-idx1-ubyte.gz")).unwrap();
    let rows = Dataset::from_idx(&images, &labels).unwrap();
    let inputs: Vec<u8> = rows.features.iter().flat_map(|x| x.to_le_bytes()).collect();
    std::fs::write(dir.0.join("inputs.f32"), inputs).unwrap();
    let report = python_check("check_outputs.py", &dir, "1,28,28", 10);
    assert!(report.contains("onnx: 8000/8000 rows agree"), "{report}");
}

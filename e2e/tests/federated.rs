//! Federated mode with native workers: two contributors each hold part of
//! iris that nobody else has (neither holds every class), the job's
//! creator holds only the validation data, and the model learns from
//! both. A worker without data, or with data of another shape or other
//! columns, is given none of the job's work. A job that asks for almost no
//! noise, to read records back out of the round's change, gets nothing
//! from a contributor with the default limits.

use std::path::Path;
use std::time::Duration;

use oblivion_e2e::{Api, Network, ScratchDir, ScriptedWorker, root, split_iris_federated};
use oblivion_protocol::api::JobView;

const TIMEOUT: Duration = Duration::from_secs(600);
const ROUNDS: u32 = 40;

/// Contributors that accept the weak privacy of these jobs (noise 0.3 ×
/// the clip norm, batches of 8): what the tests below look at is training
/// on data that stays home. The defaults have a test of their own.
const WEAK_PRIVACY: &[&str] = &[
    "--max-job-epsilon",
    "1e9",
    "--privacy-budget",
    "1e9",
    "--min-noise-multiplier",
    "0.1",
    "--min-batch-size",
    "8",
];

/// Uploads the creator's validation file; returns its sha256.
async fn upload(api: &Api, path: &Path) -> serde_json::Value {
    let (status, body) = api
        .post("/api/datasets", std::fs::read(path).unwrap())
        .await
        .unwrap();
    assert_eq!(status, 201, "{body}");
    body["sha256"].clone()
}

/// The iris MLP, federated over the uploaded validation file `sha`, two
/// contributors a round, each adding noise of 0.3 × its clip norm.
fn federated_spec(sha: &serde_json::Value, rounds: u32) -> serde_json::Value {
    serde_json::json!({
        "name": "iris-federated",
        "model": {"kind": "mlp", "hidden": [16]},
        "dataset": {"federated": {"validation": {"csv": sha}}},
        "rounds": rounds,
        "shards_per_round": 2,
        "local_epochs": 5,
        "batch_size": 8,
        "optimizer": {"kind": "sgd", "learning_rate": 0.05, "momentum": 0.9},
        "seed": 3,
        "privacy": {"clip_norm": 1.0, "noise_multiplier": 0.3}
    })
}

/// Iris split three ways in a scratch directory `label`: the creator's
/// validation file, and a network where alice and bob contribute their
/// parts (with [`WEAK_PRIVACY`]).
fn alice_and_bob(label: &str) -> (ScratchDir, std::path::PathBuf, Network) {
    let dir = ScratchDir::new(label).unwrap();
    let [validation, alice, bob] = split_iris_federated(&dir.0).unwrap();
    let mut net = Network::start(&[]).unwrap();
    net.add_contributor("alice", &[&alice], WEAK_PRIVACY)
        .unwrap();
    net.add_contributor("bob", &[&bob], WEAK_PRIVACY).unwrap();
    (dir, validation, net)
}

fn final_accuracy(job: &JobView) -> f64 {
    job.history.last().map_or(0.0, |r| r.accuracy)
}

#[tokio::test(flavor = "multi_thread")]
async fn two_contributors_train_a_job_on_data_only_they_hold() {
    let dir = ScratchDir::new("federated").unwrap();
    let [validation, alice, bob] = split_iris_federated(&dir.0).unwrap();
    let wine = root().join("../shared/datasets/tabular/wine.csv");
    // Alice's rows under other column names: four features, but not the
    // job's.
    let renamed = dir.0.join("renamed.csv");
    let text = std::fs::read_to_string(&alice).unwrap();
    let (_, rows) = text.split_once('\n').unwrap();
    std::fs::write(&renamed, format!("w,x,y,z,label\n{rows}")).unwrap();
    let mut net = Network::start(&[]).unwrap();
    net.add_contributor("alice", &[&alice], WEAK_PRIVACY)
        .unwrap();
    net.add_contributor("bob", &[&bob], WEAK_PRIVACY).unwrap();
    net.add_worker("no-data").unwrap();
    net.add_contributor("wine-holder", &[&wine], WEAK_PRIVACY)
        .unwrap();
    net.add_contributor("renamed", &[&renamed], WEAK_PRIVACY)
        .unwrap();
    let api = net.api();
    let sha = upload(&api, &validation).await;
    let mut spec = federated_spec(&sha, ROUNDS);
    spec["target_accuracy"] = 0.9.into();
    let privacy = spec.as_object_mut().unwrap().remove("privacy").unwrap();
    // Federated data without privacy is refused: contributors send only
    // clipped, noised updates.
    let (status, body) = api.post("/api/jobs", spec.to_string()).await.unwrap();
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["field"], "privacy", "{body}");
    spec["privacy"] = privacy;
    let id = api.submit(&spec).await.unwrap();
    let job = api.wait_finished(id, TIMEOUT, |_| {}).await.unwrap();
    assert_eq!(job.status.as_str(), "completed", "{job:?}");
    let accuracy = final_accuracy(&job);
    let epsilon = job.history.last().and_then(|r| r.epsilon).unwrap();
    println!(
        "federated iris: accuracy {accuracy:.3} after {} rounds, ε {epsilon:.1} (δ 1e-5), \
         accuracy by round {:?}",
        job.history.len(),
        job.history.iter().map(|r| r.accuracy).collect::<Vec<_>>()
    );
    assert!(
        accuracy >= 0.9,
        "the job ends on reaching its target: {accuracy}"
    );
    let rounds = job.history.len() as u64;
    assert_eq!(
        job.validation_samples, 50,
        "all of the creator's data validates"
    );
    assert_eq!(
        job.train_samples, 0,
        "the coordinator holds no training data"
    );
    let spent: Vec<f64> = job.history.iter().map(|r| r.epsilon.unwrap()).collect();
    assert!(spent.windows(2).all(|w| w[0] < w[1]), "ε grows: {spent:?}");

    // Only the two contributors took part, each once a round, credited a
    // contribution per verified update.
    let mut names: Vec<(String, u64, u64)> = job
        .contributors
        .iter()
        .map(|c| (c.name.clone(), c.updates, c.samples))
        .collect();
    names.sort();
    assert_eq!(names.len(), 2, "{names:?}");
    assert_eq!((names[0].0.as_str(), names[1].0.as_str()), ("alice", "bob"));
    for (name, updates, credited) in &names {
        assert!(
            *updates == rounds,
            "{name}: {updates} updates in {rounds} rounds (one a round)"
        );
        assert_eq!(credited, updates, "{name}: one contribution per update");
    }

    // The network sees what each worker offers: shape and size (to a power
    // of two), not its column names.
    let workers = api.workers().await.unwrap();
    let offer = |name: &str| {
        workers
            .iter()
            .find(|w| w.name == name)
            .and_then(|w| w.local_data.clone())
    };
    let alice_offer = offer("alice").expect("alice offers local data");
    assert_eq!(alice_offer.shape, vec![4]);
    assert_eq!(alice_offer.classes, 2, "alice holds classes 0 and 1 only");
    assert_eq!(alice_offer.columns, None);
    assert!(alice_offer.samples.is_power_of_two(), "{alice_offer:?}");
    assert_eq!(offer("wine-holder").unwrap().shape, vec![13]);
    assert_eq!(
        offer("renamed").unwrap().shape,
        vec![4],
        "same shape, other columns"
    );
    assert!(offer("no-data").is_none());
}

/// A federated job is stored like any other: killed mid-job, the
/// coordinator resumes it, and the contributors (reconnecting, offering
/// their data again) finish it.
#[tokio::test(flavor = "multi_thread")]
async fn a_federated_job_survives_a_coordinator_restart() {
    let (_dir, validation, mut net) = alice_and_bob("federated-restart");
    let api = net.api();
    let sha = upload(&api, &validation).await;
    let rounds = 60;
    let spec = federated_spec(&sha, rounds);
    let id = api.submit(&spec).await.unwrap();
    let deadline = std::time::Instant::now() + TIMEOUT;
    let before = loop {
        let job = api.job(id).await.unwrap();
        if job.round >= 3 {
            break job.round;
        }
        assert!(std::time::Instant::now() < deadline, "no progress: {job:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    net.restart_coordinator().unwrap();
    let job = api.wait_finished(id, TIMEOUT, |_| {}).await.unwrap();
    assert_eq!(job.status.as_str(), "completed", "{job:?}");
    assert!(before < rounds, "the restart came mid-job (round {before})");
    assert_eq!(
        job.history.len(),
        rounds as usize,
        "every round recorded once"
    );
    let updates: u64 = job.contributors.iter().map(|c| c.updates).sum();
    assert_eq!(updates, 2 * u64::from(rounds), "{:?}", job.contributors);
    println!(
        "restarted at round {before}; final accuracy {:.3}",
        final_accuracy(&job)
    );
}

/// The reconstruction attack: a federated job asks for almost no noise, a
/// huge clip norm, batches of one and one step of SGD, so that each
/// round's change is one record's gradient and a first-layer weight over
/// its bias gives the record back exactly. A contributor with the default
/// limits declines the job: nothing of its data leaves, and its ledger
/// shows nothing spent on it. The same contributor trains a job that asks
/// for enough noise, and its ledger prices that job at sensitivity 2C.
#[tokio::test(flavor = "multi_thread")]
async fn a_job_asking_for_almost_no_noise_gets_nothing_from_a_default_contributor() {
    let dir = ScratchDir::new("reconstruction").unwrap();
    let [validation, alice, _] = split_iris_federated(&dir.0).unwrap();
    let mut net = Network::start(&[]).unwrap();
    net.add_worker_with_data("alice", &[&alice]).unwrap();
    let api = net.api();
    let sha = upload(&api, &validation).await;

    let mut attack = federated_spec(&sha, 20);
    attack["shards_per_round"] = 1.into();
    attack["local_steps"] = 1.into();
    attack.as_object_mut().unwrap().remove("local_epochs");
    attack["batch_size"] = 1.into();
    attack["optimizer"] = serde_json::json!({"kind": "sgd", "learning_rate": 1.0});
    attack["privacy"] = serde_json::json!({"clip_norm": 1e6, "noise_multiplier": 1e-9});
    let attack = api.submit(&attack).await.unwrap();

    // A job within the defaults: σ = 8, batches of 16, 3 rounds.
    let mut fair = federated_spec(&sha, 3);
    fair["shards_per_round"] = 1.into();
    fair["batch_size"] = 16.into();
    fair["privacy"] = serde_json::json!({"clip_norm": 1.0, "noise_multiplier": 8.0});
    let fair = api.submit(&fair).await.unwrap();
    let done = api.wait_finished(fair, TIMEOUT, |_| {}).await.unwrap();
    assert_eq!(done.status.as_str(), "completed", "{done:?}");

    // By now alice was offered the attack's lease, and declined the job.
    let job = api.job(attack).await.unwrap();
    assert!(
        job.history.is_empty() && job.round == 1,
        "a round of the attack was trained on alice's data: {:?}",
        job.history
    );
    assert!(job.contributors.is_empty(), "{:?}", job.contributors);
    let file = net.worker_dir("alice").join("privacy.json");
    let privacy: oblivion_protocol::tab::ContributorPrivacy =
        serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    let spends = &privacy.ledger.spends;
    assert!(spends.iter().all(|s| s.job != attack.0), "{spends:?}");
    let on_fair: Vec<_> = spends.iter().filter(|s| s.job == fair.0).collect();
    assert_eq!(on_fair.len(), 1, "{spends:?}");
    assert_eq!((on_fair[0].rounds, on_fair[0].noise_multiplier), (3, 8.0));
    let spent = privacy.ledger.total_epsilon(1e-5).unwrap();
    let priced = oblivion_privacy::contributor::job_epsilon(8.0, 3, 1e-5).unwrap();
    assert!((spent - priced).abs() < 1e-9, "{spent} against {priced}");
    assert!(spent <= privacy.limits.job_epsilon, "{spent}");
    println!("alice spent ε = {spent:.2} (δ 1e-5) on the fair job, nothing on the attack");
}

/// A contributor that takes its slot and never finishes (a phone put
/// away): no one else holds its data, so no backup can stand in for it. A
/// quorum closes each round without it once two of three are in and the
/// round has waited two seconds; its lease is revoked, unpaid.
#[tokio::test(flavor = "multi_thread")]
async fn a_quorum_closes_rounds_that_a_stalled_contributor_holds() {
    use oblivion_protocol::wire::{CoordinatorMessage, LocalDataOffer};
    let (_dir, validation, net) = alice_and_bob("quorum");
    let api = net.api();
    let offer = LocalDataOffer {
        shape: vec![4],
        classes: 3,
        samples: 40,
        columns: None,
    };
    let mut stalled = ScriptedWorker::connect_offering(&api.url, "stalled", offer)
        .await
        .unwrap();
    // It holds what it is given, heartbeats and all, and posts nothing.
    let holder = tokio::spawn(async move {
        let (mut held, mut revoked) = (Vec::new(), Vec::new());
        loop {
            match tokio::time::timeout(Duration::from_millis(500), stalled.next_message()).await {
                Ok(Ok(CoordinatorMessage::Lease(task))) => held.push(task.lease_id),
                Ok(Ok(CoordinatorMessage::Revoke { lease_id, reason })) => {
                    held.retain(|&l| l != lease_id);
                    revoked.push(reason);
                }
                Ok(Ok(_)) | Err(_) => {}
                Ok(Err(_)) => return revoked,
            }
            if stalled.heartbeat(&held).await.is_err() {
                return revoked;
            }
        }
    });
    let sha = upload(&api, &validation).await;
    let mut spec = federated_spec(&sha, 3);
    spec["shards_per_round"] = 3.into();
    spec["quorum"] = serde_json::json!({"share": 0.66, "after_secs": 2});
    let started = std::time::Instant::now();
    let id = api.submit(&spec).await.unwrap();
    let job = api.wait_finished(id, TIMEOUT, |_| {}).await.unwrap();
    let took = started.elapsed();
    assert_eq!(job.status.as_str(), "completed", "{job:?}");
    println!(
        "3 rounds in {took:.1?} with a contributor that never finished; accuracy {:.3}",
        final_accuracy(&job)
    );
    assert_eq!(job.history.len(), 3);
    for round in &job.history {
        assert_eq!(round.updates, 2, "alice's and bob's: {round:?}");
    }
    assert!(took < Duration::from_secs(60), "{took:?}");
    let names: Vec<&str> = job.contributors.iter().map(|c| c.name.as_str()).collect();
    assert!(!names.contains(&"stalled"), "{names:?}");
    drop(net);
    let revoked = holder.await.unwrap();
    assert!(
        revoked.iter().any(|r| r.contains("quorum")),
        "its leases were revoked on the quorum: {revoked:?}"
    );
}

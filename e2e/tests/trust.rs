//! Trust under attack: workers that lie. One worker in five posts poisoned
//! updates (NaN, noise just under the round's norm bound, an honest update
//! scaled by 100, the same sign-flipped, all zeros, and a targeted push
//! that screening lets through). It claims to be the fastest, which
//! decides nothing: it is given work first as a newcomer, then as it is
//! measured (it posts at once). The MNIST MLP example, as shipped (4 shards a round),
//! still ends within a point of a clean run; every poisoner that screening
//! catches is quarantined, stays so when it reconnects, and is credited
//! nothing.

use oblivion_protocol::JobId;
use std::sync::Arc;
use std::time::Duration;

use oblivion_e2e::{
    Api, Network, ScriptedWorker, example, gaussian, map_params as map, shaped_update,
    uniform_update,
};
use oblivion_ml::ComputeDevice;
use oblivion_ml::data::decode_shard;
use oblivion_ml::model::Architecture;
use oblivion_ml::params::Params;
use oblivion_ml::train::{LocalTraining, train};
use oblivion_protocol::LocalWork;
use oblivion_protocol::api::{JobView, WorkerState};
use oblivion_protocol::wire::{LeaseTask, TrainingData};

const TIMEOUT: Duration = Duration::from_secs(900);
const HONEST_WORKERS: usize = 4;

/// How a poisoner corrupts its update.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Poison {
    NotANumber,
    /// Gaussian noise at 2.9 × an honest update's norm (the round bounds
    /// updates at 3 × its median one).
    NoiseUnderBound,
    ScaledBy100,
    SignFlipped,
    Zeros,
    /// An honest update plus a push of 2.7 × its norm on the output bias
    /// of class 0: under the round's clip bound, and still pointing the
    /// round's way, so screening verifies it. A plain mean of four takes a
    /// quarter of the push every round; the trimmed mean cuts it.
    Targeted,
    /// The shard trained honestly, then scaled by 1.5: training is
    /// deterministic, so every sybil holding one shard posts the same
    /// wrong bytes (not in [`POISONS`]: for replicas to agree on).
    Amplified,
}

impl Poison {
    /// Whether screening catches it (disputed, then quarantined). What it
    /// does not catch, the combination rule must outvote.
    fn caught(self) -> bool {
        !matches!(self, Poison::Targeted | Poison::Amplified)
    }
}

const POISONS: [Poison; 6] = [
    Poison::NotANumber,
    Poison::NoiseUnderBound,
    Poison::ScaledBy100,
    Poison::SignFlipped,
    Poison::Zeros,
    Poison::Targeted,
];

/// A key of the poisoner's own (any scalar below the curve order is one).
fn poisoner_key(i: usize) -> String {
    format!("0x{}", format!("{:02x}", 0x21 + i).repeat(32))
}

/// An honest worker's key: refutations need established accounts.
fn honest_key(i: usize) -> String {
    format!("0x{}", format!("{:02x}", 0x61 + i).repeat(32))
}

/// What an honest worker would post for `task`: the real training of the
/// shard, as a change to the global weights.
async fn honest_delta(api: &Api, task: &LeaseTask) -> Params {
    let work = task.training().expect("a training lease").local_work;
    trained_delta(api, task, work).await
}

/// The shard of `task` trained for `work` (a lazy worker trains less).
async fn trained_delta(api: &Api, task: &LeaseTask, work: LocalWork) -> Params {
    let weights = api
        .get_bytes(&format!("/api/artifacts/{}", task.weights))
        .await
        .unwrap();
    let Some(TrainingData::Shard(shard)) = task.training().map(|t| &t.data) else {
        panic!("a lease on a shard of the coordinator's");
    };
    let data = api
        .get_bytes(&format!("/api/artifacts/{shard}"))
        .await
        .unwrap();
    let task = task.clone();
    tokio::task::spawn_blocking(move || {
        let (global, _) = Params::from_safetensors(&weights).unwrap();
        let data = decode_shard(&data).unwrap();
        let arch =
            Architecture::new(task.model.clone(), task.input_shape.clone(), task.classes).unwrap();
        let training = task.training().expect("a training lease");
        let config = LocalTraining {
            optimizer: training.optimizer.clone(),
            batch_size: training.batch_size as usize,
            work,
            seed: training.seed,
        };
        let out = train(
            &arch,
            &global,
            &data,
            &config,
            ComputeDevice::Cpu,
            &mut |_| true,
        )
        .unwrap();
        out.params.minus(&global)
    })
    .await
    .unwrap()
}

async fn poisoned_body(api: &Api, task: &LeaseTask, poison: Poison) -> Vec<u8> {
    let meta = Some([("train_loss".to_string(), "0.3".to_string())].into());
    match poison {
        Poison::NotANumber => uniform_update(task, f32::NAN),
        Poison::Zeros => shaped_update(task, &[("train_loss", "0.3")], |_| 0.0),
        _ => {
            let honest = honest_delta(api, task).await;
            let poisoned = match poison {
                Poison::ScaledBy100 => map(&honest, |_, v| v * 100.0),
                Poison::SignFlipped => map(&honest, |_, v| -v),
                Poison::Amplified => map(&honest, |_, v| v * 1.5),
                Poison::Targeted => {
                    let push = (2.7 * honest.l2_norm()) as f32;
                    let mut p = honest.clone();
                    let output_bias = p
                        .tensors
                        .iter_mut()
                        .filter(|t| t.name.starts_with("dense.") && t.name.ends_with(".bias"))
                        .max_by(|a, b| a.name.cmp(&b.name))
                        .expect("an output layer");
                    output_bias.values[0] += push;
                    p
                }
                _ => {
                    let noise = map(&honest, |i, _| gaussian(i + task.round as usize * 7_919));
                    let scale = (2.9 * honest.l2_norm() / noise.l2_norm()) as f32;
                    map(&noise, |_, v| v * scale)
                }
            };
            poisoned.to_compressed(meta)
        }
    }
}

/// Takes every lease it is given and answers with poison, until told to
/// stop; gives the connection back (still open) and the updates posted.
async fn poison_loop(
    mut worker: ScriptedWorker,
    api: Api,
    poison: Poison,
    mut stop: tokio::sync::oneshot::Receiver<()>,
) -> (ScriptedWorker, u32) {
    let mut posted = 0;
    loop {
        let task = tokio::select! {
            _ = &mut stop => break,
            task = worker.next_lease() => task,
        };
        // Nothing within 30 s: quarantined, or no work left.
        let Ok(task) = task else { continue };
        let body = poisoned_body(&api, &task, poison).await;
        if worker.post_update(&api, task.lease_id, body).await.is_ok() {
            posted += 1;
        }
    }
    (worker, posted)
}

/// The connected honest workers, as the API shows them.
async fn honest_workers(api: &Api) -> Vec<oblivion_protocol::api::WorkerView> {
    api.workers()
        .await
        .unwrap()
        .into_iter()
        .filter(|w| w.name.starts_with("honest"))
        .collect()
}

/// The MNIST MLP example with a slot a round for every honest worker and
/// one more: leases go to the fastest workers first, and a liar measured
/// slow would otherwise be left only backups, which it loses, and never
/// be caught at all.
async fn run_job(api: &Api) -> (JobId, JobView) {
    let mut spec = oblivion_e2e::example("mnist-mlp.json").unwrap();
    spec["shards_per_round"] = (HONEST_WORKERS + 1).into();
    let id = api.submit(&spec).await.unwrap();
    let job = api.wait_finished(id, TIMEOUT, |_| {}).await.unwrap();
    assert_eq!(job.status.as_str(), "completed", "job {id}: {job:?}");
    (id, job)
}

fn final_accuracy(job: &JobView) -> f64 {
    job.history.last().expect("a finished round").accuracy
}

#[tokio::test(flavor = "multi_thread")]
async fn one_poisoner_in_five_changes_nothing_and_is_quarantined() {
    let mut net = Network::start(&[]).unwrap();
    for i in 0..HONEST_WORKERS {
        net.add_worker(&format!("honest{i}")).unwrap();
    }
    let api = Arc::new(net.api());
    let (_, clean) = run_job(&api).await;
    let clean_accuracy = final_accuracy(&clean);
    assert!(
        clean
            .history
            .iter()
            .all(|r| r.disputed == 0 && r.no_work == 0),
        "honest work is never disputed: {:?}",
        clean.history
    );
    println!("clean run: {:.2}%", clean_accuracy * 100.0);

    let mut caught = Vec::new();
    for (i, poison) in POISONS.into_iter().enumerate() {
        let liar = Api::new(&api.url, Some(&poisoner_key(i)));
        let cookie = liar.cookie().await.unwrap();
        let account = liar.account().unwrap();
        let worker = ScriptedWorker::connect_claiming(
            &api.url,
            &format!("poisoner-{poison:?}"),
            cookie.as_deref(),
            Some(&account),
            1e9,
        )
        .await
        .unwrap();
        let worker_id = worker.id;
        let (stop, stopped) = tokio::sync::oneshot::channel();
        let poisoner = tokio::spawn(poison_loop(worker, liar, poison, stopped));
        let (_, mut job) = run_job(&api).await;
        // Measured slow, a liar may be left only backups of honest slots'
        // last moments, which it loses: caught later, over more jobs.
        for _ in 0..2 {
            let caught = api.worker(worker_id).await.unwrap().state == WorkerState::Quarantined;
            if caught || !poison.caught() {
                break;
            }
            job = run_job(&api).await.1;
        }
        let _ = stop.send(());
        let (worker, posted) = poisoner.await.unwrap();
        assert!(posted >= 2, "{poison:?} posted {posted} updates");
        let accuracy = final_accuracy(&job);
        println!(
            "{poison:?}: {:.2}% (clean {:.2}%); rounds {:?}",
            accuracy * 100.0,
            clean_accuracy * 100.0,
            job.history
                .iter()
                .map(|r| (r.updates, r.disputed, r.no_work))
                .collect::<Vec<_>>()
        );
        assert!(
            (accuracy - clean_accuracy).abs() <= 0.01,
            "{poison:?}: {accuracy} against a clean {clean_accuracy}"
        );
        // However fast it posts, a liar holds its own slot and one backup
        // of a round, no more: the honest holders keep the rest.
        assert!(
            job.history
                .iter()
                .all(|r| r.updates as usize + 1 >= HONEST_WORKERS),
            "{poison:?} took a round: {:?}",
            job.history
                .iter()
                .map(|r| (r.updates, r.disputed, r.no_work))
                .collect::<Vec<_>>()
        );

        if !poison.caught() {
            continue;
        }
        let view = api.worker(worker_id).await.unwrap();
        assert_eq!(view.state, WorkerState::Quarantined, "{poison:?}: {view:?}");
        caught.push(account.clone());
        assert!(view.quarantine.is_some(), "{view:?}");
        assert_eq!(view.samples, 0, "{poison:?} was credited: {view:?}");
        let contributors = job.contributors.iter().find(|c| c.worker_id == worker_id);
        assert!(
            contributors.is_none_or(|c| c.samples == 0),
            "{poison:?} credited on the job: {contributors:?}"
        );
        drop(worker);

        // Back under the same account: still quarantined.
        let liar = Api::new(&api.url, Some(&poisoner_key(i)));
        let cookie = liar.cookie().await.unwrap();
        let again = ScriptedWorker::connect_claiming(
            &api.url,
            "poisoner-again",
            cookie.as_deref(),
            Some(&account),
            1e9,
        )
        .await
        .unwrap();
        let view = api.worker(again.id).await.unwrap();
        assert_eq!(
            view.state,
            WorkerState::Quarantined,
            "after reconnecting: {view:?}"
        );
    }
    let honest = honest_workers(&api).await;
    assert_eq!(honest.len(), HONEST_WORKERS);
    assert!(
        honest
            .iter()
            .all(|w| w.quarantine.is_none() && w.samples > 0),
        "{honest:?}"
    );
    leaderboard_is_the_verified_work(&api, &caught).await;
}

/// The leaderboard counts, for each honest (anonymous) worker, the
/// verified samples the jobs credited it, and leaves out the poisoners
/// that were quarantined.
async fn leaderboard_is_the_verified_work(api: &Api, caught: &[String]) {
    let (_, jobs) = api.get("/api/jobs").await.unwrap();
    let mut expected: std::collections::BTreeMap<String, u64> = Default::default();
    for job in jobs.as_array().unwrap() {
        let view = api.job(JobId(job["id"].as_u64().unwrap())).await.unwrap();
        let honest = view
            .contributors
            .iter()
            .filter(|c| c.name.starts_with("honest"));
        for c in honest.filter(|c| c.samples > 0) {
            *expected
                .entry(format!("worker:{}", c.worker_id))
                .or_default() += c.samples;
        }
    }
    let (_, board) = api.get("/api/leaderboard").await.unwrap();
    let board: oblivion_protocol::api::Leaderboard = serde_json::from_value(board).unwrap();
    let shown: std::collections::BTreeMap<String, u64> = board
        .contributors
        .iter()
        .filter(|c| c.identity.starts_with("worker:"))
        .map(|c| (c.identity.clone(), c.samples))
        .collect();
    assert_eq!(shown, expected, "{board:?}");
    assert!(!caught.is_empty());
    assert!(
        board
            .contributors
            .iter()
            .all(|c| !caught.contains(&c.identity)),
        "no quarantined poisoner is on the board: {board:?}"
    );
    let totals: Vec<u64> = board.contributors.iter().map(|c| c.samples).collect();
    assert!(
        totals.windows(2).all(|w| w[0] >= w[1]),
        "most work first: {totals:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_private_job_spends_no_more_than_its_target_epsilon_and_says_so() {
    let mut net = Network::start(&[]).unwrap();
    net.add_worker("w0").unwrap();
    net.add_worker("w1").unwrap();
    let api = net.api();
    let mut spec = example("iris-mlp.json").unwrap();
    spec["privacy"] = serde_json::json!({"clip_norm": 1.0, "target_epsilon": 50.0});
    let id = api.submit(&spec).await.unwrap();
    let job = api.wait_finished(id, TIMEOUT, |_| {}).await.unwrap();
    assert_eq!(job.status.as_str(), "completed", "{job:?}");
    let spent: Vec<f64> = job.history.iter().map(|r| r.epsilon.unwrap()).collect();
    println!(
        "ε by round: {spent:?}; final accuracy {:.3}",
        final_accuracy(&job)
    );
    assert_eq!(spent.len(), 10);
    assert!(
        spent.windows(2).all(|w| w[0] < w[1]),
        "ε grows each round: {spent:?}"
    );
    let last = *spent.last().unwrap();
    assert!(
        last <= 50.0 && last > 49.5,
        "the target is spent by the last round: {last}"
    );

    // A target no noise can meet is refused, naming the field.
    spec["privacy"] = serde_json::json!({"clip_norm": 1.0, "target_epsilon": 1e-9});
    let (status, body) = api.post("/api/jobs", spec.to_string()).await.unwrap();
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["field"], "privacy.target_epsilon", "{body}");
    // Both ways of setting the noise at once are refused too.
    spec["privacy"] =
        serde_json::json!({"clip_norm": 1.0, "target_epsilon": 5.0, "noise_multiplier": 1.0});
    let (status, body) = api.post("/api/jobs", spec.to_string()).await.unwrap();
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["field"], "privacy.noise_multiplier", "{body}");
}

/// Trains every other shard it is given for real and skimps on the rest
/// (one epoch instead of the job's), posting both as if done in full.
async fn lazy_loop(
    mut worker: ScriptedWorker,
    api: Api,
    mut stop: tokio::sync::oneshot::Receiver<()>,
) -> (ScriptedWorker, u32) {
    let mut skimped = 0;
    let mut n = 0u32;
    loop {
        let task = tokio::select! {
            _ = &mut stop => break,
            task = worker.next_lease() => task,
        };
        let Ok(task) = task else { continue };
        n += 1;
        let delta = if n.is_multiple_of(2) {
            skimped += 1;
            trained_delta(&api, &task, LocalWork::Epochs(1)).await
        } else {
            honest_delta(&api, &task).await
        };
        let meta = Some([("train_loss".to_string(), "0.3".to_string())].into());
        let _ = worker
            .post_update(&api, task.lease_id, delta.to_compressed(meta))
            .await;
    }
    (worker, skimped)
}

#[tokio::test(flavor = "multi_thread")]
async fn replicas_on_a_tenth_of_the_shards_catch_a_worker_that_skimps_on_half() {
    // Accounts are established here once they have ten agreed results,
    // however new (by default, also a day after their first).
    let mut net = Network::start(&["--established-secs", "0"]).unwrap();
    for i in 0..3 {
        // Signed in: two established accounts' agreement refutes.
        net.add_paid_worker(&format!("honest{i}"), Some(&honest_key(i)))
            .unwrap();
    }
    let api = net.api();
    let lazy = Api::new(&api.url, Some(&poisoner_key(9)));
    let cookie = lazy.cookie().await.unwrap();
    let account = lazy.account().unwrap();
    let worker =
        ScriptedWorker::connect_claiming(&api.url, "lazy", cookie.as_deref(), Some(&account), 1e9)
            .await
            .unwrap();
    let lazy_id = worker.id;
    let (stop, stopped) = tokio::sync::oneshot::channel();
    let cheat = tokio::spawn(lazy_loop(worker, lazy, stopped));

    let mut spec = example("iris-mlp.json").unwrap();
    // Many small rounds: the lazy worker skimps on one shard a round, and
    // a tenth of those are checked. Caught twice within 200 rounds but for
    // odds of 1 in 60 million.
    spec["rounds"] = 200.into();
    spec["shards_per_round"] = 8.into();
    spec["replication"] = serde_json::json!({"fraction": 0.1});
    let id = api.submit(&spec).await.unwrap();
    let started = std::time::Instant::now();
    let caught = loop {
        let view = api.worker(lazy_id).await.unwrap();
        if view.state == WorkerState::Quarantined {
            break view;
        }
        let job = api.job(id).await.unwrap();
        assert!(
            !job.status.is_finished(),
            "the job ended before the lazy worker was caught: {:?}",
            api.workers().await.unwrap()
        );
        assert!(started.elapsed() < TIMEOUT, "not caught in time");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let job = api.job(id).await.unwrap();
    let rounds = job.history.len();
    let _ = api
        .post(&format!("/api/jobs/{id}/cancel"), "")
        .await
        .unwrap();
    let _ = stop.send(());
    let (_worker, skimped) = cheat.await.unwrap();
    println!(
        "caught after {rounds} rounds and {skimped} skimped shards: {}",
        caught.quarantine.as_deref().unwrap_or_default()
    );
    assert!(
        caught
            .quarantine
            .as_deref()
            .is_some_and(|r| r.contains("results for shard")),
        "caught by its replicas: {caught:?}"
    );
    let honest = honest_workers(&api).await;
    assert!(honest.iter().all(|w| w.quarantine.is_none()), "{honest:?}");
    let honest_record: Vec<(u64, u64)> = honest.iter().map(|w| (w.agreed, w.disputed)).collect();
    println!("honest workers' (agreed, disputed): {honest_record:?}");
}

/// Two new accounts (free to make) take replicas of the shards an honest
/// worker trains and post the same wrong result: once, their agreement
/// refuted the honest third, and two refutations quarantined it for good.
#[tokio::test(flavor = "multi_thread")]
async fn two_sybil_replicas_cannot_quarantine_an_honest_worker() {
    let mut net = Network::start(&[]).unwrap();
    net.add_paid_worker("honest", Some(&honest_key(0))).unwrap();
    let api = net.api();
    let mut sybils = Vec::new();
    for i in 0..2 {
        let liar = Api::new(&api.url, Some(&poisoner_key(20 + i)));
        let cookie = liar.cookie().await.unwrap();
        let account = liar.account().unwrap();
        let worker = ScriptedWorker::connect_claiming(
            &api.url,
            &format!("sybil{i}"),
            cookie.as_deref(),
            Some(&account),
            1e9,
        )
        .await
        .unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel();
        sybils.push((
            stop,
            tokio::spawn(poison_loop(worker, liar, Poison::Amplified, stopped)),
        ));
    }
    let mut spec = example("iris-mlp.json").unwrap();
    spec["rounds"] = 20.into();
    spec["replication"] = serde_json::json!({"fraction": 1.0});
    let id = api.submit(&spec).await.unwrap();
    let job = api.wait_finished(id, TIMEOUT, |_| {}).await.unwrap();
    let mut posted = 0;
    for (stop, sybil) in sybils {
        let _ = stop.send(());
        posted += sybil.await.unwrap().1;
    }
    let honest = honest_workers(&api).await;
    println!(
        "sybils posted {posted} results; honest record (agreed, disputed): {:?}; \
         no-work per round: {:?}",
        honest
            .iter()
            .map(|w| (w.agreed, w.disputed))
            .collect::<Vec<_>>(),
        job.history.iter().map(|r| r.no_work).collect::<Vec<_>>()
    );
    assert_eq!(job.status.as_str(), "completed", "{job:?}");
    assert!(posted >= 4, "the sybils took part: {posted}");
    assert_eq!(honest.len(), 1);
    assert!(
        honest[0].quarantine.is_none() && honest[0].disputed == 0,
        "the honest worker was framed: {:?}",
        honest[0]
    );
}

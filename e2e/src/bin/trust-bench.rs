//! Trust benchmark: what privacy and verification cost, measured against
//! a baseline run on the same machine at the same time.
//!
//! `cargo xtask trust-bench [--workers 4] [--epsilons 2,8,32] [--fractions 0.1,0.25]
//! [--rounds 30] [--only privacy|replication]`
//!
//! 1. Accuracy against ε: the MNIST MLP example with client-level
//!    differential privacy at each target ε, against the same job without.
//!    Client-level DP needs many clients per round (the noise on the mean
//!    falls with their number), so these runs split the data into 256
//!    shards a round; the baseline is the same split without noise.
//! 2. Replication: the MNIST MLP example (4 shards a round) run for
//!    `--rounds` rounds, so that enough shards are drawn, with a fraction
//!    of its shards trained twice, against the same job without: the extra
//!    shards trained and the extra wall time.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use oblivion_e2e::{Api, Network, example};
use oblivion_protocol::api::JobView;

const TIMEOUT: Duration = Duration::from_secs(1_800);

fn list<T: std::str::FromStr>(text: &str) -> Result<Vec<T>>
where
    T::Err: std::error::Error + Send + Sync + 'static,
{
    text.split(',')
        .map(|p| p.trim().parse::<T>().map_err(Into::into))
        .collect()
}

async fn run(api: &Api, spec: &serde_json::Value) -> Result<(JobView, f64)> {
    let started = Instant::now();
    let id = api.submit(spec).await?;
    let job = api.wait_finished(id, TIMEOUT, |_| {}).await?;
    if job.status.as_str() != "completed" {
        bail!("job {id} ended {}: {:?}", job.status.as_str(), job.error);
    }
    Ok((job, started.elapsed().as_secs_f64()))
}

fn accuracy(job: &JobView) -> f64 {
    job.history.last().map_or(0.0, |r| r.accuracy)
}

/// Updates the workers posted for the job, replicas included: the
/// samples trained, in shards.
fn updates_trained(job: &JobView) -> u64 {
    job.contributors.iter().map(|c| c.updates).sum()
}

#[tokio::main]
async fn main() -> Result<()> {
    let mut workers = 4usize;
    let mut epsilons: Vec<f64> = vec![2.0, 8.0, 32.0];
    let mut fractions: Vec<f64> = vec![0.1, 0.25];
    let mut rounds = 30u32;
    let mut only: Option<String> = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--workers" => workers = args.next().context("--workers needs a number")?.parse()?,
            "--epsilons" => epsilons = list(&args.next().context("--epsilons needs a list")?)?,
            "--fractions" => fractions = list(&args.next().context("--fractions needs a list")?)?,
            "--rounds" => rounds = args.next().context("--rounds needs a number")?.parse()?,
            "--only" => only = Some(args.next().context("--only needs a part")?),
            other => bail!("unknown option {other}"),
        }
    }
    let mut net = Network::start(&[])?;
    for i in 0..workers {
        net.add_worker(&format!("bench-{i}"))?;
    }
    let api = net.api();
    let deadline = Instant::now() + Duration::from_secs(60);
    while api.workers().await?.len() < workers {
        if Instant::now() > deadline {
            bail!("workers did not connect");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!(
        "MNIST MLP, {workers} native workers on {} CPU cores",
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );

    if only.as_deref() != Some("replication") {
        privacy_part(&api, &epsilons).await?;
    }
    if only.as_deref() != Some("privacy") {
        replication_part(&api, &fractions, rounds).await?;
    }
    Ok(())
}

async fn privacy_part(api: &Api, epsilons: &[f64]) -> Result<()> {
    println!("\n## Accuracy against ε (client level, δ = 1e-5, 256 shards a round, clip 1.0)\n");
    println!("| target ε | noise multiplier | ε spent | final accuracy | vs no privacy |");
    println!("| --- | --- | --- | --- | --- |");
    let mut private = example("mnist-mlp.json")?;
    private["shards_per_round"] = 256.into();
    let (baseline, _) = run(api, &private).await?;
    let base_accuracy = accuracy(&baseline);
    println!(
        "| ∞ (none) | 0 | — | {:.2}% | 1.000 |",
        base_accuracy * 100.0
    );
    for eps in epsilons {
        private["privacy"] = serde_json::json!({"clip_norm": 1.0, "target_epsilon": eps});
        let spec: oblivion_protocol::TrainingSpec = serde_json::from_value(private.clone())?;
        let noise = resolved_noise(&spec);
        let (job, _) = run(api, &private).await?;
        let spent = job
            .history
            .last()
            .and_then(|r| r.epsilon)
            .unwrap_or(f64::NAN);
        println!(
            "| {eps} | {noise:.3} | {spent:.2} | {:.2}% | {:.3} |",
            accuracy(&job) * 100.0,
            accuracy(&job) / base_accuracy
        );
    }

    Ok(())
}

async fn replication_part(api: &Api, fractions: &[f64], rounds: u32) -> Result<()> {
    println!("\n## Replication (the example, 4 shards a round, {rounds} rounds)\n");
    println!(
        "| replicated fraction | shards trained | vs none | wall time (s) | vs none | final accuracy |"
    );
    println!("| --- | --- | --- | --- | --- | --- |");
    let mut plain = example("mnist-mlp.json")?;
    plain["rounds"] = rounds.into();
    let (none, none_secs) = run(api, &plain).await?;
    let none_trained = updates_trained(&none).max(1);
    println!(
        "| 0 | {none_trained} | 1.000 | {none_secs:.1} | 1.000 | {:.2}% |",
        accuracy(&none) * 100.0
    );
    for fraction in fractions {
        let mut spec = plain.clone();
        spec["replication"] = serde_json::json!({"fraction": fraction});
        let (job, secs) = run(api, &spec).await?;
        let trained = updates_trained(&job);
        println!(
            "| {fraction} | {trained} | {:.3} | {secs:.1} | {:.3} | {:.2}% |",
            trained as f64 / none_trained as f64,
            secs / none_secs,
            accuracy(&job) * 100.0
        );
    }
    Ok(())
}

/// The noise multiplier a target ε resolves to, as the coordinator
/// resolves it (every shard in every round: sampling rate 1).
fn resolved_noise(spec: &oblivion_protocol::TrainingSpec) -> f64 {
    let Some(p) = &spec.privacy else { return 0.0 };
    match (p.noise_multiplier, p.target_epsilon) {
        (Some(z), _) => z,
        (None, Some(eps)) => {
            oblivion_privacy::noise_multiplier_for(eps, 1.0, u64::from(spec.rounds), p.delta)
                .unwrap_or(f64::NAN)
        }
        (None, None) => f64::NAN,
    }
}

//! Network benchmark: time for the MNIST CNN example to reach 97%
//! validation accuracy with 1, 2 and 4 native workers (each a process on
//! this machine), and the share of wall time spent outside training.
//!
//! `cargo xtask bench [--workers 1,2,4] [--spec FILE]`
//!
//! "Outside training" is wall time minus, for each round, the longest any
//! one worker trained (as the workers reported it): dispatch, transfers,
//! uploads, update checks, aggregation and evaluation, and waiting.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use oblivion_e2e::{Network, example};

#[tokio::main]
async fn main() -> Result<()> {
    let mut counts = vec![1usize, 2, 4];
    let mut spec = example("mnist-cnn.json")?;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--workers" => {
                counts = args
                    .next()
                    .context("--workers needs a list like 1,2,4")?
                    .split(',')
                    .map(str::parse)
                    .collect::<Result<_, _>>()?
            }
            "--spec" => {
                let path = args.next().context("--spec needs a file")?;
                spec = serde_json::from_str(&std::fs::read_to_string(path)?)?;
            }
            other => bail!("unknown option {other}"),
        }
    }
    spec["target_accuracy"] = 0.97.into();
    spec["rounds"] = 40.into();
    println!(
        "{} on {} CPU cores; target 97% validation accuracy",
        spec["name"].as_str().unwrap_or("job"),
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    println!(
        "| workers | rounds | time to 97% (s) | final accuracy | outside training | aggregation |"
    );
    println!("| --- | --- | --- | --- | --- | --- |");
    for n in counts {
        let mut net = Network::start(&[])?;
        for i in 0..n {
            net.add_worker(&format!("bench-{i}"))?;
        }
        let api = net.api();
        let deadline = Instant::now() + Duration::from_secs(60);
        while api.workers().await?.len() < n {
            if Instant::now() > deadline {
                bail!("workers did not connect");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let started = Instant::now();
        let id = api.submit(&spec).await?;
        let job = api
            .wait_finished(id, Duration::from_secs(3600), |_| {})
            .await?;
        let wall = started.elapsed().as_secs_f64();
        let last = job.history.last().context("no rounds")?;
        if last.accuracy < 0.97 {
            bail!(
                "{n} workers: stopped at {:.2}% after {} rounds",
                last.accuracy * 100.0,
                job.history.len()
            );
        }
        let training: f64 = job.history.iter().map(|r| r.train_seconds).sum();
        let aggregation: f64 = job.history.iter().map(|r| r.aggregate_seconds).sum();
        println!(
            "| {n} | {} | {wall:.1} | {:.2}% | {:.1}% | {:.1}% |",
            job.history.len(),
            last.accuracy * 100.0,
            100.0 * (1.0 - training / wall).max(0.0),
            100.0 * aggregation / wall,
        );
    }
    Ok(())
}

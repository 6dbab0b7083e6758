//! Inference benchmark: how many rows a second the native worker's engine
//! answers for each example model, and what checking a shard costs the
//! coordinator (the CPU time of `check_outputs` on a shard, against the
//! time the worker took to answer it), on this machine, in one run.
//!
//! `cargo xtask inference-bench [--rows N] [--shard N]` (release build)
//!
//! The weights are a model's initial ones: the time a forward pass takes
//! does not depend on what the weights are.

use std::time::Instant;

use anyhow::{Context, Result, bail};
use oblivion_ml::ComputeDevice;
use oblivion_ml::data::Dataset;
use oblivion_ml::inference::infer;
use oblivion_ml::model::Architecture;
use oblivion_ml::weights::initial_params;
use oblivion_protocol::ModelSpec;
use oblivion_protocol::inference::VerificationSpec;
use oblivion_scheduler::verification::check_outputs;
use rand::SeedableRng;

/// A model to measure: its name, architecture and input shape.
fn models() -> Vec<(&'static str, ModelSpec, Vec<usize>, usize)> {
    vec![
        (
            "mnist-cnn",
            ModelSpec::Cnn {
                channels: [8, 16],
                kernel_size: 5,
                hidden: vec![],
            },
            vec![1, 28, 28],
            10,
        ),
        (
            "mnist-mlp",
            ModelSpec::Mlp { hidden: vec![128] },
            vec![784],
            10,
        ),
        ("iris-mlp", ModelSpec::Mlp { hidden: vec![16] }, vec![4], 3),
    ]
}

/// `n` rows of `shape`, of values in [0, 1).
fn rows(shape: &[usize], n: usize) -> Dataset {
    let per: usize = shape.iter().product();
    let mut random = oblivion_ml::data::SplitMix64::new(7);
    Dataset {
        shape: shape.to_vec(),
        features: (0..n * per).map(|_| random.next_f64() as f32).collect(),
        labels: vec![0; n],
        classes: 2,
    }
}

/// This process's CPU time (user and system, every thread), seconds, as
/// Linux counts it in `/proc/self/stat` (in ticks of 1/100 s: measure
/// many repetitions).
fn cpu_seconds() -> Result<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat")?;
    // The fields after the command name, which is in parentheses.
    let rest = stat.rsplit(')').next().context("a stat line")?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| -> Result<f64> { Ok(fields.get(i).context("a field")?.parse::<f64>()?) };
    // utime and stime are the 14th and 15th fields: 12th and 13th here.
    Ok((ticks(11)? + ticks(12)?) / 100.0)
}

/// CPU seconds each shard timing runs for, at least: many ticks of the
/// kernel's 1/100 s clock.
const MEASURE_FOR: f64 = 1.0;

/// The mean CPU time of `work`, repeated for [`MEASURE_FOR`] seconds.
fn cpu_per_run(mut work: impl FnMut() -> Result<()>) -> Result<f64> {
    let before = cpu_seconds()?;
    let mut runs = 0u32;
    loop {
        work()?;
        runs += 1;
        let spent = cpu_seconds()? - before;
        if spent >= MEASURE_FOR {
            return Ok(spent / f64::from(runs));
        }
    }
}

fn main() -> Result<()> {
    let (mut total, mut shard) = (8_000usize, 267usize);
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = || -> Result<usize> { Ok(args.next().context("a number")?.parse()?) };
        match a.as_str() {
            "--rows" => total = value()?,
            "--shard" => shard = value()?,
            other => bail!("unknown option {other}"),
        }
    }
    println!(
        "native CPU, {} cores; {total} rows per model; shards of {shard} rows, {} sampled",
        std::thread::available_parallelism().map_or(1, |n| n.get()),
        VerificationSpec::default().sample_rows
    );
    println!(
        "| model | rows/s | shard answered (CPU ms) | shard checked (CPU ms) | check / answer |"
    );
    println!("| --- | ---: | ---: | ---: | ---: |");
    let mut rng = rand::rngs::StdRng::seed_from_u64(1);
    for (name, spec, shape, classes) in models() {
        let arch = Architecture::new(spec, shape.clone(), classes)?;
        let params = initial_params(&arch, 1)?;
        let all = rows(&shape, total);
        let start = Instant::now();
        infer(&arch, &params, &all, ComputeDevice::Cpu)?;
        let rate = total as f64 / start.elapsed().as_secs_f64();
        // One shard as a worker answers it, then as the coordinator checks
        // it: the CPU time of each, over many repetitions.
        let part = rows(&shape, shard);
        let body = infer(&arch, &params, &part, ComputeDevice::Cpu)?.to_compressed();
        let answer = cpu_per_run(|| {
            infer(&arch, &params, &part, ComputeDevice::Cpu)?;
            Ok(())
        })?;
        let check = cpu_per_run(|| {
            check_outputs(
                &arch,
                &params,
                &part,
                &body,
                &VerificationSpec::default(),
                &mut rng,
            )
            .map_err(anyhow::Error::msg)
            .map(|_| ())
        })?;
        println!(
            "| {name} | {rate:.0} | {:.3} | {:.3} | {:.2} |",
            answer * 1e3,
            check * 1e3,
            check / answer
        );
    }
    Ok(())
}

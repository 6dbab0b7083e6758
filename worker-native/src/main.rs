//! `oblivion-worker`: the worker engine as a native process, for operators
//! with dedicated machines and for load tests.

mod privacy_file;
mod session;

use clap::Parser;
use oblivion_ml::ComputeDevice;
use oblivion_protocol::wire::DeviceInfo;
use oblivion_worker_engine::benchmark;

use session::Settings;

/// Trains shards for an Oblivion coordinator.
#[derive(Debug, Parser)]
#[command(name = "oblivion-worker", version, about)]
struct Args {
    /// Coordinator URL, e.g. http://127.0.0.1:8080; several, separated by
    /// commas, for instances sharing one database: a lost connection moves
    /// on to the next.
    #[arg(long, env = "OBLIVION_COORDINATOR")]
    coordinator: String,
    /// Display name [default: worker-<pid>].
    #[arg(long)]
    name: Option<String>,
    /// Compute backend: cpu, or wgpu when built with the `wgpu` feature.
    #[arg(long, default_value = "cpu")]
    backend: String,
    /// Private key (hex) of the account that receives this worker's
    /// rewards: the worker signs in as it, which proves the address.
    /// Without it the worker contributes unpaid.
    #[arg(long, env = "OBLIVION_KEY", hide_env_values = true)]
    key: Option<String>,
    /// Data of this worker's own, for federated jobs: a CSV file, or an IDX
    /// images file and an IDX labels file (give the flag twice); gzip or
    /// not. It is read here and never sent: only clipped, noised updates
    /// leave.
    #[arg(long = "local-data", value_name = "FILE")]
    local_data: Vec<std::path::PathBuf>,
    /// Where the worker keeps its privacy settings and ledger
    /// [default: $XDG_DATA_HOME/oblivion-worker, else ~/.local/share/oblivion-worker].
    #[arg(long, env = "OBLIVION_WORKER_DIR")]
    data_dir: Option<std::path::PathBuf>,
    /// The share of its time the worker trains, in percent: below 100 it
    /// rests after each training step, 100/PERCENT - 1 times as long as
    /// the step took, for a machine that is used for other things too.
    #[arg(long, value_name = "PERCENT", default_value_t = 100,
          value_parser = clap::value_parser!(u8).range(1..=100))]
    max_cpu: u8,
    #[command(flatten)]
    limits: PrivacyFlags,
}

/// The least privacy this contributor accepts for its local data; with
/// `--local-data`, each flag given is stored with the ledger and stays for
/// later runs.
#[derive(Debug, clap::Args)]
struct PrivacyFlags {
    /// The most ε one federated job may spend of the local data, all its
    /// rounds together [default: 10].
    #[arg(long)]
    max_job_epsilon: Option<f64>,
    /// The most ε all federated jobs together may spend of it [default: 30].
    #[arg(long)]
    privacy_budget: Option<f64>,
    /// δ of both [default: 1e-5].
    #[arg(long)]
    privacy_delta: Option<f64>,
    /// Least noise multiplier (noise over clip norm) a job may ask [default: 0.5].
    #[arg(long)]
    min_noise_multiplier: Option<f64>,
    /// Least mini-batch a job may ask [default: 16].
    #[arg(long)]
    min_batch_size: Option<u32>,
    /// Least records one update may train on [default: 32].
    #[arg(long)]
    min_records: Option<u64>,
}

impl PrivacyFlags {
    fn apply(&self, limits: &mut oblivion_privacy::contributor::ContributorLimits) {
        let l = limits;
        l.job_epsilon = self.max_job_epsilon.unwrap_or(l.job_epsilon);
        l.total_epsilon = self.privacy_budget.unwrap_or(l.total_epsilon);
        l.delta = self.privacy_delta.unwrap_or(l.delta);
        l.min_noise_multiplier = self.min_noise_multiplier.unwrap_or(l.min_noise_multiplier);
        l.min_batch_size = self.min_batch_size.unwrap_or(l.min_batch_size);
        l.min_records = self.min_records.unwrap_or(l.min_records);
    }
}

/// The data directory: the flag, else the platform's place for user data.
fn data_dir(flag: Option<std::path::PathBuf>) -> std::path::PathBuf {
    use std::path::PathBuf;
    let var = |name| std::env::var_os(name).filter(|v| !v.is_empty());
    flag.or_else(|| var("XDG_DATA_HOME").map(|d| PathBuf::from(d).join("oblivion-worker")))
        .or_else(|| var("HOME").map(|h| PathBuf::from(h).join(".local/share/oblivion-worker")))
        .unwrap_or_else(|| PathBuf::from(".oblivion-worker"))
}

fn cpu_name() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|v| v.trim().to_string())
        })
        .unwrap_or_else(|| std::env::consts::ARCH.to_string())
}

fn pick_device(backend: &str) -> Result<(ComputeDevice, DeviceInfo), String> {
    match backend {
        "cpu" => Ok((
            ComputeDevice::Cpu,
            DeviceInfo {
                backend: "cpu".into(),
                name: cpu_name(),
                detail: "CPU backend (burn-flex)".into(),
            },
        )),
        #[cfg(feature = "wgpu")]
        "wgpu" => match ComputeDevice::Wgpu.device() {
            Ok(_) => Ok((
                ComputeDevice::Wgpu,
                DeviceInfo {
                    backend: "wgpu".into(),
                    name: "wgpu default adapter".into(),
                    detail: "GPU backend (burn-wgpu)".into(),
                },
            )),
            Err(e) => {
                tracing::warn!("no GPU ({e}); falling back to the CPU");
                let (d, mut info) = pick_device("cpu")?;
                info.detail = format!("CPU fallback: wgpu failed: {e}");
                Ok((d, info))
            }
        },
        other => Err(format!(
            "unknown backend {other:?}; this build supports: cpu{}",
            if cfg!(feature = "wgpu") { ", wgpu" } else { "" }
        )),
    }
}

#[tokio::main]
async fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "oblivion_worker=info,warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    if let Err(e) = run(Args::parse()).await {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

async fn run(args: Args) -> Result<(), String> {
    let coordinators: Vec<String> = args
        .coordinator
        .split(',')
        .map(|c| c.trim().trim_end_matches('/').to_string())
        .collect();
    if let Some(bad) = coordinators
        .iter()
        .find(|c| !(c.starts_with("http://") || c.starts_with("https://")))
    {
        return Err(format!(
            "--coordinator must be http:// or https:// URLs, not {bad:?}"
        ));
    }
    let key = args
        .key
        .as_deref()
        .map(oblivion_chain::Key::parse)
        .transpose()
        .map_err(|e| format!("--key (OBLIVION_KEY): {e}"))?;
    let local_data = if args.local_data.is_empty() {
        None
    } else {
        let paths = args.local_data.clone();
        let data = tokio::task::spawn_blocking(move || {
            let files = paths
                .iter()
                .map(|p| std::fs::read(p).map_err(|e| format!("{}: {e}", p.display())))
                .collect::<Result<Vec<_>, _>>()?;
            let slices: Vec<&[u8]> = files.iter().map(Vec::as_slice).collect();
            oblivion_ml::data::read_local(&slices).map_err(|e| e.to_string())
        })
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| format!("--local-data: {e}"))?;
        tracing::info!(
            samples = data.data.len(),
            shape = ?data.data.shape,
            columns = ?data.columns,
            "local data ready for federated jobs"
        );
        Some(data)
    };
    let data_dir = data_dir(args.data_dir.clone());
    // Only local data can be spent: a worker without any neither reads nor
    // holds the privacy file.
    let data_lock = local_data
        .is_some()
        .then(|| privacy_file::lock(&data_dir))
        .transpose()?;
    let mut privacy = if data_lock.is_some() {
        privacy_file::load(&data_dir)?
    } else {
        Default::default()
    };
    args.limits.apply(&mut privacy.limits);
    privacy
        .limits
        .validate()
        .map_err(|e| format!("privacy limits: {e}"))?;
    if data_lock.is_some() {
        privacy_file::save(&data_dir, &privacy)?;
        let l = &privacy.limits;
        tracing::info!(
            job_epsilon = l.job_epsilon,
            total_epsilon = l.total_epsilon,
            delta = l.delta,
            spent = privacy
                .ledger
                .total_epsilon(l.delta)
                .unwrap_or(f64::INFINITY),
            "privacy of the local data, kept in {}",
            privacy_file::path(&data_dir).display()
        );
    }
    let (device, info) = pick_device(&args.backend)?;
    let started = std::time::Instant::now();
    let score = tokio::task::spawn_blocking(move || {
        benchmark(device, 20, &|| started.elapsed().as_secs_f64() * 1000.0)
    })
    .await
    .map_err(|e| e.to_string())?
    .map_err(|e| format!("benchmark failed: {e}"))?;
    tracing::info!(
        backend = info.backend,
        score = format!("{score:.0} samples/s"),
        "device ready"
    );
    let settings = Settings {
        coordinators,
        name: args
            .name
            .unwrap_or_else(|| format!("worker-{}", std::process::id())),
        device,
        info,
        benchmark: score,
        key,
        local_data,
        data_dir,
        privacy,
        _data_lock: data_lock,
        duty: f64::from(args.max_cpu) / 100.0,
    };
    session::run(settings).await
}

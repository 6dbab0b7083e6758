//! Load benchmark of the coordinator: many simulated workers in this one
//! process speak the real worker protocol (WebSocket hello, leases,
//! heartbeats, update uploads with their token) against real coordinator
//! processes, on tiny shards, so that what is measured is the coordinator:
//! dispatch, the database and artifact writes, not training.
//!
//! `cargo xtask load-bench [--workers 10000] [--seconds 30] [--setups sqlite,postgres3] [--rate N]`
//!
//! Setups: `sqlite` (one instance, SQLite, artifacts in its directory) and
//! `postgres3` (three instances on one PostgreSQL, artifacts in one shared
//! directory), all on this machine. Each simulated worker holds one lease
//! at a time, and answers a lease at once with a distinct zero update (so
//! every update is a new artifact to store). Reported: the workers held
//! (connections established and still open at the end), lease grants and
//! accepted updates per second over the measured window, and the grant
//! latency: from a worker becoming free (connected, or its update
//! accepted) to its next lease arriving, with more shards pending than
//! workers at all times; and the update latency, from the moment an
//! update was due to its answer.
//!
//! `--rate N` offers N updates a second in all (open loop: each is due at
//! its slot, and its latency counts from the slot, so a slow answer does
//! not hide the queue behind it); without it, every worker posts as soon
//! as it has a lease, which finds the most the coordinator takes.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use futures_util::{SinkExt, StreamExt};
use oblivion_e2e::cluster::Cluster;
use oblivion_e2e::{Database, Storage, example};
use oblivion_ml::model::Architecture;
use oblivion_ml::params::{NamedTensor, Params};
use oblivion_protocol::JobId;
use oblivion_protocol::wire::{
    ClientKind, DeviceInfo, Endpoint, LeaseTask, WORKER_TOKEN_HEADER, WorkerMessage,
};
use oblivion_worker_engine::session::{
    Action, Event, Notice, OnRefusal, Profile, Session, WorkResult,
};
use tokio_tungstenite::tungstenite::Message;

/// What every simulated worker adds to.
#[derive(Default)]
struct Stats {
    connected: AtomicU64,
    disconnected: AtomicU64,
    grants: AtomicU64,
    accepted: AtomicU64,
    refused: AtomicU64,
    measuring: AtomicBool,
    /// Grant latencies in the measured window, microseconds.
    latencies: Mutex<Vec<u32>>,
    /// Update latencies in the measured window, microseconds: from when
    /// the update was due to its answer.
    update_latencies: Mutex<Vec<u32>>,
}

/// Spaces the updates of all workers evenly at a rate: each takes the next
/// slot, and waits for it.
struct Pacer {
    interval: Duration,
    next: Mutex<Instant>,
}

impl Pacer {
    fn new(per_second: f64) -> Pacer {
        Pacer {
            interval: Duration::from_secs_f64(1.0 / per_second),
            next: Mutex::new(Instant::now()),
        }
    }

    /// Waits for the next free slot; returns when it was due.
    async fn slot(&self) -> Instant {
        let due = {
            let mut next = self.next.lock().unwrap_or_else(|p| p.into_inner());
            let due = (*next).max(Instant::now());
            *next = due + self.interval;
            due
        };
        tokio::time::sleep_until(due.into()).await;
        due
    }
}

/// Most update posts in flight at once, over all simulated workers. The
/// workers and the coordinators share this machine's open-file limit
/// (20,000 here): 10,000 WebSockets a side, plus one connection per post
/// in flight, must stay under it. As many as the HTTP client keeps idle.
const POSTS_IN_FLIGHT: usize = 4096;

/// When updates are posted: at the pacer's rate, if any, and at most
/// [`POSTS_IN_FLIGHT`] at once.
struct Posting {
    pacer: Option<Pacer>,
    in_flight: tokio::sync::Semaphore,
}

impl Posting {
    /// Waits for an update's turn; returns when it was due, and the right
    /// to post it (`None` once the benchmark is over).
    async fn start(&self) -> Option<(Instant, tokio::sync::SemaphorePermit<'_>)> {
        let due = match &self.pacer {
            Some(p) => p.slot().await,
            None => Instant::now(),
        };
        let permit = self.in_flight.acquire().await.ok()?;
        Some((due, permit))
    }
}

fn micros(d: Duration) -> u32 {
    d.as_micros().min(u128::from(u32::MAX)) as u32
}

/// Zero updates for a job's model, differing only in their metadata.
struct Updates {
    models: Mutex<HashMap<JobId, Arc<Params>>>,
}

impl Updates {
    fn body(&self, task: &LeaseTask) -> Result<Vec<u8>> {
        let params = {
            let mut models = self.models.lock().unwrap_or_else(|p| p.into_inner());
            match models.get(&task.job_id) {
                Some(p) => p.clone(),
                None => {
                    let arch = Architecture::new(
                        task.model.clone(),
                        task.input_shape.clone(),
                        task.classes,
                    )?;
                    let p = Arc::new(Params {
                        tensors: arch
                            .param_shapes()
                            .into_iter()
                            .map(|(name, shape)| NamedTensor {
                                values: noise(task.job_id.0, shape.iter().product()),
                                name,
                                shape,
                            })
                            .collect(),
                    });
                    models.insert(task.job_id, p.clone());
                    p
                }
            }
        };
        // As honest updates of one round look: a shared direction (the
        // job's) plus each lease's own noise. Zeros, or one update posted
        // for every shard, are screened out as no work, and their workers
        // quarantined: the benchmark would measure a network turning its
        // workers away.
        let update = Params {
            tensors: params
                .tensors
                .iter()
                .map(|t| NamedTensor {
                    values: t
                        .values
                        .iter()
                        .zip(noise(task.lease_id.0 ^ 0x5EED, t.values.len()))
                        .map(|(shared, own)| 0.1 * shared + 0.03 * own)
                        .collect(),
                    ..t.clone()
                })
                .collect(),
        };
        let meta = HashMap::from([
            ("train_loss".to_string(), "0.5".to_string()),
            ("lease".to_string(), task.lease_id.to_string()),
        ]);
        Ok(update.to_compressed(Some(meta)))
    }
}

/// `n` values in [-1, 1) from `seed` (splitmix64): cheap, and the same for
/// the same seed.
fn noise(seed: u64, n: usize) -> Vec<f32> {
    let mut state = seed;
    (0..n)
        .map(|_| {
            state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^= z >> 31;
            (z >> 40) as f32 / (1u64 << 23) as f32 - 1.0
        })
        .collect()
}

fn text(msg: &WorkerMessage) -> Message {
    Message::Text(serde_json::to_string(msg).unwrap_or_default().into())
}

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// One simulated worker, until `stop`: a driver of the workers' own
/// session, whose work on a lease is posting a distinct zero update at
/// once.
async fn worker(
    n: usize,
    url: String,
    http: reqwest::Client,
    stats: Arc<Stats>,
    updates: Arc<Updates>,
    posting: Arc<Posting>,
    stop: Arc<AtomicBool>,
) {
    let profile = Profile {
        name: format!("sim{n}"),
        client: ClientKind::Native,
        device: DeviceInfo {
            backend: "cpu".into(),
            name: "simulated".into(),
            detail: String::new(),
        },
        benchmark: 1.0,
        payout_address: None,
        max_leases: Some(1),
        local_data: None,
    };
    let mut session = Session::new(
        profile,
        vec![Endpoint::new(&url)],
        OnRefusal::Retry,
        n as u64,
    );
    let started = Instant::now();
    let now = || started.elapsed().as_secs_f64() * 1000.0;
    let mut socket: Option<Socket> = None;
    let mut free_since = Instant::now();
    let mut held = false;
    'run: while !stop.load(Ordering::Relaxed) {
        while let Some(action) = session.poll_action() {
            match action {
                Action::Connect(endpoint) => {
                    let config =
                        tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default()
                            .read_buffer_size(8 * 1024)
                            .write_buffer_size(8 * 1024);
                    let opened = tokio_tungstenite::connect_async_with_config(
                        endpoint.connect_url(),
                        Some(config),
                        false,
                    )
                    .await;
                    match opened {
                        Ok((s, _)) => {
                            socket = Some(s);
                            session.handle(now(), Event::Opened);
                        }
                        Err(e) => session.handle(now(), Event::Closed(e.to_string())),
                    }
                }
                Action::Send(message) => {
                    if let Some(s) = socket.as_mut()
                        && s.send(text(&message)).await.is_err()
                    {
                        socket = None;
                        session.handle(now(), Event::Closed("send failed".into()));
                    }
                }
                Action::Work {
                    task,
                    endpoint,
                    token,
                } => {
                    let waited = free_since.elapsed();
                    stats.grants.fetch_add(1, Ordering::Relaxed);
                    if stats.measuring.load(Ordering::Relaxed) {
                        stats
                            .latencies
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .push(micros(waited));
                    }
                    let result = match updates.body(&task) {
                        Ok(body) => {
                            let Some((due, _permit)) = posting.start().await else {
                                break 'run;
                            };
                            let posted = http
                                .post(endpoint.update_url(task.lease_id))
                                .header(WORKER_TOKEN_HEADER, &token)
                                .body(body)
                                .send()
                                .await;
                            if stats.measuring.load(Ordering::Relaxed) {
                                stats
                                    .update_latencies
                                    .lock()
                                    .unwrap_or_else(|p| p.into_inner())
                                    .push(micros(due.elapsed()));
                            }
                            match posted {
                                Ok(r) if r.status().is_success() => {
                                    stats.accepted.fetch_add(1, Ordering::Relaxed);
                                    WorkResult::Accepted { credited: 0 }
                                }
                                other => {
                                    stats.refused.fetch_add(1, Ordering::Relaxed);
                                    WorkResult::Refused(format!("{:?}", other.map(|r| r.status())))
                                }
                            }
                        }
                        Err(e) => WorkResult::Failed(e.to_string()),
                    };
                    free_since = Instant::now();
                    session.handle(
                        now(),
                        Event::Finished {
                            lease_id: task.lease_id,
                            result,
                        },
                    );
                }
                Action::Notice(Notice::Connected { .. }) => {
                    held = true;
                    free_since = Instant::now();
                    stats.connected.fetch_add(1, Ordering::Relaxed);
                }
                Action::Notice(Notice::Disconnected { .. }) if held => {
                    held = false;
                    stats.disconnected.fetch_add(1, Ordering::Relaxed);
                }
                Action::Close => socket = None,
                Action::Ended(_) => break 'run,
                Action::Cancel(_) | Action::Notice(_) => {}
            }
        }
        let due = session.poll_timeout();
        let sleep = async {
            match due {
                Some(due) => {
                    let at = started + Duration::from_secs_f64(due.max(0.0) / 1000.0);
                    tokio::time::sleep_until(at.into()).await;
                }
                // Nothing due: look at `stop` now and then.
                None => tokio::time::sleep(Duration::from_secs(1)).await,
            }
        };
        tokio::select! {
            msg = async { socket.as_mut().expect("guarded").next().await }, if socket.is_some() => {
                match msg {
                    Some(Ok(Message::Text(t))) => session.handle(now(), Event::Message(t.to_string())),
                    Some(Ok(_)) => {}
                    _ => {
                        socket = None;
                        session.handle(now(), Event::Closed("closed".into()));
                    }
                }
            }
            () = sleep => session.handle_timeout(now()),
        }
    }
    if held {
        stats.disconnected.fetch_add(1, Ordering::Relaxed);
    }
}

fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    f64::from(sorted[i]) / 1000.0
}

/// One setup's figures.
#[derive(serde::Serialize)]
struct Figures {
    setup: String,
    workers: usize,
    held: u64,
    grants_per_second: f64,
    p50_grant_ms: f64,
    p99_grant_ms: f64,
    updates_per_second: f64,
    p50_update_ms: f64,
    p99_update_ms: f64,
    offered_per_second: Option<f64>,
    refused: u64,
    seconds: f64,
}

async fn run(setup: &str, workers: usize, seconds: u64, rate: Option<f64>) -> Result<Figures> {
    let (instances, database, storage) = match setup {
        "sqlite" => (1, Database::Sqlite, Storage::Dir),
        "postgres3" => (3, Database::Postgres, Storage::SharedDir),
        other => bail!("unknown setup {other:?}; use sqlite or postgres3"),
    };
    let flags = [
        "--max-workers-per-client",
        "20000",
        "--max-workers",
        "20000",
        "--max-jobs-in-flight",
        "10000",
        "--max-uploads-per-minute",
        "100000",
        "--max-shard-rounds",
        "1000000",
    ];
    let cluster = Cluster::start(instances, database, storage, &flags)?;
    // Tiny jobs: iris, a linear model, one sample per shard; enough of
    // them that more shards are pending than there are workers.
    let mut spec = example("iris-mlp.json")?;
    spec["model"] = serde_json::json!({"kind": "mlp", "hidden": []});
    spec["shards_per_round"] = 100.into();
    spec["rounds"] = 1000.into();
    let jobs = (workers * 3 / 100).max(2);
    // One client an instance, signed in once: a sign-in a job would meet
    // the sign-in rate limit long before the 300th job.
    let creators: Vec<_> = (0..instances).map(|i| cluster.api(i)).collect();
    for j in 0..jobs {
        spec["seed"] = (j as u64).into();
        creators[j % instances]
            .submit(&spec)
            .await
            .with_context(|| format!("submitting job {j}"))?;
    }
    let stats = Arc::new(Stats::default());
    let updates = Arc::new(Updates {
        models: Mutex::new(HashMap::new()),
    });
    let stop = Arc::new(AtomicBool::new(false));
    let posting = Arc::new(Posting {
        pacer: rate.map(Pacer::new),
        in_flight: tokio::sync::Semaphore::new(POSTS_IN_FLIGHT),
    });
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(POSTS_IN_FLIGHT)
        .build()?;
    let mut tasks = Vec::with_capacity(workers);
    let connecting = Instant::now();
    for n in 0..workers {
        tasks.push(tokio::spawn(worker(
            n,
            cluster.url(n % instances),
            http.clone(),
            stats.clone(),
            updates.clone(),
            posting.clone(),
            stop.clone(),
        )));
        if n % 200 == 199 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    while (stats.connected.load(Ordering::Relaxed) as usize) < workers {
        if connecting.elapsed() > Duration::from_secs(300) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    eprintln!(
        "{setup}: {} workers connected in {:.1} s",
        stats.connected.load(Ordering::Relaxed),
        connecting.elapsed().as_secs_f64()
    );
    // Warm up, then measure.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let (g0, a0) = (
        stats.grants.load(Ordering::Relaxed),
        stats.accepted.load(Ordering::Relaxed),
    );
    stats.measuring.store(true, Ordering::Relaxed);
    let window = Instant::now();
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    stats.measuring.store(false, Ordering::Relaxed);
    let elapsed = window.elapsed().as_secs_f64();
    let grants = stats.grants.load(Ordering::Relaxed) - g0;
    let accepted = stats.accepted.load(Ordering::Relaxed) - a0;
    let held = stats.connected.load(Ordering::Relaxed) - stats.disconnected.load(Ordering::Relaxed);
    let mut latencies =
        std::mem::take(&mut *stats.latencies.lock().unwrap_or_else(|p| p.into_inner()));
    latencies.sort_unstable();
    let mut update_latencies = std::mem::take(
        &mut *stats
            .update_latencies
            .lock()
            .unwrap_or_else(|p| p.into_inner()),
    );
    update_latencies.sort_unstable();
    stop.store(true, Ordering::Relaxed);
    drop(cluster);
    for t in tasks {
        t.abort();
    }
    Ok(Figures {
        setup: setup.to_string(),
        workers,
        held,
        grants_per_second: grants as f64 / elapsed,
        p50_grant_ms: percentile(&latencies, 0.50),
        p99_grant_ms: percentile(&latencies, 0.99),
        updates_per_second: accepted as f64 / elapsed,
        p50_update_ms: percentile(&update_latencies, 0.50),
        p99_update_ms: percentile(&update_latencies, 0.99),
        offered_per_second: rate,
        refused: stats.refused.load(Ordering::Relaxed),
        seconds: elapsed,
    })
}

#[tokio::main]
async fn main() -> Result<()> {
    let mut workers = 10_000usize;
    let mut seconds = 30u64;
    let mut setups = vec!["sqlite".to_string(), "postgres3".to_string()];
    let mut json = None;
    let mut rate = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--workers" => workers = args.next().context("--workers N")?.parse()?,
            "--seconds" => seconds = args.next().context("--seconds N")?.parse()?,
            "--setups" => {
                setups = args
                    .next()
                    .context("--setups sqlite,postgres3")?
                    .split(',')
                    .map(String::from)
                    .collect()
            }
            "--rate" => rate = Some(args.next().context("--rate N")?.parse::<f64>()?),
            "--json" => json = Some(args.next().context("--json FILE")?),
            other => bail!("unknown option {other}"),
        }
    }
    let mut all = Vec::new();
    println!(
        "| setup | workers held | offered/s | grants/s | p50 grant | p99 grant | updates accepted/s | p50 update | p99 update |\n| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
    );
    for setup in &setups {
        let f = run(setup, workers, seconds, rate).await?;
        println!(
            "| {} | {} of {} | {} | {:.0} | {:.1} ms | {:.1} ms | {:.0} | {:.1} ms | {:.1} ms |",
            f.setup,
            f.held,
            f.workers,
            f.offered_per_second
                .map_or("all".to_string(), |r| format!("{r:.0}")),
            f.grants_per_second,
            f.p50_grant_ms,
            f.p99_grant_ms,
            f.updates_per_second,
            f.p50_update_ms,
            f.p99_update_ms
        );
        all.push(f);
    }
    if let Some(path) = json {
        std::fs::write(path, serde_json::to_string_pretty(&all)?)?;
    }
    Ok(())
}

//! A contributing session: pick the device, connect (and reconnect), train
//! leases one at a time, post updates, report everything to the page.

use std::collections::{HashMap, VecDeque};

use futures_channel::mpsc::{TryRecvError, UnboundedReceiver};
use futures_util::StreamExt;
use oblivion_ml::ComputeDevice;
use oblivion_ml::model::Architecture;
use oblivion_protocol::tab::{AdapterInfo, BackendChoice, TabReport, TabStart};
use oblivion_protocol::wire::{
    ClientKind, CoordinatorMessage, DeviceInfo, LeaseProgress, LeaseTask, PROTOCOL_VERSION,
    WorkerMessage,
};
use oblivion_worker_engine::{Engine, EngineError, SpeedTest, benchmark, training_speed};
use web_sys::WebSocket;

use crate::gpu;
use crate::net::{self, now_ms, precise_ms, send, sleep};
use crate::page::report;
use crate::stopping;

/// Longest pause between reconnection attempts, ms.
const MAX_BACKOFF_MS: u32 = 15_000;
/// How often training yields to the event loop (Stop, revocations), ms.
const YIELD_MS: f64 = 100.0;
/// How often the page hears about progress, ms.
const PROGRESS_MS: f64 = 250.0;

/// What outlives a connection.
struct Session {
    engine: Engine,
    /// The device shards train on unless one does not fit it.
    preferred: ComputeDevice,
    /// Time both devices on each new model and train on the faster (the
    /// page left the choice to the tab, and WebGPU started).
    measure: bool,
    /// The faster device for each model timed so far.
    faster: HashMap<String, ComputeDevice>,
    adapter: Option<AdapterInfo>,
    shards_done: u64,
    accepted: u64,
    rejected: u64,
    credit: u64,
    /// Reset the reconnection backoff: a connection succeeded.
    connected: bool,
}

fn backend_name(device: ComputeDevice) -> &'static str {
    if device == ComputeDevice::Cpu {
        "cpu"
    } else {
        "webgpu"
    }
}

/// Runs until the page says Stop.
pub async fn run(start: TabStart) {
    let forced = start.cpu_reason.clone();
    let choice = if forced.is_some() {
        BackendChoice::Cpu
    } else {
        start.backend
    };
    let (mut device, adapter, mut cpu_reason) = gpu::choose(choice, start.adapter.clone()).await;
    if forced.is_some() {
        cpu_reason = forced;
    }
    let mut score = if device == ComputeDevice::Cpu {
        benchmark(ComputeDevice::Cpu, 20, &precise_ms)
    } else {
        training_speed(&SpeedTest::reference(4), device, &precise_ms).await
    };
    if device != ComputeDevice::Cpu
        && let Err(e) = &score
    {
        cpu_reason = Some(format!("WebGPU failed its first steps: {e}"));
        device = ComputeDevice::Cpu;
        score = benchmark(ComputeDevice::Cpu, 20, &precise_ms);
    }
    let score = match score {
        Ok(s) => s,
        Err(e) => {
            report(&TabReport::Stopped {
                reason: format!("this browser cannot train: {e}"),
            });
            return;
        }
    };
    let info = DeviceInfo {
        backend: backend_name(device).into(),
        name: match &adapter {
            Some(a) if device != ComputeDevice::Cpu => a.name.clone(),
            _ => "browser CPU (WebAssembly)".into(),
        },
        detail: match (&adapter, &cpu_reason) {
            (_, Some(reason)) => format!("CPU: {reason}"),
            (Some(a), None) => format!(
                "WebGPU{}: max buffer {}, max storage binding {}",
                if a.fallback {
                    " (software adapter)"
                } else {
                    ""
                },
                gpu::mib(a.max_buffer_size),
                gpu::mib(a.max_storage_binding)
            ),
            (None, None) => String::new(),
        },
    };
    report(&TabReport::Device {
        device: info.clone(),
        adapter: adapter.clone(),
        cpu_reason,
        benchmark: score,
    });
    let mut engine = Engine::new(device);
    engine.set_local_data(crate::take_local_data());
    // The ledger names the network by the coordinator's origin.
    engine.set_privacy(
        start.coordinator.trim_end_matches('/').to_string(),
        start.privacy.clone(),
    );
    let mut session = Session {
        engine,
        preferred: device,
        measure: choice == BackendChoice::Auto && device != ComputeDevice::Cpu,
        faster: HashMap::new(),
        adapter,
        shards_done: 0,
        accepted: 0,
        rejected: 0,
        credit: 0,
        connected: false,
    };
    let mut backoff = 1000;
    while !stopping() {
        session.connected = false;
        let outcome = connection(&start, &info, score, &mut session).await;
        if stopping() {
            break;
        }
        if session.connected {
            backoff = 1000;
        }
        let reason = match outcome {
            Ok(()) => "the connection closed".to_string(),
            Err(e) => e,
        };
        report(&TabReport::Disconnected {
            reason,
            retry_in_ms: backoff,
        });
        sleep(backoff as i32).await;
        backoff = (backoff * 2).min(MAX_BACKOFF_MS);
    }
    report(&TabReport::Stopped {
        reason: "stopped".into(),
    });
}

/// One connection: hello, then leases until it closes or Stop.
async fn connection(
    start: &TabStart,
    info: &DeviceInfo,
    score: f64,
    session: &mut Session,
) -> Result<(), String> {
    let base = start.coordinator.trim_end_matches('/');
    let ws_url = format!("{}/api/workers/connect", base.replacen("http", "ws", 1));
    let (ws, mut inbox) = net::connect(&ws_url).await?;
    send(
        &ws,
        &WorkerMessage::Hello {
            protocol: PROTOCOL_VERSION,
            name: start.name.clone(),
            client: ClientKind::Browser,
            device: info.clone(),
            benchmark: score,
            payout_address: start.payout_address.clone(),
            // One shard at a time: a second one would wait here while
            // another worker could be training it.
            max_leases: Some(1),
            local_data: session.engine.local_offer(),
        },
    );
    let (token, heartbeat_ms) = match inbox.next().await.map(|t| serde_json::from_str(&t)) {
        Some(Ok(CoordinatorMessage::Welcome {
            token,
            heartbeat_secs,
            worker_id,
            ..
        })) => {
            report(&TabReport::Connected { worker_id });
            session.connected = true;
            (token, heartbeat_secs as f64 * 1000.0)
        }
        Some(Ok(CoordinatorMessage::Error { message })) => return Err(message),
        _ => return Err("no welcome from the coordinator".into()),
    };
    let mut queue: VecDeque<LeaseTask> = VecDeque::new();
    loop {
        if stopping() {
            return Ok(());
        }
        let task = match queue.pop_front() {
            Some(t) => t,
            None => match inbox.next().await.map(|t| serde_json::from_str(&t)) {
                Some(Ok(CoordinatorMessage::Lease(task))) => task,
                Some(Ok(CoordinatorMessage::Error { message })) => return Err(message),
                Some(_) => continue,
                None if stopping() => return Ok(()),
                None => return Err("the coordinator closed the connection".into()),
            },
        };
        let lease = Lease {
            ws: &ws,
            base,
            token: &token,
            heartbeat_ms,
        };
        lease.work(task, session, &mut inbox, &mut queue).await?;
    }
}

/// The faster device for `task`'s model: timed on both the first time the
/// model comes, then remembered. A device that fails the timing loses.
async fn faster_for(task: &LeaseTask, session: &mut Session) -> ComputeDevice {
    let key = format!(
        "{:?} on {:?} at batch {}",
        task.model, task.input_shape, task.batch_size
    );
    if let Some(&device) = session.faster.get(&key) {
        return device;
    }
    let test = SpeedTest {
        model: task.model.clone(),
        input_shape: task.input_shape.clone(),
        batch: task.batch_size.max(1) as usize,
        warmup: 2,
        steps: 4,
    };
    let cpu = training_speed(&test, ComputeDevice::Cpu, &precise_ms)
        .await
        .unwrap_or(0.0);
    let gpu = training_speed(&test, session.preferred, &precise_ms)
        .await
        .unwrap_or(0.0);
    let device = if gpu > cpu {
        session.preferred
    } else {
        ComputeDevice::Cpu
    };
    report(&TabReport::DeviceChoice {
        model: key.clone(),
        cpu,
        gpu,
        chosen: backend_name(device).into(),
    });
    session.faster.insert(key, device);
    device
}

/// One lease being worked on, and where to report it.
struct Lease<'a> {
    ws: &'a WebSocket,
    base: &'a str,
    token: &'a str,
    heartbeat_ms: f64,
}

/// How training a lease ended, short of an update.
enum Interrupted {
    Revoked(String),
    Stopped,
    ConnectionLost,
}

impl Lease<'_> {
    async fn work(
        &self,
        task: LeaseTask,
        session: &mut Session,
        inbox: &mut UnboundedReceiver<String>,
        queue: &mut VecDeque<LeaseTask>,
    ) -> Result<(), String> {
        let lease_id = task.lease_id;
        // Priced before anything is fetched: a job beyond the
        // contributor's limits is declined at once.
        if let Err(e) = session.engine.admit(&task) {
            self.decline(task.job_id, lease_id, &e);
            return Ok(());
        }
        for (kind, sha) in session.engine.missing(&task) {
            let url = format!("{}/api/artifacts/{sha}", self.base);
            let bytes = match net::fetch_bytes(&url, self.token).await {
                Ok(b) => b,
                Err(e) => {
                    self.give_back(lease_id, &e);
                    return Err(e);
                }
            };
            if let Err(e) = session.engine.insert(kind, &sha, &bytes) {
                self.give_back(lease_id, &e.to_string());
                return Ok(());
            }
        }
        let mut device = session.preferred;
        if session.measure && device != ComputeDevice::Cpu {
            device = faster_for(&task, session).await;
        }
        if device != ComputeDevice::Cpu
            && let Some(adapter) = &session.adapter
        {
            let arch =
                Architecture::new(task.model.clone(), task.input_shape.clone(), task.classes);
            if let Ok(arch) = arch
                && let Err(reason) = gpu::fits(adapter, &arch, task.batch_size as usize)
            {
                report(&TabReport::Fallback {
                    reason,
                    shard_only: true,
                });
                device = ComputeDevice::Cpu;
            }
        }
        let planned = session.engine.planned_samples(&task).unwrap_or(0) as f64;
        loop {
            session.engine.set_device(device);
            report(&TabReport::Lease {
                lease_id,
                job_id: task.job_id,
                round: task.round,
                shard: task.shard,
                backend: backend_name(device).into(),
            });
            let started = precise_ms();
            let mut interrupted = None;
            let result = {
                let (mut last_beat, mut last_report, mut last_yield) = (now_ms(), 0.0, now_ms());
                let mut progress = async |p: f32| -> bool {
                    let now = now_ms();
                    if now - last_yield >= YIELD_MS {
                        last_yield = now;
                        sleep(0).await;
                    }
                    loop {
                        match inbox.try_recv() {
                            Ok(text) => match serde_json::from_str(&text) {
                                Ok(CoordinatorMessage::Lease(t)) => queue.push_back(t),
                                Ok(CoordinatorMessage::Revoke {
                                    lease_id: l,
                                    reason,
                                }) => {
                                    if l == lease_id {
                                        interrupted = Some(Interrupted::Revoked(reason));
                                    } else {
                                        queue.retain(|t| t.lease_id != l);
                                    }
                                }
                                _ => {}
                            },
                            Err(TryRecvError::Closed) => {
                                interrupted = Some(Interrupted::ConnectionLost);
                                break;
                            }
                            Err(TryRecvError::Empty) => break,
                        }
                    }
                    if stopping() {
                        interrupted = Some(Interrupted::Stopped);
                    }
                    if interrupted.is_some() {
                        return false;
                    }
                    if now - last_beat >= self.heartbeat_ms / 3.0 {
                        last_beat = now;
                        send(
                            self.ws,
                            &WorkerMessage::Heartbeat {
                                leases: vec![LeaseProgress {
                                    lease_id,
                                    progress: p,
                                }],
                            },
                        );
                    }
                    if now - last_report >= PROGRESS_MS {
                        last_report = now;
                        let seconds = (precise_ms() - started).max(1.0) / 1000.0;
                        report(&TabReport::Progress {
                            lease_id,
                            progress: p,
                            samples_per_second: f64::from(p) * planned / seconds,
                        });
                    }
                    true
                };
                session
                    .engine
                    .train_async(&task, &mut progress, &|| precise_ms() as u64)
                    .await
            };
            let update = match result {
                Ok(Some(update)) => update,
                Ok(None) => {
                    return match interrupted {
                        Some(Interrupted::Revoked(reason)) => {
                            report(&TabReport::Revoked { lease_id, reason });
                            Ok(())
                        }
                        Some(Interrupted::ConnectionLost) => {
                            Err("the coordinator closed the connection".into())
                        }
                        Some(Interrupted::Stopped) | None => Ok(()),
                    };
                }
                Err(e @ EngineError::Privacy(_)) => {
                    self.decline(task.job_id, lease_id, &e);
                    return Ok(());
                }
                Err(e) if device != ComputeDevice::Cpu => {
                    report(&TabReport::Fallback {
                        reason: format!("WebGPU failed on a shard ({e}); training on the CPU"),
                        shard_only: false,
                    });
                    session.preferred = ComputeDevice::Cpu;
                    device = ComputeDevice::Cpu;
                    continue;
                }
                Err(e) => {
                    self.give_back(lease_id, &e.to_string());
                    report(&TabReport::Warning {
                        message: format!("lease {lease_id} failed: {e}"),
                    });
                    return Ok(());
                }
            };
            if update.spent {
                // The page keeps the ledger; it hears of the spend first.
                report(&TabReport::Spent {
                    ledger: session.engine.privacy().ledger,
                });
            }
            let seconds = (precise_ms() - started).max(1.0) / 1000.0;
            let url = format!("{}/api/leases/{lease_id}/update", self.base);
            session.shards_done += 1;
            let (accepted, error) = match net::post_update(&url, self.token, &update.body).await {
                Ok(receipt) => {
                    session.accepted += 1;
                    session.credit += receipt["credited_samples"].as_u64().unwrap_or(0);
                    (true, None)
                }
                Err(e) => {
                    session.rejected += 1;
                    (false, Some(e))
                }
            };
            report(&TabReport::Done {
                lease_id,
                accepted,
                error,
                shards_done: session.shards_done,
                accepted_total: session.accepted,
                rejected_total: session.rejected,
                credit: session.credit,
                samples_per_second: update.samples as f64 / seconds,
            });
            return Ok(());
        }
    }

    fn give_back(&self, lease_id: u64, reason: &str) {
        send(
            self.ws,
            &WorkerMessage::ReturnLease {
                lease_id,
                reason: reason.chars().take(200).collect(),
                decline_job: false,
            },
        );
    }

    /// Returns the lease and declines its job: the contributor's privacy
    /// limits refuse it.
    fn decline(&self, job_id: u64, lease_id: u64, why: &EngineError) {
        send(
            self.ws,
            &WorkerMessage::ReturnLease {
                lease_id,
                reason: why.to_string().chars().take(200).collect(),
                decline_job: true,
            },
        );
        report(&TabReport::Declined {
            job_id,
            reason: why.to_string(),
        });
    }
}

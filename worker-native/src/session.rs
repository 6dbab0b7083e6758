//! One connection to the coordinator: hello, leases, heartbeats, training,
//! uploads; and a clean stop on Ctrl-C (first: finish the shard in hand and
//! return the queued ones; second: return everything now).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use oblivion_ml::ComputeDevice;
use oblivion_protocol::api::ApiError;
use oblivion_protocol::wire::{
    ClientKind, CoordinatorMessage, DeviceInfo, LeaseProgress, LeaseTask, PROTOCOL_VERSION,
    UpdateReceipt, WORKER_TOKEN_HEADER, WorkerMessage,
};
use oblivion_worker_engine::Engine;
use reqwest::cookie::CookieStore;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::header;

/// What the worker is and where it connects.
#[derive(Clone)]
pub struct Settings {
    /// Coordinator base URL (http or https) it connects to now.
    pub base: String,
    /// Every coordinator it may connect to, tried in turn when one is lost
    /// (instances sharing one database), `base` among them.
    pub coordinators: Vec<String>,
    /// Display name.
    pub name: String,
    /// Compute device.
    pub device: ComputeDevice,
    /// Device description.
    pub info: DeviceInfo,
    /// Benchmark score.
    pub benchmark: f64,
    /// The account rewards go to; the worker signs in as it.
    pub key: Option<oblivion_chain::Key>,
    /// Data of its own for federated jobs (read once; never sent).
    pub local_data: Option<oblivion_ml::data::LocalData>,
    /// Where its privacy settings and ledger are kept.
    pub data_dir: std::path::PathBuf,
    /// Those settings and ledger, as loaded.
    pub privacy: oblivion_protocol::tab::ContributorPrivacy,
    /// Holds the data directory while the worker runs (with local data).
    pub _data_lock: Option<std::sync::Arc<std::fs::File>>,
    /// The share of its time it trains, in (0, 1]: it rests between steps
    /// for the rest.
    pub duty: f64,
}

/// How a session ended.
pub enum Outcome {
    /// Stopped on request.
    Stopped,
    /// The coordinator refused the worker (do not retry).
    Refused(String),
    /// The connection failed or dropped (retry).
    Lost(String),
}

/// A lease being worked on.
#[derive(Default)]
struct Held {
    progress: AtomicU32,
    cancel: AtomicBool,
    started: AtomicBool,
}

type HeldMap = Arc<Mutex<BTreeMap<u64, Arc<Held>>>>;

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The worker across reconnections (its caches survive them).
pub struct Worker {
    settings: Arc<Settings>,
    engine: Arc<Mutex<Engine>>,
    http: reqwest::Client,
    /// Session cookies (signing in sets one; the worker connection sends it).
    cookies: Arc<reqwest::cookie::Jar>,
    connected: bool,
}

impl Worker {
    /// A worker that has not connected yet.
    pub fn new(mut settings: Settings) -> Worker {
        let cookies = Arc::new(reqwest::cookie::Jar::default());
        let mut engine = Engine::new(settings.device);
        engine.set_local_data(settings.local_data.take());
        // The ledger names the network by its coordinators: instances
        // sharing one database are one network, in whatever order given.
        let mut network = settings.coordinators.clone();
        network.sort();
        engine.set_privacy(network.join(","), std::mem::take(&mut settings.privacy));
        Worker {
            engine: Arc::new(Mutex::new(engine)),
            settings: Arc::new(settings),
            http: reqwest::Client::builder()
                .cookie_provider(cookies.clone())
                .build()
                .unwrap_or_default(),
            cookies,
            connected: false,
        }
    }

    /// Moves on to the next coordinator of the list (after a lost one).
    pub fn next_coordinator(&mut self) {
        let list = &self.settings.coordinators;
        if list.len() < 2 {
            return;
        }
        let at = list
            .iter()
            .position(|c| *c == self.settings.base)
            .unwrap_or(0);
        let mut settings = (*self.settings).clone();
        settings.base = list[(at + 1) % list.len()].clone();
        self.settings = Arc::new(settings);
    }

    /// Whether the last session got as far as a Welcome.
    pub fn connected_once(&self) -> bool {
        self.connected
    }

    /// Connects and works until the connection ends or the user stops it.
    pub async fn run(&mut self) -> Outcome {
        self.connected = false;
        let ws_url = format!(
            "{}/api/workers/connect",
            self.settings.base.replacen("http", "ws", 1)
        );
        let mut request = match ws_url.as_str().into_client_request() {
            Ok(r) => r,
            Err(e) => return Outcome::Refused(format!("bad coordinator URL {ws_url}: {e}")),
        };
        if let Some(key) = &self.settings.key {
            // Signed in afresh on every connection: sessions expire.
            if let Err(e) =
                oblivion_chain::sign_in_over_http(&self.http, &self.settings.base, key).await
            {
                return Outcome::Lost(e);
            }
            let cookie = self
                .settings
                .base
                .parse()
                .ok()
                .and_then(|url| self.cookies.cookies(&url));
            if let Some(cookie) = cookie {
                request.headers_mut().insert(header::COOKIE, cookie);
            }
        }
        let (socket, _) = match tokio_tungstenite::connect_async(request).await {
            Ok(s) => s,
            Err(e) => return Outcome::Lost(format!("cannot connect to {ws_url}: {e}")),
        };
        let (mut sink, mut stream) = socket.split();
        let s = &self.settings;
        let hello = WorkerMessage::Hello {
            protocol: PROTOCOL_VERSION,
            name: s.name.clone(),
            client: ClientKind::Native,
            device: s.info.clone(),
            benchmark: s.benchmark,
            payout_address: s.key.as_ref().map(|k| k.address()),
            max_leases: None,
            local_data: lock(&self.engine).local_offer(),
        };
        if sink.send(text(&hello)).await.is_err() {
            return Outcome::Lost("connection closed during hello".into());
        }
        let welcome = tokio::time::timeout(Duration::from_secs(10), stream.next()).await;
        let (worker_id, token, heartbeat_secs) = match welcome {
            Ok(Some(Ok(Message::Text(t)))) => match serde_json::from_str(&t) {
                Ok(CoordinatorMessage::Welcome {
                    worker_id,
                    token,
                    heartbeat_secs,
                    ..
                }) => (worker_id, token, heartbeat_secs),
                Ok(CoordinatorMessage::Error { message }) => return Outcome::Refused(message),
                _ => return Outcome::Lost("expected a welcome".into()),
            },
            _ => return Outcome::Lost("no welcome from the coordinator".into()),
        };
        self.connected = true;
        tracing::info!(worker_id, "connected to {}", s.base);

        let held: HeldMap = Arc::default();
        let (out_tx, mut out_rx) = mpsc::unbounded_channel::<WorkerMessage>();
        let (task_tx, task_rx) = mpsc::unbounded_channel::<LeaseTask>();
        let mut task_tx = Some(task_tx);
        let mut trainer = tokio::spawn(train_loop(
            task_rx,
            held.clone(),
            out_tx.clone(),
            self.engine.clone(),
            self.http.clone(),
            self.settings.clone(),
            token,
        ));
        let mut heartbeat =
            tokio::time::interval(Duration::from_secs(heartbeat_secs.clamp(1, 3600)));
        let mut stops = 0;
        let cancel_all = |held: &HeldMap| {
            for h in lock(held).values() {
                h.cancel.store(true, Ordering::SeqCst);
            }
        };
        loop {
            tokio::select! {
                incoming = stream.next() => {
                    let msg = match incoming {
                        Some(Ok(Message::Text(t))) => serde_json::from_str::<CoordinatorMessage>(&t),
                        Some(Ok(Message::Close(_))) | None | Some(Err(_)) => {
                            cancel_all(&held);
                            trainer.abort();
                            return Outcome::Lost("the coordinator closed the connection".into());
                        }
                        Some(Ok(_)) => continue,
                    };
                    match msg {
                        Ok(CoordinatorMessage::Lease(task)) => {
                            tracing::info!(lease = task.lease_id, job = task.job_id, round = task.round, shard = task.shard, "lease received");
                            lock(&held).insert(task.lease_id, Arc::default());
                            match &task_tx {
                                Some(tx) => { let _ = tx.send(task); }
                                None => {
                                    lock(&held).remove(&task.lease_id);
                                    let _ = sink.send(text(&WorkerMessage::ReturnLease {
                                        lease_id: task.lease_id,
                                        reason: "worker is stopping".into(),
                                        decline_job: false,
                                    })).await;
                                }
                            }
                        }
                        Ok(CoordinatorMessage::Revoke { lease_id, reason }) => {
                            tracing::info!(lease = lease_id, "lease revoked: {reason}");
                            if let Some(h) = lock(&held).remove(&lease_id) {
                                h.cancel.store(true, Ordering::SeqCst);
                            }
                        }
                        Ok(CoordinatorMessage::Error { message }) => tracing::warn!("coordinator: {message}"),
                        Ok(CoordinatorMessage::Welcome { .. }) => {}
                        Err(e) => tracing::warn!("unreadable message from the coordinator: {e}"),
                    }
                }
                Some(msg) = out_rx.recv() => {
                    if sink.send(text(&msg)).await.is_err() {
                        cancel_all(&held);
                        trainer.abort();
                        return Outcome::Lost("send failed".into());
                    }
                }
                _ = heartbeat.tick() => {
                    let leases = lock(&held)
                        .iter()
                        .map(|(id, h)| LeaseProgress {
                            lease_id: *id,
                            progress: f32::from_bits(h.progress.load(Ordering::Relaxed)),
                        })
                        .collect();
                    let _ = sink.send(text(&WorkerMessage::Heartbeat { leases })).await;
                }
                _ = tokio::signal::ctrl_c() => {
                    stops += 1;
                    if stops == 1 {
                        tracing::info!("stopping: finishing the current shard (Ctrl-C again to return it now)");
                        let _ = sink.send(text(&WorkerMessage::Drain)).await;
                        let queued: Vec<u64> = lock(&held)
                            .iter()
                            .filter(|(_, h)| !h.started.load(Ordering::SeqCst))
                            .map(|(id, _)| *id)
                            .collect();
                        for id in queued {
                            lock(&held).remove(&id);
                            let _ = sink.send(text(&WorkerMessage::ReturnLease {
                                lease_id: id,
                                reason: "worker is stopping".into(),
                                decline_job: false,
                            })).await;
                        }
                        task_tx = None;
                    } else {
                        let ids: Vec<u64> = lock(&held).keys().copied().collect();
                        cancel_all(&held);
                        for id in ids {
                            let _ = sink.send(text(&WorkerMessage::ReturnLease {
                                lease_id: id,
                                reason: "worker stopped".into(),
                                decline_job: false,
                            })).await;
                        }
                        trainer.abort();
                        let _ = sink.send(Message::Close(None)).await;
                        return Outcome::Stopped;
                    }
                }
                _ = &mut trainer, if task_tx.is_none() => {
                    while let Ok(msg) = out_rx.try_recv() {
                        let _ = sink.send(text(&msg)).await;
                    }
                    let _ = sink.send(Message::Close(None)).await;
                    tracing::info!("stopped cleanly");
                    return Outcome::Stopped;
                }
            }
        }
    }
}

fn text<T: serde::Serialize>(msg: &T) -> Message {
    Message::Text(serde_json::to_string(msg).unwrap_or_default().into())
}

async fn train_loop(
    mut tasks: mpsc::UnboundedReceiver<LeaseTask>,
    held: HeldMap,
    out: mpsc::UnboundedSender<WorkerMessage>,
    engine: Arc<Mutex<Engine>>,
    http: reqwest::Client,
    settings: Arc<Settings>,
    token: String,
) {
    while let Some(task) = tasks.recv().await {
        let Some(state) = lock(&held).get(&task.lease_id).cloned() else {
            continue;
        };
        state.started.store(true, Ordering::SeqCst);
        let lease = task.lease_id;
        match work(&task, &state, &engine, &http, &settings, &token).await {
            Ok(Some(credited)) => tracing::info!(lease, credited, "update accepted"),
            Ok(None) => tracing::info!(lease, "lease abandoned"),
            Err(failure) => {
                let declined = matches!(failure, Failure::Declined(_));
                let reason = failure.to_string();
                if declined {
                    tracing::warn!(lease, job = task.job_id, "job declined: {reason}");
                } else {
                    tracing::warn!(lease, "lease failed: {reason}");
                }
                if lock(&held).contains_key(&lease) {
                    let _ = out.send(WorkerMessage::ReturnLease {
                        lease_id: lease,
                        reason,
                        decline_job: declined,
                    });
                }
            }
        }
        lock(&held).remove(&lease);
    }
}

/// Why a lease was not done.
#[derive(Debug)]
enum Failure {
    /// The contributor's privacy limits refuse the job's leases.
    Declined(String),
    /// Anything else.
    Failed(String),
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Declined(why) | Failure::Failed(why) => f.write_str(why),
        }
    }
}

impl From<String> for Failure {
    fn from(why: String) -> Failure {
        Failure::Failed(why)
    }
}

/// Fetches what the lease needs, trains, uploads; returns the samples
/// credited, or `None` when the lease was cancelled.
async fn work(
    task: &LeaseTask,
    state: &Arc<Held>,
    engine: &Arc<Mutex<Engine>>,
    http: &reqwest::Client,
    settings: &Settings,
    token: &str,
) -> Result<Option<u64>, Failure> {
    // Priced before anything is fetched: a lease beyond the contributor's
    // limits goes back at once, with why, and its job is declined.
    lock(engine)
        .admit(task)
        .map_err(|e| Failure::Declined(e.to_string()))?;
    let missing = lock(engine).missing(task);
    for (kind, sha) in missing {
        let url = format!("{}/api/artifacts/{sha}", settings.base);
        // The token shows the lease: a private job's data needs it.
        let response = http
            .get(&url)
            .header(WORKER_TOKEN_HEADER, token)
            .send()
            .await
            .map_err(|e| format!("fetching {sha}: {e}"))?;
        if !response.status().is_success() {
            return Err(format!("fetching {sha}: {}", response.status()).into());
        }
        let bytes = response
            .bytes()
            .await
            .map_err(|e| format!("fetching {sha}: {e}"))?;
        let engine = engine.clone();
        tokio::task::spawn_blocking(move || lock(&engine).insert(kind, &sha, &bytes))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())?;
    }
    let update = {
        let (engine, task, state) = (engine.clone(), task.clone(), state.clone());
        let rest_per_busy = 1.0 / settings.duty.clamp(0.01, 1.0) - 1.0;
        tokio::task::spawn_blocking(move || {
            let start = Instant::now();
            let clock = move || start.elapsed().as_millis() as u64;
            let mut step_started = Instant::now();
            lock(&engine).train(
                &task,
                &mut |p| {
                    state.progress.store(p.to_bits(), Ordering::Relaxed);
                    if rest_per_busy > 0.0 {
                        std::thread::sleep(step_started.elapsed().mul_f64(rest_per_busy));
                        step_started = Instant::now();
                    }
                    !state.cancel.load(Ordering::SeqCst)
                },
                &clock,
            )
        })
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?
    };
    let Some(update) = update else {
        return Ok(None);
    };
    if update.spent {
        // The ledger is on disk before the update leaves.
        let privacy = lock(engine).privacy();
        let dir = settings.data_dir.clone();
        tokio::task::spawn_blocking(move || crate::privacy_file::save(&dir, &privacy))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| format!("keeping the privacy ledger: {e}"))?;
    }
    let url = format!("{}/api/leases/{}/update", settings.base, task.lease_id);
    let response = http
        .post(&url)
        .header(WORKER_TOKEN_HEADER, token)
        .header("content-type", "application/octet-stream")
        .body(update.body)
        .send()
        .await
        .map_err(|e| format!("uploading: {e}"))?;
    let status = response.status();
    if status.is_success() {
        Ok(Some(
            response
                .json::<UpdateReceipt>()
                .await
                .map(|r| r.credited_samples)
                .unwrap_or(0),
        ))
    } else {
        let message = response
            .json::<ApiError>()
            .await
            .map(|e| e.error)
            .unwrap_or_default();
        Err(format!("update refused ({status}): {message}").into())
    }
}

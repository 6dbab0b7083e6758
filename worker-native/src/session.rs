//! The native driver of the worker's [session](oblivion_worker_engine::session):
//! a WebSocket per connection, reqwest for artifacts and updates, a
//! blocking thread for training, tokio's clock, and Ctrl-C (first: finish
//! the shard in hand and return the queued ones; second: return
//! everything now). What to do when is the session's; this file only
//! does it.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use oblivion_ml::ComputeDevice;
use oblivion_protocol::LeaseId;
use oblivion_protocol::api::ApiError;
use oblivion_protocol::wire::{
    ClientKind, DeviceInfo, Endpoint, LeaseTask, UpdateReceipt, WORKER_TOKEN_HEADER,
};
use oblivion_worker_engine::Engine;
use oblivion_worker_engine::session::{
    Action, Ended, Event, Notice, OnRefusal, Profile, Session, WorkResult,
};
use reqwest::cookie::CookieStore;
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::header;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// What the worker is and where it connects.
pub struct Settings {
    /// Every coordinator it may connect to, tried in turn when one is lost
    /// (instances sharing one database).
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
    pub _data_lock: Option<std::fs::File>,
    /// The share of its time it trains, in (0, 1]: it rests between steps
    /// for the rest.
    pub duty: f64,
}

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;
type Opening = Pin<Box<dyn Future<Output = Result<Socket, String>> + Send>>;

/// The lease being worked on, as its training thread sees it.
#[derive(Default)]
struct Held {
    progress: AtomicU32,
    cancel: AtomicBool,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// What the work on a lease needs, shared with its task.
struct Context {
    engine: Mutex<Engine>,
    http: reqwest::Client,
    cookies: Arc<reqwest::cookie::Jar>,
    key: Option<oblivion_chain::Key>,
    data_dir: std::path::PathBuf,
    duty: f64,
}

/// Works for the coordinators until stopped; an error if one refused it.
pub async fn run(mut settings: Settings) -> Result<(), String> {
    let mut engine = Engine::new(settings.device);
    engine.set_local_data(settings.local_data.take());
    // The ledger names the network by its coordinators: instances sharing
    // one database are one network, in whatever order given.
    let mut network = settings.coordinators.clone();
    network.sort();
    engine.set_privacy(network.join(","), std::mem::take(&mut settings.privacy));
    let profile = Profile {
        name: settings.name.clone(),
        client: ClientKind::Native,
        device: settings.info.clone(),
        benchmark: settings.benchmark,
        payout_address: settings.key.as_ref().map(|k| k.address()),
        max_leases: None,
        local_data: engine.local_offer(),
    };
    let cookies = Arc::new(reqwest::cookie::Jar::default());
    let context = Arc::new(Context {
        engine: Mutex::new(engine),
        http: reqwest::Client::builder()
            .cookie_provider(cookies.clone())
            .build()
            .unwrap_or_default(),
        cookies,
        key: settings.key.clone(),
        data_dir: settings.data_dir.clone(),
        duty: settings.duty,
    });
    let endpoints = settings
        .coordinators
        .iter()
        .map(|c| Endpoint::new(c))
        .collect();
    let mut session = Session::new(profile, endpoints, OnRefusal::End, rand::random());
    let started = Instant::now();
    let now = || started.elapsed().as_secs_f64() * 1000.0;

    let mut sink: Option<SplitSink<Socket, Message>> = None;
    let mut stream: Option<SplitStream<Socket>> = None;
    let mut opening: Option<Opening> = None;
    let mut held: Option<(LeaseId, Arc<Held>)> = None;
    let (done_tx, mut done_rx) = mpsc::unbounded_channel::<(LeaseId, WorkResult)>();
    // Ctrl-C, each press once: a listener made afresh in each turn of the
    // loop could miss a press between two turns.
    let (stop_tx, mut stop_rx) = mpsc::unbounded_channel::<()>();
    tokio::spawn(async move {
        while tokio::signal::ctrl_c().await.is_ok() {
            if stop_tx.send(()).is_err() {
                return;
            }
        }
    });

    loop {
        while let Some(action) = session.poll_action() {
            match action {
                Action::Connect(endpoint) => {
                    opening = Some(Box::pin(open(context.clone(), endpoint)));
                }
                Action::Send(message) => {
                    let sent = match sink.as_mut() {
                        Some(s) => s.send(text(&message)).await.is_ok(),
                        None => true,
                    };
                    if !sent {
                        (sink, stream) = (None, None);
                        session.handle(now(), Event::Closed("send failed".into()));
                    }
                }
                Action::Work {
                    task,
                    endpoint,
                    token,
                } => {
                    let state = Arc::new(Held::default());
                    held = Some((task.lease_id, state.clone()));
                    let (context, done) = (context.clone(), done_tx.clone());
                    tokio::spawn(async move {
                        let lease = task.lease_id;
                        let result = work(&task, &state, &context, &endpoint, &token).await;
                        let _ = done.send((lease, result));
                    });
                }
                Action::Cancel(lease_id) => {
                    if let Some((_, state)) = held.as_ref().filter(|(id, _)| *id == lease_id) {
                        state.cancel.store(true, Ordering::SeqCst);
                    }
                }
                Action::Close => {
                    opening = None;
                    if let Some(mut s) = sink.take() {
                        let _ = s.send(Message::Close(None)).await;
                    }
                    stream = None;
                }
                Action::Notice(notice) => log(&notice),
                Action::Ended(Ended::Stopped) => {
                    tracing::info!("stopped cleanly");
                    return Ok(());
                }
                Action::Ended(Ended::Refused(message)) => {
                    return Err(format!("the coordinator refused this worker: {message}"));
                }
            }
        }
        let due = session.poll_timeout();
        tokio::select! {
            opened = async { opening.as_mut().expect("guarded").await }, if opening.is_some() => {
                opening = None;
                match opened {
                    Ok(socket) => {
                        let (s, r) = socket.split();
                        (sink, stream) = (Some(s), Some(r));
                        session.handle(now(), Event::Opened);
                    }
                    Err(e) => session.handle(now(), Event::Closed(e)),
                }
            }
            incoming = async { stream.as_mut().expect("guarded").next().await }, if stream.is_some() => {
                match incoming {
                    Some(Ok(Message::Text(t))) => session.handle(now(), Event::Message(t.to_string())),
                    Some(Ok(Message::Close(_))) | None | Some(Err(_)) => {
                        (sink, stream) = (None, None);
                        session.handle(now(), Event::Closed("the coordinator closed the connection".into()));
                    }
                    Some(Ok(_)) => {}
                }
            }
            Some((lease_id, result)) = done_rx.recv() => {
                if held.as_ref().is_some_and(|(id, _)| *id == lease_id) {
                    held = None;
                }
                session.handle(now(), Event::Finished { lease_id, result });
            }
            () = sleep_until(started, due), if due.is_some() => {
                if let Some((id, state)) = &held {
                    session.progress(*id, f32::from_bits(state.progress.load(Ordering::Relaxed)));
                }
                session.handle_timeout(now());
            }
            Some(()) = stop_rx.recv() => {
                if session.working().is_some() {
                    tracing::info!("stopping: finishing the current shard (Ctrl-C again to return it now)");
                }
                session.handle(now(), Event::Stop { now: false });
            }
        }
    }
}

/// Sleeps until `due` ms after `started`.
async fn sleep_until(started: Instant, due: Option<f64>) {
    let at = started + Duration::from_secs_f64(due.unwrap_or(0.0).max(0.0) / 1000.0);
    tokio::time::sleep_until(at.into()).await;
}

fn log(notice: &Notice) {
    match notice {
        Notice::Connected {
            worker_id,
            endpoint,
        } => tracing::info!(%worker_id, "connected to {}", endpoint.base()),
        Notice::Leased(task) => tracing::info!(
            lease = %task.lease_id,
            job = %task.job_id,
            round = task.round,
            shard = task.shard,
            "lease received"
        ),
        Notice::Revoked { lease_id, reason } => {
            tracing::info!(lease = %lease_id, "lease revoked: {reason}")
        }
        Notice::Finished { lease_id, result } => match result {
            WorkResult::Accepted { credited } => {
                tracing::info!(lease = %lease_id, credited, "update accepted")
            }
            WorkResult::Refused(why) | WorkResult::Failed(why) => {
                tracing::warn!(lease = %lease_id, "lease failed: {why}")
            }
            WorkResult::Declined(why) => tracing::warn!(lease = %lease_id, "job declined: {why}"),
            WorkResult::Cancelled => tracing::info!(lease = %lease_id, "lease abandoned"),
        },
        Notice::Disconnected {
            reason,
            retry_in_ms,
        } => tracing::warn!("connection lost ({reason}); retrying in {retry_in_ms:.0} ms"),
        Notice::Warning(message) => tracing::warn!("coordinator: {message}"),
    }
}

/// Opens the worker socket to `endpoint`, signed in afresh first when the
/// worker has an account (sessions expire).
async fn open(context: Arc<Context>, endpoint: Endpoint) -> Result<Socket, String> {
    let url = endpoint.connect_url();
    let mut request = url
        .as_str()
        .into_client_request()
        .map_err(|e| format!("bad coordinator URL {url}: {e}"))?;
    if let Some(key) = &context.key {
        oblivion_chain::sign_in_over_http(&context.http, endpoint.base(), key).await?;
        let cookie = endpoint
            .base()
            .parse()
            .ok()
            .and_then(|base| context.cookies.cookies(&base));
        if let Some(cookie) = cookie {
            request.headers_mut().insert(header::COOKIE, cookie);
        }
    }
    let (socket, _) = tokio_tungstenite::connect_async(request)
        .await
        .map_err(|e| format!("cannot connect to {url}: {e}"))?;
    Ok(socket)
}

fn text<T: serde::Serialize>(msg: &T) -> Message {
    Message::Text(serde_json::to_string(msg).unwrap_or_default().into())
}

/// Fetches what the lease needs, trains, uploads.
async fn work(
    task: &LeaseTask,
    state: &Arc<Held>,
    context: &Arc<Context>,
    endpoint: &Endpoint,
    token: &str,
) -> WorkResult {
    // Priced before anything is fetched: a lease beyond the contributor's
    // limits goes back at once, with why, and its job is declined.
    if let Err(e) = lock(&context.engine).admit(task) {
        return WorkResult::Declined(e.to_string());
    }
    match fetch_train_upload(task, state, context, endpoint, token).await {
        Ok(result) => result,
        Err(why) => WorkResult::Failed(why),
    }
}

async fn fetch_train_upload(
    task: &LeaseTask,
    state: &Arc<Held>,
    context: &Arc<Context>,
    endpoint: &Endpoint,
    token: &str,
) -> Result<WorkResult, String> {
    let missing = lock(&context.engine).missing(task);
    for (kind, blob) in missing {
        // The token shows the lease: a private job's data needs it.
        let response = context
            .http
            .get(endpoint.artifact_url(blob))
            .header(WORKER_TOKEN_HEADER, token)
            .send()
            .await
            .map_err(|e| format!("fetching {blob}: {e}"))?;
        if !response.status().is_success() {
            return Err(format!("fetching {blob}: {}", response.status()));
        }
        let bytes = response
            .bytes()
            .await
            .map_err(|e| format!("fetching {blob}: {e}"))?;
        let context = context.clone();
        tokio::task::spawn_blocking(move || lock(&context.engine).insert(kind, blob, &bytes))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())?;
    }
    let update = {
        let (context, task, state) = (context.clone(), task.clone(), state.clone());
        let rest_per_busy = 1.0 / context.duty.clamp(0.01, 1.0) - 1.0;
        tokio::task::spawn_blocking(move || {
            let start = Instant::now();
            let clock = move || start.elapsed().as_millis() as u64;
            let mut step_started = Instant::now();
            lock(&context.engine).work(
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
    };
    let update = match update {
        Ok(Some(update)) => update,
        Ok(None) => return Ok(WorkResult::Cancelled),
        Err(e @ oblivion_worker_engine::EngineError::Privacy(_)) => {
            return Ok(WorkResult::Declined(e.to_string()));
        }
        Err(e) => return Err(e.to_string()),
    };
    if update.spent {
        // The ledger is on disk before the update leaves.
        let privacy = lock(&context.engine).privacy();
        let dir = context.data_dir.clone();
        tokio::task::spawn_blocking(move || crate::privacy_file::save(&dir, &privacy))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| format!("keeping the privacy ledger: {e}"))?;
    }
    let response = context
        .http
        .post(endpoint.update_url(task.lease_id))
        .header(WORKER_TOKEN_HEADER, token)
        .header("content-type", "application/octet-stream")
        .body(update.body)
        .send()
        .await
        .map_err(|e| format!("uploading: {e}"))?;
    let status = response.status();
    if status.is_success() {
        let credited = response
            .json::<UpdateReceipt>()
            .await
            .map(|r| r.credited_samples)
            .unwrap_or(0);
        Ok(WorkResult::Accepted { credited })
    } else {
        let message = response
            .json::<ApiError>()
            .await
            .map(|e| e.error)
            .unwrap_or_default();
        Ok(WorkResult::Refused(format!(
            "update refused ({status}): {message}"
        )))
    }
}

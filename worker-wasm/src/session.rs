//! The browser's driver of the worker's
//! [session](oblivion_worker_engine::session): pick the device, then let
//! the session say when to connect, what to send and which lease to work
//! on; train it between turns of the event loop, post its update, and
//! report everything to the page.

use std::collections::{HashMap, VecDeque};

use futures_channel::mpsc::{TryRecvError, UnboundedReceiver};
use futures_util::StreamExt;
use oblivion_ml::ComputeDevice;
use oblivion_ml::model::Architecture;
use oblivion_protocol::tab::{AdapterInfo, BackendChoice, TabReport, TabStart};
use oblivion_protocol::wire::{ClientKind, DeviceInfo, Endpoint, LeaseTask};
use oblivion_protocol::{JobId, LeaseId};
use oblivion_worker_engine::session::{
    Action, Event, Notice, OnRefusal, Profile, Session, WorkResult,
};
use oblivion_worker_engine::{Engine, EngineError, SpeedTest, benchmark, training_speed};
use web_sys::WebSocket;

use crate::gpu;
use crate::net::{self, now_ms, precise_ms, send, sleep};
use crate::page::report;
use crate::stopping;

/// Longest wait for the coordinator before looking at Stop again, ms.
const WAIT_MS: f64 = 250.0;
/// How often training yields to the event loop (Stop, revocations), ms.
const YIELD_MS: f64 = 100.0;
/// How often the page hears about progress, ms.
const PROGRESS_MS: f64 = 250.0;

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
    let mut tab = Tab {
        engine,
        preferred: device,
        measure: choice == BackendChoice::Auto && device != ComputeDevice::Cpu,
        faster: HashMap::new(),
        adapter,
    };
    let profile = Profile {
        name: start.name.clone(),
        client: ClientKind::Browser,
        device: info,
        benchmark: score,
        payout_address: start.payout_address.clone(),
        // One shard at a time: a second one would wait here while another
        // worker could be training it.
        max_leases: Some(1),
        local_data: tab.engine.local_offer(),
    };
    let mut session = Session::new(
        profile,
        vec![Endpoint::new(&start.coordinator)],
        // A tab left open keeps contributing once a refusal passes.
        OnRefusal::Retry,
        (js_sys::Math::random() * u64::MAX as f64) as u64,
    );
    let mut link: Option<Link> = None;
    let mut later: VecDeque<Action> = VecDeque::new();
    loop {
        if stopping() {
            session.handle(now_ms(), Event::Stop { now: true });
        }
        while let Some(action) = later.pop_front().or_else(|| session.poll_action()) {
            match action {
                Action::Connect(endpoint) => match net::connect(&endpoint.connect_url()).await {
                    Ok(opened) => {
                        link = Some(opened);
                        session.handle(now_ms(), Event::Opened);
                    }
                    Err(e) => session.handle(now_ms(), Event::Closed(e)),
                },
                Action::Work {
                    task,
                    endpoint,
                    token,
                } => {
                    let lease_id = task.lease_id;
                    let mut turn = Turn {
                        session: &mut session,
                        link: &mut link,
                        later: &mut later,
                    };
                    let (result, samples_per_second) =
                        tab.work(&task, &endpoint, &token, &mut turn).await;
                    let posted =
                        matches!(result, WorkResult::Accepted { .. } | WorkResult::Refused(_));
                    let error = match &result {
                        WorkResult::Refused(why) => Some(why.clone()),
                        _ => None,
                    };
                    session.handle(now_ms(), Event::Finished { lease_id, result });
                    if posted {
                        let tally = session.tally();
                        report(&TabReport::Done {
                            lease_id,
                            accepted: error.is_none(),
                            error,
                            shards_done: tally.posted(),
                            accepted_total: tally.accepted,
                            rejected_total: tally.refused,
                            credit: tally.credited,
                            samples_per_second,
                        });
                    }
                }
                Action::Ended(_) => {
                    report(&TabReport::Stopped {
                        reason: "stopped".into(),
                    });
                    return;
                }
                other => do_now(other, &mut link),
            }
        }
        // Wait for the coordinator or the clock, a quarter second at most,
        // so that a Stop is seen soon.
        let wait = session
            .poll_timeout()
            .map_or(WAIT_MS, |due| (due - now_ms()).clamp(0.0, WAIT_MS));
        let message = match link.as_mut() {
            Some((_, inbox)) => {
                let next = inbox.next();
                let timer = sleep(wait as i32);
                futures_util::pin_mut!(next, timer);
                match futures_util::future::select(next, timer).await {
                    futures_util::future::Either::Left((message, _)) => Some(message),
                    futures_util::future::Either::Right(_) => None,
                }
            }
            None => {
                sleep(wait as i32).await;
                None
            }
        };
        match message {
            Some(Some(text)) => session.handle(now_ms(), Event::Message(text)),
            Some(None) => {
                link = None;
                session.handle(
                    now_ms(),
                    Event::Closed("the coordinator closed the connection".into()),
                );
            }
            None => session.handle_timeout(now_ms()),
        }
    }
}

/// The socket to the coordinator, and its incoming messages.
type Link = (WebSocket, UnboundedReceiver<String>);

/// Does an action that needs no waiting.
fn do_now(action: Action, link: &mut Option<Link>) {
    match action {
        Action::Send(message) => {
            if let Some((ws, _)) = link.as_ref() {
                send(ws, &message);
            }
        }
        Action::Close => {
            if let Some((ws, _)) = link.take() {
                let _ = ws.close();
            }
        }
        Action::Notice(notice) => tell_page(notice),
        // The work in hand asks the session whether to go on.
        Action::Cancel(_) => {}
        Action::Connect(_) | Action::Work { .. } | Action::Ended(_) => {}
    }
}

/// What the page hears of the session.
fn tell_page(notice: Notice) {
    match notice {
        Notice::Connected { worker_id, .. } => report(&TabReport::Connected { worker_id }),
        Notice::Disconnected {
            reason,
            retry_in_ms,
        } => report(&TabReport::Disconnected {
            reason,
            retry_in_ms: retry_in_ms as u32,
        }),
        Notice::Revoked { lease_id, reason } => report(&TabReport::Revoked { lease_id, reason }),
        Notice::Warning(message) => report(&TabReport::Warning { message }),
        Notice::Leased(_) | Notice::Finished { .. } => {}
    }
}

/// The session and its connection, lent to the work in hand: between
/// training steps it takes in the coordinator's messages and the clock,
/// and does what needs no waiting; the rest waits for the main loop.
struct Turn<'a> {
    session: &'a mut Session,
    link: &'a mut Option<Link>,
    later: &'a mut VecDeque<Action>,
}

impl Turn<'_> {
    /// Takes in what happened since the last step; whether the work on
    /// `lease_id` goes on.
    fn step(&mut self, lease_id: LeaseId, progress: f32) -> bool {
        let now = now_ms();
        self.session.progress(lease_id, progress);
        while let Some((_, inbox)) = self.link.as_mut() {
            match inbox.try_recv() {
                Ok(text) => self.session.handle(now, Event::Message(text)),
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Closed) => {
                    *self.link = None;
                    self.session.handle(
                        now,
                        Event::Closed("the coordinator closed the connection".into()),
                    );
                }
            }
        }
        if stopping() {
            self.session.handle(now, Event::Stop { now: true });
        }
        if self.session.poll_timeout().is_some_and(|due| now >= due) {
            self.session.handle_timeout(now);
        }
        while let Some(action) = self.session.poll_action() {
            // In order: once one action must wait, all after it do.
            match action {
                Action::Send(_) | Action::Close | Action::Notice(_) | Action::Cancel(_)
                    if self.later.is_empty() =>
                {
                    do_now(action, self.link)
                }
                other => self.later.push_back(other),
            }
        }
        self.session.should_continue(lease_id)
    }
}

/// The tab across connections: its engine and its device choices.
struct Tab {
    engine: Engine,
    /// The device shards train on unless one does not fit it.
    preferred: ComputeDevice,
    /// Time both devices on each new model and train on the faster (the
    /// page left the choice to the tab, and WebGPU started).
    measure: bool,
    /// The faster device for each model timed so far.
    faster: HashMap<String, ComputeDevice>,
    adapter: Option<AdapterInfo>,
}

impl Tab {
    /// Fetches what `task` names, trains it, posts the update: how that
    /// ended, and the samples per second it trained at.
    async fn work(
        &mut self,
        task: &LeaseTask,
        endpoint: &Endpoint,
        token: &str,
        turn: &mut Turn<'_>,
    ) -> (WorkResult, f64) {
        let lease_id = task.lease_id;
        // Priced before anything is fetched: a job beyond the
        // contributor's limits is declined at once.
        if let Err(e) = self.engine.admit(task) {
            return (self.declined(task.job_id, &e), 0.0);
        }
        for (kind, blob) in self.engine.missing(task) {
            let bytes = match net::fetch_bytes(&endpoint.artifact_url(blob), token).await {
                Ok(b) => b,
                Err(e) => return (WorkResult::Failed(e), 0.0),
            };
            if let Err(e) = self.engine.insert(kind, blob, &bytes) {
                return (WorkResult::Failed(e.to_string()), 0.0);
            }
        }
        let mut device = self.preferred;
        if self.measure && device != ComputeDevice::Cpu {
            device = self.faster_for(task).await;
        }
        if device != ComputeDevice::Cpu
            && let Some(adapter) = &self.adapter
        {
            let arch =
                Architecture::new(task.model.clone(), task.input_shape.clone(), task.classes);
            if let Ok(arch) = arch
                && let Err(reason) = gpu::fits(adapter, &arch, task.batch_size() as usize)
            {
                report(&TabReport::Fallback {
                    reason,
                    shard_only: true,
                });
                device = ComputeDevice::Cpu;
            }
        }
        let planned = self.engine.planned_samples(task).unwrap_or(0) as f64;
        loop {
            self.engine.set_device(device);
            report(&TabReport::Lease {
                lease_id,
                job_id: task.job_id,
                round: task.round,
                shard: task.shard,
                backend: backend_name(device).into(),
            });
            let started = precise_ms();
            let result = {
                let (mut last_report, mut last_yield) = (0.0, now_ms());
                let mut progress = async |p: f32| -> bool {
                    let now = now_ms();
                    if now - last_yield >= YIELD_MS {
                        last_yield = now;
                        sleep(0).await;
                    }
                    if !turn.step(lease_id, p) {
                        return false;
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
                self.engine
                    .work_async(task, &mut progress, &|| precise_ms() as u64)
                    .await
            };
            let update = match result {
                Ok(Some(update)) => update,
                Ok(None) => return (WorkResult::Cancelled, 0.0),
                Err(e @ EngineError::Privacy(_)) => {
                    return (self.declined(task.job_id, &e), 0.0);
                }
                Err(e) if device != ComputeDevice::Cpu => {
                    report(&TabReport::Fallback {
                        reason: format!("WebGPU failed on a shard ({e}); training on the CPU"),
                        shard_only: false,
                    });
                    self.preferred = ComputeDevice::Cpu;
                    device = ComputeDevice::Cpu;
                    continue;
                }
                Err(e) => {
                    report(&TabReport::Warning {
                        message: format!("lease {lease_id} failed: {e}"),
                    });
                    return (WorkResult::Failed(e.to_string()), 0.0);
                }
            };
            if update.spent {
                // The page keeps the ledger; it hears of the spend first.
                report(&TabReport::Spent {
                    ledger: self.engine.privacy().ledger,
                });
            }
            let seconds = (precise_ms() - started).max(1.0) / 1000.0;
            let speed = update.samples as f64 / seconds;
            let result =
                match net::post_update(&endpoint.update_url(lease_id), token, &update.body).await {
                    Ok(receipt) => WorkResult::Accepted {
                        credited: receipt["credited_samples"].as_u64().unwrap_or(0),
                    },
                    Err(e) => WorkResult::Refused(e),
                };
            return (result, speed);
        }
    }

    /// The contributor's privacy limits refuse the job: the page hears
    /// why, and the session returns the lease and declines the job.
    fn declined(&self, job_id: JobId, why: &EngineError) -> WorkResult {
        report(&TabReport::Declined {
            job_id,
            reason: why.to_string(),
        });
        WorkResult::Declined(why.to_string())
    }

    /// The faster device for `task`'s model: timed on both the first time the
    /// model comes, then remembered. A device that fails the timing loses.
    async fn faster_for(&mut self, task: &LeaseTask) -> ComputeDevice {
        let key = format!(
            "{:?} on {:?} at batch {}",
            task.model,
            task.input_shape,
            task.batch_size()
        );
        if let Some(&device) = self.faster.get(&key) {
            return device;
        }
        let test = SpeedTest {
            model: task.model.clone(),
            input_shape: task.input_shape.clone(),
            classes: task.classes,
            batch: task.batch_size().max(1) as usize,
            warmup: 2,
            steps: 4,
        };
        let cpu = training_speed(&test, ComputeDevice::Cpu, &precise_ms)
            .await
            .unwrap_or(0.0);
        let gpu = training_speed(&test, self.preferred, &precise_ms)
            .await
            .unwrap_or(0.0);
        let device = if gpu > cpu {
            self.preferred
        } else {
            ComputeDevice::Cpu
        };
        report(&TabReport::DeviceChoice {
            model: key.clone(),
            cpu,
            gpu,
            chosen: backend_name(device).into(),
        });
        self.faster.insert(key, device);
        device
    }
}

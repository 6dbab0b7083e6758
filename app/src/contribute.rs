//! Contribute: this tab trains shards for the network in a pool of Web
//! Workers, one per core unless the contributor sets fewer. Each pool
//! worker is a worker of the network of its own (its connection, its
//! lease, its engine): the simplest way to use every core, as wasm threads
//! would need cross-origin isolation and a nightly toolchain. The first
//! holds what there is one of: the WebGPU device and the contributor's
//! local data with its privacy ledger; the others train on the CPU, with
//! the worker's CPU build, as does the first when there is no GPU to use.

use leptos::prelude::*;
use oblivion_protocol::tab::{
    AdapterInfo, BackendChoice, TabCommand, TabReport, TabStart, WorkerBuild,
};
use oblivion_protocol::{JobId, LeaseId};
use wasm_bindgen::JsCast;
use wasm_bindgen::prelude::*;
use web_sys::{MessageEvent, Worker, WorkerOptions, WorkerType};

use crate::account::use_account;
use crate::privacy::PrivacyCard;
use crate::settings::{load_setting, save_setting};

/// The browser worker's entry points in `dist/` (built by Trunk): the
/// build with WebGPU, and the one for the CPU alone.
const WEBGPU_WORKER_URL: &str = "/oblivion-worker-wasm_loader.js";
pub(crate) const CPU_WORKER_URL: &str = "/oblivion-worker-cpu_loader.js";
const NAME_KEY: &str = "oblivion.name";
const BACKEND_KEY: &str = "oblivion.backend";
const POOL_KEY: &str = "oblivion.pool";
/// Most pool workers a tab starts, however many cores the browser reports:
/// each holds its own engine and model (tens of MB).
const MAX_POOL: u32 = 16;

/// The cores the browser reports (at least 1, at most [`MAX_POOL`]).
fn cores() -> u32 {
    web_sys::window()
        .map(|w| w.navigator().hardware_concurrency() as u32)
        .unwrap_or(1)
        .clamp(1, MAX_POOL)
}

/// One pool worker, as the page shows it.
#[derive(Clone, Default)]
struct PoolWorker {
    status: String,
    lease: Option<(LeaseId, JobId, u32, u32)>,
    progress: f32,
    samples_per_second: f64,
    shards_done: u64,
    accepted: u64,
    rejected: u64,
    credit: u64,
}

/// Everything the page shows about its workers.
#[derive(Clone, Default)]
struct TabState {
    /// The tab's status while no pool runs.
    status: String,
    /// The first pool worker's device.
    backend: String,
    device_name: String,
    device_detail: String,
    cpu_reason: Option<String>,
    benchmark: f64,
    /// The pool, the first worker first.
    pool: Vec<PoolWorker>,
    notice: Option<String>,
    log: Vec<String>,
    /// The local files picked for federated jobs, by name.
    local_files: Option<String>,
    /// What the worker made of them: a summary, or why they are unusable.
    local_data: Option<Result<String, String>>,
    /// Each model's timing on both devices, and the choice, in words.
    choices: Vec<String>,
}

impl TabState {
    fn note(&mut self, line: String) {
        self.log.insert(0, line);
        self.log.truncate(8);
    }

    /// The tab's status: training while any pool worker trains, else the
    /// first one's.
    fn status(&self) -> String {
        if self.pool.iter().any(|w| w.status == "training") {
            return "training".into();
        }
        self.pool
            .first()
            .map_or_else(|| self.status.clone(), |w| w.status.clone())
    }

    /// A figure summed over the pool.
    fn total<T: std::iter::Sum<T>>(&self, figure: impl Fn(&PoolWorker) -> T) -> T {
        self.pool.iter().map(figure).sum()
    }
}

fn random_name() -> String {
    format!("tab-{:04x}", (js_sys::Math::random() * 65536.0) as u32)
}

fn post(worker: &Worker, command: &TabCommand) {
    if let Ok(text) = serde_json::to_string(command) {
        let _ = worker.post_message(&JsValue::from_str(&text));
    }
}

/// The Contribute page.
#[component]
pub fn Contribute() -> impl IntoView {
    let state = RwSignal::new(TabState {
        status: "idle".into(),
        ..TabState::default()
    });
    let running = RwSignal::new(false);
    let account = use_account();
    let name = load_setting(NAME_KEY).unwrap_or_else(|| {
        let n = random_name();
        save_setting(NAME_KEY, &n);
        n
    });
    let display_name = name.clone();
    let backend_choice = RwSignal::new(load_setting(BACKEND_KEY).unwrap_or_else(|| "auto".into()));
    let pool_size = RwSignal::new(
        load_setting(POOL_KEY)
            .and_then(|n| n.parse::<u32>().ok())
            .unwrap_or_else(cores)
            .clamp(1, MAX_POOL),
    );
    let workers: StoredValue<Vec<Worker>, LocalStorage> = StoredValue::new_local(Vec::new());
    // Set after a crash on the GPU: the next worker starts on the CPU.
    let cpu_reason: StoredValue<Option<String>> = StoredValue::new(None);
    // Bumped when the worker must be replaced (it panicked).
    let restart = RwSignal::new(0u32);
    // The contributor's files for federated jobs: handed to the worker
    // (within the browser) at each start, never uploaded.
    let local_files: StoredValue<Option<js_sys::Array>, LocalStorage> =
        StoredValue::new_local(None);
    // The contributor's privacy limits and ledger, kept in this browser.
    let privacy = RwSignal::new(crate::privacy::load());

    // The page's WebGPU adapter (or why none), asked for once.
    let adapter: StoredValue<Option<Result<AdapterInfo, String>>> = StoredValue::new(None);
    // Bumped by each start and stop: a start still waiting for the adapter
    // when the pool was stopped or started anew does nothing.
    let generation = StoredValue::new(0u32);

    let spawn_pool = move |adapter: Result<AdapterInfo, String>| {
        let size = pool_size.get_untracked() as usize;
        let choice = match backend_choice.get_untracked().as_str() {
            "cpu" => BackendChoice::Cpu,
            "webgpu" => BackendChoice::Gpu,
            _ => BackendChoice::Auto,
        };
        let mut pool = Vec::with_capacity(size);
        for index in 0..size {
            let crashed = cpu_reason.get_value();
            let (url, backend, reason) =
                match WorkerBuild::choose(choice, index, crashed.as_deref(), &adapter) {
                    WorkerBuild::WebGpu => (WEBGPU_WORKER_URL, choice, None),
                    WorkerBuild::Cpu(reason) => (CPU_WORKER_URL, BackendChoice::Cpu, Some(reason)),
                };
            let options = WorkerOptions::new();
            options.set_type(WorkerType::Module);
            let Ok(w) = Worker::new_with_options(url, &options) else {
                break;
            };
            let lead = index == 0;
            let start = TabStart {
                coordinator: web_sys::window()
                    .and_then(|w| w.location().origin().ok())
                    .unwrap_or_default(),
                name: if lead {
                    name.clone()
                } else {
                    format!("{name}-{}", index + 1)
                },
                // The signed-in account, proven by the session the worker's
                // connection carries (its cookie).
                payout_address: account
                    .session
                    .with_untracked(|s| s.as_ref().map(|s| s.address.clone())),
                backend,
                cpu_reason: reason,
                adapter: adapter.clone().ok(),
                // Only the first holds the local data, so only it spends.
                privacy: if lead {
                    privacy.get_untracked()
                } else {
                    Default::default()
                },
            };
            let handle = w.clone();
            let files = local_files.get_value().filter(|_| lead);
            let on_message = Closure::<dyn FnMut(MessageEvent)>::new(move |e: MessageEvent| {
                let Some(report) = e
                    .data()
                    .as_string()
                    .and_then(|t| serde_json::from_str::<TabReport>(&t).ok())
                else {
                    return;
                };
                if matches!(report, TabReport::Ready)
                    && let Some(files) = &files
                {
                    let _ = handle.post_message(files);
                }
                let pool = Pool {
                    state,
                    privacy,
                    cpu_reason,
                    restart,
                };
                pool.on_report(index, report, &handle, &start);
            });
            w.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
            on_message.forget();
            pool.push(w);
        }
        if pool.is_empty() {
            state.update(|s| s.status = "this browser cannot start a Web Worker".into());
            running.set(false);
            return;
        }
        state.update(|s| {
            s.pool = vec![
                PoolWorker {
                    status: "loading the worker".into(),
                    ..PoolWorker::default()
                };
                pool.len()
            ];
        });
        workers.set_value(pool);
    };
    let launch = move || {
        generation.update_value(|g| *g += 1);
        let started = generation.get_value();
        let spawn_pool = spawn_pool.clone();
        wasm_bindgen_futures::spawn_local(async move {
            let offered = match adapter.get_value() {
                Some(known) => known,
                None => {
                    let probed = crate::adapter::probe().await;
                    adapter.set_value(Some(probed.clone()));
                    probed
                }
            };
            if generation.get_value() == started && running.get_untracked() {
                spawn_pool(offered);
            }
        });
    };
    // Ends every pool worker.
    let stop_all = move || {
        generation.update_value(|g| *g += 1);
        for w in workers.get_value() {
            post(&w, &TabCommand::Stop);
            w.terminate();
        }
        workers.set_value(Vec::new());
    };

    // Replaces a running worker: after a crash, or when the local files
    // change (a new choice applies at once).
    let relaunch = {
        let launch = launch.clone();
        move || {
            if running.get_untracked() {
                stop_all();
                launch();
            }
        }
    };
    Effect::new({
        let relaunch = relaunch.clone();
        move |_| {
            if restart.get() > 0 {
                relaunch();
            }
        }
    });
    let on_local_files = {
        let relaunch = relaunch.clone();
        move |ev: leptos::ev::Event| {
            let Some(input) = ev
                .target()
                .and_then(|t| t.dyn_into::<web_sys::HtmlInputElement>().ok())
            else {
                return;
            };
            let Some(list) = input.files() else { return };
            let files: Vec<web_sys::File> =
                (0..list.length()).filter_map(|i| list.get(i)).collect();
            let relaunch = relaunch.clone();
            leptos::task::spawn_local(async move {
                let array = js_sys::Array::new();
                let mut names = Vec::new();
                for file in &files {
                    match wasm_bindgen_futures::JsFuture::from(file.array_buffer()).await {
                        Ok(buffer) => {
                            array.push(&js_sys::Uint8Array::new(&buffer));
                            names.push(file.name());
                        }
                        Err(_) => {
                            state.update(|s| {
                                s.local_data =
                                    Some(Err(format!("{} could not be read", file.name())))
                            });
                            return;
                        }
                    }
                }
                let picked = (!names.is_empty()).then(|| names.join(" + "));
                local_files.set_value(picked.is_some().then_some(array));
                state.update(|s| {
                    s.local_files = picked;
                    s.local_data = None;
                });
                relaunch();
            });
        }
    };
    let forget_local = {
        let relaunch = relaunch.clone();
        move |_| {
            local_files.set_value(None);
            state.update(|s| {
                s.local_files = None;
                s.local_data = None;
            });
            relaunch();
        }
    };

    let toggle = move |_| {
        if running.get_untracked() {
            running.set(false);
            stop_all();
            state.update(|s| {
                s.status = "stopped".into();
                s.pool.clear();
            });
        } else {
            running.set(true);
            launch();
        }
    };

    let on_backend = move |ev| {
        let value = event_target_value(&ev);
        save_setting(BACKEND_KEY, &value);
        backend_choice.set(value);
    };
    let on_pool_size = {
        let relaunch = relaunch.clone();
        move |ev| {
            let Ok(size) = event_target_value(&ev).parse::<u32>() else {
                return;
            };
            save_setting(POOL_KEY, &size.to_string());
            pool_size.set(size.clamp(1, MAX_POOL));
            relaunch();
        }
    };

    view! {
        <section class="card hero">
            <div>
                <h1>"Contribute"</h1>
                <p class="muted">"This tab trains shards of the network's jobs on your GPU (WebGPU) and CPU cores, in background workers. Closing the tab costs only the shards in hand."</p>
            </div>
            <div class="hero-actions">
                <button class="primary big" data-testid="toggle" on:click=toggle>
                    {move || if running.get() { "Stop" } else { "Start" }}
                </button>
                <span class="pill" data-testid="status">{move || state.with(TabState::status)}</span>
            </div>
        </section>
        {move || state.with(|s| s.notice.clone()).map(|n| view! { <div class="notice" data-testid="notice">{n}</div> })}
        <div class="grid">
            <section class="card">
                <h2>"Device"</h2>
                <p class="big-number">
                    <span class="badge" data-testid="backend">{move || {
                        let b = state.with(|s| s.backend.clone());
                        match b.as_str() { "webgpu" => "WebGPU".to_string(), "cpu" => "CPU".to_string(), _ => "—".to_string() }
                    }}</span>
                </p>
                <p data-testid="device-name">{move || state.with(|s| s.device_name.clone())}</p>
                <p class="muted small" data-testid="device-detail">{move || state.with(|s| s.device_detail.clone())}</p>
                {move || state.with(|s| s.cpu_reason.clone()).map(|r| view! { <p class="warn small" data-testid="cpu-reason">"On the CPU: " {r}</p> })}
                <p class="muted small">"Benchmark: " {move || format!("{:.0} samples/s", state.with(|s| s.benchmark))}</p>
                <label class="field">
                    <span>"Backend"</span>
                    <select data-testid="backend-choice" on:change=on_backend prop:value=move || backend_choice.get()>
                        <option value="auto">"The faster, as measured"</option>
                        <option value="cpu">"CPU only"</option>
                        <option value="webgpu">"WebGPU, even a software one"</option>
                    </select>
                </label>
                <label class="field">
                    <span>"Workers"</span>
                    <select data-testid="pool-size" on:change=on_pool_size prop:value=move || pool_size.get().to_string()>
                        {(1..=cores().max(pool_size.get_untracked())).map(|n| view! {
                            <option value=n.to_string()>{format!("{n} of {} cores", cores())}</option>
                        }).collect::<Vec<_>>()}
                    </select>
                </label>
                <ul class="log small" data-testid="device-choices">
                    {move || state.with(|s| s.choices.iter().map(|c| view! { <li>{c.clone()}</li> }).collect::<Vec<_>>())}
                </ul>
            </section>
            <section class="card">
                <h2>"Current shards"</h2>
                <ul class="pool" data-testid="pool">
                    {move || state.with(|s| s.pool.iter().enumerate().map(|(i, w)| {
                        let lease = match w.lease {
                            Some((_, job, round, shard)) => format!("job {job} · round {round} · shard {shard}"),
                            None => "none".into(),
                        };
                        let width = format!("{:.1}%", w.progress * 100.0);
                        view! {
                            <li data-testid=format!("pool-worker-{}", i + 1)>
                                <span class="muted small">{format!("Worker {} · {} · {} accepted", i + 1, w.status, w.accepted)}</span>
                                <p data-testid="lease">{lease}</p>
                                <div class="progress"><div class="bar" style:width=width></div></div>
                            </li>
                        }
                    }).collect::<Vec<_>>())}
                </ul>
                <p class="big-number" data-testid="speed">{move || format!("{:.0}", state.with(|s| s.total(|w| w.samples_per_second)))}<span class="unit">" samples/s"</span></p>
            </section>
            <section class="card">
                <h2>"Your contribution"</h2>
                <dl class="stats">
                    <div><dt>"Shards done"</dt><dd data-testid="shards-done">{move || state.with(|s| s.total(|w| w.shards_done))}</dd></div>
                    <div><dt>"Accepted"</dt><dd data-testid="accepted">{move || state.with(|s| s.total(|w| w.accepted))}</dd></div>
                    <div><dt>"Rejected"</dt><dd data-testid="rejected">{move || state.with(|s| s.total(|w| w.rejected))}</dd></div>
                    <div><dt>"Credit"</dt><dd data-testid="credit">{move || state.with(|s| s.total(|w| w.credit))}<span class="unit">" samples"</span></dd></div>
                </dl>
            </section>
            <section class="card">
                <h2>"Payout"</h2>
                {move || match account.address() {
                    Some(a) => view! {
                        <p>"Rewards go to " <code data-testid="payout">{a}</code></p>
                        <p class="muted small">"Your signed-in wallet: signing in proved it is yours. It applies from the next Start."</p>
                    }.into_any(),
                    None => view! {
                        <p data-testid="payout">"Sign in with your wallet to be paid for this tab's work; without it, you contribute unpaid."</p>
                    }.into_any(),
                }}
                <p class="muted small">"Worker name: " {display_name}</p>
            </section>
        </div>
        <section class="card" data-testid="local-data-card">
            <h2>"Your data (federated jobs)"</h2>
            <p class="muted small">"Some jobs train on data their contributors hold. Pick a CSV file (a header, a label column), or an IDX images file and its labels: it is read in this tab and never sent anywhere. Only clipped, noised changes to the model leave, for jobs whose columns match."</p>
            <label class="field">
                <span>"Local files"</span>
                <input type="file" multiple=true accept=".csv,.gz,.idx,.idx1-ubyte,.idx3-ubyte,application/octet-stream,text/csv" data-testid="local-data" on:change=on_local_files/>
            </label>
            {move || {
                let forget = forget_local.clone();
                state.with(|s| s.local_files.clone()).map(move |names| view! {
                    <p>"Picked: " <code>{names}</code> " " <button type="button" data-testid="forget-local" on:click=forget>"Forget"</button></p>
                })
            }}
            {move || state.with(|s| s.local_data.clone()).map(|r| match r {
                Ok(summary) => view! { <p data-testid="local-summary">{summary}</p> }.into_any(),
                Err(e) => view! { <p class="warn" data-testid="local-error">{e}</p> }.into_any(),
            })}
        </section>
        <PrivacyCard privacy/>
        <section class="card">
            <h2>"Activity"</h2>
            <ul class="log" data-testid="log">
                {move || state.with(|s| s.log.iter().map(|l| view! { <li>{l.clone()}</li> }).collect::<Vec<_>>())}
            </ul>
        </section>
    }
}

/// What a pool worker's reports update.
#[derive(Clone, Copy)]
struct Pool {
    state: RwSignal<TabState>,
    privacy: RwSignal<oblivion_protocol::tab::ContributorPrivacy>,
    cpu_reason: StoredValue<Option<String>>,
    restart: RwSignal<u32>,
}

impl Pool {
    /// Runs `change` on pool worker `index`, if the pool still has it.
    fn update(&self, index: usize, change: impl FnOnce(&mut PoolWorker, &mut Vec<String>)) {
        self.state.update(|s| {
            let mut notes = Vec::new();
            if let Some(w) = s.pool.get_mut(index) {
                change(w, &mut notes);
            }
            for note in notes {
                s.note(if s.pool.len() > 1 {
                    format!("worker {}: {note}", index + 1)
                } else {
                    note
                });
            }
        });
    }

    /// Updates the page from pool worker `index`'s report; restarts the
    /// pool when one crashed.
    fn on_report(&self, index: usize, report: TabReport, worker: &Worker, start: &TabStart) {
        let lead = index == 0;
        let state = self.state;
        match report {
            TabReport::Ready => post(worker, &TabCommand::Start(start.clone())),
            TabReport::Device {
                device,
                cpu_reason,
                benchmark,
                ..
            } => {
                self.update(index, |w, _| w.status = "connecting".into());
                if lead {
                    state.update(|s| {
                        s.backend = device.backend;
                        s.device_name = device.name;
                        s.device_detail = device.detail;
                        s.cpu_reason = cpu_reason;
                        s.benchmark = benchmark;
                    });
                }
            }
            TabReport::DeviceChoice {
                model,
                cpu,
                gpu,
                chosen,
            } => state.update(|s| {
                let chosen = if chosen == "webgpu" { "WebGPU" } else { "CPU" };
                s.choices.push(format!(
                    "{model}: CPU {cpu:.0}, WebGPU {gpu:.0} samples/s: on the {chosen}"
                ));
            }),
            TabReport::Connected { worker_id } => self.update(index, |w, notes| {
                w.status = "waiting for work".into();
                notes.push(format!("connected as worker {worker_id}"));
            }),
            TabReport::Disconnected {
                reason,
                retry_in_ms,
            } => self.update(index, |w, notes| {
                w.status = format!("reconnecting in {} s", retry_in_ms / 1000);
                w.lease = None;
                notes.push(format!("disconnected: {reason}"));
            }),
            TabReport::Lease {
                lease_id,
                job_id,
                round,
                shard,
                backend,
            } => {
                self.update(index, |w, _| {
                    w.status = "training".into();
                    w.lease = Some((lease_id, job_id, round, shard));
                    w.progress = 0.0;
                });
                if lead {
                    state.update(|s| s.backend = backend);
                }
            }
            TabReport::Progress {
                progress,
                samples_per_second,
                ..
            } => self.update(index, |w, _| {
                w.progress = progress;
                w.samples_per_second = samples_per_second;
            }),
            TabReport::Done {
                lease_id,
                accepted,
                error,
                shards_done,
                accepted_total,
                rejected_total,
                credit,
                samples_per_second,
            } => self.update(index, |w, notes| {
                w.status = "waiting for work".into();
                w.progress = 1.0;
                w.lease = None;
                w.shards_done = shards_done;
                w.accepted = accepted_total;
                w.rejected = rejected_total;
                w.credit = credit;
                w.samples_per_second = samples_per_second;
                notes.push(match (accepted, error) {
                    (true, _) => format!("lease {lease_id}: update accepted"),
                    (false, e) => format!("lease {lease_id}: {}", e.unwrap_or_default()),
                });
            }),
            TabReport::Revoked { lease_id, reason } => self.update(index, |w, notes| {
                w.lease = None;
                notes.push(format!("lease {lease_id} revoked: {reason}"));
            }),
            TabReport::Fallback { reason, shard_only } => state.update(|s| {
                if lead && !shard_only {
                    s.backend = "cpu".into();
                    s.cpu_reason = Some(reason.clone());
                }
                s.notice = Some(reason.clone());
                s.note(reason);
            }),
            TabReport::Warning { message } => self.update(index, |_, notes| notes.push(message)),
            TabReport::Stopped { reason } => self.update(index, |w, notes| {
                w.status = reason.clone();
                w.lease = None;
                notes.push(reason);
            }),
            TabReport::Panic { message } => {
                // The module is unusable after a panic: start the pool
                // anew, on the CPU if the GPU was in use.
                let on_gpu = lead && state.with_untracked(|s| s.backend == "webgpu");
                if on_gpu {
                    self.cpu_reason
                        .set_value(Some(format!("WebGPU crashed ({message})")));
                }
                state.update(|s| {
                    s.notice = Some(format!(
                        "The worker crashed: {message}. Restarting{}.",
                        if on_gpu { " on the CPU" } else { "" }
                    ));
                });
                if self.restart.get_untracked() < 5 {
                    self.restart.update(|n| *n += 1);
                }
            }
            TabReport::LocalData { offer, error } => state.update(|s| {
                s.local_data = match (offer, error) {
                    (Some(o), _) => Some(Ok(format!(
                        "{} samples of shape {:?}, {} classes: offered to federated jobs",
                        o.samples, o.shape, o.classes
                    ))),
                    (None, e) => Some(Err(e.unwrap_or_else(|| "unreadable".into()))),
                };
            }),
            TabReport::Spent { ledger } => crate::privacy::spent(self.privacy, ledger),
            TabReport::Declined { job_id, reason } => self.update(index, |_, notes| {
                notes.push(format!("job {job_id} declined: {reason}"))
            }),
            // Answers to commands this page does not send.
            TabReport::BenchResult { .. } | TabReport::Prediction { .. } => {}
        }
    }
}

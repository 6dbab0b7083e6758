//! New job: a form over every field of the job spec, with the examples
//! preloaded, datasets built in or uploaded, and the server's validation.
//! Where the coordinator has a chain, a reward makes the job paid: it is
//! submitted, then funded at once from the creator's wallet.

use leptos::prelude::*;
use leptos::task::spawn_local;
use leptos_router::hooks::{use_navigate, use_query_map};
use oblivion_chain::calls::{self, U256};
use oblivion_protocol::JobId;
use oblivion_protocol::aggregation::AggregationRule;
use oblivion_protocol::api::{ApiError, ChainInfo, Created, JobView, ModelView, UploadedDataset};
use oblivion_protocol::{DatasetSpec, JobSpec, LocalWork, ModelSpec, OptimizerSpec, TrainingSpec};
use serde_json::{Value, json};
use wasm_bindgen::JsCast;

use crate::account::use_account;
use crate::api;
use crate::chain::{self, TxState, TxStatus, use_chain};

/// Hours to settle a paid job in, unless the creator says otherwise.
const DEFAULT_DEADLINE_HOURS: &str = "24";

/// The example specs shipped with the project.
const EXAMPLES: [(&str, &str); 4] = [
    (
        "mnist-mlp",
        include_str!("../../examples/jobs/mnist-mlp.json"),
    ),
    (
        "mnist-cnn",
        include_str!("../../examples/jobs/mnist-cnn.json"),
    ),
    (
        "iris-mlp",
        include_str!("../../examples/jobs/iris-mlp.json"),
    ),
    (
        "breast-cancer-mlp",
        include_str!("../../examples/jobs/breast-cancer-mlp.json"),
    ),
];

/// The form's fields, as typed.
#[derive(Clone, Default)]
struct Form {
    name: String,
    model: String,
    hidden: String,
    channels: String,
    kernel_size: String,
    source: String,
    /// `federated`: contributors train on their own files and the data
    /// chosen here only validates; anything else: the network trains on it.
    placement: String,
    builtin: String,
    csv_sha: String,
    images_sha: String,
    labels_sha: String,
    rounds: String,
    shards: String,
    batch: String,
    work: String,
    work_amount: String,
    optimizer: String,
    learning_rate: String,
    momentum: String,
    validation_split: String,
    seed: String,
    target: String,
    norm_bound: String,
    /// The aggregation rule's kind (`fed_trimmed_avg`, ...).
    aggregation: String,
    /// Krum's assumed number of malicious updates.
    byzantine: String,
    /// The share of shards trained twice; empty: none.
    replicas: String,
    /// The share of a round's slots that closes it; empty: no quorum.
    quorum_share: String,
    /// Seconds a round waits before a quorum may close it.
    quorum_after: String,
    /// The ε the job may spend; empty: no differential privacy.
    epsilon: String,
    /// The bound updates are clipped to under differential privacy.
    clip_norm: String,
    visibility: String,
    /// The reward in ETH as typed; empty: an unpaid job.
    reward: String,
    deadline_hours: String,
    /// The registered model the job starts from (fine-tuning); empty:
    /// fresh weights.
    init: String,
}

fn list(values: &[u32]) -> String {
    values
        .iter()
        .map(u32::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

impl Form {
    fn from_spec(spec: &TrainingSpec) -> Form {
        let (model, hidden, channels, kernel) = match &spec.model {
            ModelSpec::Mlp { hidden } => ("mlp", list(hidden), "8, 16".into(), "5".into()),
            ModelSpec::Cnn {
                channels,
                kernel_size,
                hidden,
            } => ("cnn", list(hidden), list(channels), kernel_size.to_string()),
        };
        let mut form = Form {
            name: spec.name.clone(),
            model: model.into(),
            hidden,
            channels,
            kernel_size: kernel,
            rounds: spec.rounds.to_string(),
            shards: spec.shards_per_round.to_string(),
            batch: spec.batch_size.to_string(),
            validation_split: spec.validation_split.to_string(),
            seed: spec.seed.to_string(),
            target: spec
                .target_accuracy
                .map(|t| t.to_string())
                .unwrap_or_default(),
            norm_bound: spec
                .update_norm_bound
                .map(|b| b.to_string())
                .unwrap_or_default(),
            aggregation: spec.aggregation.rule.kind().into(),
            byzantine: match spec.aggregation.rule {
                AggregationRule::Krum { byzantine, .. } => byzantine.to_string(),
                _ => "1".into(),
            },
            replicas: spec
                .replication
                .as_ref()
                .map_or(String::new(), |r| r.fraction.to_string()),
            quorum_share: spec
                .quorum
                .as_ref()
                .map_or(String::new(), |q| q.share.to_string()),
            quorum_after: spec
                .quorum
                .as_ref()
                .map_or("60".into(), |q| q.after_secs.to_string()),
            epsilon: spec
                .privacy
                .as_ref()
                .and_then(|p| p.target_epsilon)
                .map(|e| e.to_string())
                .unwrap_or_default(),
            clip_norm: spec
                .privacy
                .as_ref()
                .map_or("1".into(), |p| p.clip_norm.to_string()),
            visibility: spec.visibility.as_str().into(),
            builtin: "mnist".into(),
            reward: spec
                .reward
                .as_ref()
                .map(|r| calls::format_ether(calls::u256(&r.amount)))
                .unwrap_or_default(),
            deadline_hours: spec
                .reward
                .as_ref()
                .map_or(DEFAULT_DEADLINE_HOURS.into(), |r| {
                    r.deadline_hours.to_string()
                }),
            ..Form::default()
        };
        let data = match &spec.dataset {
            DatasetSpec::Federated { validation } => {
                form.placement = "federated".into();
                validation.as_ref()
            }
            other => {
                form.placement = "coordinator".into();
                other
            }
        };
        match data {
            DatasetSpec::Federated { .. } => {}
            DatasetSpec::Builtin(b) => {
                form.source = "builtin".into();
                form.builtin = b.clone();
            }
            DatasetSpec::Csv(sha) => {
                form.source = "csv".into();
                form.csv_sha = sha.to_string();
            }
            DatasetSpec::Idx { images, labels } => {
                form.source = "idx".into();
                form.images_sha = images.to_string();
                form.labels_sha = labels.to_string();
            }
        }
        let work = match (spec.local_epochs, spec.local_steps) {
            (_, Some(s)) => LocalWork::Steps(s),
            (Some(e), None) => LocalWork::Epochs(e),
            (None, None) => LocalWork::Epochs(1),
        };
        (form.work, form.work_amount) = match work {
            LocalWork::Epochs(e) => ("epochs".into(), e.to_string()),
            LocalWork::Steps(s) => ("steps".into(), s.to_string()),
        };
        (form.optimizer, form.learning_rate, form.momentum) = match &spec.optimizer {
            OptimizerSpec::Adam { learning_rate } => {
                ("adam".into(), learning_rate.to_string(), "0.9".into())
            }
            OptimizerSpec::Sgd {
                learning_rate,
                momentum,
            } => (
                "sgd".into(),
                learning_rate.to_string(),
                momentum.to_string(),
            ),
        };
        form
    }

    /// The spec as JSON. Whatever does not parse as a number is sent as
    /// typed, so the coordinator names the field that is wrong.
    fn to_json(&self) -> Value {
        fn num(s: &str) -> Value {
            let t = s.trim();
            t.parse::<i64>()
                .map(Value::from)
                .or_else(|_| t.parse::<f64>().map(Value::from))
                .unwrap_or_else(|_| Value::from(t))
        }
        fn nums(s: &str) -> Value {
            Value::Array(
                s.split(',')
                    .map(str::trim)
                    .filter(|p| !p.is_empty())
                    .map(num)
                    .collect(),
            )
        }
        let model = if self.model == "cnn" {
            json!({"kind": "cnn", "channels": nums(&self.channels), "kernel_size": num(&self.kernel_size), "hidden": nums(&self.hidden)})
        } else {
            json!({"kind": "mlp", "hidden": nums(&self.hidden)})
        };
        let dataset = match self.source.as_str() {
            "csv" => json!({"csv": self.csv_sha}),
            "idx" => json!({"idx": {"images": self.images_sha, "labels": self.labels_sha}}),
            _ => json!({"builtin": self.builtin}),
        };
        let dataset = if self.placement == "federated" {
            json!({"federated": {"validation": dataset}})
        } else {
            dataset
        };
        let optimizer = if self.optimizer == "sgd" {
            json!({"kind": "sgd", "learning_rate": num(&self.learning_rate), "momentum": num(&self.momentum)})
        } else {
            json!({"kind": "adam", "learning_rate": num(&self.learning_rate)})
        };
        let mut spec = json!({
            "name": self.name,
            "model": model,
            "dataset": dataset,
            "rounds": num(&self.rounds),
            "shards_per_round": num(&self.shards),
            "batch_size": num(&self.batch),
            "optimizer": optimizer,
            "validation_split": num(&self.validation_split),
            "seed": num(&self.seed),
        });
        if !self.norm_bound.trim().is_empty() {
            spec["update_norm_bound"] = num(&self.norm_bound);
        }
        if !self.replicas.trim().is_empty() {
            spec["replication"] = json!({"fraction": num(&self.replicas)});
        }
        if !self.quorum_share.trim().is_empty() {
            spec["quorum"] =
                json!({"share": num(&self.quorum_share), "after_secs": num(&self.quorum_after)});
        }
        if !self.epsilon.trim().is_empty() {
            spec["privacy"] =
                json!({"clip_norm": num(&self.clip_norm), "target_epsilon": num(&self.epsilon)});
        }
        match self.aggregation.as_str() {
            "fed_trimmed_avg" => {}
            "krum" => {
                spec["aggregation"] =
                    json!({"rule": {"kind": "krum", "byzantine": num(&self.byzantine)}});
            }
            kind => spec["aggregation"] = json!({"rule": {"kind": kind}}),
        }
        let key = if self.work == "steps" {
            "local_steps"
        } else {
            "local_epochs"
        };
        spec[key] = num(&self.work_amount);
        if !self.target.trim().is_empty() {
            spec["target_accuracy"] = num(&self.target);
        }
        if self.visibility == "private" {
            spec["visibility"] = json!("private");
        }
        if !self.init.trim().is_empty() {
            spec["init"] = json!({"model": num(&self.init)});
        }
        if !self.reward.trim().is_empty() {
            // Wei as a decimal string; what is not an amount goes as typed.
            let amount = calls::parse_ether(&self.reward)
                .map_or_else(|_| self.reward.trim().to_string(), |w| w.to_string());
            spec["reward"] = json!({"amount": amount, "deadline_hours": num(&self.deadline_hours)});
        }
        spec
    }

    /// The reward in wei: `None` for an unpaid job, an error to show for an
    /// amount that cannot be paid.
    fn reward_wei(&self) -> Result<Option<U256>, ApiError> {
        let typed = self.reward.trim();
        if typed.is_empty() {
            return Ok(None);
        }
        let field = Some("reward.amount".to_string());
        match calls::parse_ether(typed) {
            Ok(w) if w.is_zero() => Err(ApiError {
                error: "A reward must be more than 0 ETH; leave it empty for an unpaid job.".into(),
                field,
            }),
            Ok(w) => Ok(Some(w)),
            Err(e) => Err(ApiError {
                error: format!("Reward: {}", e.reason),
                field,
            }),
        }
    }
}

/// The form that fine-tunes model `id`: its job's spec with the model's
/// weights to start from, or an example with its architecture.
async fn fine_tune_form(id: &str) -> Option<Form> {
    let model: ModelView = api::get(&format!("/api/models/{id}")).await.ok()?;
    let mut form = match model.job {
        Some(job) => {
            let job: JobView = api::get(&format!("/api/jobs/{job}")).await.ok()?;
            Form::from_spec(job.spec.training()?)
        }
        None => {
            let mut form = example(if model.input_shape.len() == 3 {
                "mnist-cnn"
            } else {
                "iris-mlp"
            });
            let (kind, hidden, channels) = match &model.architecture {
                ModelSpec::Mlp { hidden } => ("mlp", list(hidden), form.channels.clone()),
                ModelSpec::Cnn {
                    channels, hidden, ..
                } => ("cnn", list(hidden), list(channels)),
            };
            (form.model, form.hidden, form.channels) = (kind.into(), hidden, channels);
            form
        }
    };
    form.name = format!("{} (fine-tuned)", model.name);
    form.init = model.id.to_string();
    Some(form)
}

fn example(name: &str) -> Form {
    EXAMPLES
        .iter()
        .find(|(n, _)| *n == name)
        .and_then(|(_, text)| JobSpec::from_json(text).ok())
        .and_then(|spec| spec.training().map(Form::from_spec))
        .unwrap_or_default()
}

fn selected_file(ev: &leptos::ev::Event) -> Option<web_sys::File> {
    ev.target()?
        .dyn_into::<web_sys::HtmlInputElement>()
        .ok()?
        .files()?
        .get(0)
}

/// Submits a paid job and funds it from the wallet of `me`: the wallet is
/// readied and its balance checked first (so that no job is left waiting
/// for a deposit the account cannot make), then the job is created and its
/// deposit sent. The job's id once funded; on failure the reason is in
/// `error` or `tx`, and a job created but not funded in `unfunded`.
async fn submit_paid(
    body: &str,
    wei: U256,
    info: &ChainInfo,
    me: &str,
    error: RwSignal<Option<ApiError>>,
    tx: RwSignal<TxState>,
    unfunded: RwSignal<Option<JobId>>,
) -> Option<JobId> {
    tx.set(TxState::Wallet);
    let (wallet, from) = match chain::prepare(info, Some(me), wei).await {
        Ok(ready) => ready,
        Err(state) => {
            tx.set(state);
            return None;
        }
    };
    tx.set(TxState::Idle);
    let id = match api::post_json::<Created>("/api/jobs", body).await {
        Ok(created) => created.id,
        Err(e) => {
            error.set(Some(e));
            return None;
        }
    };
    unfunded.set(Some(id));
    let job = match api::get::<JobView>(&format!("/api/jobs/{id}")).await {
        Ok(job) => job,
        Err(e) => {
            tx.set(TxState::Failed(format!(
                "Cannot read the new job: {}",
                e.error
            )));
            return None;
        }
    };
    let (Some(payment), Some(reward)) = (job.payment, job.spec.reward().cloned()) else {
        tx.set(TxState::Failed(
            "The coordinator created the job without a payment to fund.".into(),
        ));
        return None;
    };
    let data = match chain::fund_call(info, id, &payment.spec_hash, reward.deadline_hours) {
        Ok(data) => data,
        Err(e) => {
            tx.set(TxState::Failed(e));
            return None;
        }
    };
    let amount = calls::u256(&payment.amount);
    if !chain::submit(info, &wallet, &from, &data, amount, tx).await {
        return None;
    }
    unfunded.set(None);
    Some(id)
}

/// A text input bound to one form field.
#[component]
fn TextField(
    form: RwSignal<Form>,
    label: &'static str,
    name: &'static str,
    get: fn(&Form) -> String,
    set: fn(&mut Form, String),
    #[prop(optional)] hint: &'static str,
    error_field: Signal<Option<String>>,
) -> impl IntoView {
    let invalid = move || {
        error_field
            .get()
            .is_some_and(|f| f == name || f.starts_with(&format!("{name}.")))
    };
    view! {
        <label class="field" class:invalid=invalid>
            <span>{label}</span>
            <input type="text" name=name data-testid=format!("field-{name}")
                prop:value=move || form.with(get)
                on:input=move |ev| form.update(|f| set(f, event_target_value(&ev)))/>
            {(!hint.is_empty()).then(|| view! { <small class="muted">{hint}</small> })}
        </label>
    }
}

/// The New job page.
#[component]
pub fn NewJob() -> impl IntoView {
    let form = RwSignal::new(example("mnist-mlp"));
    // `?init=N`: fine-tune model N, starting from its job's spec when it
    // has one, else from its architecture.
    let query = use_query_map();
    if let Some(init) = query.with_untracked(|q| q.get("init")) {
        spawn_local(async move {
            if let Some(fine_tune) = fine_tune_form(&init).await {
                form.set(fine_tune);
            }
        });
    }
    let error = RwSignal::new(None::<ApiError>);
    let busy = RwSignal::new(false);
    let upload_note = RwSignal::new(None::<String>);
    let error_field =
        Signal::derive(move || error.with(|e| e.as_ref().and_then(|e| e.field.clone())));
    let navigate = use_navigate();
    let account = use_account();
    let chain = use_chain();
    let tx = RwSignal::new(TxState::Idle);
    // A paid job created but not funded: its id.
    let unfunded = RwSignal::new(None::<JobId>);

    let upload = move |ev: leptos::ev::Event, target: &'static str| {
        let Some(file) = selected_file(&ev) else {
            return;
        };
        upload_note.set(Some(format!("uploading {}…", file.name())));
        spawn_local(async move {
            match api::post_file::<UploadedDataset>("/api/datasets", &file).await {
                Ok(up) => {
                    upload_note.set(Some(format!(
                        "{}: {} ({} rows), sha256 {}…",
                        file.name(),
                        up.kind,
                        up.rows,
                        up.sha256.short(12)
                    )));
                    form.update(|f| match target {
                        "csv" => f.csv_sha = up.sha256.to_string(),
                        "images" => f.images_sha = up.sha256.to_string(),
                        _ => f.labels_sha = up.sha256.to_string(),
                    });
                }
                Err(e) => upload_note.set(Some(format!("upload failed: {}", e.error))),
            }
        });
    };

    let submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        if busy.get_untracked() {
            return;
        }
        error.set(None);
        tx.set(TxState::Idle);
        unfunded.set(None);
        let mut typed = form.get_untracked();
        let chain_info = chain.info.get_untracked();
        if chain_info.is_none() {
            typed.reward.clear();
        }
        let reward = match typed.reward_wei() {
            Ok(r) => r,
            Err(e) => {
                error.set(Some(e));
                return;
            }
        };
        let me = account.address_untracked();
        let paid = match (reward, chain_info) {
            (Some(wei), Some(info)) => match me {
                Some(me) => Some((wei, info, me)),
                None => {
                    error.set(Some(ApiError {
                        error: "Sign in to submit a paid job: its deposit comes from your wallet."
                            .into(),
                        field: None,
                    }));
                    return;
                }
            },
            _ => None,
        };
        busy.set(true);
        let body = typed.to_json().to_string();
        let navigate = navigate.clone();
        spawn_local(async move {
            let opened = match paid {
                None => api::post_json::<Created>("/api/jobs", &body)
                    .await
                    .map(|created| created.id)
                    .map_err(|e| error.set(Some(e)))
                    .ok(),
                Some((wei, info, me)) => {
                    submit_paid(&body, wei, &info, &me, error, tx, unfunded).await
                }
            };
            busy.set(false);
            if let Some(id) = opened {
                navigate(&format!("/jobs/{id}"), Default::default());
            }
        });
    };

    let is = move |field: fn(&Form) -> &String, value: &'static str| {
        move || form.with(|f| field(f) == value)
    };

    view! {
        <section class="card hero">
            <div>
                <h1>"New job"</h1>
                <p class="muted">"Describe the training: model, data, rounds. Nothing here is code: the network runs only these declared models."</p>
                {move || form.with(|f| (!f.init.is_empty()).then(|| view! {
                    <p class="notice" data-testid="fine-tuning">{format!("Fine-tuning model #{}: the job starts from its weights, so its architecture stays as it is.", f.init)}</p>
                }))}
            </div>
            <label class="field inline">
                <span>"Start from an example"</span>
                <select data-testid="example" on:change=move |ev| { form.set(example(&event_target_value(&ev))); error.set(None); }>
                    {EXAMPLES.iter().map(|(n, _)| view! { <option value=*n>{*n}</option> }).collect::<Vec<_>>()}
                </select>
            </label>
        </section>
        <form class="card form" on:submit=submit novalidate=true>
            {move || error.get().map(|e| view! {
                <div class="notice error" role="alert" data-testid="form-error">
                    {e.error.clone()}
                </div>
            })}
            <fieldset>
                <legend>"Job"</legend>
                <TextField form label="Name" name="name" get=|f| f.name.clone() set=|f, v| f.name = v error_field/>
                <label class="field">
                    <span>"Who may see it"</span>
                    <select data-testid="field-visibility" prop:value=move || form.with(|f| f.visibility.clone()) on:change=move |ev| form.update(|f| f.visibility = event_target_value(&ev))>
                        <option value="public">"Public: anyone sees its progress and downloads the model"</option>
                        <option value="private">"Private: only you see its spec, data and model"</option>
                    </select>
                </label>
            </fieldset>
            <fieldset>
                <legend>"Model"</legend>
                <label class="field" class:invalid=move || error_field.get().is_some_and(|f| f.starts_with("model"))>
                    <span>"Kind"</span>
                    <select data-testid="field-model" prop:value=move || form.with(|f| f.model.clone()) on:change=move |ev| form.update(|f| f.model = event_target_value(&ev))>
                        <option value="mlp">"MLP (dense layers)"</option>
                        <option value="cnn">"CNN (two conv + pool, then dense)"</option>
                    </select>
                </label>
                <TextField form label="Hidden layer widths" name="model.hidden" get=|f| f.hidden.clone() set=|f, v| f.hidden = v hint="comma-separated, e.g. 128, 64" error_field/>
                <Show when=is(|f| &f.model, "cnn")>
                    <TextField form label="Conv channels" name="model.channels" get=|f| f.channels.clone() set=|f, v| f.channels = v hint="two numbers, e.g. 8, 16" error_field/>
                    <TextField form label="Kernel size" name="model.kernel_size" get=|f| f.kernel_size.clone() set=|f, v| f.kernel_size = v error_field/>
                </Show>
            </fieldset>
            <fieldset>
                <legend>"Data"</legend>
                <label class="field">
                    <span>"Who holds the training data"</span>
                    <select data-testid="field-placement" prop:value=move || form.with(|f| f.placement.clone()) on:change=move |ev| form.update(|f| f.placement = event_target_value(&ev))>
                        <option value="coordinator">"The network (shards of the data below)"</option>
                        <option value="federated">"Contributors (federated)"</option>
                    </select>
                </label>
                <Show when=is(|f| &f.placement, "federated")>
                    <p class="muted small" data-testid="federated-note">"Each contributor trains on a file of its own, which never leaves its tab; the data below only validates each round. Contributors pick a file of the same columns (or image size) on their Contribute page and send only clipped, noised updates, so a privacy budget is required."</p>
                </Show>
                <label class="field" class:invalid=move || error_field.get().is_some_and(|f| f.starts_with("dataset"))>
                    <span>{move || if form.with(|f| f.placement == "federated") { "Validation data" } else { "Source" }}</span>
                    <select data-testid="field-source" prop:value=move || form.with(|f| f.source.clone()) on:change=move |ev| form.update(|f| f.source = event_target_value(&ev))>
                        <option value="builtin">"Built-in dataset"</option>
                        <option value="csv">"Upload a CSV file"</option>
                        <option value="idx">"Upload IDX images + labels"</option>
                    </select>
                </label>
                <Show when=is(|f| &f.source, "builtin")>
                    <label class="field">
                        <span>"Dataset"</span>
                        <select data-testid="field-builtin" prop:value=move || form.with(|f| f.builtin.clone()) on:change=move |ev| form.update(|f| f.builtin = event_target_value(&ev))>
                            {oblivion_protocol::spec::BUILTIN_DATASETS.iter().map(|n| view! { <option value=*n>{*n}</option> }).collect::<Vec<_>>()}
                        </select>
                    </label>
                </Show>
                <Show when=is(|f| &f.source, "csv")>
                    <label class="field">
                        <span>"CSV file (last column is the label)"</span>
                        <input type="file" accept=".csv,.gz" data-testid="upload-csv" on:change=move |ev| upload(ev, "csv")/>
                    </label>
                </Show>
                <Show when=is(|f| &f.source, "idx")>
                    <label class="field"><span>"IDX images"</span><input type="file" data-testid="upload-images" on:change=move |ev| upload(ev, "images")/></label>
                    <label class="field"><span>"IDX labels"</span><input type="file" data-testid="upload-labels" on:change=move |ev| upload(ev, "labels")/></label>
                </Show>
                {move || upload_note.get().map(|n| view! { <p class="muted small" data-testid="upload-note">{n}</p> })}
                <Show when=move || form.with(|f| f.placement != "federated")>
                <TextField form label="Validation split" name="validation_split" get=|f| f.validation_split.clone() set=|f, v| f.validation_split = v hint="share held out to evaluate each round, 0 to 0.5" error_field/>
                </Show>
            </fieldset>
            <fieldset>
                <legend>"Training"</legend>
                <TextField form label="Rounds" name="rounds" get=|f| f.rounds.clone() set=|f, v| f.rounds = v error_field/>
                <TextField form label="Shards per round" name="shards_per_round" get=|f| f.shards.clone() set=|f, v| f.shards = v error_field/>
                <TextField form label="Batch size" name="batch_size" get=|f| f.batch.clone() set=|f, v| f.batch = v error_field/>
                <label class="field">
                    <span>"Local work per shard"</span>
                    <select prop:value=move || form.with(|f| f.work.clone()) on:change=move |ev| form.update(|f| f.work = event_target_value(&ev))>
                        <option value="epochs">"epochs"</option>
                        <option value="steps">"steps"</option>
                    </select>
                </label>
                <TextField form label="Epochs or steps" name="local_epochs" get=|f| f.work_amount.clone() set=|f, v| f.work_amount = v error_field/>
                <label class="field" class:invalid=move || error_field.get().is_some_and(|f| f.starts_with("optimizer"))>
                    <span>"Optimizer"</span>
                    <select prop:value=move || form.with(|f| f.optimizer.clone()) on:change=move |ev| form.update(|f| f.optimizer = event_target_value(&ev))>
                        <option value="adam">"Adam"</option>
                        <option value="sgd">"SGD"</option>
                    </select>
                </label>
                <TextField form label="Learning rate" name="optimizer.learning_rate" get=|f| f.learning_rate.clone() set=|f, v| f.learning_rate = v error_field/>
                <Show when=is(|f| &f.optimizer, "sgd")>
                    <TextField form label="Momentum" name="optimizer.momentum" get=|f| f.momentum.clone() set=|f, v| f.momentum = v error_field/>
                </Show>
                <TextField form label="Seed" name="seed" get=|f| f.seed.clone() set=|f, v| f.seed = v error_field/>
                <TextField form label="Stop at accuracy" name="target_accuracy" get=|f| f.target.clone() set=|f, v| f.target = v hint="optional, 0 to 1" error_field/>
                <label class="field" class:invalid=move || error_field.get().is_some_and(|f| f.starts_with("aggregation"))>
                    <span>"Aggregation"</span>
                    <select data-testid="field-aggregation" prop:value=move || form.with(|f| f.aggregation.clone()) on:change=move |ev| form.update(|f| f.aggregation = event_target_value(&ev))>
                        <option value="fed_trimmed_avg">"Trimmed mean (robust, default)"</option>
                        <option value="fed_median">"Coordinate-wise median (robust)"</option>
                        <option value="krum">"Krum (robust)"</option>
                        <option value="fed_avg">"Weighted mean (not robust)"</option>
                    </select>
                </label>
                <Show when=is(|f| &f.aggregation, "krum")>
                    <TextField form label="Assumed malicious updates" name="aggregation.rule.byzantine" get=|f| f.byzantine.clone() set=|f, v| f.byzantine = v error_field/>
                </Show>
                <TextField form label="Replicated shards" name="replication.fraction" get=|f| f.replicas.clone() set=|f, v| f.replicas = v hint="optional, 0 to 1: the share of shards a second worker trains too, to check the first; a paid job checks every shard unless set" error_field/>
                <TextField form label="Close rounds on a quorum" name="quorum.share" get=|f| f.quorum_share.clone() set=|f, v| f.quorum_share = v hint="optional, 0 to 1: once a round has waited, it closes with this share of its shards in, without the stragglers (a federated job's contributors may never finish)" error_field/>
                <Show when=move || form.with(|f| !f.quorum_share.trim().is_empty())>
                    <TextField form label="Wait before a quorum (seconds)" name="quorum.after_secs" get=|f| f.quorum_after.clone() set=|f, v| f.quorum_after = v hint="from the round's first lease" error_field/>
                </Show>
                <TextField form label="Privacy budget (ε)" name="privacy.target_epsilon" get=|f| f.epsilon.clone() set=|f, v| f.epsilon = v hint="optional: differential privacy at δ = 1e-5; smaller is more private and noisier" error_field/>
                <Show when=move || form.with(|f| !f.epsilon.trim().is_empty())>
                    <TextField form label="Clip updates to" name="privacy.clip_norm" get=|f| f.clip_norm.clone() set=|f, v| f.clip_norm = v hint="the L2 bound every update is clipped to" error_field/>
                </Show>
                <TextField form label="Fixed update norm bound" name="update_norm_bound" get=|f| f.norm_bound.clone() set=|f, v| f.norm_bound = v hint="optional: larger updates are rejected on arrival; each round also bounds updates relative to their median" error_field/>
            </fieldset>
            {move || chain.info.get().map(|info| view! {
                <fieldset data-testid="reward">
                    <legend>"Reward"</legend>
                    <TextField form label="Reward (ETH)" name="reward.amount" get=|f| f.reward.clone() set=|f, v| f.reward = v hint="paid to contributors for verified work; empty: an unpaid job" error_field/>
                    <TextField form label="Deadline (hours)" name="reward.deadline_hours" get=|f| f.deadline_hours.clone() set=|f, v| f.deadline_hours = v hint="after funding: the job must finish by then, with time for each round; unfinished, its deposit can be refunded after two settlement graces" error_field/>
                    <p class="muted small">{format!("Deposited into the escrow on {} from your wallet when you submit; the job opens once the deposit has {} confirmation{}.", chain::chain_name(info.chain_id), info.confirmations, if info.confirmations == 1 { "" } else { "s" })}</p>
                </fieldset>
            })}
            <details>
                <summary>"Spec as JSON"</summary>
                <pre class="code" data-testid="spec-json">{move || serde_json::to_string_pretty(&form.with(Form::to_json)).unwrap_or_default()}</pre>
            </details>
            <TxStatus state=tx/>
            {move || unfunded.get().map(|id| view! {
                <p class="small" data-testid="unfunded">
                    {format!("Job #{id} was created but is not funded yet: it waits until it is. ")}
                    <a href=format!("/jobs/{id}") data-testid="unfunded-link">{format!("Open job #{id} to fund it again.")}</a>
                </p>
            })}
            <div class="actions">
                {move || account.address().is_none().then(|| view! {
                    <p class="muted small" data-testid="sign-in-hint">"Sign in with your wallet to submit: the job will be yours."</p>
                })}
                <button class="primary" type="submit" data-testid="submit" disabled=move || busy.get()>
                    {move || match (busy.get(), tx.get()) {
                        (false, _) => "Submit job",
                        (true, TxState::Wallet) => "Check your wallet…",
                        (true, TxState::Pending(_)) => "Funding…",
                        (true, _) => "Submitting…",
                    }}
                </button>
            </div>
        </form>
    }
}

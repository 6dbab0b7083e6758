//! One model: its card, curves and lineage, its downloads, "Run
//! inference" and "Fine-tune", and a sandbox that runs it in this tab.

use leptos::prelude::*;
use leptos::task::spawn_local;
use leptos_router::hooks::{use_navigate, use_params_map};
use oblivion_protocol::ModelId;
use oblivion_protocol::api::{Created, ModelView};

use crate::account::short;
use crate::api;
use crate::chart::{LineChart, Series};
use crate::market::ListingCard;
use crate::models::architecture_words;
use crate::sandbox::Sandbox;
use crate::verify::VerifyCard;

/// The model page.
#[component]
pub fn ModelPage() -> impl IntoView {
    let params = use_params_map();
    let id = Memo::new(move |_| {
        params.with(|p| p.get("id").and_then(|s| s.parse::<u64>().ok().map(ModelId)))
    });
    let model = RwSignal::new(None::<ModelView>);
    let error = RwSignal::new(None::<String>);
    // Bumped to ask for the model again (a purchase or a listing seen).
    let version = RwSignal::new(0u32);
    let account = crate::account::use_account();
    Effect::new(move |_| {
        let Some(id) = id.get() else { return };
        version.track();
        // Who may see it, and what they may do, changes with the account.
        account.address();
        spawn_local(async move {
            match api::get::<ModelView>(&format!("/api/models/{id}")).await {
                Ok(m) => {
                    model.set(Some(m));
                    error.set(None);
                }
                Err(e) => error.set(Some(e.error)),
            }
        });
    });
    let reload = Callback::new(move |()| version.update(|v| *v += 1));
    let curves = move |accuracy: bool| {
        Signal::derive(move || {
            model.with(|m| {
                let h = m.as_ref().map(|m| m.history.clone()).unwrap_or_default();
                vec![Series {
                    label: if accuracy {
                        "validation accuracy"
                    } else {
                        "validation loss"
                    },
                    class: if accuracy { "s3" } else { "s1" },
                    points: h
                        .iter()
                        .map(|r| (r.round as f64, if accuracy { r.accuracy } else { r.loss }))
                        .collect(),
                }]
            })
        })
    };
    view! {
        {move || error.get().map(|e| view! { <div class="notice error">{e}</div> })}
        {move || model.get().map(|m| {
            let id = m.id;
            let weights = move |format: &str| format!("/api/models/{id}/weights?format={format}");
            let lineage = m.job.map(|job| view! {
                <p class="muted small">"Trained by job " <a href=format!("/jobs/{job}")>{format!("#{job}")}</a>
                    {format!(" in {} rounds on {}", m.rounds, m.dataset)}
                    {m.epsilon.map(|e| format!(", spending ε = {e:.2}"))}</p>
            });
            view! {
                <section class="card hero">
                    <div>
                        <h1 data-testid="model-name">{format!("#{id} {}", m.name)}</h1>
                        <p class="muted">
                            {format!("{} · inputs {:?} · {} classes", architecture_words(&m), m.input_shape, m.classes)}
                            {m.owner.clone().map(|o| view! { " · by " <a href=format!("/accounts/{o}") data-testid="model-owner">{short(&o)}</a> })}
                            {(m.visibility == oblivion_protocol::Visibility::Private).then_some(" · private")}
                        </p>
                        {lineage}
                        <p class="muted small mono" data-testid="weights-sha">{format!("weights sha256 {}", m.weights_sha256)}</p>
                    </div>
                    {m.readable.then(|| view! {
                        <div class="hero-actions">
                            <a class="button" data-testid="fine-tune" href=format!("/jobs/new?init={id}")>"Fine-tune"</a>
                        </div>
                    })}
                </section>
                <div class="grid">
                    <section class="card">
                        <h2>"Accuracy"</h2>
                        <p class="big-number" data-testid="model-accuracy">{m.accuracy.map_or("—".into(), |a| format!("{:.2}%", a * 100.0))}</p>
                        <p class="muted small">{if m.job.is_some() { "On its job's validation split." } else { "Registered weights: not measured here." }}</p>
                    </section>
                    <section class="card">
                        <LineChart title="Accuracy" series=curves(true) percent=true/>
                    </section>
                    <section class="card">
                        <LineChart title="Loss" series=curves(false)/>
                    </section>
                    {m.readable.then(|| view! {
                        <section class="card">
                            <h2>"Download"</h2>
                            <div class="downloads">
                                <a class="button" data-testid="model-onnx" href=weights("onnx") download="">"ONNX"</a>
                                <a class="button" data-testid="model-safetensors" href=weights("safetensors") download="">"safetensors"</a>
                                <a class="button" data-testid="model-burn" href=weights("burn") download="">"burn"</a>
                            </div>
                        </section>
                    })}
                </div>
                <ListingCard model=m.clone() reload=reload/>
                {m.readable.then(|| view! {
                    <Sandbox model=m.clone()/>
                    <RunInference model=m.clone()/>
                    <VerifyCard model=m.clone()/>
                })}
                {(!m.contributors.is_empty()).then(|| view! {
                    <section class="card">
                        <h2>"Trained by"</h2>
                        <div class="table-wrap">
                        <table class="table" data-testid="lineage">
                            <thead><tr><th>"Worker"</th><th>"Kind"</th><th>"Updates"</th><th>"Verified samples"</th></tr></thead>
                            <tbody>
                                {m.contributors.iter().map(|c| view! {
                                    <tr><td>{format!("#{} {}", c.worker_id, c.name)}</td><td>{format!("{:?}", c.client).to_lowercase()}</td><td>{c.updates}</td><td>{c.samples}</td></tr>
                                }).collect::<Vec<_>>()}
                            </tbody>
                        </table>
                        </div>
                    </section>
                })}
            }
        })}
    }
}

/// "Run inference": the model over the rows its job held out, or over a
/// built-in dataset, as a job the network runs.
#[component]
fn RunInference(model: ModelView) -> impl IntoView {
    let inputs = RwSignal::new(if model.job.is_some() {
        "held_out".to_string()
    } else {
        "builtin".into()
    });
    let builtin = RwSignal::new(if model.input_shape.len() == 3 {
        "mnist".to_string()
    } else {
        "iris".into()
    });
    let shards = RwSignal::new("4".to_string());
    let error = RwSignal::new(None::<String>);
    let navigate = use_navigate();
    let (id, job, name) = (model.id, model.job, model.name.clone());
    let submit = move |_| {
        let inputs = match (inputs.get_untracked().as_str(), job) {
            ("held_out", Some(job)) => serde_json::json!({"held_out_by": job}),
            _ => serde_json::json!({"builtin": builtin.get_untracked()}),
        };
        let spec = serde_json::json!({
            "task": "inference",
            "name": format!("{name} outputs"),
            "model": {"model": id},
            "inputs": inputs,
            "shards": shards.get_untracked().trim().parse::<u32>().unwrap_or(4),
        });
        let navigate = navigate.clone();
        spawn_local(async move {
            match api::post_json::<Created>("/api/jobs", &spec.to_string()).await {
                Ok(created) => navigate(&format!("/jobs/{}", created.id), Default::default()),
                Err(e) => error.set(Some(e.error)),
            }
        });
    };
    view! {
        <section class="card">
            <h2>"Run inference"</h2>
            <p class="muted small">"The network's workers run the model over the rows, shard by shard; each shard is checked by recomputing a random sample of its rows."</p>
            <div class="toolbar">
                <select data-testid="inference-inputs" prop:value=move || inputs.get() on:change=move |ev| inputs.set(event_target_value(&ev))>
                    {job.map(|_| view! { <option value="held_out">"The rows its job held out"</option> })}
                    <option value="builtin">"A built-in dataset"</option>
                </select>
                <Show when=move || inputs.get() == "builtin">
                    <select prop:value=move || builtin.get() on:change=move |ev| builtin.set(event_target_value(&ev))>
                        {["mnist", "iris", "wine", "breast_cancer"].into_iter().map(|n| view! { <option value=n>{n}</option> }).collect::<Vec<_>>()}
                    </select>
                </Show>
                <label>"Shards " <input type="number" min="1" max="256" prop:value=move || shards.get() on:input=move |ev| shards.set(event_target_value(&ev))/></label>
                <button class="primary" data-testid="run-inference" on:click=submit>"Run inference"</button>
            </div>
            {move || error.get().map(|e| view! { <p class="error" data-testid="inference-error">{e}</p> })}
        </section>
    }
}

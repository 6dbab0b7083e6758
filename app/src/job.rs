//! One job: live curves, the shard grid, contributors, downloads.

use leptos::prelude::*;
use leptos::task::spawn_local;
use leptos_router::hooks::use_params_map;
use oblivion_protocol::api::{JobView, ShardView};

use crate::account::{short, use_account};
use crate::api;
use crate::chart::{LineChart, Series};
use crate::jobs::{StatusBadge, job_progress};
use crate::live::{use_live, when_changed};

fn shard_class(s: &ShardView) -> String {
    let mut class = format!("shard {}", s.state);
    if s.attempts > 1 {
        class.push_str(" reissued");
    }
    class
}

/// The shard grid of the current round.
#[component]
fn ShardGrid(shards: Signal<Vec<ShardView>>) -> impl IntoView {
    view! {
        <div class="shard-grid" data-testid="shard-grid">
            {move || shards.get().into_iter().map(|s| {
                let title = format!(
                    "shard {}: {}{}{}",
                    s.shard,
                    s.state,
                    s.worker_id.map(|w| format!(" by worker {w}")).unwrap_or_default(),
                    if s.attempts > 1 { format!(", issued {} times", s.attempts) } else { String::new() },
                );
                view! {
                    <div class=shard_class(&s) title=title.clone() aria-label=title>
                        <div class="fill" style:height=format!("{:.0}%", s.progress * 100.0)></div>
                        <span>{s.shard}</span>
                    </div>
                }
            }).collect::<Vec<_>>()}
        </div>
        <div class="legends">
            <span class="legend-box pending">"pending"</span>
            <span class="legend-box leased">"leased"</span>
            <span class="legend-box done">"done"</span>
            <span class="legend-box reissued">"re-issued"</span>
        </div>
    }
}

/// The job page.
#[component]
pub fn JobPage() -> impl IntoView {
    let params = use_params_map();
    let id = Memo::new(move |_| params.with(|p| p.get("id").and_then(|v| v.parse::<u64>().ok())));
    let job = RwSignal::new(None::<JobView>);
    let error = RwSignal::new(None::<String>);
    let live = use_live();
    // Refetch when stored state changes (a round ends, the job ends).
    let key = move || {
        let id = id.get();
        let state = live.snapshot.with(|s| {
            s.as_ref().map(|s| {
                let round = id.and_then(|id| s.jobs.iter().find(|j| j.id == id).map(|j| j.round));
                (s.jobs_version, round)
            })
        });
        (id, state)
    };
    when_changed(key, move |&(id, _)| {
        let Some(id) = id else {
            error.set(Some("not a job id".into()));
            return;
        };
        spawn_local(async move {
            match api::get::<JobView>(&format!("/api/jobs/{id}")).await {
                Ok(v) => {
                    job.set(Some(v));
                    error.set(None);
                }
                Err(e) => error.set(Some(e.error)),
            }
        });
    });
    // Live shards while running, else the stored ones.
    let shards = Signal::derive(move || {
        let live_shards = id.get().and_then(|id| {
            live.snapshot.with(|s| {
                s.as_ref()
                    .and_then(|s| s.jobs.iter().find(|j| j.id == id).map(|j| j.shards.clone()))
            })
        });
        live_shards.unwrap_or_else(|| {
            job.with(|j| j.as_ref().map(|j| j.shards.clone()).unwrap_or_default())
        })
    });
    let loss = Signal::derive(move || {
        job.with(|j| {
            let h = j.as_ref().map(|j| j.history.clone()).unwrap_or_default();
            vec![
                Series {
                    label: "validation loss",
                    class: "s1",
                    points: h.iter().map(|r| (r.round as f64, r.loss)).collect(),
                },
                Series {
                    label: "training loss",
                    class: "s2",
                    points: h.iter().map(|r| (r.round as f64, r.train_loss)).collect(),
                },
            ]
        })
    });
    let accuracy = Signal::derive(move || {
        job.with(|j| {
            let h = j.as_ref().map(|j| j.history.clone()).unwrap_or_default();
            vec![Series {
                label: "validation accuracy",
                class: "s3",
                points: h.iter().map(|r| (r.round as f64, r.accuracy)).collect(),
            }]
        })
    });
    let account = use_account();
    let cancel = move |_| {
        let Some(id) = id.get_untracked() else { return };
        spawn_local(async move {
            match api::post_json::<JobView>(&format!("/api/jobs/{id}/cancel"), "{}").await {
                Ok(v) => job.set(Some(v)),
                Err(e) => error.set(Some(e.error)),
            }
        });
    };

    view! {
        {move || error.get().map(|e| view! { <div class="notice error">{e}</div> })}
        {move || job.get().map(|j| {
            let id = j.id;
            let running = !j.status.is_finished();
            let mine = j.owner.is_some() && j.owner == account.address();
            let owner_line = j.owner.clone().map(|o| format!(" · by {}{}", short(&o), if mine { " (you)" } else { "" }));
            let private = j.spec.visibility == oblivion_protocol::Visibility::Private;
            let last = j.history.last().cloned();
            let progress = job_progress(&j);
            view! {
                <section class="card hero">
                    <div>
                        <h1>{format!("#{id} {}", j.name)}</h1>
                        <p class="muted">
                            <StatusBadge status=j.status/>
                            {format!(" round {} of {} · {} training and {} validation samples", j.round.max(1).min(j.rounds), j.rounds, j.train_samples, j.validation_samples)}
                            {owner_line}
                            {private.then_some(" · private")}
                        </p>
                        <div class="progress"><div class="bar" style:width=format!("{:.1}%", progress * 100.0)></div></div>
                        {j.error.clone().map(|e| view! { <p class="error">{e}</p> })}
                    </div>
                    <div class="hero-actions">
                        {(running && mine).then(|| view! { <button class="danger" data-testid="cancel" on:click=cancel>"Cancel"</button> })}
                    </div>
                </section>
                <div class="grid">
                    <section class="card">
                        <LineChart title="Loss" series=loss/>
                    </section>
                    <section class="card">
                        <LineChart title="Accuracy" series=accuracy percent=true/>
                        <p class="big-number" data-testid="accuracy">{last.map_or("—".into(), |r| format!("{:.2}%", r.accuracy * 100.0))}</p>
                    </section>
                    <section class="card">
                        <h2>{move || format!("Shards of round {}", job.with(|j| j.as_ref().map_or(0, |j| j.round)))}</h2>
                        <ShardGrid shards/>
                    </section>
                    <section class="card">
                        <h2>"Model"</h2>
                        <p class="muted small">{if j.history.is_empty() { "Initial weights until the first round ends." } else { "The latest aggregated weights." }}</p>
                        <div class="downloads">
                            <a class="button" data-testid="download-onnx" href=format!("/api/jobs/{id}/model?format=onnx") download="">"ONNX"</a>
                            <a class="button" data-testid="download-safetensors" href=format!("/api/jobs/{id}/model?format=safetensors") download="">"safetensors"</a>
                            <a class="button" data-testid="download-burn" href=format!("/api/jobs/{id}/model?format=burn") download="">"burn"</a>
                        </div>
                    </section>
                </div>
                <section class="card">
                    <h2>"Workers that contributed"</h2>
                    <div class="table-wrap">
                    <table class="table" data-testid="contributors">
                        <thead><tr><th>"Worker"</th><th>"Kind"</th><th>"Backend"</th><th>"Updates"</th><th>"Samples"</th></tr></thead>
                        <tbody>
                            {j.contributors.iter().map(|c| view! {
                                <tr>
                                    <td>{format!("#{} {}", c.worker_id, c.name)}</td>
                                    <td>{format!("{:?}", c.client).to_lowercase()}</td>
                                    <td>{c.backend.clone()}</td>
                                    <td>{c.updates}</td>
                                    <td>{c.samples}</td>
                                </tr>
                            }).collect::<Vec<_>>()}
                        </tbody>
                    </table>
                    </div>
                </section>
                <section class="card">
                    <h2>"Rounds"</h2>
                    <div class="table-wrap">
                    <table class="table" data-testid="rounds">
                        <thead><tr><th>"Round"</th><th>"Accuracy"</th><th>"Loss"</th><th>"Updates"</th><th>"Seconds"</th></tr></thead>
                        <tbody>
                            {j.history.iter().map(|r| view! {
                                <tr><td>{r.round}</td><td>{format!("{:.2}%", r.accuracy * 100.0)}</td><td>{format!("{:.4}", r.loss)}</td><td>{r.updates}</td><td>{format!("{:.1}", r.seconds)}</td></tr>
                            }).collect::<Vec<_>>()}
                        </tbody>
                    </table>
                    </div>
                </section>
                <section class="card">
                    <details>
                        <summary>"Spec"</summary>
                        <pre class="code">{serde_json::to_string_pretty(&j.spec).unwrap_or_default()}</pre>
                    </details>
                </section>
            }
        })}
    }
}

//! Jobs: every job with its status, progress and workers.

use leptos::prelude::*;
use leptos::task::spawn_local;
use oblivion_protocol::JobId;
use oblivion_protocol::api::{JobStatus, JobView, ShardStatus};

use crate::account::use_account;
use crate::api;
use crate::live::{use_live, when_changed};

/// Fraction of a job's work done: finished rounds plus the current round's
/// finished shards.
pub fn job_progress(job: &JobView) -> f64 {
    if job.status == JobStatus::Completed {
        return 1.0;
    }
    let rounds = job.rounds.max(1) as f64;
    let finished = job.history.len() as f64;
    let shards = job.shards.len().max(1) as f64;
    let done = job
        .shards
        .iter()
        .filter(|s| s.state == ShardStatus::Done)
        .count() as f64;
    ((finished + done / shards) / rounds).min(1.0)
}

/// A status badge.
#[component]
pub fn StatusBadge(status: JobStatus) -> impl IntoView {
    view! { <span class=format!("status {}", status.as_str())>{status.as_str()}</span> }
}

/// Loads the job list, again whenever the network says jobs changed.
fn job_list() -> (RwSignal<Vec<JobView>>, RwSignal<Option<String>>) {
    let jobs = RwSignal::new(Vec::<JobView>::new());
    let error = RwSignal::new(None::<String>);
    let live = use_live();
    let key = move || {
        live.snapshot.with(|s| {
            s.as_ref().map(|s| {
                let progress: Vec<_> = s
                    .jobs
                    .iter()
                    .map(|j| {
                        (
                            j.id,
                            j.round,
                            j.shards
                                .iter()
                                .filter(|s| s.state == ShardStatus::Done)
                                .count(),
                        )
                    })
                    .collect();
                (s.jobs_version, progress)
            })
        })
    };
    when_changed(key, move |_| {
        spawn_local(async move {
            match api::get::<Vec<JobView>>("/api/jobs").await {
                Ok(list) => {
                    jobs.set(list);
                    error.set(None);
                }
                Err(e) => error.set(Some(e.error)),
            }
        });
    });
    (jobs, error)
}

/// The Jobs page.
#[component]
pub fn JobList() -> impl IntoView {
    let (all_jobs, error) = job_list();
    let account = use_account();
    // "My jobs": a creator's own, when signed in.
    let mine_only = RwSignal::new(false);
    let jobs = Signal::derive(move || {
        let me = account.address();
        all_jobs.with(|list| {
            list.iter()
                .filter(|j| !mine_only.get() || (me.is_some() && j.owner == me))
                .cloned()
                .collect::<Vec<_>>()
        })
    });
    let live = use_live();
    let workers_on = move |id: JobId| {
        live.snapshot.with(|s| {
            s.as_ref().map_or(0, |s| {
                s.workers
                    .iter()
                    .filter(|w| w.leases.iter().any(|l| l.job_id == id))
                    .count()
            })
        })
    };
    view! {
        <section class="card hero">
            <div>
                <h1>"Jobs"</h1>
                <p class="muted">"Training jobs on this network. Each runs in rounds: shards go to workers, their updates are averaged."</p>
            </div>
            <a class="button primary" href="/jobs/new" data-testid="new-job">"New job"</a>
        </section>
        {move || error.get().map(|e| view! { <div class="notice error">{e}</div> })}
        <section class="card">
            {move || account.address().is_some().then(|| view! {
                <div class="tabs" role="tablist">
                    <button class="tab" class:active=move || !mine_only.get() data-testid="all-jobs" on:click=move |_| mine_only.set(false)>"All jobs"</button>
                    <button class="tab" class:active=move || mine_only.get() data-testid="my-jobs" on:click=move |_| mine_only.set(true)>"My jobs"</button>
                </div>
            })}
            <div class="table-wrap">
            <table class="table jobs" data-testid="job-list">
                <thead><tr><th>"Job"</th><th>"Status"</th><th class="wide">"Progress"</th><th>"Workers"</th><th>"Accuracy"</th></tr></thead>
                <tbody>
                    <For each=move || jobs.get() key=|j| (j.id, j.status.as_str(), j.history.len(), j.shards.iter().filter(|s| s.state == ShardStatus::Done).count()) let:job>
                        {
                            let id = job.id;
                            let progress = job_progress(&job);
                            let accuracy = job.history.last().map_or("—".to_string(), |r| format!("{:.1}%", r.accuracy * 100.0));
                            view! {
                                <tr data-testid=format!("job-row-{id}")>
                                    <td><a href=format!("/jobs/{id}")>{format!("#{id} {}", job.name)}</a></td>
                                    <td><StatusBadge status=job.status/></td>
                                    <td class="wide">
                                        <div class="progress"><div class="bar" style:width=format!("{:.1}%", progress * 100.0)></div></div>
                                        <span class="muted small">{format!("round {} of {}", job.round.max(1).min(job.rounds), job.rounds)}</span>
                                    </td>
                                    <td>{move || workers_on(id)}</td>
                                    <td>{accuracy}</td>
                                </tr>
                            }
                        }
                    </For>
                </tbody>
            </table>
            </div>
            {move || jobs.with(Vec::is_empty).then(|| view! { <p class="muted">"No jobs yet. " <a href="/jobs/new">"Submit one."</a></p> })}
        </section>
    }
}

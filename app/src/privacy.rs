//! The contributor's privacy, on the Contribute page: the limits this
//! browser sets on its local data (kept in the tab's storage with the
//! ledger of what it has spent; the worker enforces and updates them), and
//! what each open federated job would cost it, before its data is used.

use leptos::prelude::*;
use oblivion_privacy::contributor::{Ask, ContributorLimits, Ledger, job_epsilon};
use oblivion_protocol::api::JobView;
use oblivion_protocol::tab::ContributorPrivacy;

use crate::live::{use_live, when_changed};
use crate::settings::{load_setting, save_setting};

const PRIVACY_KEY: &str = "oblivion.privacy";

/// The limits and ledger kept in this browser (the defaults at first).
pub fn load() -> ContributorPrivacy {
    load_setting(PRIVACY_KEY)
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_default()
}

/// Keeps them.
pub fn save(privacy: &ContributorPrivacy) {
    if let Ok(text) = serde_json::to_string(privacy) {
        save_setting(PRIVACY_KEY, &text);
    }
}

/// The network this tab's ledger names: the coordinator's origin, as the
/// worker names it.
pub fn network() -> String {
    web_sys::window()
        .and_then(|w| w.location().origin().ok())
        .unwrap_or_default()
}

/// What `job` would cost this contributor over all its rounds, or which of
/// its limits refuses it. The worker decides, knowing its records too.
fn price(job: &JobView, privacy: &ContributorPrivacy) -> (Option<f64>, Result<(), String>) {
    // σ as the coordinator resolves it (a target ε met at sensitivity 2C).
    let Some((spec, sigma)) = job.spec.training().and_then(|t| {
        let sigma = oblivion_protocol::job_privacy::noise_multiplier(t).ok()??;
        Some((t, sigma))
    }) else {
        return (None, Err("the job adds no noise".into()));
    };
    let limits = &privacy.limits;
    let epsilon = job_epsilon(sigma, spec.rounds, limits.delta).ok();
    let ask = Ask {
        network: network(),
        job: job.id.0,
        noise_multiplier: sigma,
        rounds: spec.rounds,
        batch_size: spec.batch_size,
        records: u64::MAX,
    };
    (epsilon, privacy.ledger.admit(limits, &ask).map(|_| ()))
}

fn fmt_epsilon(e: f64) -> String {
    if e.is_finite() {
        format!("ε = {e:.2}")
    } else {
        "ε = ∞".into()
    }
}

/// The card: limits, what was spent, and the open federated jobs' prices.
#[component]
pub fn PrivacyCard(
    /// The limits and ledger (saved on change; the worker gets them at
    /// each start).
    privacy: RwSignal<ContributorPrivacy>,
) -> impl IntoView {
    let live = use_live();
    let jobs: RwSignal<Vec<JobView>> = RwSignal::new(Vec::new());
    when_changed(
        move || live.snapshot.with(|s| s.as_ref().map(|s| s.jobs_version)),
        move |_| {
            leptos::task::spawn_local(async move {
                if let Ok(all) = crate::api::get::<Vec<JobView>>("/api/jobs").await {
                    jobs.set(
                        all.into_iter()
                            .filter(|j| {
                                j.spec.training().is_some_and(|t| t.dataset.is_federated())
                                    && !j.status.is_finished()
                            })
                            .collect(),
                    );
                }
            });
        },
    );
    let error = RwSignal::new(None::<String>);
    let set_limit = move |apply: fn(&mut ContributorLimits, f64), ev: leptos::ev::Event| {
        let Ok(value) = event_target_value(&ev).trim().parse::<f64>() else {
            error.set(Some("a limit is a number, such as 8 or 0.5".into()));
            return;
        };
        let mut limits = privacy.with_untracked(|p| p.limits.clone());
        apply(&mut limits, value);
        match limits.validate() {
            Ok(()) => {
                error.set(None);
                privacy.update(|p| p.limits = limits);
                privacy.with_untracked(save);
            }
            Err(e) => error.set(Some(e)),
        }
    };
    let spent = move || {
        privacy.with(|p| {
            p.ledger
                .total_epsilon(p.limits.delta)
                .map_or("—".into(), fmt_epsilon)
        })
    };
    let spends = move || {
        privacy.with(|p| {
            let here = network();
            let mut jobs: Vec<u64> = p
                .ledger
                .spends
                .iter()
                .filter(|s| s.network == here)
                .map(|s| s.job)
                .collect();
            jobs.dedup();
            jobs.into_iter()
                .map(|job| {
                    let rounds: u32 = p
                        .ledger
                        .spends
                        .iter()
                        .filter(|s| s.network == here && s.job == job)
                        .map(|s| s.rounds)
                        .sum();
                    let e = p.ledger.job_epsilon_spent(&here, job, p.limits.delta);
                    (job, rounds, e.map_or("—".into(), fmt_epsilon))
                })
                .collect::<Vec<_>>()
        })
    };
    view! {
        <section class="card" data-testid="privacy-card">
            <h2>"Your privacy (federated jobs)"</h2>
            <p class="muted small">"Each update of your data carries noise; this tab prices every job at one record's greatest influence (twice the clip norm), and refuses a job that would spend more than you allow, whatever the job says."</p>
            <div class="grid">
                <label class="field">
                    <span>"Most ε one job may spend"</span>
                    <input type="number" step="any" min="0" data-testid="privacy-job-epsilon"
                        prop:value=move || privacy.with(|p| p.limits.job_epsilon.to_string())
                        on:change=move |ev| set_limit(|l, v| l.job_epsilon = v, ev)/>
                </label>
                <label class="field">
                    <span>"Most ε in all"</span>
                    <input type="number" step="any" min="0" data-testid="privacy-total-epsilon"
                        prop:value=move || privacy.with(|p| p.limits.total_epsilon.to_string())
                        on:change=move |ev| set_limit(|l, v| l.total_epsilon = v, ev)/>
                </label>
            </div>
            {move || error.get().map(|e| view! { <p class="warn small" data-testid="privacy-error">{e}</p> })}
            <p class="muted small">{move || privacy.with(|p| format!(
                "At δ = {}. Whatever the limits, a job must add noise of at least {} × its clip norm, train batches of at least {}, and at least {} of your records an update. Changes apply from the next Start.",
                p.limits.delta, p.limits.min_noise_multiplier, p.limits.min_batch_size, p.limits.min_records
            ))}</p>
            <p>"Spent so far: " <strong data-testid="privacy-spent">{spent}</strong></p>
            <ul class="log" data-testid="privacy-spends">
                {move || spends().into_iter().map(|(job, rounds, e)| view! {
                    <li>{format!("job {job}: {rounds} update{} · {e}", if rounds == 1 { "" } else { "s" })}</li>
                }).collect::<Vec<_>>()}
            </ul>
            <h2 class="spaced">"Open federated jobs"</h2>
            {move || {
                let list = jobs.get();
                if list.is_empty() {
                    return view! { <p class="muted small">"None now."</p> }.into_any();
                }
                view! {
                    <div class="table-wrap">
                    <table class="table" data-testid="privacy-jobs">
                        <thead><tr><th>"Job"</th><th>"Rounds"</th><th>"Costs your data"</th><th>"This tab"</th></tr></thead>
                        <tbody>
                            {list.into_iter().map(|j| {
                                let (epsilon, verdict) = privacy.with(|p| price(&j, p));
                                let id = j.id;
                                view! {
                                    <tr data-testid=format!("privacy-job-{id}")>
                                        <td><a href=format!("/jobs/{id}")>{j.name.clone()}</a></td>
                                        <td>{j.spec.rounds()}</td>
                                        <td data-testid=format!("privacy-job-epsilon-{id}")>{epsilon.map_or("—".into(), fmt_epsilon)}</td>
                                        <td data-testid=format!("privacy-job-verdict-{id}")>{match verdict {
                                            Ok(()) => "within your limits".to_string(),
                                            Err(why) => format!("declines: {why}"),
                                        }}</td>
                                    </tr>
                                }
                            }).collect::<Vec<_>>()}
                        </tbody>
                    </table>
                    </div>
                }.into_any()
            }}
        </section>
    }
}

/// Records a spend the worker reported: the ledger it now holds.
pub fn spent(privacy: RwSignal<ContributorPrivacy>, ledger: Ledger) {
    privacy.update(|p| p.ledger = ledger);
    privacy.with_untracked(save);
}

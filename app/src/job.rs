//! One job: live curves, the shard grid, contributors, downloads, and for a
//! paid job its escrow: funding, settlement and payouts.

use leptos::prelude::*;
use leptos::task::spawn_local;
use leptos_router::hooks::use_params_map;
use oblivion_chain::calls;
use oblivion_protocol::JobId;
use oblivion_protocol::api::{JobView, PaymentState, PaymentView, ShardView};

use crate::account::{short, use_account};
use crate::api;
use crate::chain::{self, TxState, TxStatus, use_chain};
use crate::chart::{LineChart, Series};
use crate::jobs::{StatusBadge, job_progress};
use crate::live::{use_live, when_changed};
use crate::wallet::sleep;

/// After a transaction, how often and how many times the job is asked for
/// until the coordinator has seen it on chain.
const FOLLOW_MS: i32 = 2_000;
const FOLLOW_TRIES: u32 = 90;

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

/// The payment state in words.
fn payment_label(state: PaymentState) -> &'static str {
    match state {
        PaymentState::AwaitingDeposit => "awaiting deposit",
        PaymentState::Funded => "funded",
        PaymentState::Settled => "settled",
        PaymentState::Refunded => "refunded",
    }
}

/// Asks for job `id` again until its payment leaves `from` (the coordinator
/// saw the transaction on chain), for a few minutes at most, or until the
/// page is gone.
async fn follow(id: JobId, job: RwSignal<Option<JobView>>, from: PaymentState) {
    for _ in 0..FOLLOW_TRIES {
        sleep(FOLLOW_MS).await;
        let Ok(view) = api::get::<JobView>(&format!("/api/jobs/{id}")).await else {
            continue;
        };
        let moved = view.payment.as_ref().is_some_and(|p| p.state != from);
        if job.try_set(Some(view)).is_some() || moved {
            return;
        }
    }
}

/// A paid job's escrow: where it stands, and its owner's Fund and Settle.
#[component]
fn PaymentCard(
    id: JobId,
    /// The spec's `reward.deadline_hours`.
    deadline_hours: Option<u32>,
    payment: PaymentView,
    mine: bool,
    job: RwSignal<Option<JobView>>,
    tx: RwSignal<TxState>,
) -> impl IntoView {
    let chain = use_chain();
    let account = use_account();
    let state = payment.state;
    let me = account.address_untracked();

    let fund = {
        let payment = payment.clone();
        move |_| {
            let Some(info) = chain.info.get_untracked() else {
                return;
            };
            let hours = deadline_hours.unwrap_or(24);
            let data = match chain::fund_call(&info, id, &payment.spec_hash, hours) {
                Ok(data) => data,
                Err(e) => return tx.set(TxState::Failed(e)),
            };
            let value = calls::u256(&payment.amount);
            let me = account.address_untracked();
            spawn_local(async move {
                if chain::send(&info, me.as_deref(), &data, value, tx).await {
                    follow(id, job, PaymentState::AwaitingDeposit).await;
                }
            });
        }
    };
    let settle = {
        let payment = payment.clone();
        move |_| {
            let Some(info) = chain.info.get_untracked() else {
                return;
            };
            let Some(settlement) = payment.settlement.as_ref() else {
                return;
            };
            let data = match calls::settle(&payment.job_key, settlement) {
                Ok(data) => data,
                Err(e) => {
                    return tx.set(TxState::Failed(format!(
                        "The coordinator's settlement is malformed: {e}"
                    )));
                }
            };
            let me = account.address_untracked();
            spawn_local(async move {
                if chain::send(&info, me.as_deref(), &data, calls::U256::ZERO, tx).await {
                    follow(id, job, PaymentState::Funded).await;
                }
            });
        }
    };

    // Each hidden while its transaction is under way or just went through
    // (until the coordinator has seen it on chain).
    let idle = move || {
        chain.info.with(Option::is_some)
            && !matches!(
                tx.get(),
                TxState::Wallet | TxState::Pending(_) | TxState::Confirmed(_)
            )
    };
    let can_fund = move || mine && state == PaymentState::AwaitingDeposit && idle();
    // The creator may send the settlement at once; anyone signed in may
    // once the escrow's grace has passed (the coordinator also does).
    let issued_at = payment.settlement.as_ref().map(|s| s.issued_at);
    let signed_in = me.is_some();
    let open_to_all = move || {
        let grace = chain
            .info
            .with(|c| c.as_ref().map_or(0, |c| c.settle_grace_secs));
        issued_at.is_some_and(|t| grace > 0 && chain::now_secs() >= t + grace)
    };
    let can_settle = move || {
        state == PaymentState::Funded
            && issued_at.is_some()
            && (mine || (signed_in && open_to_all()))
            && idle()
    };
    let confirmations = move || {
        chain
            .info
            .with(|c| c.as_ref().map_or(0, |c| c.confirmations))
    };
    let deposit = payment.deposit.as_ref().map_or("—".to_string(), chain::eth);
    let deadline = match (payment.deadline, deadline_hours) {
        (Some(t), _) => chain::utc(t),
        (None, Some(h)) => format!("{h} h after funding"),
        (None, None) => "—".into(),
    };
    let settlement = payment.settlement.clone();
    let hint = match state {
        PaymentState::AwaitingDeposit => Some(if mine {
            "The job waits for its deposit; it opens once the deposit is confirmed on chain.".to_string()
        } else {
            "The job waits for its creator's deposit.".to_string()
        }),
        PaymentState::Funded if settlement.is_some() && mine => Some(
            "The job is done and the coordinator signed its payouts: settle to pay the contributors and release the model (anything not paid out goes back to you). After the settlement grace anyone may send it, and the coordinator does.".into(),
        ),
        PaymentState::Funded if settlement.is_some() => Some(
            "The job is done: its creator may settle now, and after the settlement grace anyone may (the coordinator does so itself).".into(),
        ),
        PaymentState::Funded => Some("Deposited; the payouts are settled once the job is done.".into()),
        PaymentState::Settled => Some("Settled: each contributor claims their reward from the Rewards page.".into()),
        PaymentState::Refunded => Some("The deposit went back to the creator.".into()),
    };

    view! {
        <section class="card" data-testid="payment">
            <h2>"Payment"</h2>
            <dl class="facts">
                <dt>"State"</dt>
                <dd><span class=format!("state {}", state.as_str()) data-testid="payment-state" data-state=state.as_str()>{payment_label(state)}</span></dd>
                <dt>"Reward asked"</dt>
                <dd data-testid="payment-amount">{chain::eth(&payment.amount)}</dd>
                <dt>"Deposited"</dt>
                <dd data-testid="payment-deposit">{deposit}</dd>
                <dt>"Settle by"</dt>
                <dd>{deadline}</dd>
                <dt>"Job key"</dt>
                <dd class="mono" title=payment.job_key.clone()>{short(&payment.job_key)}</dd>
                {settlement.as_ref().map(|s| view! {
                    <dt>"Paid out"</dt>
                    <dd>{chain::eth(&s.total)}</dd>
                    <dt>"Model hash"</dt>
                    <dd class="mono" title=s.model_hash.clone()>{short(&s.model_hash)}</dd>
                })}
            </dl>
            {hint.map(|h| view! { <p class="muted small">{h}</p> })}
            {payment.refusal.clone().map(|r| view! {
                <p class="error small" data-testid="deposit-refused">{format!("The coordinator refused the deposit: {r}. It can be refunded once the refund opens.")}</p>
            })}
            {move || (state == PaymentState::AwaitingDeposit && matches!(tx.get(), TxState::Confirmed(_))).then(|| view! {
                <p class="small" data-testid="deposit-sent">{format!("Deposit sent: the job opens after {} confirmation(s) on chain.", confirmations())}</p>
            })}
            <TxStatus state=tx/>
            <div class="downloads">
                {move || can_fund().then(|| {
                    let fund = fund.clone();
                    view! {
                        <button class="primary" data-testid="fund" disabled=move || tx.get().busy() on:click=fund>
                            {format!("Fund {}", chain::eth(&payment.amount))}
                        </button>
                    }
                })}
                {move || can_settle().then(|| {
                    let settle = settle.clone();
                    view! {
                        <button class="primary" data-testid="settle" disabled=move || tx.get().busy() on:click=settle>"Settle"</button>
                    }
                })}
            </div>
            {settlement.map(|s| view! {
                <h2 class="spaced">"Payouts"</h2>
                <div class="table-wrap">
                <table class="table" data-testid="payouts">
                    <thead><tr><th>"#"</th><th>"Account"</th><th>"Amount"</th></tr></thead>
                    <tbody>
                        {s.payouts.into_iter().map(|p| {
                            let you = me.as_deref().is_some_and(|m| m.eq_ignore_ascii_case(&p.account));
                            view! {
                                <tr>
                                    <td>{p.index}</td>
                                    <td class="mono" title=p.account.clone()>{short(&p.account)}{you.then_some(" (you)")}</td>
                                    <td>{chain::eth(&p.amount)}</td>
                                </tr>
                            }
                        }).collect::<Vec<_>>()}
                    </tbody>
                </table>
                </div>
            })}
        </section>
    }
}

/// The job page.
#[component]
pub fn JobPage() -> impl IntoView {
    let params = use_params_map();
    let id = Memo::new(move |_| params.with(|p| p.get("id").and_then(|v| v.parse::<JobId>().ok())));
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
    // The escrow transaction of this page; kept across refetches.
    let tx = RwSignal::new(TxState::Idle);
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
            let private = j.spec.visibility() == oblivion_protocol::Visibility::Private;
            let last = j.history.last().cloned();
            let federated = j.spec.training().is_some_and(|t| t.dataset.is_federated());
            // A paid job's product waits for its settlement (the coordinator refuses it before).
            let unsettled = j.payment.as_ref().is_some_and(|p| p.state != PaymentState::Settled);
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
                {j.payment.clone().map(|payment| view! {
                    <PaymentCard id deadline_hours=j.spec.reward().map(|r| r.deadline_hours) payment mine job tx/>
                })}
                <div class="grid">
                    <section class="card">
                        <LineChart title="Loss" series=loss/>
                    </section>
                    <section class="card">
                        <LineChart title="Accuracy" series=accuracy percent=true/>
                        <p class="big-number" data-testid="accuracy">{last.map_or("—".into(), |r| format!("{:.2}%", r.accuracy * 100.0))}</p>
                    </section>
                    {j.spec.training().and_then(|t| t.privacy.clone()).map(|p| view! {
                        <section class="card" data-testid="privacy">
                            <h2>"Privacy"</h2>
                            <p class="big-number" data-testid="epsilon">{j.history.last().and_then(|r| r.epsilon).map_or("ε = 0".into(), |e| format!("ε = {e:.2}"))}</p>
                            <p class="muted small">{format!(
                                "Spent so far, at δ = {:e}: each update clipped to {}, {}{}.",
                                p.delta,
                                p.clip_norm,
                                if federated { "and Gaussian noise added to it by its contributor before it left" } else { "Gaussian noise added to their sum" },
                                p.target_epsilon.map_or(String::new(), |t| format!("; the job stays within ε = {t}")),
                            )}</p>
                        </section>
                    })}
                    {federated.then(|| view! {
                        <section class="card" data-testid="federated">
                            <h2>"Federated"</h2>
                            <p class="big-number" data-testid="federated-contributors">{format!("{} contributor{}", j.contributors.len(), if j.contributors.len() == 1 { "" } else { "s" })}</p>
                            <p class="muted small">"The training data stayed with its contributors: each trained on its own file and sent only clipped, noised updates. The coordinator holds only the validation data."</p>
                        </section>
                    })}
                    <section class="card">
                        <h2>{move || format!("Shards of round {}", job.with(|j| j.as_ref().map_or(0, |j| j.round)))}</h2>
                        <ShardGrid shards/>
                    </section>
                    <section class="card">
                        <h2>"Model"</h2>
                        {if unsettled { view! {
                            <p class="muted small" data-testid="model-withheld">"A paid job's weights are released once its settlement is seen on chain: the contributors are paid first."</p>
                        }.into_any() } else { view! {
                        <p class="muted small">{if j.history.is_empty() { "Initial weights until the first round ends." } else { "The latest aggregated weights." }}</p>
                        <div class="downloads">
                            <a class="button" data-testid="download-onnx" href=format!("/api/jobs/{id}/model?format=onnx") download="">"ONNX"</a>
                            <a class="button" data-testid="download-safetensors" href=format!("/api/jobs/{id}/model?format=safetensors") download="">"safetensors"</a>
                            <a class="button" data-testid="download-burn" href=format!("/api/jobs/{id}/model?format=burn") download="">"burn"</a>
                        </div>
                        }.into_any() }}
                    </section>
                </div>
                {j.outputs.clone().map(|o| view! {
                    <section class="card" data-testid="outputs">
                        <h2>"Outputs"</h2>
                        <p class="muted small">{format!("{} rows, each with the probability of {} classes and its predicted class.", o.rows, o.classes)}</p>
                        {o.accuracy.map(|a| view! { <p class="big-number" data-testid="outputs-accuracy">{format!("{:.2}%", a * 100.0)}</p> })}
                        {if unsettled { view! {
                            <p class="muted small" data-testid="outputs-withheld">"A paid job's outputs are released once its settlement is seen on chain: the contributors are paid first."</p>
                        }.into_any() } else { view! {
                        <div class="downloads">
                            <a class="button" data-testid="outputs-csv" href=format!("/api/jobs/{id}/outputs?format=csv") download="">"CSV"</a>
                            <a class="button" data-testid="outputs-jsonl" href=format!("/api/jobs/{id}/outputs?format=jsonl") download="">"JSON lines"</a>
                            <a class="button" data-testid="outputs-npy" href=format!("/api/jobs/{id}/outputs?format=npy") download="">".npy"</a>
                        </div>
                        }.into_any() }}
                        {o.confusion.map(|m| view! {
                            <h3>"Confusion"</h3>
                            <div class="table-wrap">
                            <table class="table confusion" data-testid="confusion">
                                <thead><tr><th>"label \\ predicted"</th>{(0..m.len()).map(|c| view! { <th>{c.to_string()}</th> }).collect::<Vec<_>>()}</tr></thead>
                                <tbody>
                                    {m.iter().enumerate().map(|(label, row)| view! {
                                        <tr><th>{label.to_string()}</th>{row.iter().enumerate().map(|(p, n)| view! { <td class:diagonal=p == label>{n.to_string()}</td> }).collect::<Vec<_>>()}</tr>
                                    }).collect::<Vec<_>>()}
                                </tbody>
                            </table>
                            </div>
                        })}
                    </section>
                })}
                <section class="card">
                    <h2>"Workers that contributed"</h2>
                    <p class="muted small"><a href=format!("/leaderboard?job={id}") data-testid="job-leaderboard">"This job's leaderboard"</a></p>
                    <div class="table-wrap">
                    <table class="table" data-testid="contributors">
                        <thead><tr><th>"Worker"</th><th>"Kind"</th><th>"Backend"</th><th>"Updates"</th><th title="verified work: samples of its shards, or in a federated job one contribution per update">{if federated { "Contributions" } else { "Samples" }}</th></tr></thead>
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
                        <thead><tr><th>"Round"</th><th>"Accuracy"</th><th>"Loss"</th><th>"Updates"</th><th>"Disputed"</th><th>"No work"</th><th>"ε"</th><th>"Seconds"</th></tr></thead>
                        <tbody>
                            {j.history.iter().map(|r| view! {
                                <tr><td>{r.round}</td><td>{format!("{:.2}%", r.accuracy * 100.0)}</td><td>{format!("{:.4}", r.loss)}</td><td>{r.updates}</td><td>{r.disputed}</td><td>{r.no_work}</td><td>{r.epsilon.map_or("—".into(), |e| format!("{e:.2}"))}</td><td>{format!("{:.1}", r.seconds)}</td></tr>
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

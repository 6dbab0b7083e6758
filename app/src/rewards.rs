//! Rewards: what the signed-in account earned on paid jobs, and its claims
//! from the escrow once a job's creator has settled it.

use leptos::prelude::*;
use leptos::task::spawn_local;
use oblivion_chain::calls;
use oblivion_protocol::JobId;
use oblivion_protocol::api::RewardView;

use crate::account::{short, use_account};
use crate::api;
use crate::chain::{self, TxState, TxStatus, use_chain};
use crate::live::{use_live, when_changed};

/// After a claim, how often and how many times the rewards are asked for
/// until the coordinator has seen it on chain.
const FOLLOW_MS: i32 = 2_000;
const FOLLOW_TRIES: u32 = 30;

/// Where one reward stands.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Standing {
    /// Its settlement is not on chain yet.
    Waiting,
    /// Settled, not yet paid.
    Claimable,
    /// Paid.
    Claimed,
}

impl Standing {
    fn of(r: &RewardView, claimed_here: &[(JobId, u64)]) -> Standing {
        if r.claimed || claimed_here.contains(&(r.job_id, r.index)) {
            Standing::Claimed
        } else if r.settled {
            Standing::Claimable
        } else {
            Standing::Waiting
        }
    }

    fn key(self) -> &'static str {
        match self {
            Standing::Waiting => "waiting",
            Standing::Claimable => "claimable",
            Standing::Claimed => "claimed",
        }
    }

    fn label(self) -> &'static str {
        match self {
            Standing::Waiting => {
                "waiting for the settlement (its creator's, or anyone's after the grace)"
            }
            Standing::Claimable => "claimable",
            Standing::Claimed => "claimed",
        }
    }
}

async fn load(rewards: RwSignal<Option<Vec<RewardView>>>, error: RwSignal<Option<String>>) {
    match api::get::<Vec<RewardView>>("/api/rewards").await {
        Ok(list) => {
            rewards.set(Some(list));
            error.set(None);
        }
        Err(e) => error.set(Some(e.error)),
    }
}

/// Sum of the amounts of the rewards that are `standing`.
fn total(list: &[RewardView], claimed_here: &[(JobId, u64)], standing: Standing) -> calls::U256 {
    list.iter()
        .filter(|r| Standing::of(r, claimed_here) == standing)
        .map(|r| calls::u256(&r.amount))
        .fold(calls::U256::ZERO, |a, b| a.saturating_add(b))
}

/// The Rewards page.
#[component]
pub fn RewardsPage() -> impl IntoView {
    let account = use_account();
    let chain = use_chain();
    let live = use_live();
    let rewards = RwSignal::new(None::<Vec<RewardView>>);
    let error = RwSignal::new(None::<String>);
    let tx = RwSignal::new(TxState::Idle);
    // Claims confirmed from this page, (job, leaf), until the coordinator
    // reports them too.
    let claimed_here = RwSignal::new(Vec::<(JobId, u64)>::new());
    // Refetch on sign-in and when stored job state changes (a job settled).
    let key = move || {
        (
            account.address(),
            live.snapshot.with(|s| s.as_ref().map(|s| s.jobs_version)),
        )
    };
    when_changed(key, move |(address, _)| {
        if address.is_none() {
            rewards.set(None);
            return;
        }
        spawn_local(load(rewards, error));
    });

    let claim = move |reward: RewardView| {
        let Some(info) = chain.info.get_untracked() else {
            return;
        };
        let data = match calls::claim(&reward) {
            Ok(data) => data,
            Err(e) => {
                return tx.set(TxState::Failed(format!(
                    "The coordinator's proof is malformed: {e}"
                )));
            }
        };
        spawn_local(async move {
            // Anyone may send a claim; the escrow pays the leaf's account.
            if !chain::send(&info, None, &data, calls::U256::ZERO, tx).await {
                return;
            }
            claimed_here.update(|c| c.push((reward.job_id, reward.index)));
            chain::follow(FOLLOW_MS, FOLLOW_TRIES, || async {
                load(rewards, error).await;
                rewards
                    .try_with_untracked(|list| {
                        list.as_ref().is_none_or(|list| {
                            list.iter().any(|r| {
                                r.job_id == reward.job_id && r.index == reward.index && r.claimed
                            })
                        })
                    })
                    .unwrap_or(true)
            })
            .await;
        });
    };

    view! {
        <section class="card hero">
            <div>
                <h1>"Rewards"</h1>
                <p class="muted">"What your account earned by contributing to paid jobs. Once a job is settled (by its creator, or after the escrow's grace by anyone: the coordinator does, and so may you from the job's page), claim your share from the escrow: it is paid to your account, and your wallet pays the gas."</p>
            </div>
        </section>
        {move || error.get().map(|e| view! { <div class="notice error">{e}</div> })}
        <section class="card">
            {move || {
                if chain.info.with(Option::is_none) {
                    return view! { <p class="muted" data-testid="rewards-unpaid">"This network runs unpaid jobs only: there are no rewards to claim."</p> }.into_any();
                }
                if account.address().is_none() {
                    return view! { <p class="muted" data-testid="rewards-sign-in">"Sign in with your wallet to see your rewards."</p> }.into_any();
                }
                let Some(list) = rewards.get() else {
                    return view! { <p class="muted">"Loading…"</p> }.into_any();
                };
                let here = claimed_here.get();
                let claimable = total(&list, &here, Standing::Claimable);
                let waiting = total(&list, &here, Standing::Waiting);
                let claimed = total(&list, &here, Standing::Claimed);
                let busy = move || tx.get().busy();
                let empty = list.is_empty();
                view! {
                    <dl class="stats rewards-totals">
                        <div><dt>"Claimable"</dt><dd data-testid="rewards-claimable">{format!("{} ETH", calls::format_ether(claimable))}</dd></div>
                        <div><dt>"Waiting for settlement"</dt><dd>{format!("{} ETH", calls::format_ether(waiting))}</dd></div>
                        <div><dt>"Claimed"</dt><dd>{format!("{} ETH", calls::format_ether(claimed))}</dd></div>
                    </dl>
                    <TxStatus state=tx/>
                    <div class="table-wrap">
                    <table class="table" data-testid="rewards">
                        <thead><tr><th>"Job"</th><th>"Account"</th><th>"Amount"</th><th>"Status"</th><th></th></tr></thead>
                        <tbody>
                            {list.into_iter().map(|r| {
                                let standing = Standing::of(&r, &here);
                                let id = r.job_id;
                                let account = r.account.clone();
                                let amount = chain::eth(&r.amount);
                                let job_name = r.job_name.clone();
                                view! {
                                    <tr data-testid=format!("reward-{id}")>
                                        <td><a href=format!("/jobs/{id}")>{format!("#{id} {job_name}")}</a></td>
                                        <td class="mono" title=account.clone()>{short(&account)}</td>
                                        <td>{amount}</td>
                                        <td><span class=format!("state reward {}", standing.key()) data-testid=format!("reward-status-{id}") data-state=standing.key()>{standing.label()}</span></td>
                                        <td>
                                            {(standing == Standing::Claimable).then(|| view! {
                                                <button class="primary small" data-testid=format!("claim-{id}") disabled=busy on:click=move |_| claim(r.clone())>"Claim"</button>
                                            })}
                                        </td>
                                    </tr>
                                }
                            }).collect::<Vec<_>>()}
                        </tbody>
                    </table>
                    </div>
                    {empty.then(|| view! {
                        <p class="muted" data-testid="rewards-empty">"No rewards yet. Contribute to paid jobs from the Contribute page while signed in: your share of each job's reward shows here once it is done."</p>
                    })}
                }.into_any()
            }}
        </section>
    }
}

//! An account's profile (`/accounts/0x…`): the jobs it created and the
//! models it owns that the visitor may see, its standing as a contributor,
//! and its escrow transactions with their hashes.

use leptos::prelude::*;
use leptos::task::spawn_local;
use leptos_router::hooks::use_params_map;
use oblivion_protocol::profile::{AccountProfile, ChainEventKind};

use crate::account::short;
use crate::api;
use crate::chain;

fn kind_words(kind: ChainEventKind) -> &'static str {
    match kind {
        ChainEventKind::Funded => "funded a job",
        ChainEventKind::Settled => "a job of its settled",
        ChainEventKind::Claimed => "claimed a reward",
        ChainEventKind::Bought => "bought a model",
        ChainEventKind::Sold => "sold a model (its part)",
        ChainEventKind::Share => "claimed a share of a model's sales",
        ChainEventKind::Withdrawal => "withdrew proceeds",
    }
}

/// The profile page.
#[component]
pub fn AccountPage() -> impl IntoView {
    let params = use_params_map();
    let address = Memo::new(move |_| params.with(|p| p.get("address").unwrap_or_default()));
    let profile = RwSignal::new(None::<AccountProfile>);
    let error = RwSignal::new(None::<String>);
    Effect::new(move |_| {
        let address = address.get();
        spawn_local(async move {
            match api::get::<AccountProfile>(&format!("/api/accounts/{address}")).await {
                Ok(p) => {
                    profile.set(Some(p));
                    error.set(None);
                }
                Err(e) => error.set(Some(e.error)),
            }
        });
    });
    view! {
        {move || error.get().map(|e| view! { <div class="notice error">{e}</div> })}
        {move || profile.get().map(|p| {
            let standing = p.standing.clone();
            view! {
                <section class="card hero">
                    <div>
                        <h1 class="mono" data-testid="profile-address">{p.address.clone()}</h1>
                        <p class="muted">{format!("{} jobs created · {} models · {} transactions", p.jobs.len(), p.models.len(), p.history.len())}</p>
                    </div>
                </section>
                <section class="card">
                    <h2>"As a contributor"</h2>
                    {match standing {
                        Some(s) => view! {
                            <dl class="stats" data-testid="profile-standing">
                                <div><dt>"Verified samples"</dt><dd data-testid="profile-samples">{s.samples}</dd></div>
                                <div><dt>"Inference rows"</dt><dd>{s.rows}</dd></div>
                                <div><dt>"Recent average"</dt><dd>{format!("{:.0} a day", s.recent)}</dd></div>
                                <div><dt>"Earned"</dt><dd>{chain::eth(&s.earned)}</dd></div>
                                <div><dt>"Claimed"</dt><dd>{chain::eth(&s.claimed)}</dd></div>
                                <div><dt>"Record"</dt><dd>{format!("{} agreed · {} disputed · {} refuted", s.agreed, s.disputed, s.refuted)}</dd></div>
                            </dl>
                        }.into_any(),
                        None => view! { <p class="muted">"No verified work yet."</p> }.into_any(),
                    }}
                </section>
                <section class="card">
                    <h2>"Jobs"</h2>
                    <ul class="plain" data-testid="profile-jobs">
                        {p.jobs.iter().map(|j| view! {
                            <li><a href=format!("/jobs/{}", j.id)>{format!("#{} {}", j.id, j.name)}</a>{format!(" · {}", j.status.as_str())}</li>
                        }).collect::<Vec<_>>()}
                    </ul>
                </section>
                <section class="card">
                    <h2>"Models"</h2>
                    <ul class="plain" data-testid="profile-models">
                        {p.models.iter().map(|m| view! {
                            <li><a href=format!("/models/{}", m.id)>{format!("#{} {}", m.id, m.name)}</a>
                                {m.accuracy.map(|a| format!(" · {:.2}%", a * 100.0))}
                                {m.listing.is_some().then_some(" · on sale")}</li>
                        }).collect::<Vec<_>>()}
                    </ul>
                </section>
                <section class="card">
                    <h2>"On chain"</h2>
                    <div class="table-wrap"><table class="table" data-testid="profile-history">
                        <thead><tr><th>"Block"</th><th>"What"</th><th>"Of"</th><th>"Amount"</th><th>"Transaction"</th></tr></thead>
                        <tbody>{p.history.iter().map(|e| {
                            let of = match (e.job, e.model) {
                                (Some(j), _) => view! { <a href=format!("/jobs/{j}")>{format!("job #{j}")}</a> }.into_any(),
                                (None, Some(m)) => view! { <a href=format!("/models/{m}")>{format!("model #{m}")}</a> }.into_any(),
                                (None, None) => view! { "" }.into_any(),
                            };
                            view! {
                                <tr data-testid=format!("event-{}", e.kind.as_str())>
                                    <td>{e.block}</td>
                                    <td>{kind_words(e.kind)}</td>
                                    <td>{of}</td>
                                    <td>{e.amount.as_ref().map(chain::eth)}</td>
                                    <td class="mono" title=e.tx.clone()>{short(&e.tx)}</td>
                                </tr>
                            }
                        }).collect::<Vec<_>>()}</tbody>
                    </table></div>
                </section>
            }
        })}
    }
}

//! Leaderboards: contributors by verified work (totals and the recent
//! average), rewards and reputation, over the network or one job
//! (`?job=N`); and each dataset's most accurate models.

use leptos::prelude::*;
use leptos::task::spawn_local;
use leptos_router::hooks::use_query_map;
use oblivion_chain::calls;
use oblivion_protocol::api::Leaderboard;

use crate::account::short;
use crate::api;

/// An identity as shown: an account shortened, a connection as is.
fn who(identity: &str) -> String {
    if identity.starts_with("0x") {
        short(identity)
    } else {
        identity.replace("worker:", "worker #")
    }
}

/// An amount of wei in ETH.
fn eth(amount: &oblivion_protocol::Wei) -> String {
    format!("{} ETH", calls::format_ether(calls::u256(amount)))
}

/// The Leaderboard page.
#[component]
pub fn LeaderboardPage() -> impl IntoView {
    let query = use_query_map();
    let job = Memo::new(move |_| query.with(|q| q.get("job")));
    let sort = RwSignal::new("work".to_string());
    let board = RwSignal::new(None::<Leaderboard>);
    let error = RwSignal::new(None::<String>);
    Effect::new(move |_| {
        let (job, order) = (job.get(), sort.get());
        spawn_local(async move {
            let url = match job {
                Some(j) => format!("/api/leaderboard?sort={order}&job={j}"),
                None => format!("/api/leaderboard?sort={order}"),
            };
            match api::get::<Leaderboard>(&url).await {
                Ok(b) => {
                    board.set(Some(b));
                    error.set(None);
                }
                Err(e) => error.set(Some(e.error)),
            }
        });
    });
    view! {
        <section class="card hero">
            <div>
                <h1>{move || job.get().map_or("Leaderboard".to_string(), |j| format!("Leaderboard of job #{j}"))}</h1>
                <p class="muted">"Only verified work counts: samples trained and rows answered that the network checked. The recent average is work a day, a day's work counting half as much a week later."</p>
            </div>
        </section>
        {move || error.get().map(|e| view! { <div class="notice error">{e}</div> })}
        <section class="card">
            <div class="toolbar">
                <h2>"Contributors"</h2>
                <select data-testid="leaderboard-sort" prop:value=move || sort.get() on:change=move |ev| sort.set(event_target_value(&ev))>
                    <option value="work">"Verified work"</option>
                    <option value="recent">"Recent average"</option>
                    <option value="earned">"Rewards"</option>
                    <option value="reputation">"Reputation"</option>
                </select>
            </div>
            <div class="table-wrap">
            <table class="table" data-testid="leaderboard">
                <thead><tr><th>"#"</th><th>"Contributor"</th><th>"Samples"</th><th>"Rows"</th><th>"Recent / day"</th><th>"Earned"</th><th>"Claimed"</th><th>"Agreed"</th><th>"Disputed"</th></tr></thead>
                <tbody>
                    {move || board.get().map(|b| b.contributors.into_iter().enumerate().map(|(i, c)| view! {
                        <tr data-testid=format!("standing-{}", c.identity)>
                            <td>{i + 1}</td>
                            <td title=c.identity.clone()>{if c.identity.starts_with("0x") {
                                view! { <a href=format!("/accounts/{}", c.identity) data-testid="standing-account">{who(&c.identity)}</a> }.into_any()
                            } else {
                                view! { {who(&c.identity)} }.into_any()
                            }}</td>
                            <td>{c.samples}</td>
                            <td>{c.rows}</td>
                            <td>{format!("{:.1}", c.recent)}</td>
                            <td>{eth(&c.earned)}</td>
                            <td>{eth(&c.claimed)}</td>
                            <td>{c.agreed}</td>
                            <td>{c.disputed + c.refuted}</td>
                        </tr>
                    }).collect::<Vec<_>>())}
                </tbody>
            </table>
            </div>
        </section>
        {move || board.get().filter(|b| !b.models.is_empty()).map(|b| view! {
            <section class="card">
                <h2>"Models, by dataset"</h2>
                {b.models.into_iter().map(|group| view! {
                    <h3>{group.dataset.clone()}</h3>
                    <ol data-testid=format!("models-{}", group.dataset)>
                        {group.models.into_iter().map(|m| view! {
                            <li><a href=format!("/models/{}", m.id)>{format!("#{} {}", m.id, m.name)}</a>
                                {format!(" · {}", m.accuracy.map_or("—".into(), |a| format!("{:.2}%", a * 100.0)))}</li>
                        }).collect::<Vec<_>>()}
                    </ol>
                }).collect::<Vec<_>>()}
            </section>
        })}
    }
}

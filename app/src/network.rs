//! Network: a live map of the coordinator and every worker.

use leptos::prelude::*;
use oblivion_protocol::api::WorkerView;
use oblivion_protocol::wire::ClientKind;

use crate::live::use_live;

const SIZE: f64 = 400.0;

fn kind(w: &WorkerView) -> &'static str {
    match w.client {
        ClientKind::Browser => "browser",
        ClientKind::Native => "native",
    }
}

/// The Network page.
#[component]
pub fn NetworkPage() -> impl IntoView {
    let live = use_live();
    let workers = Signal::derive(move || {
        live.snapshot
            .with(|s| s.as_ref().map(|s| s.workers.clone()).unwrap_or_default())
    });
    let totals = move || {
        live.snapshot.with(|s| {
            s.as_ref().map_or((0, 0.0, 0), |s| {
                (s.workers.len(), s.samples_per_second, s.jobs.len())
            })
        })
    };
    let topology = move || {
        let list = workers.get();
        let n = list.len().max(1) as f64;
        let (c, r) = (SIZE / 2.0, SIZE / 2.0 - 48.0);
        let nodes = list
            .iter()
            .enumerate()
            .map(|(i, w)| {
                let a = std::f64::consts::TAU * i as f64 / n - std::f64::consts::FRAC_PI_2;
                let (x, y) = (c + r * a.cos(), c + r * a.sin());
                let label = format!("{} · {}", w.name, w.device.backend);
                view! {
                    <g class=format!("node worker {} {}", w.state, kind(w)) data-testid=format!("node-{}", w.id)>
                        <line class=format!("link {}", w.state) x1=c y1=c x2=x y2=y/>
                        <circle cx=x cy=y r="16"/>
                        <text class="node-icon" x=x y=y + 4.0 text-anchor="middle">{if w.client == ClientKind::Browser { "▭" } else { "▣" }}</text>
                        <text class="node-label" x=x y=y + 30.0 text-anchor="middle">{label}</text>
                        <text class="node-sub" x=x y=y + 42.0 text-anchor="middle">{format!("{} · {:.0}/s", w.state, w.samples_per_second)}</text>
                    </g>
                }
            })
            .collect::<Vec<_>>();
        view! {
            <svg class="topology" viewBox=format!("-60 -10 {} {}", SIZE + 120.0, SIZE + 20.0) role="img" aria-label="network topology">
                {nodes}
                <g class="node coordinator">
                    <circle cx=c cy=c r="26"/>
                    <text class="node-icon" x=c y=c + 5.0 text-anchor="middle">"◉"</text>
                    <text class="node-label" x=c y=c + 42.0 text-anchor="middle">"coordinator"</text>
                </g>
            </svg>
        }
    };
    view! {
        <section class="card hero">
            <div>
                <h1>"Network"</h1>
                <p class="muted">"The coordinator and every connected worker, live."</p>
            </div>
        </section>
        <div class="grid totals">
            <section class="card"><h2>"Workers"</h2><p class="big-number" data-testid="total-workers">{move || totals().0}</p></section>
            <section class="card"><h2>"Samples per second"</h2><p class="big-number" data-testid="total-speed">{move || format!("{:.0}", totals().1)}</p></section>
            <section class="card"><h2>"Jobs running"</h2><p class="big-number" data-testid="total-jobs">{move || totals().2}</p></section>
        </div>
        <section class="card">{topology}</section>
        <section class="card">
            <div class="table-wrap">
            <table class="table" data-testid="workers">
                <thead><tr><th>"Worker"</th><th>"Kind"</th><th>"Backend"</th><th>"State"</th><th>"Samples/s"</th><th>"Accepted"</th><th>"Rejected"</th><th>"Lost"</th><th>"Credited"</th><th>"Agreed / disputed"</th><th>"Local data"</th></tr></thead>
                <tbody>
                    {move || workers.get().into_iter().map(|w| view! {
                        <tr>
                            <td title=w.device.name.clone()>{format!("#{} {}", w.id, w.name)}</td>
                            <td>{kind(&w)}</td>
                            <td>{w.device.backend.clone()}</td>
                            <td>
                                <span class=format!("state {}", w.state) title=w.quarantine.clone().unwrap_or_default()>{w.state.as_str()}</span>
                                {w.quarantine.clone().map(|why| view! { <div class="muted small" data-testid=format!("quarantine-{}", w.id)>{why}</div> })}
                            </td>
                            <td>{format!("{:.0}", w.samples_per_second)}</td>
                            <td>{w.accepted}</td>
                            <td>{w.rejected}</td>
                            <td>{w.lost}</td>
                            <td title="samples of its verified updates">{w.samples}</td>
                            <td title="results of its account that agreed with their rounds, and those disputed or refuted">{format!("{} / {}", w.agreed, w.disputed)}</td>
                            <td title="data of its own it trains federated jobs on: only its shape and size (to a power of two) are known">{w.local_data.as_ref().map_or("—".into(), |d| format!("≥{} × {:?}", d.samples, d.shape))}</td>
                        </tr>
                    }).collect::<Vec<_>>()}
                </tbody>
            </table>
            </div>
        </section>
    }
}

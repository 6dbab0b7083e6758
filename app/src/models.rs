//! Models: the registry's public models (and the visitor's own), found by
//! name and sorted.

use leptos::prelude::*;
use leptos::task::spawn_local;
use oblivion_protocol::api::ModelView;

use crate::api;

/// The architecture in a few words (`cnn 8-16`, `mlp 128`).
pub fn architecture_words(m: &ModelView) -> String {
    let list = |v: &[u32]| v.iter().map(u32::to_string).collect::<Vec<_>>().join("-");
    match &m.architecture {
        oblivion_protocol::ModelSpec::Mlp { hidden } if hidden.is_empty() => "linear".into(),
        oblivion_protocol::ModelSpec::Mlp { hidden } => format!("mlp {}", list(hidden)),
        oblivion_protocol::ModelSpec::Cnn { channels, .. } => format!("cnn {}", list(channels)),
    }
}

/// The Models page.
#[component]
pub fn ModelList() -> impl IntoView {
    let models = RwSignal::new(Vec::<ModelView>::new());
    let error = RwSignal::new(None::<String>);
    let search = RwSignal::new(String::new());
    let sort = RwSignal::new("accuracy".to_string());
    Effect::new(move |_| {
        let (q, order) = (search.get(), sort.get());
        spawn_local(async move {
            let url = format!(
                "/api/models?sort={order}&q={}",
                js_sys::encode_uri_component(&q)
            );
            match api::get::<Vec<ModelView>>(&url).await {
                Ok(list) => {
                    models.set(list);
                    error.set(None);
                }
                Err(e) => error.set(Some(e.error)),
            }
        });
    });
    view! {
        <section class="card hero">
            <div>
                <h1>"Models"</h1>
                <p class="muted">"Every model the network trained, and weights their owners registered: try one in this tab, run it over data, or fine-tune it."</p>
            </div>
        </section>
        {move || error.get().map(|e| view! { <div class="notice error">{e}</div> })}
        <section class="card">
            <div class="toolbar">
                <input type="search" placeholder="Search by name" data-testid="model-search"
                    prop:value=move || search.get() on:input=move |ev| search.set(event_target_value(&ev))/>
                <select data-testid="model-sort" prop:value=move || sort.get() on:change=move |ev| sort.set(event_target_value(&ev))>
                    <option value="accuracy">"Most accurate"</option>
                    <option value="newest">"Newest"</option>
                    <option value="name">"Name"</option>
                </select>
            </div>
            <div class="table-wrap">
            <table class="table" data-testid="model-list">
                <thead><tr><th>"Model"</th><th>"Architecture"</th><th>"Dataset"</th><th>"Accuracy"</th><th>"Trained"</th></tr></thead>
                <tbody>
                    <For each=move || models.get() key=|m| m.id let:m>
                        <tr data-testid=format!("model-row-{}", m.id)>
                            <td><a href=format!("/models/{}", m.id)>{format!("#{} {}", m.id, m.name)}</a></td>
                            <td>{architecture_words(&m)}</td>
                            <td>{m.dataset.clone()}</td>
                            <td>{m.accuracy.map_or("—".into(), |a| format!("{:.2}%", a * 100.0))}</td>
                            <td>{m.job.map_or("registered".into(), |j| format!("job #{j}, {} rounds", m.rounds))}</td>
                        </tr>
                    </For>
                </tbody>
            </table>
            </div>
            {move || models.with(Vec::is_empty).then(|| view! { <p class="muted">"No model yet: one enters when a training job completes."</p> })}
        </section>
    }
}

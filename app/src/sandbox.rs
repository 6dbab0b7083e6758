//! A model page's sandbox: the model runs in this tab, in the browser
//! worker's CPU build (the engine that trains), on what the visitor gives
//! it: a digit drawn on a 28x28 canvas for an image model, a value for
//! each feature of a tabular one. The weights are fetched once; then no
//! server is asked anything.

use leptos::html::Canvas;
use leptos::prelude::*;
use oblivion_protocol::api::ModelView;
use oblivion_protocol::tab::{TabCommand, TabPredict, TabReport};
use wasm_bindgen::JsCast;
use wasm_bindgen::prelude::*;
use web_sys::{CanvasRenderingContext2d, MessageEvent, Worker, WorkerOptions, WorkerType};

use crate::contribute::CPU_WORKER_URL;

/// Side of the drawing canvas, pixels: ten for each of the 28 inputs.
const SIDE: u32 = 280;
/// Width of a stroke, pixels (MNIST's strokes are about 2 of 28).
const STROKE: f64 = 22.0;

/// The sandbox's worker and what waits for it.
#[derive(Default)]
struct Runner {
    worker: Option<Worker>,
    ready: bool,
    /// A request made before the worker said it was ready.
    waiting: Option<String>,
}

/// The sandbox card.
#[component]
pub fn Sandbox(model: ModelView) -> impl IntoView {
    let image = model.input_shape == [1, 28, 28];
    let features = (model.input_shape.len() == 1).then(|| model.input_shape[0]);
    if !image && features.is_none() {
        return view! {
            <section class="card"><h2>"Try it"</h2><p class="muted small">"This model's inputs cannot be drawn or typed here."</p></section>
        }
        .into_any();
    }
    let probabilities = RwSignal::new(None::<Vec<f32>>);
    let status = RwSignal::new(String::new());
    let runner = StoredValue::new_local(Runner::default());
    let weights_url = format!("/api/models/{}/weights?format=safetensors", model.id);
    let predict = move |rows: Vec<f32>| {
        let command = TabCommand::Predict(TabPredict {
            weights_url: weights_url.clone(),
            rows,
        });
        let Ok(text) = serde_json::to_string(&command) else {
            return;
        };
        status.set("running in this tab…".into());
        runner.update_value(|r| {
            if r.worker.is_none() {
                r.worker = start_worker(runner, probabilities, status);
            }
            match (&r.worker, r.ready) {
                (Some(w), true) => {
                    let _ = w.post_message(&JsValue::from_str(&text));
                }
                _ => r.waiting = Some(text),
            }
        });
    };
    let input = if image {
        drawing(predict).into_any()
    } else {
        form(&model, features.unwrap_or(0), predict).into_any()
    };
    view! {
        <section class="card" data-testid="sandbox">
            <h2>"Try it"</h2>
            <p class="muted small">"Runs in this tab: the weights are fetched once, and nothing you give it leaves the page."</p>
            <div class="sandbox">
                {input}
                <div class="bars" data-testid="probabilities">
                    {move || probabilities.get().map(|p| {
                        let best = p.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).map_or(0, |(i, _)| i);
                        view! {
                            <p class="big-number" data-testid="predicted">{best.to_string()}</p>
                            {p.iter().enumerate().map(|(c, v)| view! {
                                <div class="bar-row" class:best=c == best data-probability=v.to_string()>
                                    <span class="bar-label">{c.to_string()}</span>
                                    <div class="progress"><div class="bar" style:width=format!("{:.1}%", v * 100.0)></div></div>
                                    <span class="small">{format!("{:.1}%", v * 100.0)}</span>
                                </div>
                            }).collect::<Vec<_>>()}
                        }
                    })}
                    <p class="muted small" data-testid="sandbox-status">{move || status.get()}</p>
                </div>
            </div>
        </section>
    }
    .into_any()
}

/// Starts the CPU worker, which reports to `probabilities` and `status`.
fn start_worker(
    runner: StoredValue<Runner, LocalStorage>,
    probabilities: RwSignal<Option<Vec<f32>>>,
    status: RwSignal<String>,
) -> Option<Worker> {
    let options = WorkerOptions::new();
    options.set_type(WorkerType::Module);
    let worker = Worker::new_with_options(CPU_WORKER_URL, &options).ok()?;
    let handle = worker.clone();
    let on_message = Closure::<dyn FnMut(MessageEvent)>::new(move |e: MessageEvent| {
        let Some(report) = e
            .data()
            .as_string()
            .and_then(|t| serde_json::from_str::<TabReport>(&t).ok())
        else {
            return;
        };
        match report {
            TabReport::Ready => runner.update_value(|r| {
                r.ready = true;
                if let Some(text) = r.waiting.take() {
                    let _ = handle.post_message(&JsValue::from_str(&text));
                }
            }),
            TabReport::Prediction {
                probabilities: p,
                error: None,
                ..
            } => {
                probabilities.set(Some(p));
                status.set(String::new());
            }
            TabReport::Prediction { error: Some(e), .. } => status.set(e),
            _ => {}
        }
    });
    worker.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
    on_message.forget();
    Some(worker)
}

/// A black canvas to draw a white digit on; each stroke's end asks for a
/// prediction of the 28x28 picture.
fn drawing(predict: impl Fn(Vec<f32>) + Clone + 'static) -> impl IntoView {
    let canvas = NodeRef::<Canvas>::new();
    let drawing = StoredValue::new(false);
    let context = move || -> Option<CanvasRenderingContext2d> {
        canvas.get()?.get_context("2d").ok()??.dyn_into().ok()
    };
    let clear = move || {
        if let Some(c) = context() {
            c.set_fill_style_str("black");
            c.fill_rect(0.0, 0.0, f64::from(SIDE), f64::from(SIDE));
        }
    };
    Effect::new(move |_| {
        if canvas.get().is_some() {
            clear();
        }
    });
    let at = move |e: &web_sys::PointerEvent| -> Option<(f64, f64)> {
        let r = canvas.get()?.get_bounding_client_rect();
        let scale = f64::from(SIDE) / r.width().max(1.0);
        Some((
            (f64::from(e.client_x()) - r.left()) * scale,
            (f64::from(e.client_y()) - r.top()) * scale,
        ))
    };
    let dot = move |x: f64, y: f64| {
        if let Some(c) = context() {
            c.set_fill_style_str("white");
            c.begin_path();
            let _ = c.arc(x, y, STROKE / 2.0, 0.0, std::f64::consts::TAU);
            c.fill();
        }
    };
    let read = move || -> Option<Vec<f32>> {
        let data = context()?
            .get_image_data(0.0, 0.0, f64::from(SIDE), f64::from(SIDE))
            .ok()?
            .data();
        Some(downsample(&data.0, SIDE as usize, 28))
    };
    let finish = {
        let predict = predict.clone();
        move || {
            if drawing.get_value() {
                drawing.set_value(false);
                if let Some(rows) = read() {
                    predict(rows);
                }
            }
        }
    };
    let finish_up = finish.clone();
    view! {
        <div class="draw">
            <canvas node_ref=canvas width=SIDE height=SIDE data-testid="digit-canvas" class="digit"
                on:pointerdown=move |e| { drawing.set_value(true); if let Some((x, y)) = at(&e) { dot(x, y) } }
                on:pointermove=move |e| { if drawing.get_value() && let Some((x, y)) = at(&e) { dot(x, y) } }
                on:pointerup=move |_| finish_up()
                on:pointerleave=move |_| finish()
            ></canvas>
            <button data-testid="clear-canvas" on:click=move |_| clear()>"Clear"</button>
        </div>
    }
}

/// The mean brightness, 0 to 1, of each `cells`×`cells` block of an RGBA
/// picture `side` pixels square.
fn downsample(rgba: &[u8], side: usize, cells: usize) -> Vec<f32> {
    let per = side / cells;
    let mut out = vec![0f32; cells * cells];
    for (y, row) in out.chunks_mut(cells).enumerate() {
        for (x, cell) in row.iter_mut().enumerate() {
            let mut sum = 0u32;
            for dy in 0..per {
                for dx in 0..per {
                    let i = ((y * per + dy) * side + x * per + dx) * 4;
                    sum += u32::from(rgba.get(i).copied().unwrap_or(0));
                }
            }
            *cell = sum as f32 / (per * per) as f32 / 255.0;
        }
    }
    out
}

/// A number for each of a tabular model's features, named when the model
/// knows their names.
fn form(model: &ModelView, features: usize, predict: impl Fn(Vec<f32>) + 'static) -> impl IntoView {
    let names: Vec<String> = model
        .columns
        .clone()
        .filter(|c| c.len() == features)
        .unwrap_or_else(|| (1..=features).map(|i| format!("feature {i}")).collect());
    let values: Vec<RwSignal<String>> = (0..features)
        .map(|_| RwSignal::new("0".to_string()))
        .collect();
    let read = values.clone();
    view! {
        <div class="features">
            {names.into_iter().zip(values).enumerate().map(|(i, (name, value))| view! {
                <label>{name}<input type="number" step="any" data-testid=format!("feature-{i}")
                    prop:value=move || value.get() on:input=move |ev| value.set(event_target_value(&ev))/></label>
            }).collect::<Vec<_>>()}
            <button class="primary" data-testid="predict" on:click=move |_| {
                predict(read.iter().map(|v| v.get_untracked().trim().parse::<f32>().unwrap_or(0.0)).collect())
            }>"Predict"</button>
        </div>
    }
}

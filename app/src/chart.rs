//! Small SVG charts: per-round lines with axes.

use leptos::prelude::*;

/// One line of a chart.
#[derive(Clone)]
pub struct Series {
    /// Legend label.
    pub label: &'static str,
    /// CSS class giving its colour.
    pub class: &'static str,
    /// `(round, value)` points.
    pub points: Vec<(f64, f64)>,
}

const W: f64 = 320.0;
const H: f64 = 160.0;
const PAD_L: f64 = 40.0;
const PAD_B: f64 = 22.0;
const PAD_T: f64 = 8.0;
const PAD_R: f64 = 8.0;

fn fmt(v: f64) -> String {
    if v.abs() >= 100.0 {
        format!("{v:.0}")
    } else if v.abs() >= 1.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.3}")
    }
}

/// A line chart over rounds; `percent` shows values as percentages.
#[component]
pub fn LineChart(
    title: &'static str,
    series: Signal<Vec<Series>>,
    #[prop(optional)] percent: bool,
) -> impl IntoView {
    let body = move || {
        let series = series.get();
        let all: Vec<(f64, f64)> = series
            .iter()
            .flat_map(|s| s.points.iter().copied())
            .filter(|(_, y)| y.is_finite())
            .collect();
        if all.is_empty() {
            return view! { <p class="muted small chart-empty">"No finished round yet."</p> }
                .into_any();
        }
        let x_max = all.iter().map(|p| p.0).fold(1.0, f64::max);
        let (mut y_min, mut y_max) = all
            .iter()
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), p| {
                (a.min(p.1), b.max(p.1))
            });
        if percent {
            y_max = y_max.max(y_min + 0.01).min(1.0);
        }
        if (y_max - y_min).abs() < 1e-9 {
            y_min -= 0.5;
            y_max += 0.5;
        }
        let sx =
            move |x: f64| PAD_L + (x - 1.0).max(0.0) / (x_max - 1.0).max(1.0) * (W - PAD_L - PAD_R);
        let sy = move |y: f64| PAD_T + (y_max - y) / (y_max - y_min) * (H - PAD_T - PAD_B);
        let label = move |v: f64| {
            if percent {
                format!("{:.1}%", v * 100.0)
            } else {
                fmt(v)
            }
        };
        let lines = series
            .iter()
            .map(|s| {
                let points = s
                    .points
                    .iter()
                    .filter(|(_, y)| y.is_finite())
                    .map(|&(x, y)| format!("{:.1},{:.1}", sx(x), sy(y)))
                    .collect::<Vec<_>>()
                    .join(" ");
                let dots = s
                    .points
                    .iter()
                    .filter(|(_, y)| y.is_finite())
                    .map(|&(x, y)| view! { <circle cx=format!("{:.1}", sx(x)) cy=format!("{:.1}", sy(y)) r="2.5"/> })
                    .collect::<Vec<_>>();
                view! { <g class=format!("series {}", s.class)><polyline points=points/>{dots}</g> }
            })
            .collect::<Vec<_>>();
        let legend = series
            .iter()
            .map(|s| view! { <span class=format!("legend {}", s.class)>{s.label}</span> })
            .collect::<Vec<_>>();
        view! {
            <svg class="chart" viewBox=format!("0 0 {W} {H}") role="img" aria-label=title>
                <line class="axis" x1=PAD_L y1=PAD_T x2=PAD_L y2=H - PAD_B/>
                <line class="axis" x1=PAD_L y1=H - PAD_B x2=W - PAD_R y2=H - PAD_B/>
                <text class="tick" x=PAD_L - 4.0 y=PAD_T + 8.0 text-anchor="end">{label(y_max)}</text>
                <text class="tick" x=PAD_L - 4.0 y=H - PAD_B text-anchor="end">{label(y_min)}</text>
                <text class="tick" x=PAD_L y=H - 6.0 text-anchor="start">"round 1"</text>
                <text class="tick" x=W - PAD_R y=H - 6.0 text-anchor="end">{format!("round {x_max:.0}")}</text>
                {lines}
            </svg>
            <div class="legends">{legend}</div>
        }
        .into_any()
    };
    view! {
        <figure class="chart-box" data-testid=format!("chart-{}", title.to_lowercase())>
            <figcaption>{title}</figcaption>
            {body}
        </figure>
    }
}

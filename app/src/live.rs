//! The network's live state, pushed by the coordinator (`GET /api/events`,
//! server-sent events) and shared by every page.

use leptos::prelude::*;
use oblivion_protocol::api::NetworkSnapshot;
use wasm_bindgen::JsCast;
use wasm_bindgen::prelude::*;
use web_sys::{EventSource, MessageEvent};

/// The latest snapshot, and whether the stream is connected.
#[derive(Clone, Copy)]
pub struct Live {
    /// Latest state; `None` until the first event.
    pub snapshot: RwSignal<Option<NetworkSnapshot>>,
    /// The event stream is open.
    pub connected: RwSignal<bool>,
}

/// Opens the stream (the browser reconnects it by itself) and shares it.
pub fn provide_live() {
    let live = Live {
        snapshot: RwSignal::new(None),
        connected: RwSignal::new(false),
    };
    if let Ok(source) = EventSource::new("/api/events") {
        let on_snapshot = Closure::<dyn FnMut(MessageEvent)>::new(move |e: MessageEvent| {
            if let Some(text) = e.data().as_string()
                && let Ok(snapshot) = serde_json::from_str::<NetworkSnapshot>(&text)
            {
                live.connected.set(true);
                live.snapshot.set(Some(snapshot));
            }
        });
        let _ = source
            .add_event_listener_with_callback("snapshot", on_snapshot.as_ref().unchecked_ref());
        let on_open = Closure::<dyn FnMut()>::new(move || live.connected.set(true));
        let on_error = Closure::<dyn FnMut()>::new(move || live.connected.set(false));
        source.set_onopen(Some(on_open.as_ref().unchecked_ref()));
        source.set_onerror(Some(on_error.as_ref().unchecked_ref()));
        // The stream lives as long as the app.
        on_snapshot.forget();
        on_open.forget();
        on_error.forget();
        std::mem::forget(source);
    }
    provide_context(live);
}

/// The shared live state.
pub fn use_live() -> Live {
    expect_context::<Live>()
}

/// Runs `run` with `key()` now and whenever it changes: `key` reads the live
/// snapshot (or other signals) and says what a page's data depends on, so
/// the page refetches only when that moves, not on every snapshot.
pub fn when_changed<K>(key: impl Fn() -> K + 'static, run: impl Fn(&K) + 'static)
where
    K: PartialEq + Send + Sync + 'static,
{
    let last = StoredValue::new(None::<K>);
    Effect::new(move |_| {
        let now = key();
        if last.with_value(|l| l.as_ref() == Some(&now)) {
            return;
        }
        run(&now);
        last.set_value(Some(now));
    });
}

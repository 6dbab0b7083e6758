//! `GET /api/events`: the network's live state as server-sent events.
//!
//! Every [`TICK`] the coordinator takes a [`NetworkSnapshot`] (in memory, no
//! database) and sends it as event `snapshot` when it differs from the last
//! one sent on this stream; a quiet network costs only keep-alives.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::Stream;
use futures_util::stream;

use crate::coordinator::Coordinator;

/// How often the snapshot is compared: changes reach pages within this.
pub const TICK: Duration = Duration::from_millis(250);

/// `GET /api/events`.
pub async fn stream(
    State(c): State<Arc<Coordinator>>,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let events = stream::unfold(
        (c, tick, String::new()),
        |(c, mut tick, mut last)| async move {
            loop {
                tick.tick().await;
                let Ok(json) = serde_json::to_string(&c.snapshot()) else {
                    continue;
                };
                if json != last {
                    let event = Event::default().event("snapshot").data(&json);
                    last = json;
                    return Some((Ok(event), (c, tick, last)));
                }
            }
        },
    );
    Sse::new(events).keep_alive(KeepAlive::default())
}

//! `GET /api/events`: the network's live state as server-sent events.
//!
//! The coordinator takes one [`NetworkSnapshot`] per tick for all streams
//! and publishes it on a watch channel only when it changed; each stream
//! sends it as event `snapshot` (the current one first). A quiet network
//! costs only keep-alives. Streams per client address are limited.
//!
//! [`NetworkSnapshot`]: oblivion_protocol::api::NetworkSnapshot

use std::convert::Infallible;
use std::sync::Arc;

use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::Stream;
use futures_util::stream;

use super::client::Client;
use crate::error::AppError;
use crate::service::Coordinator;

/// `GET /api/events`.
pub async fn stream(
    State(c): State<Arc<Coordinator>>,
    Client(client): Client,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, AppError> {
    let permit = c.limits.event_streams.acquire(client)?;
    let rx = c.events.subscribe_snapshots();
    let events = stream::unfold((rx, permit), |(mut rx, permit)| async move {
        rx.changed().await.ok()?;
        let json = rx.borrow_and_update().clone();
        let event = Event::default().event("snapshot").data(&*json);
        Some((Ok(event), (rx, permit)))
    });
    Ok(Sse::new(events).keep_alive(KeepAlive::default()))
}

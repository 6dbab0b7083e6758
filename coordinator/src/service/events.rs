//! What pages are told of the network, live: one snapshot taken for every
//! event stream at most every [`SNAPSHOT_TICK`], and sent on only when it
//! changed.

use std::sync::Arc;
use std::time::Duration;

use oblivion_protocol::api::NetworkSnapshot;

use super::dispatch::Dispatch;
use super::shared::JobsVersion;

/// How often the snapshot is taken: changes reach pages within this.
pub const SNAPSHOT_TICK: Duration = Duration::from_millis(250);

/// The network's live state, for pages.
pub struct Events {
    dispatch: Arc<Dispatch>,
    jobs_version: Arc<JobsVersion>,
    /// The latest network snapshot as JSON, shared by every event stream.
    latest: tokio::sync::watch::Sender<Arc<str>>,
}

impl Events {
    /// Events of the network `dispatch` serves.
    pub(super) fn new(dispatch: Arc<Dispatch>, jobs_version: Arc<JobsVersion>) -> Events {
        Events {
            dispatch,
            jobs_version,
            latest: tokio::sync::watch::Sender::new(Arc::from("")),
        }
    }

    /// Publishes snapshots every [`SNAPSHOT_TICK`], forever.
    pub(super) async fn publish_forever(self: Arc<Self>) {
        let mut tick = tokio::time::interval(SNAPSHOT_TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            tick.tick().await;
            self.publish_snapshot();
        }
    }

    /// Takes the snapshot once for every event stream, when anyone listens,
    /// and wakes them only if it changed.
    fn publish_snapshot(&self) {
        if self.latest.receiver_count() == 0 {
            return;
        }
        let Ok(json) = serde_json::to_string(&self.snapshot()) else {
            return;
        };
        self.latest.send_if_modified(|last| {
            if **last == *json {
                return false;
            }
            *last = Arc::from(json);
            true
        });
    }

    /// The shared snapshot stream: the current one first, then each change.
    pub fn subscribe_snapshots(&self) -> tokio::sync::watch::Receiver<Arc<str>> {
        let mut rx = self.latest.subscribe();
        // Up to date now, rather than as of the last tick anyone listened.
        self.publish_snapshot();
        rx.mark_changed();
        rx
    }

    /// The live state of the network, as `GET /api/events` pushes it.
    pub fn snapshot(&self) -> NetworkSnapshot {
        let (workers, jobs) = self.dispatch.network();
        NetworkSnapshot {
            samples_per_second: workers.iter().map(|w| w.samples_per_second).sum::<f64>() + 0.0,
            workers,
            jobs,
            jobs_version: self.jobs_version.get(),
        }
    }
}

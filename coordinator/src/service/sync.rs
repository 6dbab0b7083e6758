//! Keeping this instance's derived state in step with a database other
//! instances change too (PostgreSQL): every change to a job is announced
//! with NOTIFY; this instance LISTENs, collects the changed jobs for a few
//! milliseconds, and reloads each from the database (a new job starts
//! dispatching here at once, a round another instance aggregated moves on
//! here, shards leased or finished elsewhere are no longer planned). (Each
//! instance's workers are traded by dispatch: `Dispatch::keep_alive`.)

use oblivion_protocol::JobId;
use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sqlx::postgres::PgListener;

use super::dispatch::Dispatch;
use super::rounds::Rounds;
use super::shared::lock;
use oblivion_store::JOBS_CHANNEL;

/// Keeps the hub in step with the jobs other instances change.
pub struct PeerSync {
    /// Jobs other instances changed, to reload from the database.
    dirty: Mutex<BTreeSet<JobId>>,
    /// Wakes the task that reloads them.
    dirty_signal: tokio::sync::Notify,
    rounds: Arc<Rounds>,
    dispatch: Arc<Dispatch>,
}

/// A dirty-set entry meaning "reload every unfinished job" (after missed
/// notifications).
const RESCAN: JobId = JobId(0);

/// How long changes are collected before they are applied together.
const COALESCE: Duration = Duration::from_millis(20);

impl PeerSync {
    /// Nothing marked yet.
    pub(super) fn new(rounds: Arc<Rounds>, dispatch: Arc<Dispatch>) -> PeerSync {
        PeerSync {
            dirty: Mutex::new(BTreeSet::new()),
            dirty_signal: tokio::sync::Notify::new(),
            rounds,
            dispatch,
        }
    }

    /// Marks `job` to be reloaded from the database.
    fn mark_dirty(&self, job: JobId) {
        lock(&self.dirty).insert(job);
        self.dirty_signal.notify_one();
    }

    /// Marks every job to be reloaded (a safety net, now and then: the
    /// hub is derived state and may always be rebuilt).
    pub(super) fn resync_all(&self) {
        self.mark_dirty(RESCAN);
    }

    /// Listens for changed jobs (PostgreSQL), forever; after any gap in
    /// listening, everything is reloaded.
    pub(super) async fn listen(self: Arc<Self>, url: String) {
        loop {
            match PgListener::connect(&url).await {
                Ok(mut listener) => match listener.listen(JOBS_CHANNEL).await {
                    Ok(()) => {
                        self.mark_dirty(RESCAN);
                        loop {
                            match listener.recv().await {
                                Ok(n) => {
                                    if let Ok(job) = n.payload().parse::<JobId>() {
                                        self.mark_dirty(job);
                                    }
                                }
                                Err(e) => {
                                    tracing::warn!("listening for job changes: {e}");
                                    self.mark_dirty(RESCAN);
                                    break;
                                }
                            }
                        }
                    }
                    Err(e) => tracing::warn!("cannot listen for job changes: {e}"),
                },
                Err(e) => tracing::warn!("cannot connect to listen for job changes: {e}"),
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }

    /// Applies marked changes, forever.
    pub(super) async fn apply_changes(self: Arc<Self>) {
        loop {
            self.dirty_signal.notified().await;
            tokio::time::sleep(COALESCE).await;
            let jobs: BTreeSet<JobId> = std::mem::take(&mut *lock(&self.dirty));
            if jobs.contains(&RESCAN) {
                if let Err(e) = self.rounds.rescan().await {
                    tracing::error!("reloading jobs: {}", e.message);
                }
            } else {
                for job in jobs {
                    if let Err(e) = self.rounds.refresh_job(job).await {
                        tracing::error!(%job, "reloading the job: {}", e.message);
                    }
                }
            }
            self.dispatch.request_pump();
        }
    }
}
